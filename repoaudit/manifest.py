"""Manifest and image-config parsing: bytes in, plain records out.

Both sources (a registry, an OCI layout) hand the collector raw manifest bytes;
this module turns them into :class:`Manifest` records without any I/O, so the
same parser serves every source and can be tested on the spec's own examples.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import UnsupportedMediaType

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

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


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict) or not isinstance(raw.get("digest"), str):
        raise UnsupportedMediaType(f"{where}: descriptor without a digest")
    size = raw.get("size")
    return Descriptor(
        media_type=raw.get("mediaType"),
        digest=raw["digest"],
        size=size if isinstance(size, int) else None,
        platform=raw.get("platform") if isinstance(raw.get("platform"), dict) else None,
        annotations=raw.get("annotations") if isinstance(raw.get("annotations"), dict) else None,
        artifact_type=raw.get("artifactType"),
    )


def parse_manifest(body: bytes, digest: str, media_type: str | None = None) -> Manifest:
    """Parse manifest bytes served with ``media_type`` (the Content-Type, if any).

    The body's own ``mediaType`` wins over the header, because static file
    servers and some proxies send ``application/json`` for everything. Schema 1
    and unknown artifacts come back with kind ``schema1`` / ``unknown`` instead
    of raising: they still occupy storage and belong in the audit.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnsupportedMediaType(f"manifest {digest} is not JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise UnsupportedMediaType(f"manifest {digest} is not a JSON object")
    declared = doc.get("mediaType") if isinstance(doc.get("mediaType"), str) else None
    mt = declared or (media_type or "").split(";")[0].strip() or None
    if mt is None or mt == "application/json":
        # OCI allows an absent mediaType; the shape tells image from index.
        if "manifests" in doc:
            mt = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            mt = OCI_MANIFEST
        elif doc.get("schemaVersion") == 1:
            mt = DOCKER_SCHEMA1_SIGNED if "signatures" in doc else DOCKER_SCHEMA1
        else:
            mt = mt or "application/octet-stream"
    m = Manifest(digest=digest, media_type=mt, size=len(body), kind="unknown",
                 artifact_type=doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None,
                 annotations=doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {})
    where = f"manifest {digest}"
    if isinstance(doc.get("subject"), dict):
        m.subject = doc["subject"].get("digest")
    if mt in INDEX_TYPES:
        m.kind = "index"
        m.children = [_descriptor(d, where) for d in doc.get("manifests") or []]
    elif mt in IMAGE_TYPES:
        m.kind = "image"
        if doc.get("config") is not None:
            m.config = _descriptor(doc["config"], where)
        m.layers = [_descriptor(d, where) for d in doc.get("layers") or []]
        if m.artifact_type is None and m.config is not None and m.config.media_type not in IMAGE_CONFIG_TYPES:
            # OCI 1.1 guidance: without artifactType, the config media type names the artifact.
            m.artifact_type = m.config.media_type
        if m.artifact_type is None and any(
            (l.media_type or "").startswith("application/vnd.dev.cosign") for l in m.layers
        ):
            m.artifact_type = "application/vnd.dev.cosign.artifact.sig.v1+json"
    elif mt in SCHEMA1_TYPES:
        m.kind = "schema1"
        # Schema 1 lists blobSums without sizes, newest first.
        for layer in reversed(doc.get("fsLayers") or []):
            if isinstance(layer, dict) and isinstance(layer.get("blobSum"), str):
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
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnsupportedMediaType(f"image config {digest} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise UnsupportedMediaType(f"image config {digest} is not a JSON object")
    cfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    labels = cfg.get("Labels") if isinstance(cfg.get("Labels"), dict) else {}
    created = doc.get("created") if isinstance(doc.get("created"), str) else None
    return ImageConfig(created=created, architecture=doc.get("architecture"), os=doc.get("os"),
                       variant=doc.get("variant"), labels={str(k): str(v) for k, v in labels.items()})
