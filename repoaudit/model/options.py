"""Configuration built once at the edge (CLI flags, environment, notebook call) and passed down frozen."""
from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from repoaudit.errors import ConfigError
from repoaudit.model.glob import compile_glob
from repoaudit.model.regex import compile_go
from repoaudit.model.retry import RetryPolicy
from repoaudit.model.signatures import TrustedKey, TrustRule

DEFAULT_DB = "repoaudit.duckdb"


DEFAULT_CONCURRENCY = 16


# How far the adaptive limit may raise the requests in flight when latency stays flat (sources/adaptive.py):
# at a 54 ms round trip, 64 in flight is about 1,200 requests/s, more than two cores of client and
# registry serve on loopback.
DEFAULT_MAX_CONCURRENCY = 64


# Requests of a registry's rate-limit budget a collection leaves unspent: Docker Hub's anonymous budget is
# 100 pulls per 6 hours per address, and the machine collecting usually also pulls (a CI job, a node).
DEFAULT_KEEP_BUDGET = 10


# ECR and Distribution 2.8 both reject n > 1000 (PAGINATION_NUMBER_INVALID).
DEFAULT_PAGE_SIZE = 1000


def default_db_path() -> str:
    return os.environ.get("REPOAUDIT_DB") or DEFAULT_DB


@dataclass(frozen=True)
class Target:
    """Where images live: a registry base URL or an OCI layout directory."""

    kind: str  # "registry", "oci-layout" or "registry-storage"
    url: str  # normalised: "https://host:port", "oci:/abs/path" or "registry-storage:/abs/path"
    name: str  # the registry column in every table

    @property
    def path(self) -> Path:
        return Path(self.url.split(":", 1)[1])

    @property
    def host(self) -> str:
        """``host[:port]`` requests go to: credentials are looked up by this, never by ``name``."""
        return self.url.split("://", 1)[1] if self.kind == "registry" else ""


def parse_target(text: str, name: str | None = None) -> Target:
    """``https://host[:port]``, ``http://host:port`` (only when written), ``oci:PATH``,
    ``registry-storage:PATH`` (a Distribution filesystem driver's ``rootdirectory``), or a bare host (HTTPS)."""
    text = text.strip()
    if not text:
        raise ConfigError("empty registry URL")
    if text.startswith("registry-storage:"):
        raw = text[len("registry-storage:"):]
        if not raw:
            raise ConfigError(f"invalid target {text!r}: registry-storage: needs the storage root directory")
        path = Path(raw).expanduser().resolve()
        return Target("registry-storage", f"registry-storage:{path}", name or f"registry-storage:{path}")
    if text.startswith("oci:"):
        raw = text[4:]
        if raw.startswith("//"):
            raw = raw[2:]
        if not raw:
            raise ConfigError(f"invalid target {text!r}: oci: needs a directory path")
        path = Path(raw).expanduser().resolve()
        return Target("oci-layout", f"oci:{path}", name or f"oci:{path}")
    if "://" not in text:
        text = "https://" + text
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid registry URL {text!r}: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ConfigError(f"unsupported scheme {url.scheme!r} in {text!r}: use https://, http:// or oci:PATH")
    if not url.host:
        raise ConfigError(f"invalid registry URL {text!r}: no host")
    if url.path not in ("", "/"):
        raise ConfigError(f"invalid registry URL {text!r}: give the registry root, not a path ({url.path})")
    netloc = url.netloc.decode()
    return Target("registry", f"{url.scheme}://{netloc}", name or netloc)


