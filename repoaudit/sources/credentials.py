"""Where registry credentials come from, resolved once at the edge into a frozen value.

Sources, in the order :func:`resolve` tries them (the first that has something wins):

1. **flags** — ``username``/``password`` given explicitly (``--username``/``--password``);
   a username without a password takes the password from ``REPOAUDIT_PASSWORD``, so
   the secret need not appear on a command line.
2. **environment** — ``REPOAUDIT_USERNAME`` + ``REPOAUDIT_PASSWORD``, or
   ``REPOAUDIT_IDENTITY_TOKEN`` (a Docker identity/refresh token, as ``docker login``
   stores for some registries). These apply to every registry of the run.
3. **docker-config** — Docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else
   ``~/.docker/config.json``): ``credHelpers[host]``, then ``credsStore``, then
   ``auths[host]`` (``auth`` = base64 ``user:pass``, or ``username``/``password``, or
   ``identitytoken``). Credential helpers are run as Docker runs them:
   ``docker-credential-<name> get`` with the server URL on stdin, answering
   ``{"ServerURL", "Username", "Secret"}``; the user name ``<token>`` means the
   secret is an identity token.
4. **anonymous**.

Kubernetes image pull secrets (``kubernetes.io/dockerconfigjson`` and the legacy
``kubernetes.io/dockercfg``) are read by :func:`from_dockerconfigjson_secret`; Flux
configuration uses them (:mod:`repoaudit.jobs.job`).

Hosts are compared with :func:`registry_key`, so ``https://index.docker.io/v1/``,
``docker.io`` and ``registry-1.docker.io`` are one registry, and a ``config.json``
key written as a URL matches a bare host.

Secrets never appear in ``repr``, exception messages or logs: :class:`Credentials`
hides them, and errors name the source (file, helper, Secret) but not the content.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repoaudit.errors import ConfigError
from repoaudit.loader import load_document, parse_document
from repoaudit.model.options import ClientOptions, Target
from repoaudit.model.reference import DOCKER_HUB, DOCKER_HUB_ALIASES

__all__ = [
    "ANONYMOUS",
    "DOCKER_HUB_ALIASES",
    "DOCKER_HUB_SERVER_URL",
    "ENV_IDENTITY_TOKEN",
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "Credentials",
    "default_docker_config_path",
    "from_docker_config",
    "from_dockerconfigjson_secret",
    "from_environment",
    "registry_key",
    "resolve",
    "secret_name",
]

ENV_USERNAME = "REPOAUDIT_USERNAME"
ENV_PASSWORD = "REPOAUDIT_PASSWORD"
ENV_IDENTITY_TOKEN = "REPOAUDIT_IDENTITY_TOKEN"

#: The key ``docker login`` writes for Docker Hub, and the server URL Docker hands
#: credential helpers for it; helpers store Hub credentials under this exact string.
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"

# Docker gives helpers no time limit; a helper that waits for a desktop unlock
# prompt nobody answers should not hang a scheduled run forever.
HELPER_TIMEOUT = 30.0
_HELPER_NOT_FOUND = "credentials not found"
_IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Credentials:
    """What to present to one registry, and where it came from (for reports, never the secret)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    # "flags", "environment", "docker-config", "credential-helper:<name>", "secret:<ns>/<name>",
    # "file:<path>" (a config file's password_file), "anonymous"
    source: str = "anonymous"

    @property
    def anonymous(self) -> bool:
        return not (self.password or self.identity_token)


ANONYMOUS = Credentials()


def registry_key(host_or_url: str) -> str:
    """One spelling per registry: scheme, path and case dropped; Docker Hub aliases → ``index.docker.io``.

    ``https://index.docker.io/v1/``, ``docker.io`` and ``registry-1.docker.io`` all
    give ``index.docker.io``; ``https://ghcr.io`` gives ``ghcr.io``;
    ``http://127.0.0.1:5000/`` gives ``127.0.0.1:5000``.
    """
    text = host_or_url.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].lower()
    if text in DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    return text


