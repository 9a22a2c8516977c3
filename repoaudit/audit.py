"""The Python API: ``audit = repoaudit.open("repoaudit.duckdb")``, then DataFrames.

Everything the CLI does goes through :class:`Audit`, so a notebook and a cron
job see the same behaviour.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

import duckdb
import pandas as pd

from repoaudit.analysis.gc import DEFAULT_UPLOAD_AGE_HOURS, GCPreview, gc_preview
from repoaudit.analysis.queries import NamedQuery, get_query, load_queries
from repoaudit.collect.collector import CollectResult, Part, collect_parts
from repoaudit.collect.progress import NullProgress, for_people
from repoaudit.errors import ConfigError, QueryError, StoreError, first_line
from repoaudit.jobs.job import CollectJob
from repoaudit.jobs.status import status_documents
from repoaudit.model.options import (
    DEFAULT_KEEP_BUDGET,
    ClientOptions,
    CollectOptions,
    Target,
    default_db_path,
    parse_target,
)
from repoaudit.model.retry import RetryPolicy
from repoaudit.model.signatures import TrustedKey, load_key_file
from repoaudit.sources.credentials import credential_options
from repoaudit.sources.factory import open_source
from repoaudit.store.database import Lease, collect_lock, connect
from repoaudit.store.frames import fetch_frame


def run_sync(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine from sync code, also inside Jupyter where a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    box: dict[str, Any] = {}

    def runner():
        try:
            box["result"] = asyncio.run(make_coro())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="repoaudit-collect")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


DEFAULT_LOCK_TIMEOUT = 300.0
_log = logging.getLogger("repoaudit")


def _reads(method):
    """Run the method on a read-only connection opened for it (or the one already open)."""
    @functools.wraps(method)
    def inner(self: "Audit", *args, **kwargs):
        with self.session():
            return method(self, *args, **kwargs)
    return inner


def _writes(method):
    """Run the method on a writable connection opened for it: the lock is held for the call only."""
    @functools.wraps(method)
    def inner(self: "Audit", *args, **kwargs):
        with self.session(write=True, doing=method.__name__.replace("_", " ")):
            return method(self, *args, **kwargs)
    return inner


class Audit:
    """A repoaudit database: collect into it, query it, export from it.

    It holds no connection between calls: each read opens the file read-only and each write opens it
    writable for that call alone, so a notebook left open never blocks the nightly ``collect`` (DuckDB
    locks a file per process). When another process holds the lock, a call waits up to
    ``lock_timeout`` seconds, then raises :class:`~repoaudit.DatabaseLocked`. ``read_only=True`` refuses
    writes. Touching :attr:`con` opens a connection that stays open until :meth:`close`.
    """

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, on_wait: Callable[[str], None] | None = None):
        self.path = str(path or default_db_path())
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait or _log.warning
        self._con: duckdb.DuckDBPyConnection | None = None
        self._writable = False
        self._depth = 0
        self._held = self.path == ":memory:"  # an in-memory database lives as long as its one connection
        # Open once now, so a bad path or a newer schema shows here; a writable open creates and migrates.
        with self.session(write=not read_only):
            pass

    def __repr__(self) -> str:
        return f"Audit({self.path!r})"

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The open connection; opened (writable unless ``read_only``) and kept until :meth:`close` if none is."""
        if self._con is None:
            self._open(write=not self.read_only)
            self._held = True
        return self._con

    def _open(self, *, write: bool) -> None:
        self._con = connect(self.path, read_only=not write and not self._held,
                            lock_timeout=self.lock_timeout, on_wait=self.on_wait)
        self._writable = write or self._held

    @contextmanager
    def session(self, *, write: bool = False, doing: str = "write"):
        """Hold one connection for a block of calls (writable with ``write=True``), released at its end."""
        if write and self.read_only:
            raise StoreError(f"{self.path} is open read-only; open it writable to {doing}")
        if self._con is not None and write and not self._writable:
            if self._depth:
                raise StoreError(f"{self.path}: cannot {doing} inside a read")
            self.release()
        if self._con is None:
            self._open(write=write)
        self._depth += 1
        try:
            yield self._con
        finally:
            self._depth -= 1
            if self._depth == 0 and not self._held:
                self.release()

    def release(self) -> None:
        """Close the connection if one is open (the next call opens another)."""
        if self._con is not None and self.path != ":memory:":
            con, self._con = self._con, None
            self._held = False
            con.close()

    def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            con.close()

    def _lease(self) -> Lease:
        """The writable connection for a long job that lets it go while it has no use for it (collect)."""
        def reopen() -> duckdb.DuckDBPyConnection:
            if self._con is None:
                self._open(write=True)
            return self._con
        # A connection the caller holds (audit.con) stays open: they asked for it, lock and all.
        return Lease(opener=reopen, closer=lambda con: None if self._held else self.release())

    def __enter__(self) -> "Audit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------
    @_reads
    def sql(self, text: str, params: dict | list | None = None) -> pd.DataFrame:
        """Run ad-hoc SQL and return a DataFrame."""
        try:
            return fetch_frame(self.con, text, params)
        except duckdb.Error as exc:
            raise QueryError(f"SQL failed: {first_line(exc)}") from None

    def queries(self) -> pd.DataFrame:
        """The named queries with their descriptions and parameters."""
        rows = [{"name": q.name, "description": q.description,
                 "parameters": ", ".join(f"{p.name} {p.type} = {'NULL' if p.default is None else repr(p.default)}"
                                        for p in q.params)}
                for q in load_queries().values()]
        return pd.DataFrame(rows, columns=["name", "description", "parameters"])

    def named(self, name: str) -> NamedQuery:
        return get_query(name)

    @_reads
    def query(self, name: str, **params: Any) -> pd.DataFrame:
        """Run the named query ``queries/<name>.sql`` with bound parameters."""
        q = get_query(name)
        bound = q.bind(params)
        try:
            return fetch_frame(self.con, q.sql, bound)
        except duckdb.Error as exc:
            raise QueryError(f"query {name} failed: {first_line(exc)}") from None

    def snapshots(self) -> pd.DataFrame:
        return self.query("snapshots")

    @_reads
    def flux_status(self, registry: str | None = None) -> list[dict]:
        """The latest status of each repository as Flux ImageRepository objects (plain dicts)."""
        return status_documents(self.query("repository_status", registry=registry).itertuples())

    @_reads
    def relations(self) -> list[str]:
        rows = self.con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                                "ORDER BY table_name").fetchall()
        return [r[0] for r in rows]

    @_reads
    def relation(self, name: str) -> pd.DataFrame:
        """A whole table or view by name (checked against the catalog, never pasted blindly)."""
        if name not in self.relations():
            raise QueryError(f"unknown table or view {name!r} (valid: {', '.join(self.relations())})")
        return fetch_frame(self.con, f'SELECT * FROM "{name}"')

    @_reads
    def export_csv(self, name: str, path: str | Path, **params: Any) -> int:
        """Write a table, view or named query to CSV (the CLI's output contract); returns the row count."""
        from repoaudit.model.output import to_csv

        frame = self.export_frame(name, **params)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(to_csv(frame), encoding="utf-8")
        return len(frame)

    @_reads
    def export_frame(self, name: str, **params: Any) -> pd.DataFrame:
        """A table, view or named query (with ``params``) as a DataFrame: what :meth:`export_csv` writes."""
        if name in self.relations():
            if params:
                raise QueryError(f"{name} is a table or view and takes no parameters")
            frame = self.relation(name)
        elif name in load_queries():
            frame = self.query(name, **params)
        else:
            raise QueryError(f"unknown table, view or query {name!r} (tables and views: "
                             f"{', '.join(self.relations())}; queries: {', '.join(load_queries())})")
        return frame

    @_reads
    def export_parquet(self, directory: str | Path, *, overwrite: bool = False, append: bool = False) -> dict[str, int]:
        """Every table as Hive-partitioned Parquet under ``directory`` (a lake; ``append`` adds the
        snapshots it lacks); rows written per table."""
        from repoaudit.store.exports import export_parquet

        return export_parquet(self.con, directory, overwrite=overwrite, append=append)

    # -- collecting ------------------------------------------------------------
    def collect(self, url: str | Target, *, username: str | None = None, password: str | None = None,
                concurrency: int = 16, max_concurrency: int | None = None,
                include: Iterable[str] = (), exclude: Iterable[str] = (),
                repositories: Iterable[str] = (), exclude_tags: Iterable[str] = (),
                full: bool = False, progress: bool = True, name: str | None = None,
                started_at: datetime | None = None, retry: RetryPolicy | None = None,
                ca_file: str | None = None, cert: tuple[str, str] | None = None, insecure: bool = False,
                timeout: float | None = None, proxy: str | None = None,
                client_options: ClientOptions | None = None, transport=None,
                shard: str | tuple[int, int] | None = None, use_credential_store: bool = True,
                posture: bool = True, probe_push: bool = False,
                verify_keys: Iterable[str | Path | TrustedKey] = (),
                keep_budget: int = DEFAULT_KEEP_BUDGET) -> CollectResult:
        """Snapshot one registry (``https://…``/``http://…``) or OCI layout tree (``oci:PATH``).

        Credentials: ``username``/``password`` when given, else ``REPOAUDIT_USERNAME``/
        ``REPOAUDIT_PASSWORD``, else the Docker config (``$DOCKER_CONFIG/config.json``, its
        ``credHelpers``/``credsStore``), else anonymous. ``repositories`` names what to collect
        on registries without a catalog; ``exclude_tags`` are regexes, as Flux's exclusionList.
        ``shard="i/n"`` collects only the repositories whose name hashes to ``i`` mod ``n``.
        ``posture`` probes the registry's anonymous access and TLS without credentials (``registry_posture``);
        ``probe_push`` adds an anonymous blob upload, cancelled at once. ``keep_budget``: stop fetching
        before the registry's announced rate-limit budget (``ratelimit-remaining``) falls below it; the
        snapshot is then ``partial`` and ``CollectResult.not_reached`` names what was not read.
        ``verify_keys``: cosign public keys (PEM files or loaded keys) to verify signatures against, offline.
        ``concurrency`` is the requests in flight to start with; the limit then grows while latency stays flat
        and nothing is refused, up to ``max_concurrency`` (default 64, never below ``concurrency``), and backs
        off on 429/503 and on rising latency (``repoaudit.sources.adaptive``).
        """
        target = url if isinstance(url, Target) else parse_target(url, name)
        if client_options is None:
            client_options = credential_options(
                target, username, password, use_store=use_credential_store,
                concurrency=concurrency, max_concurrency=max_concurrency,
                verify=False if insecure else (ca_file or True), cert=cert, proxy=proxy,
                **({"timeout": timeout} if timeout else {}), **({"retry": retry} if retry else {}))
        options = CollectOptions(include=tuple(include), exclude=tuple(exclude), full=full, shard=shard,
                                 repositories=tuple(repositories), exclude_tags=tuple(exclude_tags),
                                 posture=posture, probe_push=probe_push, keep_budget=keep_budget,
                                 verify_keys=tuple(k if isinstance(k, TrustedKey) else load_key_file(k)
                                                   for k in verify_keys))
        kw = {"transport": transport} if transport is not None and target.kind == "registry" else {}
        return self._collect_parts(target.name, [(target, client_options, options, None, kw)],
                                   progress=progress, started_at=started_at)

    def collect_jobs(self, jobs: Iterable[CollectJob], *, concurrency: int = 16, max_concurrency: int | None = None,
                     full: bool = False,
                     progress: bool = True, retry: RetryPolicy | None = None, posture: bool = True,
                     probe_push: bool = False, verify_keys: Iterable[TrustedKey] = (),
                     keep_budget: int = DEFAULT_KEEP_BUDGET
                     ) -> tuple[list[CollectResult], list[tuple[CollectJob, str]]]:
        """Collect Flux ImageRepository / config-file jobs: one snapshot per registry.

        Jobs on the same registry (several ImageRepository objects, each with its own
        secret and exclusion list) share one snapshot. Suspended jobs and unsupported
        providers are skipped and returned with the reason, as Flux would report them.
        """
        skipped: list[tuple[CollectJob, str]] = []
        groups: dict[str, list] = {}
        for job in jobs:
            if job.suspended:
                skipped.append((job, "suspended"))
                continue
            if job.unsupported_reason:
                skipped.append((job, job.unsupported_reason))
                continue
            base = ClientOptions(concurrency=concurrency, max_concurrency=max_concurrency,
                                 **({"retry": retry} if retry else {}))
            options = CollectOptions(include=job.include, exclude=job.exclude, full=full,
                                     repositories=job.repositories, exclude_tags=job.exclusion_list,
                                     posture=posture, probe_push=probe_push, keep_budget=keep_budget,
                                     verify_keys=tuple(verify_keys), trust=job.trust)
            groups.setdefault(job.registry, []).append((job.target, job.client_options(base), options, job.name, {}))
        results = [self._collect_parts(registry, parts, progress=progress, started_at=None)
                   for registry, parts in groups.items()]
        return results, skipped

    def _collect_parts(self, registry: str, parts: list, *, progress: bool, started_at: datetime | None
                       ) -> CollectResult:
        async def go():
            sources = [open_source(target, client, **kw) for target, client, _, _, kw in parts]
            try:
                plan = [Part(src, options, label) for src, (_, _, options, label, _) in zip(sources, parts)]
                bar = for_people(registry) if progress else NullProgress()
                return await collect_parts(lease, plan, progress=bar, started_at=started_at)
            finally:
                for src in sources:
                    await src.aclose()

        with collect_lock(self.path, registry, timeout=self.lock_timeout, on_wait=self.on_wait), \
                self.session(write=True, doing="collect"):
            lease = self._lease()
            return run_sync(go)

    @_reads
    def latest_result(self, registry: str, *, after: int | None = None) -> CollectResult | None:
        """The registry's newest snapshot as a :class:`CollectResult` (``None`` if it has none newer
        than snapshot ``after``): what a collect that raised left behind, for exit codes and metrics."""
        import json

        row = self.con.execute(
            "SELECT snapshot_id, status, mode, repository_count, tag_count, manifest_count, new_manifest_count, "
            "error_count, date_diff('millisecond', started_at, finished_at) / 1000.0, requests, error "
            "FROM snapshots WHERE registry = $r ORDER BY snapshot_id DESC LIMIT 1", {"r": registry}).fetchone()
        if row is None or (after is not None and row[0] <= after):
            return None
        requests = json.loads(row[9]) if isinstance(row[9], str) else (row[9] or {})
        return CollectResult(row[0], registry, row[1], row[2] or "full", *(int(v or 0) for v in row[3:8]),
                             float(row[8] or 0.0), dict(requests), row[10])

    @_reads
    def write_collect_metrics(self, path: str | Path, results: Iterable[CollectResult]) -> Path:
        """Prometheus text-format gauges for collect ``results`` (status, seconds, requests, errors,
        unique bytes, deployed images with fixable criticals per registry), written atomically for
        node-exporter's textfile collector."""
        from repoaudit.analysis.metrics import collect_registry, write_metrics

        results = list(results)
        unique = {r.registry: self.query("snapshots", limit=1, registry=r.registry)["unique_bytes"].iloc[0]
                  for r in results}
        fixable = self.query("fixable_critical_deployed", min_severity="CRITICAL")
        critical = {str(k): int(v) for k, v in fixable.groupby("registry")["digest"].nunique().items()}
        return write_metrics(path, collect_registry(results, unique, critical))

    @staticmethod
    def write_retention_metrics(path: str | Path, plan: Any) -> Path:
        """Prometheus text-format gauges for a retention plan (reclaimable bytes per policy), written atomically."""
        from repoaudit.analysis.metrics import retention_registry, write_metrics

        return write_metrics(path, retention_registry(plan))

    # -- scans and workloads (issue 4) ----------------------------------------
    @_writes
    def ingest(self, kind: str, paths: str | Path | Iterable[str | Path], *, cluster: str | None = None,
               allow_empty: bool = False):
        """Ingest scan reports (``trivy``, ``grype``, ``cyclonedx``) or pod listings (``pods``).

        ``paths`` is a file, a directory (searched recursively) or a list of them. One call
        is one transaction: a bad file raises :class:`~repoaudit.IngestError` naming it and
        writes nothing. Returns a :class:`~repoaudit.ingest.load.ScanIngestResult` or
        :class:`~repoaudit.ingest.load.PodIngestResult` (``.summary()`` for a line of text).
        Pod listings of several files form one snapshot of ``cluster`` (default ``default``); one with
        no containers is refused while the cluster last ran some, unless ``allow_empty``.
        """
        from repoaudit.ingest.load import ingest

        return ingest(self.con, kind, paths, cluster=cluster, allow_empty=allow_empty)

    # -- registry events (issue 18) ---------------------------------------------
    @_writes
    def ingest_events(self, paths: str | Path | Iterable[str | Path], *, registry: str | None = None,
                      rules: str | Path | None = None, reclassify: bool = False):
        """Load ``repoaudit events serve`` spool files and Distribution JSON log files into ``registry_events``.

        Idempotent by event id; spool files move to ``ingested/`` once the transaction commits.
        ``rules`` is a client-classification file (:mod:`repoaudit.events.classify`);
        ``reclassify`` applies it to every stored event too. Returns an
        :class:`~repoaudit.ingest.events.EventIngestResult`.
        """
        from repoaudit.events.classify import Classifier, load_rules
        from repoaudit.ingest.events import ingest_events
        from repoaudit.ingest.events import reclassify as reclassify_events

        classifier = load_rules(rules) if rules else Classifier()
        result = ingest_events(self.con, paths, registry=registry, classifier=classifier)
        if reclassify:
            result.reclassified = reclassify_events(self.con, classifier)
        return result

    # -- garbage-collection preview (issue 19) ---------------------------------
    @_reads
    def gc_preview(self, registry: str | None = None, *, snapshot: int | None = None,
                   upload_age_hours: float = DEFAULT_UPLOAD_AGE_HOURS) -> GCPreview:
        """What Distribution's ``garbage-collect`` would free now, with and without ``--delete-untagged``,
        from the latest storage snapshot (``collect registry-storage:PATH``) of ``registry``."""
        return gc_preview(self.con, registry, snapshot=snapshot, upload_age_hours=upload_age_hours)

    # -- retention (issue 5) ---------------------------------------------------
    @_reads
    def retention(self, *policies: Any, registry: str | None = None, include: Iterable[str] = (),
                  as_of: datetime | None = None, blobs: bool = True, detail: bool = True):
        """What-if of retention policies on each registry's latest snapshot -> ``RetentionPlan``.

        ``policies``: file paths (native YAML, Harbor, ECR or Artifact Registry JSON),
        loaded documents, or :class:`repoaudit.retention.policy.Policy`. The plan's DataFrames:
        ``summary`` (one row per policy, with ``reclaimable_bytes``), ``candidates``,
        ``by_repository``, ``by_namespace``, ``deletions``, ``freed_blobs``; ``whatif()`` puts
        the policies side by side; ``write_json(path)`` writes what ``retention_apply`` reads.
        ``blobs=False`` skips the freed-blob list and ``detail=False`` everything but
        ``summary`` and ``by_namespace`` (both are faster on large estates).
        """
        from repoaudit.retention.engine import plan_retention

        return plan_retention(self.con, policies, registry=registry, include=include, as_of=as_of,
                              database=self.path, blobs=blobs, detail=detail)

    def retention_apply(self, plan: Any, *, policy: str | None = None, yes: bool = False,
                        username: str | None = None, password: str | None = None,
                        client_options: ClientOptions | None = None, transport=None,
                        registry_urls: dict[str, str] | None = None, verify_key: str | Path | None = None):
        """Apply a plan (file or document) to the live registry -> ``ApplyResult``; a dry run unless ``yes``.

        The plan is verified against itself and this database first, and refused whole
        on any mismatch (:func:`repoaudit.retention.verify.verify_plan`); ``registry_urls`` maps a
        registry to another URL to apply at, ``verify_key`` requires a signature by that
        key. Each candidate's tags are read again; changed or now-deployed digests are
        skipped and reported. Outcomes go to the ``deletions`` table when ``yes``.
        Credentials are looked up by the host the requests go to.
        """
        from repoaudit.retention.apply import apply_plan

        if client_options is None:
            def options_for(target: Target) -> ClientOptions:
                return credential_options(target, username, password)
            client_options = options_for
        with self.session(write=yes, doing="record deletions"):
            return run_sync(lambda: apply_plan(self.con, plan, policy=policy, yes=yes,
                                               client_options=client_options, transport=transport,
                                               registry_urls=registry_urls, verify_key=verify_key))

    # -- history and merge (issue 7) -------------------------------------------
    @_reads
    def history(self, reference: str, *, registry: str | None = None, limit: int = 1000) -> pd.DataFrame:
        """The tag history of ``REPO`` or ``REPO:TAG``: each stretch of a tag at one digest, moves marked."""
        repository, tag = reference.strip(), None
        head, sep, tail = repository.rpartition(":")
        if sep and "/" not in tail:
            repository, tag = head, tail
        if not repository or (sep and not tail):
            raise ConfigError(f"invalid reference {reference!r}: want REPOSITORY or REPOSITORY:TAG")
        return self.query("tag_timeline", registry=registry, repository=repository, tag=tag, limit=limit)

    @_reads
    def posture(self, registry: str | None = None) -> pd.DataFrame:
        """Each registry's newest access posture, with its findings and what changed since the probe before."""
        return self.query("registry_posture", registry=registry)

    @_reads
    def report(self, *, fmt: str = "html", since: str | None = None, policies: Iterable[str | Path] = ()) -> str:
        """The audit report as text: a self-contained HTML page (``fmt="html"``) or Markdown (``"md"``)."""
        from repoaudit.analysis.report import build_report, render_html, render_markdown

        built = build_report(self, since=since, policies=list(policies))
        return render_html(built) if fmt == "html" else render_markdown(built)

    @_reads
    def write_report(self, output: str | Path, *, fmt: str = "html", since: str | None = None,
                     policies: Iterable[str | Path] = ()) -> Path:
        """Write :meth:`report` to ``output``; returns its path."""
        from repoaudit.analysis.report import write_report

        return write_report(self, output, fmt=fmt, since=since, policies=list(policies))

    @_writes
    def merge(self, inputs: Iterable[str | Path], *, max_spread: Any = None) -> list:
        """Merge shard databases into this one: one new snapshot per registry (see :mod:`repoaudit.store.merge`)."""
        from repoaudit.store.merge import DEFAULT_MAX_SPREAD, merge_into

        return merge_into(self.con, list(inputs), output=self.path, max_spread=max_spread or DEFAULT_MAX_SPREAD)


def open(path: str | Path | None = None, *, read_only: bool = False,  # noqa: A001 - mirrors builtins.open
         lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Audit:
    """Open (or create) a repoaudit database; ``REPOAUDIT_DB`` or ./repoaudit.duckdb by default."""
    return Audit(path, read_only=read_only, lock_timeout=lock_timeout)
