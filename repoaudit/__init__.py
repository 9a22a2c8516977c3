"""repoaudit: analytics and audit for container image registries.

Snapshot registries into DuckDB, then ask which images are stale, how many bytes
a retention policy would really free, and where known vulnerabilities run::

    import repoaudit
    audit = repoaudit.open("repoaudit.duckdb")
    audit.collect("https://registry.example.com")
    audit.query("repository_summary")

This module is the public face: it re-exports; nothing inside the package imports it
(the version lives in ``_version``), so the stages never import back up.
"""

from repoaudit._version import __version__
from repoaudit.analysis.gc import GCPreview
from repoaudit.audit import Audit, open
from repoaudit.collect.collector import CollectResult
from repoaudit.errors import (
                              AuthenticationError,
                              BudgetExhausted,
                              CircuitOpen,
                              ConfigError,
                              DatabaseLocked,
                              DeadlineExceeded,
                              DigestMismatch,
                              EventError,
                              IngestError,
                              InvalidDocument,
                              InvalidResponse,
                              LayoutError,
                              LimitExceeded,
                              NotFoundError,
                              PaginationError,
                              PlanVerificationError,
                              PolicyError,
                              QueryError,
                              RegistryError,
                              RegistryHTTPError,
                              RegistryStorageError,
                              RegistryUnreachable,
                              RepoauditError,
                              RequestBudgetExceeded,
                              ResponseTooLarge,
                              StoreError,
                              TooManyRedirects,
                              UnsupportedMediaType,
)
from repoaudit.model.formatting import human_bytes
from repoaudit.model.limits import Limits
from repoaudit.model.options import ClientOptions, CollectOptions, Target, parse_target
from repoaudit.model.retry import NO_BACKOFF, RetryPolicy
from repoaudit.retention.whatif import default_policies_dir

__all__ = sorted([
    "Audit", "AuthenticationError", "BudgetExhausted", "CircuitOpen", "ClientOptions", "CollectOptions", "CollectResult",
    "ConfigError", "DatabaseLocked", "DeadlineExceeded", "DigestMismatch", "EventError", "GCPreview",
    "IngestError", "InvalidDocument", "InvalidResponse",
    "LayoutError", "LimitExceeded", "Limits", "NO_BACKOFF", "NotFoundError", "PaginationError",
    "PlanVerificationError", "PolicyError", "QueryError", "RegistryError", "RegistryHTTPError",
    "RegistryStorageError", "RegistryUnreachable", "RepoauditError", "RequestBudgetExceeded", "ResponseTooLarge", "RetryPolicy",
    "StoreError", "Target", "TooManyRedirects", "UnsupportedMediaType", "__version__", "default_policies_dir",
    "human_bytes", "open", "parse_target",
])
