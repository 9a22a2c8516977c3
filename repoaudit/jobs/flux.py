"""Flux ``ImageRepository`` objects as collect jobs: the objects, the Secrets and ServiceAccounts they
reference (credentials, certificates, proxies), read from YAML files and folders the way
image-reflector-controller reads them from the cluster."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from repoaudit.errors import ConfigError
from repoaudit.jobs.job import (
    CollectJob,
    _exclusion_list,
    _load_cert_chain,
    _load_yaml_documents,
    _yaml_files,
    log,
    parse_duration,
)
from repoaudit.model.reference import parse_reference
from repoaudit.sources.credentials import (
    ANONYMOUS,
    Credentials,
    from_dockerconfigjson_secret,
    secret_bytes,
)

FLUX_GROUP = "image.toolkit.fluxcd.io"


FLUX_VERSIONS = ("v1", "v1beta2", "v1beta1")


# Kinds of the image.toolkit group that carry nothing to collect.
_OTHER_FLUX_KINDS = frozenset({"ImagePolicy", "ImageUpdateAutomation"})


PROVIDERS = ("generic", "aws", "azure", "gcp")


_PROXY_SCHEMES = ("http", "https", "socks5")


_SPEC_FIELDS = frozenset({"image", "interval", "timeout", "secretRef", "serviceAccountName", "certSecretRef",
                          "proxySecretRef", "accessFrom", "suspend", "exclusionList", "provider", "insecure"})


@dataclass(frozen=True)
class _Doc:
    file: Path
    line: int
    body: dict

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


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
        ref = parse_reference(image, flux=True)
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
    exclusion_list = _exclusion_list(spec.get("exclusionList"), where, "spec.exclusionList", empty_is_default=True)

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


# Standard key, then the deprecated one Flux still reads (with a warning) when the first is absent.
_TLS_KEYS = (("ca.crt", "caFile"), ("tls.crt", "certFile"), ("tls.key", "keyFile"))


def _tls_from_secret(secret: Mapping, where: str, notes: list[str]
                     ) -> tuple[bytes | None, bytes | None, bytes | None]:
    values: list[bytes | None] = []
    legacy: list[str] = []
    for key, old in _TLS_KEYS:
        value = secret_bytes(secret, key, where)
        if value is None:
            value = secret_bytes(secret, old, where)
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
    address = secret_bytes(secret, "address", where)
    if address is None:
        raise ConfigError(f"{where}: has no address")
    text = address.decode("utf-8", "replace").strip()
    if not text:
        raise ConfigError(f"{where}: address is empty")
    username = secret_bytes(secret, "username", where)
    password = secret_bytes(secret, "password", where)
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

