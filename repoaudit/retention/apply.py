"""``retention apply``: delete a plan's images from the live registry, checking each one first.

A plan file is input repoaudit does not control: anyone who can edit it could aim
the one destructive command at a kept image, another repository or another host.
So before any request is sent the whole plan is verified (:func:`verify_plan`), and
refused, naming the first mismatch, unless:

* its ``plan_sha256`` matches its content, and its signature verifies when a key is
  required (:mod:`repoaudit.retention.signing`);
* every candidate's repository follows the distribution name grammar and every
  digest is ``algorithm:hex`` of the right length, so no URL is built from a
  string that could climb out of ``/v2/<name>/manifests/``;
* each snapshot the plan names is in the database, belongs to the registry the plan
  says, and holds each candidate's repository (read completely), digest and tags;
* the policy document the plan embeds, evaluated again on the registry's latest
  snapshot with the plan's reference time, still selects every candidate, and every
  index child listed still dies with it (a candidate deployed now is let through:
  it is skipped below);
* the registry is reached at the URL the database recorded for that snapshot, never
  the plan's ``source``; another URL must be given explicitly (``registry_urls``) and
  must list every planned repository in its catalog.

Credentials are chosen by the host of that URL, never by the plan's registry name.

A plan is computed from a snapshot; the registry may have moved on since. So for
every repository with candidates the live tags are read again (``tags/list`` and
one ``HEAD`` per tag) and a candidate is skipped, and reported, when:

* the tags pointing at its digest are not exactly the ones the plan saw (a tag was
  added, moved onto it or away from it), because deleting a manifest by digest
  deletes every tag that points at it;
* a current workload runs it (``deployed_images``, when the database has it);
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
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import duckdb
import httpx
import pandas as pd
import pyarrow as pa

from repoaudit.errors import (
    AuthenticationError,
    ConfigError,
    LayoutError,
    NotFoundError,
    PlanVerificationError,
    PolicyError,
    RegistryHTTPError,
    RepoauditError,
)
from repoaudit.loader import parse_document, read_text
from repoaudit.model.options import ClientOptions, Target, parse_target
from repoaudit.model.reference import validate_digest
from repoaudit.retention.engine import plan_retention
from repoaudit.retention.formats import load_policy
from repoaudit.retention.plan import PLAN_VERSION
from repoaudit.retention.policy import Policy
from repoaudit.retention.signing import plan_digest, verify_signature
from repoaudit.sources.base import Source
from repoaudit.sources.factory import open_source
from repoaudit.store.database import insert_arrow, relation_exists, utcnow

__all__ = ["ApplyResult", "VerifiedPlan", "apply_plan", "load_plan", "parse_registry_urls", "verify_plan"]

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


def load_plan(plan: "str | Path | dict") -> tuple[dict, str, str]:
    """(document, name for the record, sha256) of a plan file or an already loaded plan document."""
    if isinstance(plan, dict):
        text = json.dumps(plan, sort_keys=True)
        return plan, "<document>", hashlib.sha256(text.encode()).hexdigest()
    path = Path(plan)
    text = read_text(path, kind="plan")
    doc = parse_document(text, name=str(path), kind="plan", fmt="json")
    if not isinstance(doc, dict) or doc.get("repoaudit_plan") != PLAN_VERSION:
        raise ConfigError(f"{path}: not a repoaudit plan (want 'repoaudit_plan': {PLAN_VERSION}; "
                          "write one with 'repoaudit retention plan -o FILE')")
    return doc, str(path), hashlib.sha256(text.encode()).hexdigest()


def _select(doc: dict, where: str, policy: str | None) -> dict:
    plans = doc.get("plans") or []
    if not isinstance(plans, list) or not all(isinstance(p, dict) and isinstance(p.get("policy"), dict)
                                              for p in plans):
        raise PlanVerificationError(f"{where}: 'plans' is not a list of policy plans")
    names = [p["policy"].get("name") for p in plans]
    if policy is None:
        if len(plans) != 1:
            raise ConfigError(f"{where} holds {len(plans)} policies ({', '.join(map(str, names))}); "
                              "choose one with --policy NAME")
        return plans[0]
    for p, name in zip(plans, names):
        if name == policy:
            return p
    raise ConfigError(f"{where} has no policy {policy!r} (valid: {', '.join(map(str, names))})")


def _deployed_now(con: duckdb.DuckDBPyConnection, registries: list[str]) -> set[tuple[str, str, str]]:
    if not relation_exists(con, "deployed_images") or not registries:
        return set()
    rows = con.execute("""