def _server_url(host: str) -> str:
    """What Docker passes a credential helper for ``host``."""
    key = registry_key(host)
    return DOCKER_HUB_SERVER_URL if key == DOCKER_HUB else key


def _lookup(mapping: Mapping[str, object], host: str) -> tuple[str, object] | None:
    """The entry of ``mapping`` whose key is ``host`` (exactly first, then by :func:`registry_key`)."""
    if host in mapping:
        return host, mapping[host]
    wanted = registry_key(host)
    for key, value in mapping.items():
        if isinstance(key, str) and registry_key(key) == wanted:
            return key, value
    return None


def _from_auth_entry(entry: object, *, source: str, where: str) -> Credentials | None:
    """One ``auths`` value: ``auth`` (base64 user:pass), ``username``/``password``, ``identitytoken``."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected an object with auth or username/password")
    username = entry.get("username") or None
    password = entry.get("password") or None
    identity_token = entry.get("identitytoken") or entry.get("identityToken") or None
    auth = entry.get("auth")
    if auth:
        if not isinstance(auth, str):
            raise ConfigError(f"{where}: 'auth' must be a base64 string")
        try:
            raw = "".join(auth.split())
            # Some tools write the value without its "=" padding; Docker's own decoder needs it.
            decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ConfigError(f"{where}: 'auth' is not valid base64 of user:password") from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise ConfigError(f"{where}: 'auth' does not decode to user:password")
        username, password = user or username, secret or password
    for name, value in (("username", username), ("password", password), ("identitytoken", identity_token)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: {name!r} must be a string")
    if not password and not identity_token:
        return None  # an empty entry: docker login with a credsStore leaves "{}" behind
    return Credentials(username=username, password=password, identity_token=identity_token, source=source)


def _from_auths(auths: object, host: str, *, source: str, where: str) -> Credentials | None:
    if auths is None:
        return None
    if not isinstance(auths, Mapping):
        raise ConfigError(f"{where}: 'auths' must be an object keyed by registry")
    found = _lookup(auths, host)
    if found is None:
        return None
    key, entry = found
    return _from_auth_entry(entry, source=source, where=f"{where}: auths[{key!r}]")


# -- credential helpers ------------------------------------------------------------


def _run_helper(name: str, host: str, env: Mapping[str, str]) -> Credentials | None:
    program = f"docker-credential-{name}"
    path = shutil.which(program, path=env.get("PATH", os.defpath))
    if path is None:
        raise ConfigError(f"credential helper {program} (for {registry_key(host)}) was not found on PATH")
    try:
        result = subprocess.run([path, "get"], input=_server_url(host).encode(), capture_output=True,
                                timeout=HELPER_TIMEOUT, env=dict(env))
    except subprocess.TimeoutExpired:
        raise ConfigError(f"credential helper {program} did not answer for {registry_key(host)} "
                          f"within {HELPER_TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise ConfigError(f"credential helper {program} could not be run: {exc.strerror or exc}") from None
    out = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0:
        if _HELPER_NOT_FOUND in out.lower():
            return None
        raise ConfigError(f"credential helper {program} failed for {registry_key(host)} "
                          f"(exit {result.returncode}){_helper_message(result)}")
    try:
        doc = parse_document(out, name=f"credential helper {program}", kind="docker-config", fmt="json")
    except ConfigError:
        # Not the loader's message: it would point into the answer, which may hold a secret.
        raise ConfigError(f"credential helper {program} answered {registry_key(host)} with something "
                          f"that is not JSON") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"credential helper {program} answered {registry_key(host)} with JSON that "
                          f"is not an object")
    username, secret = doc.get("Username"), doc.get("Secret")
    if not isinstance(secret, str) or not secret:
        return None
    source = f"credential-helper:{name}"
    if username == _IDENTITY_TOKEN_USER:
        return Credentials(identity_token=secret, source=source)
    return Credentials(username=username if isinstance(username, str) else None, password=secret, source=source)


def _helper_message(result: subprocess.CompletedProcess) -> str:
    # Helpers report errors as plain text on stdout (Docker reads it from there) or
    # stderr. Anything that looks like JSON could be a credential, so it is never
    # quoted; plain text is quoted, one line, shortened.
    for stream in (result.stdout, result.stderr):
        text = stream.decode("utf-8", "replace").strip()
        if not text or text.lstrip().startswith(("{", "[")):
            continue
        line = text.splitlines()[0].strip()
        return ": " + (line if len(line) <= 200 else line[:197] + "...")
    return ""


# -- docker config.json ------------------------------------------------------------


def default_docker_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (``HOME`` from ``env``)."""
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]).expanduser() / "config.json"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".docker" / "config.json"


