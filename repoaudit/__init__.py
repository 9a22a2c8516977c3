"""repoaudit: analytics and audit for container image registries.

Snapshot registries into DuckDB, then ask which images are stale, how many bytes
a retention policy would really free, and where known vulnerabilities run::

    import repoaudit
    audit = repoaudit.open("repoaudit.duckdb")
    audit.collect("https://registry.example.com")
    audit.query("repository_summary")
"""

__version__ = "0.1.0"

from .audit import Audit, open  # noqa: E402
from .collector import CollectResult  # noqa: E402
from .config import ClientOptions, CollectOptions, Target, parse_target  # noqa: E402
from .errors import (AuthenticationError, ConfigError, DigestMismatch, IngestError, InvalidResponse,  # noqa: E402
                     LayoutError, NotFoundError, PolicyError, QueryError, RegistryError, RegistryHTTPError,
                     RegistryUnreachable, RepoauditError, StoreError, UnsupportedMediaType)
from .retry import NO_BACKOFF, RetryPolicy  # noqa: E402

__all__ = sorted([
    "Audit", "AuthenticationError", "ClientOptions", "CollectOptions", "CollectResult", "ConfigError",
    "DigestMismatch", "IngestError", "InvalidResponse", "LayoutError", "NO_BACKOFF", "NotFoundError",
    "PolicyError", "QueryError", "RegistryError", "RegistryHTTPError", "RegistryUnreachable", "RepoauditError",
    "RetryPolicy", "StoreError", "Target", "UnsupportedMediaType", "open", "parse_target",
])
