"""Events accepted per second by `repoaudit events serve`, against the same server stack doing nothing.

Starts, one after the other on loopback:

* the reference: uvicorn serving an ASGI app that reads the body and answers 200 (no auth, no
  parsing, no disk): the ceiling of the stack;
* the receiver (`repoaudit events serve`, a real subprocess): bearer check, JSON parse and
  envelope validation, spool append and fsync (group commit) before each 200;

and drives each with wrk (POST of a Distribution envelope of --batch events, --connections in flight,
--seconds each). Prints requests/s, events/s, the ratio to the reference, and the spool's fsyncs
per request (its group commit: below 1 when concurrent requests shared a sync). Every response must
be 200, or the run fails.

    python3 bench/events.py [--connections 16] [--seconds 5] [--batch 1]
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

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from registry import free_port  # noqa: E402

TOKEN = "bench-token"
NULL_APP = """
import uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})

uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False, lifespan="off")
"""


def envelope(batch: int) -> str:
    digest = "sha256:" + "ab" * 32
    return json.dumps({"events": [{
        "id": f"bench-{i}", "timestamp": "2026-12-01T00:00:00.000000000Z", "action": "pull",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1024, "digest": digest,
                   "length": 1024, "repository": "team/app", "tag": "v1",
                   "url": f"http://registry.example:5000/v2/team/app/manifests/{digest}"},
        "request": {"id": f"req-{i}", "addr": "10.0.0.7:51234", "host": "registry.example:5000", "method": "GET",
                    "useragent": "containerd/v1.7.13"},
        "actor": {}, "source": {"addr": "registry-0:5000", "instanceID": "0c8f4a7e"}} for i in range(batch)]})


def wait_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def run_wrk(url: str, body: str, connections: int, seconds: int, workdir: Path) -> float:
    script = workdir / "post.lua"
    script.write_text('wrk.method = "POST"\n'
                      f'wrk.body = {json.dumps(body)}\n'
                      'wrk.headers["Content-Type"] = "application/vnd.docker.distribution.events.v1+json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n')
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"not every response was 200:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1, help="events per envelope (Distribution sends 1 by default)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    body = envelope(args.batch)
    with tempfile.TemporaryDirectory(prefix="repoaudit-bench-events-") as tmp:
        workdir = Path(tmp)
        results = {}
        port = free_port()
        null = subprocess.Popen([sys.executable, "-c", NULL_APP.replace("{port}", str(port))])
        try:
            wait_up(f"http://127.0.0.1:{port}/", null)
            results["reference (uvicorn, 200, nothing else)"] = run_wrk(f"http://127.0.0.1:{port}/events", body,
                                                                       args.connections, args.seconds, workdir)
        finally:
            null.terminate()
            null.wait()
        port = free_port()
        (workdir / "token").write_text(TOKEN)
        spool = workdir / "spool"
        receiver = subprocess.Popen(
            [sys.executable, "-m", "repoaudit.cli", "events", "serve", "--spool", str(spool), "--host", "127.0.0.1",
             "--port", str(port), "--token-file", str(workdir / "token"), "--log-level", "warning"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
        try:
            wait_up(f"http://127.0.0.1:{port}/healthz", receiver)
            results["repoaudit events serve (validate, fsync)"] = run_wrk(
                f"http://127.0.0.1:{port}/events", body, args.connections, args.seconds, workdir)
            health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        finally:
            receiver.terminate()
            receiver.wait()
        lines = sum(p.read_bytes().count(b"\n") for p in spool.glob("events-*"))
        if lines != health["accepted_events"]:
            raise SystemExit(f"spool holds {lines} lines, the receiver acknowledged {health['accepted_events']}")
        reference = next(iter(results.values()))
        print(f"{args.connections} connections, {args.seconds}s each, {args.batch} event(s) per envelope, "
              f"{len(body)} bytes per request")
        for name, rate in results.items():
            print(f"  {name:45s} {rate:9.0f} requests/s {rate * args.batch:9.0f} events/s  "
                  f"{rate / reference:5.2f} of the reference")
        print(f"  spool: {lines} lines acknowledged and on disk, {health['syncs']} fsyncs "
              f"({health['syncs'] / max(health['accepted_requests'], 1):.2f} per request)")


if __name__ == "__main__":
    main()
