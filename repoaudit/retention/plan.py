"""The result of a retention what-if: :class:`RetentionPlan`, its frames, and the JSON document
``retention apply`` reads (``to_document`` / ``write_json``, with ``plan_sha256`` and an optional
signature from :mod:`repoaudit.retention.signing`). :mod:`repoaudit.retention.engine` builds it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from repoaudit._version import __version__
from repoaudit.errors import ConfigError
from repoaudit.model.output import iso_utc, plain
from repoaudit.model.timestamps import utcnow
from repoaudit.retention.policy import Policy
from repoaudit.retention.signing import plan_digest, sign_document

__all__ = ["PLAN_VERSION", "SUMMARY_COLUMNS", "RetentionPlan"]

PLAN_VERSION = 1

SUMMARY_COLUMNS = ["policy", "format", "candidate_images", "untagged_images", "candidate_tags", "candidate_manifests",
                   "deployed_candidates", "logical_bytes", "reclaimable_bytes", "stored_bytes", "reclaimable_pct",
                   "images_evaluated", "pushed_from_first_seen", "pushed_from_created", "pushed_from_tag"]


class RetentionPlan:
    """A what-if for one or more policies, computed from each registry's latest snapshot.

    DataFrames (built on first access from Arrow tables, so a plan over a million
    tags only pays for what is looked at):

    ``summary``       one row per policy: candidate images (``untagged_images`` of
                      them untagged), tags, manifests deleted (index children
                      included), deployed candidates, ``logical_bytes`` (sum of image
                      sizes), ``reclaimable_bytes`` (unique blobs freed),
                      ``stored_bytes`` (unique blobs the registry holds now, as far
                      as repoaudit has seen);
    ``candidates``    per image to delete: the rule that expired it, push time and
                      its source, size, and ``reclaimable_alone_bytes`` (freed blobs
                      that no other candidate of the plan references);
    ``deletions``     per manifest link to delete: the images and their index children;
    ``by_repository`` / ``by_namespace``: the totals per group; ``reclaimable_bytes``
                      counts a freed blob in every group that deletes a link to it,
                      ``reclaimable_alone_bytes`` only when that group alone does;
    ``freed_blobs``   every blob garbage collection would remove, with its size;
    ``snapshots``     the snapshot each registry was planned from.
    """

    def __init__(self, *, policies: list[Policy], snapshots: pd.DataFrame, summary: pd.DataFrame,
                 tables: dict[str, pa.Table], warnings: list[str], as_of: datetime | None, database: str | None,
                 timings: dict[str, float]):
        self.policies = policies
        self.snapshots = snapshots
        self.summary = summary
        self.warnings = warnings
        self.as_of = as_of
        self.database = database
        self.timings = timings
        self.created_at = utcnow()
        self._tables = tables
        self._frames: dict[str, pd.DataFrame] = {}

    def table(self, name: str) -> pa.Table:
        """One of the plan's frames as an Arrow table (no conversion)."""
        return self._tables[name]

    def _frame(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            raise ConfigError(f"this plan was made with detail=False and has no {name}")
        if name not in self._frames:
            self._frames[name] = self._tables[name].to_pandas()
        return self._frames[name]

    candidates = property(lambda self: self._frame("candidates"))
    deletions = property(lambda self: self._frame("deletions"))
    by_repository = property(lambda self: self._frame("by_repository"))
    by_namespace = property(lambda self: self._frame("by_namespace"))
    freed_blobs = property(lambda self: self._frame("freed_blobs"))

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.policies)
        return f"<RetentionPlan {names}: {int(self.summary['candidate_images'].sum())} candidates>"

    def whatif(self) -> pd.DataFrame:
        """Side by side: one column per policy, one row per measure."""
        if self.summary.empty:
            return pd.DataFrame()
        frame = self.summary.set_index("policy")[
            ["candidate_images", "untagged_images", "candidate_tags", "candidate_manifests", "deployed_candidates",
             "logical_bytes", "reclaimable_bytes", "reclaimable_pct"]].T
        frame.columns.name = None
        return frame

    def _rows(self, name: str, policy: str) -> list[dict]:
        if name not in self._tables:
            raise ConfigError(f"this plan was made with detail=False and has no {name}")
        table = self._tables[name]
        mask = pa.compute.equal(table["policy"], policy)
        return table.filter(mask).drop_columns(["policy"]).to_pylist()

    def to_document(self, *, sign: str | Path | None = None) -> dict:
        """The plan as the JSON document ``repoaudit retention apply`` reads.

        It carries ``plan_sha256`` (see :mod:`repoaudit.retention.signing`) and each policy's
        document, so apply can check that nothing was edited and evaluate the policy
        again; ``sign`` is a key file to add a ``signature`` with.
        """
        snaps = [{"registry": r.registry, "snapshot_id": int(r.snapshot_id), "started_at": plain(r.started_at),
                  "source": r.source, "source_kind": r.source_kind} for r in self.snapshots.itertuples()]
        plans = []
        for policy in self.policies:
            summary = self.summary[self.summary["policy"] == policy.name]
            totals = {k: _whole(plain(v)) if k != "reclaimable_pct" else plain(v)
                      for k, v in summary.drop(columns=["policy", "format"]).iloc[0].items()}
            plans.append({
                "policy": {"name": policy.name, "format": policy.format, "source": policy.source,
                           "sha256": policy.sha256, "rules": [r.describe() for r in policy.rules],
                           "notes": list(policy.notes), "document": _plain_document(policy.raw)},
                "totals": totals,
                "by_repository": self._rows("by_repository", policy.name),
                "by_namespace": self._rows("by_namespace", policy.name),
                "candidates": self._rows("candidates", policy.name),
            })
        doc = {"repoaudit_plan": PLAN_VERSION, "repoaudit_version": __version__,
               "created_at": plain(self.created_at), "database": self.database,
               "as_of": plain(self.as_of) if self.as_of else None, "snapshots": snaps,
               "warnings": list(self.warnings), "plans": plans}
        doc["plan_sha256"] = plan_digest(doc, _json_default)
        if sign is not None:
            doc["signature"] = sign_document(doc, sign, _json_default)
        return doc

    def to_json(self, *, sign: str | Path | None = None) -> str:
        return json.dumps(self.to_document(sign=sign), indent=2, default=_json_default) + "\n"

    def write_json(self, path: str | Path, *, sign: str | Path | None = None) -> Path:
        """Write :meth:`to_document` to ``path`` (what ``retention apply`` reads), signed with the key file
        ``sign`` if given; returns the path."""
        path = Path(path)
        text = self.to_json(sign=sign)  # a bad key fails before anything is written
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _plain_document(raw: Any) -> Any:
    """A policy document as JSON values (YAML may hold dates), or None when the policy was built in code."""
    if raw is None:
        return None
    return json.loads(json.dumps(raw, default=str))


def _whole(value: Any) -> Any:
    """Counts and bytes summed by SQL arrive as floats: 24.0 -> 24."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


