"""The DuckDB store: opening, migrating, and writing one snapshot per transaction."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import duckdb
import pyarrow as pa

from . import __version__
from .errors import StoreError

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
_AFTER_MIGRATION = {10: "assign_keys", 11: "refill_latest"}


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating and migrating when writable) a repoaudit database."""
    path = str(path)
    if read_only and path != ":memory:" and not Path(path).exists():
        raise StoreError(f"database {path} does not exist (run 'repoaudit collect' or 'repoaudit demo' first)")
    try:
        con = duckdb.connect(path, read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open database {path}: {str(exc).splitlines()[0]}") from None
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
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
                         ).fetchone()[0]
    if not exists:
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
                globals()[_AFTER_MIGRATION[version]](con)
            con.execute("INSERT INTO schema_version VALUES (?, ?, ?)", [version, title, utcnow()])
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(f"{path}: migration {version} ({title}) failed: {str(exc).splitlines()[0]}") from None
        current = version
    return current


def to_json(value: Any) -> str | None:
    if value in (None, {}, []):
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """Bulk insert through Arrow: one statement per batch instead of one per row."""
    if not rows:
        return
    cols = COLUMNS[table]
    arrays = []
    for i, col in enumerate(cols):
        values = [r[i] for r in rows]
        arrays.append(pa.array(values, type=_TYPES.get(col, pa.string())))
    batch = pa.Table.from_arrays(arrays, names=list(cols))
    con.register("_repoaudit_batch", batch)
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM _repoaudit_batch")
    finally:
        try:
            con.unregister("_repoaudit_batch")
        except duckdb.TransactionException:
            pass  # the INSERT failed and aborted the transaction; its own error is the one to see


@dataclass
class SnapshotInfo:
    snapshot_id: int
    registry: str
    source: str
    started_at: datetime


# Stored with each snapshot so that listing snapshots never re-walks every blob of every snapshot.
SNAPSHOT_TOTALS = """
    WITH reach AS (SELECT DISTINCT registry, digest FROM snapshot_manifests WHERE snapshot_id = $1)
    SELECT (SELECT count(*) FROM reach),
           coalesce((SELECT sum(size) FROM (
               SELECT DISTINCT b.blob_digest, b.size FROM reach r
               JOIN manifest_blobs b ON b.registry = r.registry AND b.manifest_digest = r.digest)), 0)
"""


# Integer keys (schema migration 10): dictionary -> (the column it names, its sequence) ...
_DICTIONARIES = {"digest_keys": ("digest", "digest_key_seq"), "repository_keys": ("repository", "repository_key_seq")}
# ... and the columns keyed from each: (dictionary, table, key column, named column).
_KEYED = (("digest_keys", "manifests", "manifest_key", "digest"),
          ("digest_keys", "manifests", "config_key", "config_digest"),
          ("digest_keys", "layers", "manifest_key", "manifest_digest"),
          ("digest_keys", "layers", "blob_key", "digest"),
          ("digest_keys", "manifest_children", "index_key", "index_digest"),
          ("digest_keys", "manifest_children", "child_key", "child_digest"),
          ("digest_keys", "repository_links", "manifest_key", "digest"),
          ("repository_keys", "repository_links", "repository_key", "repository"),
          ("repository_keys", "repositories", "repository_key", "repository"))


