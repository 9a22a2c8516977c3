"""The demo estate's tables, read once from the data files in ``repoaudit/demo/data/``.

=====================  ==========================================================
``estate.json``        ``bases`` (public base images and their releases),
                       ``profiles`` (what each team's Dockerfile adds on a base),
                       ``kinds`` (manifest kinds), ``platforms``
``repositories.txt``   one repository a line: base, kind, tag scheme, builds,
                       activity and flags (the file's header explains them)
``advisories.csv``     the scanners' advisory catalogues (:mod:`.advisories`)
``scans.json``         which catalogues each base and profile carries, and what
                       Trivy calls them (:mod:`.advisories`)
``deployments.txt``    the demo cluster's workloads (:mod:`.pods`)
=====================  ==========================================================

The files are data only; the code that turns them into an estate stays in Python.
A typo in a table fails at import, not deep in generation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator

EPOCHS = 3
DEFAULT_SEED = 20261127
EPOCH_SPACING = timedelta(days=7)
SNAPSHOT_HOUR = 6
# Signature payloads name the image by registry reference; the host is fictional.
REGISTRY = "registry.example.com"
SOURCE_HOST = "https://git.example.com"


def data_text(name: str) -> str:
    """The text of ``repoaudit/demo/data/<name>``, from a checkout or an installed wheel."""
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def data_json(name: str) -> Any:
    return json.loads(data_text(name))


def table_rows(name: str) -> Iterator[tuple[str, list[str]]]:
    """(line, whitespace-separated fields) of a ``.txt`` table, skipping blank and ``#`` lines."""
    for line in data_text(name).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.strip(), line.split()


def epoch_times(as_of: date) -> list[datetime]:
    """When each epoch's snapshot is taken: a week apart, the last on ``as_of``, 06:00 UTC."""
    return [datetime.combine(as_of - (EPOCHS - 1 - e) * EPOCH_SPACING, time(SNAPSHOT_HOUR), tzinfo=timezone.utc)
            for e in range(EPOCHS)]


@dataclass(frozen=True)
class Base:
    """A public base image, re-released over time.

    ``ref`` is formatted with ``n`` (release number, from ``first``) and
    ``date`` (YYYYMMDD of the release). Layers are ``(min MB, max MB,
    created_by)``, ``created_by`` formatted with ``h`` (a fake file hash); a
    base with a parent starts with the parent's layers as of its own release
    date, which is how python/node/golang share debian bytes. Release days are
    chosen so that one base release falls between each pair of epochs: images
    pushed in the last epochs use a new base, older ones do not.
    """

    ref: str
    first: int
    parent: str | None
    layers: tuple[tuple[float, float, str], ...]
    released_days_ago: tuple[int, ...]
    env: tuple[str, ...] = ()

    def release_ref(self, release: int, published: date) -> str:
        """The reference of release number ``release`` (from 0), published on ``published``."""
        return self.ref.format(n=self.first + release, date=published.strftime("%Y%m%d"))


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


@dataclass(frozen=True)
class Kind:
    """A manifest kind: Docker media types or OCI, its platforms, one manifest or a multi-platform index."""

    docker: bool
    platforms: tuple[str, ...]
    multi: bool


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


def _tuples(rows: list[list]) -> tuple[tuple, ...]:
    return tuple(tuple(row) for row in rows)


_ESTATE = data_json("estate.json")
BASES: dict[str, Base] = {
    name: Base(b["ref"], b["first"], b["parent"], _tuples(b["layers"]), tuple(b["released_days_ago"]),
               tuple(b.get("env", ())))
    for name, b in _ESTATE["bases"].items()}
PROFILES: dict[str, Profile] = {
    name: Profile(_tuples(p["layers"]), tuple(p["entrypoint"]), p.get("user", "10001"))
    for name, p in _ESTATE["profiles"].items()}
KINDS: dict[str, Kind] = {
    name: Kind(k["docker"], tuple(k["platforms"]), k["multi"]) for name, k in _ESTATE["kinds"].items()}
PLATFORMS: dict[str, dict[str, str]] = _ESTATE["platforms"]


def _parse_repos(name: str = "repositories.txt") -> tuple[RepoSpec, ...]:
    specs = []
    for line, (path, base, kind, scheme, builds, activity, *extra) in table_rows(name):
        flags = frozenset(f for f in extra if "=" not in f)
        options = tuple((key, value) for key, _, value in (f.partition("=") for f in extra if "=" in f))
        spec = RepoSpec(path, base, kind, scheme, 0 if builds == "-" else int(builds),
                        activity, flags, options)
        copied = spec.option("mirror") or spec.option("promote")
        if copied is None and (base not in PROFILES or kind not in KINDS or spec.builds < 1):
            raise ValueError(f"bad row in {name}: {line!r}")
        specs.append(spec)
    known = {spec.path for spec in specs}
    for spec in specs:
        source = spec.option("mirror") or spec.option("promote")
        if source is not None and source not in known:
            raise ValueError(f"{name}: {spec.path} copies unknown repository {source!r}")
    return tuple(specs)


REPO_SPECS = _parse_repos()
NAMESPACES = tuple(dict.fromkeys(spec.namespace for spec in REPO_SPECS))
