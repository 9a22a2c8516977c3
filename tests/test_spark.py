"""The named queries on Spark (local mode) over the demo database's Parquet lake return the rows DuckDB
returns from the database; each query that does not run on Spark is listed here with its reason."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import repoaudit
from repoaudit.analysis.queries import load_queries, queries_dir
from repoaudit.cli import main
from repoaudit.errors import QueryError

pytest.importorskip("sqlglot")
pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (openjdk-17-jre-headless)", allow_module_level=True)

from repoaudit.fleet.spark import SparkLake  # noqa: E402

# Queries that do not run on Spark, with the reason `repoaudit queries --engine spark` gives (a fragment).
UNSUPPORTED = {
    # DuckDB's ASOF join (tag_stretches_of, behind every tag-history view) has no Spark equivalent.
    "mutable_release_tags": "ASOF join",
    "tag_moves": "sqlglot cannot parse it",
    "tag_timeline": "ASOF join",
    "orphaned_manifests": "needs view image_lifecycle",
}


@pytest.fixture(scope="module")
def lake(demo_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("lake") / "lake"
    with repoaudit.open(demo_db, read_only=True) as audit:
        audit.export_parquet(out)
    return out


@pytest.fixture(scope="module")
def spark_lake(lake):
    on_spark = SparkLake(lake, master="local[2]")
    yield on_spark
    on_spark.spark.stop()


def normal(value):
    """One value as both engines' frames can be compared: numbers to 9 significant digits, times as ISO text."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (np.ndarray, list, tuple)):
        return tuple(normal(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating, decimal.Decimal)):
        return float(f"{float(value):.9g}")
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        stamp = pd.Timestamp(value)
        return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp).isoformat()
    if isinstance(value, (dt.timedelta, pd.Timedelta)):
        return pd.Timedelta(value).total_seconds()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def sorted_rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted((tuple(normal(v) for v in row) for row in frame.itertuples(index=False, name=None)), key=repr)


SUPPORTED = sorted(set(load_queries()) - set(UNSUPPORTED))


def test_support_lists_every_exception_with_its_reason(spark_lake):
    support = spark_lake.support().set_index("name")
    assert set(support.index) == set(load_queries())
    for name, fragment in UNSUPPORTED.items():
        assert not support.loc[name, "spark"], f"{name} now runs on Spark: take it off UNSUPPORTED"
        assert fragment in support.loc[name, "reason"], (name, support.loc[name, "reason"])
    assert support.loc[SUPPORTED, "spark"].all(), support.loc[SUPPORTED][~support.loc[SUPPORTED, "spark"]]


@pytest.mark.parametrize("name", SUPPORTED)
def test_query_returns_the_same_rows_on_spark(name, demo_db, spark_lake):
    with repoaudit.open(demo_db, read_only=True) as audit:
        expected = audit.query(name)
    got = spark_lake.query(name)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    assert sorted_rows(got) == sorted_rows(expected)


def test_run_durations_are_the_same_on_spark_however_they_fall(demo_db, lake, spark_lake, tmp_path):
    """Durations of a half-hundredth of a second (0.415 s): rounded, Spark's decimals went up where DuckDB's
    doubles went down, so the demo's own run times failed this file now and then."""
    db = tmp_path / "ties.duckdb"
    shutil.copy(demo_db, db)
    with duckdb.connect(str(db)) as con:
        # Each one a half that DuckDB's doubles round down (0.41499999…) and Spark's decimals round up.
        con.execute("UPDATE snapshots SET finished_at = started_at + to_milliseconds("
                    "[415, 1015, 2675][snapshot_id])")
    with repoaudit.open(db, read_only=True) as audit:
        expected = audit.query("snapshots")
        audit.export_parquet(tmp_path / "lake")
    try:
        got = SparkLake(tmp_path / "lake", session=spark_lake.spark).query("snapshots")
    finally:
        SparkLake(lake, session=spark_lake.spark)  # the module's lake back in the shared session's views
    assert sorted_rows(got) == sorted_rows(expected)
    assert sorted(expected["seconds"]) == [0.415, 1.015, 2.675]


