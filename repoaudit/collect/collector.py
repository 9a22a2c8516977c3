"""The collector: catalog → tags → manifests (→ index children) → configs, as one snapshot.

Manifests are content-addressed: a digest already stored for the registry is
never fetched again. When the database already holds manifests of a registry,
the run is *incremental*: each tag is resolved with a ``HEAD`` and only unseen
digests are fetched, so an unchanged registry costs one HEAD per tag and no
manifest or blob GETs. ``full=True`` fetches every tag's manifest with a GET.

Every digest-addressed fetch (a manifest by digest, a config blob) is
single-flight: one request per digest per run, whoever asks; a tag that wants a
digest already being fetched awaits that fetch instead of sending its own.

Repositories are processed by a fixed pool of workers so that memory stays flat
however large the catalog is: only the rows of repositories in flight, plus
the buffered batch, are held at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import duckdb

from repoaudit.collect.digests import DigestSet
from repoaudit.collect.posture import PROBE_TIMEOUT, probe_layout
from repoaudit.collect.posture import probe as probe_posture
from repoaudit.collect.posture import record as record_posture
from repoaudit.collect.progress import NullProgress, Progress
from repoaudit.collect.referrers import SupplyChain
from repoaudit.collect.selection import select_repositories, select_shard
from repoaudit.collect.storage import write_storage_facts
from repoaudit.errors import (
    AuthenticationError,
    BudgetExhausted,
    ConfigError,
    DatabaseLocked,
    InvalidDocument,
    LimitExceeded,
    NotFoundError,
    RepoauditError,
)
from repoaudit.jobs.status import canonical_image_name, flux_reason
from repoaudit.model.documents import is_valid_repository, is_valid_tag, printable
from repoaudit.model.manifest import ImageConfig, Manifest, parse_config, parse_manifest
from repoaudit.model.options import CollectOptions
from repoaudit.model.regex import matches_any
from repoaudit.model.timestamps import utc_naive, utcnow
from repoaudit.sources.base import Source
from repoaudit.store.database import Lease, to_json
from repoaudit.store.sql import statements
from repoaudit.store.writer import SnapshotWriter

SQL = statements(__package__, "collector.sql")

T = TypeVar("T")

CONFIG_CACHE = 10_000


# An index may hold indexes (OCI allows it; attestation layouts do it once). Deeper than this is a
# registry generating documents, not storing them.
MAX_INDEX_DEPTH = 8


# Invalid tags or catalog names recorded one row each; past this, one row counts the rest.
MAX_INVALID_NAMES = 100


log = logging.getLogger(__name__)


@dataclass
class CollectResult:
    snapshot_id: int
    registry: str
    status: str
    mode: str
    repositories: int = 0
    tags: int = 0
    manifests: int = 0
    new_manifests: int = 0
    errors: int = 0
    seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    # Repositories the rate-limit budget (--keep-budget) left unread or read in part, in catalog order.
    not_reached: list[str] = field(default_factory=list)
    # Requests kept in flight on average while fetching (seconds requests held a slot / seconds fetching), and
    # the mean seconds one held it: how full the pipe to a far registry was kept, for benchmarks and logs.
    in_flight: float | None = None
    latency: float | None = None
    fetch_seconds: float | None = None  # of ``seconds``, those spent fetching (the rest: opening, the commit)


def _created(value: str | None, digest: str | None = None) -> datetime | None:
    """An image config's ``created`` as naive UTC; the epoch of reproducible builds means unknown.

    ``created`` is type-checked with the config (documents.py); a string that is not
    RFC 3339 is unknown too, logged rather than failing the image (see documents.py).
    """
    parsed = utc_naive(value)
    if value and parsed is None:
        log.warning("image config %s: created %s is not an RFC 3339 timestamp; stored as unknown",
                    digest, printable(value))
    return parsed if parsed is not None and parsed.year >= 1971 else None


@dataclass(frozen=True)
class Part:
    """Repositories of one registry reached with one source and one set of options.

    A plain ``collect URL`` is one part; a Flux configuration with several
    ImageRepository objects on the same registry (each with its own secret or
    exclusion list) is several parts written into one snapshot.
    """

    source: Source
    options: CollectOptions
    label: str | None = None  # the Flux object or config entry this part came from


@dataclass(frozen=True)
class Route:
    source: Source
    part: Part
    exclusions: tuple[str, ...]  # Go/RE2 regexes, checked when the CollectOptions were built


def _slots(source: Source) -> int:
    """Requests ``source`` may have in flight at most: its adaptive limit's ceiling where it has one, so
    there are always enough tags waiting to fill the limit however far it grows."""
    return getattr(source, "max_concurrency", source.concurrency)


class _Flights:
    """Single-flight: concurrent askers for one key share one call of ``fetch``, and its result or error."""

    def __init__(self):
        self._pending: dict[str, asyncio.Future] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._pending

    async def run(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        pending = self._pending.get(key)
        if pending is not None:
            # Shielded: a waiter cancelled must not cancel the fetch the others wait for.
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            result = await fetch()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the waiters re-raise it themselves
            raise
        finally:
            del self._pending[key]
        future.set_result(result)
        return result


class Collector:
    def __init__(self, registry: str, writer: SnapshotWriter, routes: dict[str, Route], *, full: bool = False,
                 progress: Progress | None = None, supply: SupplyChain | None = None):
        self.registry = registry
        self.supply = supply or SupplyChain(writer)
        self.writer = writer
        self.routes = routes
        self.full = full
        self.progress = progress or NullProgress()
        self.stored = DigestSet()  # ~8 bytes a digest: a set of strings was most of a big run's memory
        self.incremental = False
        self._manifest_flights = _Flights()
        self._config_flights = _Flights()
        # Configs are shared by many manifests (the same image in several repositories, rebuilt
        # tags); a bounded LRU keeps the saving without growing with the registry.
        self._configs: OrderedDict[str, ImageConfig | None] = OrderedDict()
        self.new_manifests = 0
        self.tag_count = 0
        self.error_count = 0
        self.failed_repositories = 0
        self.not_attempted = 0
        self.not_reached: list[str] = []
        self.samples: dict[str, str | None] = {}  # repository -> one tag it served: posture's read probes

    def release(self) -> None:
        """Drop what only fetching needed, before the commit's own peak: the digest set and the config cache."""
        self.stored = DigestSet()
        self._configs.clear()

    def source(self, repository: str) -> Source:
        return self.routes[repository].source

    def load_known(self) -> None:
        """The digests already stored, read while the writer still holds the database (before ``pause``)."""
        self.stored = DigestSet(self.writer.known_manifests())
        self.incremental = bool(self.stored) and not self.full

    async def run(self) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for name in self.routes:
            queue.put_nowait(name)
        self.progress.repositories(len(self.routes))
        # Repositories at once follow the starting concurrency (each has up to the ceiling's worth of tags in
        # flight, enough to fill a grown limit): a registry that fails every request then has as few
        # requests retrying at once as before, and the circuit breaker trips as soon.
        concurrency = max((r.source.concurrency for r in self.routes.values()), default=1)
        workers = max(1, min(len(self.routes), concurrency))
        await asyncio.gather(*(self._worker(queue) for _ in range(workers)))

    async def _worker(self, queue: asyncio.Queue[str]) -> None:
        while True:
            try:
                name = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            source = self.source(name)
            if source.halted is not None:
                # The circuit is open: the run is failing; asking would only add a row per repository.
                self.not_attempted += 1
            elif getattr(source, "budget_stop", None) is not None:
                self.unreached(name, source.budget_stop)
            else:
                await self._repository(name)
            self.progress.repository_done()

    def _error(self, repository: str | None, reference: str | None, exc: BaseException) -> None:
        self.error_count += 1
        self.writer.add("collection_errors", (self.writer.snapshot_id, self.registry, repository, reference,
                                              exc.__class__.__name__, str(exc)))

    def status(self, repository: str, *, ready: bool, reason: str, message: str, tags: list[str] = (),
               scan_time: datetime | None = None, route: Route | None = None) -> None:
        """One ``repository_status`` row, Flux ImageRepository style."""
        route = route or self.routes.get(repository)
        observed = list(route.exclusions) if route else []
        latest = sorted(tags, reverse=True)[:10]  # Flux: the first ten tags in descending order
        self.writer.add("repository_status", (
            self.writer.snapshot_id, self.registry, repository, route.part.label if route else None,
            canonical_image_name(self.registry, repository), len(tags) if ready else None,
            scan_time, to_json(latest) if ready else None, to_json(observed), ready, reason, message,
            self.writer.started_at))

    def fail_repository(self, repository: str, exc: BaseException, route: Route | None = None) -> None:
        self._error(repository, None, exc)
        self.failed_repositories += 1
        self.writer.add("repositories", (self.writer.snapshot_id, self.registry, repository, None, "failed", str(exc)))
        self.status(repository, ready=False, reason=flux_reason(exc), message=str(exc), route=route)

    def unreached(self, repository: str, exc: BudgetExhausted) -> None:
        """A repository the budget stop kept the run from reading: ``failed`` like any repository whose
        tags are unknown (diffs and retention never read it as emptied), with the reason, and listed."""
        self.not_reached.append(repository)
        message = f"not reached: {exc.reason}"
        self._error(repository, None, BudgetExhausted(message, registry=self.registry, repository=repository))
        self.writer.add("repositories", (self.writer.snapshot_id, self.registry, repository, None, "failed", message))
        self.status(repository, ready=False, reason=flux_reason(exc), message=message)

    async def _repository(self, repository: str) -> None:
        snap = self.writer.snapshot_id
        source = self.source(repository)
        try:
            listed = await source.list_tags(repository)
        except BudgetExhausted as exc:
            self.unreached(repository, exc)
            return
        except RepoauditError as exc:
            self.fail_repository(repository, exc)
            return
        scan_time = utcnow()
        exclusions = self.routes[repository].exclusions
        # A tag outside the grammar never reaches a URL or a table: "v1?x=1" would be a query on v1.
        invalid = [t for t in listed if not is_valid_tag(t)]
        tags = [t for t in listed if is_valid_tag(t) and not matches_any(t, exclusions)]
        for tag in invalid[:MAX_INVALID_NAMES]:
            self._error(repository, printable(tag, 140), InvalidDocument(
                f"the tag list holds {printable(tag)}, which is not a valid tag; skipped",
                registry=self.registry, repository=repository))
        if len(invalid) > MAX_INVALID_NAMES:
            self._error(repository, None, InvalidDocument(
                f"{len(invalid) - MAX_INVALID_NAMES} more invalid tags skipped", registry=self.registry,
                repository=repository))
        source.set_request_budget(repository, len(tags))
        self.progress.tags_found(len(tags))
        results = await self._tags(repository, tags, _slots(source))
        first_error = None
        if invalid:
            first_error = f"{len(invalid)} invalid tag(s) in the tag list, first {printable(invalid[0])}"
        ok = 0
        tagged = []
        budget: BudgetExhausted | None = None
        unread = 0  # tags the budget stop left unread: one error row for them all, not one each
        for tag, result in zip(tags, results):
            if isinstance(result, BaseException):
                if not isinstance(result, RepoauditError):
                    raise result
                if isinstance(result, BudgetExhausted):
                    budget, unread = result, unread + 1
                    continue
                self._error(repository, tag, result)
                first_error = first_error or str(result)
                continue
            ok += 1
            tagged.append((tag, result))
            self.writer.add("tags", (snap, self.registry, repository, tag, result))
        self.tag_count += ok
        self.samples[repository] = min((t for t, r in zip(tags, results) if not isinstance(r, BaseException)),
                                       default=None)
        if budget is not None:
            self.not_reached.append(repository)
            cut = f"{unread} of {len(tags)} tags not read: {budget.reason}"
            self._error(repository, None, BudgetExhausted(cut, registry=self.registry, repository=repository))
            first_error = first_error or cut
        if budget is None:  # a referrer's manifest would spend the budget the stop keeps
            await self.supply.repository(source, repository, tagged, self._ensure, self._error)
        if first_error and ok == 0 and (tags or invalid):
            self.failed_repositories += budget is None  # cut short by the budget is not the registry failing
            status = "failed"
        else:
            status = "partial" if first_error else "ok"
        self.writer.add("repositories", (snap, self.registry, repository, ok, status, first_error))
        log.info("%s/%s: %s, %d of %d tags read%s", self.registry, repository, status, ok, len(tags),
                 f" ({first_error})" if first_error else "")
        await self._storage_only(repository, source)
        message = f"successful scan: found {len(tags)} tags"
        if first_error:
            message += f"; {len(tags) - ok + len(invalid)} could not be read ({first_error})"
        # Flux is Ready once the tags are listed; unreadable manifests are repoaudit's extra depth.
        self.status(repository, ready=True, reason="Succeeded", message=message, tags=tags, scan_time=scan_time)

    async def _storage_only(self, repository: str, source: Source) -> None:
        """A storage source's untagged revisions stored like tagged manifests, and its findings recorded.

        Only storage shows them (the API lists tags); retention and ``gc preview`` need their blobs.
        """
        untagged_revisions = getattr(source, "untagged_revisions", None)
        if untagged_revisions is None:
            return
        untagged, findings = untagged_revisions(repository)
        for f in findings:
            self.error_count += 1
            self.writer.add("collection_errors", (self.writer.snapshot_id, self.registry, f.repository, f.reference,
                                                  f.error_type, f.message))
        for digest in untagged:
            try:
                await self._ensure(repository, digest)
            except RepoauditError as exc:
                self._error(repository, digest, exc)

    async def _tags(self, repository: str, tags: list[str], concurrency: int) -> list[str | BaseException]:
        """Each tag's digest, or the error that stopped it, from at most ``concurrency`` tasks.

        A bounded pool over the tag list rather than one task per tag: a repository of
        100,000 tags holds ``concurrency`` tasks, not 100,000 waiting on the semaphore.
        """
        results: list[str | BaseException] = [""] * len(tags)
        pending = iter(range(len(tags)))

        async def work() -> None:
            for i in pending:  # shared by the workers: each takes the next tag when it is free
                try:
                    results[i] = await self._tag(repository, tags[i])
                except Exception as exc:  # noqa: BLE001 - sorted out below, as gather(return_exceptions=True) would
                    results[i] = exc

        await asyncio.gather(*(work() for _ in range(min(len(tags), concurrency))))
        return results

    async def _tag(self, repository: str, tag: str) -> str:
        try:
            source = self.source(repository)
            # A storage source resolves a tag from links it has walked already: resolving first lets tags that
            # share a manifest share its one read, as digest-addressed fetches always do.
            # Under a pull budget (Docker Hub) a HEAD is free and a GET by tag is a pull: tags that share a
            # manifest then cost one pull between them, and a stored one none.
            if self.incremental or source.kind == "registry-storage" or (
                    not self.full and getattr(source, "head_is_free", False)):
                digest = await source.head_manifest(repository, tag)
                if digest:
                    self.supply.tag_seen(tag, digest)
                    # By digest, so tags racing for the same new manifest share one GET.
                    await self._ensure(repository, digest)
                    return digest
                fetched = await source.get_manifest(repository, tag)
            else:
                fetched = await source.get_manifest(repository, tag)
            self.supply.tag_seen(tag, fetched.digest)
            await self._ensure(repository, fetched.digest, fetched)
            return fetched.digest
        finally:
            self.progress.tag_done()

    async def _ensure(self, repository: str, digest: str, fetched=None, depth: int = 0) -> None:
        """Store manifest ``digest`` (and what it references) once, however many tags race for it."""
        if digest in self.stored:
            return
        if depth > MAX_INDEX_DEPTH and digest not in self._manifest_flights:
            raise LimitExceeded(f"indexes nested more than {MAX_INDEX_DEPTH} deep, down to {digest}; stopped",
                                registry=self.registry, repository=repository)
        await self._manifest_flights.run(digest, lambda: self._store_once(repository, digest, fetched, depth))

    async def _store_once(self, repository: str, digest: str, fetched, depth: int) -> None:
        await self._store(repository, digest, fetched, depth)
        self.stored.add(digest)

    async def _store(self, repository: str, digest: str, fetched, depth: int = 0) -> None:
        if fetched is None:
            fetched = await self.source(repository).get_manifest(repository, digest)
        try:
            m = parse_manifest(fetched.body, fetched.digest, fetched.media_type)
        except InvalidDocument as exc:
            raise InvalidDocument(str(exc), registry=self.registry, repository=repository) from None
        cfg = None
        if m.is_index:
            children = await asyncio.gather(*(self._ensure(repository, c.digest, depth=depth + 1)
                                              for c in m.children), return_exceptions=True)
            for child, res in zip(m.children, children):
                if isinstance(res, BaseException):
                    raise res
            for pos, c in enumerate(m.children):
                p = c.platform or {}
                self.writer.add("manifest_children", (self.registry, m.digest, pos, c.digest, c.media_type, c.size,
                                                      p.get("os"), p.get("architecture"), p.get("variant")))
        elif m.has_image_config:
            cfg = await self._config(repository, m.config.digest)
        self._write_manifest(m, cfg)

    async def _config(self, repository: str, digest: str) -> ImageConfig | None:
        if digest in self._configs:
            self._configs.move_to_end(digest)
            return self._configs[digest]
        return await self._config_flights.run(digest, lambda: self._fetch_config(repository, digest))

    async def _fetch_config(self, repository: str, digest: str) -> ImageConfig | None:
        body = await self.source(repository).get_blob(repository, digest)
        try:
            cfg = parse_config(body, digest)
        except InvalidDocument as exc:
            # A config is a document like the manifest: one that breaks its schema fails the tag.
            raise InvalidDocument(str(exc), registry=self.registry, repository=repository) from None
        self._configs[digest] = cfg
        if len(self._configs) > CONFIG_CACHE:
            self._configs.popitem(last=False)
        return cfg

    def _write_manifest(self, m: Manifest, cfg: ImageConfig | None) -> None:
        self.new_manifests += 1
        self.supply.stored(m)
        config_size = m.config.size if m.config else None
        sizes = [l.size for l in m.layers]
        layers_size = sum(s for s in sizes if s is not None) if m.layers else (0 if m.kind == "image" else None)
        total = None
        if m.kind == "image":
            total = (config_size or 0) + (layers_size or 0)
        elif m.kind == "schema1" and m.layers and all(s is not None for s in sizes):
            total = layers_size
        self.writer.add("manifests", (
            self.registry, m.digest, m.media_type, m.kind, m.artifact_type, m.size,
            m.config.digest if m.config else None, config_size, layers_size, len(m.layers), total,
            _created(cfg.created, m.config.digest) if cfg else None, cfg.architecture if cfg else None,
            cfg.os if cfg else None, cfg.variant if cfg else None,
            to_json(cfg.labels) if cfg else None, to_json(m.annotations), m.subject, self.writer.snapshot_id))
        for pos, layer in enumerate(m.layers):
            self.writer.add("layers", (self.registry, m.digest, pos, layer.digest, layer.media_type, layer.size))


