"""Query and memory scale: a synthetic 1M-tag database, and the peak memory of a 100k-tag collection.

Part 1 builds a repoaudit database directly with DuckDB SQL (no registry, a few
seconds): REPOS repositories × 100 tags in each of SNAPSHOTS weekly snapshots
(1M tags per snapshot by default), 84 images of 6 layers per repository
(5M layer rows: two base layers shared by a fifth of the estate, one
dependency layer shared by ten builds, three layers of its own), multi-arch
indexes in every tenth repository, floating tags (``latest``, ``stable``,
``prod``, ``dev``) that move every snapshot, a rollback of ``stable`` in every
hundredth repository, old version tags deleted (orphaned manifests), and one
repository in a thousand failing in the middle snapshot; for the risk queries, a
cluster's pods in every other repository (15,000 containers, known by digest, by
image ID or only by tag) and scans of the ten newest images of every repository
(100,000 scans, 2M findings). Each snapshot is then folded into the tables a
commit keeps (links, keys, blob references, latest images), timed, as the
snapshot writer does. It then times every named query in ``queries/`` with
its default parameters (executed and fetched into a DataFrame, as ``repoaudit
query`` does), and for each policy in ``data/policies/`` the what-if table
``repoaudit retention plan`` prints, the full plan (every candidate) and the plan
with its freed blobs listed.

Part 2 writes a tree of OCI image layouts with TAGS tags (every tag its own
manifest and config) and collects it in a child process, reporting the child's
peak resident memory (``ru_maxrss``; on Linux ``VmHWM``, because Linux carries
``ru_maxrss`` over ``execve`` and the child would inherit this process's peak),
at a tenth of the size too so that growth is visible.

Targets (issue 7): every named query < 2 s and a retention plan < 5 s at 1M tags
on a 2-core machine; a 100k-tag collection peaks below 500 MB.

Run: ``python bench/scale.py [--repos 10000] [--snapshots 3] [--layout-tags 100000] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import repoaudit  # noqa: E402
from repoaudit.analysis.queries import load_queries
from repoaudit.store.writer import snapshot_totals
from repoaudit.store.database import connect
from repoaudit.store.kept import assign_keys, maintain

REGISTRY = "synthetic.example.com"
VISIBLE = 80         # version tags visible in each snapshot
STEP = 2             # images pushed (and oldest version tags deleted) per repository between snapshots
LAYERS = 6
BASES = 200

QUERY_TARGET_S = 2.0
PLAN_TARGET_S = 5.0
MEMORY_TARGET_MB = 500


def build(path: Path, repos: int, snapshots: int) -> dict[str, int]:
    """Write the synthetic estate with set-based SQL; returns row counts."""
    con = connect(path)
    con.execute("SET preserve_insertion_order = false")
    images = VISIBLE + STEP * (snapshots - 1)  # every image some snapshot tags
    p = {"reg": REGISTRY, "repos": repos, "snaps": snapshots, "images": images, "visible": VISIBLE, "step": STEP,
         "bases": BASES}
    # md5 twice gives a 64-hex digest cheaply; sha256 of millions of strings only costs time here.
    con.execute("""CREATE OR REPLACE MACRO fake_digest(s) AS 'sha256:' || md5(s) || md5(s || '#')""")
    con.execute("""CREATE OR REPLACE MACRO pseudo(s, lo, hi) AS lo + (hash(s) % (hi - lo)::UBIGINT)::BIGINT""")
    con.execute("""
        CREATE TEMP TABLE img AS
        SELECT r.range AS r, i.range AS i,
               fake_digest('m/' || r.range || '/' || i.range) AS digest,
               fake_digest('c/' || r.range || '/' || i.range) AS config_digest,
               TIMESTAMP '2024-01-01' + to_days((i.range * 7 + r.range % 5)::INTEGER)
                   + to_minutes((r.range % 600)::INTEGER) AS created,
               -- the snapshot that first saw image i: the first whose newest visible image is >= i
               greatest(1, least($snaps, ((i.range - ($visible - 1)) + $step - 1) // $step + 1))::BIGINT
                   AS first_snapshot
        FROM range($repos) r, range($images) i""", {k: p[k] for k in ("repos", "images", "snaps", "visible", "step")})
    con.execute("""
        INSERT INTO layers (registry, manifest_digest, position, digest, media_type, size)
        SELECT $reg, img.digest, pos.range::INTEGER,
               CASE WHEN pos.range < 2 THEN fake_digest('base/' || (img.r % $bases) || '/' || pos.range)
                    WHEN pos.range = 2 THEN fake_digest('deps/' || img.r || '/' || (img.i // 10))
                    ELSE fake_digest('own/' || img.r || '/' || img.i || '/' || pos.range) END,
               'application/vnd.oci.image.layer.v1.tar+gzip',
               CASE WHEN pos.range < 2 THEN pseudo('base/' || (img.r % $bases) || '/' || pos.range, 5000000, 40000000)
                    WHEN pos.range = 2 THEN pseudo('deps/' || img.r || '/' || (img.i // 10), 1000000, 80000000)
                    ELSE pseudo('own/' || img.r || '/' || img.i || '/' || pos.range, 1000, 20000000) END
        FROM img, range(6) pos""", {"reg": REGISTRY, "bases": BASES})
    con.execute("""
        INSERT INTO manifests (registry, digest, media_type, kind, artifact_type, manifest_size, config_digest,
                               config_size, layers_size, layer_count, total_size, created, architecture, os,
                               variant, labels, annotations, subject, first_seen_snapshot)
        SELECT $reg, img.digest, 'application/vnd.oci.image.manifest.v1+json', 'image', NULL,
               pseudo('ms/' || img.digest, 900, 1400), img.config_digest, pseudo('cs/' || img.digest, 1500, 9000),
               l.layers_size, 6, NULL, img.created, 'amd64', 'linux', NULL, NULL, NULL, NULL, img.first_snapshot
        FROM img JOIN (SELECT manifest_digest, sum(size)::BIGINT AS layers_size FROM layers GROUP BY 1) l
          ON l.manifest_digest = img.digest""", {"reg": REGISTRY})
    con.execute("UPDATE manifests SET total_size = config_size + layers_size")
    # A two-platform index per snapshot in every tenth repository, over its two newest images.
    con.execute("""
        CREATE TEMP TABLE idx AS
        SELECT r.range AS r, k.range AS k, fake_digest('x/' || r.range || '/' || k.range) AS digest,
               ($visible - 1) + $step * (k.range - 1) AS newest
        FROM range(0, $repos, 10) r, range(1, $snaps + 1) k""", {k: p[k] for k in ("repos", "snaps", "visible", "step")})
    con.execute("""
        INSERT INTO manifest_children (registry, index_digest, position, child_digest, media_type, size, os,
                                       architecture, variant)
        SELECT $reg, idx.digest, c.range::INTEGER, img.digest, 'application/vnd.oci.image.manifest.v1+json', 1200,
               'linux', CASE c.range WHEN 0 THEN 'amd64' ELSE 'arm64' END, NULL
        FROM idx, range(2) c, img
        WHERE img.r = idx.r AND img.i = idx.newest - c.range""", {"reg": REGISTRY})
    con.execute("""
        INSERT INTO manifests (registry, digest, media_type, kind, artifact_type, manifest_size, config_digest,
                               config_size, layers_size, layer_count, total_size, created, architecture, os,
                               variant, labels, annotations, subject, first_seen_snapshot)
        SELECT $reg, idx.digest, 'application/vnd.oci.image.index.v1+json', 'index', NULL, 700, NULL, NULL, NULL, 0,
               sum(m.total_size)::BIGINT, max(m.created), NULL, NULL, NULL, NULL, NULL, NULL, idx.k
        FROM idx JOIN manifest_children c ON c.index_digest = idx.digest
        JOIN manifests m ON m.digest = c.child_digest
        GROUP BY idx.digest, idx.k""", {"reg": REGISTRY})
    con.execute("""
        INSERT INTO snapshots
        SELECT k.range, $reg, 'https://synthetic.example.com', 'registry',
               TIMESTAMP '2026-01-05 06:00' + to_days((7 * (k.range - 1))::INTEGER),
               TIMESTAMP '2026-01-05 06:20' + to_days((7 * (k.range - 1))::INTEGER),
               CASE WHEN k.range = 2 THEN 'partial' ELSE 'complete' END,
               CASE WHEN k.range = 1 THEN 'full' ELSE 'incremental' END,
               $repos, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, 'bench', NULL
        FROM range(1, $snaps + 1) k""", {"reg": REGISTRY, "repos": repos, "snaps": snapshots})
    con.execute(f"SELECT setval('snapshot_id_seq', {snapshots})")
    # Tag slots per repository and snapshot: 80 versions, 16 build tags, latest, stable, prod, dev.
    con.execute("""
        CREATE TEMP TABLE slots AS
        WITH s AS (
            SELECT k.range AS k, slot.range AS slot, ($visible - 1) + $step * (k.range - 1) AS newest
            FROM range(1, $snaps + 1) k, range(100) slot
        )
        SELECT k, slot,
               CASE WHEN slot < 80 THEN 'v' || ($step * (k - 1) + slot)
                    WHEN slot < 96 THEN 'build-' || (newest - (slot - 80))
                    ELSE ['latest', 'stable', 'prod', 'dev'][slot - 95] END AS tag,
               CASE WHEN slot < 80 THEN $step * (k - 1) + slot
                    WHEN slot < 96 THEN newest - (slot - 80)
                    ELSE newest - [0, 3, 5, 1][slot - 95] END AS i
        FROM s""", {k: p[k] for k in ("snaps", "visible", "step")})
    con.execute("""
        INSERT INTO tags
        SELECT s.k, $reg, 'team' || (r.range % 50) || '/svc' || r.range, s.tag,
               fake_digest('m/' || r.range || '/' ||
                   CASE WHEN s.tag = 'stable' AND s.k = $snaps AND r.range % 100 = 0 THEN s.i - 10 ELSE s.i END)
        FROM range($repos) r, slots s
        WHERE NOT (s.k = 2 AND r.range % 1000 = 7)""", {"reg": REGISTRY, "repos": repos, "snaps": snapshots})
    con.execute("""
        INSERT INTO tags
        SELECT idx.k, $reg, 'team' || (idx.r % 50) || '/svc' || idx.r, 'multi', idx.digest FROM idx""",
                {"reg": REGISTRY})
    con.execute("""
        INSERT INTO repositories (snapshot_id, registry, repository, tag_count, status, error)
        SELECT k.range, $reg, 'team' || (r.range % 50) || '/svc' || r.range,
               CASE WHEN k.range = 2 AND r.range % 1000 = 7 THEN 0 ELSE 100 + (r.range % 10 = 0)::INTEGER END,
               CASE WHEN k.range = 2 AND r.range % 1000 = 7 THEN 'failed' ELSE 'ok' END,
               CASE WHEN k.range = 2 AND r.range % 1000 = 7 THEN 'HTTP 500' END
        FROM range(1, $snaps + 1) k, range($repos) r""", {"reg": REGISTRY, "repos": repos, "snaps": snapshots})
    con.execute("""
        UPDATE snapshots s SET tag_count = c.n
        FROM (SELECT snapshot_id, count(*) AS n FROM tags GROUP BY 1) c WHERE c.snapshot_id = s.snapshot_id""")
    add_risk(con, repos, snapshots)
    fold_seconds = []
    for (snapshot_id,) in con.execute("SELECT snapshot_id FROM snapshots ORDER BY started_at").fetchall():
        # What SnapshotWriter.commit stores, so the queries read what a collection leaves.
        assign_keys(con)  # the totals read keys, as the writer's _finish keys rows before them
        _, unique_bytes = snapshot_totals(con, snapshot_id)
        con.execute("UPDATE snapshots SET unique_bytes = ? WHERE snapshot_id = ?", [unique_bytes, snapshot_id])
        started = time.perf_counter()
        maintain(con, snapshot_id)
        fold_seconds.append(time.perf_counter() - started)
    print(f"links and keys kept at commit: {', '.join(f'{s:.2f}s' for s in fold_seconds)} per snapshot")
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("snapshots", "repositories", "tags", "manifests", "layers", "manifest_children", "workloads",
                        "scans", "vulnerabilities")}
    counts["tags in the latest snapshot"] = con.execute(
        "SELECT count(*) FROM tags WHERE snapshot_id = (SELECT max(snapshot_id) FROM snapshots)").fetchone()[0]
    con.execute("CHECKPOINT")
    con.close()
    return counts


def add_risk(con, repos: int, snapshots: int) -> None:
    """What runs and what scanners found, so the risk queries have work: a cluster's pod listing and Trivy-like
    scans of the ten newest images of every repository, twenty findings each (before the last snapshot, three
    of them newer)."""
    p = {"reg": REGISTRY, "repos": repos, "snaps": snapshots, "visible": VISIBLE, "step": STEP}
    newest = "($visible - 1) + $step * ($snaps - 1)"
    con.execute("""
        INSERT INTO workload_snapshots VALUES (1, 'prod', '["bench"]', 'bench', TIMESTAMP '2026-01-19 07:00', NULL,
                                               NULL)""")
    # Three pods in every other repository, running its 'prod' image: most known by the digest in their status,
    # a fifth only by image ID (a bare config digest), a fifth only by tag (no status yet).
    con.execute(f"""
        INSERT INTO workloads
        SELECT 1, 'prod', 'ns' || (r.range % 50), 'svc' || r.range || '-' || k.range, 'ReplicaSet',
               'svc' || r.range, 'app', false,
               $reg || '/team' || (r.range % 50) || '/svc' || r.range || ':prod', 'prod', $reg,
               'team' || (r.range % 50) || '/svc' || r.range,
               CASE WHEN r.range % 10 IN (2, 6, 8) THEN img.digest END,
               CASE WHEN r.range % 10 = 0 THEN img.config_digest END,
               CASE WHEN r.range % 10 IN (2, 6, 8) THEN 'status-repo-digest'
                    WHEN r.range % 10 = 0 THEN 'status-image-id' ELSE 'unresolved' END,
               false, CASE WHEN r.range % 10 = 4 AND k.range = 2 THEN 'Pending' ELSE 'Running' END,
               TIMESTAMP '2026-01-19 07:00'
        FROM range(0, $repos, 2) r, range(3) k, img
        WHERE img.r = r.range AND img.i = {newest} - 5""", {k: p[k] for k in ("reg", "repos", "snaps", "visible", "step")})
    con.execute("UPDATE workload_snapshots SET pod_count = (SELECT count(*) FROM workloads), "
                "container_count = (SELECT count(*) FROM workloads)")
    con.execute(f"""
        CREATE TEMP TABLE scanned AS
        SELECT row_number() OVER (ORDER BY img.r, img.i) AS scan_id, img.*,
               TIMESTAMP '2026-01-19 03:00' - to_days(({newest} - img.i)::INTEGER) AS scanned_at
        FROM img WHERE img.i > {newest} - 10""", {k: p[k] for k in ("snaps", "visible", "step")})
    con.execute("""
        INSERT INTO scans
        SELECT scan_id, 'trivy', '0.58.1', 'trivy', NULL, scanned_at, $reg || '/team' || (r % 50) || '/svc' || r,
               $reg || '/team' || (r % 50) || '/svc' || r, digest, config_digest, $reg,
               'team' || (r % 50) || '/svc' || r, 'debian', '12.8', false, 20, 'bench/' || scan_id || '.json',
               md5('scan/' || scan_id) || md5('scan#' || scan_id), TIMESTAMP '2026-01-19 07:00'
        FROM scanned""", {"reg": REGISTRY})
    con.execute("SELECT setval('scan_id_seq', (SELECT max(scan_id) FROM scans))")
    # CVE ids drawn from a pool of 5,000 so images share them; the three of the newest builds are new ones.
    con.execute(f"""
        INSERT INTO vulnerabilities
        SELECT s.scan_id,
               'CVE-2025-' || CASE WHEN f.range >= 17 AND s.i > {newest} - $step THEN 90000 + (s.r * 3 + f.range) % 997
                                   ELSE 10000 + (s.r * 7 + s.i * 13 + f.range * 31) % 5000 END,
               'pkg' || f.range, 'debian', '1.' || f.range, CASE WHEN f.range % 3 = 0 THEN '1.' || f.range || '+1' END,
               CASE WHEN f.range % 3 = 0 THEN 'fixed' ELSE 'affected' END,
               ['CRITICAL', 'HIGH', 'HIGH', 'MEDIUM', 'MEDIUM', 'MEDIUM', 'LOW', 'LOW', 'LOW', 'UNKNOWN'][f.range % 10 + 1],
               (10 - f.range % 10)::DOUBLE, NULL, 'nvd', TIMESTAMP '2025-06-01' + to_days(f.range::INTEGER), NULL,
               f.range % 50 = 0, 'debian 12.8', 'os-pkgs'
        FROM scanned s, range(20) f""", {k: p[k] for k in ("snaps", "visible", "step")})


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_queries(path: Path) -> list[tuple[str, float, float, float, int]]:
    """(name, first run s, second run s, CPU s of the faster run, rows) per named query, default parameters.

    CPU seconds (all of DuckDB's threads) tell a slow query from a busy machine.
    """
    out = []
    with repoaudit.open(path, read_only=True) as audit:
        for name in sorted(load_queries()):
            runs = []
            for _ in range(2):
                t0, c0 = time.perf_counter(), _cpu()
                try:
                    frame = audit.query(name)
                except repoaudit.RepoauditError as exc:
                    print(f"  {name}: {exc}")
                    frame = None
                runs.append((time.perf_counter() - t0, _cpu() - c0))
            out.append((name, runs[0][0], runs[1][0], min(runs)[1], -1 if frame is None else len(frame)))
    return out


# How a plan is asked for: the what-if table ``repoaudit retention plan`` prints, the full plan it writes with
# ``--format json`` or ``-o`` (every candidate), and that plan with each freed blob listed (the Python API default).
PLAN_MODES = (("what-if", {"detail": False, "blobs": False}), ("plan", {"detail": True, "blobs": False}),
              ("plan+blobs", {"detail": True, "blobs": True}))


def time_retention(path: Path) -> list[tuple[str, list[float], str]]:
    """Seconds per PLAN_MODES for each policy in data/policies/, when the retention module exists."""
    try:
        import repoaudit.retention.engine  # noqa: F401
    except ImportError:
        return []
    policies = sorted(p for p in (ROOT / "data" / "policies").glob("*") if p.is_file())
    out = []
    with repoaudit.open(path) as audit:
        if not hasattr(audit, "retention"):
            return []
        for policy in policies:
            seconds, note = [], ""
            for _, kwargs in PLAN_MODES:
                t0 = time.perf_counter()
                try:
                    result = audit.retention(str(policy), **kwargs)
                    note = _describe_plan(result)
                except repoaudit.RepoauditError as exc:
                    note = f"error: {exc}"
                seconds.append(time.perf_counter() - t0)
            out.append((policy.name, seconds, note))
    return out


def _describe_plan(plan) -> str:
    summary = getattr(plan, "summary", None)
    if summary is None or "reclaimable_bytes" not in summary:
        return ""
    return (f"{int(summary['candidate_images'].sum()):,} candidates, "
            f"reclaimable {int(summary['reclaimable_bytes'].sum()) / 1e12:.2f} TB")


# -- part 2: memory of a collection -------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _blob(blob_dir: Path, data: bytes) -> tuple[str, int]:
    hexd = hashlib.sha256(data).hexdigest()
    (blob_dir / hexd).write_bytes(data)
    return f"sha256:{hexd}", len(data)


def write_layouts(root: Path, tags: int, per_repo: int = 100) -> None:
    """``tags`` tags in layouts of ``per_repo`` tags, each tag its own manifest and config (layers unbacked)."""
    base = [{"mediaType": OCI_LAYER, "digest": "sha256:" + hashlib.sha256(f"base{j}".encode()).hexdigest(),
             "size": 30_000_000 + j} for j in range(2)]
    for r in range((tags + per_repo - 1) // per_repo):
        layout = root / f"team{r % 20}" / f"svc{r}"
        blob_dir = layout / "blobs" / "sha256"
        blob_dir.mkdir(parents=True)
        entries = []
        for t in range(min(per_repo, tags - r * per_repo)):
            own = {"mediaType": OCI_LAYER, "digest": "sha256:" + hashlib.sha256(f"{r}/{t}".encode()).hexdigest(),
                   "size": 1_000_000 + t}
            config = json.dumps({"created": f"2025-{1 + t % 12:02d}-01T00:00:00Z", "architecture": "amd64",
                                 "os": "linux", "config": {"Labels": {"build": f"{r}-{t}"}},
                                 "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in base] + [own["digest"]]}
                                 }).encode()
            cdigest, csize = _blob(blob_dir, config)
            manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                   "config": {"mediaType": OCI_CONFIG, "digest": cdigest, "size": csize},
                                   "layers": base + [own]}).encode()
            mdigest, msize = _blob(blob_dir, manifest)
            entries.append({"mediaType": OCI_MANIFEST, "digest": mdigest, "size": msize,
                            "annotations": {"org.opencontainers.image.ref.name": f"v{t}"}})
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                       "manifests": entries}))


_CHILD = """
import json, resource, sys, time
import repoaudit
t0 = time.perf_counter()
with repoaudit.open(sys.argv[1]) as audit:
    result = audit.collect("oci:" + sys.argv[2], progress=False)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    # Linux carries ru_maxrss over execve, so a child of a big parent would report the
    # parent's peak; VmHWM is this process's own high-water mark.
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({"status": result.status, "tags": result.tags, "manifests": result.manifests,
                  "seconds": time.perf_counter() - t0, "maxrss_kb": peak_kb}))
"""


def collect_memory(work: Path, tags: int) -> dict:
    tree = work / f"layouts-{tags}"
    t0 = time.perf_counter()
    write_layouts(tree, tags)
    written = time.perf_counter() - t0
    db = work / f"mem-{tags}.duckdb"
    for stale in (db, Path(f"{db}.wal")):
        stale.unlink(missing_ok=True)  # a kept database from an earlier run would make this an incremental run
    out = subprocess.run([sys.executable, "-c", _CHILD, str(db), str(tree)],
                         check=True, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["write_seconds"] = written
    shutil.rmtree(tree, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=10_000, help="repositories (100 tags each per snapshot)")
    ap.add_argument("--snapshots", type=int, default=3)
    ap.add_argument("--layout-tags", type=int, default=100_000, help="tags of the collected layout tree (0: skip)")
    ap.add_argument("--keep", type=Path, help="write the databases here and keep them")
    ap.add_argument("--reuse", action="store_true", help="with --keep: time the database built by an earlier run")
    ap.add_argument("--no-retention", action="store_true", help="do not time retention plans")
    args = ap.parse_args()
    if args.snapshots < 2:
        ap.error("--snapshots must be at least 2 (history needs two)")

    work = args.keep or Path(tempfile.mkdtemp(prefix="repoaudit-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    failures = []
    try:
        db = work / "scale.duckdb"
        if args.reuse and args.keep and db.exists():
            print(f"reusing {db}")
        else:
            for stale in (db, Path(f"{db}.wal")):
                stale.unlink(missing_ok=True)
            t0 = time.perf_counter()
            counts = build(db, args.repos, args.snapshots)
            print(f"built {db} in {time.perf_counter() - t0:.1f}s: "
                  + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
        print()
        print(f"{'named query':<28} {'first s':>8} {'again s':>8} {'cpu s':>6} {'rows':>9}")
        for name, first, again, cpu, n in time_queries(db):
            flag = "" if min(first, again) < QUERY_TARGET_S else f"  > {QUERY_TARGET_S:g} s"
            if flag:
                failures.append(f"query {name} {min(first, again):.2f}s")
            print(f"{name:<28} {first:>8.2f} {again:>8.2f} {cpu:>6.2f} {n:>9,}{flag}")
        plans = [] if args.no_retention else time_retention(db)
        if plans:
            print()
            print(f"{'retention plan seconds':<28} " + " ".join(f"{mode:>10}" for mode, _ in PLAN_MODES))
            for name, seconds, note in plans:
                # The freed-blob listing is an extra pass over every layer on request; the target is the plan.
                over = [f"{mode} {s:.2f}s" for (mode, _), s in zip(PLAN_MODES, seconds)
                        if mode != "plan+blobs" and s >= PLAN_TARGET_S]
                failures.extend(f"retention {name} {o}" for o in over)
                flag = f"  > {PLAN_TARGET_S:g} s" if over else ""
                print(f"{name:<28} " + " ".join(f"{s:>10.2f}" for s in seconds) + f"  {note}{flag}")
        elif args.no_retention:
            print("\n(retention plans not timed: --no-retention)")
        else:
            print("\n(no repoaudit.retention.engine with audit.retention() and data/policies/: retention plan not timed)")

        if args.layout_tags:
            print()
            print(f"{'collection':<22} {'tags':>8} {'manifests':>10} {'seconds':>8} {'peak RSS MB':>12}")
            for tags in sorted({max(1, args.layout_tags // 10), args.layout_tags}):
                r = collect_memory(work, tags)
                mb = r["maxrss_kb"] / 1024
                flag = "" if mb < MEMORY_TARGET_MB or tags != args.layout_tags else f"  > {MEMORY_TARGET_MB} MB"
                if flag:
                    failures.append(f"memory {mb:.0f} MB")
                print(f"{'oci layout tree':<22} {r['tags']:>8,} {r['manifests']:>10,} {r['seconds']:>8.1f} "
                      f"{mb:>12.0f}{flag}")
        print()
        targets = [f"named query < {QUERY_TARGET_S:g} s"]
        if plans:
            targets.append(f"retention plan < {PLAN_TARGET_S:g} s")
        if args.layout_tags:
            targets.append(f"peak memory of a {args.layout_tags:,}-tag collection < {MEMORY_TARGET_MB} MB")
        print(f"targets: {', '.join(targets)}: " + ("all met" if not failures else "MISSED " + "; ".join(failures)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
