"""Fleet sizing: Parquet lake export rate, and the named queries on Spark (local mode) against DuckDB.

Builds bench/scale.py's synthetic estate (REPOS repositories × 100 tags per snapshot; --repos 10000 is the
1M-tag estate), exports it with ``export --parquet`` (rows/s and MB/s), appends one more export (nothing
new: the cost of checking), then times each named query given by --queries on DuckDB (the database) and on
Spark ``local[2]`` over the lake, both fetched into a DataFrame, and prints Spark's time as a ratio of
DuckDB's measured in the same run. Spark's session start and view set-up are printed separately.

Run: ``python bench/fleet.py [--repos 1000] [--snapshots 3] [--queries a,b,c] [--retention] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import build  # noqa: E402

import repoaudit  # noqa: E402

DEFAULT_QUERIES = "snapshots,repository_summary,shared_layers,artifact_inventory,unpulled_images,stale_images"


def best_of(fn, times: int = 2) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(times):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=1000, help="repositories (100 tags each per snapshot)")
    ap.add_argument("--snapshots", type=int, default=3)
    ap.add_argument("--queries", default=DEFAULT_QUERIES, help="comma-separated named queries to time")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--retention", action="store_true", help="also time the retention what-if of data/policies")
    ap.add_argument("--keep", type=Path, help="write the database and lake here and keep them")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="repoaudit-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    db, lake = work / "scale.duckdb", work / "lake"
    try:
        for stale in (db, Path(f"{db}.wal")):
            stale.unlink(missing_ok=True)
        shutil.rmtree(lake, ignore_errors=True)
        t0 = time.perf_counter()
        counts = build(db, args.repos, args.snapshots)
        print(f"built in {time.perf_counter() - t0:.1f}s: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))

        with repoaudit.open(db, read_only=True) as audit:
            t0 = time.perf_counter()
            written = audit.export_parquet(lake, append=True)
            export_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            audit.export_parquet(lake, append=True)
            again_s = time.perf_counter() - t0
        rows = sum(written.values())
        size = sum(p.stat().st_size for p in lake.rglob("*.parquet"))
        print(f"export --parquet: {rows:,} rows, {size / 2**20:,.0f} MiB in {export_s:.1f}s = "
              f"{rows / export_s:,.0f} rows/s, {size / 2**20 / export_s:,.1f} MiB/s "
              f"({written.get('tags', 0):,} tag rows)")
        print(f"export --append with nothing new: {again_s:.1f}s (state tables rewritten, snapshots checked)")

        from repoaudit.fleet.spark import SparkLake

        t0 = time.perf_counter()
        spark = SparkLake(lake, master=args.master)
        print(f"Spark {args.master}: session and lake tables ready in {time.perf_counter() - t0:.1f}s")
        print()
        print(f"{'named query':<24} {'rows':>9} {'duckdb s':>9} {'spark s':>9} {'spark/duckdb':>13}")
        with repoaudit.open(db, read_only=True) as audit:
            for name in args.queries.split(","):
                d_s, d_rows = best_of(lambda: audit.query(name))
                spark.query(name)  # first run creates the views it needs; timed runs are the steady state
                s_s, s_rows = best_of(lambda: spark.query(name))
                same = "" if len(d_rows) == len(s_rows) else f"  rows differ: spark {len(s_rows):,}"
                print(f"{name:<24} {len(d_rows):>9,} {d_s:>9.2f} {s_s:>9.2f} {s_s / d_s:>12.1f}x{same}")
            if args.retention:
                # the what-if of the example policies (repoaudit retention plan), totals compared
                from repoaudit.fleet.spark_retention import plan_retention_on_spark
                from repoaudit.retention.whatif import default_policies_dir

                policies = sorted(default_policies_dir().iterdir())
                d_s, d_plan = best_of(lambda: audit.retention(*policies, blobs=False, detail=False), 1)
                s_s, s_plan = best_of(lambda: plan_retention_on_spark(spark, policies, blobs=False, detail=False), 1)
                same = "" if d_plan.summary.equals(s_plan.summary) else "  totals differ"
                print(f"{'retention plan (4 pol.)':<24} {len(policies):>9,} {d_s:>9.2f} {s_s:>9.2f} "
                      f"{s_s / d_s:>12.1f}x{same}")
        spark.spark.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
