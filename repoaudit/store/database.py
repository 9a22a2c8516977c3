"""The DuckDB store: opening, migrating, and writing one snapshot per transaction."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import duckdb
import pyarrow as pa

from repoaudit.errors import StoreError, first_line
from repoaudit.store.kept import assign_keys, refill_latest

_MIGRATION = re.compile(r"^-- migration: (\d+) (.*)$", re.M)



# Column order of every bulk-written table; rows are tuples in this order.
COLUMNS: dict[str, tuple[str, ...]] = {
    "repositories": ("snapshot_id", "registry", "repository", "tag_count", "status", "error"),
    "tags": ("snapshot_id", "registry", "repository", "tag", "digest"),
    "manifests": ("registry", "digest", "media_type", "kind", "artifact_type", "manifest_size", "config_digest",
                  "config_size", "layers_size", "layer_count", "total_size", "created", "architecture", "os",
                  "variant", "labels", "annotations", "subject", "first_seen_snapshot"),
    "manifest_children": ("registry", "index_digest", "position", "child_digest", "media_type", "size", "os",
                          "architecture", "variant"),
    "layers": ("registry", "manifest_digest", "position", "digest", "media_type", "size"),
    "collection_errors": ("snapshot_id", "registry", "repository", "reference", "error_type", "error"),
    "repository_status": ("snapshot_id", "registry", "repository", "name", "canonical_image_name", "tag_count",
                          "scan_time", "latest_tags", "observed_exclusion_list", "ready", "reason", "message",
                          "last_handled_reconcile_at"),
}



# Arrow types for columns that are not plain strings, so empty and all-NULL batches still load.
_TYPES = {"snapshot_id": pa.int64(), "tag_count": pa.int32(), "manifest_size": pa.int64(), "config_size": pa.int64(),
          "layers_size": pa.int64(), "layer_count": pa.int32(), "total_size": pa.int64(), "created": pa.timestamp("us"),
          "first_seen_snapshot": pa.int64(), "position": pa.int32(), "size": pa.int64(),
          "scan_time": pa.timestamp("us"), "last_handled_reconcile_at": pa.timestamp("us"), "ready": pa.bool_()}



def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)



def _schema_text() -> str:
    return resources.files("repoaudit").joinpath("schema.sql").read_text()



def migrations() -> list[tuple[int, str, str]]:
    """(version, title, sql) for every block of ``schema.sql``, in order."""
    text = _schema_text()
    marks = list(_MIGRATION.finditer(text))
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append((int(m.group(1)), m.group(2).strip(), text[m.end():end]))
    return out



# Migrations whose data step is Python shared with the snapshot writer: version -> function of this module.
# Python steps that finish a migration, by the version they follow.
_AFTER_MIGRATION = {10: assign_keys, 11: refill_latest}



def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating and migrating when writable) a repoaudit database."""
    path = str(path)
    if read_only and path != ":memory:" and not Path(path).exists():
        raise StoreError(f"database {path} does not exist (run 'repoaudit collect' or 'repoaudit demo' first)")
    try:
        con = duckdb.connect(path, read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open database {path}: {first_line(exc)}") from None
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        migrate(con, path)
    elif path != ":memory:" and schema_version(con) < migrations()[-1][0]:
        # Written by an older repoaudit: the queries need the newer tables, so upgrade it once, then read.
        con.close()
        try:
            connect(path).close()
        except StoreError as exc:
            raise StoreError(f"{path} needs a schema upgrade this read-only open cannot make: {exc}") from None
        return connect(path, read_only=True)
    return con



def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    if not relation_exists(con, "schema_version"):
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]



def migrate(con: duckdb.DuckDBPyConnection, path: str = "database") -> int:
    current = schema_version(con)
    known = migrations()
    if current > (known[-1][0] if known else 0):
        raise StoreError(f"{path} has schema version {current}, newer than this repoaudit knows; upgrade repoaudit")
    for version, title, sql in known:
        if version <= current:
            continue
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(sql)
            if version in _AFTER_MIGRATION:
                _AFTER_MIGRATION[version](con)
            con.execute("INSERT INTO schema_version VALUES (?, ?, ?)", [version, title, utcnow()])
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(f"{path}: migration {version} ({title}) failed: {first_line(exc)}") from None
        current = version
    return current



def to_json(value: Any) -> str | None:
    if value in (None, {}, []):
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))



def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """Bulk insert tuples in ``COLUMNS[table]`` order."""
    if not rows:
        return
    cols = COLUMNS[table]
    insert_arrow(con, table, pa.Table.from_arrays(
        [pa.array([r[i] for r in rows], type=_TYPES.get(col, pa.string())) for i, col in enumerate(cols)],
        names=list(cols)))


def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, batch: pa.Table) -> None:
    """Insert an Arrow table's columns by name: one statement per batch, where executemany is one per row."""
    if batch.num_rows == 0:
        return
    names = ", ".join(f'"{name}"' for name in batch.column_names)
    con.register("_repoaudit_batch", batch)
    try:
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _repoaudit_batch")
    finally:
        try:
            con.unregister("_repoaudit_batch")
        except duckdb.TransactionException:
            pass  # the INSERT failed and aborted the transaction; its own error is the one to see


def relation_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table or view of this name exists (older databases lack newer ones)."""
    return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
                       ).fetchone()[0] > 0


def under_memory_limit(con: duckdb.DuckDBPyConnection, limit: int, run: Callable[[], Any],
                       undo: Callable[[], None] = lambda: None) -> Any:
    """``run()`` with DuckDB held to ``limit`` bytes, so it evicts what it has written instead of caching it.

    If the limit runs out, ``undo()`` and run once more without one: memory is a target, not a reason
    to lose the work.
    """
    for cap in (limit, None):
        try:
            if cap:
                con.execute(f"SET memory_limit = '{cap // 2**20}MB'")
            return run()
        except duckdb.OutOfMemoryException:
            undo()
            if cap is None:
                raise
        finally:
            con.execute("RESET memory_limit")



def rows_as_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row)) for row in cursor.fetchall()]

