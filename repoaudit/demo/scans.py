"""Trivy reports and a pod listing for the demo estate, so the demo shows real exposure.

:func:`write_demo_scans` reads a collected demo database (``repoaudit demo``) and writes

* ``trivy/<repository>/<tag>-<date>.json``: ``trivy image -f json`` reports (schema 2) for
  most demo images, the way a registry's scanner produces them: every image pushed in
  the last :data:`SCAN_ON_PUSH_DAYS` days is scanned minutes after its push, the images
  running in the namespaces of :data:`NIGHTLY_RESCAN` are scanned again every night, and
  two public images are scanned by a nightly job of the platform team. Left unscanned:
  repositories the scanner skips (:data:`SKIPPED_REPOSITORIES`, CUDA images that time
  out), images pushed before scanning was switched on, and about one push in thirty
  whose scan failed;
* ``pods.json``: ``kubectl get pods -A -o json`` output (a ``List`` of Pods, as kubectl
  writes it) of one cluster deploying a subset of the estate: by tag (some of which have
  moved since the pods started), by digest, by image ID only (a node runtime that
  reports a bare ``sha256:``), a Pending pod, finished Job pods, init containers, and
  workloads pulling straight from Docker Hub, Quay and registry.k8s.io.

What an image's report finds is a function of its content, so the same digest gets the
same findings in every repository and every run: operating-system findings depend on
how old the image's base release is (read from its ``org.opencontainers.image.base.name``
label), language-package findings on which generation of its dependency layer it
carries (a team that has not touched its lock file keeps its old findings).

The advisories (real CVE records, invented placement) are ``data/advisories.csv``
and the report documents are built by :mod:`.advisories`; the cluster's workloads
are ``data/deployments.txt`` and the pods built by :mod:`.pods`; what they read
from the database is :mod:`.collected`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from repoaudit.demo.advisories import (
    APP_CATALOGS,
    OS_CATALOGS,
    OS_FAMILY,
    PUBLIC_SCANS,
    app_findings,
    os_findings,
    trivy_report,
    trivy_results,
)
from repoaudit.demo.collected import FLOATING, Estate, connection, root_base
from repoaudit.demo.derive import hexdigest
from repoaudit.demo.pods import (
    cluster_pods,
    public_digest,
    public_image_id,
    status_repo,
)
from repoaudit.demo.tables import REGISTRY

__all__ = ["NIGHTLY_RESCAN", "SCAN_ON_PUSH_DAYS", "SKIPPED_REPOSITORIES", "write_demo_scans"]

SCAN_ON_PUSH_DAYS = 120
NIGHTLY_RESCAN = ("payments", "platform", "web", "data")
SKIPPED_REPOSITORIES = frozenset({"ml/training-base", "ml/triton-custom", "platform/build-cache"})


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _tag_for(tags: list[str]) -> str:
    fixed = sorted(t for t in tags if t not in FLOATING)
    return fixed[-1] if fixed else sorted(tags)[0]


def _image_report(estate: Estate, repository: str, tag: str, digest: str, scanned: datetime) -> dict | None:
    image = estate.platform_image(digest)
    if image is None:
        return None
    artifact = f"{estate.registry}/{repository}:{tag}"
    family = OS_FAMILY.get(root_base(image.base), "debian")
    os_catalogs = OS_CATALOGS.get(image.base or "", ())
    app_catalogs = APP_CATALOGS.get(image.profile or "", ())
    os_adv = os_findings(os_catalogs, image.base_age, scanned)
    app_adv = app_findings(app_catalogs, image.source or repository, image.generation, image.generations, scanned)
    results = trivy_results(artifact, family, image.os_name, os_catalogs, app_catalogs, os_adv, app_adv, scanned)
    # Most scans come from the registry's scanner, which names the platform manifest it
    # pulled; one in eight from a CI job scanning a saved image, which knows only its ID.
    with_digest = int(hexdigest("via", repository, digest)[:4], 16) % 8 != 0
    return trivy_report(artifact=artifact, image_ref=artifact, repo_digest=f"{estate.registry}/{repository}@{image.digest}",
                   image_id=image.config_digest, size=image.size, arch=image.architecture, os_family=family,
                   os_name=image.os_name, results=results, scanned=scanned, with_repo_digest=with_digest)


def _write(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def write_demo_scans(db: Any, out_dir: str | Path, *, registry: str = REGISTRY) -> tuple[list[Path], Path]:
    """Write Trivy reports for most demo images and a pod listing that deploys some of them.

    ``db`` is an :class:`~repoaudit.audit.Audit` or a DuckDB connection holding the collected
    demo estate. Returns ``(report_paths, pods_path)``: ingest them with
    ``audit.ingest("trivy", report_paths)`` and ``audit.ingest("pods", pods_path, cluster="demo")``.
    The output depends only on the database, so the same estate always gives the same files.
    ``out_dir/trivy/`` is this function's own output and is replaced on every call.
    """
    con = connection(db)
    estate = Estate(con, registry)
    out = Path(out_dir)
    trivy_dir = out / "trivy"
    if trivy_dir.is_dir():
        # Reports of an earlier run (another as_of) would otherwise linger beside the new ones.
        shutil.rmtree(trivy_dir)
    pods, picks = cluster_pods(estate)
    reports: list[Path] = []
    cutoff = estate.now - timedelta(days=SCAN_ON_PUSH_DAYS)

    by_image: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in estate.tags:
        if row["artifact_type"] is None and row["kind"] in ("image", "index") and not row["tag"].endswith(".sig"):
            by_image[(row["repository"], row["digest"])].append(row["tag"])
    created = {row["digest"]: row["created"] for row in estate.tags}

    # Scan on push.
    for (repository, digest), tags in sorted(by_image.items()):
        when = created.get(digest)
        if repository in SKIPPED_REPOSITORIES or when is None or when < cutoff:
            continue
        if int(hexdigest("failed", repository, digest)[:6], 16) % 30 == 0:
            continue  # the scanner timed out on this push
        scanned = when + timedelta(minutes=3 + int(hexdigest("lag", repository, digest)[:4], 16) % 40)
        if scanned > estate.now:
            scanned = estate.now - timedelta(minutes=1)
        tag = _tag_for(tags)
        report = _image_report(estate, repository, tag, digest, scanned)
        if report is not None:
            reports.append(_write(trivy_dir / repository / f"{_safe(tag)}-{scanned:%Y%m%dT%H%M}.json", report))

    # Nightly rescan of what runs in the opted-in namespaces.
    nightly = estate.now.replace(hour=1, minute=0, second=0, microsecond=0)
    if nightly >= estate.now:
        nightly -= timedelta(days=1)
    deployed: dict[tuple[str, str], str] = {}
    for pod in pods:
        if pod["metadata"]["namespace"] not in NIGHTLY_RESCAN:
            continue
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            for pick in picks:
                if pick.spec_image == container["image"]:
                    deployed.setdefault((pick.repository, pick.digest), pick.tag or _tag_for(
                        by_image.get((pick.repository, pick.digest), ["untagged"])))
    for i, ((repository, digest), tag) in enumerate(sorted(deployed.items())):
        if repository in SKIPPED_REPOSITORIES:
            continue
        scanned = nightly + timedelta(minutes=2 * i, seconds=17)
        report = _image_report(estate, repository, tag, digest, scanned)
        if report is not None:
            reports.append(_write(trivy_dir / repository / f"{_safe(tag)}-nightly-{scanned:%Y%m%dT%H%M}.json", report))

    # The platform team's nightly scan of public images it has not mirrored yet.
    for j, (image, (base, os_name, age, os_catalogs, app_catalogs)) in enumerate(sorted(PUBLIC_SCANS.items())):
        scanned = nightly + timedelta(minutes=90 + j, seconds=3)
        digest = public_digest(image)
        repo = status_repo(image)
        os_adv = os_findings(os_catalogs, age, scanned)
        app_adv = app_findings(app_catalogs, repo, 0, 1, scanned)
        family = OS_FAMILY[base]
        results = trivy_results(image, family, os_name, os_catalogs, app_catalogs, os_adv, app_adv, scanned)
        report = trivy_report(artifact=image, image_ref=image, repo_digest=f"{repo}@{digest}",
                         image_id=public_image_id(image), size=0, arch="amd64", os_family=family, os_name=os_name,
                         results=results, scanned=scanned, with_repo_digest=True)
        reports.append(_write(trivy_dir / "public" / f"{_safe(image)}-{scanned:%Y%m%dT%H%M}.json", report))

    pods_path = _write(out / "pods.json", {"apiVersion": "v1", "items": pods, "kind": "List",
                                            "metadata": {"resourceVersion": ""}})
    return reports, pods_path