def _key_names(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> None:
    """Key every digest or repository name that rows of ``tables`` (table -> relation) leave unkeyed."""
    for dictionary, (name, sequence) in _DICTIONARIES.items():
        missing = " UNION ALL ".join(f"SELECT registry, {column} AS name FROM {tables[table]} "
                                     f"WHERE {key} IS NULL AND {column} IS NOT NULL"
                                     for d, table, key, column in _KEYED if d == dictionary and table in tables)
        if missing:
            con.execute(f"""
                INSERT INTO {dictionary} (registry, {name}, key)
                SELECT registry, name, nextval('{sequence}') FROM (
                    SELECT DISTINCT n.registry, n.name FROM ({missing}) n
                    ANTI JOIN {dictionary} k ON k.registry = n.registry AND k.{name} = n.name)""")


def _with_keys(table: str, relation: str, dictionaries: dict[str, str] | None = None) -> str:
    """SELECT of every column of ``relation`` (rows shaped like ``table``) with its NULL keys looked up.

    ``dictionaries`` names where to look each dictionary up (default: the dictionary itself).
    """
    columns = [(d, key, column) for d, t, key, column in _KEYED if t == table]
    where = dictionaries or {}
    joins = " ".join(f"LEFT JOIN {where.get(d, d)} k{i} ON k{i}.registry = t.registry "
                     f"AND k{i}.{_DICTIONARIES[d][0]} = t.{column}"
                     for i, (d, _, column) in enumerate(columns))
    keys = ", ".join(f"coalesce(t.{key}, k{i}.key) AS {key}" for i, (_, key, _) in enumerate(columns))
    return f"SELECT t.* REPLACE ({keys}) FROM {relation} t {joins}" if columns else f"SELECT * FROM {relation}"


def copy_with_keys(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> None:
    """INSERT the rows of each relation into its table (table -> relation) with their keys filled in.

    Writing keys as rows arrive, rather than updating them afterwards, keeps the transaction from
    holding an undo copy of every row it touched (the snapshot's new links use it).
    """
    _key_names(con, tables)
    for table, relation in tables.items():
        con.execute(f"INSERT INTO main.{table} BY NAME {_with_keys(table, relation)}")


def fold_links(con: duckdb.DuckDBPyConnection, snapshot_id: int) -> None:
    """Fold one snapshot's (repository, manifest) links into ``repository_links`` (schema migration 9).

    Runs inside the snapshot's transaction, after its row is written. The snapshot may be older than
    some already folded (a merge of old shards), so first and last sightings are compared, not assumed.
    """
    con.execute("CREATE OR REPLACE TEMP TABLE _repoaudit_fold AS SELECT * FROM links_reached(?)",
                [int(snapshot_id)])
    con.execute("""
        UPDATE repository_links AS l SET
            first_seen = CASE WHEN (f.first_seen, f.first_snapshot) < (l.first_seen, l.first_snapshot)
                              THEN f.first_seen ELSE l.first_seen END,
            first_snapshot = CASE WHEN (f.first_seen, f.first_snapshot) < (l.first_seen, l.first_snapshot)
                                  THEN f.first_snapshot ELSE l.first_snapshot END,
            last_seen = CASE WHEN (f.last_seen, f.last_snapshot) > (l.last_seen, l.last_snapshot)
                             THEN f.last_seen ELSE l.last_seen END,
            last_snapshot = CASE WHEN (f.last_seen, f.last_snapshot) > (l.last_seen, l.last_snapshot)
                                 THEN f.last_snapshot ELSE l.last_snapshot END,
            tags = CASE WHEN (f.last_seen, f.last_snapshot) > (l.last_seen, l.last_snapshot)
                        THEN f.tags ELSE l.tags END
        FROM _repoaudit_fold f
        WHERE f.registry = l.registry AND f.repository = l.repository AND f.digest = l.digest""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _repoaudit_new_links AS
        SELECT f.*, NULL::BIGINT AS manifest_key, NULL::BIGINT AS repository_key FROM _repoaudit_fold f
        ANTI JOIN repository_links l
            ON l.registry = f.registry AND l.repository = f.repository AND l.digest = f.digest""")
    copy_with_keys(con, {"repository_links": "_repoaudit_new_links"})
    con.execute("DROP TABLE _repoaudit_fold")
    con.execute("DROP TABLE _repoaudit_new_links")


def assign_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Key every digest and repository name stored without one (schema migration 10), in the caller's transaction.

    Staged rows come in keyed (SnapshotWriter._key_stage) and new links too (copy_with_keys); this catches
    the rest: databases from before the keys, merges, in-memory databases. Only unkeyed rows are read.
    """
    by_table: dict[str, list[tuple[str, str]]] = {}
    for _, table, key, column in _KEYED:
        by_table.setdefault(table, []).append((key, column))
    unkeyed = {table: " OR ".join(f"({key} IS NULL AND {column} IS NOT NULL)" for key, column in columns)
               for table, columns in by_table.items()}
    # A commit usually leaves nothing unkeyed: a row probe per table saves reading every table's key columns.
    unkeyed = {table: where for table, where in unkeyed.items()
               if con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT 1)").fetchone()[0]}
    if not unkeyed:
        return
    _key_names(con, {table: table for table in unkeyed})
    for table, where in unkeyed.items():
        columns = by_table[table]
        # One pass per table, matched by rowid: joining the table itself again in UPDATE ... FROM is slower.
        sets = ", ".join(f"{key} = x.{key}" for key, _ in columns)
        relation = f"(SELECT rowid AS row_id, * FROM {table} WHERE {where})"
        con.execute(f"UPDATE {table} SET {sets} FROM ({_with_keys(table, relation)}) x WHERE {table}.rowid = x.row_id")


def count_blob_refs(con: duckdb.DuckDBPyConnection) -> None:
    """Add the blob references of manifests now both stored and reached to ``blob_refs`` (schema migration 10).

    Links are never removed and stored manifests never change, so counting each manifest once, the first
    time it has a manifests row and a link, keeps the table equal to a count over all reached manifests.
    ``manifest_sole_bytes`` (migration 11) is recounted for the manifests whose blobs this changes: the new
    ones, and those that held alone a blob a new one now shares.
    """
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _repoaudit_count AS
        SELECT DISTINCT m.manifest_key FROM manifests m
        SEMI JOIN repository_links l ON l.manifest_key = m.manifest_key
        ANTI JOIN counted_manifests c ON c.manifest_key = m.manifest_key""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _repoaudit_refs AS
        SELECT any_value(b.registry) AS registry, b.blob_key, max(b.size) AS size, count(*) AS refs,
               min(b.manifest_key) AS lo_manifest, max(b.manifest_key) AS hi_manifest
        FROM manifest_blob_keys b SEMI JOIN _repoaudit_count n ON n.manifest_key = b.manifest_key
        GROUP BY b.blob_key""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _repoaudit_sole AS
        SELECT manifest_key FROM _repoaudit_count
        UNION
        SELECT r.lo_manifest FROM blob_refs r SEMI JOIN _repoaudit_refs n ON n.blob_key = r.blob_key
        WHERE r.lo_manifest = r.hi_manifest""")
    con.execute("""
        UPDATE blob_refs AS r SET size = greatest(r.size, n.size), refs = r.refs + n.refs,
                                  lo_manifest = least(r.lo_manifest, n.lo_manifest),
                                  hi_manifest = greatest(r.hi_manifest, n.hi_manifest)
        FROM _repoaudit_refs n WHERE n.blob_key = r.blob_key""")
    con.execute("""
        INSERT INTO blob_refs BY NAME
        SELECT n.* FROM _repoaudit_refs n ANTI JOIN blob_refs r ON r.blob_key = n.blob_key""")
    con.execute("INSERT INTO counted_manifests SELECT manifest_key FROM _repoaudit_count")
    sum_sole_bytes(con, "_repoaudit_sole")
    for table in ("_repoaudit_count", "_repoaudit_refs", "_repoaudit_sole"):
        con.execute(f"DROP TABLE {table}")


def sum_sole_bytes(con: duckdb.DuckDBPyConnection, manifests: str | None = None) -> None:
    """Recount ``manifest_sole_bytes`` from ``blob_refs``: for the manifest keys in table ``manifests``, or all."""
    if manifests is None:
        con.execute("DELETE FROM manifest_sole_bytes")
        only = ""
    else:
        con.execute(f"DELETE FROM manifest_sole_bytes WHERE manifest_key IN (SELECT manifest_key FROM {manifests})")
        only = f"SEMI JOIN {manifests} s ON s.manifest_key = r.lo_manifest"
    con.execute(f"""
        INSERT INTO manifest_sole_bytes
        SELECT r.lo_manifest, sum(r.size) FROM blob_refs r {only}
        WHERE r.lo_manifest = r.hi_manifest AND r.size IS NOT NULL
        GROUP BY r.lo_manifest""")


def refresh_latest_images(con: duckdb.DuckDBPyConnection, registry: str | None = None) -> None:
    """Recompute ``latest_images`` (schema migration 11) for one registry, or all of them."""
    if registry is None:
        con.execute("DELETE FROM latest_images")
    else:
        con.execute("DELETE FROM latest_images WHERE registry = ?", [registry])
    con.execute("INSERT INTO latest_images BY NAME SELECT * FROM compute_latest_images(?)", [registry])


def key_and_count(con: duckdb.DuckDBPyConnection) -> None:
    """Keys for everything new, then the blob references of newly reached manifests."""
    assign_keys(con)
    count_blob_refs(con)


def refill_latest(con: duckdb.DuckDBPyConnection) -> None:
    """Count blob references (migration 10), then fill the tables migration 11 adds."""
    count_blob_refs(con)
    sum_sole_bytes(con)
    refresh_latest_images(con)


def maintain(con: duckdb.DuckDBPyConnection, snapshot_id: int) -> None:
    """What a commit keeps besides the rows themselves: the snapshot's links, keys, blob references, and its
    registry's latest images."""
    fold_links(con, snapshot_id)
    key_and_count(con)
    registry = con.execute("SELECT registry FROM snapshots WHERE snapshot_id = ?", [int(snapshot_id)]).fetchone()[0]
    refresh_latest_images(con, registry)


def rebuild_links(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute ``repository_links``, keys, blob references and latest images from every snapshot: for
    plain-SQL databases."""
    con.execute("DELETE FROM repository_links")
    con.execute("INSERT INTO repository_links BY NAME SELECT * FROM links_reached(NULL)")
    con.execute("DELETE FROM blob_refs")
    con.execute("DELETE FROM counted_manifests")
    con.execute("DELETE FROM manifest_sole_bytes")
    key_and_count(con)
    refresh_latest_images(con)


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


class SnapshotWriter:
    """Buffers one snapshot's rows and writes them inside a single transaction.

    Nothing is visible to other connections until :meth:`commit`; an exception
    or a killed process leaves earlier snapshots exactly as they were. A failed
    run is then recorded by :meth:`record_failure` in a transaction of its own.

    DuckDB keeps a transaction's uncommitted rows in memory, uncompressed. So that
    memory stays flat however large the registry, every row is first written to a
    staging database beside the file, committed batch by batch there, keyed there
    (see ``_key_stage``), and copied into the real tables in the snapshot's one
    transaction, which begins only then, under ``COMMIT_MEMORY``. A killed run leaves
    only that staging file, which the next writer of the database removes. An
    in-memory database, or ``begin(stage=False)``, writes into the transaction directly.
    """

    FLUSH_AT = 20_000
    STAGED = tuple(COLUMNS)
    STAGE_MEMORY = "128MB"
    # DuckDB caches the rows a big copy writes unless held to a limit. The snapshot's transaction runs
    # under COMMIT_MEMORY bytes, or COMMIT_MEMORY_PER_STAGE_BYTE times the stage file if more (what it
    # cannot evict grows with the snapshot: 128 MB ran out at 300k tags). If it still runs out, the
    # transaction is rolled back and run again without a limit: everything is still in the stage.
    COMMIT_MEMORY = 128 * 2**20
    COMMIT_MEMORY_PER_STAGE_BYTE = 6

    def __init__(self, con: duckdb.DuckDBPyConnection, *, registry: str, source: str, source_kind: str,
                 started_at: datetime | None = None, mode: str = "full", options: dict | None = None):
        self.con = con
        self.registry = registry
        self.source = source
        self.source_kind = source_kind
        self.mode = mode
        self.options = options or {}
        self.started_at = started_at or utcnow()
        self._buffers: dict[str, list[tuple]] = {t: [] for t in COLUMNS}
        self._open = False
        self._stage: duckdb.DuckDBPyConnection | None = None
        self._stage_path: Path | None = None
        self._stage_attached = False
        # Run inside the snapshot's transaction, after its rows are in and before its row is written.
        self.before_commit: list[Callable[[duckdb.DuckDBPyConnection], None]] = []
        self.snapshot_id = con.execute("SELECT nextval('snapshot_id_seq')").fetchone()[0]

    def begin(self, *, stage: bool = True) -> "SnapshotWriter":
        """Start the snapshot. ``stage=False`` for callers that write into the transaction themselves."""
        if stage:
            self._open_stage()
        if self._stage is None:
            self.con.execute("BEGIN TRANSACTION")
            self._open = True
        # else the snapshot's transaction begins in commit(): until then every row goes to the stage
        return self

    def _database_path(self) -> Path | None:
        rows = self.con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
                                ).fetchall()
        return Path(rows[0][0]) if rows and rows[0][0] else None  # None: an in-memory database

    def _open_stage(self) -> None:
        db = self._database_path()
        if db is None:
            return  # nothing to spare: an in-memory database holds everything in memory anyway
        # Leftovers of a killed run; this process holds the database's write lock, so none is live.
        # Matched by exact name, not by glob: in "x[1].duckdb.stage-*" the brackets are a character
        # class that matches x1.duckdb's live stage files.
        leftover_name = re.compile(re.escape(db.name) + r"\.stage-\d+(?:\.wal)?")
        for leftover in db.parent.iterdir():
            if leftover_name.fullmatch(leftover.name):
                leftover.unlink(missing_ok=True)
        self._stage_path = db.parent / f"{db.name}.stage-{self.snapshot_id}"
        self._stage = duckdb.connect(str(self._stage_path))
        self._stage.execute(f"SET memory_limit = '{self.STAGE_MEMORY}'")
        for table in self.STAGED:
            cols = self.con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                    "WHERE table_catalog = current_database() AND table_schema = 'main' "
                                    "AND table_name = ? ORDER BY ordinal_position",
                                    [table]).fetchall()
            self._stage.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in cols)})")

    def _close_stage(self) -> None:
        if self._stage is not None:
            self._stage.close()
            self._stage = None
        if self._stage_attached:
            try:
                self.con.execute("DETACH _repoaudit_stage")
            except duckdb.Error:
                pass
            self._stage_attached = False
        if self._stage_path is not None:
            for path in (self._stage_path, Path(f"{self._stage_path}.wal")):
                path.unlink(missing_ok=True)
            self._stage_path = None

    def known_manifests(self) -> set[str]:
        rows = self.con.execute("SELECT digest FROM manifests WHERE registry = ?", [self.registry]).fetchall()
        return {r[0] for r in rows}

    def add(self, table: str, row: tuple) -> None:
        buf = self._buffers[table]
        buf.append(row)
        if len(buf) >= self.FLUSH_AT:
            self.flush(table)

    def flush(self, table: str | None = None) -> None:
        """Write buffered rows: to the stage when there is one, else into the transaction."""
        for name in ([table] if table else list(self._buffers)):
            rows, self._buffers[name] = self._buffers[name], []
            staged = self._stage is not None and name in self.STAGED
            insert_rows(self._stage if staged else self.con, name, rows)

    def _attach_stage(self) -> int:
        """Close the stage, key its rows (outside any transaction of the database) and attach it; its size."""
        self.flush()
        self._stage.close()
        self._stage = None
        staged_bytes = self._stage_path.stat().st_size
        path = str(self._stage_path).replace("'", "''")
        self.con.execute(f"ATTACH '{path}' AS _repoaudit_stage")
        self._stage_attached = True
        self._key_stage()
        return staged_bytes

    def _copy_stage(self) -> None:
        """Inside the snapshot's transaction: the stage's keyed rows, and the keys its new digests took."""
        self.con.execute("INSERT INTO digest_keys SELECT registry, digest, key FROM _repoaudit_stage._keys "
                         "WHERE new")
        self.con.execute("SELECT setval('digest_key_seq', (SELECT max(key) FROM digest_keys)) "
                         "WHERE EXISTS (SELECT 1 FROM digest_keys)")
        for name in self.STAGED:
            self.con.execute(f"INSERT INTO main.{name} BY NAME SELECT * FROM _repoaudit_stage.{name}_keyed")

    STAGE_KEYING_MEMORY = 128 * 2**20

    def _key_stage(self) -> None:
        """Key the staged rows inside the stage database, outside the snapshot's transaction.

        Looking keys up while copying the rows in made the transaction's peak memory ~100 MB higher at
        100k tags. Done here, on a second connection, the lookups run under a memory limit and spill to
        disk; if even that runs out, nothing of the snapshot is lost, and they run again without it.
        New digests are numbered after the highest key so far: this process holds the write lock, so
        nothing else takes keys until the snapshot's transaction has inserted these.
        """
        aux = self.con.cursor()
        digest_columns = [(t, c) for d, t, _, c in _KEYED if d == "digest_keys" and t in self.STAGED]
        names = " UNION ".join(f"SELECT registry, {c} AS digest FROM _repoaudit_stage.{t} WHERE {c} IS NOT NULL"
                               for t, c in digest_columns)
        statements = [
            "DROP TABLE IF EXISTS _repoaudit_stage._keys",
            f"""CREATE TABLE _repoaudit_stage._keys AS
                WITH found AS (
                    SELECT n.registry, n.digest, k.key FROM ({names}) n
                    LEFT JOIN main.digest_keys k ON k.registry = n.registry AND k.digest = n.digest
                ), base AS (
                    SELECT greatest(coalesce((SELECT max(key) FROM main.digest_keys), 0),
                                    coalesce((SELECT last_value FROM duckdb_sequences()
                                              WHERE database_name = current_database()
                                                AND sequence_name = 'digest_key_seq'), 0)) AS base
                )
                SELECT registry, digest, key, false AS new FROM found WHERE key IS NOT NULL
                UNION ALL
                SELECT registry, digest, (SELECT base FROM base) + row_number() OVER (ORDER BY registry, digest),
                       true
                FROM found WHERE key IS NULL""",
        ]
        for name in self.STAGED:
            statements.append(f"DROP TABLE IF EXISTS _repoaudit_stage.{name}_keyed")
            statements.append(f"CREATE TABLE _repoaudit_stage.{name}_keyed AS "
                              + _with_keys(name, f"_repoaudit_stage.{name}",
                                           {"digest_keys": "_repoaudit_stage._keys"}))
        try:
            under_memory_limit(aux, self.STAGE_KEYING_MEMORY, lambda: [aux.execute(sql) for sql in statements])
        finally:
            aux.close()

    def commit(self, *, status: str, repository_count: int, tag_count: int,
               new_manifest_count: int, error_count: int, requests: dict | None = None,
               rate_limit: dict | None = None, finished_at: datetime | None = None,
               error: str | None = None) -> int:
        """Write the snapshot row and commit; returns the distinct manifests the snapshot reaches."""
        row = dict(status=status, repository_count=repository_count, tag_count=tag_count,
                   new_manifest_count=new_manifest_count, error_count=error_count, requests=requests,
                   rate_limit=rate_limit, finished_at=finished_at or utcnow(), error=error)
        if self._stage is None:
            self.flush()
            manifest_count = self._finish(row)
        else:
            staged_bytes = self._attach_stage()

            def copy_and_finish() -> int:
                self.con.execute("BEGIN TRANSACTION")
                self._open = True
                self._copy_stage()
                return self._finish(row)

            def roll_back() -> None:
                if self._open:
                    self._open = False
                    self.con.execute("ROLLBACK")

            manifest_count = under_memory_limit(
                self.con, max(self.COMMIT_MEMORY, self.COMMIT_MEMORY_PER_STAGE_BYTE * staged_bytes),
                copy_and_finish, roll_back)
        self._close_stage()
        return manifest_count

    def _finish(self, row: dict) -> int:
        """The snapshot's row, what a commit keeps, and COMMIT."""
        for step in self.before_commit:
            step(self.con)
        manifest_count, unique_bytes = self.con.execute(SNAPSHOT_TOTALS, [self.snapshot_id]).fetchall()[0]
        self.con.execute(
            "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self.snapshot_id, self.registry, self.source, self.source_kind, self.started_at,
             row["finished_at"], row["status"], self.mode, row["repository_count"], row["tag_count"],
             manifest_count, row["new_manifest_count"], row["error_count"], row["error"],
             to_json(row["requests"]), to_json(row["rate_limit"]), to_json(self.options), __version__,
             unique_bytes])
        if row["status"] in ("complete", "partial"):
            maintain(self.con, self.snapshot_id)
        self.con.execute("COMMIT")
        self._open = False
        return manifest_count

    def rollback(self) -> None:
        if self._open:
            self._open = False
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                pass
        self._close_stage()
        self._buffers = {t: [] for t in COLUMNS}

    def record_failure(self, error: str, *, error_type: str = "RepoauditError",
                       requests: dict | None = None) -> None:
        """Roll back whatever was written and keep only a ``failed`` snapshot row with the reason."""
        self.rollback()
        self.before_commit = []  # they finish a snapshot's rows, and a failed one keeps none
        self.con.execute("BEGIN TRANSACTION")
        self._open = True
        self.add("collection_errors", (self.snapshot_id, self.registry, None, None, error_type, error))
        self.commit(status="failed", repository_count=0, tag_count=0, new_manifest_count=0,
                    error_count=1, requests=requests, error=error)


def rows_as_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row)) for row in cursor.fetchall()]
