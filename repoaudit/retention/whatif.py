"""The what-if table: policies side by side (candidates, tags, manifests, logical and reclaimable
bytes), and the demo's what-if of the example policies in data/policies."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute  # noqa: F401 - pa.compute

from repoaudit.errors import ConfigError
from repoaudit.model.formatting import human_bytes
from repoaudit.retention.engine import plan_retention
from repoaudit.retention.plan import RetentionPlan


def whatif_table(plan_or_summary: "RetentionPlan | pd.DataFrame", *, namespaces: pd.DataFrame | None = None) -> str:
    """The side-by-side what-if as text: one column per policy, bytes in human units."""
    summary = plan_or_summary.summary if isinstance(plan_or_summary, RetentionPlan) else plan_or_summary
    if isinstance(plan_or_summary, RetentionPlan) and namespaces is None:
        namespaces = plan_or_summary.by_namespace
    if summary.empty:
        return "(no policies)\n"
    rows = [
        ("candidate images", "candidate_images", str),
        ("  of them untagged", "untagged_images", str),
        ("  of them deployed", "deployed_candidates", str),
        ("tags removed", "candidate_tags", str),
        ("manifests deleted", "candidate_manifests", str),
        ("logical bytes", "logical_bytes", human_bytes),
        ("reclaimable bytes", "reclaimable_bytes", human_bytes),
        ("reclaimable % of stored", "reclaimable_pct", lambda v: f"{v:.1f}%"),
    ]
    table = {"": [label for label, _c, _f in rows]}
    for record in summary.to_dict(orient="records"):
        table[record["policy"]] = [fmt(record[col]) for _l, col, fmt in rows]
    frame = pd.DataFrame(table)
    text = frame.to_string(index=False) + "\n"
    if namespaces is not None and not namespaces.empty:
        pivot = namespaces.pivot_table(index="namespace", columns="policy", values="reclaimable_bytes",
                                       aggfunc="sum", fill_value=0)
        pivot = pivot.reindex(columns=[c for c in summary["policy"] if c in pivot.columns])
        pivot = pivot.loc[pivot.max(axis=1).sort_values(ascending=False).index]
        shown = pivot.map(human_bytes)
        shown.columns.name = None
        shown.index.name = "reclaimable by namespace"
        text += "\n" + shown.to_string() + "\n"
    return text



def default_policies_dir() -> Path:
    """The example policies the demo uses: packaged with the wheel, or ``data/policies`` of a checkout."""
    packaged = Path(str(resources.files("repoaudit"))) / "policies"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "data" / "policies"



def demo_whatif(audit: Any, policies_dir: str | Path | None = None) -> pd.DataFrame:
    """The what-if of every example policy in ``policies_dir`` on ``audit``'s database: one row per policy."""
    directory = Path(policies_dir) if policies_dir else default_policies_dir()
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".yaml", ".yml", ".json"))
    if not files:
        raise ConfigError(f"{directory}: no policy files (.yaml, .yml, .json)")
    return plan_retention(audit.con, files, database=getattr(audit, "path", None), blobs=False,
                          detail=False).summary