@dataclass(frozen=True)
class ClientOptions:
    """How to talk to one registry. Secrets live here in memory only and never in ``repr``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    concurrency: int = DEFAULT_CONCURRENCY
    # The adaptive limit's ceiling; None: DEFAULT_MAX_CONCURRENCY, never below concurrency (equal: no growth).
    max_concurrency: int | None = None
    timeout: float = 30.0
    page_size: int = DEFAULT_PAGE_SIZE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    verify: bool | str | ssl.SSLContext = True  # False only with --insecure; a path means a CA bundle
    cert: tuple[str, str] | None = None  # client certificate and key files (mTLS)
    proxy: str | None = field(default=None, repr=False)  # may carry proxy credentials
    http2: bool = True
    user_agent: str = "repoaudit"

    def __post_init__(self):
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError(f"max concurrency must be at least 1, got {self.max_concurrency}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")
        if not 1 <= self.page_size <= 1000:
            raise ConfigError(f"page size must be between 1 and 1000, got {self.page_size}")

    @property
    def max_concurrency_or_default(self) -> int:
        return max(self.concurrency, self.max_concurrency or DEFAULT_MAX_CONCURRENCY)


@dataclass(frozen=True)
class CollectOptions:
    """What to collect and how."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    full: bool = False  # refetch manifests even when their digest is stored
    progress: bool = True
    repositories: tuple[str, ...] = ()  # collect exactly these, without /v2/_catalog
    exclude_tags: tuple[str, ...] = ()  # regexes, as Flux's exclusionList
    shard: tuple[int, int] | None = None  # (i, n): only repositories whose name hashes to i mod n
    posture: bool = True  # probe the registry's anonymous access and TLS (collect.posture)
    probe_push: bool = False  # and try an anonymous blob upload, cancelled at once
    verify_keys: tuple[TrustedKey, ...] = ()  # cosign public keys signatures are verified against, offline
    trust: tuple[TrustRule, ...] = ()  # keys for the repositories matching globs (the config file's trust:)
    # Stop fetching before the registry's announced rate-limit budget (ratelimit-remaining) falls below this.
    keep_budget: int = DEFAULT_KEEP_BUDGET

    def __post_init__(self):
        # Checked here, when the options are built: the collector compiles the regexes only
        # after its snapshot has begun, and a typo must not leave a 'failed' snapshot behind.
        for option, values in (("repository glob", self.include), ("exclude glob", self.exclude),
                               ("repository", self.repositories), ("tag exclusion regex", self.exclude_tags)):
            if isinstance(values, str):
                raise ConfigError(f"{option}s must be a list of strings, not the string {values!r}")
            for value in values:
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"invalid {option} {value!r}: empty")
        for option, globs in (("repository glob", self.include), ("exclude glob", self.exclude)):
            for glob in globs:
                try:
                    compile_glob(glob)
                except (ValueError, re.error) as exc:
                    raise ConfigError(f"invalid {option} {glob!r}: {exc}") from None
        for pattern in self.exclude_tags:
            try:
                compile_go(pattern)
            except ValueError as exc:
                raise ConfigError(f"invalid tag exclusion regex {pattern!r} (Go/RE2 syntax, as Flux's "
                                  f"exclusionList): {exc}") from None
        if not isinstance(self.keep_budget, int) or self.keep_budget < 0:
            raise ConfigError(f"keep budget must be a whole number of requests, 0 or more, got {self.keep_budget!r}")
        if self.shard is not None:
            object.__setattr__(self, "shard", parse_shard(self.shard))


def parse_shard(value: str | tuple[int, int]) -> tuple[int, int]:
    """``"i/n"`` or ``(i, n)`` with ``0 <= i < n``: which hash partition of the repositories to collect."""
    if isinstance(value, str):
        head, sep, tail = value.strip().partition("/")
        try:
            i, n = int(head), int(tail)
        except ValueError:
            raise ConfigError(f"invalid shard {value!r}: want i/n, e.g. 0/4 (shards are numbered 0 to n-1)") from None
        if not sep:
            raise ConfigError(f"invalid shard {value!r}: want i/n, e.g. 0/4 (shards are numbered 0 to n-1)")
    else:
        try:
            i, n = (int(x) for x in value)
        except (TypeError, ValueError):
            raise ConfigError(f"invalid shard {value!r}: want (i, n) or 'i/n'") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"invalid shard {i}/{n}: want 0 <= i < n (shards are numbered 0 to n-1)")
    return (i, n)

