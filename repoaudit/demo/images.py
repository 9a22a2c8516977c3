"""What the demo estate's artifacts are made of: layers, image configs, manifests, indexes, signatures.

Everything here is a pure function of a :class:`Context` (seed and ``as_of``)
and what is being built, so the same build always has the same bytes and digest.
Layer blobs are never materialised (see :mod:`repoaudit.demo.estate`); a layer
is a digest and a size.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from repoaudit.demo import supply
from repoaudit.demo.tables import (
    BASES,
    KINDS,
    PLATFORMS,
    PROFILES,
    REGISTRY,
    SOURCE_HOST,
    RepoSpec,
    epoch_times,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
COSIGN_PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
REF_NAME = "org.opencontainers.image.ref.name"

MB = 1024 * 1024


@dataclass(frozen=True)
class _Layer:
    digest: str
    diff_id: str
    size: int
    created_by: str
    created: datetime


@dataclass(frozen=True)
class Artifact:
    """Something a tag can point to, with every blob it needs in the layout."""

    kind: str  # "image" | "index" | "signature"
    media_type: str
    digest: str
    size: int
    blobs: tuple[tuple[str, bytes], ...]  # (hex, content)
    children: tuple[str, ...] = ()


class Context:
    """Per-call derivation of times, random streams and fake digests."""

    def __init__(self, seed: int, as_of: date):
        self.seed = seed
        self.as_of = as_of
        self.times = epoch_times(as_of)
        self.now = self.times[-1]
        self._stacks: dict[tuple[str, int, str], tuple[tuple[_Layer, ...], str]] = {}

    def rng(self, *key: object) -> random.Random:
        # String seeds hash with sha512, so streams are stable across runs
        # and independent of each other: adding a repository perturbs nothing.
        return random.Random("/".join(map(str, (self.seed, *key))))

    def digest(self, *key: object) -> str:
        return "sha256:" + hashlib.sha256("/".join(map(str, (self.seed, *key))).encode()).hexdigest()

    def release_time(self, base: str, release: int) -> datetime:
        days = BASES[base].released_days_ago[release]
        return datetime.combine(self.as_of - timedelta(days=days), time(3), tzinfo=timezone.utc)

    def release_at(self, base: str, when: datetime) -> int:
        current = 0
        for i in range(len(BASES[base].released_days_ago)):
            if self.release_time(base, i) <= when:
                current = i
        return current


# --------------------------------------------------------------------------
# Content: layers, configs, manifests, signatures
# --------------------------------------------------------------------------


def dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ts(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _megabytes(rng: random.Random, lo: float, hi: float) -> int:
    # Odd byte counts: compressed layers are never round numbers.
    return int(rng.uniform(lo, hi) * MB) + rng.randrange(4096)


def _layer(ctx: Context, key: tuple, size: int, created_by: str, created: datetime) -> _Layer:
    digest = ctx.digest("layer", *key)
    return _Layer(digest, ctx.digest("diff", *key), size, created_by, created)


def _base_stack(ctx: Context, name: str, release: int, arch: str) -> tuple[tuple[_Layer, ...], str]:
    """Layers and reference of one base release for one platform (cached)."""
    key = (name, release, arch)
    if key in ctx._stacks:
        return ctx._stacks[key]
    base = BASES[name]
    published = ctx.release_time(name, release)
    layers: list[_Layer] = []
    if base.parent:
        layers += _base_stack(ctx, base.parent, ctx.release_at(base.parent, published), arch)[0]
    for i, (lo, hi, created_by) in enumerate(base.layers):
        lkey = ("base", name, release, arch, i)
        size = _megabytes(ctx.rng(*lkey), lo, hi)
        text = created_by.format(h=ctx.digest(*lkey)[7:])
        layers.append(_layer(ctx, lkey, size, text, published + timedelta(minutes=i)))
    ref = base.release_ref(release, published)
    ctx._stacks[key] = (tuple(layers), ref)
    return ctx._stacks[key]


@dataclass(frozen=True)
class Build:
    spec: RepoSpec
    number: int
    created: datetime
    version: str
    revision: str
    base_release: int
    layer_generations: tuple[int, ...]


def _image_config(build: Build, arch: str, base_layers: tuple[_Layer, ...], base_ref: str,
                  app_layers: list[_Layer]) -> dict:
    spec, profile = build.spec, PROFILES[build.spec.base]
    platform = PLATFORMS[arch]
    made = _ts(build.created)

    def step(created_by: str, empty: bool = False) -> dict:
        entry = {"created": made, "created_by": created_by, "comment": "buildkit.dockerfile.v0"}
        if empty:
            entry["empty_layer"] = True
        return entry

    # Empty-layer steps are interleaved on purpose: history is longer than
    # diff_ids in real images and a collector must skip empty_layer entries.
    history = [{"created": _ts(l.created), "created_by": l.created_by} for l in base_layers]
    history.append(step("WORKDIR /app", empty=True))
    history += [step(l.created_by) for l in app_layers]
    history.append(step(f"USER {profile.user}", empty=True))
    history.append(step("ENTRYPOINT " + json.dumps(list(profile.entrypoint)), empty=True))
    labels = {
        "org.opencontainers.image.source": f"{SOURCE_HOST}/{spec.namespace}/{spec.name}",
        "org.opencontainers.image.version": build.version,
        "org.opencontainers.image.revision": build.revision,
        "org.opencontainers.image.created": made,
        "org.opencontainers.image.base.name": base_ref,
        "team": spec.namespace,
    }
    config: dict = {"created": made, "architecture": platform["architecture"]}
    if "variant" in platform:
        config["variant"] = platform["variant"]
    config["os"] = platform["os"]
    config["config"] = {
        "User": profile.user,
        "Env": list(BASES[spec.base].env) or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Entrypoint": list(profile.entrypoint),
        "WorkingDir": "/app",
        "Labels": labels,
    }
    config["rootfs"] = {"type": "layers", "diff_ids": [l.diff_id for l in (*base_layers, *app_layers)]}
    config["history"] = history
    return config


def _image(ctx: Context, build: Build, arch: str, docker: bool) -> Artifact:
    spec = build.spec
    base_layers, base_ref = _base_stack(ctx, spec.base, build.base_release, arch)
    app_layers = []
    for i, (lo, hi, _churn, created_by) in enumerate(PROFILES[spec.base].layers):
        # Size is a property of the repository (its jar, its node_modules)
        # with per-generation jitter, so sizes look stable within a repo.
        typical = ctx.rng("app-size", spec.path, i).uniform(lo, hi)
        key = ("app", spec.path, i, build.layer_generations[i], arch)
        jitter = ctx.rng(*key).uniform(0.9, 1.1)
        size = int(min(hi, max(lo, typical * jitter)) * MB) + ctx.rng(*key, "b").randrange(4096)
        app_layers.append(_layer(ctx, key, size, created_by, build.created))
    config = dump(_image_config(build, arch, base_layers, base_ref, app_layers))
    layer_type = DOCKER_LAYER if docker else OCI_LAYER
    manifest: dict = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                   "digest": _sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": l.digest, "size": l.size}
                   for l in (*base_layers, *app_layers)],
    }
    if not docker:
        manifest["annotations"] = {"org.opencontainers.image.base.name": base_ref,
                                   "org.opencontainers.image.created": _ts(build.created)}
    data = dump(manifest)
    digest = _sha256(data)
    return Artifact("image", manifest["mediaType"], digest, len(data),
                     ((_sha256(config)[7:], config), (digest[7:], data)))


def build_artifact(ctx: Context, build: Build) -> Artifact:
    kind = KINDS[build.spec.kind]
    docker, arches = kind.docker, kind.platforms
    images = [_image(ctx, build, arch, docker) for arch in arches]
    if not kind.multi:
        return images[0]
    index: dict = {"schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX, "manifests": [
        {"mediaType": img.media_type, "digest": img.digest, "size": img.size, "platform": PLATFORMS[arch]}
        for img, arch in zip(images, arches)]}
    if not docker:
        index["annotations"] = {"org.opencontainers.image.created": _ts(build.created)}
    data = dump(index)
    digest = _sha256(data)
    blobs = tuple(blob for img in images for blob in img.blobs) + ((digest[7:], data),)
    return Artifact("index", index["mediaType"], digest, len(data), blobs,
                     tuple(img.digest for img in images))


def signature_artifact(ctx: Context, repo: str, target: Artifact) -> tuple[str, Artifact]:
    """A cosign signature of ``target`` as stored by ``cosign sign`` (tag, artifact)."""
    payload = dump({"critical": {"identity": {"docker-reference": f"{REGISTRY}/{repo}"},
                                  "image": {"docker-manifest-digest": target.digest},
                                  "type": "cosign container image signature"},
                     "optional": None})
    signature = supply.sign(payload, target.digest)  # the demo key (deterministic Ed25519), now and then a rogue one
    # cosign builds on an empty image: zero timestamps, empty os/architecture.
    config = dump({"architecture": "", "created": "0001-01-01T00:00:00Z",
                    "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                    "rootfs": {"type": "layers", "diff_ids": [_sha256(payload)]}, "config": {}})
    manifest = dump({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": _sha256(config)},
        "layers": [{"mediaType": COSIGN_PAYLOAD, "size": len(payload), "digest": _sha256(payload),
                    "annotations": {COSIGN_SIGNATURE: signature}}],
    })
    digest = _sha256(manifest)
    artifact = Artifact("signature", OCI_MANIFEST, digest, len(manifest),
                         ((_sha256(config)[7:], config), (_sha256(payload)[7:], payload),
                          (digest[7:], manifest)))
    return f"sha256-{target.digest[7:]}.sig", artifact
