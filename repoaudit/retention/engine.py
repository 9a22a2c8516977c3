"""Retention what-if: what a policy would delete, and exactly how many bytes garbage collection would free.

One engine evaluates every policy format (:mod:`repoaudit.retention.formats`) against each
registry's latest snapshot. The heavy lifting is DuckDB SQL over temporary
tables, so a plan over a million tags stays a handful of set operations.

What is evaluated
    *Images*: a manifest digest in one repository with all its tags there. The
    tagged ones come from the latest snapshot; the untagged ones are manifests a
    repository held in an earlier snapshot and no longer reaches although the
    latest snapshot read it completely: in a registry they stay as untagged
    revisions, holding their blobs, until someone deletes them. Only repositories
    the latest snapshot read completely (status ``ok``) get candidates; what the
    others held in any snapshot counts as kept.

Push time
    ECR, Harbor and Artifact Registry rules use push time. Registries do not
    expose it, so it is the time of the first snapshot that saw the image in that
    repository, except when that was the first look at the repository (the history
    is shorter than the image): then the image's config ``created`` is used.
    ``pushed_source`` says which, per image and in the plan's totals.

Byte accounting (as CNCF Distribution's ``garbage-collect`` frees them)
    A *link* is a manifest digest held by one repository: a tagged image, a child
    of an index, or an untagged revision. Blobs (layers, configs and the manifests
    themselves) are shared by every repository of a registry. Deleting an image
    removes its link and the links of its index children, unless another surviving
    link in the same repository still needs a child. A blob is reclaimable only when
    every link that references it, in any repository, is deleted; so a layer that
    one surviving image still uses is never counted, and a manifest tagged in two
    repositories is freed only when both repositories delete it.
    ``reclaimable_bytes`` is the sum of those blobs' sizes, each counted once.
    Because a blob's references depend only on manifest digests, this is computed
    per manifest: a manifest is gone when all its links are deleted, and a blob is
    freed when every row of ``manifest_blobs`` naming it belongs to a gone manifest.

``apply`` (:mod:`repoaudit.retention.apply`) deletes the candidates *and* the index children
that die with them, so a plain ``garbage-collect`` (without ``--delete-untagged``)
frees exactly ``reclaimable_bytes``.
"""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from repoaudit._version import __version__
from repoaudit.errors import ConfigError, PolicyError, StoreError, first_line
from repoaudit.retention.formats import load_policy
from repoaudit.retention.policy import Condition, Pattern, Policy, TagSelector
from repoaudit.retention.signing import plan_digest, sign_document
from repoaudit.store.database import relation_exists, utcnow
from repoaudit.store.frames import fetch_arrow

__all__ = ["PLAN_VERSION", "RetentionPlan", "default_policies_dir", "demo_whatif", "plan_retention",
           "whatif_table"]



PLAN_VERSION = 1



SUMMARY_COLUMNS = ["policy", "format", "candidate_images", "untagged_images", "candidate_tags", "candidate_manifests",
                   "deployed_candidates", "logical_bytes", "reclaimable_bytes", "stored_bytes", "reclaimable_pct",
                   "images_evaluated", "pushed_from_first_seen", "pushed_from_created"]




class _Params:
    """Named parameters for generated SQL: values are always bound, never pasted."""

    def __init__(self):
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        key = f"p{len(self.values)}"
        self.values[key] = value
        return f"${key}"



def _any_tag(patterns: Sequence[Pattern], params: _Params, *, negate: bool = False) -> str:
    test = " OR ".join(f"regexp_matches(t, {params(p.regex)})" for p in patterns)
    if negate:
        test = f"NOT ({test})"
    return f"coalesce(list_bool_or(list_transform(tags, lambda t: {test})), false)"



def _tag_selector_sql(sel: TagSelector, params: _Params) -> str:
    if not sel.tagged:
        tagged = "false"
    elif not sel.patterns:
        tagged = "true"
    elif sel.negate:
        tagged = _any_tag(sel.patterns, params, negate=True)
    elif sel.combine == "all":
        tagged = " AND ".join(_any_tag([p], params) for p in sel.patterns)
    else:
        tagged = _any_tag(sel.patterns, params)
    return f"(CASE WHEN tagged THEN ({tagged}) ELSE {'true' if sel.untagged else 'false'} END)"



def _ts(by: str) -> str:
    return "created_or_pushed" if by == "created" else "pushed_at"



