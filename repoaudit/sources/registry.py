"""Async client for the OCI Distribution API (Docker Registry HTTP API v2).

One ``httpx.AsyncClient`` per run: a keep-alive pool sized to the concurrency
limit, HTTP/2 when the server offers it over TLS. Every request goes through
:meth:`RegistryClient._request`, which holds the concurrency semaphore, applies
the injected :class:`~repoaudit.model.retry.RetryPolicy` and turns failures into the
errors of :mod:`repoaudit.errors`; no httpx exception leaves this module.

A registry is not trusted to end what it starts. Every response is read as a
stream against a size cap and a total deadline (:class:`Limits`), redirects are
followed here, one hop at a time and without credentials off the registry's
origin, and pagination stops on a repeated URL or page. Names, tags and digests
are checked before they become part of a URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import select
import ssl
import sys
import urllib.request
from collections import Counter, deque
from typing import Any, Awaitable, Callable

import h2.events
import httpcore
import httpx

from repoaudit._version import __version__
from repoaudit.errors import (
    AuthenticationError,
    BudgetExhausted,
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    DigestMismatch,
    InvalidDocument,
    InvalidResponse,
    NotFoundError,
    PaginationError,
    RegistryError,
    RegistryHTTPError,
    RegistryUnreachable,
    RequestBudgetExceeded,
    ResponseTooLarge,
    TooManyRedirects,
    one_line,
)
from repoaudit.model.documents import (
    OCI_INDEX,
    catalog_page,
    check_digest,
    is_valid_repository,
    is_valid_tag,
    load_json,
    printable,
    referrers_page,
    tag_list_page,
)
from repoaudit.model.limits import _MAX_ERROR_BODY, Limits
from repoaudit.model.manifest import (
    ACCEPT,
    Descriptor,
    FetchedManifest,
    sha256_digest,
    verify_digest,
)
from repoaudit.model.options import ClientOptions, Target
from repoaudit.sources.adaptive import AdaptiveLimit
from repoaudit.sources.auth import RegistryAuth
from repoaudit.sources.pagination import next_link
from repoaudit.sources.ratelimit import RECORDED, RateLimit, read_rate_limit
from repoaudit.sources.tls import ssl_context

log = logging.getLogger(__name__)


class _Retry(Exception):
    """Raised by a ``parse`` callback: this content may come out right on another try (corrupted in transit)."""

    def __init__(self, cls: type[RegistryError], message: str):
        self.cls = cls
        self.message = message


async def _read_capped(response: httpx.Response, cap: int, *, truncate: bool = False) -> bytes:
    """The body, decoded, stopping at ``cap`` bytes: an error past it, or the first ``cap`` with ``truncate``."""
    length = response.headers.get("content-length", "")
    if not truncate and length.isdigit() and int(length) > cap:
        raise ResponseTooLarge(f"{_label(response)} announces {int(length):,} bytes, more than the "
                               f"{cap:,}-byte cap")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > cap:
            if truncate:
                chunks.append(chunk[:len(chunk) - (total - cap)])
                break
            raise ResponseTooLarge(f"{_label(response)} is larger than the {cap:,}-byte cap")
        chunks.append(chunk)
    body = b"".join(chunks)
    # httpx keeps a read body here; setting it lets .json()/.content work on what was read, and
    # keeps httpx from reading the rest of the stream itself when it handles an auth round trip.
    response._content = body
    return body


def _label(response: httpx.Response) -> str:
    return f"the response to {response.request.method} {response.request.url.path}"


class _BoundedAuth(httpx.Auth):
    """:class:`RegistryAuth` with every body it makes httpx read bounded.

    httpx reads the whole body of any response that passes through an auth flow
    asking for bodies, the final one included; that would undo the streaming
    reads. Here only the responses the flow itself looks at are read (token
    answers, challenges), each with a cap; the final one is left to the caller.
    """

    requires_response_body = False

    def __init__(self, inner: RegistryAuth, limits: Limits):
        self.inner = inner
        self.limits = limits
        inner.requires_response_body = False

    async def async_auth_flow(self, request: httpx.Request):
        flow = self.inner.async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            if outgoing is not request:
                await _read_capped(response, self.limits.token_body)
            elif response.status_code == 401:
                await _read_capped(response, self.limits.error_body, truncate=True)
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return
            except (RecursionError, OverflowError, ValueError, TypeError, AttributeError, KeyError) as exc:
                # The flow reads a token answer as a registry wrote it (a 10**400 expires_in, JSON nested
                # past the recursion limit); whatever it trips on is a bad answer, not a bug here.
                raise AuthenticationError(f"unusable answer from {response.request.url.host} while "
                                          f"authenticating ({exc.__class__.__name__})",
                                          registry=request.url.netloc.decode()) from None


def error_summary(response: httpx.Response) -> tuple[str, tuple[str, ...]]:
    """Turn ``{"errors":[{"code","message","detail"}]}`` into one line and its codes."""
    body = response.content[:_MAX_ERROR_BODY]
    codes: list[str] = []
    parts: list[str] = []
    try:
        doc = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        errors = None
    for err in errors or []:
        if not isinstance(err, dict):
            continue
        # One line, however the registry spells it: a code or message may be anything JSON holds.
        code = one_line(err.get("code") or "")[:100]
        msg = one_line(err.get("message") or "")[:300]
        detail = err.get("detail")
        codes.append(code)
        text = f"{code}: {msg}" if code else msg
        if detail not in (None, "", {}, []):
            text += f" ({json.dumps(detail, separators=(',', ':'))[:200]})"
        parts.append(text)
    reason = response.reason_phrase or ""
    summary = f"HTTP {response.status_code} {reason}".strip()
    if parts:
        summary += ": " + "; ".join(parts)
    elif response.status_code == 400 and body.startswith(b"Client sent an HTTP request to an HTTPS server"):
        # Go's net/http (Distribution, Harbor, Zot) answers plain HTTP on a TLS port this way.
        url = response.request.url
        summary += f" (the registry speaks TLS: use https://{url.netloc.decode()})"
    return summary, tuple(codes)


_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


# Connections per pool shard. httpcore's pool re-examines every connection it holds (idle? expired?
# readable?) and every queued request each time a request starts or ends, so its cost per request
# grows with the pool: at 64 connections it was most of a collection's CPU. Shards of this many
# connections keep that cost flat however high the concurrency.
POOL_SHARD = 8


def _environment_proxy(url: str) -> bool:
    """Whether HTTP(S)_PROXY / ALL_PROXY (less NO_PROXY) would route ``url``: httpx applies environment
    proxies only to a client without its own transport, so such runs keep httpx's single pool."""
    proxies = urllib.request.getproxies_environment()
    scheme = url.split("://", 1)[0]
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(httpx.URL(url).host, proxies)


