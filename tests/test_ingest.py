"""Ingesting scan reports and pod listings: real fixtures, bad input, idempotence, the CLI.

Expected numbers come from reading the fixtures by hand (PROVENANCE.md and the issue
state the key ones) and, where a test counts, from the raw JSON with ``json`` alone.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import repoaudit
from conftest import FIXTURES
from pusher import layer_bytes
from repoaudit.cli import main
from repoaudit.errors import ConfigError, IngestError

TRIVY = FIXTURES / "trivy"
GRYPE = FIXTURES / "grype"
SBOM = FIXTURES / "sbom"
KUBE = FIXTURES / "kubernetes"

TABLES = ("scans", "vulnerabilities", "workload_snapshots", "workloads")


@pytest.fixture
def audit(tmp_path):
    with repoaudit.open(tmp_path / "ingest.duckdb") as a:
        yield a


def counts(audit) -> dict[str, int]:
    return {t: int(audit.sql(f"SELECT count(*) FROM {t}").iloc[0, 0]) for t in TABLES}


def findings_in(path: Path) -> int:
    """Vulnerability entries in a Trivy report, counted straight from its JSON."""
    data = json.loads(path.read_text())
    return sum(len(r.get("Vulnerabilities") or []) for r in data.get("Results") or [])


def vulns(audit, scan_id: int):
    return audit.sql("SELECT * FROM vulnerabilities WHERE scan_id = $s ORDER BY vulnerability_id, pkg_name",
                     {"s": scan_id})


def records(audit, sql: str, params: dict | None = None) -> list[dict]:
    """Rows as plain Python values (NULL is None, not a pandas NaN)."""
    cursor = audit.con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


# -- real scan reports ------------------------------------------------------------------------

# file -> (findings, severities, findings with a fixed version, distinct vulnerability ids)
TRIVY_EXPECTED = {
    "alpine-310.json": (4, {"MEDIUM": 4}, 4, 2),
    "ubuntu-1804.json": (5, {"MEDIUM": 4, "LOW": 1}, 4, 2),
    "spring4shell-jre11.json": (1, {"CRITICAL": 1}, 1, 1),
    "alpine-39-skip.json": (0, {}, 0, 0),
    "docs-alpine-latest-repodigests.json": (2, {"LOW": 2}, 2, 1),
}


@pytest.mark.parametrize("name", sorted(TRIVY_EXPECTED))
def test_trivy_fixture_counts(audit, name):
    path = TRIVY / name
    total, severities, fixable, distinct = TRIVY_EXPECTED[name]
    assert findings_in(path) == total
    result = audit.ingest("trivy", path)
    assert len(result.scan_ids) == 1 and result.findings == total and result.severities == severities
    rows = vulns(audit, result.scan_ids[0])
    assert len(rows) == total
    assert dict(Counter(rows["severity"])) == severities
    assert int(rows["fixed_version"].notna().sum()) == fixable
    assert rows["vulnerability_id"].nunique() == distinct
    scan = audit.sql("SELECT * FROM scans").iloc[0]
    assert scan["finding_count"] == total and scan["report_format"] == "trivy"
    assert scan["source_file"] == str(path.resolve())


def test_trivy_rows_as_reported(audit):
    alpine = audit.ingest("trivy", TRIVY / "alpine-310.json").scan_ids[0]
    rows = vulns(audit, alpine)
    assert list(zip(rows["vulnerability_id"], rows["pkg_name"], rows["fixed_version"])) == [
        ("CVE-2019-1549", "libcrypto1.1", "1.1.1d-r0"), ("CVE-2019-1549", "libssl1.1", "1.1.1d-r0"),
        ("CVE-2019-1551", "libcrypto1.1", "1.1.1d-r2"), ("CVE-2019-1551", "libssl1.1", "1.1.1d-r2")]
    scan = records(audit, "SELECT * FROM scans WHERE scan_id = $s", {"s": alpine})[0]
    assert scan["config_digest"] == "sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4"
    assert scan["image_digest"] is None  # loaded from a tarball: no RepoDigests
    assert (scan["registry"], scan["repository"]) == ("ghcr.io", "aquasecurity/trivy-test-images")
    assert scan["scanned_at"] == datetime(2021, 8, 25, 12, 20, 30)  # nanoseconds dropped, naive UTC
    assert bool(scan["eosl"]) is True

    ubuntu = audit.ingest("trivy", TRIVY / "ubuntu-1804.json").scan_ids[0]
    bash = records(audit, "SELECT * FROM vulnerabilities WHERE scan_id = $s AND pkg_name = 'bash'", {"s": ubuntu})[0]
    assert (bash["vulnerability_id"], bash["severity"], bash["fixed_version"], bash["fix_state"]) == \
        ("CVE-2019-18276", "LOW", None, "affected")

    docs = audit.ingest("trivy", TRIVY / "docs-alpine-latest-repodigests.json").scan_ids[0]
    scan = records(audit, "SELECT * FROM scans WHERE scan_id = $s", {"s": docs})[0]
    assert scan["image_digest"] == "sha256:1e42bbe2508154c9126d48c2b8a75420c3544343bf86fd041fb7527e017a4b4a"
    assert (scan["registry"], scan["repository"]) == ("index.docker.io", "library/alpine")
    # CreatedAt 2024-12-26T21:58:15.943876+05:30, stored as UTC
    assert scan["scanned_at"] == datetime(2024, 12, 26, 16, 28, 15, 943876)


GRYPE_EXPECTED = {
    "keycloak-21.0.2-redhat.json": (6, {"LOW": 6}, 0),
    "anchore-test-images-alpine-java.json": (2, {"MEDIUM": 2}, 1),
    "snapshot-image-presenter.json": (2, {"CRITICAL": 1, "LOW": 1}, 1),
}


@pytest.mark.parametrize("name", sorted(GRYPE_EXPECTED))
def test_grype_fixture_counts(audit, name):
    path = GRYPE / name
    total, severities, fixable = GRYPE_EXPECTED[name]
    assert len(json.loads(path.read_text())["matches"]) == total
    result = audit.ingest("grype", path)
    rows = vulns(audit, result.scan_ids[0])
    assert len(rows) == total and dict(Counter(rows["severity"])) == severities
    assert int(rows["fixed_version"].notna().sum()) == fixable


def test_grype_keycloak_identity_and_wont_fix(audit):
    scan_id = audit.ingest("grype", GRYPE / "keycloak-21.0.2-redhat.json").scan_ids[0]
    scan = audit.sql("SELECT * FROM scans").iloc[0]
    assert scan["image_digest"] == "sha256:347a0d748d05a050dc64b92de2246d2240db6eb38afbc17c3c08d0acb0db1b50"
    assert (scan["registry"], scan["repository"]) == ("index.docker.io", "keycloak/keycloak")
    assert scan["scanned_at"] == datetime(2023, 9, 1, 12, 13, 42, 201940)  # 08:13:42.20194-04:00
    rows = vulns(audit, scan_id)
    assert set(rows["vulnerability_id"]) == {"CVE-2020-12413"}
    assert set(rows["fix_state"]) == {"wont-fix"}


def test_cyclonedx_fixture(audit):
    result = audit.ingest("cyclonedx", SBOM / "trivy-fluentd-image.cdx.json")
    assert result.findings == 3 and result.severities == {"CRITICAL": 1, "HIGH": 1, "LOW": 1}
    rows = vulns(audit, result.scan_ids[0])
    assert list(rows["vulnerability_id"]) == ["CVE-2019-18224", "CVE-2019-18276", "CVE-2020-8165"]
    assert [r["fixed_version"] for r in records(audit, "SELECT fixed_version FROM vulnerabilities "
                                                    "ORDER BY vulnerability_id")] == [
        "2.0.5-1+deb10u1", None, "6.0.3.1, 5.2.4.3"]
    scan = audit.sql("SELECT report_format, scanner, config_digest FROM scans").iloc[0]
    assert (scan["report_format"], scan["scanner"]) == ("cyclonedx", "trivy")
    assert scan["config_digest"] == "sha256:5a992077baba51b97f27591a10d54d2f2723dc9c81a3fe419e261023f2554933"


def test_non_image_reports_are_refused(audit):
    before = counts(audit)
    with pytest.raises(IngestError, match=r"secrets\.json: is a Trivy repository scan .* not an image scan"):
        audit.ingest("trivy", TRIVY / "secrets.json")
    with pytest.raises(IngestError, match=r"trivy-alpine-310\.sarif\.json: is a SARIF report"):
        audit.ingest("cyclonedx", SBOM / "trivy-alpine-310.sarif.json")
    assert counts(audit) == before


def test_directory_with_one_bad_report_writes_nothing(audit):
    # fixtures/trivy holds secrets.json, a repository scan: the whole directory is refused.
    with pytest.raises(IngestError, match="secrets.json"):
        audit.ingest("trivy", TRIVY)
    assert counts(audit) == dict.fromkeys(TABLES, 0)


def test_directory_of_good_reports(audit, tmp_path):
    folder = tmp_path / "reports" / "nested"
    folder.mkdir(parents=True)
    for name in TRIVY_EXPECTED:
        shutil.copy(TRIVY / name, folder / name)
    (folder / "notes.txt").write_text("not a report")
    result = audit.ingest("trivy", tmp_path / "reports")
    assert len(result.scan_ids) == len(TRIVY_EXPECTED)
    assert result.findings == sum(v[0] for v in TRIVY_EXPECTED.values()) == 12


# -- real pod listings ----------------------------------------------------------------------


def test_pod_fixtures(audit):
    result = audit.ingest("pods", [KUBE / "sonobuoy-ns-sonobuoy-podlist.json",
                                   KUBE / "sonobuoy-ns-kube-system-podlist.json"], cluster="kind")
    assert (result.pods, result.containers) == (5 + 14, 9 + 14)
    assert result.resolved == {"status-repo-digest": 9, "status-image-id": 12, "unresolved": 2}
    snap = audit.sql("SELECT * FROM workload_snapshots").iloc[0]
    assert (snap["cluster"], snap["pod_count"], snap["container_count"]) == ("kind", 19, 23)
    assert len(json.loads(snap["source_files"])) == 2

    coredns = records(audit, "SELECT * FROM workloads WHERE pod = 'coredns-74ff55c5b-ppjrs'")[0]
    assert (coredns["resolved_by"], coredns["image_digest"], coredns["config_digest"]) == ("unresolved", None, None)
    assert coredns["tag"] == "1.7.0"
    # kind preloads images, so the runtime reports the image ID (config digest), not a manifest digest
    ids = audit.sql("SELECT DISTINCT config_digest FROM workloads WHERE resolved_by = 'status-image-id'")
    assert "sha256:bfe3a36ebd2528b454be6aebece806db5b40407b833e2af9617bf39afaff8c16" in set(ids["config_digest"])
    sonobuoy = audit.sql("SELECT DISTINCT image_ref, image_digest FROM workloads "
                         "WHERE namespace = 'sonobuoy' AND container = 'kube-sonobuoy'").iloc[0]
    assert sonobuoy["image_ref"] == "index.docker.io/sonobuoy/sonobuoy:v0.56.0"
    assert sonobuoy["image_digest"] == "sha256:f950a9ed5e4a943dfb640be1c763919c5016b34c6ce067d9a27c9a50972bf5e4"

    deployed = records(audit, "SELECT * FROM deployed_images WHERE repository = 'kube-proxy'")[0]
    assert deployed["digest"] is None and deployed["image_id"].startswith("sha256:")
    assert (deployed["pods"], deployed["running_pods"]) == (3, 3)


def test_single_pod_docker_pullable(audit):
    result = audit.ingest("pods", KUBE / "k9s-pod-docker-pullable.json")
    assert (result.cluster, result.pods, result.containers) == ("default", 1, 1)
    row = records(audit, "SELECT * FROM current_workloads")[0]
    assert (row["namespace"], row["owner_kind"], row["owner_name"]) == ("default", "ReplicaSet", "nginx-7fb78fb6d8")
    assert row["image_ref"] == "k8s.gcr.io/nginx-slim:0.8" and row["tag"] == "0.8"
    assert row["image_digest"] == "sha256:8b4501fe0fe221df663c22e16539f399e89594552f400408303c42f3dd8d0e52"
    assert row["resolved_by"] == "status-repo-digest" and not row["pinned_by_digest"]


def test_pod_yaml_and_pending(audit, tmp_path):
    listing = tmp_path / "pods.yaml"
    listing.write_text("""\
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop}
spec:
  containers:
  - {name: web, image: "registry.example.com/shop/web:1.2@sha256:%s"}
  initContainers:
  - {name: init, image: busybox}
