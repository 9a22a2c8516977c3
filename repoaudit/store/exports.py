"""Exports for estates that outgrow one machine: every table as Hive-partitioned Parquet.

The layout is ``DIR/<table>/registry=<registry>/snapshot_date=<YYYY-MM-DD>/part-<batch>-<n>.parquet``
(``snapshot_date`` only for tables whose rows belong to a snapshot) beside ``DIR/_schema.json``, which Trino,
Spark, Athena and DuckDB all read as partitioned tables. Partition values are
percent-encoded (``registry=127.0.0.1%3A5000``), as Hive does.

Catalog lookups are in ``exports.sql``; the SELECT, count and COPY of each table stay here as
templates, since they name the table being exported.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import duckdb

from repoaudit.errors import ConfigError
from repoaudit.store.sql import statements

SQL = statements(__package__, "exports.sql")

# Bookkeeping of the schema, not data.
_SKIP = {"schema_version", "schema_views"}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def base_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(SQL["base_tables"]).fetchall()
    return [r[0] for r in rows if r[0] not in _SKIP and not r[0].startswith("_")]


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(SQL["table_columns"], [table]).fetchall()]


_CLUSTER_SNAPSHOTS = ("workloads", "workload_snapshots")


def partition_plan(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str, list[str]]:
    """The SELECT that feeds a table's export and the columns it is partitioned by."""
    cols = _columns(con, table)
    partitions = []
    select = f"SELECT t.* FROM {_quote(table)} t"
    if table in _CLUSTER_SNAPSHOTS:
        # A pod listing's snapshot_id numbers cluster snapshots, not registry ones: dated by its own ingest.
        select = (f"SELECT t.*, CAST(w.ingested_at AS DATE) AS snapshot_date FROM {_quote(table)} t "
                  "JOIN workload_snapshots w USING (snapshot_id)")
        partitions = ["snapshot_date"]
    elif "snapshot_id" in cols and table != "snapshots":
        select = (f"SELECT t.*, CAST(s.started_at AS DATE) AS snapshot_date FROM {_quote(table)} t "
                  f"LEFT JOIN snapshots s USING (snapshot_id)")
        partitions = ["snapshot_date"]
    elif table == "snapshots":
        select = "SELECT t.*, CAST(t.started_at AS DATE) AS snapshot_date FROM snapshots t"
        partitions = ["snapshot_date"]
    if "registry" in cols:
        partitions.insert(0, "registry")
    return select, partitions


LAKE_FORMAT = "repoaudit-lake"
LAKE_VERSION = 1
SCHEMA_FILE = "_schema.json"

# Types every reader maps the same way are stored as they are; JSON is stored as its text, since
# Spark and Trino have no Parquet JSON type and would otherwise each guess.
_STORED_AS = {"JSON": "VARCHAR"}


def _typed_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[dict]:
    rows = con.execute(SQL["table_column_types"], [table]).fetchall()
    return [{"name": name, "type": dtype, "stored_as": _STORED_AS.get(dtype, dtype)} for name, dtype in rows]


def _stable_select(select: str, columns: list[dict], partitions: list[str]) -> str:
    """The export SELECT with each column cast to its stored type: the types come from the schema,
    never from what one batch happens to hold (an all-NULL column stays a VARCHAR, not an INTEGER)."""
    casts = ", ".join(f"CAST(x.{_quote(c['name'])} AS {c['stored_as']}) AS {_quote(c['name'])}" for c in columns)
    own = {c["name"] for c in columns}
    extra = "".join(f", x.{p}" for p in partitions if p not in own)
    return f"SELECT {casts}{extra} FROM ({select}) x"


def read_lake_schema(directory: str | Path) -> dict | None:
    """The lake's ``_schema.json``, or None when ``directory`` holds no lake."""
    path = Path(directory) / SCHEMA_FILE
    if not path.exists():
        return None
    try:
        schema = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable lake schema ({exc})") from None
    if not isinstance(schema, dict) or schema.get("format") != LAKE_FORMAT or not isinstance(schema.get("tables"), dict):
        raise ConfigError(f"{path}: not a repoaudit lake schema (format {LAKE_FORMAT!r} expected)")
    if schema.get("version") != LAKE_VERSION:
        raise ConfigError(f"{path}: lake version {schema.get('version')!r}, this repoaudit writes {LAKE_VERSION}")
    return schema


def _check_types(table: str, old: list[dict], new: list[dict], directory: Path) -> None:
    before = {c["name"]: c["stored_as"] for c in old}
    for c in new:
        if c["name"] in before and before[c["name"]] != c["stored_as"]:
            raise ConfigError(f"{directory}: column {table}.{c['name']} is {before[c['name']]} in the lake but "
                              f"{c['stored_as']} in the database; re-export with --overwrite")


