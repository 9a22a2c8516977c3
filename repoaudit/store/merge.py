"""Combine shard databases into one snapshot per registry.

An estate too large for one machine is collected in shards
(``repoaudit collect URL --shard i/n`` on n machines, each into its own
database); :func:`merge` then writes, for each registry, one snapshot whose
rows are what a single full run would have written: the repositories, tags
and collection errors of every shard under one new snapshot id, and each
manifest (with its layers and index children) once per ``(registry, digest)``
however many shards reached it.

From every input the newest snapshot of each registry is taken; the shards of
one registry must cover disjoint repositories and have started within
``max_spread`` of each other, or they are not one run. A missing shard, or a
shard whose run failed or was partial, makes the merged snapshot ``partial``
(its repositories are then simply not observed, so history views do not take
their tags for deleted); when every shard failed it is ``failed``.

The statements are in ``merge.sql``, reading the input through temporary views (``_read``); the copies
into the merged snapshot stay here as templates over each table's columns (``COLUMNS``), since an input
holds its own integer keys, which must not be copied, and an older input may lack newer tables.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import duckdb

from repoaudit.errors import ConfigError, StoreError, first_line
from repoaudit.store.database import COLUMNS, connect
from repoaudit.store.sql import statements
from repoaudit.store.writer import SnapshotWriter

SQL = statements(__package__, "merge.sql")

__all__ = ["MergeResult", "merge", "merge_into"]

DEFAULT_MAX_SPREAD = timedelta(hours=24)


@dataclass
class MergeResult:
    """One merged snapshot."""

    snapshot_id: int
    registry: str
    status: str
    shards: int
    repositories: int = 0
    tags: int = 0
    manifests: int = 0
    new_manifests: int = 0
    errors: int = 0
    missing_shards: list[str] = field(default_factory=list)


@dataclass
class _Part:
    """The snapshot one input contributes to one registry."""

    alias: str
    path: str
    snapshot_id: int
    source: str
    source_kind: str
    started_at: object
    finished_at: object
    status: str
    mode: str | None
    repository_count: int
    tag_count: int
    error_count: int
    requests: dict
    rate_limit: dict | None
    options: dict

    @property
    def shard(self) -> tuple[int, int] | None:
        text = self.options.get("shard")
        if not text:
            return None
        i, _, n = str(text).partition("/")
        return int(i), int(n)


def _quote_path(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def _attach(con: duckdb.DuckDBPyConnection, paths: list[str]) -> list[str]:
    aliases = []
    try:
        for i, path in enumerate(paths):
            if not Path(path).is_file():
                raise StoreError(f"merge input {path} does not exist")
            alias = f"_merge_input_{i}"
            try:
                con.execute(f"ATTACH {_quote_path(path)} AS {alias} (READ_ONLY)")  # ATTACH takes no parameters
            except duckdb.Error as exc:
                raise StoreError(f"cannot open merge input {path}: {first_line(exc)}") from None
            aliases.append(alias)
            found = con.execute(SQL["input_tables"], [alias]).fetchone()[0]
            if found != 7:
                raise StoreError(f"merge input {path} is not a repoaudit database (no snapshot tables)")
    except BaseException:
        _detach(con, aliases)
        raise
    return aliases


# The supply-chain tables (docs/supply-chain.md): referrer facts and verdicts are stored once, links per snapshot.
SUPPLY_TABLES = ("referrers", "referrer_links", "signature_verifications")

# The tables merge reads from an input, each seen as the temporary view _merge_in_<table>.
_INPUT_TABLES = ("snapshots", *COLUMNS, *SUPPLY_TABLES, "registry_posture")


def _read(con: duckdb.DuckDBPyConnection, alias: str) -> set[str]:
    """Point the views ``_merge_in_<table>`` at the input attached as ``alias``; the tables it has.

    A template: a view per table, since a statement cannot take the database it reads as a parameter.
    """
    present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ?",
                                         [alias]).fetchall()}
    for table in _INPUT_TABLES:
        if table in present:
            con.execute(f"CREATE OR REPLACE TEMP VIEW _merge_in_{table} AS SELECT * FROM {alias}.{table}")
        else:
            con.execute(f"DROP VIEW IF EXISTS temp._merge_in_{table}")
    return present


def _detach(con: duckdb.DuckDBPyConnection, aliases: list[str]) -> None:
    for table in _INPUT_TABLES:
        try:
            con.execute(f"DROP VIEW IF EXISTS temp._merge_in_{table}")
        except duckdb.Error:
            pass
    for alias in aliases:
        try:
            con.execute(f"DETACH {alias}")
        except duckdb.Error:
            pass


def _loads(text) -> dict:
    if not text:
        return {}
    return text if isinstance(text, dict) else json.loads(text)


def _parts(con: duckdb.DuckDBPyConnection, alias: str, path: str) -> list[tuple[str, _Part]]:
    _read(con, alias)
    rows = con.execute(SQL["newest_snapshots"]).fetchall()
    if not rows:
        raise ConfigError(f"merge input {path} holds no snapshot")
    return [(r[0], _Part(alias, path, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] or 0, r[9] or 0, r[10] or 0,
                         _loads(r[11]), _loads(r[12]) or None, _loads(r[13]))) for r in rows]


def _check(con: duckdb.DuckDBPyConnection, registry: str, parts: list[_Part], max_spread: timedelta) -> list[str]:
    """Refuse inputs that are not shards of one run; return the shards missing from the set."""
    first = min(parts, key=lambda p: p.started_at)
    last = max(parts, key=lambda p: p.started_at)
    if last.started_at - first.started_at > max_spread:
        hours = (last.started_at - first.started_at).total_seconds() / 3600
        raise ConfigError(f"{registry}: {first.path} and {last.path} were collected {hours:.1f} hours apart "
                          f"(more than {max_spread.total_seconds() / 3600:g}): not shards of one run")
    seen: dict[str, str] = {}
    for part in parts:
        _read(con, part.alias)
        names = con.execute(SQL["shard_repositories"], [part.snapshot_id, registry]).fetchall()
        for (name,) in names:
            if name in seen:
                raise ConfigError(f"{registry}: repository {name} is in both {seen[name]} and {part.path}: "
                                  f"shards must not overlap")
            seen[name] = part.path
    shards = [p.shard for p in parts]
    if not all(shards):
        return []
    counts = {n for _, n in shards}
    if len(counts) > 1:
        raise ConfigError(f"{registry}: inputs were sharded differently ({', '.join(sorted(f'/{n}' for n in counts))})")
    (n,) = counts
    by_index: dict[int, str] = {}
    for part in parts:
        i = part.shard[0]
        if i in by_index:
            raise ConfigError(f"{registry}: shard {i}/{n} is in both {by_index[i]} and {part.path}")
        by_index[i] = part.path
    return [f"{i}/{n}" for i in range(n) if i not in by_index]


def _copy_part(con: duckdb.DuckDBPyConnection, registry: str, part: _Part, snapshot_id: int) -> int:
    """Copy one shard's snapshot rows under ``snapshot_id``; returns how many manifests were new."""
    old = part.snapshot_id
    present = _read(con, part.alias)
    # Every per-snapshot table (repositories, tags, collection_errors, repository_status, …) that
    # the input has; an input from an older repoaudit may lack the newer ones. Templates over COLUMNS.
    for table in [t for t, cols in COLUMNS.items() if cols[0] == "snapshot_id" and t in present]:
        cols = COLUMNS[table]
        rest = ", ".join(cols[1:])
        con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT $new, {rest} FROM _merge_in_{table} "
                    f"WHERE snapshot_id = $old AND registry = $registry",
                    {"new": snapshot_id, "old": old, "registry": registry})
    con.execute(SQL["new_manifests"], {"old": old, "registry": registry})
    cols = COLUMNS["manifests"]
    picked = ", ".join("$new" if c == "first_seen_snapshot" else c for c in cols)
    con.execute(f"INSERT INTO manifests ({', '.join(cols)}) SELECT {picked} FROM _merge_in_manifests "
                f"WHERE registry = $registry AND digest IN (SELECT digest FROM _merge_new)",
                {"new": snapshot_id, "registry": registry})
    for table, key in (("layers", "manifest_digest"), ("manifest_children", "index_digest")):
        cols = ", ".join(COLUMNS[table])
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _merge_in_{table} "
                    f"WHERE registry = $registry AND {key} IN (SELECT digest FROM _merge_new)", {"registry": registry})
    if set(SUPPLY_TABLES) <= present:
        con.execute(SQL["supply_referrers"], {"registry": registry})
        con.execute(SQL["supply_links"], {"new": snapshot_id, "old": old, "registry": registry})
        con.execute(SQL["supply_verifications"], {"registry": registry})
    count = con.execute("SELECT count(*) FROM _merge_new").fetchone()[0]
    con.execute(SQL["new_manifests_done"])
    return count


