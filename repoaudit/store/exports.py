"""Exports for estates that outgrow one machine: every table as Hive-partitioned Parquet.

The layout is ``DIR/<table>/registry=<registry>/snapshot_date=<YYYY-MM-DD>/data_0.parquet``
(``snapshot_date`` only for tables whose rows belong to a snapshot), which Trino,
Spark, Athena and DuckDB all read as partitioned tables. Partition values are
percent-encoded (``registry=127.0.0.1%3A5000``), as Hive does.

Catalog lookups are in ``exports.sql``; the SELECT, count and COPY of each table stay here as
templates, since they name the table being exported.
"""

from __future__ import annotations

import shutil
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


def export_parquet(con: duckdb.DuckDBPyConnection, directory: str | Path, *, overwrite: bool = False) -> dict[str, int]:
    """Write every table under ``directory``; returns rows written per table."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        if not overwrite:
            raise ConfigError(f"{directory} is not empty (use --overwrite to replace it)")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table in base_tables(con):
        select, partitions = partition_plan(con, table)
        target = directory / table
        rows = con.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()[0]
        if rows == 0:
            counts[table] = 0
            continue  # an empty partitioned COPY writes nothing readable; readers see no table
        options = "FORMAT PARQUET"
        if partitions:
            options += f", PARTITION_BY ({', '.join(partitions)})"
        target.mkdir(parents=True, exist_ok=True)
        path = str(target if partitions else target / "data_0.parquet").replace("'", "''")
        con.execute(f"COPY ({select}) TO '{path}' ({options})")
        counts[table] = rows
    return counts


def read_parquet_sql(directory: str | Path, table: str) -> str:
    """The DuckDB expression that reads one exported table back, partitions included."""
    path = str(Path(directory) / table / "**" / "*.parquet").replace("'", "''")
    return f"read_parquet('{path}', hive_partitioning = true, union_by_name = true)"
