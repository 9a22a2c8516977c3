"""Access posture: what an anonymous client can do to a registry, and what its TLS endpoint offers.

Probed once per collection, beside it, and stored with the snapshot in ``registry_posture``:

- ``GET /v2/``, ``GET /v2/_catalog?n=1``, ``GET /v2/<sample>/tags/list?n=1`` and ``GET`` of one
  manifest of the sample, each one request, each without credentials. A ``Bearer`` challenge is
  answered the way an anonymous Docker client would: an anonymous token from the realm (no
  ``Authorization`` header), then the request again with that token. Docker Hub refuses ``/v2/`` to
  everyone yet serves public images to anyone; only the read probes tell the two apart.
- With ``probe_push``: ``POST /v2/<sample>/blobs/uploads/`` without credentials; an accepted upload is
  cancelled at once with ``DELETE`` on its ``Location``, so nothing is left in the registry's storage.
- Over ``https://``: the negotiated protocol and cipher, the certificate (subject, issuer, SANs, expiry)
  as the server sends it, whether it chains to the system roots, only to the CA bundle the collection
  was given (a private CA), or to neither; and whether the server completes a TLS 1.0 or 1.1 handshake.
  When this host's OpenSSL will not offer those versions at all, ``weak_tls`` is NULL, not False.

The probes use their own client: no auth flow holding the user's credentials, no credential store,
no ``.netrc`` (``trust_env=False``), no client certificate (a certificate is a credential too), and a
``User-Agent`` of their own so a registry's access log tells them apart. A probe that fails is a
recorded value (its error in ``errors``), never a failed collection.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import stat
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx

from repoaudit._version import __version__
from repoaudit.errors import RepoauditError, one_line
from repoaudit.model.manifest import ACCEPT
from repoaudit.model.timestamps import utcnow
from repoaudit.sources.auth import parse_challenge
from repoaudit.sources.tls import ssl_context
from repoaudit.store.sql import statements

SQL = statements(__package__, "posture.sql")

USER_AGENT = f"repoaudit-posture/{__version__}"
# Posture is a side look: it must not hold a collection up for long.
PROBE_TIMEOUT = 10.0
# Bodies are not needed, only statuses; what is read of a token answer is bounded.
MAX_TOKEN_BODY = 64 * 1024
MAX_PROBE_BODY = 1024 * 1024
REF_NAME = "org.opencontainers.image.ref.name"
MAX_INDEX_BYTES = 64 * 2**20  # a layout's index.json is read whole by the collection too
WEAK_VERSIONS = (("TLSv1", ssl.TLSVersion.TLSv1), ("TLSv1.1", ssl.TLSVersion.TLSv1_1))


@dataclass
class Posture:
    """One ``registry_posture`` row."""

    registry: str
    url: str
    probed_at: datetime
    plain_http: bool
    auth_scheme: str | None = None
    v2_status: int | None = None
    v2_anonymous: bool | None = None
    catalog_status: int | None = None
    catalog_anonymous: bool | None = None
    sample_repository: str | None = None
    sample_tag: str | None = None
    tags_status: int | None = None
    tags_anonymous: bool | None = None
    manifest_status: int | None = None
    manifest_anonymous: bool | None = None
    push_probed: bool = False
    push_status: int | None = None
    push_anonymous: bool | None = None
    push_cancelled: bool | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    cert_subject: str | None = None
    cert_issuer: str | None = None
    cert_sans: list[str] | None = None
    cert_not_after: datetime | None = None
    cert_days_left: int | None = None
    cert_trust: str | None = None
    cert_error: str | None = None
    weak_tls: bool | None = None
    weak_tls_versions: list[str] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    unreachable: bool = field(default=False, repr=False)  # no connection at all: the TLS probes would say the same

    def row(self, snapshot_id: int) -> list[Any]:
        return [snapshot_id, self.registry, self.url, self.probed_at, self.plain_http, self.auth_scheme,
                self.v2_status, self.v2_anonymous, self.catalog_status, self.catalog_anonymous,
                self.sample_repository, self.sample_tag, self.tags_status, self.tags_anonymous,
                self.manifest_status, self.manifest_anonymous, self.push_probed, self.push_status,
                self.push_anonymous, self.push_cancelled, self.tls_version, self.tls_cipher, self.cert_subject,
                self.cert_issuer, self.cert_sans, self.cert_not_after, self.cert_days_left, self.cert_trust,
                self.cert_error, self.weak_tls, self.weak_tls_versions,
                json.dumps(self.errors, sort_keys=True) if self.errors else None]


def record(con: duckdb.DuckDBPyConnection, posture: Posture, snapshot_id: int) -> None:
    """Insert the row; run inside the snapshot's transaction (a ``before_commit`` step)."""
    con.execute(SQL["insert_posture"], posture.row(snapshot_id))


