"""The DuckDB store: opening and migrating a database, and bulk inserts.

The schema is two kinds of file beside this module:

- ``migrations/NNNN_title.sql``, numbered from 1: what must happen once per database, in order. A file's
  ``-- name: schema`` statements make tables, sequences and indexes; its ``-- name: backfill`` statements
  fill what it added for databases written before. A few migrations end with a Python step instead
  (``_AFTER_MIGRATION``). Never edit a released migration: add the next number.
- ``views.sql``: every view and table macro in its current definition, created with CREATE OR REPLACE.

A writable open runs, in one transaction, the schema statements of every migration the database lacks,
then ``views.sql``, then those migrations' backfills and Python steps (which may read the views), and
records each version in ``schema_version`` and the sha256 of ``views.sql`` in ``schema_views``. With no
migration pending, the views are created again only when that hash differs. A read-only open of a
database that needs either upgrades it once through a writable open, then reads.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import re
import time
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import duckdb
import pyarrow as pa

from repoaudit.errors import DatabaseLocked, StoreError, first_line
from repoaudit.model.timestamps import utcnow
from repoaudit.store.kept import assign_keys, refill_latest
from repoaudit.store.sql import parse_statements, statements

SQL = statements(__package__, "database.sql")



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

# The supply-chain rows a collection finds (docs/supply-chain.md), bulk-written like COLUMNS' tables and staged
# with them: a registry where every image is signed has a referrer and a verdict per tag. Apart from COLUMNS
# because a merge copies these with their own statements (merge.sql's supply_*).
SUPPLY_COLUMNS: dict[str, tuple[str, ...]] = {
    "referrers": ("registry", "digest", "category", "scheme", "predicate_type", "predicate", "artifact_type",
                  "layer_media_types", "annotations", "created", "first_seen_snapshot"),
    "referrer_links": ("snapshot_id", "registry", "repository", "subject_digest", "referrer_digest", "via"),
    "signature_verifications": ("registry", "repository", "subject_digest", "signature_digest", "position",
                                "key_fingerprint", "status", "reason", "signed_digest", "identity", "issuer",
                                "snapshot_id"),
}



# Arrow types for columns that are not plain strings, so empty and all-NULL batches still load.
_TYPES = {"snapshot_id": pa.int64(), "tag_count": pa.int32(), "manifest_size": pa.int64(), "config_size": pa.int64(),
          "layers_size": pa.int64(), "layer_count": pa.int32(), "total_size": pa.int64(), "created": pa.timestamp("us"),
          "first_seen_snapshot": pa.int64(), "position": pa.int32(), "size": pa.int64(),
          "scan_time": pa.timestamp("us"), "last_handled_reconcile_at": pa.timestamp("us"), "ready": pa.bool_()}




# Migrations: the numbered files of migrations/, "NNNN_title.sql".
_MIGRATION_FILE = re.compile(r"^(\d{4})_(.+)\.sql$")
_SECTIONS = ("schema", "backfill")


class Migration(NamedTuple):
    """One numbered file of ``migrations/``: its statements that make tables (``schema``) and those that fill
    them for databases written before (``backfill``, run once the views exist); either may be None."""

    version: int
    title: str
    schema: str | None
    backfill: str | None


@lru_cache(maxsize=None)
def _migrations() -> tuple[Migration, ...]:
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if not match:
            continue
        source = f"repoaudit/store/migrations/{entry.name}"
        sections = parse_statements(entry.read_text(), source)
        unknown = set(sections) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"{source}: unknown section {sorted(unknown)[0]!r} (a migration has {_SECTIONS})")
        found.append(Migration(int(match.group(1)), match.group(2).replace("_", " "),
                               sections.get("schema"), sections.get("backfill")))
    found.sort()
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations are not numbered 1..n: {[m.version for m in found]}")
    return tuple(found)


def migrations() -> list[Migration]:
    """Every migration, in order."""
    return list(_migrations())


@lru_cache(maxsize=None)
def views_sql() -> str:
    """The text of ``views.sql``: every view and table macro, each created with CREATE OR REPLACE."""
    return resources.files(__package__).joinpath("views.sql").read_text()


def views_sha256() -> str:
    return hashlib.sha256(views_sql().encode()).hexdigest()


# Python steps that finish a migration, by the version they follow. They run with the backfills,
# once views.sql has run, and share their code with the snapshot writer.
_AFTER_MIGRATION: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {10: assign_keys, 11: refill_latest}



# DuckDB 2 writes its newest storage format unless told otherwise, and the DuckDB 1.x tools people have
# (the CLI, DBeaver's driver, Grafana's plugin) refuse such a file. v1.2.0 is the oldest format that keeps
# what the schema needs; it is fixed when a file is created, so every connection asks for it.
STORAGE_VERSION = "v1.2.0"
FILE_CONFIG = {"storage_compatibility_version": STORAGE_VERSION}


# DuckDB locks the file per process: a writer excludes every other process, a reader excludes writers.
# Its refusal names the holder: 'Conflicting lock is held in /usr/bin/python3 (PID 4242) by user ada'.
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
LOCK_POLL_SECONDS = 0.25


def lock_holder(exc: BaseException) -> str | None:
    """Who holds the file's lock, from DuckDB's refusal ("PID 4242 (python3)"); None if ``exc`` is another error."""
    text = str(exc)
    if "lock" not in text.lower() or not isinstance(exc, duckdb.IOException):
        return None
    match = _LOCK_HOLDER.search(text)
    return f"PID {match['pid']} ({Path(match['program']).name})" if match else "another process"


def _open_file(path: str, read_only: bool, lock_timeout: float,
               on_wait: Callable[[str], None] | None) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + max(lock_timeout, 0.0)
    waited = False
    while True:
        try:
            return duckdb.connect(path, read_only=read_only, config=FILE_CONFIG)
        except duckdb.Error as exc:
            holder = lock_holder(exc)
            if holder is None:
                raise StoreError(f"cannot open database {path}: {first_line(exc)}") from None
            if time.monotonic() >= deadline:
                after = f" after waiting {lock_timeout:g} s" if lock_timeout > 0 else ""
                raise DatabaseLocked(f"database {path} is locked by {holder}{after} (--lock-timeout to wait "
                                     "longer)", holder=holder) from None
            if not waited and on_wait is not None:
                on_wait(f"database {path} is locked by {holder}; waiting up to {lock_timeout:g} s")
            waited = True
            time.sleep(LOCK_POLL_SECONDS)


def connect(path: str | Path, *, read_only: bool = False, lock_timeout: float = 0.0,
            on_wait: Callable[[str], None] | None = None) -> duckdb.DuckDBPyConnection:
    """Open (creating and migrating when writable) a repoaudit database.

    While another process holds the file's lock, retry for up to ``lock_timeout`` seconds (telling
    ``on_wait`` once who holds it), then raise :class:`DatabaseLocked`.
    """
    path = str(path)
    if read_only and path != ":memory:" and not Path(path).exists():
        raise StoreError(f"database {path} does not exist (run 'repoaudit collect' or 'repoaudit demo' first)")
    con = _open_file(path, read_only, lock_timeout, on_wait)
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        try:
            migrate(con, path)
        except BaseException:
            con.close()
            raise
    elif path != ":memory:" and needs_upgrade(con):
        # Written by an older repoaudit: the queries need the newer tables and views, so upgrade it once, then read.
        con.close()
        try:
            connect(path, lock_timeout=lock_timeout, on_wait=on_wait).close()
        except DatabaseLocked:
            raise
        except StoreError as exc:
            raise StoreError(f"{path} needs a schema upgrade this read-only open cannot make: {exc}") from None
        return connect(path, read_only=True, lock_timeout=lock_timeout, on_wait=on_wait)
    return con



@contextmanager
def collect_lock(path: str, registry: str, *, timeout: float = 0.0,
                 on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """One collect of a registry into a database at a time.

    A collect holds the database only to begin and to commit, so two could overlap; of one registry
    they would both store the manifests neither had seen, and the second commit would collide with the
    first. Runs of different registries share nothing and overlap freely. The lock is a file beside
    the database (``flock``: released by the kernel when its process dies), waited for like the
    database's own lock.
    """
    if path == ":memory:":
        yield
        return
    name = hashlib.sha256(registry.encode()).hexdigest()[:16]
    lock_path = f"{path}.collect-{name}.lock"
    deadline = time.monotonic() + max(timeout, 0.0)
    with open(lock_path, "a+") as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    after = f" after waiting {timeout:g} s" if timeout > 0 else ""
                    raise DatabaseLocked(f"another collect of {registry} into {path} is running{after} "
                                         "(--lock-timeout to wait longer)") from None
                if not waited and on_wait is not None:
                    on_wait(f"another collect of {registry} into {path} is running; waiting up to {timeout:g} s")
                waited = True
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Lease:
    """A connection a long job holds only while it uses it, so other processes can take the lock between.

    ``get()`` opens (or reopens) it; ``release()`` closes it. Over a plain connection, such as an in-memory
    database or a caller's own, nothing is closed: ``release()`` is a no-op.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None, *,
                 opener: Callable[[], duckdb.DuckDBPyConnection] | None = None,
                 closer: Callable[[duckdb.DuckDBPyConnection], None] | None = None):
        if (con is None) == (opener is None):
            raise ValueError("a Lease takes a connection or an opener")
        self._con, self._opener, self._closer = con, opener, closer

    def get(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = self._opener()
        return self._con

    def release(self) -> None:
        if self._opener is not None and self._con is not None:
            con, self._con = self._con, None
            (self._closer or duckdb.DuckDBPyConnection.close)(con)

    @staticmethod
    def of(con: "duckdb.DuckDBPyConnection | Lease") -> "Lease":
        return con if isinstance(con, Lease) else Lease(con)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    if not relation_exists(con, "schema_version"):
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]