WITH d AS (SELECT DISTINCT registry, repository, digest FROM deployed_images
           WHERE digest IS NOT NULL AND list_contains($registries, registry))
SELECT registry, repository, digest FROM d
UNION
SELECT d.registry, d.repository, c.index_digest
FROM d JOIN manifest_children c ON c.registry = d.registry AND c.child_digest = d.digest""",
                       {"registries": registries}).fetchall()
    return {tuple(r) for r in rows}


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


def _fmt_tags(tags: Any) -> str:
    return ", ".join(sorted(tags)) or "none"


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
            outcome, reason = "skipped", (f"tags changed since the plan (planned: {_fmt_tags(planned)}; "
                                          f"now: {_fmt_tags(now)})")
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
            outcome, reason = "skipped", f"tagged now ({_fmt_tags(now)})"
        elif not yes:
            outcome, reason = "would delete", None
        else:
            outcome, reason = await _delete(source, registry, repository, digest)
        row(digest, "index child", (), now, outcome, reason)

    _raise_first(await asyncio.gather(*(child(d, h) for d, h in sorted(parents.items())), return_exceptions=True))


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


# -- verification ---------------------------------------------------------------------------------

# The distribution spec's grammar (distribution/reference), ASCII only: Python's \w would admit any letter.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
_NAME_MAX = 255


@dataclass(frozen=True)
class _Target:
    registry: str
    url: str
    snapshot_id: int
    explicit: bool  # given as registry_urls, so its catalog must be checked before use


@dataclass
class VerifiedPlan:
    """A plan that passed :func:`verify_plan`: what apply may act on, and where."""

    policy: str
    where: str  # the plan file, or "<document>"
    plan_sha256: str
    candidates: dict[tuple[str, str], list[dict]]  # (registry, repository) -> candidates
    targets: dict[str, _Target]


def _short(digest: str) -> str:
    return digest if len(digest) <= 19 + 3 else f"{digest[:19]}…"


def _fmt_candidate(i: int, cand: dict) -> str:
    return f"candidate {i + 1} ({cand['repository']}@{_short(cand['digest'])})"


def _repository_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return "is not a repository name"
    if len(name) > _NAME_MAX:
        return f"is longer than {_NAME_MAX} characters"
    if not all(_COMPONENT.fullmatch(c) for c in name.split("/")):
        return ("is not a repository name (lowercase components of letters and digits joined by '.', '_', "
                "'__' or '-', separated by '/')")
    return None


def _digest_problem(digest: Any) -> str | None:
    if not isinstance(digest, str):
        return "is not a string"
    try:
        validate_digest(digest)
    except ConfigError as exc:
        return getattr(exc, "reason", str(exc))
    return None


def _unchanged_by_httpx(path: str) -> bool:
    # httpx removes dot segments when it builds a request URL; the grammars above leave none, and this
    # guards that promise where the URL is made, so a future relaxation cannot reopen the hole.
    return httpx.URL("http://registry.invalid" + path).raw_path.decode("ascii") == path


def _check_shape(chosen: dict, where: str) -> list[dict]:
    cands = chosen.get("candidates")
    if not isinstance(cands, list):
        raise PlanVerificationError(f"{where}: the policy's 'candidates' is not a list")
    for i, cand in enumerate(cands):
        if not isinstance(cand, dict):
            raise PlanVerificationError(f"{where}: candidate {i + 1} is not an object")
        for key in ("registry", "repository", "digest"):
            if not isinstance(cand.get(key), str):
                raise PlanVerificationError(f"{where}: candidate {i + 1}: '{key}' is missing or not a string")
        label = f"candidate {i + 1} ({cand['repository']!r})"
        problem = _repository_problem(cand["repository"])
        if problem:
            raise PlanVerificationError(f"{where}: {label}: repository {cand['repository']!r} {problem}")
        problem = _digest_problem(cand["digest"])
        if problem:
            raise PlanVerificationError(f"{where}: {label}: digest {cand['digest']!r} refused: {problem}")
        for key in ("tags", "children"):
            value = cand.get(key, [])
            if value is None:
                value = cand[key] = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PlanVerificationError(f"{where}: {label}: '{key}' is not a list of strings")
        for tag in cand["tags"]:
            if not _TAG.fullmatch(tag):
                raise PlanVerificationError(f"{where}: {label}: tag {tag!r} is not a valid tag")
        for child in cand["children"]:
            problem = _digest_problem(child)
            if problem:
                raise PlanVerificationError(f"{where}: {label}: index child {child!r} refused: {problem}")
        for ref in [cand["digest"], *cand["children"]]:
            if not _unchanged_by_httpx(f"/v2/{cand['repository']}/manifests/{ref}"):
                raise PlanVerificationError(f"{where}: {label}: the request URL for {ref!r} would be rewritten")
    return cands


def _plan_snapshots(doc: dict, where: str) -> dict[str, tuple[int, dict]]:
    snaps = doc.get("snapshots")
    if not isinstance(snaps, list):
        raise PlanVerificationError(f"{where}: 'snapshots' is not a list")
    out: dict[str, tuple[int, dict]] = {}
    for i, snap in enumerate(snaps):
        if (not isinstance(snap, dict) or not isinstance(snap.get("registry"), str)
                or type(snap.get("snapshot_id")) is not int):
            raise PlanVerificationError(f"{where}: snapshots[{i}] wants a 'registry' string and a "
                                        "'snapshot_id' integer")
        if snap["registry"] in out:
            raise PlanVerificationError(f"{where}: snapshots[{i}] names registry {snap['registry']} a second time")
        out[snap["registry"]] = (i, snap)
    return out


def _reference_time(doc: dict, where: str, started_at: datetime) -> datetime:
    as_of = doc.get("as_of")
    if as_of is None:
        return started_at
    try:
        stamp = pd.Timestamp(as_of)
        # Snapshot times are stored as naive UTC.
        return (stamp.tz_convert(None) if stamp.tzinfo else stamp).to_pydatetime()
    except (ValueError, TypeError):
        raise PlanVerificationError(f"{where}: as_of {as_of!r} is not a time") from None


def _embedded_policy(chosen: dict, where: str) -> Policy:
    meta = chosen.get("policy") if isinstance(chosen.get("policy"), dict) else {}
    name = meta.get("name")
    if meta.get("document") is None:
        raise PlanVerificationError(f"{where}: policy {name!r} does not embed its document (a plan from an older "
                                    "repoaudit, or a policy built in code): make a new plan")
    try:
        return load_policy(meta["document"], format=meta.get("format"), name=name)
    except PolicyError as exc:
        raise PlanVerificationError(f"{where}: the embedded policy {name!r} is invalid: {exc}") from None


def _check_snapshot(con: duckdb.DuckDBPyConnection, where: str, registry: str, index: int, snap: dict,
                    registry_urls: dict[str, str]) -> tuple[_Target, datetime]:
    sid = snap["snapshot_id"]
    row = con.execute("SELECT registry, source, status, started_at FROM snapshots WHERE snapshot_id = ?",
                      [sid]).fetchone()
    if row is None:
        raise PlanVerificationError(f"{where}: snapshots[{index}]: snapshot {sid} is not in this database")
    db_registry, db_source, status, started_at = row
    if db_registry != registry:
        raise PlanVerificationError(f"{where}: snapshots[{index}]: snapshot {sid} is of registry {db_registry}, "
                                    f"not {registry}")
    if status not in ("complete", "partial"):
        raise PlanVerificationError(f"{where}: snapshots[{index}]: snapshot {sid} of {registry} is {status}; "
                                    "no plan is made from it")
    explicit = registry_urls.get(registry)
    if explicit is None and snap.get("source") != db_source:
        raise PlanVerificationError(f"{where}: snapshots[{index}]: source {snap.get('source')!r} is not "
                                    f"{db_source}, where snapshot {sid} of {registry} was collected; to apply "
                                    "to another URL, pass it with --registry-url")
    return _Target(registry, explicit or db_source, sid, explicit is not None), started_at


def _check_in_snapshot(con: duckdb.DuckDBPyConnection, where: str, target: _Target, started_at: datetime,
                       cands: list[tuple[int, dict]]) -> None:
    """Each candidate's repository (read completely), digest and tags are what the plan's snapshot holds."""
    sid, registry = target.snapshot_id, target.registry
    repos = sorted({c["repository"] for _i, c in cands})
    status = dict(con.execute("SELECT repository, status FROM repositories WHERE snapshot_id = ? AND "
                              "list_contains(?, repository)", [sid, repos]).fetchall())
    tagged = {(r, d): sorted(t) for r, d, t in con.execute(
        "SELECT repository, digest, list(tag) FROM tags WHERE snapshot_id = ? AND list_contains(?, repository) "
        "GROUP BY ALL", [sid, repos]).fetchall()}
    seen = {tuple(r) for r in con.execute(
        "SELECT repository, digest FROM repository_links WHERE registry = ? AND list_contains(?, repository) "
        "AND first_seen <= ?", [registry, repos, started_at]).fetchall()}
    for i, cand in cands:
        label, repo, digest = _fmt_candidate(i, cand), cand["repository"], cand["digest"]
        in_snapshot = f"in snapshot {sid} of {registry}"
        if repo not in status:
            raise PlanVerificationError(f"{where}: {label}: repository {repo} is not {in_snapshot}")
        if status[repo] != "ok":
            raise PlanVerificationError(f"{where}: {label}: repository {repo} is {status[repo]} {in_snapshot}, "
                                        "which plans take as kept")
        planned, actual = sorted(cand["tags"]), tagged.get((repo, digest))
        if planned and actual is None:
            raise PlanVerificationError(f"{where}: {label}: digest is not tagged in {repo} {in_snapshot} "
                                        f"(plan says tags {_fmt_tags(planned)})")
        if actual is not None and planned != actual:
            raise PlanVerificationError(f"{where}: {label}: tags {_fmt_tags(planned)} are not the digest's tags "
                                        f"{in_snapshot} ({_fmt_tags(actual)})")
        if not planned and (repo, digest) not in seen:
            raise PlanVerificationError(f"{where}: {label}: digest was never seen in {repo} up to snapshot {sid}")


def _check_selected(con: duckdb.DuckDBPyConnection, where: str, policy: Policy, target: _Target,
                    as_of: datetime, cands: list[tuple[int, dict]], deployed: set[tuple[str, str, str]]) -> None:
    """The embedded policy, evaluated again, selects every candidate with at least the children the plan lists."""
    registry = target.registry
    latest = con.execute("SELECT snapshot_id FROM latest_snapshot WHERE registry = ?", [registry]).fetchone()[0]
    try:
        again = plan_retention(con, [policy], registry=registry, as_of=as_of, blobs=False).candidates
    except (PolicyError, ConfigError) as exc:
        raise PlanVerificationError(f"{where}: policy {policy.name} cannot be evaluated again: {exc}") from None
    derived = {(r, d): set(ch) for r, d, ch in zip(again["repository"], again["digest"], again["children"])}
    on = f"snapshot {latest} of {registry}" + ("" if latest == target.snapshot_id else
                                                 f" (newer than the plan's snapshot {target.snapshot_id})")
    for i, cand in cands:
        key = (cand["repository"], cand["digest"])
        if key not in derived:
            if (registry, *key) in deployed:
                continue  # kept now because it runs; the apply loop skips and reports it
            raise PlanVerificationError(f"{where}: {_fmt_candidate(i, cand)}: policy {policy.name} does not "
                                        f"select it on {on}")
        extra = sorted(set(cand["children"]) - derived[key])
        if extra:
            raise PlanVerificationError(f"{where}: {_fmt_candidate(i, cand)}: index child {_short(extra[0])} does "
                                        f"not die with it on {on}")


def verify_plan(con: duckdb.DuckDBPyConnection, plan: "str | Path | dict", *, policy: str | None = None,
                registry_urls: "dict[str, str] | None" = None,
                verify_key: "str | Path | None" = None) -> VerifiedPlan:
    """Check a plan against itself and the database (see the module docstring); sends nothing.

    ``registry_urls`` maps a registry name to the URL to apply at instead of the one
    the database recorded. Raises :class:`~repoaudit.errors.PlanVerificationError`
    naming the first mismatch.
    """
    doc, where, _file_sha = load_plan(plan)
    recorded = doc.get("plan_sha256")
    if not isinstance(recorded, str):
        raise PlanVerificationError(f"{where}: no plan_sha256 (a plan from an older repoaudit, or stripped): "
                                    "make a new plan with 'repoaudit retention plan -o FILE'")
    try:
        actual = plan_digest(doc)
    except ValueError as exc:  # NaN or Infinity, which no plan writes
        raise PlanVerificationError(f"{where}: not a plan repoaudit wrote ({exc})") from None
    if actual != recorded:
        raise PlanVerificationError(f"{where}: plan_sha256 does not match the plan's content: it was edited after "
                                    "it was written")
    if verify_key is not None:
        verify_signature(doc, verify_key, where)
    chosen = _select(doc, where, policy)
    name = chosen["policy"].get("name")
    cands = _check_shape(chosen, where)
    snapshots = _plan_snapshots(doc, where)
    registry_urls = dict(registry_urls or {})
    by_registry: dict[str, list[tuple[int, dict]]] = {}
    for i, cand in enumerate(cands):
        by_registry.setdefault(cand["registry"], []).append((i, cand))
    for registry, entries in by_registry.items():
        if registry not in snapshots:
            raise PlanVerificationError(f"{where}: {_fmt_candidate(*entries[0])}: registry {registry} is not among "
                                        "the plan's snapshots")
    if "" in registry_urls:
        if len(by_registry) != 1:
            raise PlanVerificationError(f"{where}: policy {name} has candidates in {len(by_registry)} registries; "
                                        "name the one to redirect: --registry-url NAME=URL")
        registry_urls[next(iter(by_registry))] = registry_urls.pop("")
    unknown = sorted(set(registry_urls) - set(by_registry))
    if unknown:
        raise PlanVerificationError(f"{where}: --registry-url names {unknown[0]}, which has no candidates in "
                                    f"policy {name} (registries: {', '.join(sorted(by_registry)) or 'none'})")
    embedded = _embedded_policy(chosen, where) if cands else None
    deployed = _deployed_now(con, sorted(by_registry))
    targets: dict[str, _Target] = {}
    for registry, entries in sorted(by_registry.items()):
        index, snap = snapshots[registry]
        target, started_at = _check_snapshot(con, where, registry, index, snap, registry_urls)
        _check_in_snapshot(con, where, target, started_at, entries)
        _check_selected(con, where, embedded, target, _reference_time(doc, where, started_at), entries, deployed)
        targets[registry] = target
    grouped: dict[tuple[str, str], list[dict]] = {}
    for cand in cands:
        grouped.setdefault((cand["registry"], cand["repository"]), []).append(cand)
    return VerifiedPlan(policy=name, where=where, plan_sha256=recorded, candidates=grouped, targets=targets)


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


async def _check_catalog(source: Source, target: _Target, repositories: list[str]) -> None:
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
    deployed = _deployed_now(con, sorted({reg for reg, _ in by_repo}))
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
