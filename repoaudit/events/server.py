"""``repoaudit events serve``: a small ASGI app on uvicorn that spools registry events.

A request is answered 200 only after its events are fsynced to the spool
(:class:`~repoaudit.events.spool.Spool`), so an acknowledged event survives a crash of the
receiver, and an event the receiver never acknowledged is one the registry still holds and
retries (Distribution's endpoint queue retries with backoff until it gets a 2xx). Concurrent
requests share one fsync (group commit): the writer task takes everything queued since its
last write, appends it and syncs once, then answers all of those requests.

Answers: 401 without the configured bearer token or basic credentials; 413 for a body over
``max_body`` (by ``Content-Length`` before reading, or while reading a chunked one); 415 for a
content type that is neither JSON nor Distribution's envelope type; 400 for a body that is not
a valid envelope (logged with the reason, nothing spooled); 405 for anything but POST;
``GET /healthz`` 200 while the writer runs. SIGTERM (uvicorn's handler) stops accepting,
lets in-flight requests finish, then closes the spool file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from repoaudit.errors import ConfigError, EventError
from repoaudit.events.envelope import DISTRIBUTION_MEDIA_TYPE, envelope_events
from repoaudit.events.spool import Spool, spool_lines

__all__ = ["EventReceiver", "ReceiverConfig", "parse_size", "serve"]

log = logging.getLogger("repoaudit.events")

_JSON_TYPES = (DISTRIBUTION_MEDIA_TYPE, "application/json")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|M|G)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1000, "MB": 10 ** 6,
          "GB": 10 ** 9, "k": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(value: str, what: str) -> int:
    """Bytes in ``1MiB``, ``64MiB``, ``500KB``, ``1048576``; ``what`` names the option in errors."""
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigError(f"{what}: not a size: {value!r} (want e.g. 1MiB, 64MiB, 500KB)")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class ReceiverConfig:
    """What a receiver accepts. ``token`` and ``basic`` (``user:password``) are alternatives; both
    may be set (either is accepted), one is required: an open receiver would let anyone write
    pull history that retention then trusts."""

    token: str | None = None
    basic: str | None = None
    max_body: int = 1 << 20
    rotate_bytes: int = 64 << 20
    rotate_seconds: float = 3600.0

    def __post_init__(self):
        if not self.token and not self.basic:
            raise ConfigError("events serve: give a bearer token or basic credentials (an open receiver "
                              "would accept pull history from anyone)")
        if self.basic is not None and ":" not in self.basic:
            raise ConfigError("events serve: basic credentials must read user:password")
        if self.max_body < 1024:
            raise ConfigError(f"events serve: max body {self.max_body} is below 1024 bytes")


class _Committer:
    """Group commit: one spool append + fsync for everything queued meanwhile."""

    def __init__(self, spool: Spool, tick: float, counts: dict[str, int]):
        self.spool = spool
        self.counts = counts
        self.tick = tick
        self.pending: list[tuple[bytes, asyncio.Future]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.stopping = False

    async def write(self, data: bytes) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((data, future))
        self.wake.set()
        await future

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.tick)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            batch, self.pending = self.pending, []
            if batch:
                try:
                    await asyncio.to_thread(self.spool.append, b"".join(data for data, _ in batch))
                except Exception as exc:  # a full disk fails these requests (503), not the receiver
                    log.error("spool write failed: %s", exc)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    self.counts["syncs"] += 1
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
            else:
                await asyncio.to_thread(self.spool.rotate_if_old)
            if self.stopping and not self.pending:
                return

    async def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        if self.task is not None:
            await self.task
        await asyncio.to_thread(self.spool.close)


Send = Callable[[dict], Awaitable[None]]


class EventReceiver:
    """The ASGI application (``lifespan`` starts and stops the spool writer)."""

    def __init__(self, spool: Spool, config: ReceiverConfig):
        self.spool = spool
        self.config = config
        self.committer: _Committer | None = None
        self.counts = {"accepted_events": 0, "accepted_requests": 0, "rejected_requests": 0, "syncs": 0}

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.committer = _Committer(self.spool, min(self.config.rotate_seconds, 5.0), self.counts)
                self.committer.task = asyncio.create_task(self.committer.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.committer is not None:
                    await self.committer.stop()
                log.info("spool closed: %s", json.dumps(self.counts))
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict, receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            alive = self.committer is not None and self.committer.task is not None and not self.committer.task.done()
            await _answer(send, 200 if alive else 503, {"status": "ok" if alive else "writer stopped", **self.counts})
            return
        if method != "POST":
            await _answer(send, 405, {"error": "only POST delivers events"}, [(b"allow", b"POST")])
            return
        headers = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        if not self._authorized(headers.get("authorization")):
            self.counts["rejected_requests"] += 1
            log.warning("401 from %s: missing or wrong credentials", _client(scope))
            await _answer(send, 401, {"error": "unauthorized"}, [(b"www-authenticate", b'Bearer realm="repoaudit"')])
            return
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _JSON_TYPES:
            self.counts["rejected_requests"] += 1
            await _answer(send, 415, {"error": f"content type {content_type or 'none'!r} is not JSON"})
            return
        body = await self._read_body(headers, receive, send)
        if body is None:
            self.counts["rejected_requests"] += 1
            return
        try:
            doc = json.loads(body)
            origin, events = envelope_events(doc)
        except (ValueError, EventError) as exc:
            self.counts["rejected_requests"] += 1
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("400 from %s: %s", _client(scope), reason)
            await _answer(send, 400, {"error": reason})
            return
        bodies = doc["events"] if origin == "distribution" else [doc]
        try:
            await self.committer.write(spool_lines(origin, bodies))
        except Exception:
            await _answer(send, 503, {"error": "spool write failed"})
            return
        self.counts["accepted_requests"] += 1
        self.counts["accepted_events"] += len(events)
        await _answer(send, 200, {"accepted": len(events)})

    # -- pieces --------------------------------------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.config.token:
            return hmac.compare_digest(value.encode(), self.config.token.encode())
        if scheme.lower() == "basic" and self.config.basic:
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(given, self.config.basic.encode())
        return False

    async def _read_body(self, headers: dict, receive, send: Send) -> bytes | None:
        limit = self.config.max_body
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _answer(send, 413 if length.isdigit() else 400,
                          {"error": f"body over {limit} bytes" if length.isdigit() else "bad Content-Length"})
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _answer(send, 413, {"error": f"body over {limit} bytes"})
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _client(scope: dict) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown client"


async def _answer(send: Send, status: int, doc: dict[str, Any], extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(doc).encode() + b"\n"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


def serve(spool_dir: str, config: ReceiverConfig, *, host: str = "0.0.0.0", port: int = 8080,
          log_level: str = "info", access_log: bool = False) -> None:
    """Run the receiver until SIGTERM or SIGINT (uvicorn's handlers: in-flight requests finish first)."""
    import uvicorn
    spool = Spool(spool_dir, max_bytes=config.rotate_bytes, max_age=config.rotate_seconds)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A long-running server's own --log-level decides, also over the CLI's -q/-v for one-shot commands.
    logging.getLogger("repoaudit").setLevel(log_level.upper())
    for path in spool.recovered:
        log.info("closed a spool file a previous receiver left open: %s", path.name)
    app = EventReceiver(spool, config)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="on", log_level=log_level,
                                           access_log=access_log, timeout_graceful_shutdown=30))
    server.run()
