"""A CNCF Distribution registry's storage read directly: ``registry-storage:PATH``.

``PATH`` is the ``rootdirectory`` of the registry's filesystem storage driver. Under it
Distribution 2.x keeps (``registry/storage/paths.go``)::

    docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data                the content, manifests included
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link        the tag's digest
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link  its history
    docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link   every manifest pushed
    docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link  every blob the repository may serve
    docker/registry/v2/repositories/<name>/_uploads/<uuid>/{data,startedat}         uploads in progress

The source answers the collector's questions the way the registry's API would (a tag is served
when its ``current/link`` names a revision of the repository whose blob exists; a config blob only
through the repository's ``_layers`` link), so an API and a storage snapshot of one registry agree.
It also keeps what only storage shows: untagged revisions, layer links, every blob with its size and
uploads, handed to the collector by :meth:`RegistryStorageSource.untagged_revisions` and
:meth:`RegistryStorageSource.storage_facts`.

Nothing is ever written under ``PATH``. The directory walk runs in a thread pool (``os.scandir``
and small reads release the GIL), one task per repository and one per blob prefix directory, before
the collector starts; manifests and configs are then read once each, when the collector asks.
A file in an unexpected state (a dangling link, a missing ``data``, an unreadable directory) becomes
a finding recorded with the snapshot, never an exception that stops the walk.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from repoaudit.errors import (
    DigestMismatch,
    NotFoundError,
    RegistryStorageError,
    ResponseTooLarge,
)
from repoaudit.model.limits import Limits
from repoaudit.model.manifest import FetchedManifest, sha256_digest, verify_digest
from repoaudit.model.options import Target
from repoaudit.model.timestamps import utc_naive
from repoaudit.sources.base import LocalSource

V2 = Path("docker", "registry", "v2")

# A link file holds one digest; anything longer is not a link.
LINK_CAP = 1024

WALK_THREADS = 8


@dataclass
class Finding:
    """A storage quirk: what ``collection_errors`` records (``reference`` is a tag, digest or path)."""

    repository: str | None
    reference: str | None
    error_type: str
    message: str


@dataclass
class RepositoryWalk:
    """One repository's link files, as read."""

    name: str
    tags: dict[str, str | None] = field(default_factory=dict)  # tag -> current digest (None: no readable link)
    revisions: dict[str, bool] = field(default_factory=dict)  # digest -> its blob's data file exists
    tag_history: list[tuple[str, str]] = field(default_factory=list)  # (tag, digest) of tags/<tag>/index
    layers: dict[str, bool] = field(default_factory=dict)  # digest -> blob exists
    deleted: list[str] = field(default_factory=list)  # revision directories without a link: deleted manifests
    has_tags_dir: bool = False
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Upload:
    repository: str
    upload_id: str
    started_at: datetime | None
    size: int | None


@dataclass
class StorageFacts:
    """What only storage shows, for the snapshot's storage tables."""

    repositories: list[tuple[str, bool]]  # repository, has_tags_dir
    revisions: list[tuple[str, str, bool, bool, bool]]  # repository, digest, linked, tagged, blob_present
    layer_links: list[tuple[str, str, bool]]  # repository, digest, blob_present
    tag_history: list[tuple[str, str, str]]  # repository, tag, digest
    blobs: list[tuple[str, int]]  # digest, size of data
    uploads: list[Upload]
    findings: list[Finding]  # quirks outside any one repository's collection (blobs, uploads)


def _digest_of_dir(algo: str, hexpart: str) -> str:
    return f"{algo}:{hexpart}"


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _valid_hex(algo: str, hexpart: str) -> bool:
    return algo == "sha256" and _SHA256_HEX.fullmatch(hexpart) is not None


