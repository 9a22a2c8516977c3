"""The demo's Trivy reports and pod listing: deterministic, valid, and telling a risk story."""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict

import pytest

import repoaudit
from repoaudit.demo.estate import REGISTRY, REPO_SPECS
from repoaudit.demo.scans import SKIPPED_REPOSITORIES, write_demo_scans
from repoaudit.ingest.scans import load_report
from repoaudit.ingest.pods import load_pods, workloads_from_pods

VULN_ID = re.compile(r"^(CVE-\d{4}-\d{4,}|TEMP-\d{7}-[0-9A-F]{6})$")


@pytest.fixture(scope="module")
def generated(demo_db, tmp_path_factory):
    """The demo database copied, scans written and ingested into the copy."""
    root = tmp_path_factory.mktemp("demo-scans")
    db = root / "demo.duckdb"
    shutil.copy(demo_db, db)
    with repoaudit.open(db) as audit:
        reports, pods = write_demo_scans(audit, root / "out")
        scans = audit.ingest("trivy", reports)
        workloads = audit.ingest("pods", pods, cluster="demo")
    return {"db": db, "root": root, "reports": reports, "pods": pods, "scans": scans, "workloads": workloads}


@pytest.fixture
def audit(generated):
    with repoaudit.open(generated["db"], read_only=True) as a:
        yield a


def test_output_is_deterministic(generated, demo_db, tmp_path):
    with repoaudit.open(demo_db, read_only=True) as audit:
        reports, pods = write_demo_scans(audit.con, tmp_path)
    first = generated["root"] / "out"
    assert [p.relative_to(tmp_path) for p in reports] == [p.relative_to(first) for p in generated["reports"]]
    for mine, theirs in zip(reports, generated["reports"]):
        assert mine.read_bytes() == theirs.read_bytes(), mine
    assert pods.read_bytes() == generated["pods"].read_bytes()


def test_advisory_tables_load(monkeypatch):
    from repoaudit.demo import advisories, pods

    assert sum(map(len, advisories.CATALOGS.values())) == 131 and len(pods.DEPLOYMENTS) == 43
    log4j = next(a for a in advisories.CATALOGS["JAVA"] if a.id == "CVE-2021-44228")
    assert log4j.packages == ("org.apache.logging.log4j:log4j-core",) and log4j.fixed == "2.15.0, 2.3.1, 2.12.2"
    zlib = next(a for a in advisories.CATALOGS["DEBIAN"] if a.id == "CVE-2023-45853")
    assert (zlib.fixed, zlib.status, zlib.cvss) == (None, "will_not_fix", 9.8)
    header = advisories.data_text("advisories.csv").splitlines()[0]
    monkeypatch.setattr(advisories, "data_text", lambda name: header + "\nDEBIAN,CVE-1,p,1,2,fixed,SEVERE,,2024-01-01,-,t\n")
    with pytest.raises(ValueError, match=r"advisories.csv:2: bad advisory row"):
        advisories._load_catalogs()