def _condition_sql(cond: Condition, sel_column: str, params: _Params, tops: list[str]) -> str:
    """The condition as a column expression; "most recent N" adds its top-N set to ``tops`` (CTE definitions)."""
    if cond.kind == "always":
        expr = "true"
    elif cond.kind == "most_recent":
        # The newest N of each repository among the images the rule selects, by a top-N aggregate rather than a
        # window, which would sort every image. Ties (images first seen by the same snapshot) go to the newer
        # build (no created: oldest), then to the greater digest.
        name, count = f"top{len(tops)}", params(cond.count)
        tops.append(f"""{name} AS (
    SELECT unnest(list_slice(arg_max(link_id, ({_ts(cond.by)}, coalesce(created, '-infinity'::TIMESTAMP), digest),
                                     greatest({count}, 1)), 1, {count})) AS link_id
    FROM sel WHERE {sel_column} GROUP BY rkey
)""")
        expr = f"(link_id IN (SELECT link_id FROM {name}))"
    elif cond.kind == "newer_than":
        expr = f"({_ts(cond.by)} > as_of - to_seconds({params(float(cond.seconds))}::DOUBLE))"
    elif cond.kind == "older_than":
        expr = f"({_ts(cond.by)} < as_of - to_seconds({params(float(cond.seconds))}::DOUBLE))"
    elif cond.kind == "tags":
        expr = _any_tag(cond.patterns, params)
    elif cond.kind == "deployed":
        expr = "deployed"
    elif cond.kind == "digest":
        expr = "(" + " OR ".join(f"regexp_matches(digest, {params(p.regex)})" for p in cond.patterns) + ")"
    else:  # pragma: no cover - the parsers only build the kinds above
        raise PolicyError(f"unknown condition {cond.kind!r}")
    return f"(NOT {expr})" if cond.negate else expr



def _policy_sql(policy: Policy, params: _Params) -> str:
    sel_cols, fire_cols, tops = [], [], []
    for i, rule in enumerate(policy.rules):
        parts = [f"r{i}"] + [_tag_selector_sql(s, params) for s in rule.tags]
        sel_cols.append(f"({' AND '.join(parts)}) AS s{i}")
        conds = [_condition_sql(c, f"s{i}", params, tops) for c in rule.conditions] or ["true"]
        fire_cols.append(f"(s{i} AND {' AND '.join(conds)}) AS f{i}")
    keeps = [f"f{i}" for i, r in enumerate(policy.rules) if r.action == "keep"]
    deletes = [i for i, r in enumerate(policy.rules) if r.action == "delete"]
    kept = "(" + " OR ".join(keeps) + ")" if keeps else "false"
    if policy.mode == "retain":
        candidate, rule_index = f"(in_scope AND NOT {kept})", "-1"
    elif policy.mode == "keep_wins":
        fired = " OR ".join(f"f{i}" for i in deletes)
        candidate = f"(({fired}) AND NOT {kept})"
        rule_index = "CASE " + " ".join(f"WHEN f{i} THEN {i}" for i in deletes) + " END"
    elif policy.mode == "first_match":
        # ECR: the first rule (by priority) whose tag selection matches decides; a later rule never expires it.
        rule_index = "CASE " + " ".join(f"WHEN s{i} THEN {i}" for i in range(len(policy.rules))) + " END"
        candidate = "CASE " + " ".join(f"WHEN s{i} THEN f{i}" for i in range(len(policy.rules))) + " ELSE false END"
    else:  # pragma: no cover
        raise PolicyError(f"policy {policy.name}: unknown mode {policy.mode!r}")
    rule_flags = ", ".join(f"rp.r{i}" for i in range(len(policy.rules)))
    # Only the columns rules read (digest breaks ties in "most recent").
    return f"""
WITH base AS (
    SELECT i.link_id, i.rkey, i.mkey, i.digest, i.tags, i.tagged, i.created, i.pushed_at, i.created_or_pushed,
           i.as_of, i.deployed, rp.in_scope{', ' + rule_flags if rule_flags else ''}
    FROM _ra_images i
    JOIN _ra_repos rp ON rp.rkey = i.rkey
    WHERE i.eligible AND rp.in_plan
), sel AS (
    SELECT *{''.join(', ' + c for c in sel_cols)} FROM base
){''.join(', ' + t for t in tops)}, fire AS (
    SELECT *{''.join(', ' + c for c in fire_cols)} FROM sel
)
SELECT link_id, {rule_index} AS rule_index
FROM fire
WHERE {candidate}"""