def test_means_round_alike_on_spark(spark_lake):
    """Means of whole days that fall on a half (3 days over 20 findings: 0.15, a double just under it): the
    queries round them as decimals, which both engines round half up; a bare double rounds down on DuckDB."""
    rounded = re.compile(r"round\(\s*\(?\s*avg\(", re.IGNORECASE)
    for path in sorted(queries_dir().glob("*.sql")):
        text = path.read_text()
        for found in rounded.finditer(text):
            rest = text[found.start():]
            assert re.match(r"round\(\(avg\([^;]*?\)\)::DECIMAL\(18, 6\), \d\)", rest), (path.name, rest[:80])
    rows = [(day, "a") for day in [0] * 17 + [1, 1, 1]] + [(day, "b") for day in [2, 3]] + [(1, "c")] * 3
    sql = "SELECT g, round((avg(x) FILTER (WHERE x >= 0))::DECIMAL(18, 6), 1) AS m FROM mean_rows GROUP BY g"
    expected, got = on_both_engines(spark_lake, "mean_rows", "x INT, g STRING", rows, sql)
    assert [(g, float(m)) for g, m in got] == [(g, float(m)) for g, m in expected] == [
        ("a", 0.2), ("b", 2.5), ("c", 1.0)]


def on_both_engines(spark_lake, table: str, ddl: str, rows: list[tuple], sql: str) -> tuple[list, list]:
    """``sql`` over ``rows`` as ``table`` on DuckDB and, transpiled, on Spark: each engine's rows, sorted."""
    spark_lake.spark.createDataFrame(rows, ddl).createOrReplaceTempView(table)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE {table} ({ddl.replace('STRING', 'VARCHAR')})")
    con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    expected = sorted(con.sql(sql).fetchall())
    got = sorted(tuple(r) for r in spark_lake.spark.sql(spark_lake.transpile_sql(sql)).collect())
    return expected, got


# DuckDB's ordered aggregates, each against DuckDB on the same rows: NULL values, NULL keys, ties, DESC,
# several keys, DISTINCT, FILTER, a group the FILTER empties (NULL, not an empty list).
ORDERED_AGGREGATES = [
    "list(x ORDER BY x)",
    "list(x ORDER BY x DESC)",
    "list(x ORDER BY y DESC NULLS FIRST, x)",
    "list(x ORDER BY y, x DESC)",
    "list(DISTINCT x ORDER BY x) FILTER (WHERE x > 1)",
    "list(s ORDER BY x NULLS FIRST, s DESC)",
    "string_agg(s, '/' ORDER BY s) FILTER (WHERE y > 0)",
]


@pytest.mark.parametrize("aggregate", ORDERED_AGGREGATES)
def test_ordered_aggregates_keep_their_order_on_spark(aggregate, spark_lake):
    rows = [(1, 2, "a", "p"), (None, 1, "a", "q"), (3, 0, "b", "r"), (1, 5, "a", None), (2, None, "a", "s"),
            (None, None, "c", "t"), (1, 2, "a", "u")]
    sql = f"SELECT g, {aggregate} AS agg FROM ordered_agg_rows GROUP BY g"
    expected, got = on_both_engines(spark_lake, "ordered_agg_rows", "x INT, y INT, g STRING, s STRING", rows, sql)
    assert got == expected


def test_parameters_are_bound_on_spark(demo_db, spark_lake):
    params = {"from_snapshot": 1, "to_snapshot": 2}
    with repoaudit.open(demo_db, read_only=True) as audit:
        expected = audit.query("snapshot_diff", **params)
        latest = audit.query("snapshot_diff")
    got = spark_lake.query("snapshot_diff", **params)
    assert len(expected) > 0 and sorted_rows(expected) != sorted_rows(latest)
    assert sorted_rows(got) == sorted_rows(expected)
    with pytest.raises(QueryError, match="has no parameter bogus"):
        spark_lake.query("snapshot_diff", bogus=1)


def test_unsupported_query_is_one_line_with_its_reason(spark_lake):
    with pytest.raises(QueryError, match=r"^query tag_timeline on Spark: .*ASOF join") as caught:
        spark_lake.query("tag_timeline")
    assert "\n" not in str(caught.value)


