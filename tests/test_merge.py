"""Sharded collection and merging: merged shards equal one full run."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

import repoaudit
from pusher import Pusher, layer_bytes
from repoaudit.cli import main
from repoaudit.model.options import CollectOptions, parse_shard
from repoaudit.errors import ConfigError, StoreError
from repoaudit.store.merge import merge

REPOS = [f"team{t}/svc{s}" for t in range(2) for s in range(4)]


def expected_shard(name: str, n: int) -> int:
    """The documented partition: the first 8 bytes of sha256(name), big-endian, mod n."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % n


def seed(pusher: Pusher) -> None:
    """Repositories sharing a base layer, an index, and one manifest tagged in repositories of both shards."""
    base = pusher.push_image("base/os", ["1"], layers=[layer_bytes("os", 20_000)], created="2024-01-01T00:00:00Z")
    for i, name in enumerate(REPOS):
        pusher.push_image(name, ["v1", "latest"], shared_layers=base.layers, mount_from="base/os",
                          layers=[layer_bytes(f"{name}-1", 1_000 + i)], created=f"2025-0{1 + i % 9}-01T00:00:00Z")
        pusher.push_image(name, ["v0"], shared_layers=base.layers, mount_from="base/os",
                          layers=[layer_bytes(f"{name}-0", 500 + i)], created="2024-06-01T00:00:00Z")
    # base/os:1 pushed again into every repository, under the tag "base"
    for name in REPOS:
        for blob in (base.config, *base.layers):
            pusher.mount_blob(name, blob.digest, "base/os")
        pusher.tag(name, "base", base)
    amd = pusher.push_image("team0/multi", [], layers=[layer_bytes("amd", 3_000)], architecture="amd64")
    arm = pusher.push_image("team0/multi", [], layers=[layer_bytes("arm", 3_000)], architecture="arm64")
    pusher.push_index("team0/multi", ["1.0"], [amd, arm])


ROWS = {
    "repositories": "SELECT registry, repository, tag_count, status, error FROM repositories WHERE snapshot_id = $s",
    "tags": "SELECT registry, repository, tag, digest FROM tags WHERE snapshot_id = $s",
    "repository_status": ("SELECT * EXCLUDE (snapshot_id, scan_time, last_handled_reconcile_at) FROM repository_status "
                          "WHERE snapshot_id = $s"),
    # Digest keys are surrogates, numbered in the order each database met the digests.
    "manifests": "SELECT * EXCLUDE (first_seen_snapshot, manifest_key, config_key) FROM manifests",
    "layers": "SELECT * EXCLUDE (manifest_key, blob_key) FROM layers",
    "manifest_children": "SELECT * EXCLUDE (index_key, child_key) FROM manifest_children",
    "repository_links": "SELECT registry, repository, digest FROM repository_links",
}


def rows(path, snapshot_id: int) -> dict[str, set]:
    with repoaudit.open(path, read_only=True) as audit:
        out = {}
        for table, sql in ROWS.items():
            params = {"s": snapshot_id} if "$s" in sql else None
            frame = audit.sql(sql, params)
            out[table] = set(frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None))
            assert len(out[table]) == len(frame), f"duplicate rows in {table}"
        return out


def keys_mismatched(path) -> int:
    """Keyed digests whose key is missing or names another digest in digest_keys."""
    with repoaudit.open(path, read_only=True) as audit:
        return audit.sql("""
            SELECT count(*) FROM (
                SELECT registry, manifest_digest AS digest, manifest_key AS key FROM layers UNION ALL
                SELECT registry, digest, blob_key FROM layers UNION ALL
                SELECT registry, digest, manifest_key FROM manifests UNION ALL
                SELECT registry, config_digest, config_key FROM manifests WHERE config_digest IS NOT NULL UNION ALL
                SELECT registry, child_digest, child_key FROM manifest_children UNION ALL
                SELECT registry, digest, manifest_key FROM repository_links) x
            LEFT JOIN digest_keys k ON k.key = x.key
            WHERE k.digest IS DISTINCT FROM x.digest OR k.registry IS DISTINCT FROM x.registry""").iloc[0, 0]


