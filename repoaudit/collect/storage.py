"""The storage-only facts of a ``registry-storage:PATH`` snapshot, written with the snapshot's rows.

The collector writes the tables every snapshot has (tags, manifests, layers, ...) from the
storage source as from any other; this module adds what only storage shows, in the same
transaction (``SnapshotWriter.before_commit``), so a snapshot holds both or neither.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from repoaudit.model.documents import is_valid_repository, printable
from repoaudit.sources.storage import StorageFacts
from repoaudit.store.database import insert_arrow


def _batch(columns: dict[str, tuple[pa.DataType, list]]) -> pa.Table:
    return pa.Table.from_arrays([pa.array(values, type=t) for t, values in columns.values()], names=list(columns))


def write_storage_facts(con: duckdb.DuckDBPyConnection, registry: str, snapshot_id: int, facts: StorageFacts,
                        repositories: set[str]) -> None:
    """Insert the facts of the repositories collected (``repositories``) and every blob of the store."""
    s, i64, b, ts = pa.string(), pa.int64(), pa.bool_(), pa.timestamp("us")

    def keyed(rows: list[tuple], *cols: tuple[str, pa.DataType]) -> pa.Table:
        rows = [r for r in rows if r[0] in repositories]
        n = len(rows)
        data = {"snapshot_id": (i64, [snapshot_id] * n), "registry": (s, [registry] * n)}
        for pos, (name, typ) in enumerate(cols):
            data[name] = (typ, [r[pos] for r in rows])
        return _batch(data)

    # Every repository, collected or not: garbage-collect visits them all, and stops at a name it cannot parse.
    repos = facts.repositories
    insert_arrow(con, "storage_repositories", _batch({
        "snapshot_id": (i64, [snapshot_id] * len(repos)), "registry": (s, [registry] * len(repos)),
        "repository": (s, [printable(name, 300) for name, _ in repos]),
        "valid_name": (b, [is_valid_repository(name) for name, _ in repos]),
        "has_tags_dir": (b, [has_tags for _, has_tags in repos])}))
    insert_arrow(con, "storage_revisions", keyed(facts.revisions, ("repository", s), ("digest", s),
                                                 ("linked", b), ("tagged", b), ("blob_present", b)))
    insert_arrow(con, "storage_layer_links", keyed(facts.layer_links, ("repository", s), ("digest", s),
                                                   ("blob_present", b)))
    insert_arrow(con, "storage_tag_history", keyed(facts.tag_history, ("repository", s), ("tag", s),
                                                   ("digest", s)))
    # Every upload, routed repository or not: one into a repository with no manifests yet still holds disk.
    ups = facts.uploads
    insert_arrow(con, "storage_uploads", _batch({
        "snapshot_id": (i64, [snapshot_id] * len(ups)), "registry": (s, [registry] * len(ups)),
        "repository": (s, [u.repository for u in ups]), "upload_id": (s, [u.upload_id for u in ups]),
        "started_at": (ts, [u.started_at for u in ups]), "size": (i64, [u.size for u in ups])}))
    n = len(facts.blobs)
    insert_arrow(con, "storage_blobs", _batch({
        "snapshot_id": (i64, [snapshot_id] * n), "registry": (s, [registry] * n),
        "digest": (s, [d for d, _ in facts.blobs]), "size": (i64, [size for _, size in facts.blobs])}))
