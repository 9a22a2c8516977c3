"""Client CPU per request as concurrency rises, and config GETs against distinct configs.

Starts Debian's docker-registry on loopback and seeds REPOS repositories of TAGS tags
where every config is shared by two manifests (each image pushed once OCI-style and
once Docker-style under two tags: two manifests, one config blob). Then, for each
``--concurrency`` in 8/16/32/64/128, one full ``repoaudit collect`` into a fresh
database, each in its own process, and prints:

  requests      every HTTP exchange the run made
  wall          seconds of the collection
  cpu/req       the collecting process's user+sys CPU over the collection / requests
  config GETs   blob GETs against the distinct configs the snapshot stores

and the ratio of CPU per request at 64 to that at 8 (issue 22 wants it within 1.15).

Then, per level, side by side: HTTP/1.1 in plain HTTP (``h1``), and HTTP/1.1 and HTTP/2 over TLS (``h1+tls``,
``h2``: the same storage served by a second docker-registry, where Distribution speaks h2, so the two compare
the protocols alone): a collection on loopback and one through ``bench/delayproxy.py`` in its own process (a
TCP proxy adding ``--delay``, 25 ms each way by default: a far registry; TLS passes through it), printing
requests/s over the whole collection and over its fetching (opening the database and the commit left out),
the latency bound in-flight / RTT, the loopback rate at that level (the CPU limit), both rates against the
bound and the whole run's against min(bound, loopback), the requests kept in flight on average while
fetching (seconds requests held a slot / seconds fetching) and their mean latency. The RTT of the bound is
the median round trip of the collection's own requests (manifests by tag and their configs) sent one at a
time through the proxy: what the registry takes to answer is part of every round trip, which ``GET /v2/``
alone leaves out. One at a time it also leaves out the registry's queueing under the load, so beside
the bound each row has h2load (Debian's ``nghttp2-client``; skipped where missing) sending the same GETs
through the proxy at the same in-flight, over the same protocol: what a C client gets from that registry
at that distance, and the collection's rates against it. Then one adaptive run (start 16, up to 64) per
protocol. ``--delay 0`` skips the far runs,
``--far-only`` the rest.
The far table ends with each protocol's lowest whole-run ratio to the bound per level, marked where it
met issue 16's 0.9.
The default registry (100 repositories x 40 tags, 4,000 tags, 6,000 requests) is sized for those
ratios: a run of 1,000 tags through the proxy lasts six seconds, of which the database's opening and
commit (a third of a second) and the first and last round trips, while the slots fill and drain, are a
tenth; at 4,000 tags they are a fortieth, as in a real registry's collection.
Figures only; nothing here is asserted. Run: ``python bench/concurrency.py [--repos 100 --tags 40]``,
or ``--url http://127.0.0.1:PORT`` against a registry already seeded (``--seed-only`` seeds one
and leaves it running until interrupted).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from pusher import Pusher, layer_bytes  # noqa: E402
from registry import RegistryServer  # noqa: E402
from tokenserver import make_pki  # noqa: E402

from repoaudit.model.manifest import ACCEPT  # noqa: E402

# Run in a child so each concurrency starts from a cold process with its own CPU account;
# only the collection itself is timed, not the imports.
CHILD = r"""
import json, sys, time
import repoaudit
from repoaudit.model.options import ClientOptions
url, db, concurrency, most = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ca = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
h1 = len(sys.argv) > 6 and sys.argv[6] == "h1"  # HTTP/1.1 even where TLS offers HTTP/2
options = ClientOptions(concurrency=concurrency, max_concurrency=most, verify=ca or True, http2=False) if h1 else None
with repoaudit.open(db) as audit:
    c0, w0 = time.process_time(), time.perf_counter()
    result = audit.collect(url, concurrency=concurrency, max_concurrency=most, ca_file=ca, progress=False,
                           use_credential_store=False, posture=False, client_options=options)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    configs = audit.sql("SELECT count(DISTINCT config_digest) AS n FROM manifests "
                        "WHERE config_digest IS NOT NULL")["n"][0]
print(json.dumps({"status": result.status, "tags": result.tags, "requests": result.requests,
                  "cpu": cpu, "wall": wall, "configs": int(configs), "in_flight": result.in_flight,
                  "latency": result.latency, "fetching": result.fetch_seconds}))