def snapshot(path, snapshot_id: int) -> dict:
    with repoaudit.open(path, read_only=True) as audit:
        return audit.sql("SELECT * FROM snapshots WHERE snapshot_id = $s", {"s": snapshot_id}).iloc[0].to_dict()


@pytest.fixture
def seeded(registry, pusher):
    seed(pusher)
    return registry


def test_shard_partition_is_the_documented_hash(seeded, tmp_path):
    names = sorted(REPOS + ["base/os", "team0/multi"])
    seen = []
    for i in range(3):
        with repoaudit.open(tmp_path / f"s{i}.duckdb") as audit:
            result = audit.collect(seeded.url, shard=f"{i}/3", progress=False)
            got = sorted(audit.sql("SELECT repository FROM repositories")["repository"])
            options = audit.sql("SELECT options->>'shard' AS shard FROM snapshots").iloc[0, 0]
        assert got == [n for n in names if expected_shard(n, 3) == i]
        assert result.repositories == len(got) and options == f"{i}/3"
        seen += got
    assert sorted(seen) == names


def test_merged_shards_equal_one_full_run(seeded, pusher, tmp_path):
    full_db, merged_db = tmp_path / "full.duckdb", tmp_path / "merged.duckdb"
    shard_dbs = [tmp_path / "shard0.duckdb", tmp_path / "shard1.duckdb"]
    # The shared manifest (base/os:1 tagged everywhere) must be reached from both shards.
    assert {expected_shard(n, 2) for n in REPOS} == {0, 1}

    def run_all():
        with repoaudit.open(full_db) as audit:
            full = audit.collect(seeded.url, progress=False)
        for i, path in enumerate(shard_dbs):
            with repoaudit.open(path) as audit:
                audit.collect(seeded.url, shard=(i, 2), progress=False)
        (merged,) = merge(shard_dbs, merged_db)
        return full, merged

    full, merged = run_all()
    assert merged.status == "complete" and merged.shards == 2 and not merged.missing_shards
    assert rows(merged_db, merged.snapshot_id) == rows(full_db, full.snapshot_id)
    for path in (full_db, merged_db):
        assert keys_mismatched(path) == 0
    a, b = snapshot(merged_db, merged.snapshot_id), snapshot(full_db, full.snapshot_id)
    for column in ("registry", "source", "status", "mode", "repository_count", "tag_count", "manifest_count",
                   "new_manifest_count", "error_count"):
        assert a[column] == b[column], column
    with repoaudit.open(merged_db, read_only=True) as audit:
        assert audit.sql("SELECT count(*) FROM manifests WHERE first_seen_snapshot <> $s",
                         {"s": merged.snapshot_id}).iloc[0, 0] == 0
        summary = audit.query("repository_summary")
    with repoaudit.open(full_db, read_only=True) as audit:
        assert summary.equals(audit.query("repository_summary"))
    # The posture probe (the same registry from every shard) comes along: the newest shard's, once.
    posture = "SELECT * EXCLUDE (snapshot_id, probed_at, sample_repository, sample_tag) FROM registry_posture"
    with repoaudit.open(merged_db, read_only=True) as audit:
        merged_posture = audit.sql(f"{posture} WHERE snapshot_id = $s", {"s": merged.snapshot_id})
    with repoaudit.open(full_db, read_only=True) as audit:
        full_posture = audit.sql(f"{posture} WHERE snapshot_id = $s", {"s": full.snapshot_id})
    assert len(merged_posture) == 1 and merged_posture.equals(full_posture)

    # A second round after changes: incremental shards, merged into the same database, still equal.
    moved = pusher.push_image(REPOS[0], ["latest"], layers=[layer_bytes("new", 700)], created="2025-12-01T00:00:00Z")
    full2, merged2 = run_all()
    assert rows(merged_db, merged2.snapshot_id) == rows(full_db, full2.snapshot_id)
    assert snapshot(merged_db, merged2.snapshot_id)["mode"] == "incremental"
    assert merged2.new_manifests == 1
    with repoaudit.open(merged_db, read_only=True) as audit:
        moves = audit.query("tag_moves")
        assert list(zip(moves["repository"], moves["tag"], moves["to_digest"])) == [(REPOS[0], "latest", moved.digest)]
        assert audit.sql("SELECT count(DISTINCT snapshot_id) FROM tags").iloc[0, 0] == 2