class _Anonymous:
    """Requests without credentials, answering Bearer challenges with anonymous tokens."""

    def __init__(self, url: str, verify: ssl.SSLContext | bool, proxy: str | None, timeout: float):
        self.client = httpx.AsyncClient(
            base_url=url, verify=verify, proxy=proxy, timeout=httpx.Timeout(timeout), follow_redirects=False,
            trust_env=False, headers={"User-Agent": USER_AGENT})
        self.tokens: dict[str, str] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, *, scope: str | None = None,
                      headers: dict[str, str] | None = None) -> httpx.Response:
        """One request, and once more with an anonymous token if a Bearer challenge offers one."""
        response = await self._send(method, path, headers, self.tokens.get(scope or ""))
        if response.status_code != 401 or scope is None:
            return response
        kind, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if kind != "bearer" or not params.get("realm"):
            return response
        token = await self._token(params, params.get("scope") or scope)
        if token is None:
            return response
        self.tokens[scope] = token
        return await self._send(method, path, headers, token)

    async def _send(self, method: str, path: str, headers: dict[str, str] | None, token: str | None) -> httpx.Response:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"  # an anonymous token: no one's credential
        request = self.client.build_request(method, path, headers=sent)
        response = await self.client.send(request, stream=True)
        try:
            # Statuses are the answer, but a client that hangs up mid-body makes the server's write fail (and
            # some servers log that loudly): the small bodies these requests get are read, up to a cap.
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_PROBE_BODY:
                    break
        finally:
            await response.aclose()
        return response

    async def _token(self, challenge: dict[str, str], scope: str) -> str | None:
        params = {k: v for k, v in (("service", challenge.get("service")), ("scope", scope)) if v}
        try:
            async with self.client.stream("GET", challenge["realm"], params=params) as answer:
                if answer.status_code != 200:
                    return None
                body = b""
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_TOKEN_BODY:
                        return None
            doc = json.loads(body)
        except (httpx.HTTPError, ValueError, RecursionError):
            return None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        return token if isinstance(token, str) and token else None


def _without_client_certificate(verify: bool | str | ssl.SSLContext) -> bool | str | ssl.SSLContext:
    """The trust of ``verify`` in a context of its own: a ready context (a Flux job's) may hold a client
    certificate, which the probes must not present."""
    if not isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl_context(True)
    for der in verify.get_ca_certs(binary_form=True):
        context.load_verify_locations(cadata=der)
    return context


def _auth_scheme(response: httpx.Response) -> str:
    if response.status_code != 401:
        return "none"
    kind, _ = parse_challenge(response.headers.get("www-authenticate", ""))
    return kind if kind in ("basic", "bearer") else "other"


async def probe(url: str, registry: str, *, verify: bool | str | ssl.SSLContext = True, proxy: str | None = None,
                sample: tuple[str, str | None] | None = None, push: bool = False,
                timeout: float = PROBE_TIMEOUT, now: datetime | None = None) -> Posture:
    """The posture of the registry at ``url``; ``sample`` is a (repository, tag) it holds, for the read probes.

    ``verify`` is the collection's own trust setting (system roots, a CA bundle path, or False for
    ``--insecure``), so the probes reach what the collection reached; its client certificate is never used.
    """
    posture = Posture(registry, url, now or utcnow(), url.startswith("http://"), push_probed=push)
    if sample:
        posture.sample_repository, posture.sample_tag = sample
    try:
        verify = _without_client_certificate(verify)
        context = ssl_context(verify)
    except RepoauditError as exc:  # an unreadable CA file: a recorded probe failure here
        posture.errors["http"] = one_line(str(exc))
        return posture
    client = _Anonymous(url, context, proxy, timeout)
    try:
        await _http_probes(client, posture, push)
    finally:
        await client.aclose()
    if not posture.plain_http:
        if proxy:
            posture.errors["tls"] = "not probed: the registry is reached through a proxy"
        elif posture.unreachable and posture.v2_status is None:
            posture.errors["tls"] = "not probed: the registry could not be reached"
        else:
            await asyncio.to_thread(_tls_probes, url, verify, posture)
    return posture


async def _step(posture: Posture, name: str, call) -> httpx.Response | None:
    try:
        return await call()
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        posture.errors[name] = one_line(f"{exc.__class__.__name__}: {exc}") if str(exc) else exc.__class__.__name__
        posture.unreachable = posture.unreachable or isinstance(exc, (httpx.ConnectError, httpx.TimeoutException))
        return None