class RetentionPlan:
    """A what-if for one or more policies, computed from each registry's latest snapshot.

    DataFrames (built on first access from Arrow tables, so a plan over a million
    tags only pays for what is looked at):

    ``summary``       one row per policy: candidate images (``untagged_images`` of
                      them untagged), tags, manifests deleted (index children
                      included), deployed candidates, ``logical_bytes`` (sum of image
                      sizes), ``reclaimable_bytes`` (unique blobs freed),
                      ``stored_bytes`` (unique blobs the registry holds now, as far
                      as repoaudit has seen);
    ``candidates``    per image to delete: the rule that expired it, push time and
                      its source, size, and ``reclaimable_alone_bytes`` (freed blobs
                      that no other candidate of the plan references);
    ``deletions``     per manifest link to delete: the images and their index children;
    ``by_repository`` / ``by_namespace``: the totals per group; ``reclaimable_bytes``
                      counts a freed blob in every group that deletes a link to it,
                      ``reclaimable_alone_bytes`` only when that group alone does;
    ``freed_blobs``   every blob garbage collection would remove, with its size;
    ``snapshots``     the snapshot each registry was planned from.
    """

    def __init__(self, *, policies: list[Policy], snapshots: pd.DataFrame, summary: pd.DataFrame,
                 tables: dict[str, pa.Table], warnings: list[str], as_of: datetime | None, database: str | None,
                 timings: dict[str, float]):
        self.policies = policies
        self.snapshots = snapshots
        self.summary = summary
        self.warnings = warnings
        self.as_of = as_of
        self.database = database
        self.timings = timings
        self.created_at = utcnow()
        self._tables = tables
        self._frames: dict[str, pd.DataFrame] = {}

    def table(self, name: str) -> pa.Table:
        """One of the plan's frames as an Arrow table (no conversion)."""
        return self._tables[name]

    def _frame(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            raise ConfigError(f"this plan was made with detail=False and has no {name}")
        if name not in self._frames:
            self._frames[name] = self._tables[name].to_pandas()
        return self._frames[name]

    candidates = property(lambda self: self._frame("candidates"))
    deletions = property(lambda self: self._frame("deletions"))
    by_repository = property(lambda self: self._frame("by_repository"))
    by_namespace = property(lambda self: self._frame("by_namespace"))
    freed_blobs = property(lambda self: self._frame("freed_blobs"))

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.policies)
        return f"<RetentionPlan {names}: {int(self.summary['candidate_images'].sum())} candidates>"

    def whatif(self) -> pd.DataFrame:
        """Side by side: one column per policy, one row per measure."""
        if self.summary.empty:
            return pd.DataFrame()
        frame = self.summary.set_index("policy")[
            ["candidate_images", "untagged_images", "candidate_tags", "candidate_manifests", "deployed_candidates",
             "logical_bytes", "reclaimable_bytes", "reclaimable_pct"]].T
        frame.columns.name = None
        return frame

    def _rows(self, name: str, policy: str) -> list[dict]:
        if name not in self._tables:
            raise ConfigError(f"this plan was made with detail=False and has no {name}")
        table = self._tables[name]
        mask = pa.compute.equal(table["policy"], policy)
        return table.filter(mask).drop_columns(["policy"]).to_pylist()

    def to_document(self, *, sign: str | Path | None = None) -> dict:
        """The plan as the JSON document ``repoaudit retention apply`` reads.

        It carries ``plan_sha256`` (see :mod:`repoaudit.retention.signing`) and each policy's
        document, so apply can check that nothing was edited and evaluate the policy
        again; ``sign`` is a key file to add a ``signature`` with.
        """
        snaps = [{"registry": r.registry, "snapshot_id": int(r.snapshot_id), "started_at": _iso(r.started_at),
                  "source": r.source, "source_kind": r.source_kind} for r in self.snapshots.itertuples()]
        plans = []
        for policy in self.policies:
            summary = self.summary[self.summary["policy"] == policy.name]
            totals = {k: _plain(v) for k, v in summary.drop(columns=["policy", "format"]).iloc[0].items()}
            plans.append({
                "policy": {"name": policy.name, "format": policy.format, "source": policy.source,
                           "sha256": policy.sha256, "rules": [r.describe() for r in policy.rules],
                           "notes": list(policy.notes), "document": _plain_document(policy.raw)},
                "totals": totals,
                "by_repository": self._rows("by_repository", policy.name),
                "by_namespace": self._rows("by_namespace", policy.name),
                "candidates": self._rows("candidates", policy.name),
            })
        doc = {"repoaudit_plan": PLAN_VERSION, "repoaudit_version": __version__,
               "created_at": _iso(self.created_at), "database": self.database,
               "as_of": _iso(self.as_of) if self.as_of else None, "snapshots": snaps,
               "warnings": list(self.warnings), "plans": plans}
        doc["plan_sha256"] = plan_digest(doc, _json_default)
        if sign is not None:
            doc["signature"] = sign_document(doc, sign, _json_default)
        return doc

    def to_json(self, *, sign: str | Path | None = None) -> str:
        return json.dumps(self.to_document(sign=sign), indent=2, default=_json_default) + "\n"

    def write_json(self, path: str | Path, *, sign: str | Path | None = None) -> Path:
        """Write :meth:`to_document` to ``path`` (what ``retention apply`` reads), signed with the key file
        ``sign`` if given; returns the path."""
        path = Path(path)
        text = self.to_json(sign=sign)  # a bad key fails before anything is written
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path



def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")



def _plain_document(raw: Any) -> Any:
    """A policy document as JSON values (YAML may hold dates), or None when the policy was built in code."""
    if raw is None:
        return None
    return json.loads(json.dumps(raw, default=str))



def _iso(value: Any) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat()



