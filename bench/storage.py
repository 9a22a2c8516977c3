"""A storage walk (``registry-storage:PATH``) against the API walk of the same registry, in one run.

Writes REPOS × TAGS images straight into a Distribution 2.8 storage tree (the layout of
``registry/storage/paths.go``: blobs, tag/revision/layer links; every image its own config and
manifest, all sharing one base layer), starts Debian's docker-registry on that tree, and measures:

  files        a plain sequential read of every link file and stat of every blob ``data`` the walk
               touches, with nothing else done: the floor of any walk in Python on this filesystem
  walk         the storage source's parallel walk alone (``--threads``), and with one thread
  storage      ``repoaudit collect registry-storage:PATH`` into an empty database (walk + every
               manifest and config read once + the snapshot written)
  api          ``repoaudit collect http://…`` of the same registry (catalog, tag lists, a GET per
               manifest and config)
  gc preview   ``audit.gc_preview`` of the storage snapshot

and prints tags/s for each and the ratios storage/api and walk/files. The two snapshots must hold
the same tags. Run: ``python bench/storage.py [--repos 100 --tags 100] [--threads 8]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from registry import RegistryServer  # noqa: E402

import repoaudit  # noqa: E402
from repoaudit.model.options import parse_target  # noqa: E402
from repoaudit.sources.storage import RegistryStorageSource  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def put_blob(v2: Path, data: bytes) -> tuple[str, int]:
    hexpart = hashlib.sha256(data).hexdigest()
    folder = v2 / "blobs" / "sha256" / hexpart[:2] / hexpart
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").write_bytes(data)
    return f"sha256:{hexpart}", len(data)


def put_link(folder: Path, digest: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "link").write_text(digest)


def build_tree(v2: Path, repos: int, tags: int) -> None:
    base, base_size = put_blob(v2, hashlib.shake_256(b"bench-base").digest(64_000))
    for r in range(repos):
        repo = v2 / "repositories" / "bench" / f"repo{r:04d}"
        put_link(repo / "_layers" / "sha256" / base.split(":")[1], base)
        for t in range(tags):
            config = json.dumps({"created": f"2025-01-{1 + t % 28:02d}T00:00:00Z", "architecture": "amd64",
                                 "os": "linux", "config": {"Labels": {"bench": f"{r}-{t}"}},
                                 "rootfs": {"type": "layers", "diff_ids": [base]}}, separators=(",", ":")).encode()
            cfg, cfg_size = put_blob(v2, config)
            put_link(repo / "_layers" / "sha256" / cfg.split(":")[1], cfg)
            manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                              "digest": cfg, "size": cfg_size},
                                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                               "digest": base, "size": base_size}]}, indent=3).encode()
            digest, _ = put_blob(v2, manifest)
            hexpart = digest.split(":")[1]
            put_link(repo / "_manifests" / "revisions" / "sha256" / hexpart, digest)
            tag = repo / "_manifests" / "tags" / f"v{t}"
            put_link(tag / "current", digest)
            put_link(tag / "index" / "sha256" / hexpart, digest)


def read_everything(v2: Path) -> int:
    """Every link read and every blob stat'ed, sequentially, doing nothing with them: files touched."""
    n = 0
    for dirpath, _, filenames in os.walk(v2):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if name == "link":
                with open(path, "rb") as f:
                    f.read()
            else:
                os.stat(path)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--tags", type=int, default=100)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=16, help="the API collection's concurrency")
    ap.add_argument("--no-api", action="store_true",
                    help="skip the API collection (at about 50 tags/s on 2 cores, 100k tags take half an hour)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="repoaudit-bench-storage-"))
    try:
        reg = RegistryServer(work / "registry")
        v2 = reg.storage_dir / "docker" / "registry" / "v2"
        t0 = time.perf_counter()
        build_tree(v2, args.repos, args.tags)
        tags = args.repos * args.tags
        print(f"wrote {args.repos} repositories, {tags} tags in {time.perf_counter() - t0:.1f}s")
        target = f"registry-storage:{reg.storage_dir}"

        # Twice, the faster counted: the tree was just written, but the first pass may still meet a cold cache.
        files_s = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            files = read_everything(v2)
            files_s = min(files_s, time.perf_counter() - t0)
        walks = {}
        for threads in (1, args.threads):
            source = RegistryStorageSource(parse_target(target), threads=threads)
            t0 = time.perf_counter()
            source.walk()
            walks[threads] = time.perf_counter() - t0

        with repoaudit.open(work / "storage.duckdb") as audit:
            storage = audit.collect(target, name="bench", progress=False)
            assert storage.status == "complete" and storage.tags == tags, storage
            storage_tags = audit.sql("SELECT repository, tag, digest FROM tags ORDER BY ALL")
            t0 = time.perf_counter()
            preview = audit.gc_preview("bench")
            preview_s = time.perf_counter() - t0
            assert preview.totals["freed_bytes"] == 0  # every blob of the tree is referenced
        api = None
        if not args.no_api:
            with reg, repoaudit.open(work / "api.duckdb") as audit:
                api = audit.collect(reg.url, concurrency=args.concurrency, progress=False)
                assert api.status == "complete" and api.tags == tags, api
                assert audit.sql("SELECT repository, tag, digest FROM tags ORDER BY ALL").equals(storage_tags)

        print()
        print(f"{'run':<22} {'seconds':>8} {'tags/s':>9}")
        print(f"{'files (' + str(files) + ', 1 thread)':<22} {files_s:>8.2f} {tags / files_s:>9.0f}")
        for threads, s in walks.items():
            print(f"{'walk, ' + str(threads) + ' thread(s)':<22} {s:>8.2f} {tags / s:>9.0f}")
        print(f"{'storage collect':<22} {storage.seconds:>8.2f} {tags / storage.seconds:>9.0f}")
        if api is not None:
            print(f"{'api collect':<22} {api.seconds:>8.2f} {tags / api.seconds:>9.0f}")
        print()
        if api is not None:
            print(f"storage collect / api collect: {api.seconds / storage.seconds:.1f}x the tags per second")
        print(f"walk ({args.threads} threads) / plain file reads: {files_s / walks[args.threads]:.2f}x "
              f"(1 thread: {files_s / walks[1]:.2f}x)")
        print(f"gc preview of the storage snapshot: {preview_s:.2f}s")
        print(f"walk share of the storage collect: {walks[args.threads] / storage.seconds:.0%}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
