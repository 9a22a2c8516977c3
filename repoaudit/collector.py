"""The collector: catalog → tags → manifests (→ index children) → configs, as one snapshot.

Manifests are content-addressed: a digest already stored for the registry is
never fetched again. When the database already holds manifests of a registry,
the run is *incremental*: each tag is resolved with a ``HEAD`` and only unseen
digests are fetched, so an unchanged registry costs one HEAD per tag and no
manifest or blob GETs. ``full=True`` fetches every tag's manifest with a GET.

Repositories are processed by a fixed pool of workers so that memory stays flat
however large the catalog is: only the rows of repositories in flight, plus
the buffered batch, are held at once.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from .config import CollectOptions
from .errors import RepoauditError, UnsupportedMediaType
from .manifest import ImageConfig, Manifest, parse_config, parse_manifest
from .progress import NullProgress, Progress
from .sources import Source
from .store import SnapshotWriter, to_json


CONFIG_CACHE = 10_000


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


def select_repositories(names: list[str], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    """Shell-style globs on repository names (``team/*``, ``*-cache``); exclude wins."""
    picked = [n for n in names if not include or any(fnmatch.fnmatchcase(n, g) for g in include)]
    return [n for n in picked if not any(fnmatch.fnmatchcase(n, g) for g in exclude)]


def shard_of(name: str, count: int) -> int:
    """The shard (0 to count-1) a repository belongs to: sha256 of its name, so every machine agrees."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count


def select_shard(names: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Only the repositories of shard ``(i, n)``; all of them when ``shard`` is None."""
    if shard is None:
        return names
    i, n = shard
    return [name for name in names if shard_of(name, n) == i]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Go writes nanoseconds; Python takes at most microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = (parsed - parsed.utcoffset()).replace(tzinfo=None)
    if parsed.year < 1971:
        return None  # reproducible builds set created to the epoch: that is "unknown", not 1970
    return parsed


class Collector:
    def __init__(self, source: Source, writer: SnapshotWriter, options: CollectOptions,
                 progress: Progress | None = None):
        self.source = source
        self.writer = writer
        self.options = options
        self.progress = progress or NullProgress()
        self.registry = source.name
        self.stored: set[str] = set()
        self.incremental = False
        self._inflight: dict[str, asyncio.Future] = {}
        # Configs are shared by many manifests (the same image in several repositories, rebuilt
        # tags); a bounded LRU keeps the saving without growing with the registry.
        self._configs: OrderedDict[str, ImageConfig | None] = OrderedDict()
        self.new_manifests = 0
        self.tag_count = 0
        self.error_count = 0
        self.failed_repositories = 0

    async def run(self, repositories: list[str]) -> None:
        self.stored = self.writer.known_manifests()
        self.incremental = bool(self.stored) and not self.options.full
        queue: asyncio.Queue[str] = asyncio.Queue()
        for name in repositories:
            queue.put_nowait(name)
        self.progress.repositories(len(repositories))
        workers = max(1, min(len(repositories), self.source.concurrency))
        await asyncio.gather(*(self._worker(queue) for _ in range(workers)))

    async def _worker(self, queue: asyncio.Queue[str]) -> None:
        while True:
            try:
                name = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self._repository(name)
            self.progress.repository_done()

    def _error(self, repository: str | None, reference: str | None, exc: BaseException) -> None:
        self.error_count += 1
        self.writer.add("collection_errors", (self.writer.snapshot_id, self.registry, repository, reference,
                                              exc.__class__.__name__, str(exc)))

    async def _repository(self, repository: str) -> None:
        snap = self.writer.snapshot_id
        try:
            tags = await self.source.list_tags(repository)
        except RepoauditError as exc:
            self._error(repository, None, exc)
            self.failed_repositories += 1
            self.writer.add("repositories", (snap, self.registry, repository, None, "failed", str(exc)))
            return
        self.progress.tags_found(len(tags))
        results = await asyncio.gather(*(self._tag(repository, tag) for tag in tags), return_exceptions=True)
        first_error = None
        ok = 0
        for tag, result in zip(tags, results):
            if isinstance(result, BaseException):
                if not isinstance(result, RepoauditError):
                    raise result
                self._error(repository, tag, result)
                first_error = first_error or str(result)
                continue
            ok += 1
            self.writer.add("tags", (snap, self.registry, repository, tag, result))
        self.tag_count += ok
        if first_error and ok == 0 and tags:
            self.failed_repositories += 1
            status = "failed"
        else:
            status = "partial" if first_error else "ok"
        self.writer.add("repositories", (snap, self.registry, repository, ok, status, first_error))

    async def _tag(self, repository: str, tag: str) -> str:
        try:
            if self.incremental:
                digest = await self.source.head_manifest(repository, tag)
                if digest:
                    # By digest, so tags racing for the same new manifest share one GET.
                    await self._ensure(repository, digest)
                    return digest
                fetched = await self.source.get_manifest(repository, tag)
            else:
                fetched = await self.source.get_manifest(repository, tag)
            await self._ensure(repository, fetched.digest, fetched)
            return fetched.digest
        finally:
            self.progress.tag_done()

    async def _ensure(self, repository: str, digest: str, fetched=None) -> None:
        """Store manifest ``digest`` (and what it references) once, however many tags race for it."""
        if digest in self.stored:
            return
        pending = self._inflight.get(digest)
        if pending is not None:
            await pending
            return
        future = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            await self._store(repository, digest, fetched)
            self.stored.add(digest)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the racing tags re-raise it themselves
            raise
        finally:
            del self._inflight[digest]

    async def _store(self, repository: str, digest: str, fetched) -> None:
        if fetched is None:
            fetched = await self.source.get_manifest(repository, digest)
        m = parse_manifest(fetched.body, fetched.digest, fetched.media_type)
        cfg = None
        if m.is_index:
            children = await asyncio.gather(*(self._ensure(repository, c.digest) for c in m.children),
                                            return_exceptions=True)
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
        body = await self.source.get_blob(repository, digest)
        try:
            cfg = parse_config(body, digest)
        except UnsupportedMediaType:
            cfg = None  # an unreadable config leaves created/platform unknown, not the image uncollected
        self._configs[digest] = cfg
        if len(self._configs) > CONFIG_CACHE:
            self._configs.popitem(last=False)
        return cfg

    def _write_manifest(self, m: Manifest, cfg: ImageConfig | None) -> None:
        self.new_manifests += 1
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
            _parse_time(cfg.created) if cfg else None, cfg.architecture if cfg else None,
            cfg.os if cfg else None, cfg.variant if cfg else None,
            to_json(cfg.labels) if cfg else None, to_json(m.annotations), m.subject, self.writer.snapshot_id))
        for pos, layer in enumerate(m.layers):
            self.writer.add("layers", (self.registry, m.digest, pos, layer.digest, layer.media_type, layer.size))


async def collect_source(con: duckdb.DuckDBPyConnection, source: Source, options: CollectOptions | None = None, *,
                         progress: Progress | None = None, started_at: datetime | None = None) -> CollectResult:
    """Collect ``source`` into one snapshot of ``con``; always returns, failed runs included.

    A run that fails before any repository is read (unreachable registry, bad
    credentials, no catalog) is recorded as a ``failed`` snapshot and its error
    re-raised, so callers both keep the record and stop.
    """
    options = options or CollectOptions()
    t0 = time.monotonic()
    writer = SnapshotWriter(con, registry=source.name, source=source.target.url, source_kind=source.kind,
                            started_at=started_at, options={"include": list(options.include),
                                                            "exclude": list(options.exclude),
                                                            "full": options.full,
                                                            **({"shard": "%d/%d" % options.shard}
                                                               if options.shard else {})})
    progress = progress or NullProgress()
    try:
        await source.ping()
        names = select_repositories(await source.list_repositories(), options.include, options.exclude)
        names = select_shard(names, options.shard)
    except RepoauditError as exc:
        writer.record_failure(str(exc), error_type=exc.__class__.__name__, requests=dict(source.requests))
        raise
    collector = Collector(source, writer, options, progress)
    writer.mode = "incremental" if writer.known_manifests() and not options.full else "full"
    writer.begin()
    try:
        await collector.run(names)
        writer.flush()
        finalize_indexes(con, source.name, writer.snapshot_id)
        if names and collector.failed_repositories == len(names):
            status = "failed"
            error = f"all {len(names)} repositories failed"
        else:
            status = "partial" if collector.error_count else "complete"
            error = None
        manifest_count = writer.commit(status=status, repository_count=len(names), tag_count=collector.tag_count,
                      new_manifest_count=collector.new_manifests,
                      error_count=collector.error_count, requests=dict(source.requests),
                      rate_limit=dict(source.rate_limit), error=error)
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else str(exc)
        writer.record_failure(reason or exc.__class__.__name__, error_type=exc.__class__.__name__,
                              requests=dict(source.requests))
        raise
    finally:
        progress.close()
    return CollectResult(writer.snapshot_id, source.name, status, writer.mode, len(names), collector.tag_count,
                         manifest_count, collector.new_manifests, collector.error_count,
                         time.monotonic() - t0, dict(source.requests), error)


def finalize_indexes(con: duckdb.DuckDBPyConnection, registry: str, snapshot_id: int) -> None:
    """Give new indexes their size and age from their children, now that all children are stored.

    An index's ``total_size`` counts each config and layer blob once even when
    several platforms share it, which is what the index costs in the blob store.
    """
    con.execute("""
        UPDATE manifests AS m SET
            total_size = agg.total_size,
            created = agg.created
        FROM (
            SELECT c.index_digest,
                   (SELECT sum(size) FROM (
                        SELECT DISTINCT b.blob_digest, b.size FROM manifest_children c2
                        JOIN manifest_blobs b ON b.registry = c2.registry AND b.manifest_digest = c2.child_digest
                        WHERE c2.registry = c.registry AND c2.index_digest = c.index_digest AND b.role <> 'manifest'
                   )) AS total_size,
                   max(cm.created) AS created
            FROM manifest_children c
            LEFT JOIN manifests cm ON cm.registry = c.registry AND cm.digest = c.child_digest
            WHERE c.registry = $registry
            GROUP BY c.registry, c.index_digest
        ) AS agg
        WHERE m.registry = $registry AND m.digest = agg.index_digest AND m.first_seen_snapshot = $snapshot
    """, {"registry": registry, "snapshot": snapshot_id})