def _plain(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, datetime)):
        return _iso(value)
    if isinstance(value, float) and pd.isna(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value



def _snapshots(con: duckdb.DuckDBPyConnection, registry: str | None, as_of: datetime | None) -> pd.DataFrame:
    snaps = con.execute("SELECT registry, snapshot_id, started_at, source, source_kind FROM latest_snapshot "
                        "WHERE $registry IS NULL OR registry = $registry ORDER BY registry",
                        {"registry": registry}).df()
    if snaps.empty:
        if registry:
            known = [r[0] for r in con.execute("SELECT DISTINCT registry FROM snapshots ORDER BY 1").fetchall()]
            raise ConfigError(f"no complete or partial snapshot of registry {registry!r} "
                              f"(known: {', '.join(known) or 'none'})")
        raise StoreError("no snapshot to plan from: run 'repoaudit collect' first")
    snaps["as_of"] = pd.Timestamp(as_of) if as_of is not None else snaps["started_at"]
    return snaps



def _build_links(con: duckdb.DuckDBPyConnection, deployed_view: bool) -> None:
    """The temporary tables every policy of a plan shares (see the module docstring).

    Strings are joined here, once; everything after works on integer keys: ``link_id``
    for a (repository, manifest) link, and the stored keys of manifests (``mkey``), blobs
    (``bkey``) and repositories (``rkey``).
    """
    # Every (repository, manifest) link a snapshot of the plan's registries reached, by a tag or as a child of a
    # tagged index (kept at commit in repository_links), with its tags in the latest snapshot (NULL: not tagged).
    # link_id is the link's row id: unique, and free, where numbering every link took a single-threaded pass.
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_links AS
SELECT l.rowid AS link_id, l.registry, l.repository, l.digest, l.first_seen, l.last_seen,
       CASE WHEN l.last_snapshot = p.snapshot_id THEN l.tags END AS tags,
       l.manifest_key AS mkey, l.repository_key AS rkey
FROM repository_links l
JOIN _ra_snap p ON p.registry = l.registry""")
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_children AS
SELECT DISTINCT p.link_id AS parent_id, k.link_id AS child_id
FROM _ra_links p
JOIN manifest_children c ON c.index_key = p.mkey
JOIN _ra_links k ON k.rkey = p.rkey AND k.mkey = c.child_key""")
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_repos_all AS
SELECT any_value(r.repository_key) AS rkey, r.registry, r.repository,
       split_part(r.repository, '/', 1) AS namespace, min(sn.started_at) AS first_look,
       coalesce(any_value(r.status) FILTER (WHERE r.snapshot_id = p.snapshot_id), 'absent') AS status,
       -- Sorting results by this instead of by (registry, repository) saves string compares on every row.
       row_number() OVER (ORDER BY r.registry, r.repository) AS repo_order
FROM repositories r
JOIN snapshots sn ON sn.snapshot_id = r.snapshot_id
JOIN _ra_snap p ON p.registry = r.registry
WHERE sn.status IN ('complete', 'partial')
GROUP BY r.registry, r.repository""")
    if deployed_view:
        # deployed_manifests: a workload that runs a platform child of an index runs the index too.
        deployed = """
, deployed AS (
    SELECT * FROM deployed_manifests WHERE registry IN (SELECT registry FROM _ra_snap)
)"""
        deployed_join = ("LEFT JOIN deployed dp ON dp.registry = l.registry AND dp.repository = l.repository "
                         "AND dp.digest = l.digest")
        deployed_col = "dp.digest IS NOT NULL"
    else:
        deployed, deployed_join, deployed_col = "", "", "false"
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE _ra_images AS
WITH live AS (
    SELECT link_id FROM _ra_links WHERE tags IS NOT NULL
    UNION
    SELECT c.child_id FROM _ra_links l JOIN _ra_children c ON c.parent_id = l.link_id WHERE l.tags IS NOT NULL
), roots AS (
    SELECT * FROM _ra_links WHERE tags IS NOT NULL
    UNION ALL
    -- Untagged revisions: reached once, not now, although the latest snapshot read the repository completely.
    SELECT u.* REPLACE ([]::VARCHAR[] AS tags)
    FROM _ra_links u
    JOIN _ra_repos_all r ON r.rkey = u.rkey AND r.status = 'ok'
    ANTI JOIN live v ON v.link_id = u.link_id
    WHERE u.tags IS NULL
), facts AS (
    SELECT m.manifest_key AS mkey, m.kind, m.artifact_type, m.created, m.total_size
    FROM manifests m WHERE m.registry IN (SELECT registry FROM _ra_snap)
){deployed}, joined AS (
    SELECT l.link_id, l.registry, l.repository, l.digest, l.mkey, l.rkey, l.tags, m.kind, m.artifact_type,
           m.created, coalesce(m.total_size, 0) AS size, l.first_seen, l.last_seen,
           -- The first look at a repository cannot tell when older images were pushed: use created.
           (l.first_seen <= r.first_look AND m.created IS NOT NULL AND m.created <= l.first_seen) AS from_created,
           s.as_of, coalesce(r.status, 'absent') AS repository_status, r.namespace, r.repo_order,
           {deployed_col} AS deployed
    FROM roots l
    JOIN _ra_snap s ON s.registry = l.registry
    LEFT JOIN facts m ON m.mkey = l.mkey
    LEFT JOIN _ra_repos_all r ON r.rkey = l.rkey
    {deployed_join}
)
SELECT link_id, registry, repository, coalesce(namespace, split_part(repository, '/', 1)) AS namespace, digest,
       mkey, rkey, tags, len(tags) > 0 AS tagged, kind, artifact_type, created, size, first_seen,
       CASE WHEN len(tags) = 0 THEN last_seen END AS last_tagged,
       CASE WHEN from_created THEN created ELSE first_seen END AS pushed_at,
       CASE WHEN from_created THEN 'created' ELSE 'first_seen' END AS pushed_source,
       coalesce(created, CASE WHEN from_created THEN created ELSE first_seen END) AS created_or_pushed,
       as_of, repository_status, repository_status = 'ok' AS eligible, deployed, repo_order
FROM joined""")
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_mlinks AS
SELECT mkey, count(*) AS links FROM _ra_links GROUP BY mkey""")
    # References per blob come from manifests some link reached (blob_refs, counted at commit): a manifest no
    # snapshot reached (a partial run's leftovers) is no revision of any repository. Most blobs have a single
    # manifest holding them and go when it goes: their bytes are kept summed per manifest (manifest_sole_bytes,
    # keyed by mkey); only the blobs several manifests hold are counted reference by reference
    # (_ra_shared_refs), where a manifest naming a blob twice counts twice on both sides of the "every
    # reference is gone" test.
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_shared_refs AS
SELECT blob_key AS bkey, refs, size
FROM blob_refs WHERE lo_manifest < hi_manifest AND registry IN (SELECT registry FROM _ra_snap)""")



