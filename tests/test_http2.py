"""HTTP/2 against the real registry over TLS: negotiated, and one connection carrying many streams."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from pusher import Pusher, layer_bytes
from registry import RegistryServer
from tokenserver import make_pki

from repoaudit.model.options import ClientOptions, parse_target
from repoaudit.sources.registry import POOL_SHARD, RegistryClient

TAGS = 24


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("h2")
    pki = make_pki(root / "pki")
    server = RegistryServer(root / "registry", tls=pki.server)
    server.start()
    with Pusher(server.url, verify=ssl.create_default_context(cafile=str(pki.ca_cert))) as pusher:
        for t in range(TAGS):
            pusher.push_image("team/app", [f"v{t}"], layers=[layer_bytes(f"h2-{t}", 300)])
    yield pki, server
    server.stop()


async def _fetch_all(url: str, options: ClientOptions):
    async with RegistryClient(parse_target(url), options) as client:
        await client.ping()
        tags = await client.list_tags("team/app")
        fetched = await asyncio.gather(*(client.get_manifest("team/app", t) for t in tags))
        return client, fetched


def test_tls_registry_speaks_http2_over_one_connection(tls_server):
    pki, server = tls_server
    concurrency = 4 * POOL_SHARD  # four shards' worth: over HTTP/1.1 they would open four pools
    client, fetched = asyncio.run(_fetch_all(server.url, ClientOptions(verify=str(pki.ca_cert),
                                                                       concurrency=concurrency)))
    assert len(fetched) == TAGS and len({f.digest for f in fetched}) == TAGS
    assert client.http_versions == {"HTTP/2": TAGS + 2}  # ping, tag list, every manifest
    transport = client.transport
    # Every request went to the shard whose connection spoke HTTP/2, many at once, over one connection.
    assert transport.multiplexed is not None
    assert transport.peak > POOL_SHARD
    assert transport.backend.connects == 1


def test_http2_off_falls_back_to_sharded_http1(tls_server):
    pki, server = tls_server
    concurrency = 2 * POOL_SHARD
    client, fetched = asyncio.run(_fetch_all(server.url, ClientOptions(verify=str(pki.ca_cert),
                                                                       concurrency=concurrency, http2=False)))
    assert len(fetched) == TAGS
    assert client.http_versions == {"HTTP/1.1": TAGS + 2}
    assert client.transport.multiplexed is None
    assert client.transport.peak <= POOL_SHARD  # requests spread over the shards, at most a shard's worth each
    assert client.transport.backend.connects > 1


def test_streams_cancelled_while_others_wait_on_the_connection_leave_no_one_stranded(tls_server):
    # One stream reads the connection for all; the others wait for what it files. Streams cancelled at
    # every point (waiting, woken to read, reading) must not leave the rest waiting for a reader.
    pki, server = tls_server

    async def run():
        async with RegistryClient(parse_target(server.url), ClientOptions(verify=str(pki.ca_cert),
                                                                          concurrency=64)) as client:
            tags = await client.list_tags("team/app")
            for round_ in range(6):
                tasks = [asyncio.create_task(client.get_manifest("team/app", t)) for t in tags * 2]
                for i, task in enumerate(tasks[::3]):
                    await asyncio.sleep(0.0003 * ((i + round_) % 5))
                    task.cancel()
                done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
                kept = [r for r in done if not isinstance(r, asyncio.CancelledError)]
                assert kept and all(not isinstance(r, BaseException) for r in kept), kept
            # The connection survived every round: through anyio a cancelled write broke its TLS stream.
            assert client.transport.backend.connects == 1
            return client

    client = asyncio.run(run())
    assert client.http_versions.keys() == {"HTTP/2"}
