"""Digest-addressed fetches are single-flight: one GET per config or manifest digest per run, whoever asks.

The estate makes tags race for the same digests: every image is pushed OCI-style and
Docker-style (two manifests, one config) into several repositories (the same manifests
and configs in each), and each repository has an index over the same two platform
images (children fetched by digest). At 64 in flight all of it is asked for at once;
a counting transport around the real one sees each config blob and each child
manifest fetched exactly once. Not timed.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from pusher import Pusher, layer_bytes

import repoaudit
from repoaudit.model.options import ClientOptions, parse_target
from repoaudit.model.retry import NO_BACKOFF
from repoaudit.sources.registry import RegistryClient

REPOS = 4
IMAGES = 6


class Counting(httpx.AsyncBaseTransport):
    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.gets: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.gets[request.url.path] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_each_digest_is_fetched_once_at_high_concurrency(registry, pusher: Pusher, tmp_path):
    children = set()
    for r in range(REPOS):
        repo = f"shared/r{r}"
        for i in range(IMAGES):
            kw = {"layers": [layer_bytes(f"image-{i}", 800)], "created": "2024-06-01T00:00:00Z",
                  "labels": {"image": str(i)}}
            pusher.push_image(repo, [f"i{i}", f"i{i}-again"], style="oci", **kw)
            pusher.push_image(repo, [f"i{i}-docker"], style="docker", **kw)
        amd = pusher.push_image(repo, [], layers=[layer_bytes("amd", 700)], architecture="amd64")
        arm = pusher.push_image(repo, [], layers=[layer_bytes("arm", 700)], architecture="arm64")
        pusher.push_index(repo, ["multi", "multi-again"], [amd, arm])
        children |= {amd.digest, arm.digest}

    counting = Counting()
    with repoaudit.open(tmp_path / "a.duckdb") as audit:
        result = audit.collect(registry.url, concurrency=64, progress=False, use_credential_store=False,
                               transport=counting)
        assert (result.status, result.errors, result.tags) == ("complete", 0, REPOS * (3 * IMAGES + 2))
        configs = set(audit.sql("SELECT DISTINCT config_digest FROM manifests "
                                "WHERE config_digest IS NOT NULL")["config_digest"])
    assert len(configs) == IMAGES + 2  # one per image, shared by its two manifests in every repository

    blob_gets = Counter()
    for path, n in counting.gets.items():
        if "/blobs/" in path:
            blob_gets[path.rsplit("/", 1)[1]] += n
    assert set(blob_gets) == configs
    assert sum(blob_gets.values()) == len(configs), blob_gets.most_common(3)
    assert result.requests["GET blob"] == len(configs)

    by_digest = Counter()
    for path, n in counting.gets.items():
        if "/manifests/sha256:" in path:
            by_digest[path.rsplit("/", 1)[1]] += n
    assert set(by_digest) == children and sum(by_digest.values()) == len(children), by_digest


def test_the_pool_is_sharded_and_every_slot_comes_back(registry, pusher: Pusher):
    """Requests spread over ceil(n/8) small pools (httpcore's pool costs per request grow with its size)."""
    pushed = [pusher.push_image("shard/app", [f"t{i}"], layers=[layer_bytes(f"shard-{i}", 300)]) for i in range(40)]

    async def run() -> tuple[int, list[int], list[int]]:
        client = RegistryClient(parse_target(registry.url), ClientOptions(concurrency=20, max_concurrency=20,
                                                                          retry=NO_BACKOFF))
        async with client:
            transport = client._http._transport
            used = [0] * len(transport._shards)
            original = [shard.handle_async_request for shard in transport._shards]
            for i, shard in enumerate(transport._shards):
                async def counted(request, i=i):
                    used[i] += 1
                    return await original[i](request)
                shard.handle_async_request = counted
            fetched = await asyncio.gather(*(client.get_manifest("shard/app", f"t{i}") for i in range(40)))
            assert [f.digest for f in fetched] == [p.digest for p in pushed]
            return len(transport._shards), used, list(transport._busy)

    shards, used, busy = asyncio.run(run())
    assert shards == 3 and all(used) and sum(used) == 40, used
    assert busy == [0, 0, 0]