def test_missing_shard_makes_a_partial_snapshot(seeded, tmp_path):
    path = tmp_path / "shard1.duckdb"
    with repoaudit.open(path) as audit:
        audit.collect(seeded.url, shard="1/2", progress=False)
    (result,) = merge([path], tmp_path / "out.duckdb")
    assert result.status == "partial" and result.missing_shards == ["0/2"]
    with repoaudit.open(tmp_path / "out.duckdb", read_only=True) as audit:
        errors = audit.sql("SELECT error_type, error FROM collection_errors")
        assert errors.values.tolist() == [["MissingShard", "shard 0/2 was not among the merged databases"]]


def test_inputs_that_are_not_one_run_are_refused(seeded, tmp_path):
    full, early = tmp_path / "full.duckdb", tmp_path / "early.duckdb"
    with repoaudit.open(full) as audit:
        audit.collect(seeded.url, progress=False)
    with repoaudit.open(early) as audit:
        audit.collect(seeded.url, shard="0/2", progress=False, started_at=datetime(2020, 1, 1))
    shard1 = tmp_path / "shard1.duckdb"
    with repoaudit.open(shard1) as audit:
        audit.collect(seeded.url, shard="1/2", progress=False)

    with pytest.raises(ConfigError, match=r"repository \S+ is in both .*full.duckdb and .*shard1.duckdb"):
        merge([full, shard1], tmp_path / "out.duckdb")
    with pytest.raises(ConfigError, match=r"hours apart .*not shards of one run"):
        merge([early, shard1], tmp_path / "out.duckdb")
    assert merge([early, shard1], tmp_path / "out.duckdb", max_spread=timedelta(days=10_000))[0].status == "complete"
    with pytest.raises(ConfigError, match="is also an input"):
        merge([shard1], shard1)
    with pytest.raises(StoreError, match="does not exist"):
        merge([tmp_path / "nope.duckdb"], tmp_path / "out2.duckdb")
    # Nothing half-written: the refused merges left no snapshot behind.
    with repoaudit.open(tmp_path / "out.duckdb", read_only=True) as audit:
        assert audit.sql("SELECT count(*) FROM snapshots").iloc[0, 0] == 1


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4) and parse_shard((3, 4)) == (3, 4)
    assert CollectOptions(shard="1/2").shard == (1, 2)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0", "1/"):
        with pytest.raises(ConfigError, match="shard"):
            parse_shard(bad)


def test_cli_collect_shard_and_merge(seeded, tmp_path):
    runner = CliRunner()

    def cli(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    for i in range(2):
        result = cli("collect", seeded.url, "--shard", f"{i}/2", "--db", tmp_path / f"s{i}.duckdb", "--no-progress")
        assert result.exit_code == 0, result.output
    result = cli("merge", tmp_path / "s0.duckdb", tmp_path / "s1.duckdb", "-o", tmp_path / "all.duckdb")
    assert result.exit_code == 0, result.output
    assert f"of {seeded.host}: complete, merged from 2 databases" in result.stdout
    assert f"repositories {len(REPOS) + 2}, tags {len(REPOS) * 4 + 2}" in result.stdout
    bad = cli("collect", seeded.url, "--shard", "2/2", "--db", tmp_path / "x.duckdb", "--no-progress")
    assert bad.exit_code == 1 and "invalid shard 2/2" in bad.stderr
