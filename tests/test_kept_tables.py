"""The tables a commit keeps (repository_links, keys, blob_refs, manifest_sole_bytes, latest_images) equal a recount.

The snapshot writer folds each snapshot into them as it commits (repoaudit.store.kept.maintain);
rebuild_links recomputes them from every snapshot. Both must agree, whatever the order
snapshots arrive in, and a database migrated from before these tables gets them filled.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime

import duckdb

from repoaudit.store.writer import SnapshotWriter
from oldschema import build_old_database
from repoaudit.store.database import connect, migrations
from repoaudit.store.kept import rebuild_links

REG = "registry.test"


def _rows(cursor) -> set[tuple]:
    return {tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in cursor.fetchall()}


def kept(con: duckdb.DuckDBPyConnection) -> dict[str, set]:
    """The kept tables with every key replaced by the digest or name it stands for."""
    return {
        "links": _rows(con.execute("""
            SELECT registry, repository, digest, first_seen, first_snapshot, last_seen, last_snapshot, tags
            FROM repository_links""")),
        "blob_refs": _rows(con.execute("""
            SELECT r.registry, b.digest, r.size, r.refs, lo.digest, hi.digest
            FROM blob_refs r JOIN digest_keys b ON b.key = r.blob_key
            JOIN digest_keys lo ON lo.key = r.lo_manifest JOIN digest_keys hi ON hi.key = r.hi_manifest""")),
        "counted": _rows(con.execute("""
            SELECT k.digest FROM counted_manifests c JOIN digest_keys k ON k.key = c.manifest_key""")),
        "sole_bytes": _rows(con.execute("""
            SELECT k.digest, s.bytes FROM manifest_sole_bytes s JOIN digest_keys k ON k.key = s.manifest_key""")),
        "latest_images": _rows(con.execute("""
            SELECT * EXCLUDE (manifest_key, repository_key) FROM latest_images""")),
    }


def mismatched_keys(con: duckdb.DuckDBPyConnection) -> int:
    """Keyed values whose key is missing or names something else; 0 when every key is right."""
    return con.execute("""
        SELECT count(*) FROM (
            SELECT registry, manifest_digest AS name, manifest_key AS key, 'd' AS kind FROM layers UNION ALL
            SELECT registry, digest, blob_key, 'd' FROM layers UNION ALL
            SELECT registry, digest, manifest_key, 'd' FROM manifests UNION ALL
            SELECT registry, config_digest, config_key, 'd' FROM manifests WHERE config_digest IS NOT NULL UNION ALL
            SELECT registry, index_digest, index_key, 'd' FROM manifest_children UNION ALL
            SELECT registry, child_digest, child_key, 'd' FROM manifest_children UNION ALL
            SELECT registry, digest, manifest_key, 'd' FROM repository_links UNION ALL
            SELECT registry, repository, repository_key, 'r' FROM repository_links UNION ALL
            SELECT registry, repository, repository_key, 'r' FROM repositories) x
        LEFT JOIN (SELECT registry, digest AS name, key, 'd' AS kind FROM digest_keys UNION ALL
                   SELECT registry, repository, key, 'r' FROM repository_keys) k ON k.key = x.key AND k.kind = x.kind
        WHERE k.name IS DISTINCT FROM x.name OR k.registry IS DISTINCT FROM x.registry""").fetchone()[0]


def test_demo_database_keeps_what_a_recount_gives(demo_db, tmp_path):
    copy = tmp_path / "demo.duckdb"
    shutil.copy(demo_db, copy)
    con = connect(copy)
    assert mismatched_keys(con) == 0
    before = kept(con)
    assert before["links"] and before["blob_refs"]
    rebuild_links(con)
    assert kept(con) == before
    assert mismatched_keys(con) == 0


def _digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


def _manifest(digest: str, layers: list[tuple[str, int]]) -> tuple:
    return (REG, digest, "application/vnd.oci.image.manifest.v1+json", "image", None, 500, _digest("cfg-" + digest),
            100, sum(s for _, s in layers), len(layers), 600 + sum(s for _, s in layers), None, "amd64", "linux",
            None, None, None, None, None)


def _snapshot(con, started: datetime, tags: list[tuple[str, str, str]], manifests: dict[str, list[tuple[str, int]]],
              children: list[tuple[str, str]] = ()) -> int:
    writer = SnapshotWriter(con, registry=REG, source=f"https://{REG}", source_kind="registry", started_at=started)
    writer.begin()
    for repo in sorted({r for r, _, _ in tags}):
        writer.add("repositories", (writer.snapshot_id, REG, repo, 1, "ok", None))
    for repo, tag, digest in tags:
        writer.add("tags", (writer.snapshot_id, REG, repo, tag, digest))
    for digest, layers in manifests.items():
        writer.add("manifests", _manifest(digest, layers))
        for i, (layer, size) in enumerate(layers):
            writer.add("layers", (REG, digest, i, layer, "application/vnd.oci.image.layer.v1.tar+gzip", size))
    for i, (index, child) in enumerate(children):
        writer.add("manifest_children", (REG, index, i, child, None, 500, "linux", "amd64", None))
    writer.commit(status="complete", repository_count=1, tag_count=len(tags), new_manifest_count=len(manifests),
                  error_count=0)
    return writer.snapshot_id


def test_snapshots_folded_out_of_order_equal_a_recount(tmp_path):
    con = connect(tmp_path / "kept.duckdb")
    a, b, idx, shared = _digest("a"), _digest("b"), _digest("idx"), _digest("shared-layer")
    # The newest snapshot first: app:1 on b, the index tagged with a as its child.
    newest = _snapshot(con, datetime(2026, 3, 1), [("app", "1", b), ("app", "multi", idx), ("other", "x", b)],
                       {b: [(shared, 7), (_digest("b-own"), 3)], a: [(shared, 7)]}, [(idx, a)])
    # Then an older one (a merged shard, say): app:1 on a, and a tag on a manifest stored only later.
    late = _digest("late")
    older = _snapshot(con, datetime(2026, 2, 1), [("app", "1", a), ("app", "2", late)], {})
    links = {(r[1], r[2]): r for r in kept(con)["links"]}
    assert links[("app", a)][3:5] == (datetime(2026, 2, 1), older)      # first seen in the older one
    assert links[("app", a)][5:7] == (datetime(2026, 3, 1), newest)     # last seen as the index's child ...
    assert links[("app", a)][7] is None                                 # ... untagged there
    assert links[("app", b)][7] == ("1",) and links[("app", idx)][7] == ("multi",)
    # The late manifest is reached but not stored: no blob references yet; stored later, they are counted.
    assert late not in {d for (d,) in kept(con)["counted"]}
    # Each stored manifest holds its own bytes (500) and config (100) alone, b also b-own until late shares it.
    assert dict(kept(con)["sole_bytes"]) == {a: 600, b: 603}
    _snapshot(con, datetime(2026, 4, 1), [("app", "1", b)], {late: [(shared, 7), (_digest("b-own"), 3)]})
    state = kept(con)
    assert (late,) in state["counted"]
    refs = {r[1]: r for r in state["blob_refs"]}
    assert refs[shared][3] == 3 and refs[_digest("b-own")][3] == 2     # a, b and late; b and late
    assert dict(state["sole_bytes"]) == {a: 600, b: 600, late: 600}
    # Only app:1 is tagged in the newest snapshot: one latest image, the newest of its repository.
    assert {(r[0], r[1], r[2], r[-1]) for r in state["latest_images"]} == {(REG, "app", b, 1)}
    assert mismatched_keys(con) == 0
    rebuild_links(con)
    assert kept(con) == state


def test_migrating_an_older_database_fills_the_kept_tables(tmp_path):
    path = tmp_path / "old.duckdb"
    build_old_database(path, 8)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    a, b = _digest("a"), _digest("b")
    con.execute(f"""
        INSERT INTO snapshots (snapshot_id, registry, source, source_kind, started_at, status)
        VALUES (1, '{REG}', 's', 'registry', TIMESTAMP '2026-01-01', 'complete'),
               (2, '{REG}', 's', 'registry', TIMESTAMP '2026-01-08', 'complete'),
               (3, '{REG}', 's', 'registry', TIMESTAMP '2026-01-15', 'failed');
        INSERT INTO repositories VALUES (1, '{REG}', 'app', 1, 'ok', NULL), (2, '{REG}', 'app', 1, 'ok', NULL);
        INSERT INTO tags VALUES (1, '{REG}', 'app', 'v1', '{a}'), (2, '{REG}', 'app', 'v1', '{b}');
        INSERT INTO manifests (registry, digest, manifest_size) VALUES ('{REG}', '{a}', 10), ('{REG}', '{b}', 20);
        INSERT INTO layers VALUES ('{REG}', '{a}', 0, '{_digest("l")}', NULL, 5),
                                  ('{REG}', '{b}', 0, '{_digest("l")}', NULL, 5);""")
    con.close()
    con = connect(path)
    state = kept(con)
    assert {(r[2], r[4], r[6], tuple(r[7])) for r in state["links"]} == {(a, 1, 1, ("v1",)), (b, 2, 2, ("v1",))}
    assert {(r[1], r[3]) for r in state["blob_refs"]} == {(a, 1), (b, 1), (_digest("l"), 2)}
    assert mismatched_keys(con) == 0


def test_read_only_open_of_an_older_database_upgrades_it_first(tmp_path):
    path = tmp_path / "old.duckdb"
    build_old_database(path, 8)
    con = connect(path, read_only=True)
    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == migrations()[-1].version
    assert con.execute("SELECT count(*) FROM repository_links").fetchone()[0] == 0


def test_a_commit_out_of_memory_under_its_limit_runs_again_under_a_doubled_one(tmp_path, monkeypatch):
    limits = []
    copy = SnapshotWriter._copy_stage

    def copy_then_run_out(self):
        limits.append(self.con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        copy(self)  # rows in, then the limit is hit: all of it must be rolled back and done again
        if len(limits) == 1:
            raise duckdb.OutOfMemoryException("Out of Memory Error: simulated")

    monkeypatch.setattr(SnapshotWriter, "_copy_stage", copy_then_run_out)
    con = connect(tmp_path / "oom.duckdb")
    b, layer = _digest("b"), _digest("layer")
    _snapshot(con, datetime(2026, 3, 1), [("app", "1", b), ("app", "2", b)], {b: [(layer, 5)]})
    assert len(limits) == 2 and limits[0] != limits[1]
    # Stepped up, not dropped: DuckDB's default (most of the machine's memory) is what made 1M tags cost 2 GB.
    first, second = (float(limit.split()[0]) for limit in limits)  # "122.0 MiB": DuckDB's MB are 10**6 bytes
    assert limits[0].endswith("MiB") and limits[1].endswith("MiB") and abs(second - 2 * first) < 1
    assert con.execute("SELECT count(*) FROM tags").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM snapshots WHERE status = 'complete'").fetchone()[0] == 1
    assert con.execute("SELECT count(*), count(DISTINCT digest) FROM digest_keys").fetchone() == (3, 3)
    assert mismatched_keys(con) == 0
    state = kept(con)
    rebuild_links(con)
    assert kept(con) == state


def test_the_stage_keys_every_keyed_digest_column_of_a_staged_table():
    """writer.sql's stage_keys lists the keyed digest columns by hand: it must name each of kept._KEYED's."""
    from repoaudit.store.kept import _KEYED
    from repoaudit.store.writer import SQL

    staged = set(SnapshotWriter.STAGED)
    wanted = {(t, c) for d, t, _, c in _KEYED if d == "digest_keys" and t in staged}
    named = set(re.findall(r"SELECT registry, (\w+) AS digest FROM _repoaudit_stage\.(\w+)", SQL["stage_keys"]))
    assert {(t, c) for c, t in named} == wanted


def _keyed_state(con) -> tuple:
    keys = con.execute("SELECT count(*), count(DISTINCT key), count(DISTINCT (registry, digest)) FROM digest_keys").fetchone()
    totals = con.execute("SELECT snapshot_id, manifest_count, unique_bytes FROM snapshots ORDER BY 1").fetchall()
    return keys, totals, kept(con)


def _two_snapshots(path) -> duckdb.DuckDBPyConnection:
    """A first snapshot, then one sharing its layer and index child with new manifests: keys old and new."""
    con = connect(path)
    a, b, c, idx, shared = _digest("a"), _digest("b"), _digest("c"), _digest("idx"), _digest("shared-layer")
    _snapshot(con, datetime(2026, 3, 1), [("app", "1", a), ("app", "multi", idx)],
              {a: [(shared, 7), (_digest("a-own"), 3)], idx: []}, [(idx, a)])
    _snapshot(con, datetime(2026, 3, 8), [("app", "1", b), ("app", "multi", idx), ("web", "2", c)],
              {b: [(shared, 7), (_digest("b-own"), 4)], c: [(_digest("a-own"), 3)]}, [(idx, b)])
    return con


def test_keying_the_stage_in_parts_keys_every_digest_once(tmp_path, monkeypatch):
    """The stage's digests are keyed part by part (a hash of the digest picks the part): in one part, one
    digest a part, or with every digest's hash colliding (all in one part by the hash, split only by their
    text), the database holds the same keys, kept tables and snapshot totals, and every key is right."""
    whole = _two_snapshots(tmp_path / "whole.duckdb")
    expected = _keyed_state(whole)
    assert expected[0][0] == expected[0][1] == expected[0][2]  # one key per digest, none shared
    assert mismatched_keys(whole) == 0

    monkeypatch.setattr(SnapshotWriter, "KEYING_PART_ROWS", 1)  # as many parts as digest rows
    parts = _two_snapshots(tmp_path / "parts.duckdb")
    assert _keyed_state(parts) == expected and mismatched_keys(parts) == 0

    from repoaudit.store import writer

    # Every digest hashed alike: the parts split nothing, so digests must still be told apart by text.
    assert "hash(registry, digest)" in writer.SQL["stage_keys"]
    colliding = dict(writer.SQL, stage_keys=writer.SQL["stage_keys"].replace("hash(registry, digest)", "0::UBIGINT"))
    monkeypatch.setattr(writer, "SQL", colliding)
    monkeypatch.setattr(SnapshotWriter, "KEYING_PART_ROWS", 3)
    collide = _two_snapshots(tmp_path / "collide.duckdb")
    assert _keyed_state(collide) == expected and mismatched_keys(collide) == 0


def test_grouping_blobs_in_parts_gives_what_one_group_gives(tmp_path, monkeypatch):
    """The commit groups the blobs of its reached and newly counted manifests in parts (by blob key): with a
    part per manifest, the totals and kept tables equal those of one part, and no working table is left."""
    from repoaudit.store import kept as kept_module

    expected = _keyed_state(_two_snapshots(tmp_path / "whole.duckdb"))
    monkeypatch.setattr(kept_module, "PART_MANIFESTS", 1)
    con = _two_snapshots(tmp_path / "parts.duckdb")
    assert _keyed_state(con) == expected and mismatched_keys(con) == 0
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '\\_repoaudit%' ESCAPE '\\'"
                       ).fetchone()[0] == 0


def test_a_manifest_the_database_holds_already_is_not_stored_again(tmp_path):
    # manifests has no primary key (migration 18: its index was memory no limit could evict). A collection
    # whose stage holds a manifest the database has meanwhile stored (the same registry collected by another
    # run between this one's start and commit) keeps the stored row and its layers, and only adds its tags.
    con = connect(tmp_path / "db.duckdb")
    assert not con.execute("""SELECT * FROM duckdb_constraints()
                              WHERE table_name = 'manifests' AND constraint_type = 'PRIMARY KEY'""").fetchall()
    a, b, shared = _digest("a"), _digest("b"), _digest("shared-layer")
    _snapshot(con, datetime(2025, 1, 1), [("app", "1", a)], {a: [(shared, 1000), (_digest("a-own"), 10)]})
    _snapshot(con, datetime(2025, 1, 2), [("app", "1", a), ("app", "2", b), ("other", "1", a)],
              {a: [(shared, 1000), (_digest("a-own"), 10)], b: [(shared, 1000), (_digest("b-own"), 20)]})
    assert con.execute("SELECT digest, count(*) FROM manifests GROUP BY ALL ORDER BY 1").fetchall() == [(a, 1), (b, 1)]
    assert con.execute("SELECT count(*) FROM layers").fetchall() == [(4,)]
    assert con.execute("SELECT snapshot_id, count(*) FROM tags GROUP BY ALL ORDER BY 1").fetchall() == [(1, 1), (2, 3)]
    assert con.execute("SELECT manifest_count, unique_bytes FROM snapshots ORDER BY snapshot_id").fetchall() == [
        (1, 1610), (2, 2230)]
    assert mismatched_keys(con) == 0