def _readable(sock) -> bool:
    """Whether a socket has something to read now (for an idle connection: the server closed it)."""
    fd = sock.fileno() if sock is not None else -1
    if fd < 0:
        return True
    if sys.platform == "win32" or not hasattr(select, "poll"):
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


# What a connection may hold unread before asyncio stops reading its socket (a body read slower than it
# arrives, or one the reader stops reading at its cap, stays this small).
_READ_AHEAD = 256 * 1024


class _Protocol(asyncio.Protocol):
    """A connection's socket as asyncio hands it over: the bytes arrived, whether it ended, whether writes wait."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.ended: BaseException | bool = False  # True at the peer's end of stream, the error that broke it
        self.reader: asyncio.Future | None = None
        self.writer: asyncio.Future | None = None
        self.paused = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _READ_AHEAD:
            self.transport.pause_reading()
        self._wake("reader")

    def eof_received(self):
        self.ended = self.ended or True
        self._wake("reader")
        return False

    def connection_lost(self, exc) -> None:
        if exc is not None and self.ended is False:
            self.ended = exc
        self.ended = self.ended or True
        self._wake("reader")
        self._wake("writer")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake("writer")

    def _wake(self, which: str) -> None:
        future = getattr(self, which)
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, which: str, timeout: float | None) -> None:
        """Until the reader (or writer) is woken; TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        setattr(self, which, future)
        expiry = None if timeout is None else loop.call_later(timeout, _expire, future)
        try:
            await future
        finally:
            setattr(self, which, None)
            if expiry is not None:
                expiry.cancel()


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _Stream(httpcore.AsyncNetworkStream):
    """A connection on asyncio's own transports, for httpcore.

    httpcore's default, through anyio, yields a turn of the event loop on every read and every write, even
    with the bytes at hand, and opens a cancel scope for each: an answer that has arrived waited a turn
    behind every other ready task each time, and the scopes were a tenth of a collection's CPU. Here a read
    returns what has arrived at once, and a write hands the bytes to the transport (it waits only when
    asyncio's buffer is full), so a cancelled writer never leaves half a TLS record behind.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol):
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks:
            if protocol.ended is False:
                try:
                    await protocol.wait("reader", timeout)
                except TimeoutError:
                    raise httpcore.ReadTimeout("timed out reading from the registry") from None
            if not protocol.chunks:
                self._raise_broken(httpcore.ReadError)
                return b""
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            protocol.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        before = protocol.buffered
        protocol.buffered -= len(chunk)
        if before > _READ_AHEAD >= protocol.buffered and protocol.ended is False:
            self._transport.resume_reading()
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.ended is not False or self._transport.is_closing():
            self._raise_broken(httpcore.WriteError)
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if protocol.paused:
            try:
                await protocol.wait("writer", timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out writing to the registry") from None
            self._raise_broken(httpcore.WriteError)

    def _raise_broken(self, error: type[httpcore.NetworkError]) -> None:
        """Raise what broke the connection, if something did: a TLS alert as itself (its reason, a refused
        client certificate say, is what to report), anything else as ``error``."""
        ended = self._protocol.ended
        if isinstance(ended, ssl.SSLError):
            raise ended
        if isinstance(ended, BaseException):
            raise error(str(ended) or type(ended).__name__) from ended

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(self._transport, self._protocol, ssl_context, server_hostname=server_hostname), timeout)
        except asyncio.TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (ssl.SSLError, OSError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        self._protocol.transport = transport
        return _Stream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "is_readable":  # asked of an idle connection: something came, or it ended
            protocol = self._protocol
            if protocol.chunks or protocol.ended is not False or transport.is_closing():
                return True
            # A close the event loop has not yet read: a server closing after its answer is seen before
            # the next request is written into the dead connection.
            return _readable(transport.get_extra_info("socket"))
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        return None


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio's transports (:class:`_Stream`)."""

    def __init__(self):
        self.connects = 0  # connections opened (tests, benchmarks)

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connects += 1
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        return await self._connect(loop.create_connection(_Protocol, host, port, local_addr=local), timeout,
                                   socket_options)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return await self._connect(asyncio.get_running_loop().create_unix_connection(_Protocol, path), timeout,
                                   socket_options)

    async def _connect(self, connecting, timeout, socket_options) -> _Stream:
        try:
            transport, protocol = await asyncio.wait_for(connecting, timeout)
        except asyncio.TimeoutError:
            raise httpcore.ConnectTimeout("timed out connecting") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Lock:
    """httpcore's lock on asyncio's own: anyio's yields a turn of the event loop on every acquire, even when
    free, and httpcore takes one twice a request (four times over HTTP/2): each answer waited that many
    turns behind every other answer ready at the moment."""

    __slots__ = ("_lock",)

    def __init__(self):
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> _Lock:
        await self._lock.acquire()
        return self

    async def __aexit__(self, *exc) -> None:
        self._lock.release()


class _Semaphore:
    """httpcore's semaphore (HTTP/2's streams at once) on asyncio's own, for the reason of :class:`_Lock`."""

    __slots__ = ("_semaphore",)

    def __init__(self, bound: int):
        self._semaphore = asyncio.Semaphore(bound)

    async def acquire(self) -> None:
        await self._semaphore.acquire()

    async def release(self) -> None:
        self._semaphore.release()


_HTTPCORE_LOCK = getattr(getattr(httpcore, "_synchronization", None), "AsyncLock", None)


def _native_locks(connection, *names: str) -> None:
    for name in names:  # left as httpcore made them if its locks move
        if _HTTPCORE_LOCK is not None and isinstance(getattr(connection, name, None), _HTTPCORE_LOCK):
            setattr(connection, name, _Lock())