async def _http_probes(client: _Anonymous, posture: Posture, push: bool) -> None:
    v2 = await _step(posture, "v2", lambda: client.request("GET", "/v2/"))
    if v2 is None:
        return  # unreachable: the other probes would say the same
    posture.v2_status, posture.v2_anonymous, posture.auth_scheme = v2.status_code, v2.status_code == 200, \
        _auth_scheme(v2)
    catalog = await _step(posture, "catalog", lambda: client.request("GET", "/v2/_catalog?n=1",
                                                                      scope="registry:catalog:*"))
    if catalog is not None:
        posture.catalog_status, posture.catalog_anonymous = catalog.status_code, catalog.status_code == 200
    repository, tag = posture.sample_repository, posture.sample_tag
    if repository is None:
        posture.errors["read"] = "not probed: no repository was collected"
        return
    pull = f"repository:{repository}:pull"
    tags = await _step(posture, "tags", lambda: client.request("GET", f"/v2/{repository}/tags/list?n=1", scope=pull))
    if tags is not None:
        posture.tags_status, posture.tags_anonymous = tags.status_code, tags.status_code == 200
    if tag is None:
        posture.errors["manifest"] = "not probed: the sample repository has no readable tag"
    else:
        manifest = await _step(posture, "manifest", lambda: client.request(
            "GET", f"/v2/{repository}/manifests/{tag}", scope=pull, headers={"Accept": ACCEPT}))
        if manifest is not None:
            posture.manifest_status = manifest.status_code
            posture.manifest_anonymous = manifest.status_code == 200
    if push:
        await _push_probe(client, posture, repository)


async def _push_probe(client: _Anonymous, posture: Posture, repository: str) -> None:
    scope = f"repository:{repository}:pull,push"
    started = await _step(posture, "push", lambda: client.request("POST", f"/v2/{repository}/blobs/uploads/",
                                                                   scope=scope))
    if started is None:
        return
    posture.push_status = started.status_code
    posture.push_anonymous = started.status_code == 202
    if started.status_code != 202:
        return
    location = started.headers.get("location")
    if not location:
        posture.push_cancelled = False
        posture.errors["push"] = "the upload was accepted without a Location to cancel it at"
        return
    target = httpx.URL(str(client.client.base_url)).join(location)
    if (target.scheme, target.netloc) != (client.client.base_url.scheme, client.client.base_url.netloc):
        # The upload lives elsewhere (a storage redirect): not followed, not cancelled, said so.
        posture.push_cancelled = False
        posture.errors["push"] = f"the upload's Location is on another host ({target.host}); not cancelled"
        return
    path = target.raw_path.decode()
    cancelled = await _step(posture, "push_cancel", lambda: client.request("DELETE", path, scope=scope))
    posture.push_cancelled = cancelled is not None and cancelled.status_code in (200, 202, 204)


# -- OCI layouts ----------------------------------------------------------------------------------

def probe_layout(root: Path, registry: str, *, sample: tuple[str, str | None] | None = None,
                 now: datetime | None = None) -> Posture:
    """The posture of a directory of OCI layouts, where "anonymous" is any other local user.

    Read from the permission bits (nothing is written): anonymous read is a tag list (``index.json``) and the
    sample tag's manifest blob readable by others along a searchable path; the catalog is the root directory
    listable by others; anonymous push is ``index.json``, its layout directory or its blob directory writable by
    others, which lets anyone re-point or replace a tag. There is no HTTP and no TLS to probe.
    """
    posture = Posture(registry, f"oci:{root}", now or utcnow(), False, auth_scheme="filesystem", push_probed=True)
    if sample:
        posture.sample_repository, posture.sample_tag = sample
    try:
        posture.v2_anonymous = _others(root, stat.S_IXOTH)
        posture.catalog_anonymous = posture.v2_anonymous and _others(root, stat.S_IROTH)
        if posture.sample_repository is None:
            posture.errors["read"] = "not probed: no repository was collected"
            return posture
        layout = root / posture.sample_repository
        searchable = posture.v2_anonymous and all(
            _others(root.joinpath(*layout.relative_to(root).parts[:i + 1]), stat.S_IXOTH)
            for i in range(len(layout.relative_to(root).parts)))
        index = layout / "index.json"
        posture.tags_anonymous = searchable and _others(index, stat.S_IROTH)
        blobs = layout / "blobs" / "sha256"
        digest = _layout_digest(index, posture.sample_tag)
        if digest is not None:
            blob = blobs / digest.split(":", 1)[1]
            posture.manifest_anonymous = (searchable and _others(layout / "blobs", stat.S_IXOTH)
                                          and _others(blobs, stat.S_IXOTH) and _others(blob, stat.S_IROTH))
        posture.push_anonymous = any(_others(p, stat.S_IWOTH) for p in (index, layout, blobs))
    except (OSError, ValueError) as exc:
        posture.errors["layout"] = one_line(f"{exc.__class__.__name__}: {exc}")
    return posture


