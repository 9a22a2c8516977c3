"""Manifest and image-config parsing: bytes in, plain records out.

Both sources (a registry, an OCI layout) hand the collector raw manifest bytes;
this module turns them into :class:`Manifest` records without any I/O, so the
same parser serves every source and can be tested on the spec's own examples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from repoaudit.model import documents
from repoaudit.model.documents import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    IMAGE_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1_TYPES,
)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})


# Order matters only for servers that ignore q-values; current types first.
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST,
                    DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_digest(digest: str, data: bytes) -> bool:
    """True when ``data`` hashes to ``digest``; unknown algorithms are trusted, not failed."""
    algo, _, hexpart = digest.partition(":")
    if algo not in hashlib.algorithms_available:
        return True
    return hashlib.new(algo, data).hexdigest() == hexpart


@dataclass(frozen=True)
class Descriptor:
    media_type: str | None
    digest: str
    size: int | None
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] | None = None
    artifact_type: str | None = None


@dataclass
class Manifest:
    """One manifest, image or index, as stored in the ``manifests`` table."""

    digest: str
    media_type: str
    size: int
    kind: str  # "image", "index", "schema1" or "unknown"
    artifact_type: str | None = None
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    children: list[Descriptor] = field(default_factory=list)
    subject: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.kind == "index"

    @property
    def has_image_config(self) -> bool:
        return self.config is not None and self.config.media_type in IMAGE_CONFIG_TYPES


def _descriptor(raw: dict) -> Descriptor:
    return Descriptor(media_type=raw["mediaType"], digest=raw["digest"], size=raw["size"],
                      platform=raw.get("platform"), annotations=raw.get("annotations"),
                      artifact_type=raw.get("artifactType"))


def parse_manifest(body: bytes, digest: str, media_type: str | None = None) -> Manifest:
    """Parse manifest bytes served with ``media_type`` (the Content-Type, if any).

    The document is checked against its schema first (:func:`repoaudit.model.documents.manifest`),
    so every value below has its type; a document that fails raises
    :class:`~repoaudit.errors.InvalidDocument`. Schema 1 and unknown artifacts come back
    with kind ``schema1`` / ``unknown`` instead of raising: they still occupy storage and
    belong in the audit.
    """
    what = f"manifest {digest}"
    doc = documents.load_json(body, what)
    mt = documents.manifest(doc, what, media_type)
    m = Manifest(digest=digest, media_type=mt, size=len(body), kind="unknown",
                 artifact_type=doc.get("artifactType"), annotations=doc.get("annotations") or {})
    if doc.get("subject") is not None:
        m.subject = doc["subject"]["digest"]
    if mt in INDEX_TYPES:
        m.kind = "index"
        m.children = [_descriptor(d) for d in doc["manifests"]]
    elif mt in IMAGE_TYPES:
        m.kind = "image"
        m.config = _descriptor(doc["config"])
        m.layers = [_descriptor(d) for d in doc["layers"]]
        if m.artifact_type is None and m.config.media_type not in IMAGE_CONFIG_TYPES:
            # OCI 1.1 guidance: without artifactType, the config media type names the artifact.
            m.artifact_type = m.config.media_type
        if m.artifact_type is None and any(l.media_type.startswith("application/vnd.dev.cosign") for l in m.layers):
            m.artifact_type = "application/vnd.dev.cosign.artifact.sig.v1+json"
    elif mt in SCHEMA1_TYPES:
        m.kind = "schema1"
        # Schema 1 lists blobSums without sizes, newest first.
        for layer in reversed(doc.get("fsLayers") or []):
            m.layers.append(Descriptor(media_type="application/vnd.docker.container.image.rootfs.diff+x-gtar",
                                       digest=layer["blobSum"], size=None))
    return m


@dataclass(frozen=True)
class ImageConfig:
    created: str | None
    architecture: str | None
    os: str | None
    variant: str | None
    labels: dict[str, str]


def parse_config(body: bytes, digest: str) -> ImageConfig:
    """Parse an image config checked by :func:`repoaudit.model.documents.image_config`."""
    what = f"image config {digest}"
    doc = documents.image_config(documents.load_json(body, what), what)
    labels = (doc.get("config") or {}).get("Labels") or {}
    return ImageConfig(created=doc.get("created"), architecture=doc.get("architecture"), os=doc.get("os"),
                       variant=doc.get("variant"), labels=dict(labels))

@dataclass(frozen=True)
class FetchedManifest:
    """A manifest as a source returned it: the raw body, which its digest is of, and the media type."""

    digest: str
    media_type: str | None
    body: bytes