status: {phase: Pending}
""" % ("a" * 64))
    audit.ingest("pods", listing, cluster="c1")
    rows = records(audit, "SELECT container, init, image_ref, tag, image_digest, resolved_by, pinned_by_digest "
                          "FROM workloads ORDER BY init DESC")
    assert rows == [
        {"container": "init", "init": True, "image_ref": "index.docker.io/library/busybox", "tag": "latest",
         "image_digest": None, "resolved_by": "unresolved", "pinned_by_digest": False},
        {"container": "web", "init": False, "image_ref": f"registry.example.com/shop/web:1.2@sha256:{'a' * 64}",
         # name:tag@digest runs the digest; the tag is dropped, as Docker and the kubelet drop it.
         "tag": None, "image_digest": f"sha256:{'a' * 64}", "resolved_by": "spec-digest", "pinned_by_digest": True},
    ]


# -- bad input --------------------------------------------------------------------------------


def bad_files(tmp_path: Path) -> dict[str, Path]:
    text = (TRIVY / "alpine-310.json").read_text()
    files = {
        "malformed": ('{"SchemaVersion": 2,, "ArtifactType": "container_image"}', "malformed JSON"),
        "truncated": (text[: len(text) // 2], "truncated JSON"),
        "empty": ("", "empty file"),
        "blank": ("  \n\n", "empty file"),
    }
    out = {}
    for name, (body, _) in files.items():
        out[name] = tmp_path / f"{name}.json"
        out[name].write_text(body)
    return out


@pytest.mark.parametrize("kind", ["trivy", "grype", "cyclonedx", "pods"])
@pytest.mark.parametrize("case, fragment", [("malformed", "malformed JSON"), ("truncated", "truncated JSON"),
                                            ("empty", "empty file"), ("blank", "empty file")])
def test_unreadable_files_name_the_file_and_write_nothing(audit, tmp_path, kind, case, fragment):
    audit.ingest("trivy", TRIVY / "ubuntu-1804.json")
    audit.ingest("pods", KUBE / "k9s-pod-docker-pullable.json")
    before = counts(audit)
    path = bad_files(tmp_path)[case]
    with pytest.raises(IngestError) as info:
        audit.ingest(kind, path)
    message = str(info.value)
    assert message.startswith(str(path)) and fragment in message and "\n" not in message
    assert counts(audit) == before


@pytest.mark.parametrize("kind, path, fragment", [
    ("trivy", GRYPE / "keycloak-21.0.2-redhat.json", "is a Grype report, not a Trivy JSON report"),
    ("grype", TRIVY / "alpine-310.json", "is a Trivy report, not a Grype JSON report"),
    ("cyclonedx", TRIVY / "alpine-310.json", "is a Trivy report, not a CycloneDX JSON report"),
    ("trivy", SBOM / "trivy-fluentd-image.cdx.json", "is a CycloneDX report, not a Trivy JSON report"),
    ("trivy", KUBE / "k9s-pod-docker-pullable.json", "not a Trivy JSON report"),
    ("pods", TRIVY / "alpine-310.json", "expected Pod, PodList or List of Pods"),
])
def test_report_given_to_the_wrong_ingester(audit, kind, path, fragment):
    before = counts(audit)
    with pytest.raises(IngestError) as info:
        audit.ingest(kind, path)
    assert str(path) in str(info.value) and fragment in str(info.value)
    assert counts(audit) == before


def test_one_bad_file_in_a_batch_writes_nothing(audit, tmp_path):
    bad = bad_files(tmp_path)["truncated"]
    with pytest.raises(IngestError, match="truncated.json"):
        audit.ingest("trivy", [TRIVY / "alpine-310.json", TRIVY / "ubuntu-1804.json", bad])
    with pytest.raises(IngestError, match="truncated.json"):
        audit.ingest("pods", [KUBE / "k9s-pod-docker-pullable.json", bad])
    assert counts(audit) == dict.fromkeys(TABLES, 0)


def test_missing_paths_and_bad_kinds(audit, tmp_path):
    with pytest.raises(IngestError, match=f"{tmp_path / 'nope.json'}: no such file or directory"):
        audit.ingest("trivy", tmp_path / "nope.json")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(IngestError, match="empty-dir: directory holds no trivy report files"):
        audit.ingest("trivy", tmp_path / "empty-dir")
    with pytest.raises(ConfigError, match="unknown ingest kind 'snyk'"):
        audit.ingest("snyk", TRIVY / "alpine-310.json")
    with pytest.raises(ConfigError, match="--cluster and --allow-empty apply to pod listings"):
        audit.ingest("trivy", TRIVY / "alpine-310.json", cluster="x")
    with pytest.raises(ConfigError, match="--cluster and --allow-empty apply to pod listings"):
        audit.ingest("grype", TRIVY / "alpine-310.json", allow_empty=True)


def test_read_only_database_refuses_ingest(tmp_path):
    repoaudit.open(tmp_path / "ro.duckdb").close()
    with repoaudit.open(tmp_path / "ro.duckdb", read_only=True) as audit:
        with pytest.raises(repoaudit.RepoauditError, match="read-only"):
            audit.ingest("trivy", TRIVY / "alpine-310.json")


# -- idempotence ------------------------------------------------------------------------------


def test_reingesting_the_same_report_changes_nothing(audit, tmp_path):
    first = audit.ingest("trivy", [TRIVY / "alpine-310.json", TRIVY / "ubuntu-1804.json"])
    after_first = counts(audit)
    assert after_first["scans"] == 2 and after_first["vulnerabilities"] == 9
    again = audit.ingest("trivy", TRIVY / "alpine-310.json")
    assert again.scan_ids == [] and again.skipped == [str(TRIVY / "alpine-310.json")] and again.findings == 0
    renamed = tmp_path / "copy-of-alpine.json"
    shutil.copy(TRIVY / "alpine-310.json", renamed)
    assert audit.ingest("trivy", [renamed, renamed]).scan_ids == []  # same bytes under another name
    assert counts(audit) == after_first
    assert sorted(audit.sql("SELECT scan_id FROM scans")["scan_id"]) == sorted(first.scan_ids)


def test_pod_listing_snapshots(audit):
    sonobuoy = KUBE / "sonobuoy-ns-sonobuoy-podlist.json"
    k9s = KUBE / "k9s-pod-docker-pullable.json"
    first = audit.ingest("pods", sonobuoy, cluster="kind")
    assert audit.ingest("pods", sonobuoy, cluster="kind").unchanged
    assert counts(audit)["workload_snapshots"] == 1

    second = audit.ingest("pods", k9s, cluster="kind")
    assert second.snapshot_id != first.snapshot_id
    assert list(audit.sql("SELECT DISTINCT pod FROM current_workloads")["pod"]) == ["nginx-7fb78fb6d8-2w75j"]
    # Back to the first state: a real change, so it is recorded and becomes current again.
    third = audit.ingest("pods", sonobuoy, cluster="kind")
    assert third.snapshot_id not in (None, first.snapshot_id, second.snapshot_id)
    assert audit.sql("SELECT count(DISTINCT pod) FROM current_workloads").iloc[0, 0] == 5
    # Another cluster is independent of this one.
    audit.ingest("pods", k9s, cluster="gke")
    per_cluster = audit.sql("SELECT cluster, count(DISTINCT pod) AS n FROM current_workloads GROUP BY 1 ORDER BY 1")
    assert per_cluster.to_dict("records") == [{"cluster": "gke", "n": 1}, {"cluster": "kind", "n": 5}]


def test_an_empty_listing_does_not_silently_undeploy_a_cluster(audit, tmp_path):
    """A well-formed empty PodList (wrong context, wrong namespace) would lift apply's protection."""
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": []}))
    audit.ingest("pods", KUBE / "sonobuoy-ns-sonobuoy-podlist.json", cluster="kind")
    before = counts(audit)
    with pytest.raises(IngestError, match=r"empty.json: the listing holds no containers, but cluster 'kind' ran "
                                          r"\d+ at its last ingest.*--allow-empty"):
        audit.ingest("pods", empty, cluster="kind")
    assert counts(audit) == before
    # A cluster with nothing recorded loses no protection; the flag says the emptiness is real.
    assert audit.ingest("pods", empty, cluster="new").snapshot_id is not None
    assert audit.ingest("pods", empty, cluster="kind", allow_empty=True).snapshot_id is not None
    assert list(audit.sql("SELECT DISTINCT cluster FROM current_workloads")["cluster"]) == []