class _HTTP11(httpcore.AsyncHTTP11Connection):
    """httpcore's HTTP/1.1 connection with :class:`_Lock`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _native_locks(self, "_state_lock")


class _HTTP2(httpcore.AsyncHTTP2Connection):
    """httpcore's HTTP/2 connection where a stream whose answer has been read never waits for the network,
    and a read wakes only the streams it filed something for.

    In httpcore every stream wanting its next event queues for one read lock, and whoever holds it
    reads the socket until data comes: a stream whose answer another reader has already filed waits
    in that queue behind streams blocked on the network, up to a whole round trip more each time.
    Here one stream reads at a time; after each read it wakes the streams that now have an event
    (waking every waiting stream instead cost each read a task step per stream in flight: 30 steps a
    request at 16 in flight, a quarter of the client's CPU), and a reader whose own answer came hands
    the reading to one stream still waiting.
    """

    _reading = False
    _waiting: dict[int, asyncio.Future] | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _native_locks(self, "_init_lock", "_state_lock", "_read_lock", "_write_lock")

    @property
    def _max_streams_semaphore(self) -> _Semaphore:
        try:
            return self.__dict__["_max_streams_semaphore"]
        except KeyError:
            raise AttributeError("_max_streams_semaphore") from None

    @_max_streams_semaphore.setter
    def _max_streams_semaphore(self, semaphore) -> None:
        # httpcore makes it once the server's settings are known, as its own AsyncSemaphore(bound).
        bound = getattr(semaphore, "_bound", None)
        self.__dict__["_max_streams_semaphore"] = _Semaphore(bound) if isinstance(bound, int) else semaphore

    async def _receive_stream_event(self, request: httpcore.Request, stream_id: int):
        events = self._events
        while not events.get(stream_id):
            if self._reading:
                waiting = self._waiting
                if waiting is None:
                    waiting = self._waiting = {}
                future = asyncio.get_running_loop().create_future()
                waiting[stream_id] = future
                try:
                    await future
                except BaseException:
                    if waiting.get(stream_id) is future:
                        del waiting[stream_id]
                    elif not self._reading:
                        self._wake(True)  # woken to read but leaving (cancelled): the reading goes on to another
                    raise
                continue
            self._reading = True
            failed = True
            try:
                await self._receive_events(request, stream_id)
                failed = False
            finally:
                self._reading = False
                self._wake(failed or bool(events.get(stream_id)))
        event = events[stream_id].pop(0)
        if isinstance(event, h2.events.StreamReset):
            raise httpcore.RemoteProtocolError(event)
        return event

    def _wake(self, hand_over: bool) -> None:
        """Wake the waiting streams that have an event now and, if the reader stops reading (``hand_over``:
        its answer came, or the read failed and each stream must meet the failure itself), one more to read."""
        waiting = self._waiting
        if not waiting:
            return
        events = self._events
        reader = None
        for stream_id, future in list(waiting.items()):
            if events.get(stream_id) or self._connection_terminated is not None:
                del waiting[stream_id]
                future.done() or future.set_result(None)
            elif hand_over and reader is None:
                reader = stream_id
        if reader is not None:
            future = waiting.pop(reader)
            future.done() or future.set_result(None)

    async def _write_outgoing_data(self, request: httpcore.Request) -> None:
        # Every stream flushes after every read, most often with nothing to send (a window update is due
        # only now and then): that took the write lock and a timeout scope for an empty write each time.
        if self._write_exception is None and not getattr(self._h2_state, "_data_to_send", True):
            return
        await super()._write_outgoing_data(request)


class _Connection(httpcore.AsyncHTTPConnection):
    """httpcore's connection, speaking HTTP/2 through :class:`_HTTP2`, without a lock per request once open
    (the lock only guards opening it; an open connection is never replaced)."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if not self.can_handle_request(request.url.origin):
            raise RuntimeError(f"Attempted to send request to {request.url.origin} on connection to {self._origin}")
        connection = self._connection
        if connection is None:
            try:
                async with self._request_lock:
                    if self._connection is None:
                        stream = await self._connect(request)
                        ssl_object = stream.get_extra_info("ssl_object")
                        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                            self._connection = _HTTP2(origin=self._origin, stream=stream,
                                                      keepalive_expiry=self._keepalive_expiry)
                        else:
                            self._connection = _HTTP11(
                                origin=self._origin, stream=stream, keepalive_expiry=self._keepalive_expiry)
            except BaseException:
                self._connect_failed = True
                raise
            connection = self._connection
        return await connection.handle_async_request(request)


class _Connections:
    """One shard's connections, handed straight to requests: httpcore's pool without its bookkeeping.

    httpcore's pool queues every request, takes an anyio lock, and re-examines every connection and
    queued request whenever a request starts or ends (for every connection it counted the idle ones
    by listing the whole pool again): a quarter of a collection's CPU. A shard never has more
    requests at once than connections (:class:`_ShardedTransport` sends each to the least busy), so a
    request takes the first free connection, or opens one, and waits only if neither exists. The
    connections, their reuse rules (keep-alive expiry, a socket the server closed, HTTP/2 streams
    shared on one connection) and every HTTP detail stay httpcore's.
    """

    def __init__(self, *, size: int, ssl_context: ssl.SSLContext, http2: bool, backend: _Backend,
                 keepalive_expiry: float | None):
        self._size = size
        self._ssl_context = ssl_context
        self._http2 = http2
        self._backend = backend
        self._keepalive_expiry = keepalive_expiry
        self._connections: list[httpcore.AsyncHTTPConnection] = []
        # Requests a connection carries now: between being picked and marking itself active an HTTP/1.1
        # connection still looks idle, so it is not picked twice.
        self._users: dict[httpcore.AsyncHTTPConnection, int] = {}
        self._waiters: deque[asyncio.Future] = deque()

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        scheme = request.url.scheme
        if scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme.decode()}://'.")
        origin = request.url.origin
        while True:
            connection, closing = self._pick(origin)
            for old in closing:
                await old.aclose()
            if connection is None:
                await self._wait(request.extensions.get("timeout", {}).get("pool"))
                continue
            users = self._users
            users[connection] = users.get(connection, 0) + 1
            try:
                response = await connection.handle_async_request(request)
            except httpcore.ConnectionNotAvailable:
                self._done(connection)  # it turned out to speak HTTP/1.1, busy: try another
                continue
            except BaseException:
                self._done(connection)
                raise
            return httpcore.Response(status=response.status, headers=response.headers,
                                     content=_GivesBack(response.stream, self._done, connection),
                                     extensions=response.extensions)

    def _pick(self, origin: httpcore.Origin):
        """A connection for a request to ``origin`` (None: wait), and the connections to close first."""
        connections, users = self._connections, self._users
        closing = []
        shared = None
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif users.get(connection):
                if shared is None and self._http2 and connection.can_handle_request(origin) \
                        and connection.is_available():
                    shared = connection  # HTTP/2 (or about to be): another stream on it
            elif connection.has_expired():
                connections.remove(connection)
                closing.append(connection)
            elif connection.can_handle_request(origin) and connection.is_available():
                return connection, closing
        if shared is not None:
            return shared, closing
        if len(connections) >= self._size:
            idle = next((c for c in connections if not users.get(c) and c.is_idle()), None)
            if idle is None:
                return None, closing
            connections.remove(idle)  # idle, but for another origin (a redirect's): make room
            closing.append(idle)
        connection = _Connection(origin, ssl_context=self._ssl_context, keepalive_expiry=self._keepalive_expiry,
                                 http1=True, http2=self._http2, network_backend=self._backend)
        connections.append(connection)
        return connection, closing

    async def _wait(self, timeout: float | None) -> None:
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            if _timeout is None or timeout is None:
                await asyncio.wait_for(future, timeout)
            else:
                async with _timeout(timeout):
                    await future
        except asyncio.TimeoutError:
            raise httpcore.PoolTimeout("no connection became free in time") from None
        finally:
            if not future.done():
                future.cancel()

    def _done(self, connection: httpcore.AsyncHTTPConnection) -> None:
        left = self._users.get(connection, 0) - 1
        if left > 0:
            self._users[connection] = left
        else:
            self._users.pop(connection, None)
        waiters = self._waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                break

    async def aclose(self) -> None:
        connections, self._connections = self._connections, []
        for connection in connections:
            await connection.aclose()

    async def __aenter__(self) -> _Connections:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


