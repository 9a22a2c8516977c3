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

* shared base images (``BASES``) whose layers have fixed digests, reused by
  every image built on them, and re-released over time, so old images keep an
  old base (stale base = vulnerability exposure) and shared bytes are counted
  once;
* dependency layers shared between builds of one repository until the
  dependencies change (``PROFILES``), so deleting one tag frees less than the
  sum of its layers;
* OCI manifests, Docker schema 2 manifests, multi-arch OCI indexes and Docker
  manifest lists (``KINDS``); children of an index are stored as blobs only;
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
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

__all__ = ["EPOCHS", "DEFAULT_SEED", "REGISTRY", "EstateSummary", "epoch_times", "generate_estate"]

EPOCHS = 3
DEFAULT_SEED = 20261127
EPOCH_SPACING = timedelta(days=7)
SNAPSHOT_HOUR = 6
# Signature payloads name the image by registry reference; the host is fictional.
REGISTRY = "registry.example.com"
SOURCE_HOST = "https://git.example.com"

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

# --------------------------------------------------------------------------
# Data tables
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    """A public base image, re-released over time.

    ``ref`` is formatted with ``n`` (release number, from ``first``) and
    ``date`` (YYYYMMDD of the release). Layers are ``(min MB, max MB,
    created_by)``; a base with a parent starts with the parent's layers as of
    its own release date, which is how python/node/golang share debian bytes.
    """

    ref: str
    first: int
    parent: str | None
    layers: tuple[tuple[float, float, str], ...]
    released_days_ago: tuple[int, ...]
    env: tuple[str, ...] = ()


_ADD_ROOTFS = "/bin/sh -c #(nop) ADD file:{h} in / "

