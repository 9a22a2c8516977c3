"""``retention apply``: delete a plan's images from the live registry, checking each one first.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import duckdb
import pandas as pd
import pyarrow as pa

from .config import ClientOptions, Target, parse_target
from .errors import (AuthenticationError, ConfigError, LayoutError, NotFoundError, RegistryHTTPError,
                     RepoauditError)
from .retention import PLAN_VERSION
from .sources import Source, open_source
from .store import utcnow

__all__ = ["ApplyResult", "apply_plan", "load_plan"]

OUTCOME_COLUMNS = ["registry", "repository", "digest", "role", "tags", "live_tags", "outcome", "reason"]
_DELETION_COLUMNS = ["applied_at", "registry", "repository", "digest", "tags", "role", "outcome", "reason", "policy",
                     "plan", "plan_sha256", "plan_snapshot_id"]


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
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read plan: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a plan (invalid JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or doc.get("repoaudit_plan") != PLAN_VERSION:
        raise ConfigError(f"{path}: not a repoaudit plan (want 'repoaudit_plan': {PLAN_VERSION}; "
                          "write one with 'repoaudit retention plan -o FILE')")
    return doc, str(path), hashlib.sha256(text.encode()).hexdigest()


def _select(doc: dict, where: str, policy: str | None) -> dict:
    plans = doc.get("plans") or []
    names = [p.get("policy", {}).get("name") for p in plans]
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
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'deployed_images'"
                         ).fetchone()[0]
    if not exists or not registries:
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
    con.register("_ra_deletions_batch", pa.table(data))
    try:
        con.execute(f"INSERT INTO deletions ({', '.join(_DELETION_COLUMNS)}) "
                    f"SELECT {', '.join(_DELETION_COLUMNS)} FROM _ra_deletions_batch")
    finally:
        con.unregister("_ra_deletions_batch")


async def apply_plan(con: duckdb.DuckDBPyConnection, plan: "str | Path | dict", *, policy: str | None = None,
                     yes: bool = False,
                     client_options: "ClientOptions | Callable[[Target], ClientOptions] | None" = None,
                     transport: Any = None) -> ApplyResult:
    """Apply one policy's plan (see the module docstring); a dry run unless ``yes``.

    ``client_options`` is used for every registry, or called with each registry's
    :class:`~repoaudit.config.Target` (to look up that registry's credentials).

    Raises :class:`~repoaudit.errors.RegistryHTTPError` (status 405) when the
    registry has deletes disabled, after recording what was already done.
    """
    doc, where, sha = load_plan(plan)
    chosen = _select(doc, where, policy)
    name = chosen.get("policy", {}).get("name")
    snapshots = {s["registry"]: s for s in doc.get("snapshots") or []}
    by_repo: dict[tuple[str, str], list[dict]] = {}
    for cand in chosen.get("candidates") or []:
        by_repo.setdefault((cand["registry"], cand["repository"]), []).append(cand)
    missing = sorted({reg for reg, _ in by_repo} - set(snapshots))
    if missing:
        raise ConfigError(f"{where}: candidates in {missing[0]}, which the plan's snapshots do not name")
    deployed = _deployed_now(con, sorted({reg for reg, _ in by_repo}))
    context = {"policy": name, "plan": where, "plan_sha256": sha,
               "snapshot_ids": {r: s.get("snapshot_id") for r, s in snapshots.items()}}
    rows: list[dict] = []
    sources: dict[str, Source] = {}
    try:
        for (registry, repository), cands in sorted(by_repo.items()):
            if registry not in sources:
                snap = snapshots[registry]
                target = parse_target(snap["source"], registry)
                kw = {"transport": transport} if transport is not None and target.kind == "registry" else {}
                options = client_options(target) if callable(client_options) else client_options
                sources[registry] = open_source(target, options, **kw)
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
    return ApplyResult(policy=name, dry_run=not yes, outcomes=frame)
