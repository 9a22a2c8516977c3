"""A fault storm between the collector and a real registry gives the same snapshot as a calm run.

The storm is a transport wrapped around the real one (the MockTransport pattern
of test_client.py, with a real registry behind it): per request, 1% connection
resets, 10% answers of 429/500/502/503/504, and 2% of GET bodies corrupted on
the way (a flipped bit or a body cut short with an honest length; list pages are
only ever cut short, since a flipped bit in a page has no checksum to betray it).
Every storm run, full and incremental, must store exactly what the calm run did.
"""

from __future__ import annotations

import random
from collections import Counter

import httpx
import pytest

import repoaudit
from pusher import Pusher, layer_bytes
from repoaudit.model.retry import NO_BACKOFF
from test_collector import seed

STORMS = 3  # full runs under independent storms; each also followed by an incremental one


class Storm(httpx.AsyncBaseTransport):
    def __init__(self, seed: int, *, errors: float = 0.10, resets: float = 0.01, corrupt: float = 0.02):
        self.inner = httpx.AsyncHTTPTransport()
        self.rng = random.Random(seed)
        self.errors, self.resets, self.corrupt = errors, resets, corrupt
        self.injected: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        roll = self.rng.random()
        if roll < self.resets:
            self.injected["reset"] += 1
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        if roll < self.resets + self.errors:
            status = self.rng.choice([429, 500, 502, 503, 504])
            self.injected[str(status)] += 1
            return httpx.Response(status, json={"errors": [{"code": "UNAVAILABLE", "message": "storm"}]})
        response = await self.inner.handle_async_request(request)
        if request.method != "GET" or self.rng.random() >= self.corrupt:
            return response
        body = await response.aread()
        await response.aclose()
        if not body:
            return response
        listing = request.url.path.endswith(("/tags/list", "/_catalog"))
        if listing or self.rng.random() < 0.5:
            self.injected["short"] += 1
            body = body[:self.rng.randrange(len(body))]
        else:
            self.injected["bitflip"] += 1
            at = self.rng.randrange(len(body))
            body = body[:at] + bytes([body[at] ^ (1 << self.rng.randrange(8))]) + body[at + 1:]
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


def contents(audit) -> dict[str, list]:
    """What a snapshot says about the registry, without run bookkeeping (ids, times)."""
    return {
        "repositories": audit.sql("SELECT repository, tag_count, status, error FROM repositories "
                                  "ORDER BY ALL").values.tolist(),
        "tags": audit.sql("SELECT repository, tag, digest FROM tags ORDER BY ALL").values.tolist(),
        "manifests": audit.sql("SELECT * EXCLUDE (first_seen_snapshot) FROM manifests "
                               "ORDER BY digest").astype(str).values.tolist(),
        "layers": audit.sql("SELECT * FROM layers ORDER BY ALL").values.tolist(),
        "children": audit.sql("SELECT * FROM manifest_children ORDER BY ALL").values.tolist(),
        "errors": audit.sql("SELECT error FROM collection_errors").values.tolist(),
    }


@pytest.fixture
def storm_estate(registry, pusher: Pusher):
    seed(pusher)
    for r in range(6):
        for t in range(4):
            pusher.push_image(f"storm/r{r}", [f"v{t}", *(["latest"] if t == 3 else [])],
                              layers=[layer_bytes(f"storm-{r}-{t}", 3_000)], created=f"2024-0{t + 1}-01T00:00:00Z")
    return registry


def test_storm_snapshots_equal_the_calm_one(storm_estate, tmp_path):
    url = storm_estate.url
    with repoaudit.open(tmp_path / "calm.duckdb") as audit:
        calm = audit.collect(url, retry=NO_BACKOFF, progress=False, use_credential_store=False)
        assert calm.status == "complete" and calm.errors == 0
        expected = contents(audit)
    assert len(expected["tags"]) == 7 + 6 * 5

    injected: Counter[str] = Counter()
    for i in range(STORMS):
        with repoaudit.open(tmp_path / f"storm{i}.duckdb") as audit:
            for mode in ("full", "incremental"):
                storm = Storm(seed=1000 + i * 10 + (mode == "incremental"))
                result = audit.collect(url, retry=NO_BACKOFF, progress=False, use_credential_store=False,
                                       transport=storm)
                injected.update(storm.injected)
                assert (result.mode, result.status, result.errors) == (mode, "complete", 0), (mode, result)
                got = contents(audit)
                if mode == "incremental":
                    # The second snapshot's rows sit beside the first's; each must equal the calm run.
                    got["tags"] = audit.sql("SELECT repository, tag, digest FROM tags WHERE snapshot_id = $s "
                                            "ORDER BY ALL", {"s": result.snapshot_id}).values.tolist()
                    got["repositories"] = audit.sql(
                        "SELECT repository, tag_count, status, error FROM repositories WHERE snapshot_id = $s "
                        "ORDER BY ALL", {"s": result.snapshot_id}).values.tolist()
                assert got == expected, f"storm {i} ({mode}) differs from the calm run"
    # The storm did blow (about 450 requests: some 45 error answers, 4 resets, 5 corrupted bodies).
    assert injected["reset"] >= 1 and injected["short"] + injected["bitflip"] >= 2, injected
    assert sum(injected[s] for s in ("429", "500", "502", "503", "504")) >= 20, injected
