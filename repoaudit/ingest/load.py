"""Storing scan reports and pod listings: one ingest, one transaction.

The parsers (:mod:`repoaudit.ingest.scans`, :mod:`repoaudit.ingest.pods`) read files;
this module decides what is new and writes it:

* every file of an ingest is read and parsed *before* anything is written, so one
  bad file (malformed, truncated, empty, another scanner's report) fails the whole
  ingest with an :class:`IngestError` naming that file and the database unchanged;
* a report is keyed by the sha256 of its bytes: ingesting the same file again, under
  any name, writes nothing;
* a pod listing becomes one *workload snapshot* of a cluster; the cluster's newest
  snapshot is what runs now (``current_workloads``). A listing identical to the
  cluster's newest one is skipped, but going back to an older state is recorded.

Which collected manifest a report covers is not fixed here: the ``scan_coverage``
view matches reports to manifests at query time (by manifest digest in any registry,
by image ID against ``manifests.config_digest``, and across an index and its
platform manifests), so ingest order does not matter.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import duckdb
import pyarrow as pa

from repoaudit.errors import ConfigError, IngestError, StoreError, first_line
from repoaudit.ingest.pods import load_pods, workloads_from_pods
from repoaudit.ingest.scans import SCANNERS, ParsedScan, load_report
from repoaudit.model.reference import parse_reference
from repoaudit.model.timestamps import naive_utc, utcnow
from repoaudit.store.database import insert_arrow

__all__ = ["INGEST_KINDS", "PodIngestResult", "ScanIngestResult", "ingest", "ingest_pods", "ingest_scans"]

INGEST_KINDS = (*SCANNERS, "pods")
DEFAULT_CLUSTER = "default"

_SCAN_SUFFIXES = (".json",)
_POD_SUFFIXES = (".json", ".yaml", ".yml")

_SCAN_COLUMNS: dict[str, pa.DataType] = {
    "scan_id": pa.int64(), "scanner": pa.string(), "scanner_version": pa.string(), "report_format": pa.string(),
    "db_built": pa.timestamp("us"), "scanned_at": pa.timestamp("us"), "artifact_name": pa.string(),
    "image_ref": pa.string(), "image_digest": pa.string(), "config_digest": pa.string(), "registry": pa.string(),
    "repository": pa.string(), "os_family": pa.string(), "os_name": pa.string(), "eosl": pa.bool_(),
    "finding_count": pa.int32(), "source_file": pa.string(), "source_sha256": pa.string(),
    "ingested_at": pa.timestamp("us"),
}
_VULN_COLUMNS: dict[str, pa.DataType] = {
    "scan_id": pa.int64(), "vulnerability_id": pa.string(), "pkg_name": pa.string(), "pkg_type": pa.string(),
    "installed_version": pa.string(), "fixed_version": pa.string(), "fix_state": pa.string(),
    "severity": pa.string(), "cvss_score": pa.float64(), "cvss_vector": pa.string(), "cvss_source": pa.string(),
    "published_at": pa.timestamp("us"), "epss": pa.float64(), "known_exploited": pa.bool_(), "target": pa.string(),
    "class": pa.string(),
}
_WORKLOAD_COLUMNS: dict[str, pa.DataType] = {
    "snapshot_id": pa.int64(), "cluster": pa.string(), "namespace": pa.string(), "pod": pa.string(),
    "owner_kind": pa.string(), "owner_name": pa.string(), "container": pa.string(), "init": pa.bool_(),
    "image_ref": pa.string(), "tag": pa.string(), "registry": pa.string(), "repository": pa.string(),
    "image_digest": pa.string(), "config_digest": pa.string(), "resolved_by": pa.string(),
    "pinned_by_digest": pa.bool_(), "phase": pa.string(), "ingested_at": pa.timestamp("us"),
}


@dataclass
class ScanIngestResult:
    """What one scan ingest did. ``matched`` counts new scans that cover a collected manifest."""

    kind: str
    files: list[str]
    scan_ids: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    findings: int = 0
    matched: int = 0
    severities: dict[str, int] = field(default_factory=dict)

    @property
    def unmatched(self) -> int:
        return len(self.scan_ids) - self.matched

    def summary(self) -> str:
        """A short human summary, as the CLI prints it."""
        sev = ", ".join(f"{k} {v}" for k, v in self.severities.items()) or "none"
        text = (f"{self.kind}: {len(self.files)} file(s), {len(self.scan_ids)} new scan(s), "
                f"{len(self.skipped)} already ingested; {self.findings} findings ({sev}); "
                f"{self.matched} new scan(s) match a collected image, {self.unmatched} do not")
        return text


@dataclass
class PodIngestResult:
    """What one pod-listing ingest did; ``snapshot_id`` is None when the listing was unchanged."""

    cluster: str
    files: list[str]
    snapshot_id: int | None
    pods: int
    containers: int
    resolved: dict[str, int] = field(default_factory=dict)

    @property
    def unchanged(self) -> bool:
        return self.snapshot_id is None

    def summary(self) -> str:
        """A short human summary, as the CLI prints it."""
        if self.unchanged:
            return (f"pods: cluster {self.cluster} unchanged since its last ingest "
                    f"({self.pods} pods, {self.containers} containers); nothing written")
        how = ", ".join(f"{k} {v}" for k, v in sorted(self.resolved.items()))
        return (f"pods: workload snapshot {self.snapshot_id} of cluster {self.cluster}: {self.pods} pods, "
                f"{self.containers} containers ({how})")


# --------------------------------------------------------------------------- files


def _expand(paths: Iterable[str | Path], suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files as given, directories searched recursively for ``suffixes``; sorted, de-duplicated."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in suffixes
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not inside:
                raise IngestError(f"{path}: directory holds no {what} files ({', '.join(suffixes)})")
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            raise IngestError(f"{path}: no such file or directory")
    if not found:
        raise IngestError(f"no {what} files given")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file: {exc.strerror or exc}") from None


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, pa.DataType], rows: list[dict]) -> None:
    insert_arrow(con, table, pa.Table.from_arrays(
        [pa.array([row[name] for row in rows], type=kind) for name, kind in columns.items()], names=list(columns)))


def _in_transaction(con: duckdb.DuckDBPyConnection, write) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        write()
        con.execute("COMMIT")
    except BaseException as exc:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        if isinstance(exc, duckdb.Error):
            raise StoreError(f"ingest failed and was rolled back: {first_line(exc)}") from None
        raise


# --------------------------------------------------------------------------- scans


def ingest_scans(con: duckdb.DuckDBPyConnection, kind: str, paths: Iterable[str | Path] | str | Path
                 ) -> ScanIngestResult:
    """Ingest Trivy, Grype or CycloneDX JSON reports (files, or directories of ``*.json``).

    All files are parsed first; any that cannot be (see :func:`repoaudit.ingest.scans.load_report`)
    raises :class:`IngestError` naming it, before anything is written. New reports are then
    written in one transaction; a report whose sha256 is already stored is skipped.
    """
    if kind not in SCANNERS:
        raise ConfigError(f"unknown scan report kind {kind!r} (expected one of {', '.join(SCANNERS)})")
    files = _expand(paths, _SCAN_SUFFIXES, f"{kind} report")
    parsed: list[tuple[Path, str, ParsedScan]] = []
    seen: set[str] = set()
    result = ScanIngestResult(kind=kind, files=[str(p) for p in files])
    for path in files:
        scan = load_report(path, kind)  # first: it enforces the size limit before the whole file is hashed
        digest = _sha256(path)
        if digest in seen:
            result.skipped.append(str(path))
            continue
        seen.add(digest)
        parsed.append((path, digest, scan))

    def write() -> None:
        known = {row[0] for row in con.execute(
            "SELECT source_sha256 FROM scans WHERE list_contains($shas, source_sha256)",
            {"shas": [d for _, d, _ in parsed] or [""]}).fetchall()}
        now = utcnow()
        scan_rows: list[dict] = []
        vuln_rows: list[dict] = []
        severities: Counter[str] = Counter()
        for path, digest, scan in parsed:
            if digest in known:
                result.skipped.append(str(path))
                continue
            scan_id = con.execute("SELECT nextval('scan_id_seq')").fetchall()[0][0]
            scan_rows.append({
                "scan_id": scan_id, "scanner": scan.scanner, "scanner_version": scan.scanner_version,
                "report_format": kind, "db_built": naive_utc(scan.db_built),
                "scanned_at": naive_utc(scan.scanned_at), "artifact_name": scan.artifact_name,
                "image_ref": scan.image_ref, "image_digest": scan.image_digest, "config_digest": scan.config_digest,
                "registry": scan.registry, "repository": scan.repository, "os_family": scan.os_family,
                "os_name": scan.os_name, "eosl": scan.eosl, "finding_count": len(scan.vulnerabilities),
                "source_file": str(path.resolve()), "source_sha256": digest, "ingested_at": now,
            })
            for vuln in scan.vulnerabilities:
                row = dict(vuln, scan_id=scan_id, published_at=naive_utc(vuln["published_at"]))
                vuln_rows.append(row)
                severities[vuln["severity"]] += 1
            result.scan_ids.append(scan_id)
        _insert(con, "scans", _SCAN_COLUMNS, scan_rows)
        _insert(con, "vulnerabilities", _VULN_COLUMNS, vuln_rows)
        result.findings = len(vuln_rows)
        order = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "NEGLIGIBLE", "UNKNOWN")
        result.severities = {s: severities[s] for s in order if severities[s]}
        if result.scan_ids:
            result.matched = con.execute(
                "SELECT count(DISTINCT c.scan_id) FROM scan_coverage c "
                "JOIN manifests m ON m.digest = c.digest WHERE list_contains($ids, c.scan_id)",
                {"ids": result.scan_ids}).fetchall()[0][0]

    _in_transaction(con, write)
    return result


# --------------------------------------------------------------------------- pods


def _tag_of(image_ref: str | None) -> str | None:
    if not image_ref:
        return None
    try:
        return parse_reference(image_ref).effective_tag
    except ConfigError:
        return None


def ingest_pods(con: duckdb.DuckDBPyConnection, paths: Iterable[str | Path] | str | Path, *,
                cluster: str | None = None, allow_empty: bool = False) -> PodIngestResult:
    """Ingest ``kubectl get pods -o json|yaml`` output (PodList, List or Pod) as one workload snapshot.

    A listing with no containers is refused while the cluster's newest snapshot has some, unless
    ``allow_empty``: retention's protection of running images reads the newest snapshot.

    Several files (say, one per namespace) form one snapshot of ``cluster``; a pod that
    appears in two of them is kept once. The snapshot becomes the cluster's current state.
    If the files are byte-identical to the cluster's newest snapshot, nothing is written.
    """
    cluster = cluster or DEFAULT_CLUSTER
    files = _expand(paths, _POD_SUFFIXES, "pod listing")
    pods: list[dict] = []
    digests: list[str] = []
    seen_pods: set[tuple] = set()
    for path in files:
        listed = load_pods(path)  # first: it enforces the size limit before the whole file is hashed
        digests.append(_sha256(path))
        for pod in listed:
            meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
            key = (meta.get("namespace"), meta.get("name"), meta.get("uid"))
            if key in seen_pods:
                continue
            seen_pods.add(key)
            pods.append(pod)
    try:
        rows = workloads_from_pods(pods, cluster)
    except IngestError as exc:
        raise IngestError(f"{', '.join(map(str, files))}: {exc}") from None
    combined = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    result = PodIngestResult(cluster=cluster, files=[str(p) for p in files], snapshot_id=None,
                             pods=len(pods), containers=len(rows),
                             resolved=dict(Counter(r["resolved_by"] for r in rows)))

    def write() -> None:
        latest = con.execute(
            "SELECT source_sha256, container_count FROM workload_snapshots WHERE cluster = $c "
            "ORDER BY ingested_at DESC, snapshot_id DESC LIMIT 1", {"c": cluster}).fetchall()
        if latest and latest[0][0] == combined:
            return
        # A listing from the wrong kubectl context or namespace is well-formed and empty; taken as the
        # cluster's state it would make every running image look undeployed to `retention apply`.
        if not rows and latest and latest[0][1] and not allow_empty:
            raise IngestError(f"{', '.join(map(str, files))}: the listing holds no containers, but cluster "
                              f"{cluster!r} ran {latest[0][1]:,} at its last ingest; storing it would lift "
                              "retention's protection of running images (pass --allow-empty if the "
                              "cluster really runs nothing now)")
        snapshot_id = con.execute("SELECT nextval('workload_snapshot_id_seq')").fetchall()[0][0]
        now = utcnow()
        con.execute("INSERT INTO workload_snapshots VALUES ($id, $c, $files, $sha, $at, $pods, $containers)",
                    {"id": snapshot_id, "c": cluster, "files": json.dumps([str(p.resolve()) for p in files]),
                     "sha": combined, "at": now, "pods": len(pods), "containers": len(rows)})
        _insert(con, "workloads", _WORKLOAD_COLUMNS,
                [dict(row, snapshot_id=snapshot_id, tag=_tag_of(row["image_ref"]), ingested_at=now) for row in rows])
        result.snapshot_id = snapshot_id

    _in_transaction(con, write)
    return result


def ingest(con: duckdb.DuckDBPyConnection, kind: str, paths: Iterable[str | Path] | str | Path, *,
           cluster: str | None = None, allow_empty: bool = False) -> ScanIngestResult | PodIngestResult:
    """Dispatch on ``kind``: ``trivy``, ``grype``, ``cyclonedx`` or ``pods``."""
    if kind == "pods":
        return ingest_pods(con, paths, cluster=cluster, allow_empty=allow_empty)
    if cluster is not None or allow_empty:
        raise ConfigError(f"--cluster and --allow-empty apply to pod listings, not {kind} reports")
    if kind not in SCANNERS:
        raise ConfigError(f"unknown ingest kind {kind!r} (expected one of {', '.join(INGEST_KINDS)})")
    return ingest_scans(con, kind, paths)