def _others(path: Path, bit: int) -> bool:
    return bool(path.stat().st_mode & bit)


def _layout_digest(index: Path, tag: str | None) -> str | None:
    """The digest ``index.json`` gives ``tag`` (as the layout source reads ref.name), if any."""
    if tag is None:
        return None
    doc = json.loads(index.read_bytes()[:MAX_INDEX_BYTES])
    for descriptor in doc.get("manifests") or [] if isinstance(doc, dict) else []:
        ref = ((descriptor or {}).get("annotations") or {}).get(REF_NAME, "") if isinstance(descriptor, dict) else ""
        if isinstance(ref, str) and (ref == tag or ref.endswith(":" + tag)):
            digest = descriptor.get("digest")
            if isinstance(digest, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                return digest
    return None


# -- TLS ------------------------------------------------------------------------------------------


def _handshake(host: str, port: int, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


def _unverified(minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        # Old protocol versions need the old ciphers and security level 0 on OpenSSL 3.
        context.set_ciphers("ALL:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated versions, asked for on purpose: that is the probe
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = minimum
            context.maximum_version = maximum
    return context


def _tls_probes(url: str, verify: bool | str | ssl.SSLContext, posture: Posture, timeout: float = PROBE_TIMEOUT
                ) -> None:
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 443
    try:
        with _handshake(host, port, _unverified(), timeout) as tls:
            posture.tls_version = tls.version()
            posture.tls_cipher = (tls.cipher() or (None,))[0]
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        posture.errors["tls"] = one_line(f"{exc.__class__.__name__}: {exc}")
        return
    if der:
        _certificate(der, posture)
    posture.cert_trust, posture.cert_error = _trust(host, port, verify, timeout)
    accepted, testable = [], False
    for name, version in WEAK_VERSIONS:
        result = _accepts(host, port, version, timeout)
        if result is None:
            continue
        testable = True
        if result:
            accepted.append(name)
    if testable:
        posture.weak_tls, posture.weak_tls_versions = bool(accepted), accepted
    else:
        posture.errors["weak_tls"] = f"not tested: this host's OpenSSL ({ssl.OPENSSL_VERSION}) offers neither " \
                                     f"TLS 1.0 nor 1.1"


def _certificate(der: bytes, posture: Posture) -> None:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        posture.errors["certificate"] = one_line(f"unreadable certificate: {exc}")
        return
    posture.cert_subject = cert.subject.rfc4514_string()
    posture.cert_issuer = cert.issuer.rfc4514_string()
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        posture.cert_sans = ([f"DNS:{n}" for n in sans.get_values_for_type(x509.DNSName)]
                             + [f"IP:{a}" for a in sans.get_values_for_type(x509.IPAddress)])
    except x509.ExtensionNotFound:
        posture.cert_sans = []
    aware = getattr(cert, "not_valid_after_utc", None)  # cryptography 42+; before, a naive UTC not_valid_after
    not_after = aware.replace(tzinfo=None) if aware is not None else cert.not_valid_after
    posture.cert_not_after = not_after
    posture.cert_days_left = int((not_after - posture.probed_at).total_seconds() // 86400)


def _trust(host: str, port: int, verify: bool | str | ssl.SSLContext, timeout: float) -> tuple[str, str | None]:
    """system: verifies against the system roots; private-ca: only against the CA bundle given; else untrusted."""
    try:
        with _handshake(host, port, ssl_context(True), timeout):
            return "system", None
    except ssl.SSLCertVerificationError as exc:
        reason = one_line(exc.verify_message or str(exc))
    except (OSError, ssl.SSLError) as exc:
        return "untrusted", one_line(f"{exc.__class__.__name__}: {exc}")
    if isinstance(verify, (str, ssl.SSLContext)):
        try:
            with _handshake(host, port, ssl_context(verify), timeout):
                return "private-ca", reason
        except (OSError, ssl.SSLError):
            pass
    return "untrusted", reason


def _accepts(host: str, port: int, version: ssl.TLSVersion, timeout: float) -> bool | None:
    """Whether the server completes a handshake at exactly ``version``; None when this host cannot offer it."""
    try:
        context = _unverified(version, version)
    except (ValueError, ssl.SSLError):
        return None
    try:
        with _handshake(host, port, context, timeout):
            return True
    except ssl.SSLError as exc:
        if exc.reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE_SIGNATURE_ALGORITHM"):
            return None  # refused by the local library before anything was sent
        return False
    except OSError:
        return False