class RegistryStorageSource(LocalSource):
    """The storage side of :class:`repoaudit.sources.base.Source`: a Distribution storage root, read-only."""

    kind = "registry-storage"
    # Every answer is a local read already walked or a single small file: more tasks in flight only add
    # event-loop overhead per tag.
    concurrency = 2

    def __init__(self, target: Target, limits: Limits | None = None, threads: int = WALK_THREADS):
        self.target = target
        self.limits = limits or Limits()
        self.threads = threads
        self.halted = None  # no circuit to open: reads are local
        self.name = target.name
        self.root = target.path
        self.v2 = self.root / V2
        self._blobs_dir = str(self.v2 / "blobs")
        self.requests: Counter[str] = Counter()
        self.rate_limit: dict[str, str] = {}
        self.walked_at: datetime | None = None
        self._repos: dict[str, RepositoryWalk] | None = None
        self._blobs: dict[str, int] | None = None
        self._uploads: list[Upload] = []
        self._findings: list[Finding] = []

    # -- the walk ------------------------------------------------------------------------

    async def ping(self) -> None:
        if not self.root.is_dir():
            raise RegistryStorageError(f"{self.target.url}: not a directory")
        if not (self.v2 / "repositories").is_dir() and not (self.v2 / "blobs").is_dir():
            raise RegistryStorageError(f"{self.target.url}: no {V2}/repositories or {V2}/blobs below it "
                                       "(give the filesystem driver's rootdirectory)")

    def walk(self) -> None:
        """Read every link, blob size and upload once, in parallel. Called by the first question asked."""
        if self._repos is not None:
            return
        self.walked_at = datetime.now(timezone.utc).replace(tzinfo=None)
        names, upload_dirs = self._repository_dirs()
        prefixes = self._blob_prefixes()
        with ThreadPoolExecutor(self.threads) as pool:
            # map() submits every task at once: blob prefixes fill the pool while the last repositories finish.
            repo_parts = pool.map(self._walk_repository, names)
            blob_parts = pool.map(self._walk_blob_prefix, prefixes)
            upload_parts = pool.map(self._walk_uploads, upload_dirs)
            repos, blob_parts, uploads = list(repo_parts), list(blob_parts), list(upload_parts)
        self._blobs = {}
        for found, findings in blob_parts:
            self._blobs.update(found)
            self._findings.extend(findings)
        for ups, findings in uploads:
            self._uploads.extend(ups)
            self._findings.extend(findings)
        for repo in repos:
            for digest in repo.revisions:
                repo.revisions[digest] = digest in self._blobs
            for digest in repo.layers:
                repo.layers[digest] = digest in self._blobs
        self._repos = {r.name: r for r in repos}

    def _repository_dirs(self) -> tuple[list[str], list[tuple[str, Path]]]:
        """Repository names, and every ``_uploads`` directory.

        A repository is a directory holding ``_layers``, as Distribution's catalog and garbage-collect
        decide (``registry/storage/catalog.go``). One with ``_manifests`` but no ``_layers`` is neither
        listed nor visited by GC, so its revisions protect nothing: a finding. An upload into a new
        repository has neither yet, but still holds disk.
        """
        top = self.v2 / "repositories"
        names: list[str] = []
        uploads: list[tuple[str, Path]] = []
        stack = [(top, "")]
        while stack:
            path, name = stack.pop()
            try:
                entries = [e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
            except OSError as exc:
                if path == top and not path.exists():
                    return [], []
                self._findings.append(Finding(name or None, str(path), "RegistryStorageError",
                                              f"{path}: cannot list ({exc.strerror or exc})"))
                continue
            special = {e.name for e in entries if e.name.startswith("_")}
            if name and "_layers" in special:
                names.append(name)
            elif name and "_manifests" in special:
                self._findings.append(Finding(name, str(path), "RegistryStorageError",
                                              f"{path}: _manifests without _layers: not in the catalog, and "
                                              "garbage-collect never marks its manifests"))
            if name and "_uploads" in special:
                uploads.append((name, path / "_uploads"))
            for entry in entries:
                if not entry.name.startswith("_"):
                    stack.append((Path(entry.path), f"{name}/{entry.name}" if name else entry.name))
        return sorted(names), sorted(uploads)

    def _read_link(self, path: str, repo: str | None, findings: list[Finding]) -> str | None:
        """The digest a link file names, or None with a finding when it is missing or not a digest."""
        self.requests["read link"] += 1
        try:
            with open(path, "rb") as f:
                data = f.read(LINK_CAP + 1)
        except FileNotFoundError:
            findings.append(Finding(repo, path, "RegistryStorageError", f"{path}: link file missing"))
            return None
        except OSError as exc:
            findings.append(Finding(repo, path, "RegistryStorageError",
                                    f"{path}: cannot read ({exc.strerror or exc})"))
            return None
        text = data.decode("ascii", "replace").strip()
        algo, _, hexpart = text.partition(":")
        if len(data) > LINK_CAP or not _valid_hex(algo, hexpart):
            findings.append(Finding(repo, path, "RegistryStorageError",
                                    f"{path}: not a link (holds {text[:80]!r})"))
            return None
        return text

    def _digest_links(self, folder: str, repo: str, findings: list[Finding],
                      deleted: list[str] | None = None) -> list[str]:
        """The digests of ``folder/sha256/<hex>/link``, each link read and checked against its directory.

        ``deleted`` collects the digests of directories whose link is gone (deleted through the API)."""
        try:
            algos = [e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            findings.append(Finding(repo, folder, "RegistryStorageError",
                                    f"{folder}: cannot list ({exc.strerror or exc})"))
            return []
        out: list[str] = []
        for algo in algos:
            try:
                entries = list(os.scandir(algo.path))
            except OSError as exc:
                findings.append(Finding(repo, algo.path, "RegistryStorageError",
                                        f"{algo.path}: cannot list ({exc.strerror or exc})"))
                continue
            for entry in entries:
                if not _valid_hex(algo.name, entry.name):
                    continue
                link = os.path.join(entry.path, "link")
                if not os.path.lexists(link):
                    # Deleting through the API removes the link file and leaves its directory: a deleted
                    # manifest or blob, which the registry and garbage-collect skip too.
                    if deleted is not None:
                        deleted.append(_digest_of_dir(algo.name, entry.name))
                    continue
                digest = self._read_link(link, repo, findings)
                if digest is None:
                    continue
                if digest != _digest_of_dir(algo.name, entry.name):
                    findings.append(Finding(repo, link, "RegistryStorageError",
                                            f"{link}: names {digest}, not the digest of its directory"))
                    continue
                out.append(digest)
        return out

    def _walk_repository(self, name: str) -> RepositoryWalk:
        repo = RepositoryWalk(name)
        base = os.path.join(self.v2, "repositories", name)
        manifests = os.path.join(base, "_manifests")
        tags_dir = os.path.join(manifests, "tags")
        try:
            tag_entries = sorted(e.name for e in os.scandir(tags_dir) if e.is_dir(follow_symlinks=False))
            repo.has_tags_dir = True
        except FileNotFoundError:
            tag_entries = []
        except OSError as exc:
            tag_entries = []
            repo.findings.append(Finding(name, tags_dir, "RegistryStorageError",
                                         f"{tags_dir}: cannot list ({exc.strerror or exc})"))
        for tag in tag_entries:
            tag_dir = os.path.join(tags_dir, tag)
            repo.tags[tag] = self._read_link(os.path.join(tag_dir, "current", "link"), name, repo.findings)
            for digest in self._digest_links(os.path.join(tag_dir, "index"), name, repo.findings):
                repo.tag_history.append((tag, digest))
        for digest in self._digest_links(os.path.join(manifests, "revisions"), name, repo.findings, repo.deleted):
            repo.revisions[digest] = False
        for digest in self._digest_links(os.path.join(base, "_layers"), name, repo.findings):
            repo.layers[digest] = False
        return repo

    def _blob_prefixes(self) -> list[Path]:
        top = self.v2 / "blobs"
        out = []
        try:
            for algo in os.scandir(top):
                if algo.is_dir(follow_symlinks=False):
                    out.extend(Path(p.path) for p in os.scandir(algo.path) if p.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []
        except OSError as exc:
            self._findings.append(Finding(None, str(top), "RegistryStorageError",
                                          f"{top}: cannot list ({exc.strerror or exc})"))
        return sorted(out)

    def _walk_blob_prefix(self, prefix: Path) -> tuple[dict[str, int], list[Finding]]:
        """Blob sizes under one ``blobs/sha256/<xx>`` directory: the size of each ``data`` file."""
        found: dict[str, int] = {}
        findings: list[Finding] = []
        algo = prefix.parent.name
        try:
            entries = list(os.scandir(prefix))
        except OSError as exc:
            findings.append(Finding(None, str(prefix), "RegistryStorageError",
                                    f"{prefix}: cannot list ({exc.strerror or exc})"))
            return found, findings
        for entry in entries:
            if not _valid_hex(algo, entry.name):
                continue
            try:
                st = os.stat(os.path.join(entry.path, "data"))
            except FileNotFoundError:
                # Garbage collection removes the directory with its data; a directory left without one
                # is a blob whose upload or removal stopped halfway. Neither the API nor GC sees it.
                findings.append(Finding(None, _digest_of_dir(algo, entry.name), "RegistryStorageError",
                                        f"{entry.path}: blob directory without a data file"))
                continue
            except OSError as exc:
                findings.append(Finding(None, _digest_of_dir(algo, entry.name), "RegistryStorageError",
                                        f"{entry.path}/data: cannot stat ({exc.strerror or exc})"))
                continue
            found[_digest_of_dir(algo, entry.name)] = st.st_size
        return found, findings

    def _walk_uploads(self, item: tuple[str, Path]) -> tuple[list[Upload], list[Finding]]:
        repository, folder = item
        ups: list[Upload] = []
        findings: list[Finding] = []
        try:
            entries = [e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
        except OSError as exc:
            findings.append(Finding(repository, str(folder), "RegistryStorageError",
                                    f"{folder}: cannot list ({exc.strerror or exc})"))
            return ups, findings
        for entry in sorted(entries, key=lambda e: e.name):
            started = None
            path = Path(entry.path)
            try:
                text = (path / "startedat").read_text(errors="replace").strip()[:100]
                started = utc_naive(text)
                if started is None:
                    findings.append(Finding(repository, entry.name, "RegistryStorageError",
                                            f"{path}/startedat: not a timestamp ({text[:40]!r})"))
            except OSError as exc:
                # Distribution's purge then never removes the upload (it treats it as started in the future).
                findings.append(Finding(repository, entry.name, "RegistryStorageError",
                                        f"{path}/startedat: cannot read ({exc.strerror or exc})"))
            try:
                size = (path / "data").stat().st_size
            except OSError:
                size = None
            ups.append(Upload(repository, entry.name, started, size))
        return ups, findings

    # -- the Source protocol ---------------------------------------------------------------

    def _repo(self, repository: str) -> RepositoryWalk:
        self.walk()
        repo = self._repos.get(repository)
        if repo is None:
            raise NotFoundError(f"repository {repository} not in the storage (no _manifests directory)",
                                status=404, registry=self.name, repository=repository)
        return repo

    async def list_repositories(self) -> list[str]:
        await self.ping()
        self.walk()
        return sorted(self._repos)

    def set_request_budget(self, repository: str, tags: int) -> None:
        pass  # local reads cannot loop: every blob is read at most once per digest

    async def list_tags(self, repository: str) -> list[str]:
        # Like the API's tag list: every directory under tags/, whether or not its link can be followed.
        return list(self._repo(repository).tags)

    def _resolve(self, repository: str, reference: str) -> str:
        repo = self._repo(repository)
        if ":" in reference:
            digest = reference
        else:
            if reference not in repo.tags:
                raise NotFoundError(f"tag {reference} not in the storage", status=404, registry=self.name,
                                    repository=repository)
            digest = repo.tags[reference]
            if digest is None:
                raise RegistryStorageError(f"tag {reference}: current/link missing or unreadable")
        if digest not in repo.revisions:
            raise NotFoundError(f"manifest {digest} has no revision link in {repository} (a dangling link)",
                                status=404, registry=self.name, repository=repository)
        return digest

    def _blob_path(self, digest: str) -> str:
        algo, _, hexpart = digest.partition(":")
        if not _valid_hex(algo, hexpart):
            raise RegistryStorageError(f"{digest!r} is not a sha256 digest")
        return os.path.join(self._blobs_dir, algo, hexpart[:2], hexpart, "data")

    def _read_blob(self, repository: str, digest: str, what: str, cap: int) -> bytes:
        path = self._blob_path(digest)
        self.requests[f"read {what}"] += 1
        try:
            with open(path, "rb") as f:
                data = f.read(cap + 1)
        except FileNotFoundError:
            raise NotFoundError(f"{what} {digest}: blob data missing ({path})", status=404, registry=self.name,
                                repository=repository) from None
        except OSError as exc:
            raise RegistryStorageError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if len(data) > cap:
            raise ResponseTooLarge(f"{what} {path} is larger than the {cap:,}-byte cap", registry=self.name)
        if not verify_digest(digest, data):
            raise DigestMismatch(f"{path} hashes to {sha256_digest(data)}, not {digest} (truncated or corrupt)",
                                 registry=self.name, repository=repository)
        return data

    async def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        digest = self._resolve(repository, reference)
        body = self._read_blob(repository, digest, "manifest", self.limits.manifest_body)
        return FetchedManifest(digest, None, body)

    async def head_manifest(self, repository: str, reference: str) -> str | None:
        self.requests["HEAD manifest"] += 1
        digest = self._resolve(repository, reference)
        # The API answers a HEAD only for a manifest whose blob exists.
        return digest if self._repo(repository).revisions[digest] else None

    async def get_blob(self, repository: str, digest: str) -> bytes:
        if digest not in self._repo(repository).layers:
            raise NotFoundError(f"blob {digest} has no layer link in {repository}", status=404,
                                registry=self.name, repository=repository)
        return self._read_blob(repository, digest, "blob", self.limits.config_body)

    async def delete_manifest(self, repository: str, digest: str) -> None:
        raise RegistryStorageError(f"{self.target.url}: the storage is read-only to repoaudit; delete through "
                                   "the registry's API")

    # -- what only storage shows --------------------------------------------------------

    def untagged_revisions(self, repository: str) -> tuple[list[str], list[Finding]]:
        """Revisions no tag's ``current/link`` names (with readable blobs), and the repository's findings."""
        repo = self._repo(repository)
        current = {d for d in repo.tags.values() if d}
        untagged = sorted(d for d, present in repo.revisions.items() if present and d not in current)
        findings = list(repo.findings)
        findings += [Finding(repository, d, "RegistryStorageError",
                             f"revision {d} links a blob whose data file is missing (a dangling link)")
                     for d, present in sorted(repo.revisions.items()) if not present]
        return untagged, findings

    def storage_facts(self) -> StorageFacts:
        self.walk()
        revisions, layer_links, history = [], [], []
        for name, repo in sorted(self._repos.items()):
            current = {d for d in repo.tags.values() if d}
            revisions += [(name, d, True, d in current, present) for d, present in sorted(repo.revisions.items())]
            revisions += [(name, d, False, False, d in self._blobs) for d in sorted(repo.deleted)]
            layer_links += [(name, d, present) for d, present in sorted(repo.layers.items())]
            history += [(name, t, d) for t, d in repo.tag_history]
        repositories = [(name, repo.has_tags_dir) for name, repo in sorted(self._repos.items())]
        return StorageFacts(repositories, revisions, layer_links, history, sorted(self._blobs.items()), list(self._uploads),
                            list(self._findings))
