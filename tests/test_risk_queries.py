"""The scan and workload queries on a seeded database, against hand-computed answers.

The seed: a real registry (pushed, then collected) holding team/app 1.0 and 1.1 (= latest),
a two-platform index team/multi:2.0, team/legacy:v0.9, team/web:3.0 and a recent
team/new:0.1; Trivy reports written here that name those images in each of the ways a
report can (RepoDigests, a digest in ArtifactName, the image ID only, a platform manifest
of an index, a Docker Hub digest never collected); and one pod listing:

=========  ==============  =====================================  ==================================
namespace  owner           image (spec)                           runs (status)
=========  ==============  =====================================  ==================================
shop       RS app-5d8      team/app:1.0, 3 pods                   app 1.0 (2 Running, 1 Pending)
shop       RS web-7f       team/web:3.0 + init busybox:1.36       web 3.0; busybox by Hub digest
shop       RS cache-9c     redis:7.2, 2 pods                      docker.io/library/redis@R
ops        DS multi        team/multi@<index>, 2 pods             the index
ops        Pod legacy      team/legacy:v0.9                       bare sha256:<legacy config>
ops        RS canary-1a    team/app:latest                        app 1.0 (latest moved to 1.1 since)
=========  ==============  =====================================  ==================================

Findings (severity, fixed?) per scan, newest scan per image:

* app 1.0 (scanned 2025-01-20; an older 2024-12-01 scan has only CVE-B): CVE-A CRITICAL on
  libssl and libcrypto (fixed), CVE-B HIGH zlib (fixed), CVE-C MEDIUM bash (no fix),
  CVE-D LOW tar (fixed), CVE-E UNKNOWN busybox (no fix) → risk 2×10 + 5 + 3 + 1 + 5 = 34;
* app 1.1 (2025-01-30, digest only in ArtifactName): CVE-B HIGH zlib (fixed), CVE-C MEDIUM → 8;
* multi, amd64 child (2024-12-01): CVE-F HIGH openssl (fixed) → 5, covers the index;
* legacy, image ID only (2025-01-25): CVE-G CRITICAL (fixed), CVE-N NEGLIGIBLE → 10;
* redis, Docker Hub digest R (2025-01-28): CVE-H HIGH (fixed) → 5.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

import repoaudit
from pusher import Pusher, layer_bytes
from registry import RegistryServer
from repoaudit.errors import QueryError

AS_OF = datetime(2025, 2, 1)
REDIS = "sha256:" + "7" * 64
BUSYBOX = "sha256:" + "b" * 64


def vuln(vid: str, pkg: str, severity: str, *, fixed: str | None = None, published: str | None = None,
         score: float | None = None) -> dict:
    entry = {"VulnerabilityID": vid, "PkgName": pkg, "InstalledVersion": "1.0", "Severity": severity}
    if fixed:
        entry["FixedVersion"] = fixed
    if published:
        entry["PublishedDate"] = published
    if score is not None:
        entry["CVSS"] = {"nvd": {"V3Score": score}}
    return entry


def report(artifact: str, created_at: str, vulns: list[dict], *, repo_digests: list[str] | None = None,
           image_id: str | None = None) -> dict:
    metadata: dict = {"OS": {"Family": "debian", "Name": "12.5"}}
    if image_id:
        metadata["ImageID"] = image_id
    if repo_digests:
        metadata["RepoDigests"] = repo_digests
    return {"SchemaVersion": 2, "CreatedAt": created_at, "ArtifactName": artifact, "ArtifactType": "container_image",
            "Metadata": metadata, "Results": [{"Target": artifact, "Class": "os-pkgs", "Type": "debian",
                                               "Vulnerabilities": vulns}]}


def pod(namespace: str, name: str, containers: list[tuple[str, str, str | None]], *, owner: tuple[str, str] | None,
        phase: str = "Running", init: list[tuple[str, str, str | None]] = ()) -> dict:
    """containers: (name, spec image, status imageID or None for no status)."""
    meta: dict = {"name": name, "namespace": namespace}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    status: dict = {"phase": phase}
    if any(c[2] for c in containers):
        status["containerStatuses"] = [{"name": c[0], "imageID": c[2]} for c in containers if c[2]]
    if init:
        status["initContainerStatuses"] = [{"name": c[0], "imageID": c[2]} for c in init if c[2]]
    spec: dict = {"containers": [{"name": c[0], "image": c[1]} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c[0], "image": c[1]} for c in init]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


class Seed:
    def __init__(self, tmp: Path):
        self.server = RegistryServer(tmp / "registry")
        self.server.start()
        host = self.host = self.server.host
        with Pusher(self.server.url) as p:
            self.app1 = p.push_image("team/app", ["1.0"], layers=[layer_bytes("app1", 3000)],
                                     created="2024-05-01T00:00:00Z")
            self.app2 = p.push_image("team/app", ["1.1", "latest"], layers=[layer_bytes("app2", 3000)],
                                     created="2025-01-15T00:00:00Z")
            self.amd = p.push_image("team/multi", [], layers=[layer_bytes("amd", 900)], architecture="amd64",
                                    created="2024-11-01T00:00:00Z")
            self.arm = p.push_image("team/multi", [], layers=[layer_bytes("arm", 800)], architecture="arm64",
                                    created="2024-11-01T00:00:00Z")
            self.index = p.push_index("team/multi", ["2.0"], [self.amd, self.arm])
            self.legacy = p.push_image("team/legacy", ["v0.9"], layers=[layer_bytes("legacy", 700)],
                                       created="2023-07-07T07:07:07Z", style="docker")
            self.web = p.push_image("team/web", ["3.0"], layers=[layer_bytes("web", 500)],
                                    created="2024-06-01T00:00:00Z")
            self.new = p.push_image("team/new", ["0.1"], layers=[layer_bytes("new", 400)],
                                    created="2025-01-20T00:00:00Z")
        self.path = tmp / "seed.duckdb"
        with repoaudit.open(self.path) as audit:
            audit.collect(self.server.url, progress=False)
            reports = tmp / "reports"
            reports.mkdir()
            app = f"{host}/team/app"
            docs = {
                "app1-old.json": report(f"{app}:1.0", "2024-12-01T00:00:00Z",
                                        [vuln("CVE-B", "zlib", "HIGH", fixed="1.3")],
                                        repo_digests=[f"{app}@{self.app1.digest}"]),
                "app1.json": report(f"{app}:1.0", "2025-01-20T00:00:00Z", [
                    vuln("CVE-A", "libssl", "CRITICAL", fixed="1.1", published="2024-12-02T00:00:00Z", score=9.8),
                    vuln("CVE-A", "libcrypto", "CRITICAL", fixed="1.1", published="2024-12-02T00:00:00Z", score=9.8),
                    vuln("CVE-B", "zlib", "HIGH", fixed="1.3", published="2024-11-01T12:00:00Z", score=7.5),
                    vuln("CVE-C", "bash", "MEDIUM", score=5.5),
                    vuln("CVE-D", "tar", "LOW", fixed="1.35"),
                    vuln("CVE-E", "busybox", "UNKNOWN"),
                ], repo_digests=[f"{app}@{self.app1.digest}"]),
                "app2.json": report(f"{app}@{self.app2.digest}", "2025-01-30T00:00:00Z", [
                    vuln("CVE-B", "zlib", "HIGH", fixed="1.3", published="2024-11-01T12:00:00Z", score=7.5),
                    vuln("CVE-C", "bash", "MEDIUM", score=5.5),
                ]),
                "multi-amd64.json": report(f"{host}/team/multi:2.0", "2024-12-01T00:00:00Z", [
                    vuln("CVE-F", "openssl", "HIGH", fixed="3.0.15", published="2024-10-10T00:00:00Z", score=8.1),
                ], repo_digests=[f"{host}/team/multi@{self.amd.digest}"], image_id=self.amd.config.digest),
                "legacy.json": report("legacy.tar", "2025-01-25T00:00:00Z", [
                    vuln("CVE-G", "glibc", "CRITICAL", fixed="2.36", published="2023-06-01T00:00:00Z", score=9.1),
                    vuln("CVE-N", "tzdata", "NEGLIGIBLE"),
                ], image_id=self.legacy.config.digest),
                "redis.json": report("redis:7.2", "2025-01-28T00:00:00Z", [
                    vuln("CVE-H", "redis", "HIGH", fixed="7.2.5", published="2025-01-02T00:00:00Z", score=7.0),
                ], repo_digests=[f"redis@{REDIS}"]),
            }
            for name, doc in docs.items():
                (reports / name).write_text(json.dumps(doc))
            audit.ingest("trivy", reports)

            listing = {"apiVersion": "v1", "kind": "List", "items": [
                pod("shop", "app-5d8-a", [("app", f"{app}:1.0", f"{app}@{self.app1.digest}")],
                    owner=("ReplicaSet", "app-5d8")),
                pod("shop", "app-5d8-b", [("app", f"{app}:1.0", f"docker-pullable://{app}@{self.app1.digest}")],
                    owner=("ReplicaSet", "app-5d8")),
                pod("shop", "app-5d8-c", [("app", f"{app}:1.0", None)], owner=("ReplicaSet", "app-5d8"),
                    phase="Pending"),
                pod("shop", "web-7f-a", [("web", f"{host}/team/web:3.0", f"{host}/team/web@{self.web.digest}")],
                    owner=("ReplicaSet", "web-7f"),
                    init=[("migrate", "busybox:1.36", f"docker.io/library/busybox@{BUSYBOX}")]),
                pod("shop", "cache-9c-a", [("redis", "redis:7.2", f"docker.io/library/redis@{REDIS}")],
                    owner=("ReplicaSet", "cache-9c")),
                pod("shop", "cache-9c-b", [("redis", "redis:7.2", f"docker.io/library/redis@{REDIS}")],
                    owner=("ReplicaSet", "cache-9c")),
                pod("ops", "multi-x", [("multi", f"{host}/team/multi@{self.index.digest}",
                                        f"{host}/team/multi@{self.index.digest}")], owner=("DaemonSet", "multi")),
                pod("ops", "multi-y", [("multi", f"{host}/team/multi@{self.index.digest}",
                                        f"{host}/team/multi@{self.index.digest}")], owner=("DaemonSet", "multi")),
                pod("ops", "legacy", [("legacy", f"{host}/team/legacy:v0.9", self.legacy.config.digest)], owner=None),
                pod("ops", "canary-1a-a", [("app", f"{app}:latest", f"{app}@{self.app1.digest}")],
                    owner=("ReplicaSet", "canary-1a")),
            ]}
            (tmp / "pods.json").write_text(json.dumps(listing))
            audit.ingest("pods", tmp / "pods.json", cluster="test")

    def close(self):
        self.server.stop()


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    s = Seed(tmp_path_factory.mktemp("risk"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def audit(seed):
    with repoaudit.open(seed.path, read_only=True) as a:
        yield a


def plain(value):
    """pandas NA/NaN/NaT as None, numpy scalars as Python values."""
    if value is None or (not isinstance(value, (list, tuple, str)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return [tuple(plain(v) for v in row) for row in frame[columns].itertuples(index=False)]


def test_seed_resolution(seed, audit):
    images = audit.sql("SELECT pod, container, digest, digest_source FROM workload_images ORDER BY pod, container")
    got = {(r.pod, r.container): (r.digest, r.digest_source) for r in images.itertuples()}
    assert got[("app-5d8-c", "app")] == (seed.app1.digest, "registry-tag")  # Pending: tag 1.0 in the registry
    assert got[("app-5d8-b", "app")] == (seed.app1.digest, "status-repo-digest")
    assert got[("legacy", "legacy")] == (seed.legacy.digest, "image-id")
    assert got[("multi-x", "multi")] == (seed.index.digest, "spec-digest")
    assert got[("web-7f-a", "migrate")] == (BUSYBOX, "status-repo-digest")
    scans = audit.sql("SELECT digest, matched_by, scanned_at FROM latest_image_scan")
    by_digest = {r.digest: (r.matched_by, r.scanned_at) for r in scans.itertuples()}
    assert by_digest[seed.app1.digest] == ("digest", pd.Timestamp("2025-01-20"))  # the newer of two scans
    assert by_digest[seed.app2.digest][0] == "digest"  # named only in ArtifactName
    assert by_digest[seed.index.digest][0] == "via-child"
    assert seed.arm.digest not in by_digest  # a sibling platform is other content
    assert by_digest[seed.legacy.digest][0] == "image-id"
    assert by_digest[REDIS][0] == "digest"  # never collected, still matched


def test_risk_exposure(seed, audit):
    frame = audit.query("risk_exposure")
    cols = ["repository", "critical", "high", "medium", "low", "unassigned", "negligible", "fixable",
            "fixable_critical_high", "max_cvss", "risk_score", "running_pods", "pods", "namespaces", "exposure"]
    assert rows(frame, cols) == [
        # app 1.0: 2 shop pods Running + canary in ops; the Pending one counts as a pod, not running
        ("team/app", 2, 1, 1, 1, 1, 0, 4, 3, 9.8, 34, 3, 4, 2, 102),
        ("team/legacy", 1, 0, 0, 0, 0, 1, 1, 1, 9.1, 10, 1, 1, 1, 10),
        ("team/multi", 0, 1, 0, 0, 0, 0, 1, 1, 8.1, 5, 2, 2, 1, 10),
        ("library/redis", 0, 1, 0, 0, 0, 0, 1, 1, 7.0, 5, 2, 2, 1, 10),
        ("team/web", None, None, None, None, None, None, None, None, None, None, 1, 1, 1, None),
        ("library/busybox", None, None, None, None, None, None, None, None, None, None, 1, 1, 1, None),
    ]
    assert frame.iloc[0]["digest"] == seed.app1.digest and frame.iloc[2]["matched_by"] == "via-child"
    shop = audit.query("risk_exposure", namespace="shop", include_unscanned=False)
    assert rows(shop, ["repository", "risk_score", "running_pods", "exposure"]) == [
        ("team/app", 34, 2, 68), ("library/redis", 5, 2, 10)]
    assert audit.query("risk_exposure", cluster="elsewhere").empty


def test_fixable_critical_deployed(seed, audit):
    frame = audit.query("fixable_critical_deployed", as_of=AS_OF)
    cols = ["repository", "vulnerability_id", "pkg_name", "severity", "fixed_version", "running_pods",
            "days_since_published", "newer_tag"]
    assert rows(frame, cols) == [
        # CVE-A is gone from app 1.1's scan: 1.1 is the newest fix (preferred over the moving "latest")
        ("team/app", "CVE-A", "libcrypto", "CRITICAL", "1.1", 3, 61, "1.1"),
        ("team/app", "CVE-A", "libssl", "CRITICAL", "1.1", 3, 61, "1.1"),
        ("team/legacy", "CVE-G", "glibc", "CRITICAL", "2.36", 1, 611, None),
        ("team/app", "CVE-B", "zlib", "HIGH", "1.3", 3, 92, None),  # still in 1.1
        ("team/multi", "CVE-F", "openssl", "HIGH", "3.0.15", 2, 114, None),
        ("library/redis", "CVE-H", "redis", "HIGH", "7.2.5", 2, 30, None),
    ]
    assert frame.iloc[0]["newer_digest"] == seed.app2.digest
    critical = audit.query("fixable_critical_deployed", as_of=AS_OF, min_severity="critical")
    assert set(critical["vulnerability_id"]) == {"CVE-A", "CVE-G"}
    low = audit.query("fixable_critical_deployed", as_of=AS_OF, min_severity="LOW")
    assert ("team/app", "CVE-D") in set(zip(low["repository"], low["vulnerability_id"]))
    with pytest.raises(QueryError, match="min_severity must be CRITICAL, HIGH, MEDIUM or LOW"):
        audit.query("fixable_critical_deployed", min_severity="urgent")


def test_unscanned_images(seed, audit):
    frame = audit.query("unscanned_images", as_of=AS_OF)
    cols = ["repository", "deployed", "running_pods", "scan_age_days", "reason"]
    assert rows(frame, cols) == [
        ("team/multi", True, 2, 62, "scan older than 30 days"),  # its amd64 scan is from 2024-12-01
        ("team/web", True, 1, None, "never scanned"),
        ("library/busybox", True, 1, None, "never scanned"),
        ("team/new", False, 0, None, "never scanned"),  # pushed 2025-01-20, within 30 days
    ]
    relaxed = audit.query("unscanned_images", as_of=AS_OF, max_scan_age_days=90, recent_days=5)
    assert list(relaxed["repository"]) == ["team/web", "library/busybox"]


def test_mutable_tag_deployments(seed, audit):
    frame = audit.query("mutable_tag_deployments")
    cols = ["namespace", "owner_kind", "owner_name", "container", "init", "tag", "pods", "running_pods",
            "digest_count", "tag_moved"]
    assert rows(frame, cols) == [
        ("ops", "ReplicaSet", "canary-1a", "app", False, "latest", 1, 1, 1, True),
        ("shop", "ReplicaSet", "app-5d8", "app", False, "1.0", 3, 2, 1, False),
        ("ops", "Pod", "legacy", "legacy", False, "v0.9", 1, 1, 1, False),  # runs it by image ID
        ("shop", "ReplicaSet", "web-7f", "web", False, "3.0", 1, 1, 1, False),
        # Docker Hub was not collected: where the tag points now is unknown
        ("shop", "ReplicaSet", "cache-9c", "redis", False, "7.2", 2, 2, 1, None),
        ("shop", "ReplicaSet", "web-7f", "migrate", True, "1.36", 1, 1, 1, None),
    ]
    assert frame.iloc[0]["tag_digest_now"] == seed.app2.digest
    assert frame.iloc[0]["running_digests"] == seed.app1.digest


def test_public_registry_workloads(seed, audit):
    frame = audit.query("public_registry_workloads")
    assert rows(frame, ["namespace", "owner_name", "container", "registry", "repository", "tag", "running_pods"]) == [
        ("shop", "cache-9c", "redis", "index.docker.io", "library/redis", "7.2", 2),
        ("shop", "web-7f", "migrate", "index.docker.io", "library/busybox", "1.36", 1),
    ]
    # Our own registry counts as public when listed; a subdomain rule does not match a longer name.
    ours = audit.query("public_registry_workloads", public_registries=seed.host)
    assert set(ours["repository"]) == {"team/app", "team/web", "team/multi", "team/legacy"}
    assert audit.query("public_registry_workloads", public_registries="ker.io").empty


def test_vulnerability_summary(seed, audit):
    cols = ["group_name", "images", "scanned_images", "critical", "high", "medium", "low", "unassigned",
            "vulnerabilities", "fixable", "findings", "risk_score", "running_pods"]
    by_repo = audit.query("vulnerability_summary")
    assert rows(by_repo, cols) == [
        (f"{seed.host}/team/app", 1, 1, 1, 1, 1, 1, 1, 5, 3, 6, 34, 3),
        (f"{seed.host}/team/legacy", 1, 1, 1, 0, 0, 0, 0, 2, 1, 2, 10, 1),
        (f"{seed.host}/team/multi", 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 5, 2),
        ("index.docker.io/library/redis", 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 5, 2),
        (f"{seed.host}/team/web", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1),
        ("index.docker.io/library/busybox", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1),
    ]
    by_namespace = audit.query("vulnerability_summary", by="namespace")
    assert rows(by_namespace, ["group_name", "images", "scanned_images", "risk_score", "running_pods"]) == [
        ("ops", 3, 3, 34 + 10 + 5, 4),
        ("shop", 4, 2, 34 + 5, 5),  # the Pending app pod does not run
    ]
    by_team = audit.query("vulnerability_summary", by="team", scope="registry")
    # Every tagged image: app 1.0 (34) and 1.1 (8), multi (5), legacy (10); web and new unscanned.
    assert rows(by_team, ["group_name", "images", "scanned_images", "critical", "high", "findings", "risk_score",
                          "running_pods"]) == [("team", 6, 4, 2, 2, 11, 57, 7)]
    with pytest.raises(QueryError, match="by namespace needs scope deployed"):
        audit.query("vulnerability_summary", by="namespace", scope="registry")
    with pytest.raises(QueryError, match="by must be repository, team or namespace"):
        audit.query("vulnerability_summary", by="cluster")


def test_parameters_are_bound(seed, audit):
    hostile = "x' OR 1=1 --"
    assert audit.query("risk_exposure", namespace=hostile).empty
    assert audit.query("public_registry_workloads", public_registries=hostile).empty
    with pytest.raises(QueryError, match="valid: max_scan_age_days, recent_days, as_of, registry"):
        audit.query("unscanned_images", max_age=3)
