"""What to collect, read from Flux ``ImageRepository`` manifests or from a repoaudit config file.

Both readers return :class:`CollectJob` values: one registry (and optionally a fixed
set of repositories) with everything needed to reach it — credentials, CA and
client certificate, proxy, timeout — resolved from the files at load time, so a
bad reference fails before any network traffic, with one line naming the file
and the object.

Flux
----
:func:`load_flux` reads files or directories (``*.yaml``/``*.yml``, recursively,
multi-document) the way image-reflector-controller would see them once applied:

* Directories are searched recursively; Helm charts (directories with a
  ``Chart.yaml``) are left out, their templates are not YAML until rendered.
* ``image.toolkit.fluxcd.io/v1``, ``v1beta2`` and ``v1beta1`` ``ImageRepository``
  objects become jobs. ``ImagePolicy`` and ``ImageUpdateAutomation`` are ignored;
  any other kind in that API group is an error (a typo would otherwise silently
  drop a repository). Other Kubernetes objects are ignored, except ``Secret`` and
  ``ServiceAccount``, which references resolve against (by namespace and name; a
  missing namespace is ``default``, as ``kubectl apply`` would make it).
* ``spec.image`` gives the registry and the one repository; ``canonical_image`` is
  Flux's ``status.canonicalImageName`` (``stefanprodan/podinfo`` →
  ``index.docker.io/stefanprodan/podinfo``). A tag or scheme in it is an error, as
  in Flux. A document without ``spec.image`` (a status-only example) is skipped.
* ``secretRef`` and the ``imagePullSecrets`` of ``serviceAccountName`` are Docker
  config Secrets: the first with an entry for the registry gives the credentials
  (go-containerregistry's keychain order). A ``secretRef`` naming a Secret that is
  not in the files is an error; a ServiceAccount that is not there is only noted,
  since those are rarely kept with the manifests.
* ``certSecretRef``: ``ca.crt``, ``tls.crt`` + ``tls.key`` (or the deprecated
  ``caFile``/``certFile``/``keyFile``); the CA extends the system trust store, as
  Flux's does. ``proxySecretRef``: ``address`` plus optional ``username``/``password``.
* ``insecure: true`` means plain HTTP (``registry_url`` is ``http://``), as Flux
  documents it. ``timeout`` is a Go duration (``1m30s``); ``exclusionList`` is at
  most 25 regular expressions matched anywhere in a tag, defaulting to
  ``^.*\\.sig$`` when absent (an explicit empty list excludes nothing).
* ``provider: aws|azure|gcp`` keeps the job but sets ``unsupported_reason``: Flux
  then logs in with the cloud provider (ignoring ``secretRef``), which repoaudit
  cannot do yet. ``interval``, ``accessFrom`` and unknown fields are noted in
  ``notes``. The same object (namespace and name) defined more than once, in one
  file or several: the last definition wins, with a note — what ``kubectl apply
  -R -f PATHS`` would leave. Give one cluster's directory at a time when several
  clusters reuse names.

Config file
-----------
:func:`load_config` reads repoaudit's own YAML::

    registries:
      - url: https://registry.example.com   # required; http:// only when written
        name: prod                           # the registry column; default host[:port]
        repositories: [team/app, team/api]   # default: every repository in the catalog
        include: ["team/*"]                  # globs on repository names
        exclude: ["*-cache"]
        exclusion_list: ["^.*\\.sig$"]      # tag regexes; default as Flux, at most 25
        credentials:                         # default: {from: docker-config}
          from: docker-config                # path: optional config.json to read instead
          # from: environment                # REPOAUDIT_USERNAME/PASSWORD/IDENTITY_TOKEN
          # from: secret-file                # path: a Kubernetes image pull Secret (YAML or JSON)
          # from: none                       # anonymous
          # username: robot                  # with password_env: VAR or password_file: PATH
        ca_file: ca.pem                      # PEM bundle added to the system trust store
        cert_file: client.crt                # client certificate and key (mutual TLS)
        key_file: client.key
        insecure: false                      # true: do not verify the TLS certificate
        timeout: 30                          # seconds, or a duration string ("1m30s")
        proxy: http://proxy.internal:3128
        suspend: false

Relative paths are relative to the config file. Passwords are never written in
the file itself (``password:`` is an error): they come from the Docker config, the
environment, a Secret file or a password file. Unknown keys are errors.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .config import ClientOptions, Target, parse_target
from .credentials import (ANONYMOUS, Credentials, from_docker_config, from_dockerconfigjson_secret,
                          from_environment)
from .errors import ConfigError
from .loader import load_documents
from .reference import parse_reference

__all__ = [
    "DEFAULT_EXCLUSION_LIST",
    "FLUX_GROUP",
    "MAX_EXCLUSIONS",
    "PROVIDERS",
    "CollectJob",
    "excluded",
    "load_config",
    "load_flux",
    "parse_duration",
]

log = logging.getLogger(__name__)

FLUX_GROUP = "image.toolkit.fluxcd.io"
FLUX_VERSIONS = ("v1", "v1beta2", "v1beta1")
# Kinds of the image.toolkit group that carry nothing to collect.
_OTHER_FLUX_KINDS = frozenset({"ImagePolicy", "ImageUpdateAutomation"})
DEFAULT_EXCLUSION_LIST = ("^.*\\.sig$",)
MAX_EXCLUSIONS = 25  # the CRD's MaxItems
PROVIDERS = ("generic", "aws", "azure", "gcp")
_PROXY_SCHEMES = ("http", "https", "socks5")
_SPEC_FIELDS = frozenset({"image", "interval", "timeout", "secretRef", "serviceAccountName", "certSecretRef",
                          "proxySecretRef", "accessFrom", "suspend", "exclusionList", "provider", "insecure"})


@dataclass(frozen=True, kw_only=True)
class CollectJob:
    """One registry to collect, with everything needed to reach it; secrets stay out of ``repr``."""

    name: str  # "<namespace>/<name>" of the ImageRepository, or the config entry's name
    image: str  # spec.image as written, or the config entry's url as written
    registry_url: str  # https://host[:port]; http:// for Flux insecure or a written http:// url
    registry: str  # host[:port], Docker Hub as index.docker.io
    repositories: tuple[str, ...] = ()  # empty: the whole catalog
    canonical_image: str | None = None  # Flux's canonicalImageName; None without a single repository
    credentials: Credentials = ANONYMOUS
    ca_file_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = field(default=None, repr=False)
    proxy: str | None = field(default=None, repr=False)  # may carry user:password
    # Flux: plain HTTP allowed (registry_url is http://); config file: the certificate is
    # not verified. Either way client_options() turns verification off.
    insecure: bool = False
    timeout: float | None = None  # seconds; None: the client's default
    exclusion_list: tuple[str, ...] = DEFAULT_EXCLUSION_LIST
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    suspended: bool = False
    provider: str = "generic"
    unsupported_reason: str | None = None
    notes: tuple[str, ...] = ()
    origin: str = ""  # "FILE:LINE" of the definition, for messages

    @property
    def target(self) -> Target:
        return parse_target(self.registry_url, name=self.registry)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context with the job's CA (added to the default trust) and client certificate, if it has either."""
        if not self.ca_file_pem and not self.client_cert_pem:
            return None
        try:
            import certifi  # httpx's own default trust store, so adding a CA takes nothing away
            context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover - certifi comes with httpx
            context = ssl.create_default_context()
        where = f"{self.origin or self.name}: "
        if self.ca_file_pem:
            try:
                context.load_verify_locations(cadata=self.ca_file_pem.decode("ascii"))
            except (ssl.SSLError, UnicodeDecodeError, ValueError):
                raise ConfigError(f"{where}CA certificate is not a valid PEM bundle") from None
        if self.client_cert_pem and self.client_key_pem:
            _load_cert_chain(context, self.client_cert_pem, self.client_key_pem, where)
        return context

    def client_options(self, base: ClientOptions | None = None) -> ClientOptions:
        """``base`` (or the defaults) with this job's credentials, timeout and TLS settings.

        ``verify`` becomes an :class:`ssl.SSLContext` when the job has a CA or a client
        certificate (httpx accepts one), ``False`` when ``insecure``.
        """
        base = base or ClientOptions()
        changes: dict[str, Any] = {
            "username": self.credentials.username,
            "password": self.credentials.password,
            "identity_token": self.credentials.identity_token,
        }
        if self.timeout is not None:
            changes["timeout"] = self.timeout
        if self.proxy:
            changes["proxy"] = self.proxy
        if self.insecure:
            changes["verify"] = False
        else:
            context = self.ssl_context()
            if context is not None:
                changes["verify"] = context
        return dataclasses.replace(base, **changes)

    def included(self, tag: str) -> bool:
        """False when ``tag`` matches the exclusion list."""
        return not excluded(tag, self.exclusion_list)


