"""``retention apply``: delete a plan's images from the live registry, checking each one first.

A plan file is input repoaudit does not control, so before any request is sent the whole plan is
verified (:func:`repoaudit.retention.verify.verify_plan`: its hash and signature, the name and digest
grammars, the snapshot, the embedded policy evaluated again, the URL) and refused, naming the first
mismatch.

A plan is computed from a snapshot; the registry may have moved on since. So for
every repository with candidates the live tags are read again (``tags/list`` and
one ``HEAD`` per tag) and a candidate is skipped, and reported, when:

* the tags pointing at its digest are not exactly the ones the plan saw (a tag was
  added, moved onto it or away from it), because deleting a manifest by digest
  deletes every tag that points at it;
* a current workload runs it (``deployed_manifests``, when the database has it);
* an untagged candidate is already gone (``not found``).

Images are deleted by digest (``DELETE /v2/<name>/manifests/<digest>``), then the
index children that the plan said die with them, but only when every index of the
plan holding that child was deleted and no live tag points at it. Each outcome
(deleted, skipped, not found, failed) is recorded in the ``deletions`` table as
soon as its repository is done. Without ``yes`` nothing is deleted or recorded: the
same checks run and the outcomes read ``would delete``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import duckdb
import pandas as pd
import pyarrow as pa

from repoaudit.errors import (
    AuthenticationError,
    ConfigError,
    LayoutError,
    NotFoundError,
    PlanVerificationError,
    RegistryHTTPError,
    RepoauditError,
)
from repoaudit.model.options import ClientOptions, Target, parse_target
from repoaudit.model.timestamps import utcnow
from repoaudit.retention.verify import PlanTarget, deployed_now, fmt_tags, verify_plan
from repoaudit.sources.base import Source
from repoaudit.sources.factory import open_source
from repoaudit.store.database import insert_arrow

__all__ = ["ApplyResult", "apply_plan", "parse_registry_urls"]

OUTCOME_COLUMNS = ["registry", "repository", "digest", "role", "tags", "live_tags", "outcome", "reason"]


@dataclass
class ApplyResult:
    """What ``apply`` did (or, in a dry run, would do): one row per image and index child."""

    policy: str
    dry_run: bool
    outcomes: pd.DataFrame

    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.outcomes["outcome"].value_counts().items()}

    @property
    def failed(self) -> int:
        return int((self.outcomes["outcome"] == "failed").sum())


async def _live_tags(source: Source, repository: str) -> dict[str, set[str]]:
    """digest -> the tags pointing at it now."""
    try:
        tags = await source.list_tags(repository)
    except NotFoundError:
        return {}

    async def resolve(tag: str) -> str | None:
        try:
            digest = await source.head_manifest(repository, tag)
            if digest is None:  # some registries omit Docker-Content-Digest on HEAD
                digest = (await source.get_manifest(repository, tag)).digest
            return digest
        except NotFoundError:
            return None  # deleted between tags/list and HEAD

    digests = await asyncio.gather(*(resolve(t) for t in tags))
    live: dict[str, set[str]] = {}
    for tag, digest in zip(tags, digests):
        if digest:
            live.setdefault(digest, set()).add(tag)
    return live


async def _exists(source: Source, repository: str, digest: str) -> bool:
    try:
        await source.head_manifest(repository, digest)
        return True
    except NotFoundError:
        return False


class _Fatal(Exception):
    def __init__(self, error: RepoauditError):
        self.error = error


async def _delete(source: Source, registry: str, repository: str, digest: str) -> tuple[str, str | None]:
    try:
        await source.delete_manifest(repository, digest)
        return "deleted", None
    except NotFoundError:
        return "not found", "already deleted"
    except RegistryHTTPError as exc:
        if exc.status == 405:
            raise _Fatal(RegistryHTTPError(f"deletes are disabled on {registry} (storage.delete.enabled)",
                                           status=405, codes=exc.codes)) from None
        return "failed", str(exc)
    except (LayoutError, AuthenticationError) as exc:
        raise _Fatal(exc) from None
    except RepoauditError as exc:
        return "failed", str(exc)


def _raise_first(results: list) -> None:
    # Every task has finished (gather with return_exceptions), so the rows of deletions that did
    # happen are in place before a fatal error stops the run.
    errors = [r for r in results if isinstance(r, BaseException)]
    fatal = [e for e in errors if isinstance(e, _Fatal)]
    if fatal:
        raise fatal[0]
    if errors:
        raise errors[0]


async def _apply_repository(source: Source, registry: str, repository: str, cands: list[dict], yes: bool,
                            deployed: set[tuple[str, str, str]], rows: list[dict]) -> None:
    live = await _live_tags(source, repository)
    done: dict[str, str] = {}  # candidate digest -> outcome

    def row(digest, role, tags, live_tags, outcome, reason=None):
        rows.append({"registry": registry, "repository": repository, "digest": digest, "role": role,
                     "tags": sorted(tags), "live_tags": sorted(live_tags), "outcome": outcome, "reason": reason})

    async def one(cand: dict) -> None:
        digest, planned = cand["digest"], set(cand.get("tags") or [])
        now = live.get(digest, set())
        if planned != now:
            outcome, reason = "skipped", (f"tags changed since the plan (planned: {fmt_tags(planned)}; "
                                          f"now: {fmt_tags(now)})")
        elif (registry, repository, digest) in deployed:
            outcome, reason = "skipped", "deployed now (deployed_images)"
        elif not planned and not await _exists(source, repository, digest):
            outcome, reason = "not found", "already deleted"
        elif not yes:
            outcome, reason = "would delete", None
        else:
            outcome, reason = await _delete(source, registry, repository, digest)
        done[digest] = outcome
        row(digest, "image", planned, now, outcome, reason)

    _raise_first(await asyncio.gather(*(one(c) for c in cands), return_exceptions=True))

    parents: dict[str, list[str]] = {}
    for cand in cands:
        for child in cand.get("children") or []:
            parents.setdefault(child, []).append(cand["digest"])
    gone = {"deleted", "would delete", "not found"}

    async def child(digest: str, holders: list[str]) -> None:
        now = live.get(digest, set())
        kept = [h for h in holders if done.get(h) not in gone]
        if kept:
            outcome, reason = "skipped", f"its index {kept[0]} was not deleted"
        elif now:
            outcome, reason = "skipped", f"tagged now ({fmt_tags(now)})"
        elif not yes:
            outcome, reason = "would delete", None
        else:
            outcome, reason = await _delete(source, registry, repository, digest)
        row(digest, "index child", (), now, outcome, reason)

    _raise_first(await asyncio.gather(*(child(d, h) for d, h in sorted(parents.items())), return_exceptions=True))

    async def referrer(digest: str, subject: str) -> None:
        # Signatures, attestations, SBOMs and the fallback index go once their image is gone; a tag that does
        # not name that image (someone tagged the signature on purpose) keeps it.
        now = live.get(digest, set())
        other = sorted(t for t in now if t != f"sha256-{subject[7:]}" and not t.startswith(f"sha256-{subject[7:]}."))
        if done.get(subject) not in gone:
            outcome, reason = "skipped", f"its image {subject} was not deleted"
        elif other:
            outcome, reason = "skipped", f"tagged now ({fmt_tags(other)})"
        elif not yes:
            outcome, reason = "would delete", None
        else:
            outcome, reason = await _delete(source, registry, repository, digest)
        row(digest, "referrer", (), now, outcome, reason)

    referrers = {d: cand["digest"] for cand in cands for d in cand.get("referrers") or []}
    _raise_first(await asyncio.gather(*(referrer(d, s) for d, s in sorted(referrers.items())),
                                      return_exceptions=True))


def _record(con: duckdb.DuckDBPyConnection, rows: list[dict], context: dict) -> None:
    if not rows:
        return
    now = utcnow()
    data = {
        "applied_at": pa.array([now] * len(rows), pa.timestamp("us")),
        "registry": pa.array([r["registry"] for r in rows], pa.string()),
        "repository": pa.array([r["repository"] for r in rows], pa.string()),
        "digest": pa.array([r["digest"] for r in rows], pa.string()),
        "tags": pa.array([r["tags"] for r in rows], pa.list_(pa.string())),
        "role": pa.array([r["role"] for r in rows], pa.string()),
        "outcome": pa.array([r["outcome"] for r in rows], pa.string()),
        "reason": pa.array([r["reason"] for r in rows], pa.string()),
        "policy": pa.array([context["policy"]] * len(rows), pa.string()),
        "plan": pa.array([context["plan"]] * len(rows), pa.string()),
        "plan_sha256": pa.array([context["plan_sha256"]] * len(rows), pa.string()),
        "plan_snapshot_id": pa.array([context["snapshot_ids"].get(r["registry"]) for r in rows], pa.int64()),
    }
    insert_arrow(con, "deletions", pa.table(data))


def parse_registry_urls(values: "list[str] | tuple[str, ...]") -> dict[str, str]:
    """``--registry-url`` values: ``NAME=URL``, or a bare URL (key ``""``: the plan's only registry)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or "://" in name:
            name, url = "", value
        if name in out:
            raise ConfigError(f"--registry-url {value!r}: {'a second bare URL' if not name else 'given twice'}")
        target = parse_target(url)
        if target.kind != "registry":
            raise ConfigError(f"--registry-url {value!r}: want an http(s) registry URL")
        out[name] = target.url
    return out


# -- applying --------------------------------------------------------------------------------------


async def _check_catalog(source: Source, target: PlanTarget, repositories: list[str]) -> None:
    held = set(await source.list_repositories())
    missing = [r for r in repositories if r not in held]
    if missing:
        raise PlanVerificationError(f"{target.url}: repository {missing[0]} of the plan is not in its catalog; "
                                    f"--registry-url must name a registry holding what snapshot "
                                    f"{target.snapshot_id} of {target.registry} held")


async def apply_plan(con: duckdb.DuckDBPyConnection, plan: "str | Path | dict", *, policy: str | None = None,
                     yes: bool = False,
                     client_options: "ClientOptions | Callable[[Target], ClientOptions] | None" = None,
                     transport: Any = None, registry_urls: "dict[str, str] | None" = None,
                     verify_key: "str | Path | None" = None) -> ApplyResult:
    """Verify a plan (:func:`verify_plan`), then apply one policy's plan; a dry run unless ``yes``.

    ``client_options`` is used for every registry, or called with a
    :class:`~repoaudit.model.options.Target` named by the URL's host (to look up that host's
    credentials: never the plan's registry name, which a plan could pair with any URL).

    Raises :class:`~repoaudit.errors.PlanVerificationError` before any request when
    the plan does not verify, and :class:`~repoaudit.errors.RegistryHTTPError`
    (status 405) when the registry has deletes disabled, after recording what was
    already done.
    """
    verified = verify_plan(con, plan, policy=policy, registry_urls=registry_urls, verify_key=verify_key)
    by_repo = verified.candidates
    deployed = deployed_now(con, sorted({reg for reg, _ in by_repo}))
    context = {"policy": verified.policy, "plan": verified.where,
               "plan_sha256": verified.plan_sha256,
               "snapshot_ids": {r: t.snapshot_id for r, t in verified.targets.items()}}
    rows: list[dict] = []
    sources: dict[str, Source] = {}
    try:
        for registry, target in sorted(verified.targets.items()):
            # Named by the URL, so credentials (looked up by target.name) follow the host they are sent to.
            url_target = parse_target(target.url)
            kw = {"transport": transport} if transport is not None and url_target.kind == "registry" else {}
            options = client_options(url_target) if callable(client_options) else client_options
            sources[registry] = open_source(url_target, options, **kw)
            if target.explicit:
                await _check_catalog(sources[registry], target, sorted({r for g, r in by_repo if g == registry}))
        for (registry, repository), cands in sorted(by_repo.items()):
            repo_rows: list[dict] = []
            fatal = None
            try:
                await _apply_repository(sources[registry], registry, repository, cands, yes, deployed, repo_rows)
            except _Fatal as exc:
                fatal = exc.error
            finally:
                rows.extend(repo_rows)
                if yes:
                    _record(con, repo_rows, context)
            if fatal is not None:
                raise fatal
    finally:
        for source in sources.values():
            await source.aclose()
    frame = pd.DataFrame(rows, columns=OUTCOME_COLUMNS)
    return ApplyResult(policy=verified.policy, dry_run=not yes, outcomes=frame)
