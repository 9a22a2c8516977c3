"""Every error repoaudit raises, in one tree.

::

    RepoauditError                  base; str(error) is one line naming what was wrong
    ├── ConfigError                 bad URL, option, glob, config file or argument
    ├── RegistryError               a registry answered badly or not at all (.registry)
    │   ├── RegistryUnreachable     connection refused, DNS, TLS handshake, timeout
    │   ├── AuthenticationError     401/403 after credentials (or a token) were tried
    │   ├── RegistryHTTPError       any other non-2xx answer (.status, .codes)
    │   │   └── NotFoundError       404 / NAME_UNKNOWN / MANIFEST_UNKNOWN
    │   ├── InvalidResponse         a body or header that is not what it should be
    │   │   └── InvalidDocument     JSON that breaks its document schema (documents.py);
    │   │                           also an UnsupportedMediaType, which parse_manifest raised first
    │   ├── DigestMismatch          content whose sha256 differs from its digest
    │   ├── LimitExceeded           past a bound of the client (Limits) or the collector (index depth)
    │   │   ├── ResponseTooLarge    a body larger than its cap (manifests 4 MiB, ...)
    │   │   ├── DeadlineExceeded    a response not complete within its total deadline
    │   │   ├── TooManyRedirects    more redirects than the cap, or a redirect loop
    │   │   ├── PaginationError     a Link chain that repeats a URL or a page, or exceeds the page cap
    │   │   └── RequestBudgetExceeded  a repository needed more requests than its work can explain
    │   ├── CircuitOpen             the run stopped: too many requests in a row exhausted their retries
    │   └── BudgetExhausted         the run stopped fetching before the registry's rate-limit budget fell
    │                               below --keep-budget (the snapshot is partial, not failed)
    ├── LayoutError                 an OCI image layout directory that cannot be read
    ├── RegistryStorageError        a registry's storage directory (registry-storage:PATH) that cannot be read
    ├── UnsupportedMediaType        a manifest media type that cannot be parsed
    ├── StoreError                  the DuckDB file cannot be opened or migrated
    │   └── DatabaseLocked          another process held its lock longer than the caller would wait
    ├── QueryError                  unknown named query or parameter, bad parameter value
    ├── IngestError                 a scan report or workload file that cannot be ingested
    │   └── EventError              a registry event, webhook, spool or access-log line that is not one
    ├── PolicyError                 a retention policy that cannot be evaluated
    └── PlanVerificationError       a retention plan that does not match its hash, signature or the database

Files a user hands in are read by :mod:`repoaudit.loader`, whose errors read
``FILE:LINE:COL: what`` and are raised as the reader's class: ``IngestError`` for
scans and pod listings, ``PolicyError`` for policies, ``ConfigError`` for plans,
Flux YAML, the config file and Docker configs. The CLI turns every one of these
into ``Error: …`` with exit code 1 (usage errors 2, anything else 70: a bug).

Errors carry the context as attributes as well as in the message, so callers can
act on them (the collector records ``registry``/``repository`` with the snapshot).
Messages never contain credentials: the client never formats request headers.
"""

from __future__ import annotations


class RepoauditError(Exception):
    """Base class of every repoaudit error."""


class ConfigError(RepoauditError):
    """A URL, option, glob or configuration file is invalid."""


class UnsupportedMediaType(RepoauditError):
    """A manifest's media type is not one repoaudit can parse."""


class RegistryError(RepoauditError):
    """A registry did not answer as the distribution API says it should."""

    def __init__(self, message: str, *, registry: str | None = None, repository: str | None = None):
        self.registry = registry
        self.repository = repository
        where = registry or ""
        if repository:
            where = f"{where}/{repository}" if where else repository
        super().__init__(f"{where}: {message}" if where else message)


class RegistryUnreachable(RegistryError):
    """The registry could not be reached (connection, DNS, TLS, timeout)."""


class AuthenticationError(RegistryError):
    """The registry refused the credentials, or demanded some and none were given."""


class RegistryHTTPError(RegistryError):
    """The registry answered with an unexpected HTTP status."""

    def __init__(self, message: str, *, status: int, codes: tuple[str, ...] = (), **kw):
        self.status = status
        self.codes = codes
        super().__init__(message, **kw)


class NotFoundError(RegistryHTTPError):
    """The repository, tag, manifest or blob does not exist (HTTP 404)."""


class InvalidResponse(RegistryError):
    """A response body is not valid JSON of the expected shape."""


class DigestMismatch(RegistryError):
    """Content does not hash to the digest it was served under."""


class InvalidDocument(InvalidResponse, UnsupportedMediaType):
    """A manifest, index, config, catalog or tag list that breaks its schema."""


class LimitExceeded(RegistryError):
    """A response or a run went past one of the bounds in :class:`repoaudit.sources.registry.Limits`."""


class ResponseTooLarge(LimitExceeded):
    """A response body is larger than the cap for its kind."""


class DeadlineExceeded(LimitExceeded):
    """A response did not complete within its total deadline (a trickle, an endless body)."""


class TooManyRedirects(LimitExceeded):
    """A request was redirected more often than the cap allows."""


class PaginationError(LimitExceeded):
    """A ``Link: rel="next"`` chain repeats a URL or a page, or is longer than the page cap."""


class RequestBudgetExceeded(LimitExceeded):
    """A repository took more requests than its tags can explain: a runaway loop."""


class CircuitOpen(RegistryError):
    """Too many requests in a row exhausted their retries; the run stops asking."""


class BudgetExhausted(RegistryError):
    """The registry's rate-limit budget would fall below the budget to keep; the run stops fetching."""

    def __init__(self, message: str, *, registry: str | None = None, repository: str | None = None):
        super().__init__(message, registry=registry, repository=repository)
        self.reason = message  # without the registry/repository prefix, to quote under another name


class LayoutError(RepoauditError):
    """An OCI image layout directory is missing files or holds invalid JSON."""


class RegistryStorageError(RepoauditError):
    """A Distribution storage root is missing, unreadable, or holds a file not in the storage layout."""


class StoreError(RepoauditError):
    """The DuckDB database cannot be opened, migrated or written."""


class DatabaseLocked(StoreError):
    """Another process held the database's lock for longer than the caller would wait."""

    def __init__(self, message: str, *, holder: str | None = None):
        self.holder = holder
        super().__init__(message)


class QueryError(RepoauditError):
    """An unknown named query or parameter, or a parameter value of the wrong type."""


class IngestError(RepoauditError):
    """A scan report or workload file cannot be ingested."""


class EventError(IngestError):
    """A registry notification envelope, Harbor webhook, spool line or access-log line is invalid."""


class PolicyError(RepoauditError):
    """A retention policy is invalid or names something that cannot be evaluated."""


class PlanVerificationError(RepoauditError):
    """A retention plan was refused before anything was sent: its hash, signature, snapshot or a candidate
    does not match what the plan claims or what the database derives (the message names which)."""


def first_line(error: BaseException | str) -> str:
    """The first line of an error's text (DuckDB's and parsers' messages run on with context lines)."""
    text = str(error)
    return text.splitlines()[0] if text.strip() else type(error).__name__


def one_line(text: object) -> str:
    """Text folded onto one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(text).split())
