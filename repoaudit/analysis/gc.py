"""``gc preview``: the bytes Distribution 2.8's offline ``garbage-collect`` would free, before it runs.

Read from a storage snapshot (``collect registry-storage:PATH``), which holds what the API cannot
show: every revision link, tagged or not, and every blob in the store with its size. The
mark-and-sweep itself is the ``gc_blobs`` macro of ``views.sql``, written after
``registry/storage/garbagecollect.go`` of Distribution v2.8; the per-repository figures are the
named query ``gc_preview``. Abandoned uploads are counted beside it: the running registry purges
them (``storage.maintenance.uploadpurging``), garbage-collect never touches them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from repoaudit.analysis.queries import get_query
from repoaudit.errors import ConfigError, QueryError
from repoaudit.jobs.job import parse_duration
from repoaudit.loader import load_document
from repoaudit.store.frames import fetch_frame
from repoaudit.store.sql import statements

SQL = statements(__package__, "gc.sql")

DEFAULT_UPLOAD_AGE_HOURS = 168.0  # Distribution's default uploadpurging age


@dataclass
class GCPreview:
    """One registry's preview: ``repositories`` per repository (NULL row: the registry), ``blobs`` freed."""

    registry: str
    snapshot_id: int
    started_at: datetime
    upload_age_hours: float
    repositories: pd.DataFrame
    blobs: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict:
        rows = self.repositories[self.repositories["repository"].isna()]
        if rows.empty:
            return {c: 0 for c in self.repositories.columns if c not in ("registry", "repository")}
        row = rows.iloc[0]
        return {c: int(row[c]) for c in self.repositories.columns if c not in ("registry", "repository")}

    def to_json(self) -> dict:
        return {
            "registry": self.registry, "snapshot_id": self.snapshot_id, "started_at": self.started_at.isoformat(),
            "upload_age_hours": self.upload_age_hours, "totals": self.totals, "warnings": self.warnings,
            "repositories": [{k: (None if pd.isna(v) else (int(v) if k != "repository" else v))
                              for k, v in row.items() if k != "registry"}
                             for row in self.repositories[self.repositories["repository"].notna()]
                             .to_dict("records")],
            "blobs": [{"digest": r["digest"], "size": int(r["size"]), "freed": bool(r["freed"]),
                       "freed_untagged": bool(r["freed_untagged"]),
                       "from_tagged_index": bool(r["from_tagged_index"]), "repositories": list(r["repositories"])}
                      for r in self.blobs.to_dict("records")],
        }


def upload_purging(config: Any, where: str = "registry config") -> tuple[bool, float]:
    """``(enabled, age in hours)`` of a Distribution config's ``storage.maintenance.uploadpurging``.

    Distribution's defaults when the section is absent: enabled, 168h.
    """
    storage = config.get("storage") if isinstance(config, dict) else None
    section = ((storage or {}).get("maintenance") or {}).get("uploadpurging") if isinstance(storage, dict) else None
    if section is None:
        return True, DEFAULT_UPLOAD_AGE_HOURS
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: storage.maintenance.uploadpurging is not a mapping")
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: storage.maintenance.uploadpurging.enabled is not true or false")
    age = section.get("age", "168h")
    try:
        hours = parse_duration(str(age)) / 3600
    except ValueError as exc:
        raise ConfigError(f"{where}: storage.maintenance.uploadpurging.age: {exc}") from None
    return enabled, hours


def upload_purging_file(path: str | Path) -> tuple[bool, float]:
    """:func:`upload_purging` of a registry's ``config.yml``."""
    return upload_purging(load_document(path, kind="config"), str(path))


def gc_preview(con: duckdb.DuckDBPyConnection, registry: str | None = None, *, snapshot: int | None = None,
               upload_age_hours: float = DEFAULT_UPLOAD_AGE_HOURS) -> GCPreview:
    """The preview of one registry's latest storage snapshot (or ``snapshot``)."""
    if upload_age_hours < 0:
        raise QueryError(f"upload age must not be negative, got {upload_age_hours}h")
    found = con.execute(SQL["storage_snapshot"], {"registry": registry, "snapshot": snapshot}).fetchall()
    if not found:
        what = f"snapshot {snapshot}" if snapshot is not None else (f"registry {registry}" if registry else
                                                                   "the database")
        raise QueryError(f"no storage snapshot of {what}: collect one first "
                         "(repoaudit collect registry-storage:PATH --name REGISTRY)")
    if len(found) > 1:
        raise QueryError("storage snapshots of several registries (" + ", ".join(r[1] for r in found) +
                         "); choose one with --registry")
    sid, reg, started_at, options = found[0]
    opts = json.loads(options) if isinstance(options, str) else (options or {})
    warnings = []
    if opts.get("include") or opts.get("exclude") or opts.get("shard"):
        # GC marks from every repository; a snapshot of some of them has not read the others' revisions.
        warnings.append(f"snapshot {sid} read only some repositories (--include/--exclude/--shard): blobs only "
                        "the others hold count as freed; collect the whole storage for an exact preview")
    unreadable = con.execute(SQL["unreadable_revisions"], {"snapshot": sid}).fetchall()
    if unreadable:
        repo, digest, _ = unreadable[0]
        tagged = sum(1 for r in unreadable if r[2])
        warnings.append(f"{len(unreadable)} revision(s) could not be read ({repo}@{digest} first): garbage-collect "
                        "stops at the first manifest it cannot parse, without --delete-untagged always"
                        + (f", with it too ({tagged} tagged)" if tagged else "; with it only if tagged (none is)"))
    bad_names = [r[0] for r in con.execute(SQL["invalid_repository_names"], {"snapshot": sid}).fetchall()]
    if bad_names:
        warnings.append(f"{len(bad_names)} repository directories have names Distribution cannot parse "
                        f"({bad_names[0]!r} first): garbage-collect stops there (failed to parse repo name), "
                        "with or without --delete-untagged")
    no_tags = [r[0] for r in con.execute(SQL["untagged_without_tags_dir"], {"snapshot": sid}).fetchall()]
    if no_tags:
        warnings.append(f"{len(no_tags)} repositories hold revisions but no _manifests/tags directory "
                        f"({no_tags[0]} first): garbage-collect --delete-untagged stops there "
                        "(failed to retrieve tags: repository name not known to registry)")
    q = get_query("gc_preview")
    repositories = fetch_frame(con, q.sql, q.bind({"registry": reg, "snapshot": sid,
                                                   "upload_age_hours": upload_age_hours}))
    blobs = fetch_frame(con, SQL["blobs"], {"snapshot": sid})
    return GCPreview(reg, sid, started_at, upload_age_hours, repositories, blobs, warnings)