class _GivesBack(httpx.AsyncByteStream):
    """A response body that calls ``give_back(item)`` once, when closed: a connection back to its
    :class:`_Connections`, a slot back to its shard of :class:`_ShardedTransport`."""

    def __init__(self, stream, give_back: Callable[[Any], None], item):
        self._stream = stream
        self._give_back = give_back
        self._item = item

    async def __aiter__(self):
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        try:
            if hasattr(self._stream, "aclose"):
                await self._stream.aclose()
        finally:
            if self._give_back is not None:
                give_back, self._give_back = self._give_back, None
                give_back(self._item)


def _pool_transport(limits: httpx.Limits, verify, http2: bool, backend: _Backend) -> httpx.AsyncHTTPTransport:
    """httpx's transport over :class:`_Connections` with :class:`_Backend` (httpx has no argument for either,
    so its pool is replaced with the same settings; left as httpx made it if httpx changes)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, verify=verify, http2=http2)
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool:
        transport._pool = _Connections(size=limits.max_connections, ssl_context=pool._ssl_context, http2=http2,
                                       backend=backend, keepalive_expiry=limits.keepalive_expiry)
    return transport


class _ShardedTransport(httpx.AsyncBaseTransport):
    """Several small connection pools behind one transport; each request goes to the least busy one.

    With the client's limit holding the requests in flight to at most ``concurrency`` and
    ``ceil(concurrency / POOL_SHARD)`` shards of ``POOL_SHARD`` connections, the least busy
    shard always has a free connection, so no request waits inside a pool.

    Over HTTP/2 one connection carries every request as its own stream: once an answer comes
    back as HTTP/2, every request goes to that answer's shard, whose pool multiplexes them
    over its one connection.
    """

    def __init__(self, concurrency: int, *, verify, http2: bool):
        count = max(1, -(-concurrency // POOL_SHARD))
        size = -(-concurrency // count)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.backend = _Backend()
        self._shards = [_pool_transport(limits, verify, http2, self.backend) for _ in range(count)]
        self._busy = [0] * count
        self._http2 = http2
        self.multiplexed: int | None = None  # the shard whose connection speaks HTTP/2, once one does
        self.peak = 0  # the most requests one shard has carried at once (tests, benchmarks)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        busy = self._busy
        index = self.multiplexed
        if index is None:
            index = busy.index(min(busy))
        busy[index] += 1
        if busy[index] > self.peak:
            self.peak = busy[index]
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            busy[index] -= 1
            raise
        if self._http2 and self.multiplexed is None and response.extensions.get("http_version") == b"HTTP/2":
            self.multiplexed = index
        # The connection is the shard's until the body is read or the response closed.
        response.stream = _GivesBack(response.stream, self._release, index)
        return response

    def _release(self, index: int) -> None:
        self._busy[index] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Cookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class RegistryClient:
    """The registry side of :class:`repoaudit.sources.base.Source`."""

    kind = "registry"

    def __init__(self, target: Target, options: ClientOptions | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, limits: Limits | None = None):
        self.target = target
        self.name = target.name
        self.options = options or ClientOptions()
        self.limits = limits or Limits()
        self.concurrency = self.options.concurrency
        self._sleep = sleep
        self._rng = random.Random()
        self.max_concurrency = self.options.max_concurrency_or_default
        self.limit = AdaptiveLimit(self.concurrency, self.max_concurrency)
        self.requests: Counter[str] = Counter()  # "GET manifest", "HEAD manifest", ... for benchmarks and tests
        self.http_versions: Counter[str] = Counter()  # "HTTP/1.1", "HTTP/2": answers by protocol
        self.rate_limit: dict[str, str] = {}
        # The registry's rate-limit budget as its last answer told it; None until one says. The collector
        # sets keep_budget (CollectOptions.keep_budget): requests that would spend the budget below it are
        # refused with BudgetExhausted, kept in budget_stop, so the run ends partial instead of on 429s.
        self.rate: RateLimit | None = None
        self.keep_budget: int | None = None
        self.budget_stop: BudgetExhausted | None = None
        self._budget_reason = ""
        self._rate_in_flight = 0  # spending requests sent but not answered: the last answer did not count them
        self.halted: CircuitOpen | None = None  # set when the circuit breaker stops the run
        self._exhausted_in_row = 0
        self._answered = False  # has the registry ever answered? (see _transport_attempts)
        self._halt_reason = ""
        self._spent: Counter[str] = Counter()  # HTTP exchanges per repository, redirects and retries included
        self._budget: dict[str, int] = {}
        self._origin = httpx.URL(target.url)
        self.auth = RegistryAuth(self.options.username, self.options.password,
                                 identity_token=self.options.identity_token)
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        verify = ssl_context(self.options.verify, self.options.cert)
        http2 = self.options.http2 and transport is None
        # A transport handed in (a test's fake) has no sockets behind it that a posture probe could reach.
        self.custom_transport = transport is not None
        if transport is None and self.options.proxy is None and not _environment_proxy(target.url):
            transport = _ShardedTransport(self.max_concurrency, verify=verify, http2=http2)
        self.transport = transport
        self._http = httpx.AsyncClient(
            base_url=target.url, auth=_BoundedAuth(self.auth, self.limits), transport=transport, limits=limits,
            timeout=httpx.Timeout(self.options.timeout), verify=verify, proxy=self.options.proxy, http2=http2,
            # Redirects are followed in _exchange: httpx would read a redirect's whole body.
            follow_redirects=False, headers={"User-Agent": f"{self.options.user_agent}/{__version__}"},
        )
        base = self._http.base_url
        self._base_reference = base._uri_reference._replace(query=None, fragment=None)
        self._base_path = base._uri_reference.path or "/"  # "http://host:5000/" holds the path ""
        # httpx hands every response to its cookie jar through urllib's request and response adapters;
        # registries seldom set cookies, so only the responses that do are looked at (the jar is the same).
        self._http._cookies = _Cookies(self._http.cookies.jar)

    async def aclose(self) -> None:
        limit = self.limit
        if limit.changes or limit.refusals:
            log.info("%s: requests in flight started at %d, ranged %d to %d, ended at %d (%d back-offs, %d answers "
                     "refused)", self.name, limit.start, limit.low, limit.peak, limit.limit, limit.cuts,
                     limit.refusals)
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    def set_request_budget(self, repository: str, tags: int) -> None:
        """Bound the requests ``repository`` may still take, now that its ``tags`` are known.

        A repository's work is its tags; a registry that makes it take many more
        requests than that (an endless chain of nested indexes) ends the
        repository with :class:`RequestBudgetExceeded`, not the run.
        """
        self._budget[repository] = (self._spent[repository] + self.limits.requests_per_repository
                                    + self.limits.requests_per_tag * tags)

    def _spend(self, repository: str | None) -> None:
        if repository is None:
            return
        budget = self._budget.get(repository)
        if budget is not None and self._spent[repository] >= budget:
            raise RequestBudgetExceeded(f"took more than {budget:,} requests, more than its tags can need; "
                                        f"stopped", registry=self.name, repository=repository)
        self._spent[repository] += 1

    async def _request(self, method: str, url: str | httpx.URL, *, what: str, repository: str | None = None,
                       headers: dict[str, str] | None = None, params: dict | None = None,
                       ok_statuses: tuple[int, ...] = (), max_body: int | None = None,
                       parse: Callable[[httpx.Response, bytes], Any] | None = None) -> tuple[httpx.Response, Any]:
        """One request with retries; returns the response and ``parse(response, body)`` (the body without one).

        Retried: 408/429/5xx, transport errors, and content ``parse`` says may be
        corrupted in transit (a digest mismatch, a short or garbled body). Not
        retried: answers that are wrong in themselves (4xx, invalid documents,
        a body over its cap, a deadline passed).
        """
        policy = self.options.retry
        attempt = 0
        while True:
            if self.halted is not None:
                raise CircuitOpen(self._halt_reason, registry=self.name, repository=repository)
            attempt += 1
            try:
                ticket = await self.limit.acquire()
                answer = None
                try:
                    spends = self._spend_budget(method, what, repository)
                    self.requests[f"{method} {what}"] += 1
                    try:
                        response, body = await self._exchange(method, url, what=what, repository=repository,
                                                              headers=headers, params=params, max_body=max_body)
                        answer = response
                    finally:
                        self._rate_in_flight -= spends
                finally:
                    if answer is None:
                        self.limit.release(ticket)
                    else:
                        self.limit.release(ticket, status=answer.status_code,
                                           retry_after=answer.headers.get("retry-after"))
                status = response.status_code
                if (status < 400 or status in ok_statuses) and parse is not None:
                    body = parse(response, body)
            except _Retry as retry:
                if attempt >= policy.attempts:
                    self._exhausted()
                    tries = f" (after {attempt} tries)" if attempt > 1 else ""
                    raise retry.cls(retry.message + tries, registry=self.name, repository=repository) from None
                await self._sleep(policy.delay(attempt, rng=self._rng))
                continue
            except ssl.SSLError as exc:
                # A TLS alert after the handshake (TLS 1.3 sends a refused client certificate that way)
                # escapes httpx's mapping; no retry mends a certificate.
                raise RegistryUnreachable(f"cannot reach {self.target.url}: {_describe_tls(exc)}",
                                          registry=self.name, repository=repository) from None
            except (httpx.TransportError, httpx.DecodingError, OSError) as exc:
                if attempt >= self._transport_attempts(exc, policy):
                    reason = _describe(exc, self.target.url)
                    closed = isinstance(exc, (httpx.ReadError, httpx.WriteError))
                    if closed and self.target.url.startswith("https:"):
                        # How a registry that wants a client certificate often shows it: the connection closes
                        # before any answer, without the TLS alert that names the reason.
                        reason += (" (the registry closed the TLS connection before answering; if it requires a "
                                   "client certificate: --cert and --key)")
                    self._exhausted()
                    if isinstance(exc, httpx.DecodingError):
                        # The registry was reached; what it sent (its Content-Encoding) could not be decoded.
                        raise InvalidResponse(f"{what} {_path_of(url)} could not be decoded after {attempt} tries: "
                                              f"{_describe(exc, self.target.url)}",
                                              registry=self.name, repository=repository) from None
                    raise RegistryUnreachable(f"cannot reach {self.target.url}: {reason}",
                                              registry=self.name, repository=repository) from None
                await self._sleep(policy.delay(attempt, rng=self._rng))
                continue
            except DeadlineExceeded:
                self._exhausted()  # a registry that trickles every answer is as good as down
                raise
            except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
                # Whatever else httpx can raise about an answer is the answer's fault, and not transient.
                raise InvalidResponse(f"{what} {_path_of(url)}: {_describe(exc, self.target.url)}",
                                      registry=self.name, repository=repository) from None
            self._note_rate_limit(response)
            self.http_versions[response.http_version] += 1
            self._answered = True
            if status < 400 or status in ok_statuses:
                self._exhausted_in_row = 0
                return response, body
            if status in policy.statuses and attempt < policy.attempts:
                await self._sleep(policy.delay(attempt, response.headers.get("retry-after"), rng=self._rng))
                continue
            summary, codes = error_summary(response)
            where = f"{what} {response.request.url.path}"
            if status in policy.statuses:
                self._exhausted()
            else:
                self._exhausted_in_row = 0  # an answer, if not the one wanted: the registry is there
            if status in (401, 403):
                hint = "credentials refused" if self.auth.has_credentials else "authentication required"
                raise AuthenticationError(f"{hint} for {where}: {summary}", registry=self.name, repository=repository)
            cls = NotFoundError if status == 404 else RegistryHTTPError
            tries = f" after {attempt} tries" if attempt > 1 else ""
            raise cls(f"{where} failed{tries}: {summary}", status=status, codes=codes,
                      registry=self.name, repository=repository)

    @property
    def head_is_free(self) -> bool:
        """Whether the registry counts pulls (manifest GETs) only, so a HEAD costs none of its budget."""
        return self.rate is not None and self.rate.pulls_only

    def _spend_budget(self, method: str, what: str, repository: str | None) -> bool:
        """Whether this request spends the rate-limit budget (then it is counted in flight until answered);
        :class:`BudgetExhausted` if it would leave less than ``keep_budget``, and for every one after."""
        rate = self.rate
        if rate is None or self.keep_budget is None or not rate.spends(method, what):
            return False
        if self.budget_stop is None and rate.remaining - self._rate_in_flight - 1 < self.keep_budget:
            of = f" of {rate.limit}" if rate.limit is not None else ""
            self._budget_reason = (f"stopped fetching with {rate.remaining}{of} left in the registry's rate-limit "
                                   f"budget ({self._rate_in_flight} more in flight), to keep {self.keep_budget} "
                                   f"(--keep-budget)")
            self.budget_stop = BudgetExhausted(self._budget_reason, registry=self.name)
            log.warning("%s: %s", self.name, self._budget_reason)
        if self.budget_stop is not None:
            raise BudgetExhausted(self._budget_reason, registry=self.name, repository=repository)
        self._rate_in_flight += 1
        return True

    def _transport_attempts(self, exc: BaseException, policy) -> int:
        """How many tries a transport error gets: none more for what no retry mends (a certificate, a
        protocol), few while the registry has never answered (a wrong URL should fail in seconds, not the
        minute the full backoff takes), the policy's number once it has (a blip in a long run)."""
        if isinstance(exc, httpx.UnsupportedProtocol) or _is_tls_failure(exc):
            return 1
        if not self._answered:
            return min(policy.attempts, 3)
        return policy.attempts

    def _exhausted(self) -> None:
        """Count a request that used up its retries; enough of them in a row open the circuit."""
        self._exhausted_in_row += 1
        if self._exhausted_in_row >= self.limits.breaker and self.halted is None:
            self._halt_reason = (f"stopped after {self._exhausted_in_row} requests in a row failed after all "
                                 f"their retries (the registry looks down or overloaded)")
            self.halted = CircuitOpen(self._halt_reason, registry=self.name)

    async def _exchange(self, method: str, url: str | httpx.URL, *, what: str, repository: str | None,
                        headers: dict[str, str] | None, params: dict | None,
                        max_body: int | None) -> tuple[httpx.Response, bytes]:
        """One attempt: send, follow redirects, read the body, all within the total deadline."""
        deadline = self.limits.deadline_factor * self.options.timeout
        if log.isEnabledFor(logging.DEBUG):  # -vv: each request (never its headers: they carry credentials)
            log.debug("%s %s (%s)", method, _path_of(url), what)
        try:
            if _timeout is None:
                return await asyncio.wait_for(self._follow(method, url, what=what, repository=repository,
                                                           headers=headers, params=params, max_body=max_body),
                                              deadline)
            async with _timeout(deadline):  # no task of its own, unlike wait_for
                return await self._follow(method, url, what=what, repository=repository, headers=headers,
                                          params=params, max_body=max_body)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"{what} {_path_of(url)} was not complete after {deadline:g} s (the "
                                   f"per-request deadline)", registry=self.name, repository=repository) from None

    async def _follow(self, method: str, url: str | httpx.URL, *, what: str, repository: str | None,
                      headers: dict[str, str] | None, params: dict | None,
                      max_body: int | None) -> tuple[httpx.Response, bytes]:
        try:
            if params is None and isinstance(url, str):
                url = self._url(url)
            request = self._http.build_request(method, url, headers=headers, params=params)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"cannot request {what} {printable(str(url))}: {exc}") from None
        chain = [str(request.url)]
        while True:
            self._spend(repository)
            # Credentials only ever go to the registry's own origin; a redirect elsewhere (blob storage)
            # is sent bare, as httpx itself would strip the Authorization header.
            auth = httpx.USE_CLIENT_DEFAULT if _same_origin(request.url, self._origin) else None
            try:
                response = await self._http.send(request, auth=auth, stream=True, follow_redirects=False)
            except httpx.RemoteProtocolError as exc:
                if "location header" not in str(exc):
                    raise
                # httpx builds the next request even when not following, and reports a Location it
                # cannot parse as a protocol error, which would be retried as if the network had failed.
                raise InvalidResponse(f"{what} {request.url.path} redirects to an invalid URL ({exc})",
                                      registry=self.name, repository=repository) from None
            try:
                if not response.has_redirect_location:
                    status = response.status_code
                    error = status >= 400
                    if hasattr(response, "_content"):
                        body = response.content  # a challenge the auth flow has read (capped) already
                    elif method == "HEAD" or max_body is None or error:
                        body = await _read_capped(response, self.limits.error_body, truncate=True)
                    else:
                        body = await _read_capped(response, max_body)
                    return response, body
                try:
                    nxt = request.url.join(response.headers["location"])
                except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
                    raise InvalidResponse(f"{what} {request.url.path} redirects to an invalid URL "
                                          f"{printable(response.headers.get('location', ''))} ({exc})",
                                          registry=self.name, repository=repository) from None
                if str(nxt) in chain or len(chain) > self.limits.max_redirects:
                    loop = "a redirect loop" if str(nxt) in chain else f"more than {self.limits.max_redirects} redirects"
                    raise TooManyRedirects(f"{what} {chain[0]}: {loop} ({' -> '.join(_short(u) for u in chain[:3])}"
                                           f"{' -> …' if len(chain) > 3 else ''})",
                                           registry=self.name, repository=repository)
                chain.append(str(nxt))
                hop_method = "GET" if response.status_code == 303 and method != "HEAD" else method
                request = self._http.build_request(hop_method, nxt, headers=headers)
            finally:
                await response.aclose()

    def _url(self, path: str) -> httpx.URL | str:
        """``path`` on the registry's base URL, without httpx parsing it again: for the paths this client
        builds from names, tags and digests already checked (plain characters, no dot segment, no query),
        the URL httpx would make is the base URL with the path appended. Anything else is left to httpx."""
        if not _PLAIN_PATH(path):
            return path
        url = httpx.URL.__new__(httpx.URL)
        url._uri_reference = self._base_reference._replace(path=self._base_path + path[1:])
        return url

    def _note_rate_limit(self, response: httpx.Response) -> None:
        # Kept as sent so the snapshot records the registry's last word; read as the run goes for keep_budget.
        # One pass over the answer's headers (lower-cased names), not a case-blind search for each field.
        found: dict[str, str] = {}
        for key, value in response.headers.multi_items():
            if key in _RECORDED:
                found[key] = f"{found[key]}, {value}" if key in found else value  # as Headers.get joins them
        if not found:
            return
        for key, value in found.items():
            self.rate_limit[key] = value[:200]
        rate = read_rate_limit(found)
        if rate is not None:
            self.rate = rate

    async def ping(self) -> None:
        """``GET /v2/``: 200, or 401 answered by the auth flow; anything else is an error."""
        await self._request("GET", "/v2/", what="ping")

    async def _paginate(self, path: str, key: str, what: str, repository: str | None = None) -> list[str]:
        """Every page of a ``Link: rel="next"`` chain, which must stay on this path and never repeat."""
        items: list[str] = []
        url: httpx.URL | str = path
        params: dict | None = {"n": self.options.page_size}
        seen: set[str] = set()
        previous: list[str] | None = None
        checker = catalog_page if key == "repositories" else tag_list_page

        def parse(response: httpx.Response, body: bytes) -> list[str]:
            where = f"{what} {response.request.url.path}"
            try:
                doc = load_json(body, where)
            except InvalidDocument as exc:
                # A truncated or garbled page is not JSON; a page that is JSON carries no checksum, so
                # only this failure can be told from the registry's real answer and tried again.
                raise _Retry(InvalidResponse, str(exc)) from None
            try:
                return checker(doc, where)
            except InvalidDocument as exc:
                raise InvalidDocument(str(exc), registry=self.name, repository=repository) from None

        while url is not None:
            if len(seen) >= self.limits.max_pages:
                raise PaginationError(f"{what} has more than {self.limits.max_pages:,} pages; stopped",
                                      registry=self.name, repository=repository)
            seen.add(str(self._http.build_request("GET", url, params=params).url))
            response, page = await self._request("GET", url, what=what, repository=repository, params=params,
                                                 max_body=self.limits.page_body, parse=parse)
            if page and page == previous:
                raise PaginationError(f"{what} {path}: the next page repeats the last one ({len(page)} "
                                      f"entries); stopped", registry=self.name, repository=repository)
            previous = page
            items.extend(page)
            try:
                url = next_link(response)
            except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
                raise InvalidResponse(f"{what} {path}: invalid Link header ({exc})",
                                      registry=self.name, repository=repository) from None
            params = None  # the link carries n and last
            if url is None:
                break
            if not _same_origin(url, response.request.url) or url.path != response.request.url.path:
                # A next page elsewhere would file another listing's names under this one.
                raise PaginationError(f"{what} {path}: Link rel=next leaves the listing "
                                      f"({printable(str(url), 80)}); stopped",
                                      registry=self.name, repository=repository)
            if str(url) in seen:
                raise PaginationError(f"{what} {path}: Link rel=next points back at a page already read "
                                      f"({printable(str(url), 80)}); stopped",
                                      registry=self.name, repository=repository)
        return items

    async def list_repositories(self) -> list[str]:
        """Every name the catalog lists, as strings; the caller checks each against the name grammar."""
        return await self._paginate("/v2/_catalog", "repositories", "catalog")

    async def list_tags(self, repository: str) -> list[str]:
        """Every tag listed, as strings; the caller checks each against the tag grammar."""
        return await self._paginate(f"/v2/{self._name(repository)}/tags/list", "tags", "tags", repository)

    def _name(self, repository: str) -> str:
        if not is_valid_repository(repository):
            raise ConfigError(f"refusing to request repository {printable(repository)}: not a valid repository "
                              f"name")
        return repository

    def _reference(self, repository: str, reference: str) -> str:
        """A tag or digest checked before it becomes a path segment: ``?``, ``#``, ``/`` or ``..`` never can."""
        if is_valid_tag(reference):
            return reference
        try:
            return check_digest(reference, "reference", "")
        except InvalidDocument:
            raise ConfigError(f"{self.name}/{repository}: refusing to request {printable(reference)}: neither "
                              f"a tag nor a digest") from None

    def _served_digest(self, response: httpx.Response, repository: str) -> str | None:
        served = response.headers.get("docker-content-digest")
        if served is None:
            return None
        try:
            return check_digest(served, f"manifest {response.request.url.path}", "Docker-Content-Digest header")
        except InvalidDocument as exc:
            raise InvalidResponse(str(exc), registry=self.name, repository=repository) from None

    async def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        path = f"/v2/{self._name(repository)}/manifests/{self._reference(repository, reference)}"
        by_digest = not is_valid_tag(reference)

        def parse(response: httpx.Response, body: bytes) -> FetchedManifest:
            served = self._served_digest(response, repository)
            expected = reference if by_digest else served
            if expected and not verify_digest(expected, body):
                # Corrupted in transit (a flipped bit, a body cut short with an honest length) looks like
                # this too, so it is tried again before it is believed.
                raise _Retry(DigestMismatch, f"manifest {reference} was served as {expected} but its content "
                                             f"hashes to {sha256_digest(body)}")
            return FetchedManifest(expected or sha256_digest(body), response.headers.get("content-type"), body)

        _, fetched = await self._request("GET", path, what="manifest", repository=repository,
                                         headers={"Accept": ACCEPT}, max_body=self.limits.manifest_body,
                                         parse=parse)
        return fetched

    async def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points at, without the body; ``None`` when the server does not say."""
        path = f"/v2/{self._name(repository)}/manifests/{self._reference(repository, reference)}"
        response, _ = await self._request("HEAD", path, what="manifest", repository=repository,
                                          headers={"Accept": ACCEPT})
        return self._served_digest(response, repository)

    async def get_blob(self, repository: str, digest: str, *, max_size: int | None = None) -> bytes:
        """A blob checked against its digest; capped at ``Limits.config_body`` (repoaudit reads configs only)."""
        try:
            checked = check_digest(digest, "blob", "")
        except InvalidDocument:
            raise ConfigError(f"{self.name}/{repository}: refusing to request blob {printable(digest)}: not a "
                              f"digest") from None

        def parse(response: httpx.Response, body: bytes) -> bytes:
            if not verify_digest(digest, body):
                raise _Retry(DigestMismatch, f"blob {digest} content hashes to {sha256_digest(body)}")
            return body

        _, body = await self._request("GET", f"/v2/{self._name(repository)}/blobs/{checked}", what="blob",
                                      repository=repository, max_body=max_size or self.limits.config_body,
                                      parse=parse)
        return body

    async def list_referrers(self, repository: str, digest: str, artifact_type: str | None = None
                             ) -> list[Descriptor] | None:
        """The OCI 1.1 referrers of ``digest`` (``GET /v2/<name>/referrers/<digest>``), every page of them.

        ``None`` when the registry has no referrers API (it answers 404, as Distribution 2.8 does; the
        spec requires 200 with an empty index for a subject that has none). A registry that ignored the
        ``artifactType`` filter (no ``OCI-Filters-Applied: artifactType``) is filtered here instead.
        """
        path = f"/v2/{self._name(repository)}/referrers/{check_digest(digest, 'referrers subject', '')}"
        url: httpx.URL | str = path
        params: dict | None = {"artifactType": artifact_type} if artifact_type else None
        found: list[Descriptor] = []
        seen: set[str] = set()

        def parse(response: httpx.Response, body: bytes) -> list[Descriptor] | None:
            if response.status_code == 404:
                return None
            where = f"referrers {response.request.url.path}"
            try:
                doc = referrers_page(load_json(body, where), where)
            except InvalidDocument as exc:
                raise InvalidDocument(str(exc), registry=self.name, repository=repository) from None
            return [Descriptor(d.get("mediaType"), d["digest"], d.get("size"), None, d.get("annotations"),
                               d.get("artifactType")) for d in doc["manifests"]]

        while url is not None:
            if len(seen) >= self.limits.max_pages:
                raise PaginationError(f"referrers of {digest} have more than {self.limits.max_pages:,} pages; "
                                      f"stopped", registry=self.name, repository=repository)
            seen.add(str(self._http.build_request("GET", url, params=params).url))
            response, page = await self._request("GET", url, what="referrers", repository=repository,
                                                 params=params, headers={"Accept": OCI_INDEX}, ok_statuses=(404,),
                                                 max_body=self.limits.page_body, parse=parse)
            if page is None:
                return None
            applied = {f.strip() for f in response.headers.get("oci-filters-applied", "").split(",")}
            if artifact_type and "artifactType" not in applied:
                page = [d for d in page if d.artifact_type == artifact_type]
            found.extend(page)
            params = None  # the link carries the query
            url = next_link(response)
            if url is not None and (not _same_origin(url, response.request.url) or str(url) in seen):
                raise PaginationError(f"referrers {path}: Link rel=next leaves the listing or repeats a page "
                                      f"({printable(str(url), 80)}); stopped", registry=self.name,
                                      repository=repository)
        return found

    async def delete_manifest(self, repository: str, digest: str) -> None:
        checked = self._reference(repository, digest)
        await self._request("DELETE", f"/v2/{self._name(repository)}/manifests/{checked}", what="delete",
                            repository=repository)


# A path httpx would leave as written: unreserved characters and the few delimiters a path of names, tags
# and digests holds, starting at the root, with no dot segment or empty segment for it to normalise.
_PLAIN_PATH = re.compile(r"/(?!.*//)(?!.*/\.)[A-Za-z0-9._~:@+/-]*").fullmatch


_RECORDED = frozenset(RECORDED)


def _same_origin(url: httpx.URL, origin: httpx.URL) -> bool:
    return (url.scheme, url.host, url.port) == (origin.scheme, origin.host, origin.port)


def _path_of(url: str | httpx.URL) -> str:
    return url.path if isinstance(url, httpx.URL) else url.split("?", 1)[0]


def _short(url: str) -> str:
    return printable(url, 80)[1:-1] if len(url) > 78 else url


def _is_tls_failure(exc: BaseException) -> bool:
    """A handshake that failed on the certificate or the protocol (httpx wraps it in ConnectError)."""
    seen = exc
    for _ in range(5):  # the ssl error sits a few causes down, under httpcore's and httpx's wrappers
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
        if seen is None:
            break
    text = str(exc)
    return any(mark in text for mark in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "[SSL:"))


def _describe_tls(exc: ssl.SSLError) -> str:
    text = f"SSLError: {exc.reason or exc}"
    if exc.reason in ("SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
        text += " (the registry wants a client certificate it trusts: --cert and --key)"
    return text


# What OpenSSL says when the "TLS record" it reads is an HTTP response: the registry speaks plain HTTP.
_PLAIN_HTTP_SIGNS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG")


def _describe(exc: Exception, target_url: str) -> str:
    text = str(exc) or exc.__class__.__name__
    # httpx nests the OS error; its last line is the readable part.
    text = f"{exc.__class__.__name__}: {text.splitlines()[-1]}" if text else exc.__class__.__name__
    if target_url.startswith("https:") and any(sign in text.upper().replace(" ", "_") for sign in _PLAIN_HTTP_SIGNS):
        text += f" (the registry answered in plain HTTP: use http://{target_url.partition('://')[2]})"
    try:
        url = exc.request.url
    except (AttributeError, RuntimeError):
        return text
    origin = f"{url.scheme}://{url.netloc.decode()}"
    # The token realm or a blob redirect can be another host: name the one that failed.
    return text if origin == target_url else f"{text} (while contacting {origin})"
