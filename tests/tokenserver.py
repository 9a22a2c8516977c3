"""A real token server for Distribution's ``auth.token`` access controller, for tests.

It speaks the Docker token protocol (distribution's ``docs/spec/auth/token.md``)::

    GET  /token?service=SVC&scope=repository:team/app:pull&scope=...   (Basic auth optional)
    POST /token   grant_type=refresh_token|password, service, scope, client_id, ...   (OAuth2 form)

and answers ``{"token", "access_token", "expires_in", "issued_at"}`` with a JWT
that the real registry accepts. Distribution 2.8 verifies such a token like this
(``registry/auth/token/token.go``):

* ``iss`` must equal the configured ``issuer`` and ``aud`` must be the ``service``;
* ``exp``/``nbf`` are checked with 60 seconds of leeway, so an "expired" token is
  still accepted by the registry for a minute: expiry tests exercise the
  *client's* cache, not the registry;
* the signing key comes from the header, in this order: an ``x5c`` chain that must
  verify against ``rootcertbundle`` (a self-signed certificate in the bundle is its
  own chain), or a ``kid`` that must equal the libtrust key ID of a certificate key
  in the bundle (:func:`libtrust_key_id`);
* the signature is JOSE's: RS256 is PKCS#1 v1.5 over ``header.claims``, ES256 is
  the raw 64-byte ``r || s``, not DER.

Every request is recorded in :attr:`TokenServer.requests` so tests can count token
fetches per scope and prove that a client reuses a cached token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

__all__ = ["PKI", "StaticBearer", "TokenRequest", "TokenServer", "libtrust_key_id", "make_pki", "parse_scope"]

#: Decides which of the requested ``actions`` on ``(type, name)`` a subject gets.
#: ``user`` is None for an anonymous request.
AccessPolicy = Callable[[str | None, str, str, tuple[str, ...]], Iterable[str]]


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered (the log entry tests assert on)."""

    method: str
    path: str
    service: str | None
    scopes: tuple[str, ...]
    authorization: bool  # an Authorization header was present
    grant_type: str | None  # POST only
    user: str | None  # who the token was issued to; None if anonymous or refused
    status: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key) -> str:
    """The key ID Distribution 2.8 (docker/libtrust) computes for a public key.

    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without
    padding, in groups of four joined by ``:``.
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def parse_scope(scope: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``repository:team/app:pull,push`` → ``("repository", "team/app", ("pull", "push"))``.

    The name sits between the first and the last colon, so a name with a port
    (``repository:host:5000/app:pull``) still parses.
    """
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return kind, name, tuple(a for a in actions.split(",") if a)


def _default_policy(user: str | None, kind: str, name: str, actions: tuple[str, ...]) -> Iterable[str]:
    if user is None:
        return [a for a in actions if a == "pull"]
    return actions


