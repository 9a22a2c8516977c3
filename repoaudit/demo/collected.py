"""The demo estate as collected: what the demo scanner and cluster read from the database.

:class:`Estate` holds the latest snapshot's tags, the first snapshot's tags (what
long-running pods started on), index children, and every platform image with
what decides its findings: its base release and how old it is, the repository it
was built from and which generation of its dependency layer it carries. The SQL
is ``collected.sql`` beside this module.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from repoaudit.demo.advisories import OS_FAMILY
from repoaudit.demo.tables import BASES, PROFILES, REPO_SPECS
from repoaudit.store.sql import statements

SQL = statements(__package__, "collected.sql")
# Tags that move from build to build; a report or a pod names an image by a fixed one when it can.
FLOATING = frozenset({"latest", "stable", "prod", "production", "main", "master", "edge", "nightly", "dev"})


def connection(db: Any) -> duckdb.DuckDBPyConnection:
    """The DuckDB connection of an :class:`~repoaudit.audit.Audit`, or ``db`` itself."""
    return db.con if hasattr(db, "con") else db


def _rows(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> list[dict]:
    cursor = con.execute(SQL[name], params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def root_base(base: str | None) -> str:
    """The base an image's base derives from (python-3.12-slim -> debian-bookworm-slim)."""
    while base is not None and BASES[base].parent:
        base = BASES[base].parent
    return base or ""


@dataclass
class Image:
    """One platform manifest of the demo registry with what decides its findings."""

    digest: str
    config_digest: str
    created: datetime
    architecture: str
    size: int
    base: str | None          # BASES key
    base_age: float           # days between the base release and the last snapshot
    os_name: str
    source: str | None        # repository path the image was built from
    profile: str | None       # PROFILES key of that repository
    generation: int = 0
    generations: int = 1


class Estate:
    def __init__(self, con: duckdb.DuckDBPyConnection, registry: str):
        self.registry = registry
        latest = _rows(con, "latest_snapshot", registry=registry)
        if not latest:
            raise ValueError(f"no snapshot of {registry} in the database: run the demo collection first")
        self.snapshot_id = latest[0]["snapshot_id"]
        self.now: datetime = latest[0]["started_at"]
        self.first_snapshot_id = _rows(con, "first_snapshot", registry=registry)[0]["snapshot_id"]
        self.tags = _rows(con, "snapshot_tags", snapshot_id=self.snapshot_id)
        self.first_tags = {(r["repository"], r["tag"]): r["digest"]
                           for r in _rows(con, "snapshot_tag_digests", snapshot_id=self.first_snapshot_id)}
        self.children: dict[str, list[dict]] = defaultdict(list)
        for row in _rows(con, "index_children", registry=registry):
            self.children[row["index_digest"]].append(row)
        self.images = self._images(con)

    def _images(self, con: duckdb.DuckDBPyConnection) -> dict[str, Image]:
        as_of = self.now.date()
        base_refs: dict[str, tuple[str, float]] = {}
        for name, base in BASES.items():
            for release, days in enumerate(base.released_days_ago):
                base_refs[base.release_ref(release, as_of - timedelta(days=days))] = (name, float(days))
        specs = {spec.path: spec for spec in REPO_SPECS}
        layers: dict[str, list[str]] = defaultdict(list)
        for row in _rows(con, "image_layers", registry=self.registry):
            layers[row["manifest_digest"]].append(row["digest"])
        images: dict[str, Image] = {}
        for row in _rows(con, "images", registry=self.registry):
            labels = json.loads(row["labels"]) if row["labels"] else {}
            base_ref = labels.get("org.opencontainers.image.base.name", "")
            source_url = labels.get("org.opencontainers.image.source", "")
            source = source_url.split("://", 1)[-1].split("/", 1)[-1] if source_url else None
            spec = specs.get(source) if source else None
            base, age = base_refs.get(base_ref, (spec.base if spec else None, None))
            created = row["created"] or self.now
            if age is None:
                age = max(0.0, (self.now - created).total_seconds() / 86400)
            family = OS_FAMILY.get(root_base(base), "debian")
            images[row["digest"]] = Image(row["digest"], row["config_digest"], created, row["architecture"] or "amd64",
                                          row["total_size"] or 0, base, age, _os_name(family, base_ref, age),
                                          source, spec.base if spec else None)
        # Dependency generations: images of one source and platform whose first application layer
        # is the same byte-identical dependency layer carry the same libraries.
        groups: dict[tuple, list[Image]] = defaultdict(list)
        for image in images.values():
            if image.source and image.profile:
                groups[(image.source, image.architecture)].append(image)
        for group in groups.values():
            order: dict[str, int] = {}
            for image in group:  # already in created order
                own = layers.get(image.digest, [])
                app = len(PROFILES[image.profile].layers)
                key = own[len(own) - app] if len(own) >= app else image.digest
                image.generation = order.setdefault(key, len(order))
            for image in group:
                image.generations = len(order)
        return images

    def platform_image(self, digest: str) -> Image | None:
        """The image a scanner reads for ``digest``: itself, or an index's linux/amd64 child."""
        if digest in self.images:
            return self.images[digest]
        for child in self.children.get(digest, []):
            if child["architecture"] == "amd64" and child["child_digest"] in self.images:
                return self.images[child["child_digest"]]
        kids = self.children.get(digest, [])
        return self.images.get(kids[0]["child_digest"]) if kids else None


def _os_name(family: str, base_ref: str, age: float) -> str:
    if family == "alpine":
        match = re.search(r"alpine:(\d+\.\d+\.\d+)", base_ref)
        return match.group(1) if match else "3.19.0"
    if family == "ubuntu":
        return "22.04"
    # Debian 12 point releases, older bases on older ones.
    for threshold, name in ((700, "12.5"), (450, "12.10"), (250, "12.11"), (100, "12.12"), (20, "12.13")):
        if age > threshold:
            return name
    return "12.14"