async def _plan(part: Part, collector: Collector) -> Exception | None:
    """Ping the part's source and list its repositories into the collector's routes.

    Explicit repository lists (registries without a catalog: Docker Hub, GHCR,
    public ECR; Flux ImageRepository objects) skip ``/v2/_catalog``. A part
    that cannot start has its listed repositories marked failed; its error is
    returned so the caller can tell a dead registry from a partial run.
    """
    options, source = part.options, part.source
    exclusions = tuple(options.exclude_tags)
    if hasattr(source, "keep_budget"):  # a source that reads a rate-limit budget (a registry)
        source.keep_budget = options.keep_budget
    names = list(options.repositories)
    try:
        await source.ping()
        if not names:
            try:
                names = await source.list_repositories()
            except (AuthenticationError, NotFoundError) as exc:
                raise exc.__class__(
                    f"the catalog is not available ({str(exc).split(': ', 1)[-1]}); name the repositories "
                    f"to collect (--repository NAME, or a config file)", registry=source.name,
                    **({"status": exc.status, "codes": exc.codes} if isinstance(exc, NotFoundError) else {})) from None
    except RepoauditError as exc:
        for name in names:
            if name not in collector.routes:  # an earlier part may reach it after all
                collector.fail_repository(name, exc, Route(source, part, exclusions))
        if not names:
            collector._error(None, None, exc)
        return exc
    names = select_shard(select_repositories(names, options.include, options.exclude), options.shard)
    if source.kind in ("registry", "registry-storage"):
        # good/../evil/img would reach evil/img through URL normalisation; a layout's names are local paths.
        # A storage directory's name is a repository name only if Distribution could have written it.
        invalid = [n for n in names if not is_valid_repository(n)]
        for name in invalid[:MAX_INVALID_NAMES]:
            collector._error(printable(name, 140), None, InvalidDocument(
                f"{printable(name)} is not a valid repository name; skipped", registry=source.name))
        if len(invalid) > MAX_INVALID_NAMES:
            collector._error(None, None, InvalidDocument(
                f"{len(invalid) - MAX_INVALID_NAMES} more invalid repository names skipped", registry=source.name))
        names = [n for n in names if is_valid_repository(n)]
    for name in names:
        collector.routes.setdefault(name, Route(source, part, exclusions))
    return None