def test_cli_refuses_an_empty_listing_with_one_line(tmp_path):
    db = tmp_path / "a.duckdb"
    empty = tmp_path / "empty.json"
    empty.write_text('{"apiVersion": "v1", "kind": "PodList", "items": []}')
    runner = CliRunner()
    ok = runner.invoke(main, ["ingest", "pods", str(KUBE / "k9s-pod-docker-pullable.json"), "--db", str(db)])
    assert ok.exit_code == 0, ok.output
    refused = runner.invoke(main, ["ingest", "pods", str(empty), "--db", str(db)])
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "--allow-empty" in refused.output
    assert runner.invoke(main, ["ingest", "pods", str(empty), "--allow-empty", "--db", str(db)]).exit_code == 0


# -- matching against collected images (real registry) -----------------------------------------


def trivy_report(artifact: str, *, image_id: str, repo_digests: list[str] | None = None,
                 vulnerabilities: list[dict] | None = None, created_at: str = "2025-01-20T10:00:00Z") -> dict:
    metadata = {"OS": {"Family": "debian", "Name": "12.5"}, "ImageID": image_id, "RepoTags": [artifact]}
    if repo_digests:
        metadata["RepoDigests"] = repo_digests
    result = {"Target": f"{artifact} (debian 12.5)", "Class": "os-pkgs", "Type": "debian"}
    if vulnerabilities:
        result["Vulnerabilities"] = vulnerabilities
    return {"SchemaVersion": 2, "CreatedAt": created_at, "ArtifactName": artifact,
            "ArtifactType": "container_image", "Metadata": metadata, "Results": [result]}