def views_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database's views were created from this repoaudit's ``views.sql``."""
    if not relation_exists(con, "schema_views"):
        return False
    row = con.execute("SELECT sha256 FROM schema_views WHERE file = 'views.sql'").fetchone()
    return row is not None and row[0] == views_sha256()


def needs_upgrade(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a writable open would change the schema: migrations to run, or views from another ``views.sql``.

    A database from a newer repoaudit needs none this one can make (a writable open refuses it).
    """
    version, latest = schema_version(con), _migrations()[-1].version
    return version < latest or (version == latest and not views_current(con))


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """Run ``views.sql`` and record its hash, in the caller's transaction."""
    con.execute(views_sql())
    con.execute(SQL["record_views"], [views_sha256(), utcnow()])



def migrate(con: duckdb.DuckDBPyConnection, path: str = "database") -> int:
    """Bring the schema up to date in one transaction; returns the schema version.

    The schema statements of every pending migration run first, in order, then ``views.sql`` (the views
    read the newest tables), then each pending migration's backfill and Python step, in order (they may
    read the views). With no migration pending, the views are created again only when ``views.sql``
    changed. Either all of it commits or none.
    """
    current = schema_version(con)
    known = _migrations()
    latest = known[-1].version
    if current > latest:
        raise StoreError(f"{path} has schema version {current}, newer than this repoaudit knows; upgrade repoaudit")
    pending = [m for m in known if m.version > current]
    if not pending and views_current(con):
        return current
    step = "views.sql"
    con.execute("BEGIN TRANSACTION")
    try:
        for m in pending:
            step = f"migration {m.version} ({m.title})"
            if m.schema:
                con.execute(m.schema)
            con.execute(SQL["record_migration"], [m.version, m.title, utcnow()])
        step = "views.sql"
        create_views(con)
        for m in pending:
            step = f"migration {m.version} ({m.title})"
            if m.backfill:
                con.execute(m.backfill)
            if m.version in _AFTER_MIGRATION:
                _AFTER_MIGRATION[m.version](con)
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise StoreError(f"{path}: {step} failed: {first_line(exc)}") from None
    return latest