def _read_config(path: Path) -> dict | None:
    if not path.exists():
        return None
    # The loader's errors give only positions and the parser's own words, never the (secret) text.
    doc = load_document(path, kind="docker-config", fmt="json", empty_ok=True)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a Docker config must be a JSON object")
    return doc


def from_docker_config(host: str, config: dict | None = None, *, config_path: Path | None = None,
                       env: Mapping[str, str] = os.environ) -> Credentials | None:
    """Credentials for ``host`` from a Docker ``config.json`` (given as ``config`` or read from disk).

    ``None`` when the file does not exist or has nothing for ``host``. A helper that
    is missing or fails raises :class:`ConfigError` naming the helper.
    """
    where = "Docker config"
    if config is None:
        path = Path(config_path) if config_path is not None else default_docker_config_path(env)
        where = str(path)
        config = _read_config(path)
        if config is None:
            return None
    helpers = config.get("credHelpers") or {}
    if not isinstance(helpers, Mapping):
        raise ConfigError(f"{where}: 'credHelpers' must be an object keyed by registry")
    found = _lookup(helpers, host)
    if found is not None:
        key, helper = found
        if not isinstance(helper, str) or not helper:
            raise ConfigError(f"{where}: credHelpers[{key!r}] must name a helper")
        # Docker does not fall back from a registry's own helper: that helper is the authority.
        return _run_helper(helper, host, env)
    store = config.get("credsStore")
    if store:
        if not isinstance(store, str):
            raise ConfigError(f"{where}: 'credsStore' must name a helper")
        creds = _run_helper(store, host, env)
        if creds is not None:
            return creds
    return _from_auths(config.get("auths"), host, source="docker-config", where=where)


# -- environment -------------------------------------------------------------------


def from_environment(host: str, env: Mapping[str, str] = os.environ) -> Credentials | None:
    """``REPOAUDIT_USERNAME`` + ``REPOAUDIT_PASSWORD``, or ``REPOAUDIT_IDENTITY_TOKEN``; same for every host."""
    username = env.get(ENV_USERNAME) or None
    password = env.get(ENV_PASSWORD) or None
    token = env.get(ENV_IDENTITY_TOKEN) or None
    if token:
        return Credentials(username=username, identity_token=token, source="environment")
    if username and not password:
        raise ConfigError(f"{ENV_USERNAME} is set but {ENV_PASSWORD} is not")
    if password and not username:
        raise ConfigError(f"{ENV_PASSWORD} is set but {ENV_USERNAME} is not")
    if not username:
        return None
    return Credentials(username=username, password=password, source="environment")


# -- Kubernetes secrets ------------------------------------------------------------