def test_matching_does_not_depend_on_ingest_order(registry, pusher, audit, tmp_path):
    image = pusher.push_image("team/app", ["1.0"], layers=[layer_bytes("app", 2048)])
    amd = pusher.push_image("team/multi", [], layers=[layer_bytes("amd", 900)], architecture="amd64")
    arm = pusher.push_image("team/multi", [], layers=[layer_bytes("arm", 800)], architecture="arm64")
    index = pusher.push_index("team/multi", ["2.0"], [amd, arm])
    by_id = tmp_path / "by-id.json"  # a `docker save` scan: only the image ID
    by_id.write_text(json.dumps(trivy_report(f"{registry.host}/team/app:1.0", image_id=image.config.digest)))
    by_child = tmp_path / "by-child.json"
    by_child.write_text(json.dumps(trivy_report(f"{registry.host}/team/multi:2.0", image_id=amd.config.digest,
                                                repo_digests=[f"{registry.host}/team/multi@{amd.digest}"])))

    by_index = tmp_path / "by-index.json"
    by_index.write_text(json.dumps(trivy_report(f"{registry.host}/team/multi:2.0", image_id="sha256:" + "c" * 64,
                                                repo_digests=[f"{registry.host}/team/multi@{index.digest}"])))

    early = audit.ingest("trivy", [by_id, by_index])  # before the registry was ever collected
    assert (early.matched, early.unmatched) == (0, 2)
    audit.collect(registry.url, progress=False)
    late = audit.ingest("trivy", by_child)
    assert (late.matched, late.unmatched) == (1, 0)

    coverage = audit.sql("SELECT s.artifact_name, c.digest, c.matched_by FROM scan_coverage c "
                         "JOIN scans s USING (scan_id) ORDER BY 1, 3")
    got = {(r.artifact_name.rsplit("/", 1)[1], r.digest, r.matched_by) for r in coverage.itertuples()}
    assert got == {
        ("app:1.0", image.config.digest, "image-id"), ("app:1.0", image.digest, "image-id"),
        # the report of the amd64 manifest also speaks for the index Kubernetes reports
        ("multi:2.0", amd.config.digest, "image-id"), ("multi:2.0", amd.digest, "digest"),
        ("multi:2.0", index.digest, "via-child"),
        # a report of the index speaks for its platform manifests
        ("multi:2.0", "sha256:" + "c" * 64, "image-id"), ("multi:2.0", index.digest, "digest"),
        ("multi:2.0", amd.digest, "via-index"), ("multi:2.0", arm.digest, "via-index"),
    }