# Release days are chosen so that one base release falls between each pair of
# epochs: images pushed in the last epochs use a new base, older ones do not.
BASES: dict[str, Base] = {
    "debian-bookworm-slim": Base(
        "debian:bookworm-{date}-slim", 0, None, ((27, 30, _ADD_ROOTFS),),
        (1000, 540, 330, 150, 60, 10)),
    "ubuntu-jammy": Base(
        "ubuntu:jammy-{date}", 0, None, ((28, 31, _ADD_ROOTFS),),
        (1000, 400, 200, 70)),
    "alpine-3.19": Base(
        "alpine:3.19.{n}", 0, None, ((3.2, 3.6, _ADD_ROOTFS),),
        (1000, 450, 200, 40)),
    "distroless-static": Base(
        "gcr.io/distroless/static-debian12:nonroot-{date}", 0, None,
        ((3.0, 3.4, "bazel build //base:static_root_nonroot_debian12"),
         (3.0, 3.2, "bazel build //base:tzdata_debian12")),
        (1000, 380, 120, 9)),
    "python-3.12-slim": Base(
        "python:3.12.{n}-slim-bookworm", 1, "debian-bookworm-slim",
        ((3.1, 3.9, "RUN /bin/sh -c apt-get install -y ca-certificates netbase tzdata"),
         (11, 14, "RUN /bin/sh -c set -eux; ./configure --enable-optimizations; make install"),
         (3.0, 3.5, "RUN /bin/sh -c pip install --no-cache-dir setuptools wheel")),
        (1000, 500, 260, 90, 11),
        ("PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")),
    "node-20": Base(
        "node:20.{n}.0-bookworm-slim", 9, "debian-bookworm-slim",
        ((40, 48, "RUN /bin/sh -c set -ex; curl -fsSLO nodejs.org/dist/node-linux.tar.xz"),
         (3.3, 4.8, "RUN /bin/sh -c set -ex; yarn install"),
         (3.0, 3.1, "COPY docker-entrypoint.sh /usr/local/bin/ # buildkit")),
        (1000, 400, 180, 30),
        ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NODE_ENV=production")),
    "golang-builder": Base(
        "golang:1.22.{n}-bookworm", 0, "debian-bookworm-slim",
        ((22, 26, "RUN /bin/sh -c apt-get install -y g++ gcc libc6-dev make pkg-config git"),
         (62, 72, "RUN /bin/sh -c set -eux; tar -C /usr/local -xzf go.tgz"),
         (3.0, 3.2, "RUN /bin/sh -c mkdir -p /go/src /go/bin")),
        (1000, 330, 100, 12),
        ("PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
         "GOPATH=/go")),
    "eclipse-temurin-21": Base(
        "eclipse-temurin:21.0.{n}_7-jre-jammy", 1, "ubuntu-jammy",
        ((15, 19, "RUN /bin/sh -c apt-get install -y tzdata curl ca-certificates fontconfig locales"),
         (48, 56, "RUN /bin/sh -c set -eux; tar -xf openjdk.tar.gz -C /opt/java/openjdk"),
         (3.0, 3.1, "COPY entrypoint.sh /__cacert_entrypoint.sh # buildkit")),
        (1000, 420, 210, 75),
        ("JAVA_HOME=/opt/java/openjdk", "PATH=/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/bin:/bin")),
    "cuda-12-runtime": Base(
        "nvidia/cuda:12.{n}.0-runtime-ubuntu22.04", 1, "ubuntu-jammy",
        ((4.2, 5.0, "RUN /bin/sh -c apt-get install -y gnupg2 curl ca-certificates"),
         (30, 40, "RUN /bin/sh -c apt-get install -y cuda-cudart-12"),
         (70, 80, "RUN /bin/sh -c apt-get install -y cuda-libraries-12"),
         (55, 78, "RUN /bin/sh -c apt-get install -y libnccl2")),
        (1000, 365, 120),
        ("NVIDIA_VISIBLE_DEVICES=all", "PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/bin:/bin")),
}


@dataclass(frozen=True)
class Profile:
    """What a team's Dockerfile adds on top of a base.

    Layers are ``(min MB, max MB, churn, created_by)``; churn is the chance a
    build changes the layer. Churn below 1 models dependency layers that stay
    byte-identical across builds, the main source of intra-repository sharing.
    """

    layers: tuple[tuple[float, float, float, str], ...]
    entrypoint: tuple[str, ...]
    user: str = "10001"


PROFILES: dict[str, Profile] = {
    "eclipse-temurin-21": Profile(
        ((20, 120, 0.15, "COPY build/dependencies/ /app/lib/ # buildkit"),
         (1, 30, 1.0, "COPY build/libs/app.jar /app/app.jar # buildkit")),
        ("java", "-jar", "/app/app.jar")),
    "python-3.12-slim": Profile(
        ((30, 200, 0.2, "RUN /bin/sh -c pip install --no-cache-dir -r requirements.txt # buildkit"),
         (1, 12, 1.0, "COPY src/ /app/src/ # buildkit")),
        ("python", "-m", "app")),
    "node-20": Profile(
        ((50, 200, 0.2, "RUN /bin/sh -c npm ci --omit=dev # buildkit"),
         (2, 25, 1.0, "COPY dist/ /app/dist/ # buildkit")),
        ("node", "dist/server.js"), "node"),
    "distroless-static": Profile(
        ((8, 60, 1.0, "COPY /out/app /usr/local/bin/app # buildkit"),),
        ("/usr/local/bin/app",), "65532"),
    "alpine-3.19": Profile(
        ((5, 30, 0.1, "RUN /bin/sh -c apk add --no-cache ca-certificates curl # buildkit"),
         (1, 40, 1.0, "COPY app/ /app/ # buildkit")),
        ("/app/run",)),
    "debian-bookworm-slim": Profile(
        ((10, 80, 0.15, "RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends # buildkit"),
         (1, 50, 1.0, "COPY rootfs/ / # buildkit")),
        ("/docker-entrypoint.sh",)),
    "golang-builder": Profile(
        ((50, 200, 0.1, "RUN /bin/sh -c go install ./tools/... # buildkit"),
         (1, 20, 1.0, "COPY scripts/ /usr/local/bin/ # buildkit")),
        ("/usr/local/bin/entrypoint.sh",), "0"),
    "cuda-12-runtime": Profile(
        ((150, 200, 0.1, "RUN /bin/sh -c pip install torch # buildkit"),
         (40, 160, 0.2, "RUN /bin/sh -c pip install -r requirements.txt # buildkit"),
         (5, 50, 1.0, "COPY . /workspace # buildkit")),
        ("python", "serve.py")),
}

# kind -> (docker media types?, platforms, is a multi-platform index?)
KINDS: dict[str, tuple[bool, tuple[str, ...], bool]] = {
    "oci": (False, ("amd64",), False),
    "docker": (True, ("amd64",), False),
    "index": (False, ("amd64", "arm64"), True),
    "index3": (False, ("amd64", "arm64", "arm/v7"), True),
    "dlist": (True, ("amd64", "arm64"), True),
}

PLATFORMS: dict[str, dict[str, str]] = {
    "amd64": {"architecture": "amd64", "os": "linux"},
    "arm64": {"architecture": "arm64", "os": "linux"},
    "arm/v7": {"architecture": "arm", "os": "linux", "variant": "v7"},
}

NAMESPACES = ("payments", "platform", "data", "web", "ml")

# Activity: active = pushes up to the last epoch; slow = last push weeks to
# months ago; stale = last push 400+ days ago; new = first push in the last
# epoch. Tag schemes are described at _Tagger. Flags:
#   signed        cosign-signs pushes since the team adopted signing
#   stable        every third release also moves `stable`
#   rc            new minor/major versions get -rc.N builds first
#   nolatest      no `latest` tag
#   keep=N        CI retention keeps the last N builds' tags
#   prune         someone deletes a few old version tags in each epoch window
#   rollback      `stable` is moved back to an older digest before the last epoch
#   mirror=REPO   re-pushes REPO's releases, same digests
#   promote=REPO  re-pushes REPO's `stable` releases, tagged `prod`
REPOS = """
# repository                  base                  kind    tags          builds  activity  flags
payments/api                  eclipse-temurin-21    oci     vsemver       60      active    signed stable prune
payments/ledger               eclipse-temurin-21    oci     semver        45      active    signed stable rollback
payments/gateway              distroless-static     oci     vsemver       55      active    signed stable rc
payments/gateway-prod         -                     -       -             -       -         signed promote=payments/gateway
payments/fraud-scorer         python-3.12-slim      oci     ci            60      active    keep=40
payments/settlement-batch     eclipse-temurin-21    docker  date          30      slow
payments/card-vault           distroless-static     index   semver        25      active    signed
payments/payouts-worker       python-3.12-slim      oci     sha40         35      active    nolatest
payments/legacy-billing       debian-bookworm-slim  docker  semver        12      stale
payments/reconciliation       python-3.12-slim      oci     date          20      slow
payments/pci-scanner          alpine-3.19           oci     semver        3       stale     nolatest
payments/notifications        node-20               oci     ci            50      active    keep=35
payments/fx-rates             distroless-static     index3  vsemver       18      slow
platform/mirror-nginx         -                     -       -             -       -         mirror=web/nginx
platform/base-python          python-3.12-slim      index   date          30      active    signed
platform/base-node            node-20               index   date          24      active
platform/ingress-controller   distroless-static     index3  vsemver       40      active    signed stable rc
platform/cert-webhook         distroless-static     oci     vsemver       15      slow
platform/ci-runner            golang-builder        docker  ci            80      active    keep=45
platform/terraform-runner     alpine-3.19           oci     semver        22      slow      prune
platform/vault-agent          alpine-3.19           dlist   semver        14      slow
platform/log-shipper          debian-bookworm-slim  index   semver-float  30      active
platform/dns-sync             alpine-3.19           oci     sha7          8       stale
platform/kube-janitor         python-3.12-slim      oci     semver        2       stale     nolatest
platform/build-cache          golang-builder        oci     ci            4       stale     keep=10
platform/secrets-operator     distroless-static     oci     vsemver       26      active    signed stable
platform/policy-agent         distroless-static     oci     vsemver       3       new       signed
data/etl-runner               python-3.12-slim      oci     ci            70      active    keep=40
data/spark-jobs               eclipse-temurin-21    docker  date          45      active    prune
data/airflow-dags             python-3.12-slim      oci     date          85      active
data/kafka-connect            eclipse-temurin-21    oci     semver        25      slow
data/dbt-runner               python-3.12-slim      oci     vsemver       30      active    stable
data/warehouse-loader         distroless-static     oci     sha40         40      active    nolatest
data/schema-registry          eclipse-temurin-21    dlist   semver        15      slow
data/cdc-relay                distroless-static     index   semver        18      slow
data/hive-metastore           eclipse-temurin-21    docker  semver        10      stale
data/geo-enricher             python-3.12-slim      oci     semver        2       stale
data/backfill-tools           python-3.12-slim      oci     sha7          12      stale
data/quality-checks           python-3.12-slim      oci     semver        20      active    prune
data/lakehouse-compactor      eclipse-temurin-21    oci     vsemver       4       new
web/nginx                     debian-bookworm-slim  oci     semver-float  40      active    stable
web/storefront                node-20               oci     ci            90      active    keep=45
web/checkout-ui               node-20               oci     vsemver       60      active    signed stable rc
web/cms                       node-20               docker  date          30      slow
web/image-resizer             distroless-static     index   semver        25      active
web/bff                       node-20               oci     ci            40      active    keep=30
web/marketing-site            alpine-3.19           oci     date          50      active    prune
web/search-api                eclipse-temurin-21    oci     semver        35      active
web/admin-portal              node-20               docker  semver        20      stale
web/old-landing               alpine-3.19           oci     latest        6       stale
web/status-page               alpine-3.19           oci     semver        3       stale
web/edge-worker               distroless-static     index3  semver        22      active
ml/model-server               python-3.12-slim      index   vsemver       40      active    signed stable rc
ml/model-server-prod          -                     -       -             -       -         signed promote=ml/model-server
ml/feature-store              python-3.12-slim      oci     semver        30      active
ml/training-base              cuda-12-runtime       oci     date          20      slow
ml/notebook                   python-3.12-slim      docker  date          25      slow
ml/embeddings-api             python-3.12-slim      oci     ci            45      active    keep=30
ml/label-tool                 node-20               oci     semver        10      stale
ml/batch-inference            cuda-12-runtime       oci     sha40         30      active    nolatest
ml/triton-custom              cuda-12-runtime       docker  semver        8       stale
ml/experiment-tracker         python-3.12-slim      oci     vsemver       15      slow
ml/data-validator             python-3.12-slim      oci     semver        2       stale
ml/ray-worker                 python-3.12-slim      index   semver        20      active
"""


@dataclass(frozen=True)
class RepoSpec:
    path: str
    base: str
    kind: str
    scheme: str
    builds: int
    activity: str
    flags: frozenset[str]
    options: tuple[tuple[str, str], ...]

    @property
    def namespace(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.path.split("/", 1)[1]

    def option(self, key: str) -> str | None:
        return dict(self.options).get(key)


def _parse_repos(table: str) -> tuple[RepoSpec, ...]:
    specs = []
    for line in table.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path, base, kind, scheme, builds, activity, *extra = line.split()
        flags = frozenset(f for f in extra if "=" not in f)
        options = tuple((key, value) for key, _, value in (f.partition("=") for f in extra if "=" in f))
        spec = RepoSpec(path, base, kind, scheme, 0 if builds == "-" else int(builds),
                        activity, flags, options)
        copied = spec.option("mirror") or spec.option("promote")
        # Fail at import on a typo in the table rather than deep in generation.
        if copied is None and (base not in PROFILES or kind not in KINDS or spec.builds < 1):
            raise ValueError(f"bad row in REPOS: {line.strip()!r}")
        specs.append(spec)
    known = {spec.path for spec in specs}
    for spec in specs:
        source = spec.option("mirror") or spec.option("promote")
        if source is not None and source not in known:
            raise ValueError(f"{spec.path} copies unknown repository {source!r}")
    return tuple(specs)


REPO_SPECS = _parse_repos(REPOS)

# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Layer:
    digest: str
    diff_id: str
    size: int
    created_by: str
    created: datetime


@dataclass(frozen=True)
class _Artifact:
    """Something a tag can point to, with every blob it needs in the layout."""

    kind: str  # "image" | "index" | "signature"
    media_type: str
    digest: str
    size: int
    blobs: tuple[tuple[str, bytes], ...]  # (hex, content)
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Event:
    """At ``time``, point ``tags`` at ``artifact``, or delete them if it is None."""

    time: datetime
    seq: int
    artifact: _Artifact | None
    tags: tuple[str, ...]
    primary: str | None = None  # the build's own version tag
    release: bool = False  # not a release candidate


class _Context:
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


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ts(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _megabytes(rng: random.Random, lo: float, hi: float) -> int:
    # Odd byte counts: compressed layers are never round numbers.
    return int(rng.uniform(lo, hi) * MB) + rng.randrange(4096)


def _layer(ctx: _Context, key: tuple, size: int, created_by: str, created: datetime) -> _Layer:
    digest = ctx.digest("layer", *key)
    return _Layer(digest, ctx.digest("diff", *key), size, created_by, created)


def _base_stack(ctx: _Context, name: str, release: int, arch: str) -> tuple[tuple[_Layer, ...], str]:
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
    ref = base.ref.format(n=base.first + release, date=published.strftime("%Y%m%d"))
    ctx._stacks[key] = (tuple(layers), ref)
    return ctx._stacks[key]


@dataclass(frozen=True)
class _Build:
    spec: RepoSpec
    number: int
    created: datetime
    version: str
    revision: str
    base_release: int
    layer_generations: tuple[int, ...]


def _image_config(build: _Build, arch: str, base_layers: tuple[_Layer, ...], base_ref: str,
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


def _image(ctx: _Context, build: _Build, arch: str, docker: bool) -> _Artifact:
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
    config = _dump(_image_config(build, arch, base_layers, base_ref, app_layers))
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
    data = _dump(manifest)
    digest = _sha256(data)
    return _Artifact("image", manifest["mediaType"], digest, len(data),
                     ((_sha256(config)[7:], config), (digest[7:], data)))


def _build_artifact(ctx: _Context, build: _Build) -> _Artifact:
    docker, arches, multi = KINDS[build.spec.kind]
    images = [_image(ctx, build, arch, docker) for arch in arches]
    if not multi:
        return images[0]
    index: dict = {"schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX, "manifests": [
        {"mediaType": img.media_type, "digest": img.digest, "size": img.size, "platform": PLATFORMS[arch]}
        for img, arch in zip(images, arches)]}
    if not docker:
        index["annotations"] = {"org.opencontainers.image.created": _ts(build.created)}
    data = _dump(index)
    digest = _sha256(data)
    blobs = tuple(blob for img in images for blob in img.blobs) + ((digest[7:], data),)
    return _Artifact("index", index["mediaType"], digest, len(data), blobs,
                     tuple(img.digest for img in images))


def _signature(ctx: _Context, repo: str, target: _Artifact) -> tuple[str, _Artifact]:
    """A cosign signature of ``target`` as stored by ``cosign sign`` (tag, artifact)."""
    payload = _dump({"critical": {"identity": {"docker-reference": f"{REGISTRY}/{repo}"},
                                  "image": {"docker-manifest-digest": target.digest},
                                  "type": "cosign container image signature"},
                     "optional": None})
    # Shaped like a DER ECDSA-P256 signature; nobody can verify it anyway.
    r = hashlib.sha256(b"r" + payload + str(ctx.seed).encode()).digest()
    s = hashlib.sha256(b"s" + payload + str(ctx.seed).encode()).digest()
    signature = base64.b64encode(b"\x30\x45\x02\x20" + r + b"\x02\x21\x00" + s).decode()
    # cosign builds on an empty image: zero timestamps, empty os/architecture.
    config = _dump({"architecture": "", "created": "0001-01-01T00:00:00Z",
                    "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                    "rootfs": {"type": "layers", "diff_ids": [_sha256(payload)]}, "config": {}})
    manifest = _dump({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": _sha256(config)},
        "layers": [{"mediaType": COSIGN_PAYLOAD, "size": len(payload), "digest": _sha256(payload),
                    "annotations": {COSIGN_SIGNATURE: signature}}],
    })
    digest = _sha256(manifest)
    artifact = _Artifact("signature", OCI_MANIFEST, digest, len(manifest),
                         ((_sha256(config)[7:], config), (_sha256(payload)[7:], payload),
                          (digest[7:], manifest)))
    return f"sha256-{target.digest[7:]}.sig", artifact


# --------------------------------------------------------------------------
# History: push times, tags, and the events that make up each repository
# --------------------------------------------------------------------------


def _uniform_times(rng: random.Random, start: datetime, end: datetime, n: int) -> list[datetime]:
    span = max(1, int((end - start).total_seconds()))
    return [start + timedelta(seconds=rng.randrange(span)) for _ in range(n)]


def _push_times(ctx: _Context, spec: RepoSpec, rng: random.Random) -> list[datetime]:
    now, days, hour = ctx.now, timedelta(days=1), timedelta(hours=1)
    n = spec.builds
    if spec.activity == "active":
        # Active repositories push in every window between snapshots, and the
        # last push lands 6+ hours before the final snapshot (room for retags).
        windows = [(ctx.times[e - 1] + hour, ctx.times[e] - (6 * hour if e == EPOCHS - 1 else hour))
                   for e in range(1, EPOCHS)]
        per_window = max(1, min(3, n // 15))
        start = now - rng.randint(240, 720) * days
        times = _uniform_times(rng, start, ctx.times[0] - hour, n - per_window * len(windows))
        for lo, hi in windows:
            times += _uniform_times(rng, lo, hi, per_window)
    elif spec.activity == "slow":
        end = now - rng.randint(21, 150) * days
        times = _uniform_times(rng, now - rng.randint(300, 720) * days, end, n)
    elif spec.activity == "stale":
        end = now - rng.randint(400, 640) * days
        times = _uniform_times(rng, max(now - 729 * days, end - rng.randint(30, 300) * days), end, n)
    elif spec.activity == "new":
        times = _uniform_times(rng, ctx.times[-2] + hour, now - 6 * hour, n)
    else:
        raise ValueError(f"unknown activity {spec.activity!r} for {spec.path}")
    return sorted(times)


class _Tagger:
    """Tag names for successive builds of one repository.

    Schemes: ``semver`` (1.4.2), ``vsemver`` (v1.4.2), ``semver-float``
    (1.4.2 plus moving 1.4 and 1), ``date`` (2025.03.14, -2 on a second push
    that day), ``ci`` (main-<n> plus git-<sha7>), ``sha40`` (the commit sha),
    ``sha7`` (git-<sha7>), ``latest`` (only latest, every push overwrites it).
    """

    def __init__(self, spec: RepoSpec, rng: random.Random):
        self.spec, self.rng = spec, rng
        self.version = (rng.randint(0, 3), rng.randint(0, 12), rng.randint(0, 5))
        self.build_number = rng.randint(100, 3000)
        self.candidate: tuple[int, int, int] | None = None
        self.rc_number = 0
        self.releases = 0
        self.dates: dict[str, int] = {}

    def _bump(self) -> tuple[int, int, int]:
        major, minor, patch = self.version
        roll = self.rng.random()
        if roll < 0.04:
            return (major + 1, 0, 0)
        if roll < 0.24:
            return (major, minor + 1, 0)
        return (major, minor, patch + 1)

    def _semver(self) -> tuple[tuple[int, int, int], int | None]:
        """Next version, and its rc number if this build is a release candidate."""
        if self.candidate is not None:
            if self.rng.random() < 0.5:
                self.rc_number += 1
                return self.candidate, self.rc_number
            version, self.candidate = self.candidate, None
            return version, None
        version = self._bump()
        if "rc" in self.spec.flags and version[2] == 0 and self.rng.random() < 0.7:
            self.candidate, self.rc_number = version, 1
            return version, 1
        return version, None

    def next(self, when: datetime, revision: str) -> tuple[str, list[str], bool]:
        """(primary tag, all tags, is a release) for the next build."""
        scheme, extra = self.spec.scheme, []
        release = True
        if scheme in ("semver", "vsemver", "semver-float"):
            version, rc = self._semver()
            text = ".".join(map(str, version))
            primary = ("v" if scheme == "vsemver" else "") + text + (f"-rc.{rc}" if rc else "")
            release = rc is None
            if release:
                self.version = version
                if scheme == "semver-float":
                    extra = [f"{version[0]}.{version[1]}", f"{version[0]}"]
        elif scheme == "date":
            day = when.strftime("%Y.%m.%d")
            self.dates[day] = self.dates.get(day, 0) + 1
            primary = day if self.dates[day] == 1 else f"{day}-{self.dates[day]}"
        elif scheme == "ci":
            self.build_number += self.rng.randint(1, 5)  # not every pipeline run pushes
            primary, extra = f"main-{self.build_number}", [f"git-{revision[:7]}"]
        elif scheme == "sha40":
            primary = revision
        elif scheme == "sha7":
            primary = f"git-{revision[:7]}"
        elif scheme == "latest":
            return "latest", ["latest"], True
        else:
            raise ValueError(f"unknown tag scheme {scheme!r} for {self.spec.path}")
        tags = [primary, *extra]
        if release:
            self.releases += 1
            if "nolatest" not in self.spec.flags:
                tags.append("latest")
            if "stable" in self.spec.flags and self.releases % 3 == 1:
                tags.append("stable")
        return primary, tags, release


class _History:
    """Accumulates one repository's events in the order they were decided."""

    def __init__(self) -> None:
        self.events: list[_Event] = []

    def add(self, when: datetime, artifact: _Artifact | None, tags, primary=None, release=False) -> None:
        self.events.append(_Event(when, len(self.events), artifact, tuple(tags), primary, release))

    def sorted(self) -> list[_Event]:
        return sorted(self.events, key=lambda e: (e.time, e.seq))


def _replay(events: list[_Event], until: datetime) -> tuple[dict[str, _Artifact], dict[str, _Artifact]]:
    """Artifacts ever pushed (by digest, push order) and live tags at ``until``."""
    pushed: dict[str, _Artifact] = {}
    tags: dict[str, _Artifact] = {}
    for event in events:
        if event.time > until:
            break
        if event.artifact is None:
            for tag in event.tags:
                tags.pop(tag, None)
        else:
            pushed.setdefault(event.artifact.digest, event.artifact)
            for tag in event.tags:
                tags[tag] = event.artifact
    return pushed, tags


def _sign(ctx: _Context, history: _History, spec: RepoSpec, when: datetime, artifact: _Artifact) -> None:
    tag, signature = _signature(ctx, spec.path, artifact)
    history.add(when + timedelta(seconds=45), signature, [tag])


def _built_events(ctx: _Context, spec: RepoSpec) -> list[_Event]:
    """History of a repository that builds its own images."""
    rng = ctx.rng("repo", spec.path)
    history = _History()
    tagger = _Tagger(spec, rng)
    lag = timedelta(days=rng.choice((0, 0, 7, 21, 45, 90)))  # how far behind base releases the team runs
    signing_since = ctx.now - timedelta(days=rng.randint(120, 300))
    keep = int(spec.option("keep") or 0)
    retained: deque[list[str]] = deque()
    profile = PROFILES[spec.base]
    generations = [0] * len(profile.layers)
    base_release = -1
    for number, pushed in enumerate(_push_times(ctx, spec, rng)):
        revision = hashlib.sha1(f"{ctx.seed}/{spec.path}/{number}".encode()).hexdigest()
        created = pushed - timedelta(minutes=rng.randint(2, 40))
        release = ctx.release_at(spec.base, created - lag)
        rebased = release != base_release
        base_release = release
        for i, (_lo, _hi, churn, _by) in enumerate(profile.layers):
            if rebased or churn >= 1 or rng.random() < churn:
                generations[i] += 1
        primary, tags, is_release = tagger.next(pushed, revision)
        build = _Build(spec, number, created, primary, revision, release, tuple(generations))
        artifact = _build_artifact(ctx, build)
        history.add(pushed, artifact, tags, primary, is_release)
        if "signed" in spec.flags and pushed >= signing_since:
            _sign(ctx, history, spec, pushed, artifact)
        if keep:
            retained.append([t for t in tags if t not in ("latest", "stable")])
            while len(retained) > keep:
                history.add(pushed + timedelta(seconds=30), None, retained.popleft())
    if "prune" in spec.flags:
        _prune(ctx, history, rng)
    if "rollback" in spec.flags:
        _rollback(ctx, history)
    return history.sorted()


def _prune(ctx: _Context, history: _History, rng: random.Random) -> None:
    """Between each pair of snapshots, delete a few of the oldest version tags."""
    for e in range(1, EPOCHS):
        when = _uniform_times(rng, ctx.times[e - 1], ctx.times[e], 1)[0]
        events = history.sorted()
        pushed, tags = _replay(events, when)
        order = {digest: i for i, digest in enumerate(pushed)}
        versions = {event.primary for event in events if event.primary}
        floating = {tags[t].digest for t in ("latest", "stable") if t in tags}
        candidates = sorted((order[a.digest], tag) for tag, a in tags.items()
                            if tag in versions and a.digest not in floating)
        doomed = [tag for _, tag in candidates[: rng.randint(2, 4)]]
        if doomed:
            history.add(when, None, doomed)


def _rollback(ctx: _Context, history: _History) -> None:
    """Just before the last snapshot, move ``stable`` back to an older digest.

    The target predates what ``stable`` showed at the previous snapshot, so
    comparing the last two snapshots exposes a tag that went backwards.
    """
    targets = [event.artifact for event in history.sorted()
               if event.time <= ctx.times[-2] and event.artifact and "stable" in event.tags]
    if len(targets) >= 2:
        history.add(ctx.now - timedelta(hours=3), targets[-2], ["stable"])


def _copied_events(ctx: _Context, spec: RepoSpec, source: list[_Event]) -> list[_Event]:
    """History of a mirror or a promotion target: the source's bytes, re-tagged."""
    rng = ctx.rng("repo", spec.path)
    history = _History()
    mirror = spec.option("mirror") is not None
    since = ctx.now - timedelta(days=rng.randint(150, 250)) if mirror else None
    for event in source:
        if event.artifact is None or event.artifact.kind == "signature" or not event.release:
            continue
        if mirror and event.time >= since:
            when = event.time + timedelta(hours=2, minutes=rng.randint(0, 59))
            history.add(when, event.artifact, [event.primary, "latest"], event.primary, True)
        elif not mirror and "stable" in event.tags:
            when = event.time + timedelta(hours=rng.randint(4, 48))
            history.add(when, event.artifact, [event.primary, "prod"], event.primary, True)
            if "signed" in spec.flags:
                _sign(ctx, history, spec, when, event.artifact)
    return history.sorted()


def _estate_events(ctx: _Context) -> dict[str, list[_Event]]:
    """Every repository's full history, in table order."""
    specs = {spec.path: spec for spec in REPO_SPECS}
    done: dict[str, list[_Event]] = {}

    def events_of(path: str) -> list[_Event]:
        if path not in done:
            spec = specs[path]
            source = spec.option("mirror") or spec.option("promote")
            done[path] = _copied_events(ctx, spec, events_of(source)) if source else _built_events(ctx, spec)
        return done[path]

    return {path: events_of(path) for path in specs}


# --------------------------------------------------------------------------
# Writing layouts
# --------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    # A crash must not leave a truncated blob that a later run trusts by name.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_layout(path: Path, pushed: dict[str, _Artifact], tags: dict[str, _Artifact]) -> None:
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
        _write_atomic(layout, _dump({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": a.media_type, "digest": a.digest, "size": a.size, "annotations": {REF_NAME: tag}}
        for tag, a in sorted(tags.items())]}
    _write_atomic(path / "index.json", (json.dumps(index, indent=2) + "\n").encode())


def epoch_times(as_of: date) -> list[datetime]:
    """When each epoch's snapshot is taken: a week apart, the last on ``as_of``, 06:00 UTC."""
    return [datetime.combine(as_of - (EPOCHS - 1 - e) * EPOCH_SPACING, time(SNAPSHOT_HOUR), tzinfo=timezone.utc)
            for e in range(EPOCHS)]


def generate_estate(root: Path, *, epoch: int = EPOCHS - 1, as_of: date | None = None,
                    seed: int = DEFAULT_SEED) -> EstateSummary:
    """Write (or bring forward) the demo estate's OCI layouts under ``root`` as of ``epoch``."""
    if not 0 <= epoch < EPOCHS:
        raise ValueError(f"epoch must be in 0..{EPOCHS - 1}, got {epoch}")
    if as_of is None:
        as_of = datetime.now(timezone.utc).date()
    root = Path(root)
    ctx = _Context(seed, as_of)
    until = ctx.times[epoch]
    repositories = tag_count = manifests = indexes = signatures = 0
    for path, events in _estate_events(ctx).items():
        pushed, tags = _replay(events, until)
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
