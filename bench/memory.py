"""Peak memory of a collection against its tag count: the curve at 100k, 300k and 1M tags.

Each point is one full collection into a new database file, run in a child process of its
own so that its peak resident memory is its own (Linux ``VmHWM``; ``ru_maxrss`` would carry
this process's peak over ``execve``). The source is synthetic: REPOS repositories of 100
tags, each tag its own manifest (an OCI image of three layers, two shared by every image)
and its own config, generated on request with real sha256 digests. An OCI layout tree of
1M tags would be two million files on disk for no extra insight: the collector, the writer
and the commit do the same work either way; ``bench/scale.py`` keeps the layout-tree point.

Target (issue 16): peak RSS < 500 MB at 1,000,000 tags, and flat within 20% from 100k to 1M,
with the snapshot still committed in one transaction.

Run: ``python bench/memory.py [--tags 100000,300000,1000000] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEMORY_TARGET_MB = 500
FLAT_WITHIN = 0.20
PER_REPO = 100

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class SyntheticSource:
    """A registry of ``tags`` tags that exists only as a function: nothing is held per tag.

    A config is handed out once per manifest, right after the manifest that names it, so the
    only state is the configs asked for but not yet fetched (bounded by the requests in flight).
    """

    kind = "synthetic"
    concurrency = 16

    def __init__(self, tags: int):
        from repoaudit.model.options import Target

        self.tags = tags
        self.name = "synthetic.example.com"
        self.target = Target("registry", "https://synthetic.example.com", self.name)
        self.requests: Counter[str] = Counter()
        self.rate_limit: dict[str, str] = {}
        self.halted = None
        self._configs: dict[str, bytes] = {}
        self._base = [{"mediaType": OCI_LAYER, "digest": _digest(f"base{j}".encode()), "size": 30_000_000 + j}
                      for j in range(2)]

    async def ping(self) -> None:
        self.requests["GET ping"] += 1

    async def list_repositories(self) -> list[str]:
        self.requests["GET catalog"] += 1
        return [f"team{r % 20}/svc{r}" for r in range(-(-self.tags // PER_REPO))]

    async def list_tags(self, repository: str) -> list[str]:
        self.requests["GET tags"] += 1
        r = int(repository.rsplit("svc", 1)[1])
        return [f"v{t}" for t in range(min(PER_REPO, self.tags - r * PER_REPO))]

    async def get_manifest(self, repository: str, reference: str):
        from repoaudit.model.manifest import FetchedManifest

        self.requests["GET manifest"] += 1
        r, t = int(repository.rsplit("svc", 1)[1]), int(reference[1:])
        own = {"mediaType": OCI_LAYER, "digest": _digest(f"{r}/{t}".encode()), "size": 1_000_000 + t}
        config = json.dumps({"created": f"2025-{1 + t % 12:02d}-01T00:00:00Z", "architecture": "amd64",
                             "os": "linux", "config": {"Labels": {"build": f"{r}-{t}"}},
                             "rootfs": {"type": "layers",
                                        "diff_ids": [l["digest"] for l in self._base] + [own["digest"]]}}).encode()
        cdigest = _digest(config)
        self._configs[cdigest] = config
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": cdigest, "size": len(config)},
                           "layers": self._base + [own]}).encode()
        await asyncio.sleep(0)  # a real source yields here; without it one repository would run to the end
        return FetchedManifest(_digest(body), OCI_MANIFEST, body)

    async def head_manifest(self, repository: str, reference: str) -> str | None:
        self.requests["HEAD manifest"] += 1
        return (await self.get_manifest(repository, reference)).digest

    async def get_blob(self, repository: str, digest: str, **_) -> bytes:
        self.requests["GET blob"] += 1
        return self._configs.pop(digest)

    async def delete_manifest(self, repository: str, digest: str) -> None:
        raise NotImplementedError("a synthetic source is read-only")

    def set_request_budget(self, repository: str, tags: int) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _peak_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM to the current RSS, so each phase's peak is its own.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


class Phases:
    """The peak resident memory of each phase of a commit: collecting, keying the stage, copying it in,
    the snapshot's totals, the kept tables. Wraps the writer's steps for this child process only."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.attempts: list[str] = []
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.peaks[name] = max(self.peaks.get(name, 0), _peak_kb())
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now
        _reset_peak()

    def wrap(self, owner, attribute: str, before: str, after: str) -> None:
        inner = getattr(owner, attribute)

        def wrapped(*args, **kwargs):
            self.mark(before)
            try:
                return inner(*args, **kwargs)
            finally:
                self.mark(after)

        setattr(owner, attribute, wrapped)

    def install(self) -> None:
        import repoaudit.store.kept as kept
        import repoaudit.store.writer as writer

        w = writer.SnapshotWriter
        self.wrap(w, "_key_stage", "collect", "key stage")
        self.wrap(w, "_copy_stage", "begin", "copy stage")
        self.wrap(writer, "maintain", "before commit + totals", "kept tables")
        self.wrap(w, "_finish", "_", "commit")
        del kept
        limited = writer.under_memory_limit

        def counted(con, limit, run, *args, **kwargs):
            def attempt():
                self.attempts.append(run.__name__)
                return run()
            return limited(con, limit, attempt, *args, **kwargs)

        writer.under_memory_limit = counted  # how often a memory limit ran out and was stepped up