def export_parquet(con: duckdb.DuckDBPyConnection, directory: str | Path, *, overwrite: bool = False,
                   append: bool = False) -> dict[str, int]:
    """Write every table under ``directory`` as a lake; returns rows written per table.

    With ``append``, ``directory`` may already hold a lake written by an earlier export of the same
    database: tables partitioned by snapshot get only the snapshots the lake lacks, as new files in
    their partitions (old files are never rewritten); the other tables (manifests, layers, keys: the
    current state, not history) are replaced whole. ``_schema.json`` is written last and records
    every table's columns, stored types, partitions and the snapshots it holds.
    """
    directory = Path(directory)
    if overwrite and append:
        raise ConfigError("give --append or --overwrite, not both")
    previous = None
    if directory.exists() and any(directory.iterdir()):
        previous = read_lake_schema(directory) if append else None
        if previous is None:
            if not overwrite:
                hint = "not a lake (no _schema.json)" if append else "not empty (use --overwrite to replace it, or --append)"
                raise ConfigError(f"{directory} is {hint}")
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="_staging-", dir=directory))
    try:
        schema, counts, moves = _write_staged(con, directory, staging, previous)
        for source, target in moves:
            if source.is_dir():
                if target.exists():
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                source.rename(target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                source.rename(target)
        tmp = directory / (SCHEMA_FILE + ".tmp")
        tmp.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        tmp.replace(directory / SCHEMA_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def _write_staged(con, directory: Path, staging: Path, previous: dict | None):
    batch = 1 + (previous or {}).get("batches", 0)
    schema = {"format": LAKE_FORMAT, "version": LAKE_VERSION, "batches": batch, "tables": {}}
    counts: dict[str, int] = {}
    moves: list[tuple[Path, Path]] = []
    for table in base_tables(con):
        select, partitions = partition_plan(con, table)
        columns = _typed_columns(con, table)
        old = (previous or {})["tables"].get(table) if previous else None
        entry = {"columns": columns,
                 "partitions": [{"name": p, "type": "DATE" if p == "snapshot_date" else "VARCHAR"} for p in partitions],
                 "mode": "append" if "snapshot_date" in partitions else "replace"}
        stable = _stable_select(select, columns, partitions)
        where = ""
        if entry["mode"] == "append":
            held = con.execute(f"SELECT CAST(snapshot_id AS VARCHAR), count(*) FROM {_quote(table)} "
                               "WHERE snapshot_id IS NOT NULL GROUP BY snapshot_id").fetchall()
            held = {str(k): n for k, n in held}
            done = (old or {}).get("snapshots", {}) if old and old.get("mode") == "append" else {}
            if old:
                _check_types(table, old["columns"], columns, directory)
            for sid, n in done.items():
                if held.get(sid, 0) != n:
                    raise ConfigError(f"{directory}: table {table} now has {held.get(sid, 0)} rows of snapshot {sid}, "
                                      f"the lake {n}; re-export with --overwrite")
            new = sorted(set(held) - set(done), key=int)
            entry["snapshots"] = {**done, **{s: held[s] for s in new}}
            if not new:
                counts[table] = 0
                schema["tables"][table] = entry
                continue
            where = f" WHERE x.snapshot_id IN ({', '.join(new)})"
        rows = con.execute(f"SELECT count(*) FROM ({stable}{where})").fetchone()[0]
        counts[table] = rows
        schema["tables"][table] = entry
        if rows == 0:
            if entry["mode"] == "replace" and (directory / table).exists():
                moves.append((staging / table, directory / table))
                (staging / table).mkdir()
            continue  # readers take an empty table's columns from _schema.json
        target = staging / table
        target.mkdir()
        path = str(target).replace("'", "''")
        options = f"FORMAT PARQUET, FILENAME_PATTERN 'part-{batch:06d}-{{i}}'"
        if partitions:
            options += f", PARTITION_BY ({', '.join(partitions)})"
        else:
            path = str(target / f"part-{batch:06d}-0.parquet").replace("'", "''")
        con.execute(f"COPY ({stable}{where}) TO '{path}' ({options})")
        if entry["mode"] == "replace":
            moves.append((target, directory / table))
        else:
            for file in sorted(target.rglob("*.parquet")):
                moves.append((file, directory / table / file.relative_to(target)))
    return schema, counts, moves


def read_parquet_sql(directory: str | Path, table: str) -> str:
    """The DuckDB expression that reads one exported table back, partitions included."""
    path = str(Path(directory) / table / "**" / "*.parquet").replace("'", "''")
    return f"read_parquet('{path}', hive_partitioning = true, union_by_name = true)"
