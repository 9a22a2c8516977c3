"""A TCP proxy on 127.0.0.1 that delivers every chunk DELAY seconds late, each way: a far registry on loopback.

Run in its own process (``python bench/delayproxy.py HOST:PORT DELAY``; it prints the port it listens on),
so its CPU is not the benchmark's. It forwards bytes, so TLS passes through it untouched and HTTP/2
works through it. Bytes are held with their due time, not throttled: latency, never a bandwidth limit.
Each chunk is one timer on the event loop and nothing else, which keeps the proxy cheap next to the
registry and the collector it sits between.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque


class _Side(asyncio.Protocol):
    """One socket of a proxied pair; what it reads goes to ``peer`` ``delay`` seconds later, in order."""

    def __init__(self, delay: float):
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: deque = deque()  # chunks read before the peer connected
        self.due: deque = deque()  # chunks on their way to this side's socket

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.peer.send_later(data)

    def eof_received(self):
        self.peer.send_later(b"")
        return True

    def connection_lost(self, exc) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.send_later(None)

    def send_later(self, data) -> None:
        # Each timer delivers the oldest chunk: equal due times cannot reorder the stream.
        self.due.append(data)
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self._deliver)

    def _deliver(self) -> None:
        transport = self.transport
        if transport is None:  # the upstream connection is still being made: wait for it
            asyncio.get_running_loop().call_later(0.001, self._deliver)
            return
        data = self.due.popleft()
        if transport.is_closing():
            return
        if data is None:
            transport.close()
        elif data == b"":
            try:
                transport.write_eof()
            except (OSError, NotImplementedError):  # the other end went first, or a TLS-less half-close
                transport.close()
        else:
            transport.write(data)


async def serve(upstream_host: str, upstream_port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()

    def client_side() -> _Side:
        client = _Side(delay)
        upstream = _Side(delay)
        client.peer, upstream.peer = upstream, client

        async def connect() -> None:
            try:
                await loop.create_connection(lambda: upstream, upstream_host, upstream_port)
            except OSError:
                if client.transport is not None:
                    client.transport.close()
        loop.create_task(connect())
        return client

    server = await loop.create_server(client_side, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    asyncio.run(serve(host, int(port), float(sys.argv[2])))


if __name__ == "__main__":
    main()
