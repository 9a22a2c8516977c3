"""The snapshot writer: one snapshot's rows, staged beside the database and committed in one transaction.

Its statements are in ``writer.sql``; the copies of each staged table in and out of the stage stay here as
templates, one per table of ``STAGED`` with its columns.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from repoaudit._version import __version__
from repoaudit.store.database import (
    COLUMNS,
    SUPPLY_COLUMNS,
    Lease,
    insert_rows,
    to_json,
    under_memory_limit,
    utcnow,
)
from repoaudit.store.kept import _with_keys, assign_keys, maintain, parts
from repoaudit.store.sql import statements

SQL = statements(__package__, "writer.sql")


@dataclass
class SnapshotInfo:
    snapshot_id: int
    registry: str
    source: str
    started_at: datetime



KNOWN_BATCH = 50_000


def snapshot_totals(con: duckdb.DuckDBPyConnection, snapshot_id: int) -> tuple[int, int]:
    """The distinct manifests snapshot ``snapshot_id`` reaches and the bytes of their blobs, each blob once
    (``snapshot_reach``, ``snapshot_bytes``): inside the caller's transaction, every row keyed."""
    con.execute(SQL["snapshot_reach"], [int(snapshot_id)])
    manifests = con.execute("SELECT count(*) FROM main._repoaudit_reach").fetchone()[0]
    count = parts(con, "main._repoaudit_reach")
    total = sum(con.execute(SQL["snapshot_bytes"], {"parts": count, "part": part}).fetchone()[0]
                for part in range(count))
    con.execute(SQL["snapshot_reach_done"])
    return manifests, int(total)



def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (0: a stage named before stages carried their process)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


# The rows stored once per manifest, by the key column naming their manifest. manifests has no primary key
# (migration 18): another collection of the registry may have committed a manifest while this one collected it.
_ONCE_PER_MANIFEST = {"manifests": "manifest_key", "layers": "manifest_key", "manifest_children": "index_key"}


