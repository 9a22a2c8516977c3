"""The registry client's own request path: URLs built without httpx re-parsing them, and each pool shard's
connections handed straight to requests (``_Connections``), against the real registry."""

from __future__ import annotations

import asyncio

import httpcore
import httpx
import pytest
from pusher import Pusher, layer_bytes

from repoaudit.model.options import ClientOptions, Target, parse_target
from repoaudit.sources.registry import (
    _READ_AHEAD,
    RegistryClient,
    _Backend,
    _Connections,
    _pool_transport,
)

BASES = ["http://127.0.0.1:5000", "https://reg.example:443/prefix", "http://[::1]:5000/a/b/", "https://Reg.Example",
         "https://h/p%20q"]
PATHS = ["/v2/", "/v2/team/app/manifests/v1.0_RC-1", "/v2/a/b/c.d/tags/list", "/v2/x/blobs/sha256:" + "ab" * 32,
         "/v2/x/referrers/sha256:" + "0" * 64, "/v2/../x", "/v2/a//b", "/v2/a?b=1", "/v2/%41", "/v2/a/.b", "/v2/a b",
         "/v2/é", "/v2/a#frag", "/v2/a/./b"]


@pytest.mark.parametrize("base", BASES)
def test_urls_are_the_ones_httpx_would_build(base):
    client = RegistryClient(Target("registry", base, "x"))
    for path in PATHS:
        fast = client._http.build_request("GET", client._url(path)).url
        slow = client._http.build_request("GET", path).url
        assert (str(fast), fast.raw_path, fast.host, fast.port) == (str(slow), slow.raw_path, slow.host, slow.port)
    # Paths httpx would rewrite (dot segments, escapes, queries) are left to httpx.
    assert isinstance(client._url("/v2/../x"), str) and isinstance(client._url("/v2/a?b"), str)


def _client(url: str, size: int) -> tuple[httpx.AsyncClient, _Backend]:
    backend = _Backend()
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    transport = _pool_transport(limits, True, False, backend)
    assert isinstance(transport._pool, _Connections)
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=httpx.Timeout(10, pool=0.3)), backend


def test_requests_beyond_the_connections_wait_for_one_and_reuse_it(registry):
    async def run():
        client, backend = _client(registry.url, 2)
        async with client:
            answers = await asyncio.gather(*(client.get("/v2/") for _ in range(12)))
            return [a.status_code for a in answers], backend.connects, len(client._transport._pool._connections)

    statuses, connects, kept = asyncio.run(run())
    assert statuses == [200] * 12
    assert connects == 2 and kept == 2  # never more than the shard's size, every one kept alive


def test_a_connection_held_by_an_unread_answer_is_not_shared_and_the_wait_times_out(registry):
    async def run():
        client, backend = _client(registry.url, 1)
        async with client:
            held = await client.send(client.build_request("GET", "/v2/"), stream=True)
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/v2/")
            await held.aread()  # read to the end and closed, the connection comes back: the next request takes it
            await held.aclose()
            again = await client.get("/v2/")
            return again.status_code, backend.connects

    assert asyncio.run(run()) == (200, 1)


def test_a_connection_the_registry_closed_is_replaced(registry, pusher: Pusher):
    pushed = pusher.push_image("path/app", ["v1"], layers=[layer_bytes("path", 200)])

    async def run():
        async with RegistryClient(parse_target(registry.url), ClientOptions(concurrency=1)) as client:
            first = await client.get_manifest("path/app", "v1")
            pool = client.transport._shards[0]._pool
            for connection in pool._connections:
                await connection.aclose()  # as a registry's idle timeout would
            second = await client.get_manifest("path/app", "v1")
            return first.digest, second.digest, client.transport.backend.connects

    first, second, connects = asyncio.run(run())
    assert first == second == pushed.digest and connects == 2


def test_a_connection_reads_ahead_a_bounded_amount_and_times_out_waiting():
    # A body arriving faster than it is read stays at most _READ_AHEAD (and a chunk) in memory: asyncio
    # stops reading the socket, and starts again once it is read down.
    body = b"x" * (32 * _READ_AHEAD)
    most = _READ_AHEAD + 256 * 1024  # asyncio reads a socket up to 256 KiB at a time, then reading pauses

    async def run():
        async def answer(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            await asyncio.sleep(5)  # then nothing more: a read waiting for more times out
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stream = await _Backend().connect_tcp("127.0.0.1", port, timeout=5)
        await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.5)  # the server has sent everything the socket buffers take
        protocol = stream._protocol
        assert protocol.buffered <= most
        got = 0
        while got < len(body) + 40:
            chunk = await stream.read(65536, timeout=5)
            assert chunk
            got += len(chunk)
            assert protocol.buffered <= most
        got -= len(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert got == len(body)
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(65536, timeout=0.2)
        await stream.aclose()
        server.close()

    asyncio.run(run())
