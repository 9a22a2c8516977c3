"""Digest-addressed fetches are single-flight: one GET per config or manifest digest per run, whoever asks.

The estate makes tags race for the same digests: every image is pushed OCI-style and
Docker-style (two manifests, one config) into several repositories (the same manifests
and configs in each), and each repository has an index over the same two platform
images (children fetched by digest). At 64 in flight all of it is asked for at once;
a counting transport around the real one sees each config blob and each child
manifest fetched exactly once. Not timed.
"""

from __future__ import annotations

from collections import Counter

import httpx

import repoaudit
from pusher import Pusher, layer_bytes

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
            kw = dict(layers=[layer_bytes(f"image-{i}", 800)], created="2024-06-01T00:00:00Z",
                      labels={"image": str(i)})
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
