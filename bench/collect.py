"""Collection throughput against the registry's own serving rate and against a skopeo walk.

Starts Debian's docker-registry on loopback, seeds REPOS × TAGS images through the
push API, then measures in one run:

  wrk          the registry's own serving rate for exactly the URLs (and Accept headers) a full
               collection requests (catalog, tag lists, manifests, configs), replayed by wrk
               (Debian's ``wrk``, a Lua script cycling through them): the ceiling
  storm        the same URLs as a plain concurrent httpx GET storm (what bare httpx manages)
  full         ``repoaudit collect`` into an empty database
  incremental  ``repoaudit collect`` again (HEAD per tag, nothing new to fetch)
  skopeo       ``skopeo list-tags`` + ``skopeo inspect`` per tag, on a sample of repositories

and prints requests/s and tags/s for each plus the ratios collect/wrk, collect/storm, collect/skopeo and
incremental/full. Then the far runs of ``bench/concurrency.py`` at ``--far-levels`` (16 by default): the
collection over HTTP/1.1, over HTTP/1.1 with TLS and over HTTP/2 with TLS through ``bench/delayproxy.py``
(``--delay`` each way, 25 ms; 0 skips them), each against the latency bound and against h2load through the
same proxy, ending with each protocol's whole-run ratio to the bound against issue 16's 0.9. wrk, the storm
and the full collection run interleaved, ``--rounds`` times, and every ratio is printed per round and as a
range: the machine is shared, so only figures of one moment compare.
Run: ``python bench/collect.py [--repos 100 --tags 20] [--rounds 3] [--far-levels 16] [--delay 0.025]
[--url http://127.0.0.1:PORT [--storage DIR]]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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
from concurrency import far_runs  # noqa: E402
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


WRK_SCRIPT = r"""
-- The full collection's requests, one "path<TAB>accept" a line, cycled through by every connection.
-- Built in init: wrk knows the Host header to send only once the script is loaded.
local requests = {}
local i = 0
function init(args)
  for line in io.lines(os.getenv("MIX")) do
    local path, accept = line:match("([^\t]*)\t?(.*)")
    local headers = {}
    if accept ~= "" then headers["Accept"] = accept end
    requests[#requests + 1] = wrk.format("GET", path, headers)
  end
  i = math.random(#requests)
end
function request()
  i = i % #requests + 1
  return requests[i]
end
function response(status, headers, body)
  if status ~= 200 then error("status " .. status) end
end
"""


def wrk_rate(url: str, urls: list[tuple[str, dict]], connections: int, seconds: float, work: Path) -> float:
    """Requests/s wrk gets from the registry for the mix (two threads, ``connections`` connections)."""
    mix = work / "mix.txt"
    mix.write_text("".join(f"{path}\t{headers.get('Accept', '')}\n" for path, headers in urls))
    script = work / "mix.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url],
                         check=True, capture_output=True, text=True, env={"MIX": str(mix), "PATH": "/usr/bin:/bin"})
    if "Non-2xx" in out.stdout or "error" in out.stderr.lower():
        raise SystemExit(f"wrk saw errors:\n{out.stdout}{out.stderr}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))


def collect_once(url: str, db: Path, concurrency: int, most: int) -> dict:
    """A full collection in a child process (cold, its own CPU account); only the collection is timed."""
    child = ("import json, sys, time, repoaudit\n"
             "with repoaudit.open(sys.argv[2]) as a:\n"
             "    c0 = time.process_time()\n"
             "    r = a.collect(sys.argv[1], concurrency=int(sys.argv[3]), max_concurrency=int(sys.argv[4]),"
             " progress=False, use_credential_store=False, posture=False)\n"
             "    print(json.dumps({'status': r.status, 'tags': r.tags, 'seconds': r.seconds,"
             " 'requests': r.requests, 'cpu': time.process_time() - c0}))\n")
    db.unlink(missing_ok=True)
    out = subprocess.run([sys.executable, "-c", child, url, str(db), str(concurrency), str(most)], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    db.unlink(missing_ok=True)
    return json.loads(out.strip().splitlines()[-1])


def span(values: list[float], fmt: str = ".2f") -> str:
    return f"{min(values):{fmt}}" if len(values) == 1 else f"{min(values):{fmt}}-{max(values):{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--concurrency", type=int, help="requests the collection and the storm keep in flight (default: "
                    "--wrk-connections, so that all three are compared at the same load)")
    ap.add_argument("--skopeo-repos", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wrk-connections", type=int, default=32)
    ap.add_argument("--url", help="a registry already seeded (bench/concurrency.py --seed-only) instead of seeding one")
    ap.add_argument("--storage", help="with --url: its storage directory, for the far runs over TLS (h1+tls, h2)")
    ap.add_argument("--far-levels", default="16", help="requests in flight of the far runs, comma-separated")
    ap.add_argument("--delay", type=float, default=0.025, help="seconds the far proxy adds each way (0: no far runs)")
    args = ap.parse_args()
    args.concurrency = args.concurrency or args.wrk_connections
    far_levels = [int(x) for x in args.far_levels.split(",")]

    work = Path(tempfile.mkdtemp(prefix="repoaudit-bench-"))
    try:
        if args.url:
            measure(args, args.url, None, work)
            if args.delay:
                far_runs(args.url, Path(args.storage) if args.storage else None, far_levels, args.delay, work)
            return
        with RegistryServer(work / "registry") as reg, Pusher(reg.url) as pusher:
            t0 = time.perf_counter()
            names = seed(pusher, args.repos, args.tags)
            print(f"seeded {len(names) + 1} repositories, {args.repos * args.tags + 1} tags "
                  f"in {time.perf_counter() - t0:.1f}s")
            measure(args, reg.url, reg.host, work)
            if args.delay:
                far_runs(reg.url, reg.storage_dir, far_levels, args.delay, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, url: str, host: str | None, work: Path) -> None:
    host = host or url.split("://", 1)[1]
    audit = repoaudit.open(work / "bench.duckdb")
    full = audit.collect(url, concurrency=args.concurrency, max_concurrency=args.concurrency, progress=False,
                         posture=False, use_credential_store=False)
    assert full.status == "complete", full
    incr = audit.collect(url, concurrency=args.concurrency, max_concurrency=args.concurrency, progress=False,
                         posture=False, use_credential_store=False)
    assert incr.status == "complete" and incr.new_manifests == 0, incr

    # The exact request mix of the full collection, replayed without any processing.
    accept = {"Accept": repoaudit.model.manifest.ACCEPT}
    rows = audit.sql("""SELECT t.repository, t.tag, m.config_digest FROM tags t
                        JOIN manifests m USING (registry, digest)
                        WHERE t.snapshot_id = $s""", {"s": full.snapshot_id})
    audit.close()
    urls = [("/v2/", {}), ("/v2/_catalog?n=1000", {})]
    urls += [(f"/v2/{r}/tags/list?n=1000", {}) for r in rows["repository"].unique()]
    urls += [(f"/v2/{r.repository}/manifests/{r.tag}", accept) for r in rows.itertuples()]
    urls += [(f"/v2/{r.repository}/blobs/{r.config_digest}", {})
             for r in rows.drop_duplicates("config_digest").itertuples()]
    tags = full.tags

    print(f"\n{'round':>5} {'wrk req/s':>9} {'storm req/s':>11} {'collect req/s':>13} {'cpu/req ms':>10} "
          f"{'collect/wrk':>11} {'collect/storm':>13} {'load':>5}")
    ratios_wrk, ratios_storm, rates = [], [], []
    for n in range(args.rounds):
        wrk = wrk_rate(url, urls, args.wrk_connections, 5, work)
        storm_rate = len(urls) / asyncio.run(storm(url, urls, args.concurrency))
        run = collect_once(url, work / "round.duckdb", args.concurrency, args.concurrency)
        assert run["status"] == "complete", run
        requests = sum(run["requests"].values())
        rate = requests / run["seconds"]
        rates.append(rate)
        ratios_wrk.append(rate / wrk)
        ratios_storm.append(rate / storm_rate)
        print(f"{n + 1:>5} {wrk:>9.0f} {storm_rate:>11.0f} {rate:>13.0f} {1000 * run['cpu'] / requests:>10.2f} "
              f"{rate / wrk:>11.2f} {rate / storm_rate:>13.2f} {os.getloadavg()[0]:>5.2f}", flush=True)

    full_requests = sum(full.requests.values())
    incr_requests = sum(incr.requests.values())
    sample = list(rows["repository"].value_counts().index[: args.skopeo_repos])
    skopeo = shutil.which("skopeo")
    sk_tags = sk_s = 0.0
    if skopeo:
        t0 = time.perf_counter()
        for name in sample:
            out = subprocess.run([skopeo, "list-tags", "--tls-verify=false", f"docker://{host}/{name}"],
                                 check=True, capture_output=True, text=True).stdout
            for tag in json.loads(out)["Tags"]:
                subprocess.run([skopeo, "inspect", "--tls-verify=false", f"docker://{host}/{name}:{tag}"],
                               check=True, capture_output=True)
                sk_tags += 1
        sk_s = time.perf_counter() - t0

    print()
    print(f"collect/wrk (requests/s)       {span(ratios_wrk)}   (issue 16: >= 0.5)")
    print(f"collect/storm (requests/s)     {span(ratios_storm)}")
    if sk_s:
        print(f"collect/skopeo (tags/s)        {(tags / full.seconds) / (sk_tags / sk_s):.1f}"
              f"  ({int(sk_tags)} tags sampled)")
    print(f"incremental/full requests      {incr_requests / full_requests:.2f}")
    print(f"incremental/full time          {incr.seconds / full.seconds:.2f}")
    print(f"incremental GETs of manifests/blobs: {incr.requests.get('GET manifest', 0)}"
          f"/{incr.requests.get('GET blob', 0)}")


if __name__ == "__main__":
    main()
