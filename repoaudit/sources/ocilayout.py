"""A directory of OCI image layouts read as if it were a registry.

Each layout (a folder holding ``oci-layout`` and ``index.json``, as written by
``skopeo copy ... oci:DIR:TAG``, oras or regctl) is one repository, named by its
path relative to the root. Tags come from the ``org.opencontainers.image.ref.name``
annotation of ``index.json``; descriptors without one are untagged, just as
untagged manifests are invisible through a registry's tag listing.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from repoaudit.errors import (
    DigestMismatch,
    InvalidDocument,
    LayoutError,
    NotFoundError,
    ResponseTooLarge,
)
from repoaudit.model import documents
from repoaudit.model.limits import Limits
from repoaudit.model.manifest import (
    OCI_INDEX,
    FetchedManifest,
    sha256_digest,
    verify_digest,
)
from repoaudit.model.options import Target
from repoaudit.model.reference import is_valid_tag
from repoaudit.sources.base import LocalSource

REF_NAME = "org.opencontainers.image.ref.name"


def _tag_of(ref_name: str) -> str:
    """The tag in a ``ref.name``: skopeo writes ``v1``; others write ``host/app:v1``."""
    if is_valid_tag(ref_name):
        return ref_name
    tail = ref_name.rsplit("/", 1)[-1]
    if ":" in tail:
        return tail.rsplit(":", 1)[1]
    return ref_name


class OCILayoutSource(LocalSource):
    """The OCI-layout side of :class:`repoaudit.sources.base.Source`."""

    kind = "oci-layout"
    # Reads are local and quick; a few workers only overlap the JSON parsing with file I/O.
    concurrency = 4

    def __init__(self, target: Target, limits: Limits | None = None):
        self.target = target
        self.limits = limits or Limits()
        self.halted = None  # no circuit to open: reads are local
        self.name = target.name
        self.root = target.path
        self.requests: Counter[str] = Counter()
        self.rate_limit: dict[str, str] = {}
        self._index: dict[str, dict[str, tuple[str, str | None]]] = {}

    async def ping(self) -> None:
        if not self.root.is_dir():
            raise LayoutError(f"{self.target.url}: not a directory")

    def _layout(self, repository: str) -> Path:
        return self.root if repository == self._root_name() else self.root / repository

    def _root_name(self) -> str:
        return self.root.name

    async def list_repositories(self) -> list[str]:
        await self.ping()
        if (self.root / "index.json").exists() or (self.root / "oci-layout").exists():
            return [self._root_name()]
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if "oci-layout" in filenames or "index.json" in filenames:
                found.append(Path(dirpath).relative_to(self.root).as_posix())
                dirnames[:] = []  # a layout's blobs/ never holds another layout
            else:
                dirnames.sort()
        if not found:
            raise LayoutError(f"{self.target.url}: no OCI image layout found (no index.json or oci-layout below it)")
        return sorted(found)

    def _read_index(self, repository: str) -> dict[str, tuple[str, str | None]]:
        if repository in self._index:
            return self._index[repository]
        path = self._layout(repository) / "index.json"
        self.requests["GET index.json"] += 1
        try:
            # index.json is an OCI index: the same schema as one served by a registry.
            body = self._read_file(path, self.limits.page_body, "index.json")
            doc = documents.load_json(body, str(path))
            if not isinstance(doc, dict) or "manifests" not in doc:
                raise LayoutError(f"{path}: no manifests list")
            documents.manifest(doc, str(path), OCI_INDEX)
        except FileNotFoundError:
            raise LayoutError(f"{path}: missing index.json (not an OCI image layout)") from None
        except OSError as exc:
            raise LayoutError(f"{path}: {exc.strerror or exc}") from None
        except InvalidDocument as exc:
            raise LayoutError(str(exc)) from None
        tags: dict[str, tuple[str, str | None]] = {}
        for desc in doc["manifests"]:
            name = (desc.get("annotations") or {}).get(REF_NAME)
            if name:
                tags[_tag_of(name)] = (desc["digest"], desc.get("mediaType"))
        self._index[repository] = tags
        return tags

    def set_request_budget(self, repository: str, tags: int) -> None:
        pass  # local reads cannot loop: every blob is read at most once per digest

    async def list_tags(self, repository: str) -> list[str]:
        return sorted(self._read_index(repository))

    def _blob_path(self, repository: str, digest: str) -> Path:
        try:
            documents.check_digest(digest, f"{self.target.url}/{repository}", "digest")
        except InvalidDocument as exc:
            raise LayoutError(str(exc)) from None
        algo, _, hexpart = digest.partition(":")
        return self._layout(repository) / "blobs" / algo / hexpart

    def _read_file(self, path: Path, cap: int, what: str) -> bytes:
        """A file read with the same cap a registry response of its kind has."""
        with path.open("rb") as f:
            data = f.read(cap + 1)
        if len(data) > cap:
            raise ResponseTooLarge(f"{what} {path} is larger than the {cap:,}-byte cap", registry=self.name)
        return data

    def _read_blob(self, repository: str, digest: str, what: str) -> bytes:
        path = self._blob_path(repository, digest)
        self.requests[f"GET {what}"] += 1
        cap = self.limits.manifest_body if what == "manifest" else self.limits.config_body
        try:
            data = self._read_file(path, cap, what)
        except FileNotFoundError:
            raise NotFoundError(f"{what} {digest} missing from the layout ({path})", status=404,
                                registry=self.name, repository=repository) from None
        except OSError as exc:
            raise LayoutError(f"{path}: {exc.strerror or exc}") from None
        if not verify_digest(digest, data):
            raise DigestMismatch(f"{path} hashes to {sha256_digest(data)}, not {digest}",
                                 registry=self.name, repository=repository)
        return data

    async def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        media_type = None
        digest = reference
        if ":" not in reference:
            tags = self._read_index(repository)
            if reference not in tags:
                raise NotFoundError(f"tag {reference} not in index.json", status=404,
                                    registry=self.name, repository=repository)
            digest, media_type = tags[reference]
        body = self._read_blob(repository, digest, "manifest")
        return FetchedManifest(digest, media_type, body)

    async def head_manifest(self, repository: str, reference: str) -> str | None:
        self.requests["HEAD manifest"] += 1
        if ":" in reference:
            return reference
        tags = self._read_index(repository)
        if reference not in tags:
            raise NotFoundError(f"tag {reference} not in index.json", status=404,
                                registry=self.name, repository=repository)
        return tags[reference][0]

    async def get_blob(self, repository: str, digest: str) -> bytes:
        return self._read_blob(repository, digest, "blob")

    async def delete_manifest(self, repository: str, digest: str) -> None:
        raise LayoutError(f"{self.target.url}: deleting from an OCI layout is not supported")