"""


class DelayProxy:
    """``bench/delayproxy.py`` in its own process: a TCP proxy adding ``delay`` seconds each way (TLS passes)."""

    def __init__(self, upstream: str, delay: float, *, verify=True, http2: bool = True):
        hostport = upstream.split("://", 1)[1]
        self.scheme = upstream.split("://", 1)[0]
        self.verify = verify
        self.http2 = http2 and self.scheme == "https"
        self.process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "delayproxy.py"), hostport, str(delay)],
                                        stdout=subprocess.PIPE, text=True)
        self.url = f"{self.scheme}://127.0.0.1:{int(self.process.stdout.readline())}"

    def rtt(self, samples: int = 20) -> tuple[float, float]:
        """The median round trip through the proxy of a keep-alive ``GET /v2/``, and of the collection's own
        requests one at a time (a repository's manifests by tag and their configs: what the registry takes to
        answer them is part of every round trip a collection waits for)."""
        ping, mix = [], []
        accept = {"Accept": ACCEPT}
        with httpx.Client(base_url=self.url, verify=self.verify, http2=self.http2) as client:
            client.get("/v2/")
            for _ in range(samples):
                t0 = time.perf_counter()
                client.get("/v2/")
                ping.append(time.perf_counter() - t0)
            name = client.get("/v2/_catalog").json()["repositories"][-1]
            for tag in client.get(f"/v2/{name}/tags/list").json()["tags"][:samples]:
                t0 = time.perf_counter()
                manifest = client.get(f"/v2/{name}/manifests/{tag}", headers=accept)
                mix.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                client.get(f"/v2/{name}/blobs/{manifest.json()['config']['digest']}").raise_for_status()
                mix.append(time.perf_counter() - t0)
        return sorted(ping)[len(ping) // 2], sorted(mix)[len(mix) // 2]

    def mix(self) -> list[str]:
        """The full collection's GETs (tag lists, manifests by tag, each distinct config once), as URLs
        through the proxy."""
        urls, configs = [], {}
        with httpx.Client(base_url=self.url, verify=self.verify, http2=False, timeout=60) as client:
            for name in client.get("/v2/_catalog?n=1000").json()["repositories"]:
                urls.append(f"/v2/{name}/tags/list?n=1000")
                for tag in client.get(f"/v2/{name}/tags/list").json()["tags"]:
                    manifest = client.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": ACCEPT}).json()
                    urls.append(f"/v2/{name}/manifests/{tag}")
                    configs.setdefault(manifest["config"]["digest"], name)
        urls += [f"/v2/{name}/blobs/{digest}" for digest, name in configs.items()]
        return [self.url + u for u in urls]

    def reference(self, urls: list[str], in_flight: int, work: Path, seconds: int = 5) -> tuple[float, float] | None:
        """Requests/s and mean latency (s) of h2load (Debian's ``nghttp2-client``) sending the mix through the
        proxy with ``in_flight`` requests at once: ``in_flight`` HTTP/1.1 connections, or one HTTP/2 connection
        of ``in_flight`` streams. None without h2load."""
        if shutil.which("h2load") is None:
            return None
        listing = work / "mix.urls"
        listing.write_text("".join(u + "\n" for u in urls))
        shape = ["-c1", f"-m{in_flight}"] if self.http2 else ["-c", str(in_flight), "-m1", "--h1"]
        out = subprocess.run(["h2load", "-D", str(seconds), *shape, "-H", f"Accept: {ACCEPT}", "-i", str(listing)],
                             capture_output=True, text=True, check=True).stdout
        done = re.search(r"(\d+) succeeded, (\d+) failed", out)
        if done is None or int(done.group(2)):
            raise SystemExit(f"h2load saw errors:\n{out}")
        rate = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
        mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(ms|us|s)", out)
        return rate, float(mean.group(1)) / {"ms": 1e3, "us": 1e6, "s": 1}[mean.group(2)]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def seed(pusher: Pusher, repos: int, tags: int) -> None:
    """``tags`` per repository, two per image (OCI and Docker manifests sharing one config)."""
    base = pusher.push_image("bench/base", ["1"], layers=[layer_bytes("base", 64_000)])
    for r in range(repos):
        name = f"bench/repo{r:03d}"
        for t in range(0, tags, 2):
            kw = dict(shared_layers=base.layers, mount_from="bench/base", layers=[layer_bytes(f"{r}-{t}", 512)],
                      created=f"2025-01-{1 + t % 28:02d}T00:00:00Z", labels={"bench": f"{r}-{t}"})
            pusher.push_image(name, [f"v{t}"], style="oci", **kw)
            if t + 1 < tags:
                pusher.push_image(name, [f"v{t}-docker"], style="docker", **kw)


def run(url: str, concurrency: int, work: Path, most: int | None = None, ca: str | None = None,
        http2: bool = True) -> dict:
    """One full collection in a child; ``most`` None: a fixed limit (no adaptive growth)."""
    db = work / f"c{concurrency}.duckdb"
    out = subprocess.run([sys.executable, "-c", CHILD, url, str(db), str(concurrency), str(most or concurrency),
                          ca or "-", "h2" if http2 else "h1"], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout
    db.unlink(missing_ok=True)
    return json.loads(out.strip().splitlines()[-1])


def measure(url: str, levels: list[int], repeat: int, work: Path) -> None:
    print(f"{'in flight':>9} {'requests':>9} {'wall s':>7} {'cpu s':>6} {'cpu/req ms':>10} {'req/s':>6} "
          f"{'config GETs':>11} {'distinct':>8}")
    per_request: dict[int, float] = {}
    for level in levels:
        best = None
        for _ in range(repeat):  # the lowest CPU of the repeats: the other tenant of the machine only adds
            r = run(url, level, work)
            assert r["status"] == "complete", r
            if best is None or r["cpu"] < best["cpu"]:
                best = r
        requests = sum(best["requests"].values())
        per_request[level] = best["cpu"] / requests
        print(f"{level:>9} {requests:>9} {best['wall']:>7.2f} {best['cpu']:>6.2f} {1000 * per_request[level]:>10.2f} "
              f"{requests / best['wall']:>6.0f} {best['requests'].get('GET blob', 0):>11} {best['configs']:>8}",
              flush=True)
    if 8 in per_request and 64 in per_request:
        print(f"\ncpu/request at 64 / at 8: {per_request[64] / per_request[8]:.2f} (issue 22: <= 1.15)")


def measure_far(targets: dict[str, tuple[str, str | None, bool]], levels: list[int], delay: float, work: Path,
                adaptive: tuple[int, int] = (16, 64), rounds: int = 1) -> None:
    """Each protocol's collections on loopback and through the delaying proxy, side by side per level; the levels
    ``rounds`` times over, interleaved, so that each round's rows share one moment of the machine."""
    proxies = {proto: DelayProxy(url, delay, verify=ca or True, http2=http2) for proto, (url, ca, http2) in targets.items()}
    try:
        measured = {proto: proxy.rtt() for proto, proxy in proxies.items()}
        mixes = {proto: proxy.mix() for proto, proxy in proxies.items()}
        rtts = {proto: mix for proto, (_, mix) in measured.items()}
        print(f"\nthrough a proxy process adding {1000 * delay:.0f} ms each way; round trip, one request at a "
              f"time, of GET /v2/ and of the collection's requests (the RTT of the bound): "
              + ", ".join(f"{proto} {1000 * ping:.1f} / {1000 * mix:.1f} ms" for proto, (ping, mix) in measured.items())
              + f"; load average {os.getloadavg()[0]:.2f}")
        print("req/s: over the whole collection (opening and commit included) / over its fetching; of bound: the "
              "same two against in-flight / RTT")
        print("h2load: the same GETs through the proxy at the same in-flight (a C client: the round trip under that "
              "load, the registry's own queueing included); of h2load: the two req/s against its")
        print(f"{'in flight':>9} {'proto':>6} {'req/s':>9} {'bound/s':>7} {'loopback/s':>10} {'of bound':>9} "
              f"{'of min(bound, loopback)':>23} {'h2load/s':>8} {'h2load ms':>9} {'of h2load':>9} "
              f"{'kept in flight':>14} {'latency ms':>10} {'cpu/req ms':>10}")
        lowest: dict[str, dict[int, float]] = {proto: {} for proto in targets}  # whole run / bound, per level
        for level in [lv for _ in range(rounds) for lv in levels]:
            for proto, (url, ca, http2) in targets.items():
                near = run(url, level, work, ca=ca, http2=http2)
                far = run(proxies[proto].url, level, work, ca=ca, http2=http2)
                ref = proxies[proto].reference(mixes[proto], level, work)
                assert near["status"] == far["status"] == "complete", (near, far)
                loop_rate = sum(near["requests"].values()) / near["wall"]
                requests = sum(far["requests"].values())
                rate, fetch_rate, bound = requests / far["wall"], requests / far["fetching"], level / rtts[proto]
                lowest[proto][level] = min(rate / bound, lowest[proto].get(level, rate / bound))
                rates = f"{rate:.0f}/{fetch_rate:.0f}"
                of_bound = f"{rate / bound:.2f}/{fetch_rate / bound:.2f}"
                if ref is None:
                    refs = f"{'-':>8} {'-':>9} {'-':>9}"
                else:
                    of_ref = f"{rate / ref[0]:.2f}/{fetch_rate / ref[0]:.2f}"
                    refs = f"{ref[0]:>8.0f} {1000 * ref[1]:>9.1f} {of_ref:>9}"
                print(f"{level:>9} {proto:>6} {rates:>9} {bound:>7.0f} {loop_rate:>10.0f} {of_bound:>9} "
                      f"{rate / min(bound, loop_rate):>23.2f} {refs} {far['in_flight']:>14.1f} "
                      f"{1000 * far['latency']:>10.1f} {1000 * far['cpu'] / requests:>10.2f}", flush=True)
        print("issue 16, whole run >= 0.9 of the bound (each level's lowest round): " + "; ".join(
            f"{proto} " + ", ".join(f"{lv}: {low:.2f}{' met' if low >= 0.9 else ''}"
                                    for lv, low in sorted(by_level.items()))
            for proto, by_level in lowest.items()), flush=True)
        start, most = adaptive
        for proto, (url, ca, http2) in targets.items():
            far = run(proxies[proto].url, start, work, most=most, ca=ca, http2=http2)
            requests = sum(far["requests"].values())
            rate = requests / far["wall"]
            print(f"adaptive {start}..{most} {proto}: {rate:.0f} req/s ({rate / (most / rtts[proto]):.2f} of the bound "
                  f"at {most}, {rate / (start / rtts[proto]):.2f} of the bound at {start})", flush=True)
    finally:
        for proxy in proxies.values():
            proxy.close()


def far_runs(url: str, storage: Path | None, levels: list[int], delay: float, work: Path, rounds: int = 1) -> None:
    """The far runs over HTTP/1.1 (``url``) and, given its ``storage``, over TLS too: the same storage served
    by a second registry, where Distribution speaks h2."""
    if storage is None:
        measure_far({"h1": (url, None, True)}, levels, delay, work, rounds=rounds)
        return
    pki = make_pki(work / "pki")
    with RegistryServer(work / "tls", tls=pki.server,
                        extra={"storage": {"filesystem": {"rootdirectory": str(storage)}}}) as tls:
        ca = str(pki.ca_cert)
        # h1 and h2 over the same TLS server compare the protocols; plain h1 shows what TLS costs.
        measure_far({"h1": (url, None, True), "h1+tls": (tls.url, ca, False), "h2": (tls.url, ca, True)}, levels,
                    delay, work, rounds=rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--tags", type=int, default=40)
    ap.add_argument("--levels", default="8,16,32,64,128")
    ap.add_argument("--repeat", type=int, default=1, help="runs per level (the CPU table keeps the lowest; the far "
                    "table prints each round)")
    ap.add_argument("--delay", type=float, default=0.025, help="seconds the far proxy adds each way (0: skip)")
    ap.add_argument("--url", help="a registry already seeded (skips starting and seeding one)")
    ap.add_argument("--seed-only", action="store_true", help="seed a registry, print its URL, keep it running")
    ap.add_argument("--storage", help="with --url: its storage directory, for the HTTP/2 runs over TLS")
    ap.add_argument("--far-only", action="store_true", help="only the runs on loopback and through the proxy")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="repoaudit-bench-"))
    try:
        if args.url:
            if not args.far_only:
                measure(args.url, levels, args.repeat, work)
            if args.delay:
                far_runs(args.url, Path(args.storage) if args.storage else None, levels, args.delay, work,
                         args.repeat)
            return
        with RegistryServer(work / "registry") as reg, Pusher(reg.url) as pusher:
            t0 = time.perf_counter()
            seed(pusher, args.repos, args.tags)
            print(f"seeded {reg.url}: {args.repos} repositories x {args.tags} tags in "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
            if args.seed_only:
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    return
            if not args.far_only:
                measure(reg.url, levels, args.repeat, work)
            if args.delay:
                far_runs(reg.url, reg.storage_dir, levels, args.delay, work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
