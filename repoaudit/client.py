"""Async client for the OCI Distribution API (Docker Registry HTTP API v2).

One ``httpx.AsyncClient`` per run: a keep-alive pool sized to the concurrency
limit, HTTP/2 when the server offers it over TLS. Every request goes through
:meth:`RegistryClient._request`, which holds the concurrency semaphore, applies
the injected :class:`~repoaudit.retry.RetryPolicy` and turns failures into the
errors of :mod:`repoaudit.errors`.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import httpx

from . import __version__
from .auth import RegistryAuth
from .config import ClientOptions, Target, ssl_context
from .errors import (AuthenticationError, DigestMismatch, InvalidResponse, NotFoundError,
                     RegistryHTTPError, RegistryUnreachable)
from .manifest import ACCEPT, sha256_digest, verify_digest
from .pagination import next_link

# go-containerregistry reads at most this much of an error body; so do we.
_MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class FetchedManifest:
    digest: str
    media_type: str | None
    body: bytes


def error_summary(response: httpx.Response) -> tuple[str, tuple[str, ...]]:
    """Turn ``{"errors":[{"code","message","detail"}]}`` into one line and its codes."""
    body = response.content[:_MAX_ERROR_BODY]
    codes: list[str] = []
    parts: list[str] = []
    try:
        doc = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
    except (ValueError, UnicodeDecodeError):
        errors = None
    for err in errors or []:
        if not isinstance(err, dict):
            continue
        code = str(err.get("code") or "")
        msg = str(err.get("message") or "")
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
    return summary, tuple(codes)


class RegistryClient:
    """The registry side of :class:`repoaudit.sources.Source`."""

    kind = "registry"

    def __init__(self, target: Target, options: ClientOptions | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
        self.target = target
        self.name = target.name
        self.options = options or ClientOptions()
        self.concurrency = self.options.concurrency
        self._sleep = sleep
        self._rng = random.Random()
        self._semaphore = asyncio.Semaphore(self.options.concurrency)
        self.requests: Counter[str] = Counter()  # "GET manifest", "HEAD manifest", ... for benchmarks and tests
        self.rate_limit: dict[str, str] = {}
        self.auth = RegistryAuth(self.options.username, self.options.password,
                                 identity_token=self.options.identity_token)
        limits = httpx.Limits(max_connections=self.options.concurrency,
                              max_keepalive_connections=self.options.concurrency)
        self._http = httpx.AsyncClient(
            base_url=target.url, auth=self.auth, transport=transport, limits=limits,
            timeout=httpx.Timeout(self.options.timeout),
            verify=ssl_context(self.options.verify, self.options.cert), proxy=self.options.proxy,
            http2=self.options.http2 and transport is None,
            follow_redirects=True, headers={"User-Agent": f"{self.options.user_agent}/{__version__}"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    async def _request(self, method: str, url: str | httpx.URL, *, what: str, repository: str | None = None,
                       headers: dict[str, str] | None = None, params: dict | None = None,
                       ok_statuses: tuple[int, ...] = ()) -> httpx.Response:
        policy = self.options.retry
        attempt = 0
        while True:
            attempt += 1
            self.requests[f"{method} {what}"] += 1
            try:
                async with self._semaphore:
                    response = await self._http.request(method, url, headers=headers, params=params)
            except ssl.SSLError as exc:
                # A TLS alert after the handshake (TLS 1.3 sends a refused client certificate that way)
                # escapes httpx's mapping; no retry mends a certificate.
                raise RegistryUnreachable(f"cannot reach {self.target.url}: {_describe_tls(exc)}",
                                          registry=self.name, repository=repository) from None
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if attempt >= policy.attempts or isinstance(exc, httpx.UnsupportedProtocol):
                    reason = _describe(exc, self.target.url)
                    if isinstance(exc, httpx.ReadError) and self.target.url.startswith("https:"):
                        # How a registry that wants a client certificate often shows it: the connection closes
                        # before any answer, without the TLS alert that names the reason.
                        reason += (" (the registry closed the TLS connection before answering; if it requires a "
                                   "client certificate: --cert and --key)")
                    raise RegistryUnreachable(f"cannot reach {self.target.url}: {reason}",
                                              registry=self.name, repository=repository) from None
                await self._sleep(policy.delay(attempt, rng=self._rng))
                continue
            self._note_rate_limit(response)
            status = response.status_code
            if status < 400 or status in ok_statuses:
                return response
            if status in policy.statuses and attempt < policy.attempts:
                await self._sleep(policy.delay(attempt, response.headers.get("retry-after"), rng=self._rng))
                continue
            summary, codes = error_summary(response)
            where = f"{what} {response.request.url.path}"
            if status in (401, 403):
                hint = "credentials refused" if self.auth.has_credentials else "authentication required"
                raise AuthenticationError(f"{hint} for {where}: {summary}", registry=self.name, repository=repository)
            cls = NotFoundError if status == 404 else RegistryHTTPError
            tries = f" after {attempt} tries" if attempt > 1 else ""
            raise cls(f"{where} failed{tries}: {summary}", status=status, codes=codes,
                      registry=self.name, repository=repository)

    def _note_rate_limit(self, response: httpx.Response) -> None:
        # Docker Hub's pull quota headers; kept so the snapshot can record them.
        for key in ("ratelimit-limit", "ratelimit-remaining"):
            if key in response.headers:
                self.rate_limit[key] = response.headers[key]

    def _json(self, response: httpx.Response, what: str, repository: str | None = None) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            snippet = response.content[:80].decode("utf-8", "replace").replace("\n", " ")
            raise InvalidResponse(f"{what} {response.request.url.path} is not JSON (starts {snippet!r})",
                                  registry=self.name, repository=repository) from None

    async def ping(self) -> None:
        """``GET /v2/``: 200, or 401 answered by the auth flow; anything else is an error."""
        await self._request("GET", "/v2/", what="ping")

    async def _paginate(self, path: str, key: str, what: str, repository: str | None = None) -> list[str]:
        items: list[str] = []
        url: httpx.URL | str = path
        params: dict | None = {"n": self.options.page_size}
        while url is not None:
            response = await self._request("GET", url, what=what, repository=repository, params=params)
            doc = self._json(response, what, repository)
            page = doc.get(key) if isinstance(doc, dict) else None
            if page is None and isinstance(doc, dict) and key in doc:
                page = []  # Distribution answers "tags": null for a repository without tags
            if not isinstance(page, list):
                raise InvalidResponse(f"{what} {response.request.url.path} has no {key!r} list",
                                      registry=self.name, repository=repository)
            items.extend(str(x) for x in page)
            url = next_link(response)
            params = None  # the link carries n and last
        return items

    async def list_repositories(self) -> list[str]:
        return await self._paginate("/v2/_catalog", "repositories", "catalog")

    async def list_tags(self, repository: str) -> list[str]:
        return await self._paginate(f"/v2/{repository}/tags/list", "tags", "tags", repository)

    async def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        response = await self._request("GET", f"/v2/{repository}/manifests/{reference}", what="manifest",
                                       repository=repository, headers={"Accept": ACCEPT})
        body = response.content
        computed = sha256_digest(body)
        served = response.headers.get("docker-content-digest")
        expected = reference if reference.startswith("sha256:") else served
        if expected and expected.startswith("sha256:") and expected != computed:
            raise DigestMismatch(f"manifest {reference} was served as {expected} but its content hashes to {computed}",
                                 registry=self.name, repository=repository)
        if expected and not expected.startswith("sha256:") and not verify_digest(expected, body):
            raise DigestMismatch(f"manifest {reference} does not match its digest {expected}",
                                 registry=self.name, repository=repository)
        return FetchedManifest(expected or computed, response.headers.get("content-type"), body)

    async def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points at, without the body; ``None`` when the server does not say."""
        response = await self._request("HEAD", f"/v2/{repository}/manifests/{reference}", what="manifest",
                                       repository=repository, headers={"Accept": ACCEPT})
        return response.headers.get("docker-content-digest")

    async def get_blob(self, repository: str, digest: str) -> bytes:
        response = await self._request("GET", f"/v2/{repository}/blobs/{digest}", what="blob", repository=repository)
        body = response.content
        if not verify_digest(digest, body):
            raise DigestMismatch(f"blob {digest} content hashes to {sha256_digest(body)}",
                                 registry=self.name, repository=repository)
        return body

    async def delete_manifest(self, repository: str, digest: str) -> None:
        await self._request("DELETE", f"/v2/{repository}/manifests/{digest}", what="delete", repository=repository)


def _describe_tls(exc: ssl.SSLError) -> str:
    text = f"SSLError: {exc.reason or exc}"
    if exc.reason in ("SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
        text += " (the registry wants a client certificate it trusts: --cert and --key)"
    return text


def _describe(exc: Exception, target_url: str) -> str:
    text = str(exc) or exc.__class__.__name__
    # httpx nests the OS error; its last line is the readable part.
    text = f"{exc.__class__.__name__}: {text.splitlines()[-1]}" if text else exc.__class__.__name__
    try:
        url = exc.request.url
    except (AttributeError, RuntimeError):
        return text
    origin = f"{url.scheme}://{url.netloc.decode()}"
    # The token realm or a blob redirect can be another host: name the one that failed.
    return text if origin == target_url else f"{text} (while contacting {origin})"