def secret_bytes(secret: Mapping, key: str, where: str) -> bytes | None:
    """``stringData[key]`` (as the API server merges it, it wins) or base64-decoded ``data[key]``."""
    string_data = secret.get("stringData") or {}
    data = secret.get("data") or {}
    if not isinstance(string_data, Mapping) or not isinstance(data, Mapping):
        raise ConfigError(f"{where}: 'data' and 'stringData' must be maps")
    if key in string_data:
        value = string_data[key]
        if not isinstance(value, str):
            raise ConfigError(f"{where}: stringData[{key!r}] must be a string")
        return value.encode()
    if key in data:
        value = data[key]
        if not isinstance(value, str):
            raise ConfigError(f"{where}: data[{key!r}] must be a base64 string")
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: data[{key!r}] is not valid base64") from None
    return None


def _secret_text(secret: Mapping, key: str, where: str) -> str | None:
    value = secret_bytes(secret, key, where)
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: data[{key!r}] is not UTF-8 text") from None


def secret_name(secret: Mapping) -> str:
    """``namespace/name`` of a Secret manifest (namespace ``default`` when unset, as kubectl applies it)."""
    meta = secret.get("metadata") or {}
    if not isinstance(meta, Mapping):
        meta = {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or '?'}"


def from_dockerconfigjson_secret(secret: dict, host: str) -> Credentials | None:
    """Credentials for ``host`` from a Kubernetes image pull Secret, or ``None`` if it has none for it.

    ``kubernetes.io/dockerconfigjson`` holds a whole ``config.json`` under
    ``.dockerconfigjson``; the legacy ``kubernetes.io/dockercfg`` holds just the
    ``auths`` map under ``.dockercfg``. Either key is read whatever the ``type``
    says (go-containerregistry, which Flux uses, does the same).
    """
    if not isinstance(secret, Mapping):
        raise ConfigError("image pull secret: expected a Kubernetes Secret object")
    name = secret_name(secret)
    where = f"Secret {name}"
    source = f"secret:{name}"
    config_text = _secret_text(secret, ".dockerconfigjson", where)
    key = ".dockerconfigjson"
    if config_text is None:
        config_text = _secret_text(secret, ".dockercfg", where)
        key = ".dockercfg"
    if config_text is None:
        raise ConfigError(f"{where}: has neither .dockerconfigjson nor .dockercfg "
                          f"(type {secret.get('type') or 'unset'})")
    doc = parse_document(config_text, name=f"{where}: {key}", kind="docker-config", fmt="json")
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: {key} must be a JSON object")
    auths = doc.get("auths") if key == ".dockerconfigjson" else doc
    return _from_auths(auths, host, source=source, where=f"{where}: {key}")


# -- precedence --------------------------------------------------------------------


def resolve(host: str, *, username: str | None = None, password: str | None = None,
            identity_token: str | None = None, env: Mapping[str, str] = os.environ,
            docker_config_path: Path | None = None) -> Credentials:
    """Credentials for ``host``: explicit flags > environment > Docker config > anonymous."""
    if identity_token:
        return Credentials(username=username, identity_token=identity_token, source="flags")
    if password and not username:
        raise ConfigError("a password was given without a username")
    if username:
        password = password or env.get(ENV_PASSWORD) or None
        if not password:
            raise ConfigError(f"a username was given without a password (pass one or set {ENV_PASSWORD})")
        return Credentials(username=username, password=password, source="flags")
    return (from_environment(host, env)
            or from_docker_config(host, config_path=docker_config_path, env=env)
            or ANONYMOUS)


def credential_options(target: Target, username: str | None = None, password: str | None = None, *,
                       use_store: bool = True, **options: Any) -> ClientOptions:
    """Client options carrying the credentials for ``target``'s host (flags > environment > Docker config).

    Looked up by the host requests go to, never by the registry's display name (``--name``), so
    a name chosen to match another host's entry cannot send that host's credentials here.
    """
    if target.kind == "registry" and use_store:
        creds = resolve(target.host, username=username, password=password)
    else:
        creds = Credentials(username=username, password=password,
                            source="flags" if username or password else "anonymous")
    if creds.password and not creds.username:
        raise ConfigError("a password was given without a username")
    return ClientOptions(username=creds.username, password=creds.password,
                         identity_token=creds.identity_token, **options)
