"""A registry estate built from a peer's test table, so ported cases run through ``collect`` and ``retention``.

A peer's unit test hands its evaluator a list of candidates (tags, push time). Here each candidate
becomes a real image pushed to a real CNCF Distribution registry, in a repository of its own case
(``<case>/<repository>``), and the registry is collected the way a user collects it:

- every image is pushed before the first collection, with its config ``created`` set to the push
  time the peer's case gives it (``NOW - age``): an image already there at the first look at its
  repository is dated by ``created`` (repoaudit's push-time rule), so the plan sees exactly the
  peer's push times;
- an untagged candidate is pushed with a temporary tag, collected once, then left untagged by
  pushing a throw-away image onto that tag and deleting the throw-away (Distribution drops the tag
  with it): the next collection sees an untagged revision, as a registry holds one;
- a tag pushed onto an existing image (``retag``) happens between the two collections, so its first
  sighting is the second snapshot.

Two collections: ``FIRST`` (a minute before ``NOW``) and ``NOW``, the plan's reference time.
Tests then call ``audit.retention(policy, include=estate.include(case))`` and compare candidates by
the case's own image names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pusher import Pusher, layer_bytes
from registry import RegistryServer

import repoaudit

NOW = datetime(2025, 6, 1, 12, 0, 0)
FIRST = NOW - timedelta(minutes=1)


@dataclass(frozen=True)
class Candidate:
    """One image of a case: ``name`` is how the case refers to it; ``age`` its push time before ``NOW``."""

    name: str
    tags: tuple[str, ...] = ()
    age: timedelta = timedelta(days=1)
    repository: str = "repo"
    # Tags pushed onto this image after the first collection (seen first at NOW).
    retag: tuple[str, ...] = ()


@dataclass
class Estate:
    db: Path
    digests: dict[tuple[str, str], str] = field(default_factory=dict)  # (case, name) -> digest
    paths: dict[str, set[str]] = field(default_factory=dict)  # case -> its repositories

    def names(self, plan, case: str) -> set[str]:
        """The case's images among the plan's candidates."""
        by_digest = {d: n for (c, n), d in self.digests.items() if c == case}
        frame = plan.candidates
        return {by_digest[d] for r, d in zip(frame["repository"], frame["digest"])
                if r in self.paths[case] and d in by_digest}

    def everything(self, case: str) -> set[str]:
        return {n for (c, n) in self.digests if c == case}

    def include(self, case: str) -> list[str]:
        """The --repo globs of one case's repositories."""
        return sorted(self.paths[case])


def repository_path(case: str, repository: str, plain: bool = False) -> str:
    """``<case>/<repository>``; a repository given with its own project (``library/harbor``) gets
    the project ``<case>-library``, so peers that match the name without its project see ``harbor``.
    ``plain``: the repository as written (for peers that match the whole path, such as package names)."""
    if plain:
        return repository
    return f"{case}-{repository}" if "/" in repository else f"{case}/{repository}"


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build(work: Path, cases: dict[str, list[Candidate]], plain: tuple[str, ...] = ()) -> Estate:
    """Push every case's candidates to one registry and collect it at ``FIRST`` and ``NOW``; the
    cases named in ``plain`` keep their repository names as written (they must not clash)."""
    estate = Estate(work / "audit.duckdb")
    with RegistryServer(work / "registry") as server, Pusher(server.url) as pusher, \
            repoaudit.open(estate.db) as audit:
        pending_untag = []
        for case, candidates in cases.items():
            for c in candidates:
                repo = repository_path(case, c.repository, case in plain)
                estate.paths.setdefault(case, set()).add(repo)
                tags = c.tags or (f"tmp-{c.name}",)
                image = pusher.push_image(repo, tags, layers=[layer_bytes(f"{case}/{c.name}", 256)],
                                          created=_stamp(NOW - c.age))
                estate.digests[(case, c.name)] = image.digest
                if not c.tags:
                    pending_untag.append((repo, tags[0]))
        audit.collect(server.url, progress=False, started_at=FIRST)
        for repo, tag in pending_untag:
            filler = pusher.push_image(repo, [tag], layers=[layer_bytes(f"filler/{repo}/{tag}", 64)],
                                       created=_stamp(FIRST))
            pusher.delete_manifest(repo, filler.digest)
        for case, candidates in cases.items():
            for c in candidates:
                for tag in c.retag:
                    repo = repository_path(case, c.repository, case in plain)
                    pusher.push_manifest(repo, tag, *_manifest_of(pusher, repo, c))
        audit.collect(server.url, progress=False, started_at=NOW)
    return estate


def _manifest_of(pusher: Pusher, repo: str, c: Candidate) -> tuple[bytes, str]:
    response = pusher.client.get(f"/v2/{repo}/manifests/{c.tags[0]}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    response.raise_for_status()
    return response.content, response.headers["content-type"]