class TokenServer:
    """The token issuer a ``RegistryServer(token=server.registry_config())`` trusts.

    ``users`` maps user names to passwords for Basic auth on ``GET`` and for the
    OAuth2 ``password`` grant; ``refresh_tokens`` maps Docker identity tokens to the
    user they stand for (the OAuth2 ``refresh_token`` grant). Without ``anonymous``
    a request without credentials gets 401; with it, an anonymous token whose
    access ``policy`` decides (by default: pull only). ``expires_in`` is both the
    JWT lifetime and the ``expires_in`` of the answer; ``reported_expires_in`` can
    make the answer lie, or leave the field out (``False``), to test clients'
    defaults. ``key_header`` is ``"x5c"``, ``"kid"`` or ``"both"``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        refresh_tokens: dict[str, str] | None = None,
        anonymous: bool = False,
        service: str = "repoaudit-test-registry",
        issuer: str = "repoaudit-test-issuer",
        expires_in: int = 300,
        reported_expires_in: int | None | bool = None,
        algorithm: str = "RS256",
        key_header: str = "x5c",
        policy: AccessPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in ("RS256", "ES256"):
            raise ValueError(f"TokenServer: algorithm must be RS256 or ES256, not {algorithm!r}")
        if key_header not in ("x5c", "kid", "both"):
            raise ValueError(f"TokenServer: key_header must be x5c, kid or both, not {key_header!r}")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or {})
        self.refresh_tokens = dict(refresh_tokens or {})
        self.anonymous = anonymous
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.reported_expires_in = reported_expires_in
        self.algorithm = algorithm
        self.key_header = key_header
        self.policy = policy or _default_policy
        self.clock = clock
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._key, self._cert = self._make_key_and_cert()
        self.cert_path = self.workdir / "token-issuer.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- keys ----------------------------------------------------------------------

    def _make_key_and_cert(self):
        if self.algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "repoaudit test token issuer")])
        now = datetime.now(timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              crl_sign=False, encipher_only=False, decipher_only=False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    @property
    def key_id(self) -> str:
        return libtrust_key_id(self._key.public_key())

    # -- addresses -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("TokenServer is not started")
        return self._server.server_address[1]

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_config(self) -> dict[str, str]:
        """The ``auth.token`` section for :class:`registry.RegistryServer` (start this server first)."""
        return {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                "rootcertbundle": str(self.cert_path)}

    # -- tokens --------------------------------------------------------------------

    def issue(self, subject: str | None, access: Iterable[tuple[str, str, Iterable[str]]], *,
              expires_in: int | None = None, audience: str | None = None, issuer: str | None = None) -> str:
        """A signed JWT granting ``access`` (``(type, name, actions)`` triples); not logged."""
        now = int(self.clock())
        lifetime = self.expires_in if expires_in is None else expires_in
        header: dict[str, object] = {"typ": "JWT", "alg": self.algorithm}
        if self.key_header in ("x5c", "both"):
            header["x5c"] = [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()]
        if self.key_header in ("kid", "both"):
            header["kid"] = self.key_id
        claims = {
            "iss": self.issuer if issuer is None else issuer,
            "sub": subject or "",
            "aud": self.service if audience is None else audience,
            "exp": now + lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [{"type": t, "name": n, "actions": list(a)} for t, n, a in access],
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        return f"{signing_input}.{_b64url(self._sign(signing_input.encode()))}"

    def _sign(self, data: bytes) -> bytes:
        if self.algorithm == "RS256":
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def grant(self, user: str | None, scopes: Iterable[str]) -> list[tuple[str, str, tuple[str, ...]]]:
        granted = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            allowed = tuple(a for a in self.policy(user, kind, name, actions) if a in actions)
            if allowed:
                granted.append((kind, name, allowed))
        return granted

    # -- request log ---------------------------------------------------------------

    def scopes_requested(self) -> list[tuple[str, ...]]:
        """The scopes of every answered request, in order (``()`` for a scope-less ping token)."""
        with self._lock:
            return [r.scopes for r in self.requests]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tokenserver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TokenServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.realm if self._server is not None else "stopped"
        return f"<TokenServer {where} {self.algorithm}/{self.key_header}>"


def _make_handler(server: TokenServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep pytest output clean
            pass

        def _reply(self, status: int, body: dict, *, challenge: bool = False) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if challenge:
                self.send_header("WWW-Authenticate", 'Basic realm="repoaudit-test-token"')
            self.end_headers()
            self.wfile.write(data)

        def _basic_user(self) -> tuple[bool, str | None]:
            """(valid, user): no header is valid-anonymous; a wrong one is invalid."""
            header = self.headers.get("Authorization")
            if not header:
                return True, None
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return False, None
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False, None
            if user in server.users and secrets.compare_digest(server.users[user], password):
                return True, user
            return False, None

        def _answer(self, method: str, service: str | None, scopes: tuple[str, ...], grant_type: str | None,
                    valid: bool, user: str | None, oauth: bool) -> None:
            entry = dict(method=method, path=urlsplit(self.path).path, service=service, scopes=scopes,
                         authorization="Authorization" in self.headers, grant_type=grant_type)
            if urlsplit(self.path).path != "/token":
                server._record(TokenRequest(**entry, user=None, status=404))
                return self._reply(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
            if service != server.service:
                server._record(TokenRequest(**entry, user=None, status=400))
                return self._reply(400, {"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]})
            if not valid or (user is None and not server.anonymous):
                server._record(TokenRequest(**entry, user=None, status=401))
                return self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                                   challenge=not oauth)
            token = server.issue(user, server.grant(user, scopes))
            body: dict[str, object] = {"token": token, "access_token": token,
                                       "issued_at": datetime.now(timezone.utc).isoformat()}
            if server.reported_expires_in is not False:
                reported = server.reported_expires_in
                body["expires_in"] = server.expires_in if reported is None or reported is True else reported
            server._record(TokenRequest(**entry, user=user, status=200))
            self._reply(200, body)

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            valid, user = self._basic_user()
            self._answer("GET", (query.get("service") or [None])[0], tuple(query.get("scope", [])), None,
                         valid, user, oauth=False)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            grant_type = (form.get("grant_type") or [None])[0]
            # OAuth2 scopes are space-separated within one field; Docker also repeats the field.
            scopes = tuple(s for field in form.get("scope", []) for s in field.split(" ") if s)
            valid, user = False, None
            if grant_type == "refresh_token":
                user = server.refresh_tokens.get((form.get("refresh_token") or [""])[0])
                valid = user is not None
            elif grant_type == "password":
                name = (form.get("username") or [""])[0]
                password = (form.get("password") or [""])[0]
                valid = name in server.users and secrets.compare_digest(server.users[name], password)
                user = name if valid else None
            self._answer("POST", (form.get("service") or [None])[0], scopes, grant_type, valid, user, oauth=True)

    return Handler


class StaticBearer(httpx.Auth):
    """Sends one fixed bearer token: lets the test pusher write to a token-protected registry."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


# -- a small PKI for TLS tests -------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    """PEM files of a test CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @property
    def server(self) -> tuple[Path, Path]:
        """``(cert, key)`` as ``RegistryServer(tls=...)`` takes them."""
        return self.server_cert, self.server_key


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(directory: Path, server_valid_for: timedelta = timedelta(days=30)) -> PKI:
    """Write a CA and two leaf certificates it signed (EC P-256: quick to generate).

    ``server_valid_for``: how long from now the server certificate stays valid (a certificate about to expire).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)

    def build(subject: str, key, issuer_name, issuer_key, *, ca: bool, extensions=(), valid_for=timedelta(days=30)):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer_name)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + valid_for)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "repoaudit test CA")])
    ca_cert = build("repoaudit test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = build("127.0.0.1", server_key, ca_name, ca_key, ca=False, valid_for=server_valid_for, extensions=[
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
    ])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = build("repoaudit test client", client_key, ca_name, ca_key, ca=False, extensions=[
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
    ])
    files = {
        "ca.crt": ca_cert.public_bytes(serialization.Encoding.PEM),
        "server.crt": server_cert.public_bytes(serialization.Encoding.PEM),
        "server.key": _pem_key(server_key),
        "client.crt": client_cert.public_bytes(serialization.Encoding.PEM),
        "client.key": _pem_key(client_key),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return PKI(directory / "ca.crt", directory / "server.crt", directory / "server.key",
               directory / "client.crt", directory / "client.key")