def _repo_table(con: duckdb.DuckDBPyConnection, policy: Policy, include: Sequence[Pattern]) -> pd.DataFrame:
    repos = con.execute("SELECT rkey, registry, repository FROM _ra_repos_all ORDER BY 2, 3").df()
    names = repos["repository"].tolist()
    repos["in_plan"] = [not include or any(p.matches(n) for p in include) for n in names]
    repos["in_scope"] = [policy.in_scope(n) for n in names]
    for i, rule in enumerate(policy.rules):
        repos[f"r{i}"] = [rule.covers(n) for n in names]
    return repos



def _evaluate(con: duckdb.DuckDBPyConnection, policies: list[Policy], include: Sequence[Pattern]) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _ra_cand (policy INTEGER, link_id BIGINT, rule_index INTEGER)")
    for index, policy in enumerate(policies):
        repos = _repo_table(con, policy, include)
        params = _Params()
        sql = _policy_sql(policy, params)
        con.register("_ra_repos", repos)
        try:
            con.execute(f"INSERT INTO _ra_cand SELECT {index}, * FROM ({sql})", params.values)
        except duckdb.Error as exc:
            raise PolicyError(f"{policy.source or policy.name}: cannot be evaluated: {first_line(exc)}") \
                from None
        finally:
            con.unregister("_ra_repos")



def _account(con: duckdb.DuckDBPyConnection) -> None:
    """Deleted links, gone manifests and freed blobs for every policy at once (see the module docstring)."""
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_deleted AS
WITH c AS (
    SELECT DISTINCT policy, link_id FROM _ra_cand
), kids AS (
    SELECT DISTINCT c.policy, ch.child_id AS link_id FROM c JOIN _ra_children ch ON ch.parent_id = c.link_id
), free_kids AS (
    -- A child dies with its index only when every index holding it in that repository dies too.
    SELECT k.policy, k.link_id
    FROM kids k
    JOIN _ra_children p ON p.child_id = k.link_id
    LEFT JOIN c cp ON cp.policy = k.policy AND cp.link_id = p.parent_id
    GROUP BY k.policy, k.link_id
    HAVING count(*) = count(cp.link_id)
), deleted AS (
    SELECT policy, link_id, 'image' AS role FROM c
    UNION ALL
    -- A child that is an image of its own (tagged, or an untagged revision) is decided by the policy, not here.
    SELECT f.policy, f.link_id, 'index child' AS role FROM free_kids f ANTI JOIN _ra_images i ON i.link_id = f.link_id
)
SELECT d.policy, d.link_id, d.role, l.mkey, l.rkey
FROM deleted d JOIN _ra_links l ON l.link_id = d.link_id""")
    # Gone: every link of the manifest, in every repository, is deleted.
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_gone AS
SELECT d.policy, d.mkey
FROM (SELECT policy, mkey, count(*) AS n FROM _ra_deleted GROUP BY policy, mkey) d
JOIN _ra_mlinks m ON m.mkey = d.mkey
WHERE d.n = m.links""")
    # Freed: every reference to the blob belongs to a gone manifest. The blobs a gone manifest alone holds go
    # as one bundle (bkey -mkey; keys are positive): every total below treats it as one blob, which is exact
    # because all of its blobs have the same holders.
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_gone_blobs AS
SELECT g.policy, g.mkey, b.blob_key AS bkey, b.size
FROM manifest_blob_keys b
SEMI JOIN _ra_shared_refs r ON r.bkey = b.blob_key
JOIN _ra_gone g ON g.mkey = b.manifest_key""")
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_freed AS
SELECT g.policy, -g.mkey AS bkey, s.bytes AS size
FROM _ra_gone g JOIN manifest_sole_bytes s ON s.manifest_key = g.mkey
UNION ALL
SELECT x.policy, x.bkey, x.size
FROM (SELECT policy, bkey, any_value(size) AS size, count(*) AS n FROM _ra_gone_blobs GROUP BY policy, bkey) x
JOIN _ra_shared_refs r ON r.bkey = x.bkey
WHERE x.n = r.refs""")
    # Which deleted links reference each freed blob: for the per-group and per-candidate shares.
    con.execute("""
CREATE OR REPLACE TEMP TABLE _ra_freed_links AS
SELECT d.policy, d.link_id, d.rkey, -d.mkey AS bkey, s.bytes AS size
FROM _ra_deleted d
SEMI JOIN _ra_gone g ON g.policy = d.policy AND g.mkey = d.mkey
JOIN manifest_sole_bytes s ON s.manifest_key = d.mkey
UNION ALL
SELECT DISTINCT d.policy, d.link_id, d.rkey, f.bkey, f.size
FROM _ra_gone_blobs gb
JOIN _ra_freed f ON f.policy = gb.policy AND f.bkey = gb.bkey
JOIN _ra_deleted d ON d.policy = gb.policy AND d.mkey = gb.mkey""")



