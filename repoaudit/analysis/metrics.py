"""Prometheus metrics for schedulers: node-exporter's textfile collector reads what this writes.

``write_collect_metrics`` writes one set of gauges per registry a ``collect`` run snapshotted,
``write_retention_metrics`` the reclaimable bytes of each policy of a plan. The file is
written atomically (a temporary file beside it, then a rename), as the collector requires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

SNAPSHOT_STATUSES = ("complete", "partial", "failed")


def collect_registry(results: Iterable, unique_bytes: dict[str, int],
                     fixable_critical: dict[str, int] | None = None) -> CollectorRegistry:
    """Gauges for collect results (``CollectResult``); ``unique_bytes`` by registry from the snapshots,
    ``fixable_critical`` the deployed images with a fixable critical finding by registry."""
    reg = CollectorRegistry()
    labels = ["registry"]
    status = Gauge("repoaudit_snapshot_status", "1 for the status of the registry's snapshot of this run, else 0",
                   labels + ["status"], registry=reg)
    snapshot_id = Gauge("repoaudit_snapshot_id", "The id of the snapshot this run wrote", labels, registry=reg)
    duration = Gauge("repoaudit_snapshot_duration_seconds", "Seconds the collection took", labels, registry=reg)
    requests = Gauge("repoaudit_snapshot_requests", "Requests made to the registry", labels, registry=reg)
    errors = Gauge("repoaudit_snapshot_errors", "Errors recorded in the snapshot", labels, registry=reg)
    repositories = Gauge("repoaudit_snapshot_repositories", "Repositories in the snapshot", labels, registry=reg)
    tags = Gauge("repoaudit_snapshot_tags", "Tags in the snapshot", labels, registry=reg)
    unique = Gauge("repoaudit_snapshot_unique_bytes", "Unique bytes reachable from the snapshot's tags",
                   labels, registry=reg)
    finished = Gauge("repoaudit_snapshot_finished_timestamp_seconds", "When the run finished (Unix time)",
                     labels, registry=reg)
    critical = Gauge("repoaudit_deployed_images_fixable_critical",
                     "Images running now (newest pod ingest) whose newest scan has a critical finding with a fix",
                     labels, registry=reg)
    for r in results:
        critical.labels(r.registry).set((fixable_critical or {}).get(r.registry, 0))
        for name in SNAPSHOT_STATUSES:
            status.labels(r.registry, name).set(1 if r.status == name else 0)
        snapshot_id.labels(r.registry).set(r.snapshot_id)
        duration.labels(r.registry).set(round(r.seconds, 3))
        requests.labels(r.registry).set(sum(r.requests.values()))
        errors.labels(r.registry).set(r.errors)
        repositories.labels(r.registry).set(r.repositories)
        tags.labels(r.registry).set(r.tags)
        unique.labels(r.registry).set(int(unique_bytes.get(r.registry) or 0))
        finished.labels(r.registry).set_to_current_time()
    return reg


def retention_registry(plan) -> CollectorRegistry:
    """Gauges for a ``RetentionPlan``: per policy, what it would delete and the bytes it would free."""
    reg = CollectorRegistry()
    labels = ["policy"]
    reclaimable = Gauge("repoaudit_retention_reclaimable_bytes",
                        "Bytes garbage collection would free after the policy's deletions", labels, registry=reg)
    candidates = Gauge("repoaudit_retention_candidate_images", "Images the policy would delete", labels,
                       registry=reg)
    stored = Gauge("repoaudit_retention_stored_bytes", "Bytes stored in the evaluated snapshots", labels,
                   registry=reg)
    deployed = Gauge("repoaudit_retention_deployed_candidates", "Candidates running in a cluster now", labels,
                     registry=reg)
    for row in plan.summary.itertuples():
        reclaimable.labels(row.policy).set(int(row.reclaimable_bytes))
        candidates.labels(row.policy).set(int(row.candidate_images))
        stored.labels(row.policy).set(int(row.stored_bytes))
        deployed.labels(row.policy).set(int(row.deployed_candidates))
    return reg


def write_metrics(path: str | Path, registry: CollectorRegistry) -> Path:
    """Write ``registry`` in the Prometheus text format to ``path`` atomically (temp file, rename)."""
    write_to_textfile(str(path), registry)
    return Path(path)