def _load_cert_chain(context: ssl.SSLContext, cert: bytes, key: bytes, where: str) -> None:
    # ssl only loads a client certificate from files: write both to a private
    # directory that exists for the duration of this call.
    with tempfile.TemporaryDirectory(prefix="repoaudit-tls-") as tmp:
        cert_path, key_path = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError:
            raise ConfigError(f"{where}client certificate and key do not load (not PEM, encrypted, "
                              f"or the key does not match the certificate)") from None


# -- small parsers -------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration string (``"60s"``, ``"1m30s"``, ``"1h"``, ``"1.5h"``, ``"300ms"``) in seconds.

    Raises :class:`ValueError` for anything else (negative durations included).
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"invalid duration {text!r}")
    if text == "0":
        return 0.0
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"invalid duration {text!r} (expected e.g. 30s, 1m30s, 1h)")
    return total


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def excluded(tag: str, exclusion_list: Iterable[str]) -> bool:
    """True when any pattern matches anywhere in ``tag`` (Go's ``regexp.MatchString``, as Flux uses)."""
    return any(_compiled(pattern).search(tag) for pattern in exclusion_list)


def _exclusion_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_EXCLUSION_LIST
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ConfigError(f"{where}: {key} must be a list of regular expressions")
    if len(value) > MAX_EXCLUSIONS:
        raise ConfigError(f"{where}: {key} has {len(value)} entries (at most {MAX_EXCLUSIONS})")
    for pattern in value:
        try:
            _compiled(pattern)
        except re.error as exc:
            raise ConfigError(f"{where}: {key} entry {pattern!r} is not a valid regular expression: {exc}") from None
    return tuple(value)