# -- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("REPOAUDIT_DB", str(tmp_path / "cli.duckdb"))
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_cli_ingest_and_exit_codes(cli, tmp_path):
    ok = cli("ingest", "trivy", TRIVY / "alpine-310.json", TRIVY / "ubuntu-1804.json")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("trivy: 2 file(s), 2 new scan(s), 0 already ingested; 9 findings (MEDIUM 8, LOW 1)")
    again = cli("ingest", "trivy", TRIVY / "alpine-310.json")
    assert again.exit_code == 0 and "0 new scan(s), 1 already ingested" in again.stdout
    assert cli("ingest", "grype", GRYPE).exit_code == 0
    assert cli("ingest", "cyclonedx", SBOM / "trivy-fluentd-image.cdx.json").exit_code == 0
    pods = cli("ingest", "pods", KUBE / "sonobuoy-ns-sonobuoy-podlist.json", "--cluster", "kind")
    assert pods.exit_code == 0 and "of cluster kind: 5 pods, 9 containers" in pods.stdout

    truncated = tmp_path / "cut.json"
    truncated.write_text((TRIVY / "alpine-310.json").read_text()[:500])
    for args in (("trivy", truncated), ("grype", TRIVY / "alpine-310.json"), ("pods", truncated),
                 ("cyclonedx", SBOM / "trivy-alpine-310.sarif.json")):
        bad = cli("ingest", *args)
        assert bad.exit_code == 1, bad.output
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and str(args[1]) in lines[0] and lines[0].startswith("Error: ")

    assert cli("ingest", "trivy").exit_code == 2  # no FILE: usage error
    assert cli("ingest", "snyk", TRIVY / "alpine-310.json").exit_code == 2

    summary = cli("sql", "SELECT count(*) AS n FROM scans", "--format", "csv")
    assert summary.stdout.splitlines() == ["n", "6"]  # 2 trivy + 3 grype + 1 cyclonedx
    exposure = cli("query", "risk_exposure", "--format", "json")
    assert exposure.exit_code == 0
    assert {row["repository"] for row in json.loads(exposure.stdout)} == {
        "sonobuoy/sonobuoy", "sonobuoy/systemd-logs", "conformance"}
