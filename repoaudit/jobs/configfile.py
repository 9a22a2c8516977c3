"""The repoaudit config file: a ``registries:`` list, each entry a collect job with its own
selection, credentials (docker-config, environment, secret-file, none), TLS and timeout; and an optional
``trust:`` list of cosign public keys, each for the repositories matching its globs."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repoaudit.errors import ConfigError
from repoaudit.jobs.flux import _check_pem, _objects, _proxy_url
from repoaudit.jobs.job import (
    CollectJob,
    _exclusion_list,
    _load_yaml_documents,
    parse_duration,
)
from repoaudit.model.options import parse_target
from repoaudit.model.reference import parse_reference
from repoaudit.model.signatures import TrustRule, load_key_file
from repoaudit.sources.credentials import (
    ANONYMOUS,
    Credentials,
    from_docker_config,
    from_dockerconfigjson_secret,
    from_environment,
)

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
    unknown = sorted(set(top) - {"registries", "trust"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (expected 'registries', 'trust')")
    trust = _trust(path, top.get("trust"))
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
        jobs.append(dataclasses.replace(job, trust=trust))
    return jobs


def _trust(path: Path, spec: Any) -> tuple[TrustRule, ...]:
    """``trust:``: a list of ``{key: PEM file (relative to the config file), repositories: [GLOB, ...]}``;
    without ``repositories`` a key is trusted for every repository."""
    if spec is None:
        return ()
    if not isinstance(spec, list):
        raise ConfigError(f"{path}: 'trust' must be a list of {{key, repositories}} entries")
    rules = []
    for index, entry in enumerate(spec):
        where = f"{path}: trust[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with 'key' and 'repositories'")
        unknown = sorted(set(entry) - {"key", "repositories"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected 'key', 'repositories')")
        if not isinstance(entry.get("key"), str) or not entry["key"].strip():
            raise ConfigError(f"{where}: 'key' must name a PEM public key file")
        globs = entry.get("repositories", ["*"])
        if isinstance(globs, str) or not isinstance(globs, list) or not globs \
                or not all(isinstance(g, str) and g.strip() for g in globs):
            raise ConfigError(f"{where}: 'repositories' must be a non-empty list of globs")
        key_path = (path.parent / entry["key"]).expanduser()
        rules.append(TrustRule(tuple(globs), load_key_file(key_path)))
    return tuple(rules)


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