def to_json(value: Any) -> str | None:
    if value in (None, {}, []):
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))



def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """Bulk insert tuples in ``COLUMNS[table]`` (or ``SUPPLY_COLUMNS[table]``) order."""
    if not rows:
        return
    cols = COLUMNS.get(table) or SUPPLY_COLUMNS[table]
    insert_arrow(con, table, pa.Table.from_arrays(
        [pa.array([r[i] for r in rows], type=_TYPES.get(col, pa.string())) for i, col in enumerate(cols)],
        names=list(cols)))


def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, batch: pa.Table) -> None:
    """Insert an Arrow table's columns by name: one statement per batch, where executemany is one per row."""
    if batch.num_rows == 0:
        return
    # A template: the table and the batch's columns are the statement's names, which cannot be parameters.
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
                       undo: Callable[[], None] = lambda: None, *, steps: int = 2) -> Any:
    """``run()`` with DuckDB held to ``limit`` bytes, so it evicts what it has written instead of caching it.

    If the limit runs out, ``undo()`` and run again under twice the limit, up to ``steps`` doublings, and
    only then without a limit: memory is a target, not a reason to lose the work. Dropping the limit at
    the first shortfall let DuckDB cache everything (2.1 GB keying a million tags where 128 MB nearly
    sufficed). Each attempt runs on one thread without keeping insertion order: every thread holds its
    own hash tables and sort runs, and ordered inserts buffer what they have not written yet.
    """
    caps = [limit * 2**i for i in range(steps + 1)] + [None]
    # Put back what the connection had (a caller's own settings), not DuckDB's defaults.
    threads, ordered = con.execute("SELECT current_setting('threads'), "
                                   "current_setting('preserve_insertion_order')").fetchall()[0]
    con.execute("SET threads = 1")
    con.execute("SET preserve_insertion_order = false")
    try:
        for cap in caps:
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
    finally:
        con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET preserve_insertion_order = {bool(ordered)}")



def rows_as_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row)) for row in cursor.fetchall()]