def test_reports_are_valid_trivy_json(generated):
    reports = generated["reports"]
    assert len(reports) > 200
    severities: set[str] = set()
    for path in reports:
        raw = json.loads(path.read_text())
        assert raw["SchemaVersion"] == 2 and raw["ArtifactType"] == "container_image"
        scan = load_report(path, "trivy")
        assert scan.config_digest and scan.scanned_at is not None
        for row in scan.vulnerabilities:
            assert VULN_ID.match(row["vulnerability_id"]), row
            assert (row["fixed_version"] is not None) == (row["fix_state"] == "fixed"), row
            if row["vulnerability_id"].startswith("CVE-"):
                assert row["published_at"] is not None and row["published_at"] <= scan.scanned_at
            severities.add(row["severity"])
    assert severities == {"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}
    result = generated["scans"]
    assert len(result.scan_ids) + len(result.skipped) == len(reports)
    if result.scan_ids:  # (skipped instead when the demo itself already ingested these very files)
        # Every report of a demo image matches a collected manifest; the two Docker Hub ones cannot.
        public = [p for p in reports if p.parent.name == "public"]
        assert len(public) == 2 and result.unmatched == len(public)


def test_most_images_scanned_some_not(generated, audit):
    scanned = set(audit.sql("SELECT DISTINCT digest FROM latest_image_scan")["digest"])
    images = audit.sql("SELECT DISTINCT repository, digest FROM images WHERE artifact_type IS NULL "
                       "AND registry = $r", {"r": REGISTRY})
    recent = audit.sql("SELECT DISTINCT repository, digest FROM images WHERE artifact_type IS NULL AND registry = $r "
                       "AND created >= (SELECT max(started_at) FROM snapshots) - INTERVAL 30 DAY", {"r": REGISTRY})
    covered = recent["digest"].isin(scanned)
    assert covered.mean() > 0.8 and not covered.all()  # most recent pushes scanned, a few scans failed
    assert images["digest"].isin(scanned).sum() > 200
    for repo in SKIPPED_REPOSITORIES:
        assert not images[images["repository"] == repo]["digest"].isin(scanned).any(), repo
    unscanned = audit.query("unscanned_images")
    assert "ml/triton-custom" in set(unscanned["repository"])
    assert {"never scanned"} <= set(unscanned["reason"])


def test_findings_follow_content(generated):
    """The same digest gets the same findings whichever repository or scan names it."""
    by_digest: dict[str, set] = defaultdict(set)
    for path in generated["reports"]:
        scan = load_report(path, "trivy")
        key = scan.config_digest
        findings = frozenset((v["vulnerability_id"], v["pkg_name"], v["fixed_version"]) for v in scan.vulnerabilities)
        by_digest[key].add(findings)
    repeated = [k for k, v in by_digest.items() if len(v) > 1]
    assert not repeated
    # gateway-prod re-pushes gateway's releases: those scans exist under both names.
    names = defaultdict(set)
    for path in generated["reports"]:
        scan = load_report(path, "trivy")
        names[scan.config_digest].add(scan.repository)
    assert any(names[k] >= {"payments/gateway", "payments/gateway-prod"} for k in names)


def test_pod_listing(generated):
    pods = load_pods(generated["pods"])
    assert json.loads(generated["pods"].read_text())["kind"] == "List"
    rows = workloads_from_pods(pods, "demo")
    refs = [r["image_ref"] for r in rows]
    assert {r["resolved_by"] for r in rows} == {"spec-digest", "status-repo-digest", "status-image-id", "unresolved"}
    assert any(r["pinned_by_digest"] for r in rows) and not all(r["pinned_by_digest"] for r in rows)
    assert {r["registry"] for r in rows} >= {REGISTRY, "index.docker.io", "quay.io", "registry.k8s.io"}
    assert any(r["init"] for r in rows)
    assert {p["status"]["phase"] for p in pods} == {"Running", "Pending", "Succeeded"}
    assert len({(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}) == len(pods)
    deployed_repos = {r["repository"] for r in rows if r["registry"] == REGISTRY}
    assert 20 < len(deployed_repos) < len(REPO_SPECS)  # a subset of the estate
    assert all(ref for ref in refs)
    assert generated["workloads"].pods == len(pods) or generated["workloads"].unchanged


def test_risk_queries_tell_a_story(audit):
    risk = audit.query("risk_exposure")
    scored = risk[risk["scan_id"].notna()]
    assert (scored["exposure"] > 0).sum() > 10
    assert {"digest", "image-id", "via-child"} <= set(scored["matched_by"])
    assert risk["scan_id"].isna().any()  # some running images were never scanned
    # Docker Hub's redis is matched by digest although Docker Hub was never collected.
    assert "library/redis" in set(scored["repository"])

    fixable = audit.query("fixable_critical_deployed")
    assert len(fixable) > 20 and fixable["newer_tag"].notna().any()
    hive = fixable[fixable["repository"] == "data/hive-metastore"]
    assert "CVE-2021-44228" in set(hive["vulnerability_id"])

    moved = audit.query("mutable_tag_deployments")
    assert moved["tag_moved"].fillna(False).astype(bool).any()
    public = audit.query("public_registry_workloads")
    assert {"index.docker.io", "quay.io", "registry.k8s.io"} <= set(public["registry"])
    summary = audit.query("vulnerability_summary", by="namespace")
    assert {"payments", "platform", "data", "web", "ml"} <= set(summary["group_name"])
