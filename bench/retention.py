"""How long a retention plan takes on a large synthetic estate (target: 1M tags in under 5 s).

Writes a database straight through SQL (no registry: this measures the plan, not
collection) with ``--tags`` tags in repositories of 100 tags, two snapshots a week
apart (5% of the tags new in the second, 2% moved, leaving untagged revisions),
6 layers per image (3 from a shared base pool, 2 shared within the repository, 1 of
its own) and one index of two platform images per 20 tags. Then plans the example
policies of ``data/policies`` one by one and all together, three ways: the what-if
table only (``detail=False``, what ``retention plan`` prints), the full plan, and
the full plan with the freed blobs listed (``blobs=True``); it prints wall and CPU
seconds and the engine's own step timings::

    python3 bench/retention.py --tags 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import repoaudit  # noqa: E402
from repoaudit.retention.whatif import default_policies_dir
from repoaudit.retention.engine import plan_retention
from repoaudit.store.kept import rebuild_links

SQL = """
CREATE TEMP TABLE img AS
SELECT i, i // 100 AS repo_no, 'ns' || (i // 100 % 20) || '/repo' || (i // 100) AS repository,
       CASE WHEN i % 5 = 0 THEN 'latest-' || i WHEN i % 2 = 0 THEN 'v1.' || (i % 100) || '.' || (i // 100)
            ELSE 'main-' || i END AS tag,
       'sha256:' || sha256('m' || i) AS digest, i % 20 = 0 AS is_index,
       TIMESTAMP '2024-01-01' + to_seconds((i * 7919) % 60000000) AS created
FROM range({n}) t(i);

INSERT INTO snapshots (snapshot_id, registry, source, source_kind, started_at, finished_at, status, mode)
VALUES (1, 'bench', 'oci:/bench', 'oci-layout', TIMESTAMP '2025-12-01', TIMESTAMP '2025-12-01', 'complete', 'full'),
       (2, 'bench', 'oci:/bench', 'oci-layout', TIMESTAMP '2025-12-08', TIMESTAMP '2025-12-08', 'complete', 'full');

INSERT INTO repositories (snapshot_id, registry, repository, tag_count, status, error)
SELECT s, 'bench', repository, 100, 'ok', NULL
FROM (SELECT DISTINCT repository FROM img), (VALUES (1), (2)) v(s);

-- Snapshot 1: 95% of today's tags; 2% of them pointed at an older build that is untagged now.
INSERT INTO tags SELECT 1, 'bench', repository, tag,
       CASE WHEN i % 50 = 7 THEN 'sha256:' || sha256('old' || i) ELSE digest END
FROM img WHERE i % 20 <> 3;
INSERT INTO tags SELECT 2, 'bench', repository, tag, digest FROM img;

INSERT INTO manifests (registry, digest, media_type, kind, manifest_size, config_digest, config_size, layers_size,
                       layer_count, total_size, created, first_seen_snapshot)
SELECT 'bench', digest, 'application/vnd.oci.image.manifest.v1+json', 'image', 900 + i % 100,
       'sha256:' || sha256('c' || i), 1500, 0, 6, 0, created, 1
FROM (SELECT i, digest, created FROM img WHERE NOT is_index
      UNION ALL SELECT i, 'sha256:' || sha256('old' || i), created - INTERVAL 30 DAY FROM img WHERE i % 50 = 7
      UNION ALL SELECT i * 10 + p, 'sha256:' || sha256('child' || p || '-' || i), created
      FROM img, (VALUES (1), (2)) v(p) WHERE is_index);
INSERT INTO manifests (registry, digest, media_type, kind, manifest_size, total_size, created, first_seen_snapshot)
SELECT 'bench', digest, 'application/vnd.oci.image.index.v1+json', 'index', 700, 0, created, 1 FROM img WHERE is_index;
INSERT INTO manifest_children (registry, index_digest, position, child_digest, media_type, size, os, architecture,
                               variant)
SELECT 'bench', digest, p - 1, 'sha256:' || sha256('child' || p || '-' || i), NULL, 900, 'linux',
       CASE p WHEN 1 THEN 'amd64' ELSE 'arm64' END, NULL
FROM img, (VALUES (1), (2)) v(p) WHERE is_index;

INSERT INTO layers (registry, manifest_digest, position, digest, media_type, size)
SELECT 'bench', m.digest, l, CASE WHEN l < 3 THEN 'sha256:' || sha256('base' || ((m.n + l) % 1000))
                                  WHEN l < 5 THEN 'sha256:' || sha256('dep' || (m.n // 100) || '-' || (l + m.n % 3))
                                  ELSE 'sha256:' || sha256('own' || m.digest) END,
       'application/vnd.oci.image.layer.v1.tar+gzip',
       CASE WHEN l < 3 THEN 30000000 WHEN l < 5 THEN 8000000 ELSE 1000000 + m.n % 5000000 END
FROM (SELECT row_number() OVER () AS n, digest FROM manifests WHERE kind = 'image') m, range(6) r(l);
"""


def build(path: Path, n: int) -> None:
    with repoaudit.open(path) as audit:
        audit.con.execute("SET enable_progress_bar = false")
        audit.con.execute(SQL.format(n=int(n)))
        rebuild_links(audit.con)  # what the snapshot writer keeps at commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="keep the database here, or reuse it (default: a temporary file)")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    path = args.db or Path(tmp.name) / "bench.duckdb"
    if path.exists():
        print(f"reusing {path}")
    else:
        started = time.perf_counter()
        build(path, args.tags)
        print(f"built {args.tags:,} tags in {time.perf_counter() - started:.1f}s ({path})")
    policies = sorted(p for p in default_policies_dir().iterdir() if p.suffix in (".json", ".yaml"))
    with repoaudit.open(path, read_only=True) as audit:
        audit.con.execute("SET enable_progress_bar = false")
        for policy in policies + [None]:
            for mode, detail, blobs in (("what-if", False, False), ("plan", True, False), ("plan+blobs", True, True)):
                started, cpu = time.perf_counter(), time.process_time()
                plan = plan_retention(audit.con, [policy] if policy else policies, blobs=blobs, detail=detail)
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
                label = f"{policy.name if policy else f'all {len(policies)} together'} {mode}"
                total = plan.summary["candidate_images"].sum()
                steps = " ".join(f"{k} {v:.1f}" for k, v in plan.timings.items())
                print(f"{label:<34} {seconds:6.2f}s (cpu {cpu:5.1f}s; {steps})  candidates {total:>9,}  "
                      f"reclaimable {plan.summary['reclaimable_bytes'].sum() / 2**30:8.1f} GiB")


if __name__ == "__main__":
    main()