# -- YAML ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Doc:
    file: Path
    line: int
    body: dict

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _load_yaml_documents(path: Path, kind: str = "flux") -> list[tuple[int, Any]]:
    """``(line, document)`` for each YAML document of ``path`` (JSON for ``*.json``)."""
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    return [(doc.line, doc.body) for doc in load_documents(path, kind=kind, fmt=fmt, empty_ok=True)]


def _yaml_files(paths: Iterable[Path | str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            # Helm chart templates are Go templates, not YAML, until rendered.
            charts = [chart.parent for chart in path.rglob("Chart.yaml")]
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                           and not any(chart in p.parents for chart in charts))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such file or directory")
    return files


def _objects(doc: Any) -> Iterable[dict]:
    """The Kubernetes objects of one document: itself, or the items of a ``List``."""
    if not isinstance(doc, dict):
        return []
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        return [item for item in doc["items"] if isinstance(item, dict)]
    return [doc]


def _meta(obj: Mapping) -> tuple[str, str | None]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    namespace = meta.get("namespace") or "default"
    name = meta.get("name")
    return str(namespace), (str(name) if name is not None else None)


def _ref_name(spec: Mapping, key: str, where: str) -> str | None:
    ref = spec.get(key)
    if ref is None:
        return None
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref["name"]:
        raise ConfigError(f"{where}: {key} must be an object with a name")
    return ref["name"]


# -- Flux ----------------------------------------------------------------------------


class _FluxSet:
    """Everything read from the given files, indexed for reference lookups."""

    def __init__(self) -> None:
        # (namespace, name) -> (the definition that counts, where earlier ones were)
        self.repositories: dict[tuple[str, str], tuple[_Doc, list[str]]] = {}
        self.secrets: dict[tuple[str, str], _Doc] = {}
        self.service_accounts: dict[tuple[str, str], _Doc] = {}
        self.skipped: list[str] = []

    def add(self, file: Path, line: int, obj: dict) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return
        group, _, version = api_version.rpartition("/")
        doc = _Doc(file, line, obj)
        if group == FLUX_GROUP:
            if kind in _OTHER_FLUX_KINDS:
                return
            if kind != "ImageRepository":
                raise ConfigError(f"{doc.where}: unknown kind {kind!r} in {api_version} "
                                  f"(expected ImageRepository, ImagePolicy or ImageUpdateAutomation)")
            if version not in FLUX_VERSIONS:
                raise ConfigError(f"{doc.where}: ImageRepository {api_version} is not supported "
                                  f"(use {', '.join(FLUX_GROUP + '/' + v for v in FLUX_VERSIONS)})")
            namespace, name = _meta(obj)
            spec = obj.get("spec")
            label = f"ImageRepository {namespace}/{name or '?'}"
            if name is None:
                raise ConfigError(f"{doc.where}: ImageRepository has no metadata.name")
            if spec is not None and not isinstance(spec, Mapping):
                raise ConfigError(f"{doc.where}: {label}: spec must be an object")
            if not spec or not spec.get("image"):
                self.skipped.append(f"{doc.where}: {label} has no spec.image; skipped")
                return
            previous = self.repositories.pop((namespace, name), None)
            earlier = [*previous[1], previous[0].where] if previous is not None else []
            # Re-inserted, so the job list follows the order of the definitions that count.
            self.repositories[(namespace, name)] = (doc, earlier)
        elif api_version == "v1" and kind == "Secret":
            namespace, name = _meta(obj)
            if name is not None:
                self.secrets[(namespace, name)] = doc
        elif api_version == "v1" and kind == "ServiceAccount":
            namespace, name = _meta(obj)
            if name is not None:
                self.service_accounts[(namespace, name)] = doc

    def secret(self, namespace: str, name: str, what: str, where: str) -> dict:
        doc = self.secrets.get((namespace, name))
        if doc is None:
            raise ConfigError(f"{where}: {what} {name} not found (no Secret {namespace}/{name} in the given files)")
        return doc.body


def load_flux(paths: Iterable[Path | str] | Path | str, *, skipped: list[str] | None = None) -> list[CollectJob]:
    """Jobs for every ``ImageRepository`` in ``paths`` (files or directories), in file order.

    Lines about documents that were skipped (no ``spec.image``) are appended to
    ``skipped`` when given, and logged at INFO level.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found = _FluxSet()
    for file in _yaml_files(paths):
        for line, doc in _load_yaml_documents(file):
            for obj in _objects(doc):
                found.add(file, line, obj)
    for line in found.skipped:
        log.info(line)
    if skipped is not None:
        skipped.extend(found.skipped)
    return [_flux_job(found, key, doc, earlier) for key, (doc, earlier) in found.repositories.items()]


def _flux_job(found: _FluxSet, key: tuple[str, str], doc: _Doc, earlier: list[str]) -> CollectJob:
    namespace, name = key
    where = f"{doc.where}: ImageRepository {namespace}/{name}"
    spec: Mapping = doc.body["spec"]
    notes: list[str] = []
    if earlier:
        notes.append(f"also defined at {', '.join(earlier)}; the last definition is used (as kubectl apply "
                     f"would leave it)")

    image = spec["image"]
    if not isinstance(image, str):
        raise ConfigError(f"{where}: spec.image must be a string")
    if "://" in image:
        raise ConfigError(f"{where}: spec.image should not start with a URL scheme; "
                          f"remove '{image.split('://', 1)[0]}://'")
    try:
        ref = parse_reference(image)
    except ConfigError as exc:
        raise ConfigError(f"{where}: spec.image: {exc}") from None
    if ref.tag is not None or ref.digest is not None:
        raise ConfigError(f"{where}: spec.image {image!r} should not contain a tag or digest")

    insecure = _flux_bool(spec, "insecure", where)
    suspended = _flux_bool(spec, "suspend", where)
    timeout = None
    if spec.get("timeout") is not None:
        try:
            timeout = parse_duration(spec["timeout"])
        except ValueError as exc:
            raise ConfigError(f"{where}: spec.timeout: {exc}") from None
    if spec.get("interval") is not None:
        notes.append(f"interval {spec['interval']} is not used by repoaudit (it collects when it is run)")
    if spec.get("accessFrom") is not None:
        notes.append("accessFrom is not used by repoaudit")
    for unknown in sorted(set(spec) - _SPEC_FIELDS):
        notes.append(f"unknown field spec.{unknown} is ignored")
    exclusion_list = _exclusion_list(spec.get("exclusionList"), where, "spec.exclusionList")

    provider = spec.get("provider") or "generic"
    if provider not in PROVIDERS:
        raise ConfigError(f"{where}: spec.provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    unsupported = None
    credentials = ANONYMOUS
    secret_ref = _ref_name(spec, "secretRef", where)
    account = spec.get("serviceAccountName")
    if account is not None and not isinstance(account, str):
        raise ConfigError(f"{where}: spec.serviceAccountName must be a string")
    if provider != "generic":
        unsupported = (f"provider {provider} is not supported yet: repoaudit cannot log in with cloud "
                       f"credentials (use provider: generic with a secretRef)")
        if secret_ref:
            notes.append(f"secretRef {secret_ref} is not used with provider {provider} (as in Flux)")
    else:
        credentials = _flux_credentials(found, namespace, ref.registry, secret_ref, account, where, notes)

    ca = cert = key = None
    cert_ref = _ref_name(spec, "certSecretRef", where)
    if cert_ref:
        ca, cert, key = _tls_from_secret(found.secret(namespace, cert_ref, "certSecretRef", where),
                                         f"{where}: certSecretRef {cert_ref}", notes)
    proxy = None
    proxy_ref = _ref_name(spec, "proxySecretRef", where)
    if proxy_ref:
        proxy = _proxy_from_secret(found.secret(namespace, proxy_ref, "proxySecretRef", where),
                                   f"{where}: proxySecretRef {proxy_ref}")

    return CollectJob(
        name=f"{namespace}/{name}",
        image=image,
        registry_url=f"{'http' if insecure else 'https'}://{ref.registry}",
        registry=ref.registry,
        repositories=(ref.repository,),
        canonical_image=ref.canonical,
        credentials=credentials,
        ca_file_pem=ca,
        client_cert_pem=cert,
        client_key_pem=key,
        proxy=proxy,
        insecure=insecure,
        timeout=timeout,
        exclusion_list=exclusion_list,
        suspended=suspended,
        provider=provider,
        unsupported_reason=unsupported,
        notes=tuple(notes),
        origin=doc.where,
    )


def _flux_bool(spec: Mapping, key: str, where: str) -> bool:
    value = spec.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: spec.{key} must be true or false")
    return value


def _flux_credentials(found: _FluxSet, namespace: str, registry: str, secret_ref: str | None,
                      account: str | None, where: str, notes: list[str]) -> Credentials:
    # Flux builds one keychain from secretRef followed by the service account's pull
    # secrets; the first Secret with an entry for the registry answers.
    candidates: list[dict] = []
    if secret_ref:
        candidates.append(found.secret(namespace, secret_ref, "secretRef", where))
    if account:
        sa = found.service_accounts.get((namespace, account))
        if sa is None:
            notes.append(f"serviceAccountName {account}: no ServiceAccount {namespace}/{account} in the given "
                         f"files; its image pull secrets are not used")
        else:
            pulls = sa.body.get("imagePullSecrets") or []
            if not isinstance(pulls, list):
                raise ConfigError(f"{sa.where}: ServiceAccount {namespace}/{account}: imagePullSecrets must be a list")
            for entry in pulls:
                pull_name = entry.get("name") if isinstance(entry, Mapping) else None
                if not isinstance(pull_name, str) or not pull_name:
                    raise ConfigError(f"{sa.where}: ServiceAccount {namespace}/{account}: "
                                      f"imagePullSecrets entries need a name")
                candidates.append(found.secret(namespace, pull_name,
                                               f"imagePullSecret of ServiceAccount {account}", where))
    for secret in candidates:
        try:
            creds = from_dockerconfigjson_secret(secret, registry)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if creds is not None:
            return creds
    if candidates:
        notes.append(f"no image pull secret has credentials for {registry}; collecting anonymously")
    return ANONYMOUS


def _secret_bytes(secret: Mapping, key: str, where: str) -> bytes | None:
    """``stringData[key]`` (which wins, as the API server merges it) or base64-decoded ``data[key]``."""
    string_data = secret.get("stringData") or {}
    data = secret.get("data") or {}
    if not isinstance(string_data, Mapping) or not isinstance(data, Mapping):
        raise ConfigError(f"{where}: 'data' and 'stringData' must be maps")
    if key in string_data:
        if not isinstance(string_data[key], str):
            raise ConfigError(f"{where}: stringData[{key!r}] must be a string")
        return string_data[key].encode()
    if key in data:
        value = data[key]
        if not isinstance(value, str):
            raise ConfigError(f"{where}: data[{key!r}] must be a base64 string")
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: data[{key!r}] is not valid base64") from None
    return None


# Standard key, then the deprecated one Flux still reads (with a warning) when the first is absent.
_TLS_KEYS = (("ca.crt", "caFile"), ("tls.crt", "certFile"), ("tls.key", "keyFile"))


def _tls_from_secret(secret: Mapping, where: str, notes: list[str]
                     ) -> tuple[bytes | None, bytes | None, bytes | None]:
    values: list[bytes | None] = []
    legacy: list[str] = []
    for key, old in _TLS_KEYS:
        value = _secret_bytes(secret, key, where)
        if value is None:
            value = _secret_bytes(secret, old, where)
            if value is not None:
                legacy.append(old)
        values.append(value)
    ca, cert, key = values
    if legacy:
        notes.append(f"certSecretRef uses the deprecated keys {', '.join(legacy)}")
    if (cert is None) != (key is None):
        raise ConfigError(f"{where}: tls.crt and tls.key must be given together")
    if ca is None and cert is None:
        raise ConfigError(f"{where}: has neither ca.crt nor tls.crt/tls.key")
    _check_pem(ca, cert, key, where)
    return ca, cert, key


def _check_pem(ca: bytes | None, cert: bytes | None, key: bytes | None, where: str) -> None:
    """Fail at load time, not at the first request, when the TLS material does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        try:
            context.load_verify_locations(cadata=ca.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise ConfigError(f"{where}: the CA certificate is not a PEM certificate") from None
    if cert is not None and key is not None:
        _load_cert_chain(context, cert, key, f"{where}: ")


def _proxy_from_secret(secret: Mapping, where: str) -> str:
    address = _secret_bytes(secret, "address", where)
    if address is None:
        raise ConfigError(f"{where}: has no address")
    text = address.decode("utf-8", "replace").strip()
    if not text:
        raise ConfigError(f"{where}: address is empty")
    username = _secret_bytes(secret, "username", where)
    password = _secret_bytes(secret, "password", where)
    return _proxy_url(text, username.decode() if username is not None else None,
                      password.decode() if password is not None else None, where)


def _proxy_url(address: str, username: str | None, password: str | None, where: str) -> str:
    parts = urlsplit(address)
    if parts.scheme not in _PROXY_SCHEMES or not parts.hostname:
        raise ConfigError(f"{where}: proxy address must be a URL with scheme {', '.join(_PROXY_SCHEMES)}")
    netloc = parts.netloc.rpartition("@")[2]
    if username is not None:
        userinfo = quote(username, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        netloc = f"{userinfo}@{netloc}"
    return parts._replace(netloc=netloc).geturl()


# -- plain config file ---------------------------------------------------------------

_ENTRY_KEYS = frozenset({"url", "name", "repositories", "include", "exclude", "exclusion_list", "credentials",
                         "ca_file", "cert_file", "key_file", "insecure", "timeout", "proxy", "suspend"})
_CREDENTIAL_KEYS = frozenset({"from", "path", "username", "password_env", "password_file"})
_CREDENTIAL_SOURCES = ("docker-config", "environment", "secret-file", "none")


def load_config(path: Path | str, *, env: Mapping[str, str] = os.environ) -> list[CollectJob]:
    """Jobs for the ``registries`` of a repoaudit YAML config file (format in the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    docs = [doc for _, doc in _load_yaml_documents(path, "config") if doc is not None]
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ConfigError(f"{path}: expected one YAML mapping with a 'registries' list")
    top = docs[0]
    unknown = sorted(set(top) - {"registries"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (expected 'registries')")
    entries = top.get("registries")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: 'registries' must be a non-empty list")
    jobs: list[CollectJob] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        job = _config_job(path, index, entry, env)
        if job.name in names:
            raise ConfigError(f"{path}: registries[{index}]: name {job.name!r} is used twice "
                              f"(give each entry its own 'name')")
        names.add(job.name)
        jobs.append(job)
    return jobs


def _config_job(path: Path, index: int, entry: Any, env: Mapping[str, str]) -> CollectJob:
    where = f"{path}: registries[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'url'")
    url = entry.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: 'url' is required")
    where = f"{where} ({url})"
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        hint = " (passwords are not written in the config: see 'credentials')" if "password" in unknown else ""
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}{hint}")
    try:
        target = parse_target(url)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if target.kind != "registry":
        raise ConfigError(f"{where}: url must be an https:// or http:// registry")
    host = target.name
    name = entry.get("name") or host
    if not isinstance(name, str):
        raise ConfigError(f"{where}: 'name' must be a string")

    repositories = _string_list(entry, "repositories", where)
    for repository in repositories:
        try:
            ref = parse_reference(f"{host}/{repository}")
        except ConfigError:
            raise ConfigError(f"{where}: {repository!r} is not a valid repository name") from None
        if ref.tag or ref.digest:
            raise ConfigError(f"{where}: repository {repository!r} must not have a tag or digest")
    include = _string_list(entry, "include", where)
    exclude = _string_list(entry, "exclude", where)
    exclusion_list = _exclusion_list(entry.get("exclusion_list"), where, "exclusion_list")

    base = path.parent
    ca = _read_file(base, entry, "ca_file", where)
    cert = _read_file(base, entry, "cert_file", where)
    key = _read_file(base, entry, "key_file", where)
    if (cert is None) != (key is None):
        raise ConfigError(f"{where}: cert_file and key_file must be given together")
    if ca is not None or cert is not None:
        _check_pem(ca, cert, key, where)

    insecure = entry.get("insecure", False)
    suspended = entry.get("suspend", False)
    for key_name, value in (("insecure", insecure), ("suspend", suspended)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key_name!r} must be true or false")
    timeout = entry.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, str)):
            raise ConfigError(f"{where}: 'timeout' must be seconds or a duration such as 1m30s")
        if isinstance(timeout, str):
            try:
                timeout = parse_duration(timeout)
            except ValueError as exc:
                raise ConfigError(f"{where}: timeout: {exc}") from None
        timeout = float(timeout)
        if timeout <= 0:
            raise ConfigError(f"{where}: 'timeout' must be positive")
    proxy = entry.get("proxy")
    if proxy is not None:
        if not isinstance(proxy, str):
            raise ConfigError(f"{where}: 'proxy' must be a URL")
        proxy = _proxy_url(proxy, None, None, where)

    credentials = _config_credentials(base, entry.get("credentials"), host, where, env)
    repo_list = tuple(repositories)
    return CollectJob(
        name=name,
        image=url,
        registry_url=target.url,
        registry=host,
        repositories=repo_list,
        canonical_image=f"{host}/{repo_list[0]}" if len(repo_list) == 1 else None,
        credentials=credentials,
        ca_file_pem=ca,
        client_cert_pem=cert,
        client_key_pem=key,
        proxy=proxy,
        insecure=insecure,
        timeout=timeout,
        exclusion_list=exclusion_list,
        include=tuple(include),
        exclude=tuple(exclude),
        suspended=suspended,
        origin=f"{path}: registries[{index}]",
    )


def _string_list(entry: Mapping, key: str, where: str) -> list[str]:
    value = entry.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key!r} must be a list of strings")
    return value


def _read_file(base: Path, entry: Mapping, key: str, where: str) -> bytes | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key!r} must be a file path")
    file = (base / Path(value).expanduser()).resolve()
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: {key} {file}: {exc.strerror or exc}") from None


def _config_credentials(base: Path, spec: Any, host: str, where: str, env: Mapping[str, str]) -> Credentials:
    if spec is None:
        spec = {"from": "docker-config"}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: 'credentials' must be a mapping")
    where = f"{where}: credentials"
    unknown = sorted(set(spec) - _CREDENTIAL_KEYS)
    if unknown:
        hint = " (use password_env or password_file)" if "password" in unknown else ""
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}{hint}")
    username = spec.get("username")
    if username is not None:
        if "from" in spec:
            raise ConfigError(f"{where}: give either 'from' or 'username', not both")
        return _config_password(base, spec, username, where, env)
    source = spec.get("from", "docker-config")
    if source not in _CREDENTIAL_SOURCES:
        raise ConfigError(f"{where}: 'from' must be one of {', '.join(_CREDENTIAL_SOURCES)}")
    file = spec.get("path")
    if file is not None and source not in ("docker-config", "secret-file"):
        raise ConfigError(f"{where}: 'path' only goes with from: docker-config or from: secret-file")
    if source == "none":
        return ANONYMOUS
    try:
        if source == "environment":
            return from_environment(host, env) or ANONYMOUS
        if source == "docker-config":
            config_path = (base / Path(file).expanduser()) if isinstance(file, str) else None
            return from_docker_config(host, config_path=config_path, env=env) or ANONYMOUS
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(file, str) or not file:
        raise ConfigError(f"{where}: from: secret-file needs 'path'")
    return _secret_file_credentials((base / Path(file).expanduser()).resolve(), host, where)


def _config_password(base: Path, spec: Mapping, username: Any, where: str, env: Mapping[str, str]) -> Credentials:
    if not isinstance(username, str) or not username:
        raise ConfigError(f"{where}: 'username' must be a string")
    variable, file = spec.get("password_env"), spec.get("password_file")
    if (variable is None) == (file is None):
        raise ConfigError(f"{where}: 'username' needs exactly one of password_env or password_file")
    if variable is not None:
        if not isinstance(variable, str) or not variable:
            raise ConfigError(f"{where}: 'password_env' must name an environment variable")
        password = env.get(variable)
        if not password:
            raise ConfigError(f"{where}: environment variable {variable} is not set")
        return Credentials(username=username, password=password, source="environment")
    if not isinstance(file, str) or not file:
        raise ConfigError(f"{where}: 'password_file' must be a file path")
    resolved = (base / Path(file).expanduser()).resolve()
    try:
        password = resolved.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: password_file {resolved}: {getattr(exc, 'strerror', None) or 'unreadable'}"
                          ) from None
    if not password:
        raise ConfigError(f"{where}: password_file {resolved} is empty")
    return Credentials(username=username, password=password, source=f"file:{resolved}")


def _secret_file_credentials(file: Path, host: str, where: str) -> Credentials:
    if not file.is_file():
        raise ConfigError(f"{where}: secret file {file} does not exist")
    documents = _load_yaml_documents(file, "docker-config")
    secrets = [obj for _, doc in documents for obj in _objects(doc) if obj.get("kind") == "Secret"]
    # A bare config.json (no Kubernetes wrapper) is accepted too: it is what
    # `kubectl create secret docker-registry --from-file` is usually fed.
    if not secrets:
        docs = [doc for _, doc in documents]
        if len(docs) == 1 and isinstance(docs[0], dict) and "auths" in docs[0]:
            try:
                return from_docker_config(host, docs[0]) or ANONYMOUS
            except ConfigError as exc:
                raise ConfigError(f"{where}: {file}: {exc}") from None
        raise ConfigError(f"{where}: {file} holds no Kubernetes Secret and no Docker config")
    for secret in secrets:
        try:
            creds = from_dockerconfigjson_secret(secret, host)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {file}: {exc}") from None
        if creds is not None:
            return creds
    return ANONYMOUS
