"""Registry authentication as one ``httpx.Auth`` flow: anonymous, basic, bearer tokens.

The bearer handshake, as Docker and the distribution token spec describe it:

1. The client sends the request as it is (or with a token it already holds for
   that host and scope).
2. The registry answers ``401`` with
   ``WWW-Authenticate: Bearer realm="https://auth/token",service="reg",scope="repository:app:pull"``.
3. The client asks the realm for a token: ``GET realm?service=reg&scope=...``,
   with HTTP basic credentials when it has them and without (an anonymous
   token, Docker Hub style) when it does not. A Docker ``identitytoken`` is a
   refresh token and goes to the realm as an OAuth2 ``POST`` instead.
4. The realm answers ``{"token": ...}`` (or ``access_token``), optionally with
   ``expires_in`` seconds (60 when absent, as the spec says).
5. The client resends the request with ``Authorization: Bearer <token>``. A
   401 then is final: wrong credentials or not enough rights.

Tokens are cached per (registry host, scope) until shortly before they expire.
Once a host is known to want tokens, a request for a new scope fetches its
token first instead of collecting a 401 each time. The Authorization header is
attached only to requests for the registry host itself; httpx drops it on
redirects to another origin (blob storage), and this flow never adds it there.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
from dataclasses import dataclass
from typing import Generator

import httpx

from repoaudit.errors import AuthenticationError

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
# Greedy name, anchored endpoint: a repository may itself be called "team/tags/app".
_REPO_PATH = re.compile(r"^/v2/(.+)/(?:manifests/[^/]+|blobs/(?:uploads/[^/]*|[^/]+)|tags/list|referrers/[^/]+)$")
# Renew a little early so a token never expires between check and use.
_EXPIRY_MARGIN = 10.0


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split ``WWW-Authenticate`` into its scheme (lower case) and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): (quoted if quoted else bare) for k, quoted, bare in _PARAM.findall(rest)}
    return scheme.lower(), params


def scope_for(url: httpx.URL) -> str | None:
    """The token scope a distribution API request needs (pull access only: repoaudit reads).

    Deletion needs ``delete``; :class:`RegistryAuth` asks for it when the request is a DELETE.
    """
    path = url.path
    if path.startswith("/v2/_catalog"):
        return "registry:catalog:*"
    m = _REPO_PATH.match(path)
    return f"repository:{m.group(1)}:pull" if m else None


@dataclass
class _Token:
    value: str
    expires_at: float


class RegistryAuth(httpx.Auth):
    """Answers registry challenges; holds credentials in memory only."""

    requires_response_body = True

    def __init__(self, username: str | None = None, password: str | None = None, *,
                 identity_token: str | None = None, clock=time.monotonic):
        self._username = username
        self._password = password
        self._identity_token = identity_token
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._bearer: dict[str, dict[str, str]] = {}  # host -> challenge params (realm, service)
        self._basic_hosts: set[str] = set()
        self._async_locks: dict[tuple[str, str], asyncio.Lock] = {}

    def __repr__(self) -> str:  # never show secrets in tracebacks or logs
        return f"RegistryAuth(username={self._username!r}, password={'***' if self._password else None})"

    @property
    def has_credentials(self) -> bool:
        return bool(self._password or self._identity_token)

    def _basic_header(self) -> str:
        raw = f"{self._username or ''}:{self._password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    @staticmethod
    def _scope(request: httpx.Request) -> str | None:
        scope = scope_for(request.url)
        if scope and request.method == "DELETE":
            scope = scope.replace(":pull", ":delete")
        return scope

    async def async_auth_flow(self, request: httpx.Request):
        """The sync flow, after making concurrent requests for one scope share a single token fetch."""
        host = request.url.netloc.decode()
        scope = self._scope(request)
        if scope and host in self._bearer and self._cached(host, scope) is None:
            async with self._async_locks.setdefault((host, scope), asyncio.Lock()):
                if self._cached(host, scope) is None:  # another task may have fetched it meanwhile
                    fetch = self._fetch_token(host, self._bearer[host], scope)
                    outgoing = next(fetch)
                    while True:
                        response = yield outgoing
                        await response.aread()
                        try:
                            outgoing = fetch.send(response)
                        except StopIteration:
                            break
        flow = super().async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        host = request.url.netloc.decode()
        scope = self._scope(request)
        token = self._cached(host, scope)
        if token is None and host in self._bearer and scope:
            token = yield from self._fetch_token(host, self._bearer[host], scope)
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        elif host in self._basic_hosts and self.has_credentials:
            request.headers["Authorization"] = self._basic_header()

        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("www-authenticate")
        if not challenge:
            return
        kind, params = parse_challenge(challenge)
        if kind == "basic":
            if not self.has_credentials or host in self._basic_hosts:
                return  # nothing to offer, or our credentials were just refused
            self._basic_hosts.add(host)
            request.headers["Authorization"] = self._basic_header()
            yield request
        elif kind == "bearer" and "realm" in params:
            self._bearer[host] = {"realm": params["realm"], "service": params.get("service", "")}
            wanted = params.get("scope") or scope or ""
            with self._lock:
                self._tokens.pop((host, wanted), None)  # a refused token is never reused
            token = yield from self._fetch_token(host, self._bearer[host], wanted)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def _cached(self, host: str, scope: str | None) -> str | None:
        with self._lock:
            tok = self._tokens.get((host, scope or ""))
            if tok and tok.expires_at > self._clock():
                return tok.value
        return None

    def _fetch_token(self, host: str, challenge: dict[str, str], scope: str
                     ) -> Generator[httpx.Request, httpx.Response, str]:
        realm = challenge["realm"]
        query = {"service": challenge["service"]} if challenge.get("service") else {}
        if scope:
            query["scope"] = scope
        if self._identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": self._identity_token,
                    "client_id": "repoaudit", **query}
            token_request = httpx.Request("POST", realm, data=form)
        else:
            token_request = httpx.Request("GET", realm, params=query)
            if self.has_credentials:
                token_request.headers["Authorization"] = self._basic_header()
        response = yield token_request
        if response.status_code in (401, 403):
            raise AuthenticationError(f"token endpoint {httpx.URL(realm).host} refused the credentials "
                                      f"for scope {scope or '(none)'} (HTTP {response.status_code})", registry=host)
        if response.status_code >= 400:
            raise AuthenticationError(f"token endpoint {httpx.URL(realm).host} answered HTTP "
                                      f"{response.status_code} for scope {scope or '(none)'}", registry=host)
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            value = None
        if not isinstance(value, str) or not value:
            raise AuthenticationError(f"token endpoint {httpx.URL(realm).host} returned no token", registry=host)
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else 60.0
        with self._lock:
            self._tokens[(host, scope)] = _Token(value, self._clock() + max(0.0, lifetime - _EXPIRY_MARGIN))
        return value