def _copy_posture(con: duckdb.DuckDBPyConnection, registry: str, parts: list[_Part], snapshot_id: int) -> None:
    """The newest shard's posture probe, under the merged snapshot: every shard probes the same registry
    (anonymous access and TLS do not depend on the shard), and a snapshot has one posture row."""
    for part in sorted(parts, key=lambda p: p.started_at, reverse=True):
        if "registry_posture" not in _read(con, part.alias):
            continue
        con.execute(SQL["posture"], {"new": snapshot_id, "old": part.snapshot_id, "registry": registry})
        if con.execute("SELECT count(*) FROM registry_posture WHERE snapshot_id = ?", [snapshot_id]).fetchall()[0][0]:
            return


def _merge_registry(con: duckdb.DuckDBPyConnection, registry: str, parts: list[_Part],
                    missing: list[str]) -> MergeResult:
    requests: Counter[str] = Counter()
    for part in parts:
        requests.update({k: int(v) for k, v in part.requests.items()})
    newest = max(parts, key=lambda p: p.started_at)
    rate_limit = next((p.rate_limit for p in sorted(parts, key=lambda p: p.started_at, reverse=True)
                       if p.rate_limit), None)
    failed = [p for p in parts if p.status == "failed"]
    degraded = failed or missing or any(p.status == "partial" for p in parts)
    if len(failed) == len(parts):
        status = "failed"
    else:
        status = "partial" if degraded else "complete"
    options = {"merged_from": [{"database": p.path, "snapshot_id": p.snapshot_id, "status": p.status,
                                **p.options} for p in parts]}
    writer = SnapshotWriter(con, registry=registry, source=" ".join(sorted({p.source for p in parts})),
                            source_kind=newest.source_kind, started_at=min(p.started_at for p in parts),
                            mode="full" if any(p.mode == "full" for p in parts) else "incremental",
                            options=options)
    writer.begin(stage=False)  # the shards' rows are copied straight into the snapshot's transaction
    try:
        new_manifests = sum(_copy_part(con, registry, p, writer.snapshot_id) for p in parts)
        _copy_posture(con, registry, parts, writer.snapshot_id)
        for shard in missing:
            writer.add("collection_errors", (writer.snapshot_id, registry, None, None, "MissingShard",
                                             f"shard {shard} was not among the merged databases"))
        errors = sum(p.error_count for p in parts) + len(missing)
        error = None
        if status == "failed":
            error = f"all {len(parts)} shards failed"
        finishes = [p.finished_at for p in parts if p.finished_at is not None]
        manifests = writer.commit(status=status, repository_count=sum(p.repository_count for p in parts),
                                  tag_count=sum(p.tag_count for p in parts), new_manifest_count=new_manifests,
                                  error_count=errors, requests=dict(requests), rate_limit=rate_limit,
                                  finished_at=max(finishes) if finishes else None, error=error)
    except BaseException:
        writer.rollback()
        raise
    return MergeResult(writer.snapshot_id, registry, status, len(parts), sum(p.repository_count for p in parts),
                       sum(p.tag_count for p in parts), manifests, new_manifests, errors, missing)


