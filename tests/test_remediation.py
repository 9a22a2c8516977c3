"""Remediation lifecycle across scan rounds: vulnerability_lifecycle, remediation_mttr, sla_breaches.

A real registry holds team/app; image A is pushed and collected on 1 March 2025, a rebuilt image B
on 25 March. Three Trivy reports, each the real alpine-310 report of the fixtures
(tests/fixtures/trivy/alpine-310.json) with its dates, artifact and digests adjusted:

=====  ==========  =====  ===================================================================
round  scanned     image  CVE-2019-1549 (libcrypto1.1 and libssl1.1, MEDIUM)
=====  ==========  =====  ===================================================================
1      2025-03-02  A      present, no fixed version yet (Status affected)
2      2025-03-12  A      present, fixed in 1.1.1d-r0
3      2025-03-26  B      gone (the rebuild upgraded OpenSSL); CVE-2019-1551 is still there
=====  ==========  =====  ===================================================================

So CVE-2019-1549 was first seen on 2 March, had a fix from 12 March and was fixed by B's push on
25 March: 23 days open, 13 of them with a fix available. CVE-2019-1551 (fixed version known from
round 1) stays open. A keeps running in a pod: past the 90-day MEDIUM target it is a breach.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest
from conftest import FIXTURES
from pusher import Pusher, layer_bytes
from registry import RegistryServer

import repoaudit
from repoaudit.errors import QueryError

T_A, T_B = datetime(2025, 3, 1), datetime(2025, 3, 25)
SOURCE = json.loads((FIXTURES / "trivy" / "alpine-310.json").read_text())
PKGS = ["libcrypto1.1", "libssl1.1"]


def trivy_round(artifact: str, repo_digest: str, image_id: str, scanned: str, *, fix_1549: bool,
                has_1549: bool) -> dict:
    doc = copy.deepcopy(SOURCE)
    doc["CreatedAt"] = scanned
    doc["ArtifactName"] = artifact
    doc["Metadata"]["RepoTags"] = [artifact]
    doc["Metadata"]["RepoDigests"] = [repo_digest]
    doc["Metadata"]["ImageID"] = image_id
    vulns = []
    for v in doc["Results"][0]["Vulnerabilities"]:
        if v["VulnerabilityID"] == "CVE-2019-1549":
            if not has_1549:
                continue
            if not fix_1549:
                v.pop("FixedVersion")
                v["Status"] = "affected"
        vulns.append(v)
    doc["Results"][0]["Vulnerabilities"] = vulns
    return doc


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remediation")
    server = RegistryServer(tmp / "registry")
    server.start()
    try:
        db = tmp / "r.duckdb"
        host = server.host
        with Pusher(server.url) as pusher, repoaudit.open(db) as audit:
            a = pusher.push_image("team/app", ["3.10.2", "latest"], layers=[layer_bytes("A", 900)],
                                  created="2025-02-27T00:00:00Z")
            audit.collect(server.url, started_at=T_A, progress=False, posture=False)
            b = pusher.push_image("team/app", ["3.10.3", "latest"], layers=[layer_bytes("B", 900)],
                                  created="2025-03-24T00:00:00Z")
            audit.collect(server.url, started_at=T_B, progress=False, posture=False)
            reports = tmp / "reports"
            reports.mkdir()
            rounds = [("1.json", a, "3.10.2", "2025-03-02T00:00:00Z", False, True),
                      ("2.json", a, "3.10.2", "2025-03-12T00:00:00Z", True, True),
                      ("3.json", b, "3.10.3", "2025-03-26T00:00:00Z", True, False)]
            for name, image, tag, scanned, fix, has in rounds:
                doc = trivy_round(f"{host}/team/app:{tag}", f"{host}/team/app@{image.digest}", image.config.digest,
                                  scanned, fix_1549=fix, has_1549=has)
                (reports / name).write_text(json.dumps(doc))
            audit.ingest("trivy", reports)
            pods = {"apiVersion": "v1", "kind": "List", "items": [{
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app-1", "namespace": "shop"},
                "spec": {"containers": [{"name": "app", "image": f"{host}/team/app:3.10.2"}]},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "app", "imageID": f"{host}/team/app@{a.digest}"}]}}]}
            (tmp / "pods.json").write_text(json.dumps(pods))
            audit.ingest("pods", tmp / "pods.json", cluster="prod")
        yield db, a, b
    finally:
        server.stop()


def test_lifecycle_first_seen_fix_available_fixed_and_days_open(seeded):
    db, a, b = seeded
    with repoaudit.open(db, read_only=True) as audit:
        life = audit.query("vulnerability_lifecycle", as_of="2025-04-01")
    fixed = life[life["vulnerability_id"] == "CVE-2019-1549"].sort_values("pkg_name")
    assert list(fixed["pkg_name"]) == PKGS
    for row in fixed.itertuples():
        assert row.status == "fixed"
        assert row.first_seen == datetime(2025, 3, 2)
        assert row.fix_available_at == datetime(2025, 3, 12)
        assert row.last_seen == datetime(2025, 3, 12)
        assert row.fixed_at == T_B  # B's push: the snapshot that first saw it
        assert row.fixed_by_digest == b.digest
        assert (row.days_open, row.days_since_fix_available) == (23, 13)
        assert row.fixed_version == "1.1.1d-r0" and row.images == 1 and row.namespace == "team"
    still = life[life["vulnerability_id"] == "CVE-2019-1551"]
    assert list(still["status"]) == ["open", "open"]
    assert set(still["days_open"]) == {30}  # 2 March to as_of 1 April
    assert set(still["images"]) == {2}


def test_lifecycle_before_the_rebuild_is_open(seeded):
    db, _, _ = seeded
    with repoaudit.open(db, read_only=True) as audit:
        life = audit.query("vulnerability_lifecycle", as_of="2025-03-20", status="open")
    # The third round had not run: nothing newer without the finding, so all four are open.
    assert len(life) == 4 and set(life["status"]) == {"open"}
    row = life[(life["vulnerability_id"] == "CVE-2019-1549") & (life["pkg_name"] == "libssl1.1")].iloc[0]
    assert row["days_open"] == 18 and row["days_since_fix_available"] == 8


def test_mttr(seeded):
    db, _, _ = seeded
    with repoaudit.open(db, read_only=True) as audit:
        trend = audit.query("remediation_mttr", as_of="2025-04-01")
        overall = audit.query("remediation_mttr", as_of="2025-04-01", by_month=False)
    assert trend[["severity", "namespace", "fixed", "mttr_days", "mttr_from_fix_days"]].values.tolist() == [
        ["MEDIUM", "team", 2, 23.0, 13.0]]
    assert trend["month"].iloc[0] == datetime(2025, 3, 1)
    assert overall[["severity", "namespace", "fixed", "open"]].values.tolist() == [["MEDIUM", "team", 2, 2]]


def test_sla_breaches_of_an_image_still_running(seeded):
    db, a, _ = seeded
    with repoaudit.open(db, read_only=True) as audit:
        early = audit.query("sla_breaches", as_of="2025-06-01")
        late = audit.query("sla_breaches", as_of="2025-06-15")
        strict = audit.query("sla_breaches", as_of="2025-04-01", medium_days=10)
        with pytest.raises(QueryError, match="medium_days"):
            audit.query("sla_breaches", medium_days="soon")
    # 1 June: CVE-2019-1551's fix is 91 days old (> 90), CVE-2019-1549's 81.
    assert sorted(zip(early["vulnerability_id"], early["pkg_name"], early["days_since_fix"], early["days_over"])) == [
        ("CVE-2019-1551", "libcrypto1.1", 91, 1), ("CVE-2019-1551", "libssl1.1", 91, 1)]
    assert set(early["digest"]) == {a.digest} and set(early["namespaces"]) == {"shop"}
    assert sorted(zip(late["vulnerability_id"], late["days_over"])) == [
        ("CVE-2019-1549", 5), ("CVE-2019-1549", 5), ("CVE-2019-1551", 15), ("CVE-2019-1551", 15)]
    assert set(late["sla_days"]) == {90} and set(late["running_pods"]) == {1}
    # A tighter target, counted from when the fix was available: 20 and 30 days.
    assert sorted(zip(strict["vulnerability_id"], strict["days_since_fix"])) == [
        ("CVE-2019-1549", 20), ("CVE-2019-1549", 20), ("CVE-2019-1551", 30), ("CVE-2019-1551", 30)]