def test_cli_engine_spark(lake, spark_lake, monkeypatch):
    # The CLI builds its own SparkLake; the module's session is reused (getOrCreate), not a second JVM.
    runner = CliRunner()
    result = runner.invoke(main, ["query", "snapshots", "--engine", "spark", "--parquet", str(lake),
                                  "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1 + 3  # header and the demo's three snapshots
    listing = runner.invoke(main, ["queries", "--engine", "spark", "--parquet", str(lake), "--format", "json"])
    assert listing.exit_code == 0 and '"tag_timeline"' in listing.output
    bad = runner.invoke(main, ["query", "snapshots", "--engine", "spark", "--parquet", str(lake.parent)])
    assert bad.exit_code == 1 and "is not a repoaudit lake" in bad.output


def test_retention_whatif_totals_agree_on_spark(demo_db, spark_lake):
    """The engine's own statements, run on Spark over the lake: every example policy's totals are DuckDB's."""
    from repoaudit.fleet.spark_retention import plan_retention_on_spark
    from repoaudit.retention.whatif import default_policies_dir

    policies = sorted(default_policies_dir().iterdir())
    with repoaudit.open(demo_db, read_only=True) as audit:
        expected = audit.retention(*policies, blobs=False, detail=False)
    got = plan_retention_on_spark(spark_lake, policies, blobs=False, detail=False)
    assert len(expected.summary) == len(policies) >= 4
    assert (expected.summary["candidate_images"] > 0).all() and (expected.summary["reclaimable_bytes"] > 0).all()
    assert len(set(expected.summary["candidate_images"])) == len(policies)  # the policies do differ
    pd.testing.assert_frame_equal(got.summary, expected.summary, check_dtype=False)
    assert len(expected.by_namespace) > 0 and sorted_rows(got.by_namespace) == sorted_rows(expected.by_namespace)
    assert got.snapshots["snapshot_id"].tolist() == expected.snapshots["snapshot_id"].tolist()


def test_cli_retention_plan_on_spark(demo_db, lake, spark_lake):
    from repoaudit.retention.whatif import default_policies_dir

    policy = str(default_policies_dir() / "ecr-lifecycle.json")
    runner = CliRunner()
    on_duckdb = runner.invoke(main, ["retention", "plan", "--policy", policy, "--db", str(demo_db)])
    on_spark = runner.invoke(main, ["retention", "plan", "--policy", policy, "--engine", "spark",
                                    "--parquet", str(lake)])
    assert on_duckdb.exit_code == 0, on_duckdb.output
    assert on_spark.exit_code == 0, on_spark.output
    assert on_spark.output == on_duckdb.output
    bad = runner.invoke(main, ["retention", "plan", "--policy", policy, "--parquet", str(lake)])
    assert bad.exit_code == 1 and "go with --engine spark" in bad.output


def test_gc_preview_and_storage_retention_agree_on_spark(registry, pusher, tmp_path, spark_lake):
    """A storage snapshot with an unreferenced manifest: gc_preview (gc_blobs called with an outer column) and
    the what-if's reclaimable bytes, which count what GC frees anyway, are DuckDB's on Spark."""
    from pusher import layer_bytes

    from repoaudit.fleet.spark_retention import plan_retention_on_spark

    base = pusher.push_image("base/os", ["1"], layers=[layer_bytes("sp-base", 20_000)], created="2023-01-01T00:00:00Z")
    shared = dict(shared_layers=base.layers, mount_from="base/os")
    pusher.push_image("svc", ["old"], layers=[layer_bytes("sp-old", 3_000)], created="2024-01-01T00:00:00Z", **shared)
    pusher.push_image("svc", ["nightly"], layers=[layer_bytes("sp-n1", 3_100)], created="2025-01-01T00:00:00Z",
                      **shared)
    pusher.push_image("svc", ["nightly"], layers=[layer_bytes("sp-n2", 3_200)], created="2025-02-01T00:00:00Z",
                      **shared)
    gone = pusher.push_image("svc", ["gone"], layers=[layer_bytes("sp-gone", 3_300)], created="2023-06-01T00:00:00Z",
                             **shared)
    pusher.delete_manifest("svc", gone.digest)
    policy = {"name": "newest", "rules": [{"name": "newest", "keep": {"most_recent": 1, "by": "created"}}]}
    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        audit.collect(f"registry-storage:{registry.storage_dir}", name=registry.host, progress=False)
        expected_gc = audit.query("gc_preview")
        expected_plan = audit.retention(policy, blobs=False, detail=False)
        audit.export_parquet(tmp_path / "lake")
    unreferenced = len(gone.manifest) + gone.config.size + gone.layers[1].size
    assert expected_gc["freed_bytes"].max() == unreferenced
    # its own session (temporary views are per session) on the module's Spark context: no second JVM
    storage_lake = SparkLake(tmp_path / "lake", session=spark_lake.spark.newSession())
    assert sorted_rows(storage_lake.query("gc_preview")) == sorted_rows(expected_gc)
    got_plan = plan_retention_on_spark(storage_lake, [policy], blobs=False, detail=False)
    assert int(expected_plan.summary.iloc[0]["reclaimable_bytes"]) > unreferenced
    pd.testing.assert_frame_equal(got_plan.summary, expected_plan.summary, check_dtype=False)
