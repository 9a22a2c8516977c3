"""Verifying a plan before ``retention apply`` acts on it; nothing is sent to a registry.

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
  apply skips and reports it);
* the registry is reached at the URL the database recorded for that snapshot, never
  the plan's ``source``; another URL must be given explicitly (``registry_urls``) and
  must list every planned repository in its catalog (apply asks it first).

Credentials are chosen by the host of that URL, never by the plan's registry name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pandas as pd

from repoaudit.errors import ConfigError, PlanVerificationError, PolicyError
from repoaudit.loader import parse_document, read_text
from repoaudit.model.reference import (
    NAME_TOTAL_LENGTH_MAX,
    is_valid_repository,
    is_valid_tag,
    validate_digest,
)
from repoaudit.retention.engine import plan_retention
from repoaudit.retention.formats import load_policy
from repoaudit.retention.plan import PLAN_VERSION
from repoaudit.retention.policy import Policy
from repoaudit.retention.signing import plan_digest, verify_signature
from repoaudit.store.database import relation_exists
from repoaudit.store.sql import statements

__all__ = ["PlanTarget", "VerifiedPlan", "deployed_now", "fmt_tags", "load_plan", "verify_plan"]

SQL = statements(__package__, "verify.sql")


@dataclass(frozen=True)
class PlanTarget:
    """Where one registry of a verified plan is applied."""

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
    targets: dict[str, PlanTarget]


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


def deployed_now(con: duckdb.DuckDBPyConnection, registries: list[str]) -> set[tuple[str, str, str]]:
    """(registry, repository, digest) a current workload runs, with the indexes of the children it runs."""
    if not relation_exists(con, "deployed_manifests") or not registries:
        return set()
    rows = con.execute("SELECT registry, repository, digest FROM deployed_manifests WHERE list_contains(?, registry)",
                       [registries]).fetchall()
    return {tuple(r) for r in rows}


def fmt_tags(tags: Any) -> str:
    return ", ".join(sorted(tags)) or "none"


def _short(digest: str) -> str:
    return digest if len(digest) <= 19 + 3 else f"{digest[:19]}…"


def _fmt_candidate(i: int, cand: dict) -> str:
    return f"candidate {i + 1} ({cand['repository']}@{_short(cand['digest'])})"


def _repository_problem(name: Any) -> str | None:
    if is_valid_repository(name):
        return None
    if not isinstance(name, str) or not name:
        return "is not a repository name"
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        return f"is longer than {NAME_TOTAL_LENGTH_MAX} characters"
    return ("is not a repository name (lowercase components of letters and digits joined by '.', '_', "
            "'__' or '-', separated by '/')")


def _digest_problem(digest: Any) -> str | None:
    if not isinstance(digest, str):
        return "is not a string"
    try:
        validate_digest(digest)
    except ConfigError as exc:
        return getattr(exc, "reason", str(exc))
    return None


def _unchanged_by_httpx(path: str) -> bool:
    # httpx removes dot segments when it builds a request URL; the model's grammars leave none, and this
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
        for key in ("tags", "children", "referrers"):
            value = cand.get(key, [])
            if value is None:
                value = cand[key] = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PlanVerificationError(f"{where}: {label}: '{key}' is not a list of strings")
        for tag in cand["tags"]:
            if not is_valid_tag(tag):
                raise PlanVerificationError(f"{where}: {label}: tag {tag!r} is not a valid tag")
        for child in cand["children"]:
            problem = _digest_problem(child)
            if problem:
                raise PlanVerificationError(f"{where}: {label}: index child {child!r} refused: {problem}")
        for ref in cand["referrers"]:
            problem = _digest_problem(ref)
            if problem:
                raise PlanVerificationError(f"{where}: {label}: referrer {ref!r} refused: {problem}")
        for ref in [cand["digest"], *cand["children"], *cand["referrers"]]:
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
                    registry_urls: dict[str, str]) -> tuple[PlanTarget, datetime]:
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
    return PlanTarget(registry, explicit or db_source, sid, explicit is not None), started_at


def _check_in_snapshot(con: duckdb.DuckDBPyConnection, where: str, target: PlanTarget, started_at: datetime,
                       cands: list[tuple[int, dict]]) -> None:
    """Each candidate's repository (read completely), digest and tags are what the plan's snapshot holds."""
    sid, registry = target.snapshot_id, target.registry
    repos = sorted({c["repository"] for _i, c in cands})
    held = {"snapshot_id": sid, "repositories": repos}
    status = dict(con.execute(SQL["repository_status"], held).fetchall())
    tagged = {(r, d): sorted(t) for r, d, t in con.execute(SQL["tags_by_digest"], held).fetchall()}
    seen = {tuple(r) for r in con.execute(SQL["links_seen"], {"registry": registry, "repositories": repos,
                                                             "started_at": started_at}).fetchall()}
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
                                        f"(plan says tags {fmt_tags(planned)})")
        if actual is not None and planned != actual:
            raise PlanVerificationError(f"{where}: {label}: tags {fmt_tags(planned)} are not the digest's tags "
                                        f"{in_snapshot} ({fmt_tags(actual)})")
        if not planned and (repo, digest) not in seen:
            raise PlanVerificationError(f"{where}: {label}: digest was never seen in {repo} up to snapshot {sid}")


def _check_selected(con: duckdb.DuckDBPyConnection, where: str, policy: Policy, target: PlanTarget,
                    as_of: datetime, cands: list[tuple[int, dict]], deployed: set[tuple[str, str, str]]) -> None:
    """The embedded policy, evaluated again, selects every candidate with at least the children the plan lists."""
    registry = target.registry
    latest = con.execute("SELECT snapshot_id FROM latest_snapshot WHERE registry = ?", [registry]).fetchone()[0]
    try:
        again = plan_retention(con, [policy], registry=registry, as_of=as_of, blobs=False).candidates
    except (PolicyError, ConfigError) as exc:
        raise PlanVerificationError(f"{where}: policy {policy.name} cannot be evaluated again: {exc}") from None
    derived = {(r, d): set(ch) for r, d, ch in zip(again["repository"], again["digest"], again["children"])}
    referrers = {(r, d): set(rf) for r, d, rf in zip(again["repository"], again["digest"], again["referrers"])}
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
        extra = sorted(set(cand["referrers"]) - referrers[key])
        if extra:
            raise PlanVerificationError(f"{where}: {_fmt_candidate(i, cand)}: {_short(extra[0])} is not a "
                                        f"referrer of it on {on}")


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
    deployed = deployed_now(con, sorted(by_registry))
    targets: dict[str, PlanTarget] = {}
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
