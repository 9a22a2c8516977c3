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

import dataclasses
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repoaudit.errors import ConfigError
from repoaudit.loader import load_documents
from repoaudit.model.options import ClientOptions, Target, parse_target
from repoaudit.model.regex import compile_go, matches_any
from repoaudit.model.signatures import TrustRule
from repoaudit.sources.credentials import ANONYMOUS, Credentials

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


DEFAULT_EXCLUSION_LIST = ("^.*\\.sig$",)


MAX_EXCLUSIONS = 25  # the CRD's MaxItems


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
    trust: tuple[TrustRule, ...] = ()  # the config file's trust: block, cosign keys per repository glob

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


def excluded(tag: str, exclusion_list: Iterable[str]) -> bool:
    """True when any pattern matches anywhere in ``tag`` (Go's ``regexp.MatchString``, as Flux uses)."""
    return matches_any(tag, exclusion_list)


def _exclusion_list(value: Any, where: str, key: str, *, empty_is_default: bool = False) -> tuple[str, ...]:
    """The exclusion regexes; absent means the default. Flux's ``GetExclusionList`` also gives the default
    for an empty list (``len > 0`` or the default), so Flux objects pass ``empty_is_default``; in
    repoaudit's own config file an empty list means "exclude nothing"."""
    if value is None or (empty_is_default and value == []):
        return DEFAULT_EXCLUSION_LIST
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ConfigError(f"{where}: {key} must be a list of regular expressions")
    if len(value) > MAX_EXCLUSIONS:
        raise ConfigError(f"{where}: {key} has {len(value)} entries (at most {MAX_EXCLUSIONS})")
    for pattern in value:
        try:
            compile_go(pattern)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} entry {pattern!r} is not a valid regular expression "
                              f"(Go/RE2 syntax, as Flux compiles it): {exc}") from None
    return tuple(value)


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