_CANDIDATES_SQL = """
WITH units AS (
    -- Each deleted link belongs to the candidates it dies with: itself, or the indexes holding a child.
    SELECT policy, link_id AS unit, link_id FROM _ra_deleted WHERE role = 'image'
    UNION ALL
    SELECT d.policy, p.parent_id, d.link_id
    FROM _ra_deleted d
    JOIN _ra_children p ON p.child_id = d.link_id
    SEMI JOIN _ra_cand c ON c.policy = d.policy AND c.link_id = p.parent_id
    WHERE d.role = 'index child'
), unit_freed AS (
    SELECT DISTINCT u.policy, u.unit, fl.bkey, fl.size
    FROM units u JOIN _ra_freed_links fl ON fl.policy = u.policy AND fl.link_id = u.link_id
), shared AS (
    -- Freed blobs more than one candidate holds (a grouping, not a window: no sort of every freed blob).
    SELECT policy, bkey FROM unit_freed GROUP BY policy, bkey HAVING count(*) > 1
), alone AS (
    SELECT policy, unit, sum(size)::BIGINT AS alone_bytes
    FROM unit_freed u ANTI JOIN shared s ON s.policy = u.policy AND s.bkey = u.bkey
    GROUP BY policy, unit
), kids AS (
    SELECT u.policy, u.unit, list(l.digest ORDER BY l.digest) AS children
    FROM units u JOIN _ra_links l ON l.link_id = u.link_id
    WHERE u.link_id <> u.unit GROUP BY ALL
)
SELECT pn.name AS policy, i.registry, i.repository, i.namespace, i.digest, i.tags, NOT i.tagged AS untagged,
       i.kind, i.artifact_type, i.size, coalesce(a.alone_bytes, 0) AS reclaimable_alone_bytes,
       i.created, i.pushed_at, i.pushed_source, i.last_tagged, i.deployed, rl.label AS rule,
       coalesce(k.children, []::VARCHAR[]) AS children
FROM _ra_cand c
JOIN _ra_policy_names pn ON pn.policy = c.policy
JOIN _ra_rule_labels rl ON rl.policy = c.policy AND rl.rule_index = coalesce(c.rule_index, -1)
JOIN _ra_images i ON i.link_id = c.link_id
LEFT JOIN alone a ON a.policy = c.policy AND a.unit = c.link_id
LEFT JOIN kids k ON k.policy = c.policy AND k.unit = c.link_id
ORDER BY c.policy, i.repo_order, i.pushed_at, i.digest"""



_GROUP_SQL = """
WITH names AS (
    SELECT rkey, registry, {group} AS grp FROM _ra_repos_all
), cands AS (
    SELECT c.policy, i.rkey, count(*) AS candidate_images, count(*) FILTER (WHERE NOT i.tagged) AS untagged_images,
           sum(len(i.tags))::BIGINT AS candidate_tags, sum(i.size)::BIGINT AS logical_bytes
    FROM _ra_cand c JOIN _ra_images i ON i.link_id = c.link_id
    GROUP BY c.policy, i.rkey
), links AS (
    SELECT policy, rkey, count(*) AS candidate_manifests FROM _ra_deleted GROUP BY policy, rkey
), per_repo AS (
    SELECT c.policy, n.registry, n.grp, c.candidate_images, c.untagged_images, c.candidate_tags, c.logical_bytes,
           coalesce(l.candidate_manifests, 0) AS candidate_manifests
    FROM cands c JOIN names n ON n.rkey = c.rkey
    LEFT JOIN links l ON l.policy = c.policy AND l.rkey = c.rkey
), totals AS (
    SELECT policy, registry, grp, sum(candidate_images)::BIGINT AS candidate_images,
           sum(untagged_images)::BIGINT AS untagged_images, sum(candidate_tags)::BIGINT AS candidate_tags,
           sum(candidate_manifests)::BIGINT AS candidate_manifests, sum(logical_bytes)::BIGINT AS logical_bytes
    FROM per_repo GROUP BY policy, registry, grp
), freed AS (
    SELECT DISTINCT fl.policy, n.registry, n.grp, fl.bkey, fl.size
    FROM _ra_freed_links fl JOIN names n ON n.rkey = fl.rkey
), shared AS (
    SELECT policy, bkey FROM freed GROUP BY policy, bkey HAVING count(*) > 1
), bytes AS (
    SELECT f.policy, f.registry, f.grp, sum(f.size)::BIGINT AS reclaimable_bytes,
           coalesce(sum(f.size) FILTER (WHERE s.bkey IS NULL), 0)::BIGINT AS reclaimable_alone_bytes
    FROM freed f LEFT JOIN shared s ON s.policy = f.policy AND s.bkey = f.bkey
    GROUP BY f.policy, f.registry, f.grp
)
SELECT pn.name AS policy, t.registry, t.grp AS {group_name}, t.candidate_images, t.untagged_images,
       t.candidate_tags, t.candidate_manifests, t.logical_bytes,
       coalesce(b.reclaimable_bytes, 0) AS reclaimable_bytes,
       coalesce(b.reclaimable_alone_bytes, 0) AS reclaimable_alone_bytes
FROM totals t
JOIN _ra_policy_names pn ON pn.policy = t.policy
LEFT JOIN bytes b ON b.policy = t.policy AND b.registry = t.registry AND b.grp = t.grp
ORDER BY t.policy, reclaimable_bytes DESC, t.registry, t.grp"""



