"""Exports round-trip: CSV row counts equal the tables, Parquet reads back identical."""

from __future__ import annotations

import pandas as pd
import pytest

import repoaudit
from pusher import layer_bytes
from repoaudit.store.exports import base_tables, read_parquet_sql


@pytest.fixture
def collected(registry, pusher, tmp_path):
    base = pusher.push_image("base/os", ["1"], layers=[layer_bytes("os", 3000)], created="2025-02-02T00:00:00Z")
    pusher.push_image("team/app", ["1", "2"], shared_layers=base.layers, mount_from="base/os",
                      layers=[layer_bytes("app", 1000)])
    amd = pusher.push_image("team/multi", [], layers=[layer_bytes("m", 100)])
    pusher.push_index("team/multi", ["x"], [amd])
    audit = repoaudit.open(tmp_path / "db.duckdb")
    audit.collect(registry.url, progress=False)
    pusher.push_image("team/app", ["3"], layers=[layer_bytes("app3", 1000)])
    audit.collect(registry.url, progress=False)
    yield audit
    audit.close()


def test_csv_row_counts_equal_tables(collected, tmp_path):
    for table in base_tables(collected.con):
        path = tmp_path / "csv" / f"{table}.csv"
        written = collected.export_csv(table, path)
        expected = collected.sql(f"SELECT count(*) FROM {table}").iloc[0, 0]
        assert written == expected
        assert len(pd.read_csv(path)) == expected, table


def test_parquet_round_trip_is_identical(collected, tmp_path):
    out = tmp_path / "parquet"
    counts = collected.export_parquet(out)
    assert counts["tags"] == 9 and counts["snapshots"] == 2
    # registry=… and snapshot_date=… directories, percent-encoded as Hive does
    assert list((out / "tags").glob("registry=127.0.0.1%3A*/snapshot_date=*/*.parquet"))
    for table, rows in counts.items():
        if rows == 0:
            continue
        original = collected.sql(f"SELECT * FROM {table}")
        back = collected.sql(f"SELECT * FROM {read_parquet_sql(out, table)}")
        assert set(back.columns) - set(original.columns) <= {"snapshot_date"}
        back = back[original.columns]
        key = list(original.columns)
        a = original.astype(str).sort_values(key).reset_index(drop=True)
        b = back.astype(str).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, obj=table)


def test_parquet_refuses_non_empty_directory(collected, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(repoaudit.ConfigError, match="is not empty"):
        collected.export_parquet(out)
    collected.export_parquet(out, overwrite=True)
    assert not (out / "keep.txt").exists()


def test_workloads_are_partitioned_by_their_own_date(registry, pusher, tmp_path):
    """A pod listing's snapshot_id numbers cluster snapshots: its rows go under the day it was ingested,
    not under the registry snapshot that happens to share the number."""
    from datetime import datetime

    from conftest import FIXTURES

    pusher.push_image("team/app", ["1"], layers=[layer_bytes("w", 500)])
    with repoaudit.open(tmp_path / "w.duckdb") as audit:
        audit.collect(registry.url, progress=False, started_at=datetime(2025, 1, 1, 6))
        audit.ingest("pods", FIXTURES / "kubernetes" / "k9s-pod-docker-pullable.json", cluster="prod")
        ingested = audit.sql("SELECT CAST(CAST(ingested_at AS DATE) AS VARCHAR) AS d FROM workload_snapshots")["d"].iloc[0]
        audit.export_parquet(tmp_path / "out")
    for table in ("workloads", "workload_snapshots"):
        dates = {p.name for p in (tmp_path / "out" / table).rglob("snapshot_date=*")}
        assert dates == {f"snapshot_date={ingested}"}, (table, dates)
    assert {p.name for p in (tmp_path / "out" / "tags").rglob("snapshot_date=*")} == {"snapshot_date=2025-01-01"}