async def _posture(part: Part, collector: Collector, now: datetime | None):
    """The registry's access posture (``collect.posture``), or None where there is nothing honest to probe:
    a client given its own transport (tests' fakes, which have no sockets behind them)."""
    source = part.source
    if not part.options.posture:
        return None
    samples = collector.samples
    name = min((n for n, t in samples.items() if t is not None), default=None)
    if name is None:
        name = min(collector.routes, default=None)
    sample = (name, samples.get(name)) if name else None
    if source.kind == "oci-layout":
        return probe_layout(source.target.path, source.name, sample=sample, now=now)
    if source.kind != "registry" or getattr(source, "custom_transport", True):
        return None
    options = source.options
    return await probe_posture(source.target.url, source.name, verify=options.verify, proxy=options.proxy,
                               sample=sample, push=part.options.probe_push,
                               timeout=min(options.timeout, PROBE_TIMEOUT), now=now)


async def collect_parts(con: duckdb.DuckDBPyConnection | Lease, parts: list[Part], *,
                        progress: Progress | None = None, started_at: datetime | None = None) -> CollectResult:
    """Collect every part (all of one registry) into one snapshot of ``con``.

    A run where nothing could start (unreachable registry, refused credentials,
    no catalog) is committed as a ``failed`` snapshot with its reason, and the
    error re-raised so callers both keep the record and stop. An unexpected
    exception or an interrupt rolls everything back and keeps only a ``failed``
    snapshot row.
    """
    if not parts:
        raise ConfigError("nothing to collect")
    registry = parts[0].source.name
    if any(p.source.name != registry for p in parts):
        raise ConfigError("one snapshot holds one registry: " + ", ".join(sorted({p.source.name for p in parts})))
    first = parts[0].options
    t0 = time.monotonic()
    writer = SnapshotWriter(con, registry=registry, source=parts[0].source.target.url,
                            source_kind=parts[0].source.kind, started_at=started_at,
                            options={"include": list(first.include), "exclude": list(first.exclude),
                                     "full": first.full, "parts": [p.label for p in parts if p.label],
                                     **({"shard": "%d/%d" % first.shard} if first.shard else {})})
    writer.mode = "incremental" if writer.has_manifests() and not first.full else "full"
    progress = progress or NullProgress()

    def requests() -> dict[str, int]:
        total: Counter[str] = Counter()
        for src in {id(p.source): p.source for p in parts}.values():
            total.update(src.requests)
        return dict(total)

    keys = tuple(dict.fromkeys(k for p in parts for k in p.options.verify_keys))
    trust = tuple(dict.fromkeys(r for p in parts for r in p.options.trust))
    supply = SupplyChain(writer, keys, trust)
    collector = Collector(registry, writer, {}, full=first.full, progress=progress, supply=supply)
    writer.before_commit.append(lambda c: finalize_indexes(c, registry, writer.snapshot_id))
    writer.before_commit.append(supply.commit)
    writer.begin()
    collector.load_known()
    writer.pause()  # until commit every row goes to the stage: the database's lock is free meanwhile
    try:
        fetching = time.monotonic()
        start_errors = [await _plan(part, collector) for part in parts]
        failed_parts = [e for e in start_errors if e is not None]
        await collector.run()
        fetching = time.monotonic() - fetching
        storage_facts = getattr(parts[0].source, "storage_facts", None)
        if storage_facts is not None and not failed_parts:
            add_storage_facts(collector, storage_facts())
        repositories = len(collector.routes) + sum(len(p.options.repositories) for p, e in zip(parts, start_errors)
                                                   if e is not None)
        halted = next((h for h in (getattr(p.source, "halted", None) for p in parts) if h is not None), None)
        budget = next((b for b in (getattr(p.source, "budget_stop", None) for p in parts) if b is not None), None)
        if len(failed_parts) == len(parts):
            status, error = "failed", str(failed_parts[0])
        elif halted is not None:
            collector._error(None, None, halted)
            status, error = "failed", f"{halted}; {collector.not_attempted} repositories not attempted"
        elif budget is not None:
            # Stopped on purpose, with what was read intact: partial, and the rest named for the next run.
            status = "partial"
            error = f"{budget}; {len(collector.not_reached)} repositories not reached or read in part"
        elif repositories and collector.failed_repositories == repositories:
            status, error = "failed", f"all {repositories} repositories failed"
        else:
            status = "partial" if collector.error_count else "complete"
            error = None
        # A snapshot dated by its caller (a replay, the demo) is probed "as of" that date too.
        # Not after a budget stop: the probes' anonymous manifest GET would be one more pull.
        posture = await _posture(parts[0], collector, started_at) if budget is None else None
        if posture is not None:
            writer.before_commit.append(lambda c: record_posture(c, posture, writer.snapshot_id))
        rate_limit: dict[str, str] = {}
        for p in parts:
            rate_limit.update(p.source.rate_limit)
        # A run dated by the caller (the demo's backdated epochs, a replay) lasts as long as it really took.
        finished_at = started_at + timedelta(seconds=time.monotonic() - t0) if started_at else None
        collector.release()
        manifest_count = writer.commit(status=status, repository_count=repositories, tag_count=collector.tag_count,
                                       new_manifest_count=collector.new_manifests, error_count=collector.error_count,
                                       requests=requests(), rate_limit=rate_limit, error=error,
                                       finished_at=finished_at)
    except DatabaseLocked:
        writer.abandon()  # nothing can be recorded while another process holds the database
        raise
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else str(exc)
        writer.record_failure(reason or exc.__class__.__name__, error_type=exc.__class__.__name__,
                              requests=requests())
        raise
    finally:
        progress.close()
    if len(failed_parts) == len(parts):
        raise failed_parts[0]
    limits = [p.source.limit for p in {id(p.source): p for p in parts}.values() if hasattr(p.source, "limit")]
    held, answers = sum(lim.held for lim in limits), sum(lim.answers for lim in limits)
    return CollectResult(writer.snapshot_id, registry, status, writer.mode, repositories, collector.tag_count,
                         manifest_count, collector.new_manifests, collector.error_count,
                         time.monotonic() - t0, requests(), error, list(collector.not_reached),
                         in_flight=held / fetching if limits and fetching > 0 else None,
                         latency=held / answers if answers else None, fetch_seconds=fetching)