def merge_into(con: duckdb.DuckDBPyConnection, inputs: list[str | Path], *, output: str | Path | None = None,
               max_spread: timedelta = DEFAULT_MAX_SPREAD) -> list[MergeResult]:
    """Merge the newest snapshot of each registry in ``inputs`` into the open database ``con``.

    Each registry becomes one new snapshot (in its own transaction) with fresh
    snapshot ids; manifests already stored in ``con`` are kept, not duplicated.
    """
    paths = [str(Path(p).resolve()) for p in inputs]
    if not paths:
        raise ConfigError("merge needs at least one input database")
    dupes = sorted({p for p in paths if paths.count(p) > 1})
    if dupes:
        raise ConfigError(f"merge input {dupes[0]} is given twice")
    if output is not None and str(Path(output).resolve()) in paths:
        raise ConfigError(f"merge output {output} is also an input")
    aliases = _attach(con, paths)
    try:
        by_registry: dict[str, list[_Part]] = {}
        for alias, path in zip(aliases, paths):
            for registry, part in _parts(con, alias, path):
                by_registry.setdefault(registry, []).append(part)
        plans = [(registry, parts, _check(con, registry, parts, max_spread))
                 for registry, parts in sorted(by_registry.items())]
        return [_merge_registry(con, registry, parts, missing) for registry, parts, missing in plans]
    finally:
        _detach(con, aliases)


def merge(inputs: list[str | Path], output: str | Path, *,
          max_spread: timedelta = DEFAULT_MAX_SPREAD) -> list[MergeResult]:
    """Combine shard databases ``inputs`` into ``output`` (created if missing): one snapshot per registry."""
    con = connect(output)
    try:
        return merge_into(con, inputs, output=output, max_spread=max_spread)
    finally:
        con.close()