_SUMMARY_SQL = """
WITH cands AS (
    SELECT c.policy, count(*) AS candidate_images, count(*) FILTER (WHERE NOT i.tagged) AS untagged_images,
           sum(len(i.tags))::BIGINT AS candidate_tags, count(*) FILTER (WHERE i.deployed) AS deployed_candidates,
           sum(i.size)::BIGINT AS logical_bytes,
           count(*) FILTER (WHERE i.pushed_source = 'first_seen') AS pushed_from_first_seen,
           count(*) FILTER (WHERE i.pushed_source = 'created') AS pushed_from_created
    FROM _ra_cand c JOIN _ra_images i ON i.link_id = c.link_id
    GROUP BY c.policy
), links AS (SELECT policy, count(*) AS candidate_manifests FROM _ra_deleted GROUP BY policy),
freed AS (SELECT policy, sum(size)::BIGINT AS reclaimable_bytes FROM _ra_freed GROUP BY policy)
SELECT pn.name AS policy, coalesce(c.candidate_images, 0) AS candidate_images,
       coalesce(c.untagged_images, 0) AS untagged_images, coalesce(c.candidate_tags, 0) AS candidate_tags,
       coalesce(l.candidate_manifests, 0) AS candidate_manifests,
       coalesce(c.deployed_candidates, 0) AS deployed_candidates, coalesce(c.logical_bytes, 0) AS logical_bytes,
       coalesce(f.reclaimable_bytes, 0) AS reclaimable_bytes,
       (SELECT coalesce(sum(size), 0)::BIGINT FROM blob_refs WHERE registry IN (SELECT registry FROM _ra_snap))
           AS stored_bytes,
       (SELECT count(*) FROM _ra_images i JOIN _ra_repos_in_plan r ON r.rkey = i.rkey WHERE i.eligible)
           AS images_evaluated,
       coalesce(c.pushed_from_first_seen, 0) AS pushed_from_first_seen,
       coalesce(c.pushed_from_created, 0) AS pushed_from_created
FROM _ra_policy_names pn
LEFT JOIN cands c USING (policy) LEFT JOIN links l USING (policy) LEFT JOIN freed f USING (policy)
ORDER BY pn.policy"""



_FREED_BLOBS_SQL = """
WITH freed AS (
    -- A bundle (bkey -mkey) is the blobs that manifest alone holds.
    SELECT f.policy, r.blob_key AS bkey, r.size
    FROM _ra_freed f JOIN blob_refs r ON r.lo_manifest = -f.bkey AND r.hi_manifest = -f.bkey
    WHERE f.bkey < 0
    UNION ALL
    SELECT policy, bkey, size FROM _ra_freed WHERE bkey > 0
)
SELECT pn.name AS policy, k.registry, k.digest AS blob_digest, f.size
FROM freed f JOIN _ra_policy_names pn ON pn.policy = f.policy JOIN digest_keys k ON k.key = f.bkey
ORDER BY f.policy, f.size DESC, blob_digest"""



_NO_BLOBS_SQL = "SELECT NULL::VARCHAR AS policy, NULL::VARCHAR AS registry, NULL::VARCHAR AS blob_digest, " \
                "NULL::BIGINT AS size WHERE false"



def _warnings(con: duckdb.DuckDBPyConnection, policies: list[Policy], deployed_view: bool) -> list[str]:
    out = []
    rows = con.execute("""
SELECT u.registry, coalesce(r.status, 'absent') AS status, count(*) AS n,
       list(u.repository ORDER BY u.repository)[:3]
FROM (SELECT DISTINCT rkey FROM _ra_links) k
JOIN _ra_repos_all u ON u.rkey = k.rkey
LEFT JOIN repositories r ON r.snapshot_id = (SELECT snapshot_id FROM _ra_snap s WHERE s.registry = u.registry)
                        AND r.registry = u.registry AND r.repository = u.repository
WHERE r.status IS DISTINCT FROM 'ok'
GROUP BY ALL ORDER BY ALL""").fetchall()
    for registry, status, n, sample in rows:
        what = ("not in the latest snapshot" if status == "absent" else f"{status} in the latest snapshot")
        out.append(f"{registry}: {n} repositor{'y' if n == 1 else 'ies'} {what} ({', '.join(sample)}"
                   f"{', …' if n > 3 else ''}): no candidates there, and everything they held counts as kept")
    if not deployed_view and any(p.uses_deployed for p in policies):
        out.append("no deployed_manifests view in this database: 'deployed' keeps nothing")
    for policy in policies:
        out.extend(f"{policy.name}: {note}" for note in policy.notes)
    return out