async def collect_source(con: duckdb.DuckDBPyConnection, source: Source, options: CollectOptions | None = None, *,
                         progress: Progress | None = None, started_at: datetime | None = None) -> CollectResult:
    """Collect one source with one set of options: the plain ``repoaudit collect URL``."""
    return await collect_parts(con, [Part(source, options or CollectOptions())], progress=progress,
                               started_at=started_at)


def add_storage_facts(collector: Collector, facts) -> None:
    """A storage snapshot's own tables, written in its transaction, and the store-wide findings recorded."""
    for f in facts.findings:
        collector.error_count += 1
        collector.writer.add("collection_errors", (collector.writer.snapshot_id, collector.registry, f.repository,
                                                   f.reference, f.error_type, f.message))
    routed = set(collector.routes)
    collector.writer.before_commit.append(
        lambda c: write_storage_facts(c, collector.registry, collector.writer.snapshot_id, facts, routed))


def finalize_indexes(con: duckdb.DuckDBPyConnection, registry: str, snapshot_id: int) -> None:
    """Give new indexes their size and age from their children, now that all children are stored.

    An index's ``total_size`` counts each config and layer blob once even when
    several platforms share it, which is what the index costs in the blob store.
    """
    con.execute(SQL["finalize_indexes"], {"registry": registry, "snapshot": snapshot_id})

