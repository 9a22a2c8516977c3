"""``repoaudit demo``: the main job on a built-in estate.

Generates the synthetic estate of :mod:`repoaudit.demo.estate` one epoch at a
time, collecting a snapshot after each, so the demo database holds history
(pushes, moved tags, deleted tags) exactly as scheduled runs would record it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Callable

from repoaudit.audit import Audit
from repoaudit.demo.estate import EPOCHS, generate_estate
from repoaudit.demo.estate import REGISTRY as DEMO_REGISTRY
from repoaudit.demo.posture import posture_lines, repush_release_tag
from repoaudit.demo.scans import write_demo_scans
from repoaudit.demo.supply import add_supply_artifacts, echo_supply_chain, trusted_key
from repoaudit.model.formatting import human_bytes
from repoaudit.retention.whatif import default_policies_dir, demo_whatif, whatif_table


def run_demo(directory: str | Path = "data/demo", db: str | Path | None = None, *, progress: bool = True,
             echo: Callable[[str], None] = print, as_of: date | None = None) -> Path:
    """Build the demo estate under ``directory``, collect it into ``db`` (recreated) and print the answers."""
    directory = Path(directory)
    db = Path(db) if db else directory / "repoaudit-demo.duckdb"
    directory.mkdir(parents=True, exist_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in (db, Path(f"{db}.wal")):
        if stale.exists():
            stale.unlink()
    estate = directory / "estate"
    with Audit(db) as audit:
        for epoch in range(EPOCHS):
            summary = generate_estate(estate, epoch=epoch, as_of=as_of)
            if epoch == EPOCHS - 2:  # a release tag re-pushed for one epoch (demo/posture.py)
                repush_release_tag(estate)
            if epoch == EPOCHS - 1:
                add_supply_artifacts(estate)  # SBOMs and copied signatures (demo/supply.py)
            result = audit.collect(f"oci:{estate}", name=DEMO_REGISTRY, started_at=summary.snapshot_time,
                                   progress=progress, verify_keys=[trusted_key()])
            echo(f"epoch {epoch} ({summary.snapshot_time:%Y-%m-%d}): snapshot {result.snapshot_id} {result.status}, "
                 f"{result.repositories} repositories, {result.tags} tags, {result.new_manifests} new manifests")
        # Scanner reports and a pod listing for the latest snapshot, as a cluster would provide them.
        reports, pods = write_demo_scans(audit, directory / "scans")
        echo(audit.ingest("trivy", reports).summary())
        echo(audit.ingest("pods", pods, cluster="demo").summary())
        snaps = audit.query("snapshots", registry=DEMO_REGISTRY)
        repos = audit.query("repository_summary", registry=DEMO_REGISTRY)
        shared = audit.query("shared_layers", registry=DEMO_REGISTRY)
        latest = snaps.iloc[0]
        echo("")
        echo(f"demo registry {DEMO_REGISTRY}: {latest['repository_count']} repositories, {latest['tag_count']} tags, "
             f"{latest['manifest_count']} manifests, {human_bytes(latest['unique_bytes'])} unique")
        logical = repos["logical_bytes"].sum()
        echo(f"logical bytes (every repository counted alone) {human_bytes(logical)}; "
             f"shared layers save {human_bytes(shared['bytes_saved'].sum())} across {len(shared)} layers")
        echo("largest repositories by unique bytes:")
        for row in repos.head(5).itertuples():
            echo(f"  {row.repository:<32} {row.tags:>4} tags {row.images:>4} images {human_bytes(row.unique_bytes):>10}")
        echo_supply_chain(audit, echo)
        echo("")
        echo("retention what-if of the example policies in data/policies (reclaimable = what GC really frees):")
        echo(whatif_table(demo_whatif(audit)))
        echo("")
        for line in posture_lines(audit):
            echo(line)
        written = write_outputs(audit, directory)
    echo("")
    echo(f"demo estate: {estate}")
    echo(f"demo database: {db}")
    for label, path in written:
        echo(f"{label}: {path}")
    echo(f"try: repoaudit queries; repoaudit query repository_summary --db {db}")
    return db


# The CSV summaries the demo leaves beside its report: (file name, named query).
CSV_SUMMARIES = [("snapshots.csv", "snapshots"), ("repository_summary.csv", "repository_summary"),
                 ("snapshot_diff.csv", "snapshot_diff"), ("risk_exposure.csv", "risk_exposure"),
                 ("unscanned_images.csv", "unscanned_images"), ("vulnerability_summary.csv", "vulnerability_summary"),
                 ("stale_images.csv", "stale_images"), ("stale_namespaces.csv", "stale_namespaces")]


def write_outputs(audit: Audit, directory: Path) -> list[tuple[str, Path]]:
    """The report and CSV summaries, as a scheduled run would publish them."""
    from repoaudit.analysis.report import write_report

    policies = sorted(default_policies_dir().iterdir())
    out = [("report", write_report(audit, directory / "report.html", policies=policies))]
    out.append(("markdown summary", write_report(audit, directory / "report.md", fmt="md", policies=policies)))
    for name, query in CSV_SUMMARIES:
        path = directory / "csv" / name
        audit.export_csv(query, path)
        out.append((f"csv {query}", path))
    return out