_TEMP_TABLES = ("_ra_snap", "_ra_children", "_ra_links", "_ra_repos_all", "_ra_images", "_ra_mlinks",
                "_ra_shared_refs", "_ra_cand", "_ra_deleted", "_ra_gone", "_ra_gone_blobs", "_ra_freed",
                "_ra_freed_links", "_ra_policy_names", "_ra_rule_labels")



def plan_retention(con: duckdb.DuckDBPyConnection, policies: Iterable[Any], *, registry: str | None = None,
                   include: Iterable[str] = (), as_of: datetime | None = None, database: str | None = None,
                   blobs: bool = True, detail: bool = True) -> RetentionPlan:
    """Evaluate ``policies`` (paths, documents or :class:`Policy`) against each registry's latest snapshot.

    ``include`` limits candidates to repositories matching these globs (the rules
    still see every image of those repositories); ``as_of`` replaces the snapshot
    time as the reference for ages (``newer_than``, ``sinceImagePushed``, …).
    ``blobs=False`` skips listing the freed blobs by digest (``freed_blobs`` is then
    empty; every total is unchanged), which costs a pass over every layer.
    ``detail=False`` computes only ``summary`` and ``by_namespace`` (the what-if
    table); the other frames and :meth:`RetentionPlan.to_document` then refuse.
    """
    loaded = [load_policy(p) for p in policies]
    if not loaded:
        raise ConfigError("no policy given")
    names = [p.name for p in loaded]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"two policies are named {dupes[0]!r}; rename one (native 'name:' or the file name)")
    try:
        include_patterns = [Pattern.glob(g) for g in include]
    except ValueError as exc:
        raise ConfigError(f"--repo: {exc}") from None
    deployed_view = relation_exists(con, "deployed_manifests")
    snaps = _snapshots(con, registry, as_of)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = round(now - clock, 3)
        clock = now

    labels = [(i, -1, "not kept by any rule") for i in range(len(loaded))]
    labels += [(i, j, rule.describe()) for i, p in enumerate(loaded) for j, rule in enumerate(p.rules)]
    small = {"_ra_snap": snaps,
             "_ra_policy_names": pd.DataFrame({"policy": range(len(loaded)), "name": names}),
             "_ra_rule_labels": pd.DataFrame(labels, columns=["policy", "rule_index", "label"])}
    try:
        for table, frame in small.items():
            con.register("_ra_frame", frame)
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _ra_frame")
            finally:
                con.unregister("_ra_frame")
        _build_links(con, deployed_view)
        lap("links")
        _evaluate(con, loaded, include_patterns)
        lap("policies")
        _account(con)
        lap("bytes")
        in_plan = _repo_table(con, loaded[0], include_patterns)
        con.register("_ra_repos_in_plan", in_plan[in_plan["in_plan"]][["rkey"]])
        try:
            summary = con.execute(_SUMMARY_SQL).df()
        finally:
            con.unregister("_ra_repos_in_plan")
        queries = {
            "by_namespace": _GROUP_SQL.format(group="namespace", group_name="namespace"),
            "candidates": _CANDIDATES_SQL,
            "deletions": ("SELECT pn.name AS policy, l.registry, l.repository, l.digest, d.role FROM _ra_deleted d "
                          "JOIN _ra_policy_names pn ON pn.policy = d.policy JOIN _ra_links l ON l.link_id = d.link_id "
                          "JOIN _ra_repos_all r ON r.rkey = l.rkey "
                          "ORDER BY d.policy, r.repo_order, d.role DESC, l.digest"),
            "by_repository": _GROUP_SQL.format(group="repository", group_name="repository"),
            "freed_blobs": _FREED_BLOBS_SQL if blobs else _NO_BLOBS_SQL,
        }
        tables = {name: fetch_arrow(con, sql) for name, sql in queries.items() if detail or name == "by_namespace"}
        lap("results")
        warnings = _warnings(con, loaded, deployed_view)
    finally:
        for table in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    summary.insert(1, "format", [p.format for p in loaded])
    summary["reclaimable_pct"] = (100.0 * summary["reclaimable_bytes"] / summary["stored_bytes"].where(
        summary["stored_bytes"] > 0)).round(2).fillna(0.0)
    summary = summary[SUMMARY_COLUMNS]
    as_of_value = pd.Timestamp(as_of).to_pydatetime() if as_of is not None else None
    return RetentionPlan(policies=loaded, snapshots=snaps.drop(columns=["as_of"]), summary=summary, tables=tables,
                         warnings=warnings, as_of=as_of_value, database=database, timings=timings)