def child(tags: int, db: str) -> None:
    from repoaudit.collect.collector import collect_source
    from repoaudit.model.options import CollectOptions
    from repoaudit.store.database import Lease, connect

    floor = _peak_kb()  # the interpreter and its imports: what no collection can go below
    phases = Phases()
    phases.install()
    _reset_peak()
    t0 = time.perf_counter()
    result = asyncio.run(collect_source(Lease(opener=lambda: connect(db)), SyntheticSource(tags), CollectOptions(posture=False)))
    phases.mark("end")
    peak = max(phases.peaks.values())
    print(json.dumps({"status": result.status, "tags": result.tags, "manifests": result.manifests,
                      "seconds": time.perf_counter() - t0, "peak_kb": peak, "floor_kb": floor,
                      "phases": {k: [v / 1024, phases.seconds[k]] for k, v in phases.peaks.items()},
                      "attempts": Counter(phases.attempts)}))


def measure(work: Path, tags: int) -> dict:
    db = work / f"memory-{tags}.duckdb"
    for stale in (db, Path(f"{db}.wal")):
        stale.unlink(missing_ok=True)  # an earlier database would make this an incremental run
    out = subprocess.run([sys.executable, __file__, "--child", str(tags), str(db)], check=True,
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["db_mb"] = db.stat().st_size / 2**20
    db.unlink(missing_ok=True)
    return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tags", default="100000,300000,1000000", help="comma-separated tag counts")
    ap.add_argument("--keep", type=Path, help="write the databases here (each is removed once measured)")
    args = ap.parse_args()
    sizes = sorted(int(x) for x in args.tags.split(","))
    work = args.keep or Path(tempfile.mkdtemp(prefix="repoaudit-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"{'tags':>10} {'manifests':>10} {'status':>9} {'seconds':>8} {'db MB':>7} {'floor MB':>9} "
              f"{'peak RSS MB':>12} {'vs first':>9}")
        peaks = []
        for tags in sizes:
            r = measure(work, tags)
            mb = r["peak_kb"] / 1024
            peaks.append(mb)
            print(f"{r['tags']:>10,} {r['manifests']:>10,} {r['status']:>9} {r['seconds']:>8.1f} {r['db_mb']:>7.0f} "
                  f"{r['floor_kb'] / 1024:>9.0f} {mb:>12.0f} {mb / peaks[0]:>9.2f}", flush=True)
            print("    by phase (peak MB / seconds): " + ", ".join(
                f"{name} {mb:.0f}/{sec:.1f}" for name, (mb, sec) in r["phases"].items() if name != "_")
                + "; runs under a memory limit: " + ", ".join(f"{k} {v}" for k, v in r["attempts"].items()), flush=True)
        growth = max(peaks) / peaks[0] - 1
        met = max(peaks) < MEMORY_TARGET_MB and growth <= FLAT_WITHIN
        print(f"\npeak RSS grows {growth:.0%} from {sizes[0]:,} to {sizes[-1]:,} tags (target: within "
              f"{FLAT_WITHIN:.0%}, all < {MEMORY_TARGET_MB} MB): {'met' if met else 'MISSED'}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
