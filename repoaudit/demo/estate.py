"""Deterministic synthetic demo estate, written as OCI image layouts.

The demo estate stands in for a company registry: five team namespaces, about
sixty repositories, a couple of thousand tags, two years of pushes. Each
repository is written as an OCI image layout at ``root/<namespace>/<name>/``::

    oci-layout          {"imageLayoutVersion":"1.0.0"}
    index.json          one descriptor per tag (annotation org.opencontainers.image.ref.name)
    blobs/sha256/<hex>  manifests, indexes, image configs, cosign payloads

The demo is a **metadata mirror**: layer blobs are *not* written. Layer
descriptors carry realistic sizes (megabytes) and valid sha256 digests, but no
file backs them, because the collector only reads manifests and configs, and a
two-year estate with real layers would weigh hundreds of gigabytes. Tools that
read layers (``skopeo copy``) will fail on the demo; ``skopeo inspect`` works
for OCI-typed tags. Tags whose descriptor has a Docker media type (schema 2
manifests, manifest lists) are valid per the image-layout spec but skopeo 1.9
does not resolve them ("no descriptor found for reference").

What the estate models, so that the audit queries have something to find:

* shared base images (``bases`` in ``data/estate.json``) whose layers have fixed digests, reused by
  every image built on them, and re-released over time, so old images keep an
  old base (stale base = vulnerability exposure) and shared bytes are counted
  once;
* dependency layers shared between builds of one repository until the
  dependencies change (``profiles``), so deleting one tag frees less than the
  sum of its layers;
* OCI manifests, Docker schema 2 manifests, multi-arch OCI indexes and Docker
  manifest lists (``kinds``); children of an index are stored as blobs only;
* cosign signatures, tagged ``sha256-<hex>.sig``, on repositories that adopted
  signing; signatures outlive the tags of what they sign, as they do in practice;
* many tag styles (semver, ``v``-semver, dates, commit shas, ``main-<n>``,
  release candidates, ``latest``/``stable``/``prod``);
* stale repositories (no push in 400+ days), repositories with 1-3 tags and
  repositories with close to a hundred;
* the same manifest in two repositories (a mirror and promotions to ``-prod``).

The estate evolves over ``EPOCHS`` snapshots a week apart (``epoch_times``):
active repositories push, ``latest``/``stable`` move, CI retention and manual
pruning delete tags (their manifests stay as untagged blobs, as in a registry
before garbage collection), new repositories appear in the last epoch, and one
``stable`` tag is rolled back to an older digest.

Every repository's full history is derived from ``(seed, as_of)`` alone; an
epoch is that history replayed up to the epoch's snapshot time. So the output
is deterministic given ``(seed, as_of, epoch)``, epochs are nested, and
writing epoch 0, then 1, then 2 into one root yields exactly the same files as
writing epoch 2 into an empty one (blobs are content-addressed and only
added). Epochs are meant to be written in increasing order: writing an earlier
epoch over a later one rewrites index.json files but leaves later blobs and
repositories in place.

The tables the estate is made from (base images, Dockerfile profiles, the
repositories and their habits) are data files read by :mod:`.tables`; what
artifacts are made of is :mod:`.images`, and each repository's history
:mod:`.history`. This module writes the layouts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from repoaudit.demo.history import estate_events, replay
from repoaudit.demo.images import OCI_INDEX, REF_NAME, Artifact, Context, dump
from repoaudit.demo.tables import (
    BASES,
    DEFAULT_SEED,
    EPOCHS,
    PROFILES,
    REGISTRY,
    REPO_SPECS,
    RepoSpec,
    epoch_times,
)

__all__ = ["BASES", "DEFAULT_SEED", "EPOCHS", "PROFILES", "REGISTRY", "REPO_SPECS", "EstateSummary", "RepoSpec",
           "epoch_times", "generate_estate"]


@dataclass(frozen=True)
class EstateSummary:
    """What one ``generate_estate`` call wrote.

    Counts cover what is reachable from the tags at this epoch, per repository
    (a digest stored in two repositories counts twice, as a registry stores
    it twice): ``tags`` counts index.json descriptors including ``.sig`` tags;
    ``manifests`` counts single-platform image manifests, tagged or children
    of a tagged index; ``indexes`` counts OCI indexes and Docker manifest
    lists; ``signatures`` counts cosign signature manifests. Untagged
    manifests left behind by deleted tags are stored but not counted.
    """

    root: Path
    epoch: int
    as_of: date
    snapshot_time: datetime
    repositories: int
    tags: int
    manifests: int
    indexes: int
    signatures: int



def _write_atomic(path: Path, data: bytes) -> None:
    # A crash must not leave a truncated blob that a later run trusts by name.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_layout(path: Path, pushed: dict[str, Artifact], tags: dict[str, Artifact]) -> None:
    blob_dir = path / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    existing = set(os.listdir(blob_dir))
    # Untagged artifacts are written too: a registry keeps them until garbage
    # collection, and it keeps incremental and one-shot generation identical.
    for artifact in pushed.values():
        for name, data in artifact.blobs:
            if name not in existing:
                _write_atomic(blob_dir / name, data)
                existing.add(name)
    layout = path / "oci-layout"
    if not layout.exists():
        _write_atomic(layout, dump({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": a.media_type, "digest": a.digest, "size": a.size, "annotations": {REF_NAME: tag}}
        for tag, a in sorted(tags.items())]}
    _write_atomic(path / "index.json", (json.dumps(index, indent=2) + "\n").encode())



def generate_estate(root: Path, *, epoch: int = EPOCHS - 1, as_of: date | None = None,
                    seed: int = DEFAULT_SEED) -> EstateSummary:
    """Write (or bring forward) the demo estate's OCI layouts under ``root`` as of ``epoch``."""
    if not 0 <= epoch < EPOCHS:
        raise ValueError(f"epoch must be in 0..{EPOCHS - 1}, got {epoch}")
    if as_of is None:
        as_of = datetime.now(timezone.utc).date()
    root = Path(root)
    ctx = Context(seed, as_of)
    until = ctx.times[epoch]
    repositories = tag_count = manifests = indexes = signatures = 0
    for path, events in estate_events(ctx).items():
        pushed, tags = replay(events, until)
        if not pushed:
            continue
        _write_layout(root / path, pushed, tags)
        repositories += 1
        tag_count += len(tags)
        reachable = {a.digest: a for a in tags.values()}
        images = {d for d, a in reachable.items() if a.kind == "image"}
        images.update(child for a in reachable.values() for child in a.children)
        manifests += len(images)
        indexes += sum(a.kind == "index" for a in reachable.values())
        signatures += sum(a.kind == "signature" for a in reachable.values())
    return EstateSummary(root, epoch, as_of, until, repositories, tag_count, manifests, indexes, signatures)
