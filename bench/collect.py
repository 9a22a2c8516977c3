"""Collection throughput against the registry's own serving rate and against a skopeo walk.

Starts Debian's docker-registry on loopback, seeds REPOS × TAGS images through the
push API, then measures in one run:

  ceiling      a plain concurrent httpx GET storm over exactly the URLs a full
               collection requests (catalog, tag lists, manifests, configs)
  full         ``repoaudit collect`` into an empty database
  incremental  ``repoaudit collect`` again (HEAD per tag, nothing new to fetch)
  skopeo       ``skopeo list-tags`` + ``skopeo inspect`` per tag, on a sample of repositories

and prints requests/s and tags/s for each plus the ratios collect/ceiling,
collect/skopeo and incremental/full. Run: ``python bench/collect.py [--repos 100 --tags 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import repoaudit  # noqa: E402
from pusher import Pusher, layer_bytes  # noqa: E402
from registry import RegistryServer  # noqa: E402


def seed(pusher: Pusher, repos: int, tags: int) -> list[str]:
    base = pusher.push_image("bench/base", ["1"], layers=[layer_bytes("base", 64_000)])
    names = []
    for r in range(repos):
        name = f"bench/repo{r:03d}"
        names.append(name)
        for t in range(tags):
            pusher.push_image(name, [f"v{t}"], shared_layers=base.layers, mount_from="bench/base",
                              layers=[layer_bytes(f"{r}-{t}", 512)], created=f"2025-01-{1 + t % 28:02d}T00:00:00Z",
                              labels={"bench": f"{r}-{t}"})
    return names


async def storm(base_url: str, urls: list[tuple[str, dict]], concurrency: int) -> float:
    """GET every URL with bounded concurrency on one keep-alive pool; returns seconds."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        async def one(url, headers):
            async with sem:
                r = await client.get(url, headers=headers)
                r.raise_for_status()
                await r.aread()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(u, h) for u, h in urls))
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--skopeo-repos", type=int, default=5)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="repoaudit-bench-"))
    try:
        with RegistryServer(work / "registry") as reg, Pusher(reg.url) as pusher:
            t0 = time.perf_counter()
            names = seed(pusher, args.repos, args.tags)
            print(f"seeded {len(names) + 1} repositories, {args.repos * args.tags + 1} tags "
                  f"in {time.perf_counter() - t0:.1f}s")

            audit = repoaudit.open(work / "bench.duckdb")
            full = audit.collect(reg.url, concurrency=args.concurrency, progress=False)
            assert full.status == "complete", full
            incr = audit.collect(reg.url, concurrency=args.concurrency, progress=False)
            assert incr.status == "complete" and incr.new_manifests == 0, incr

            # The exact request mix of the full collection, replayed without any processing.
            accept = {"Accept": repoaudit.model.manifest.ACCEPT}
            rows = audit.sql("""SELECT t.repository, t.tag, m.config_digest FROM tags t
                                JOIN manifests m USING (registry, digest)
                                WHERE t.snapshot_id = $s""", {"s": full.snapshot_id})
            urls = [("/v2/", {}), ("/v2/_catalog?n=1000", {})]
            urls += [(f"/v2/{r}/tags/list?n=1000", {}) for r in rows["repository"].unique()]
            urls += [(f"/v2/{r.repository}/manifests/{r.tag}", accept) for r in rows.itertuples()]
            urls += [(f"/v2/{r.repository}/blobs/{r.config_digest}", {})
                     for r in rows.drop_duplicates("config_digest").itertuples()]
            ceiling_s = asyncio.run(storm(reg.url, urls, args.concurrency))
            ceiling_s = min(ceiling_s, asyncio.run(storm(reg.url, urls, args.concurrency)))

            full_requests = sum(full.requests.values())
            incr_requests = sum(incr.requests.values())
            tags = full.tags

            sample = names[: args.skopeo_repos]
            skopeo = shutil.which("skopeo")
            sk_tags = sk_s = 0.0
            if skopeo:
                t0 = time.perf_counter()
                for name in sample:
                    out = subprocess.run([skopeo, "list-tags", "--tls-verify=false", f"docker://{reg.host}/{name}"],
                                         check=True, capture_output=True, text=True).stdout
                    import json
                    for tag in json.loads(out)["Tags"]:
                        subprocess.run([skopeo, "inspect", "--tls-verify=false", f"docker://{reg.host}/{name}:{tag}"],
                                       check=True, capture_output=True)
                        sk_tags += 1
                sk_s = time.perf_counter() - t0

        print()
        print(f"{'run':<12} {'requests':>9} {'seconds':>8} {'req/s':>8} {'tags/s':>8}")
        print(f"{'ceiling':<12} {len(urls):>9} {ceiling_s:>8.2f} {len(urls) / ceiling_s:>8.0f} {tags / ceiling_s:>8.0f}")
        print(f"{'full':<12} {full_requests:>9} {full.seconds:>8.2f} {full_requests / full.seconds:>8.0f} "
              f"{tags / full.seconds:>8.0f}")
        print(f"{'incremental':<12} {incr_requests:>9} {incr.seconds:>8.2f} {incr_requests / incr.seconds:>8.0f} "
              f"{tags / incr.seconds:>8.0f}")
        if sk_s:
            print(f"{'skopeo':<12} {'-':>9} {sk_s:>8.2f} {'-':>8} {sk_tags / sk_s:>8.1f}  ({int(sk_tags)} tags sampled)")
        print()
        print(f"collect/ceiling (tags/s)       {ceiling_s / full.seconds:.2f}")
        if sk_s:
            print(f"collect/skopeo (tags/s)        {(tags / full.seconds) / (sk_tags / sk_s):.1f}")
        print(f"incremental/full requests      {incr_requests / full_requests:.2f}")
        print(f"incremental/full time          {incr.seconds / full.seconds:.2f}")
        print(f"incremental GETs of manifests/blobs: {incr.requests.get('GET manifest', 0)}"
              f"/{incr.requests.get('GET blob', 0)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