def _stored_once(table: str, select: str) -> str:
    """``select`` (keyed rows of ``table``) without the rows of manifests the database holds already. Keys are
    compared, not digests: this runs with the database's lock held, so every stored manifest is keyed."""
    key = _ONCE_PER_MANIFEST.get(table)
    if key is None:
        return select
    return f"SELECT x.* FROM ({select}) x ANTI JOIN main.manifests m ON m.manifest_key = x.{key}"


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
    STAGED = (*COLUMNS, *SUPPLY_COLUMNS)
    STAGE_MEMORY = "128MB"
    # DuckDB caches the rows a big copy writes unless held to a limit. The snapshot's transaction runs
    # under COMMIT_MEMORY, doubled twice if it runs out (rolled back and run again: everything is still in
    # the stage), and only then without a limit. A limit scaled by the stage grew with the snapshot; a
    # fixed one fits since the commit's statements group and count on integer keys and run on one thread.
    COMMIT_MEMORY = 128 * 2**20

    def __init__(self, con: duckdb.DuckDBPyConnection | Lease, *, registry: str, source: str, source_kind: str,
                 started_at: datetime | None = None, mode: str = "full", options: dict | None = None):
        self._lease = Lease.of(con)
        self.registry = registry
        self.source = source
        self.source_kind = source_kind
        self.mode = mode
        self.options = options or {}
        self.started_at = started_at or utcnow()
        self._buffers: dict[str, list[tuple]] = {t: [] for t in self.STAGED}
        self._open = False
        self._stage: duckdb.DuckDBPyConnection | None = None
        self._stage_path: Path | None = None
        self._stage_attached = False
        # Run inside the snapshot's transaction, after its rows are in and before its row is written.
        self.before_commit: list[Callable[[duckdb.DuckDBPyConnection], None]] = []
        self.snapshot_id = self.con.execute("SELECT nextval('snapshot_id_seq')").fetchone()[0]

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self._lease.get()

    def pause(self) -> None:
        """Let go of the database until commit when rows go to the stage: other processes (an open
        notebook, a report) can use the file meanwhile. Nothing to let go of in an open transaction."""
        if self._stage is not None and not self._open:
            self._lease.release()

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
        # Leftovers of killed runs. Another run may be collecting into its own stage right now (the
        # database's lock is free until commit), so only stages whose process is gone are removed.
        # Matched by exact name, not by glob: in "x[1].duckdb.stage-*" the brackets are a character
        # class that matches x1.duckdb's stage files.
        leftover_name = re.compile(re.escape(db.name) + r"\.stage-\d+(?:-(\d+))?(?:\.wal)?")
        for leftover in db.parent.iterdir():
            match = leftover_name.fullmatch(leftover.name)
            if match and not _alive(int(match.group(1) or 0)):
                leftover.unlink(missing_ok=True)
        self._stage_path = db.parent / f"{db.name}.stage-{self.snapshot_id}-{os.getpid()}"
        self._stage = duckdb.connect(str(self._stage_path))
        self._stage.execute(f"SET memory_limit = '{self.STAGE_MEMORY}'")
        for table in self.STAGED:
            cols = self.con.execute(SQL["table_columns"], [table]).fetchall()
            # A template: the stage's table has the columns of the database's.
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

    def has_manifests(self) -> bool:
        return self.con.execute(SQL["has_manifests"], [self.registry]).fetchone() is not None

    def known_manifests(self) -> Iterator[str]:
        """The registry's stored manifest digests, a batch at a time: a million as one list of tuples
        would be the run's peak before its first request."""
        cursor = self.con.execute(SQL["known_manifests"], [self.registry])
        while rows := cursor.fetchmany(KNOWN_BATCH):
            for (digest,) in rows:
                yield digest

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

    def _attach_stage(self) -> None:
        """Close the stage, attach it and key its rows (outside any transaction of the database)."""
        self.flush()
        self._stage.close()
        self._stage = None
        path = str(self._stage_path).replace("'", "''")
        self.con.execute(f"ATTACH '{path}' AS _repoaudit_stage")  # ATTACH takes no parameters
        self._stage_attached = True
        self._key_stage()

    def _copy_stage(self) -> None:
        """Inside the snapshot's transaction: the stage's keyed rows, and the keys its new digests took."""
        self.con.execute(SQL["copy_stage_keys"])
        self.con.execute(SQL["advance_digest_key_seq"])
        for name in self.STAGED:  # a template per staged table
            self.con.execute(f"INSERT INTO main.{name} BY NAME SELECT * FROM _repoaudit_stage.{name}_keyed")

    STAGE_KEYING_MEMORY = 128 * 2**20
    # The stage's digests are keyed in parts of about this many digest rows (repeats included): 900,000
    # distinct digest strings outgrew 128 MB, 300,000 fit.
    KEYING_PART_ROWS = 600_000

    def _key_stage(self) -> None:
        """Key the staged rows inside the stage database, outside the snapshot's transaction.

        Looking keys up while copying the rows in made the transaction's peak memory ~100 MB higher at
        100k tags. Done here, on a second connection, the lookups run under a memory limit and spill to
        disk; if even that runs out, nothing of the snapshot is lost, and they run again under a larger one.
        New digests are numbered after the highest key so far: this process holds the write lock, so
        nothing else takes keys until the snapshot's transaction has inserted these.
        """
        aux = self.con.cursor()
        # Then each staged table with its keys looked up there: a template per table (kept._with_keys).
        keyed = [f"CREATE OR REPLACE TABLE _repoaudit_stage.{name}_keyed AS "
                 + _stored_once(name, _with_keys(name, f"_repoaudit_stage.{name}",
                                                 {"digest_keys": "_repoaudit_stage._keys"}))
                 for name in self.STAGED]
        try:
            def key() -> None:
                aux.execute(SQL["stage_keys_table"])
                parts = -(-aux.execute(SQL["stage_digest_rows"]).fetchone()[0] // self.KEYING_PART_ROWS) or 1
                for part in range(parts):
                    aux.execute(SQL["stage_keys"], {"parts": parts, "part": part})
                for sql in keyed:
                    aux.execute(sql)

            under_memory_limit(aux, self.STAGE_KEYING_MEMORY, key)
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
            self._attach_stage()

            def copy_and_finish() -> int:
                self.con.execute("BEGIN TRANSACTION")
                self._open = True
                self._copy_stage()
                return self._finish(row)

            def roll_back() -> None:
                if self._open:
                    self._open = False
                    self.con.execute("ROLLBACK")

            manifest_count = under_memory_limit(self.con, self.COMMIT_MEMORY, copy_and_finish, roll_back)
        self._close_stage()
        return manifest_count

    def _finish(self, row: dict) -> int:
        """The snapshot's row, what a commit keeps, and COMMIT."""
        for step in self.before_commit:
            step(self.con)
        assign_keys(self.con)  # the totals work on keys; staged rows come in keyed, others may not
        manifest_count, unique_bytes = snapshot_totals(self.con, self.snapshot_id)
        self.con.execute(
            SQL["insert_snapshot"],
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

    def abandon(self) -> None:
        """Drop the stage without touching the database (whose lock another process holds)."""
        self._open = False
        self._stage_attached = False
        self._close_stage()
        self._buffers = {t: [] for t in self.STAGED}

    def rollback(self) -> None:
        if self._open:
            self._open = False
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                pass
        self._close_stage()
        self._buffers = {t: [] for t in self.STAGED}

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

