"""Scan report parsers against the real Trivy, Grype and CycloneDX fixtures.

Expected counts and values were read off the fixture files by hand (see
tests/fixtures/PROVENANCE.md); they are literals on purpose.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from repoaudit.errors import ConfigError, IngestError
from repoaudit.ingest.scans import VULNERABILITY_KEYS, ParsedScan, load_report, normalize_severity, parse_cyclonedx, parse_grype, parse_timestamp, parse_trivy

from conftest import FIXTURES  # noqa: E402
TRIVY = FIXTURES / "trivy"
GRYPE = FIXTURES / "grype"
SBOM = FIXTURES / "sbom"

EXPECTED_KEYS = {
    "vulnerability_id", "pkg_name", "pkg_type", "installed_version", "fixed_version", "fix_state",
    "severity", "cvss_score", "cvss_vector", "cvss_source", "published_at", "epss",
    "known_exploited", "target", "class",
}  # fmt: skip


def _check_rows(scan: ParsedScan) -> None:
    assert set(VULNERABILITY_KEYS) == EXPECTED_KEYS
    for row in scan.vulnerabilities:
        assert set(row) == EXPECTED_KEYS
        assert row["severity"] in {"CRITICAL", "HIGH", "MEDIUM", "LOW", "NEGLIGIBLE", "UNKNOWN"}


# --------------------------------------------------------------------------- Trivy


def test_trivy_alpine_310():
    scan = load_report(TRIVY / "alpine-310.json", "trivy")
    _check_rows(scan)
    assert scan.scanner == "trivy"
    assert scan.scanner_version == "dev"
    assert scan.scanned_at == datetime(2021, 8, 25, 12, 20, 30, tzinfo=timezone.utc)
    assert scan.artifact_name == "testdata/fixtures/images/alpine-310.tar.gz"
    # Loaded from a tarball: no RepoDigests, so no manifest digest, only the image ID.
    assert scan.image_digest is None
    assert scan.config_digest == "sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4"
    assert scan.image_ref == "ghcr.io/aquasecurity/trivy-test-images:alpine-310"
    assert (scan.registry, scan.repository) == ("ghcr.io", "aquasecurity/trivy-test-images")
    assert (scan.os_family, scan.os_name, scan.eosl) == ("alpine", "3.10.2", True)

    rows = scan.vulnerabilities
    assert len(rows) == 4
    assert {r["vulnerability_id"] for r in rows} == {"CVE-2019-1549", "CVE-2019-1551"}
    assert {r["pkg_name"] for r in rows} == {"libcrypto1.1", "libssl1.1"}
    assert all(r["severity"] == "MEDIUM" for r in rows)
    assert all(r["fixed_version"] and r["fix_state"] == "fixed" for r in rows)
    assert all((r["class"], r["pkg_type"]) == ("os-pkgs", "alpine") for r in rows)

    first = rows[0]
    assert first["vulnerability_id"] == "CVE-2019-1549"
    assert first["installed_version"] == "1.1.1c-r0"
    assert first["fixed_version"] == "1.1.1d-r0"
    # SeveritySource is nvd, which has V2 5 and V3 5.3: V3 wins.
    assert (first["cvss_score"], first["cvss_source"]) == (5.3, "nvd")
    assert first["cvss_vector"] == "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"
    assert first["published_at"] == datetime(2019, 9, 10, 17, 15, tzinfo=timezone.utc)
    assert first["target"] == "testdata/fixtures/images/alpine-310.tar.gz (alpine 3.10.2)"
    assert first["epss"] is None and first["known_exploited"] is None


def test_trivy_ubuntu_1804_one_cve_on_four_packages():
    scan = load_report(TRIVY / "ubuntu-1804.json", "trivy")
    _check_rows(scan)
    rows = scan.vulnerabilities
    assert len(rows) == 5

    unfixed = [r for r in rows if r["fixed_version"] is None]
    assert len(unfixed) == 1
    bash = unfixed[0]
    assert (bash["vulnerability_id"], bash["pkg_name"], bash["severity"]) == ("CVE-2019-18276", "bash", "LOW")
    assert bash["fix_state"] == "affected"
    # SeveritySource "ubuntu" has no CVSS entry, so nvd's V3 is used.
    assert (bash["cvss_score"], bash["cvss_source"]) == (7.8, "nvd")

    e2fs = [r for r in rows if r["vulnerability_id"] == "CVE-2019-5094"]
    assert sorted(r["pkg_name"] for r in e2fs) == ["e2fsprogs", "libcom-err2", "libext2fs2", "libss2"]
    assert all(r["severity"] == "MEDIUM" and r["fixed_version"] == "1.44.1-1ubuntu1.2" for r in e2fs)
    # No EOSL key: Trivy omits false.
    assert scan.eosl is False


def test_trivy_spring4shell():
    scan = load_report(TRIVY / "spring4shell-jre11.json", "trivy")
    _check_rows(scan)
    assert len(scan.vulnerabilities) == 1
    row = scan.vulnerabilities[0]
    assert row["vulnerability_id"] == "CVE-2022-22965"
    assert row["pkg_name"] == "org.springframework:spring-beans"
    assert row["installed_version"] == "5.3.15"
    assert row["fixed_version"] == "5.3.18"
    assert row["severity"] == "CRITICAL"
    assert (row["class"], row["pkg_type"], row["target"]) == ("lang-pkgs", "jar", "Java")
    # SeveritySource ghsa has a V3 score, so ghsa is preferred over nvd.
    assert (row["cvss_score"], row["cvss_source"]) == (9.8, "ghsa")
    assert (scan.os_family, scan.os_name) == ("debian", "11.3")


def test_trivy_alpine_39_skip_is_a_clean_scan():
    scan = load_report(TRIVY / "alpine-39-skip.json", "trivy")
    assert scan.vulnerabilities == []
    assert scan.image_ref == "ghcr.io/aquasecurity/trivy-test-images:alpine-39"
    assert scan.config_digest == "sha256:055936d3920576da37aa9bc460d70c5f212028bda1c08c0879aedf03d7a66ea1"
    # OS.Family "none" means detection was skipped.
    assert (scan.os_family, scan.os_name, scan.eosl) == (None, None, None)


def test_trivy_secrets_repository_scan_is_rejected():
    path = TRIVY / "secrets.json"
    with pytest.raises(IngestError) as info:
        load_report(path, "trivy")
    message = str(info.value)
    assert str(path) in message
    assert "Trivy repository scan" in message and "not an image scan" in message


def test_trivy_docs_example_with_repo_digests():
    scan = load_report(TRIVY / "docs-alpine-latest-repodigests.json", "trivy")
    _check_rows(scan)
    assert scan.scanner_version is None  # the docs example has no Trivy object
    assert scan.image_digest == "sha256:1e42bbe2508154c9126d48c2b8a75420c3544343bf86fd041fb7527e017a4b4a"
    assert scan.config_digest == "sha256:511a44083d3a23416fadc62847c45d14c25cbace86e7a72b2b350436978a0450"
    assert (scan.registry, scan.repository) == ("index.docker.io", "library/alpine")
    assert scan.image_ref == "index.docker.io/library/alpine:latest"
    # +05:30 offset normalised to UTC.
    assert scan.scanned_at == datetime(2024, 12, 26, 16, 28, 15, 943876, tzinfo=timezone.utc)
    rows = scan.vulnerabilities
    assert len(rows) == 2
    assert {r["pkg_name"] for r in rows} == {"libcrypto3", "libssl3"}
    assert all(r["severity"] == "LOW" and r["vulnerability_id"] == "CVE-2024-9143" for r in rows)
    # No SeveritySource and only redhat CVSS.
    assert all((r["cvss_score"], r["cvss_source"]) == (3.7, "redhat") for r in rows)
    assert rows[0]["published_at"] == datetime(2024, 10, 16, 17, 15, 18, 130000, tzinfo=timezone.utc)


def _trivy_doc(**overrides) -> dict:
    doc = {
        "SchemaVersion": 2,
        "ArtifactName": "registry.example.com/team/app@sha256:" + "a" * 64,
        "ArtifactType": "container_image",
        "Metadata": {"ImageID": "sha256:" + "b" * 64},
        "Results": [
            {
                "Target": "t",
                "Class": "os-pkgs",
                "Type": "debian",
                "Vulnerabilities": [
                    {
                        "VulnerabilityID": "CVE-1",
                        "PkgName": "p",
                        "InstalledVersion": "1",
                        "Status": "will_not_fix",
                        "Severity": "weird",
                        "SeveritySource": "debian",
                        "CVSS": {
                            "redhat": {"V3Score": 6.1, "V3Vector": "rh3"},
                            "nvd": {"V2Score": 5.0, "V2Vector": "nvd2"},
                            "bitnami": {"V3Score": 9.9},
                        },
                    }
                ],
            },
            {"Target": "empty", "Class": "lang-pkgs", "Type": "npm", "Vulnerabilities": None},
        ],
    }
    doc.update(overrides)
    return doc


def test_trivy_digest_from_artifact_name_and_cvss_fallbacks():
    scan = parse_trivy(_trivy_doc(), "x.json")
    assert scan.image_digest == "sha256:" + "a" * 64
    assert (scan.registry, scan.repository) == ("registry.example.com", "team/app")
    assert scan.config_digest == "sha256:" + "b" * 64
    (row,) = scan.vulnerabilities
    assert row["severity"] == "UNKNOWN"
    assert (row["fixed_version"], row["fix_state"]) == (None, "will_not_fix")
    # Source order beats version: nvd (V2 only) comes before redhat's V3.
    assert (row["cvss_score"], row["cvss_vector"], row["cvss_source"]) == (5.0, "nvd2", "nvd")


def test_trivy_cvss_other_source_as_last_resort():
    doc = _trivy_doc()
    doc["Results"][0]["Vulnerabilities"][0]["CVSS"] = {"bitnami": {"V3Score": 9.9, "V3Vector": "b"}}
    (row,) = parse_trivy(doc, "x.json").vulnerabilities
    assert (row["cvss_score"], row["cvss_source"]) == (9.9, "bitnami")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"SchemaVersion": 1}, "unsupported Trivy SchemaVersion 1"),
        ({"ArtifactType": "filesystem"}, "Trivy filesystem scan"),
        ({"ArtifactType": "vm"}, "Trivy vm scan"),
        ({"Results": {"not": "a list"}}, "Results is dict"),
    ],
)
def test_trivy_rejects(overrides, fragment):
    with pytest.raises(IngestError, match=fragment):
        parse_trivy(_trivy_doc(**overrides), "x.json")


def test_trivy_vulnerability_without_id_is_rejected():
    doc = _trivy_doc()
    del doc["Results"][0]["Vulnerabilities"][0]["VulnerabilityID"]
    with pytest.raises(IngestError, match=r"Results\[0\]\.Vulnerabilities\[0\] has no VulnerabilityID"):
        parse_trivy(doc, "x.json")


# --------------------------------------------------------------------------- Grype


def test_grype_keycloak():
    scan = load_report(GRYPE / "keycloak-21.0.2-redhat.json", "grype")
    _check_rows(scan)
    assert (scan.scanner, scan.scanner_version) == ("grype", "0.66.0")
    assert scan.db_built == datetime(2023, 9, 1, 1, 26, 55, tzinfo=timezone.utc)
    assert scan.scanned_at == datetime(2023, 9, 1, 12, 13, 42, 201940, tzinfo=timezone.utc)
    # repoDigests (what the registry and Kubernetes know), not the platform manifestDigest d1630d3e….
    assert scan.image_digest == "sha256:347a0d748d05a050dc64b92de2246d2240db6eb38afbc17c3c08d0acb0db1b50"
    assert scan.config_digest == "sha256:8cf8fd2be2ded92962d52adff75ad06a4c30f69c66facbdf223364c6c9e33b8c"
    assert (scan.registry, scan.repository) == ("index.docker.io", "keycloak/keycloak")
    assert scan.image_ref == "index.docker.io/keycloak/keycloak:21.0.2@" + scan.image_digest
    assert (scan.os_family, scan.os_name, scan.eosl) == ("redhat", "9.1", None)

    rows = scan.vulnerabilities
    assert len(rows) == 6
    assert {r["vulnerability_id"] for r in rows} == {"CVE-2020-12413"}
    assert [r["pkg_name"] for r in rows] == [
        "nspr", "nss", "nss-softokn", "nss-softokn-freebl", "nss-sysinit", "nss-util",
    ]  # fmt: skip
    for row in rows:
        assert row["severity"] == "LOW"
        assert (row["fix_state"], row["fixed_version"]) == ("wont-fix", None)
        assert (row["cvss_score"], row["cvss_source"]) == (5.9, "redhat")
        assert row["pkg_type"] == "rpm" and row["class"] == "os-pkgs"
        # grype 0.66 predates KEV/EPSS enrichment: unknown, not False.
        assert row["known_exploited"] is None and row["epss"] is None
        assert row["published_at"] is None


def test_grype_alpine_java():
    scan = load_report(GRYPE / "anchore-test-images-alpine-java.json", "grype")
    _check_rows(scan)
    assert scan.scanner_version == "0.65.1"
    assert scan.image_digest == "sha256:10008791acbc5866de04108746a02a0c4029ce3a4400a9b3dad45d7f2245f9da"
    assert (scan.registry, scan.repository) == ("index.docker.io", "anchore/test_images")
    rows = scan.vulnerabilities
    assert len(rows) == 2
    assert all(r["severity"] == "MEDIUM" for r in rows)
    for row in rows:
        assert (row["pkg_name"], row["installed_version"], row["pkg_type"]) == ("httpclient", "4.1.1", "java-archive")
    ghsa, cve = rows
    assert ghsa["vulnerability_id"] == "GHSA-cfh5-3ghh-wfjx"
    assert (ghsa["fixed_version"], ghsa["fix_state"]) == ("4.3.5", "fixed")
    # Own cvss[] is empty: the related NVD record's v2.0 score is used.
    assert (ghsa["cvss_score"], ghsa["cvss_source"]) == (5.8, "nvd")
    assert cve["vulnerability_id"] == "CVE-2014-3577"
    assert (cve["fixed_version"], cve["fix_state"]) == (None, "unknown")
    assert (cve["cvss_score"], cve["cvss_vector"]) == (5.8, "AV:N/AC:M/Au:N/C:P/I:P/A:N")


def test_grype_snapshot_schema_coverage():
    scan = load_report(GRYPE / "snapshot-image-presenter.json", "grype")
    _check_rows(scan)
    assert scan.scanner_version is None  # "[not provided]"
    assert scan.scanned_at is None  # timestamp ""
    assert scan.db_built is None
    # repoDigests is empty and userInput is not a reference: fall back to manifestDigest.
    assert scan.image_digest == "sha256:ca738abb87a8d58f112d3400ebb079b61ceae7dc290beb34bda735be4b1941d5"
    assert scan.image_ref is None and scan.registry is None
    assert (scan.os_family, scan.os_name) == ("centos", "8.0")
    first, second = scan.vulnerabilities
    assert (first["vulnerability_id"], first["severity"]) == ("CVE-1999-0001", "LOW")
    assert (first["fixed_version"], first["fix_state"]) == ("1.2.1", "fixed")
    assert (first["epss"], first["known_exploited"]) == (0.03, False)
    assert (first["cvss_score"], first["cvss_source"]) == (8.2, "nvd")
    assert first["target"] == "/foo/bar/somefile-1.txt"
    assert (second["vulnerability_id"], second["severity"]) == ("CVE-1999-0002", "CRITICAL")
    assert (second["epss"], second["known_exploited"]) == (0.08, True)
    assert (second["fix_state"], second["fixed_version"]) == (None, None)


def _grype_doc() -> dict:
    return json.loads((GRYPE / "snapshot-image-presenter.json").read_text())


def test_grype_directory_scan_is_rejected():
    doc = _grype_doc()
    doc["source"] = {"type": "directory", "target": "/src"}
    with pytest.raises(IngestError, match="Grype directory scan, not an image scan"):
        parse_grype(doc, "x.json")


def test_grype_v6_db_status_and_suggested_version():
    doc = _grype_doc()
    doc["descriptor"] = {"name": "grype", "version": "0.90.0", "timestamp": "2025-01-02T03:04:05Z",
                         "db": {"status": {"built": "2025-01-01T00:00:00Z", "valid": True}}}  # fmt: skip
    doc["matches"][0]["matchDetails"][0]["fix"]["suggestedVersion"] = "2.1.3"
    doc["source"]["target"]["userInput"] = "registry:ghcr.io/org/app:1.0"
    scan = parse_grype(doc, "x.json")
    assert scan.scanner_version == "0.90.0"
    assert scan.db_built == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert scan.vulnerabilities[0]["fixed_version"] == "2.1.3"
    assert (scan.image_ref, scan.registry, scan.repository) == ("ghcr.io/org/app:1.0", "ghcr.io", "org/app")


# --------------------------------------------------------------------------- CycloneDX


def test_cyclonedx_fluentd():
    scan = load_report(SBOM / "trivy-fluentd-image.cdx.json", "cyclonedx")
    _check_rows(scan)
    assert (scan.scanner, scan.scanner_version) == ("trivy", "dev")  # 1.5+ tools.components form
    assert scan.scanned_at == datetime(2021, 8, 25, 12, 20, 30, tzinfo=timezone.utc)
    assert scan.config_digest == "sha256:5a992077baba51b97f27591a10d54d2f2723dc9c81a3fe419e261023f2554933"
    assert scan.image_digest is None and scan.image_ref is None  # tarball, no RepoDigest/RepoTag
    assert (scan.os_family, scan.os_name) == ("debian", "10.2")

    rows = {r["vulnerability_id"]: r for r in scan.vulnerabilities}
    assert len(scan.vulnerabilities) == 3
    # Severities agree with Trivy's own JSON for the same scan.
    libidn = rows["CVE-2019-18224"]
    assert (libidn["pkg_name"], libidn["installed_version"], libidn["pkg_type"]) == ("libidn2-0", "2.0.5-1", "deb")
    assert (libidn["severity"], libidn["cvss_score"], libidn["cvss_source"]) == ("CRITICAL", 9.8, "nvd")
    assert (libidn["fixed_version"], libidn["fix_state"]) == ("2.0.5-1+deb10u1", "fixed")
    assert (libidn["class"], libidn["target"]) == ("os-pkgs", "debian 10.2")
    assert libidn["published_at"] == datetime(2019, 10, 21, 17, 15, tzinfo=timezone.utc)

    bash = rows["CVE-2019-18276"]
    assert (bash["pkg_name"], bash["severity"], bash["cvss_score"]) == ("bash", "LOW", 7.8)
    assert (bash["fixed_version"], bash["fix_state"]) == (None, "affected")

    gem = rows["CVE-2020-8165"]
    assert (gem["pkg_name"], gem["pkg_type"], gem["severity"]) == ("activesupport", "gem", "HIGH")
    assert gem["fixed_version"] == "6.0.3.1, 5.2.4.3"
    assert gem["class"] == "lang-pkgs"


def _cdx_doc() -> dict:
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.4",
        "metadata": {
            "timestamp": "2022-09-15T13:53:49+00:00",
            "tools": [{"vendor": "aquasecurity", "name": "trivy", "version": "0.31.3"}],
            "component": {
                "bom-ref": "pkg:oci/alpine@sha256%3A" + "c" * 64 + "?repository_url=index.docker.io%2Flibrary%2Falpine",
                "type": "container",
                "name": "alpine:3.16",
                "purl": "pkg:oci/alpine@sha256%3A" + "c" * 64 + "?repository_url=index.docker.io%2Flibrary%2Falpine",
                "properties": [
                    {"name": "aquasecurity:trivy:ImageID", "value": "sha256:" + "d" * 64},
                    {"name": "aquasecurity:trivy:RepoTag", "value": "alpine:3.16"},
                ],
            },
        },
        "components": [],
    }


def test_cyclonedx_14_tools_list_and_oci_purl():
    scan = parse_cyclonedx(_cdx_doc(), "x.cdx.json")
    assert (scan.scanner, scan.scanner_version) == ("trivy", "0.31.3")
    assert scan.vulnerabilities == []  # no vulnerabilities key: clean
    assert scan.image_digest == "sha256:" + "c" * 64
    assert scan.config_digest == "sha256:" + "d" * 64
    assert scan.image_ref == "index.docker.io/library/alpine:3.16"
    assert (scan.registry, scan.repository) == ("index.docker.io", "library/alpine")


def test_cyclonedx_repo_digest_property_and_unknown_ref():
    doc = _cdx_doc()
    doc["metadata"]["component"]["properties"].append(
        {"name": "aquasecurity:trivy:RepoDigest", "value": "ghcr.io/o/a@sha256:" + "e" * 64}
    )
    doc["vulnerabilities"] = [
        {
            "id": "CVE-2",
            "ratings": [{"source": {"name": "vendor"}, "severity": "info"}],
            "affects": [{"ref": "pkg:apk/alpine/zlib@1.2"}],
            "analysis": {"state": "not_affected"},
        }
    ]
    scan = parse_cyclonedx(doc, "x.cdx.json")
    assert scan.image_digest == "sha256:" + "e" * 64
    assert (scan.registry, scan.repository) == ("ghcr.io", "o/a")
    (row,) = scan.vulnerabilities
    assert (row["pkg_name"], row["pkg_type"], row["class"]) == ("pkg:apk/alpine/zlib@1.2", "apk", "os-pkgs")
    assert (row["severity"], row["fix_state"], row["cvss_score"]) == ("NEGLIGIBLE", "not_affected", None)


def test_cyclonedx_non_container_bom_is_rejected():
    doc = _cdx_doc()
    doc["metadata"]["component"]["type"] = "application"
    with pytest.raises(IngestError, match="CycloneDX BOM of a application component, not a container image"):
        parse_cyclonedx(doc, "x.cdx.json")


# --------------------------------------------------------------------------- files and errors


def test_sarif_given_to_trivy_is_rejected():
    path = SBOM / "trivy-alpine-310.sarif.json"
    with pytest.raises(IngestError) as info:
        load_report(path, "trivy")
    assert str(info.value) == f"{path}: is a SARIF report, not a Trivy JSON report"


@pytest.mark.parametrize(
    ("path", "scanner", "found"),
    [
        (GRYPE / "keycloak-21.0.2-redhat.json", "trivy", "Grype"),
        (TRIVY / "alpine-310.json", "grype", "Trivy"),
        (SBOM / "trivy-fluentd-image.cdx.json", "trivy", "CycloneDX"),
        (TRIVY / "alpine-310.json", "cyclonedx", "Trivy"),
        (SBOM / "trivy-alpine-310.sarif.json", "cyclonedx", "SARIF"),
    ],
)
def test_report_given_to_wrong_parser(path, scanner, found):
    with pytest.raises(IngestError) as info:
        load_report(path, scanner)
    message = str(info.value)
    assert message.startswith(f"{path}: is a {found} report, not a ")
    assert "\n" not in message


@pytest.mark.parametrize("scanner", ["trivy", "grype", "cyclonedx"])
def test_empty_file(tmp_path, scanner):
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    with pytest.raises(IngestError) as info:
        load_report(path, scanner)
    assert str(info.value) == f"{path}: empty file"
    path.write_text("  \n\t\n")
    with pytest.raises(IngestError, match="empty file"):
        load_report(path, scanner)


@pytest.mark.parametrize("scanner", ["trivy", "grype", "cyclonedx"])
def test_truncated_json(tmp_path, scanner):
    source = {"trivy": TRIVY / "alpine-310.json", "grype": GRYPE / "keycloak-21.0.2-redhat.json",
              "cyclonedx": SBOM / "trivy-fluentd-image.cdx.json"}[scanner]  # fmt: skip
    text = source.read_text()
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(IngestError) as info:
        load_report(path, scanner)
    message = str(info.value)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: truncated JSON", message)
    assert "\n" not in message


def test_malformed_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"SchemaVersion": 2,, "Results": []}')
    with pytest.raises(IngestError) as info:
        load_report(path, "trivy")
    assert str(info.value).startswith(f"{path}:1:21: malformed JSON: ")


def test_other_unreadable_inputs(tmp_path):
    xml = tmp_path / "bom.xml"
    xml.write_text('<?xml version="1.0"?><bom/>')
    with pytest.raises(IngestError, match="looks like XML"):
        load_report(xml, "cyclonedx")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(IngestError, match="not UTF-8"):
        load_report(binary, "trivy")
    array = tmp_path / "array.json"
    array.write_text("[]")
    with pytest.raises(IngestError, match="JSON array"):
        load_report(array, "trivy")
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"hello": "world"}')
    with pytest.raises(IngestError, match=r"not a Grype JSON report \(found keys \['hello'\]\)"):
        load_report(unknown, "grype")
    missing = tmp_path / "missing.json"
    with pytest.raises(IngestError, match=f"{missing}: cannot read file"):
        load_report(missing, "trivy")


def test_unknown_scanner_is_config_error():
    with pytest.raises(ConfigError, match="unknown scanner 'snyk'"):
        load_report(TRIVY / "alpine-310.json", "snyk")


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Low", "LOW"),
        ("Negligible", "NEGLIGIBLE"),
        ("CRITICAL", "CRITICAL"),
        ("medium", "MEDIUM"),
        ("Unknown", "UNKNOWN"),
        ("", "UNKNOWN"),
        (None, "UNKNOWN"),
        ("severe", "UNKNOWN"),
        ("info", "NEGLIGIBLE"),
        ("none", "NEGLIGIBLE"),
    ],
)
def test_normalize_severity(value, expected):
    assert normalize_severity(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-08-25T12:20:30.000000005Z", datetime(2021, 8, 25, 12, 20, 30, tzinfo=timezone.utc)),
        ("2024-10-16T17:15:18.13Z", datetime(2024, 10, 16, 17, 15, 18, 130000, tzinfo=timezone.utc)),
        ("2023-09-01T08:13:42.20194-04:00", datetime(2023, 9, 1, 12, 13, 42, 201940, tzinfo=timezone.utc)),
        ("2021-08-25T12:20:30+00:00", datetime(2021, 8, 25, 12, 20, 30, tzinfo=timezone.utc)),
        ("2021-08-25T12:20:30", datetime(2021, 8, 25, 12, 20, 30, tzinfo=timezone.utc)),
        ("", None),
        (None, None),
        ("[not provided]", None),
        ("2021-13-45T00:00:00Z", None),
    ],
)
def test_parse_timestamp(value, expected):
    assert parse_timestamp(value) == expected
