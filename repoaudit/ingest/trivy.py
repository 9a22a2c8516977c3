"""Trivy JSON reports (``trivy image -f json``, SchemaVersion 2) into a :class:`ParsedScan`."""

from __future__ import annotations

from typing import Any

from repoaudit.errors import IngestError
from repoaudit.ingest.scan_common import (
    _AT_DIGEST_RE,
    ParsedScan,
    _dict_item,
    _digest,
    _expect,
    _explicit_reference,
    _first_reference,
    _float,
    _list_at,
    _row,
    _strings,
    _text,
    normalize_severity,
)
from repoaudit.model.timestamps import parse_timestamp

# When SeveritySource names no CVSS entry (e.g. "ubuntu"), these are tried in order.
_TRIVY_CVSS_SOURCES = ("nvd", "redhat", "ghsa")
# v3 is the score most databases agree on; v4.0 is still sparse, v2 is legacy.
_TRIVY_CVSS_VERSIONS = (("V3Score", "V3Vector"), ("V40Score", "V40Vector"), ("V2Score", "V2Vector"))


def _trivy_cvss(cvss: Any, preferred: str | None) -> tuple[float | None, str | None, str | None]:
    if not isinstance(cvss, dict) or not cvss:
        return None, None, None
    order = [s for s in (preferred, *_TRIVY_CVSS_SOURCES) if s]
    order += sorted(k for k in cvss if isinstance(k, str) and k not in order)
    for source_name in order:
        entry = cvss.get(source_name)
        if not isinstance(entry, dict):
            continue
        for score_key, vector_key in _TRIVY_CVSS_VERSIONS:
            score = _float(entry.get(score_key))
            if score is not None:
                return score, _text(entry.get(vector_key)), source_name
    return None, None, None


def parse_trivy(data: dict, source: str) -> ParsedScan:
    """Parse ``trivy image -f json`` output (SchemaVersion 2).

    A report without ``Results`` or a Result without ``Vulnerabilities`` is a clean
    scan. Only container image scans are accepted: a repository/filesystem scan, a
    Trivy Kubernetes report or another tool's report raises :class:`IngestError`.
    """
    _expect(data, "trivy", source)
    if data.get("SchemaVersion") != 2:
        raise IngestError(f"{source}: unsupported Trivy SchemaVersion {data.get('SchemaVersion')!r} (expected 2)")
    artifact_type = _text(data.get("ArtifactType"))
    artifact_name = _text(data.get("ArtifactName"))
    if artifact_type != "container_image":
        raise IngestError(
            f"{source}: is a Trivy {artifact_type or 'untyped'} scan of {artifact_name!r}, not an image scan"
        )
    metadata = data.get("Metadata") or {}
    if not isinstance(metadata, dict):
        raise IngestError(f"{source}: Metadata is {type(metadata).__name__}, expected an object")

    digest_ref = _first_reference(_strings(metadata.get("RepoDigests")), need_digest=True)
    named_ref = (
        _first_reference(_strings(metadata.get("RepoTags")))
        or _first_reference([_text(metadata.get("Reference"))])
        or _explicit_reference(artifact_name)
    )
    image_digest = digest_ref.digest if digest_ref else None
    if image_digest is None and artifact_name:
        # `trivy image repo@sha256:…` names the manifest digest only in ArtifactName.
        match = _AT_DIGEST_RE.search(artifact_name)
        image_digest = match.group(1) if match else None
    where = digest_ref or named_ref
    image_ref = named_ref or digest_ref

    os_info = metadata.get("OS") if isinstance(metadata.get("OS"), dict) else {}
    # Trivy writes Family "none" when OS detection was skipped or failed.
    os_family = _text(os_info.get("Family"))
    os_family = None if os_family == "none" else os_family
    eosl = os_info.get("EOSL")
    if not isinstance(eosl, bool):
        # EOSL is `omitempty`: absent means false once an OS was detected.
        eosl = False if os_family else None

    trivy_meta = data.get("Trivy") if isinstance(data.get("Trivy"), dict) else {}
    rows: list[dict] = []
    for r_index, result in enumerate(_list_at(data, "Results", source, "")):
        result = _dict_item(result, source, f"Results[{r_index}]")
        where_prefix = f"Results[{r_index}]."
        for v_index, vuln in enumerate(_list_at(result, "Vulnerabilities", source, where_prefix)):
            vuln = _dict_item(vuln, source, f"{where_prefix}Vulnerabilities[{v_index}]")
            vuln_id = _text(vuln.get("VulnerabilityID"))
            if vuln_id is None:
                raise IngestError(f"{source}: {where_prefix}Vulnerabilities[{v_index}] has no VulnerabilityID")
            fixed = _text(vuln.get("FixedVersion"))
            score, vector, cvss_source = _trivy_cvss(vuln.get("CVSS"), _text(vuln.get("SeveritySource")))
            rows.append(
                _row(
                    vulnerability_id=vuln_id,
                    pkg_name=_text(vuln.get("PkgName")),
                    pkg_type=_text(result.get("Type")),
                    installed_version=_text(vuln.get("InstalledVersion")),
                    fixed_version=fixed,
                    fix_state="fixed" if fixed else _text(vuln.get("Status")),
                    severity=normalize_severity(vuln.get("Severity")),
                    cvss_score=score,
                    cvss_vector=vector,
                    cvss_source=cvss_source,
                    published_at=parse_timestamp(vuln.get("PublishedDate")),
                    epss=None,
                    known_exploited=None,
                    target=_text(result.get("Target")),
                    **{"class": _text(result.get("Class"))},
                )
            )

    return ParsedScan(
        scanner="trivy",
        scanner_version=_text(trivy_meta.get("Version")),
        db_built=None,  # Trivy JSON does not record its DB build time.
        scanned_at=parse_timestamp(data.get("CreatedAt")),
        artifact_name=artifact_name,
        image_digest=image_digest,
        config_digest=_digest(metadata.get("ImageID")),
        image_ref=str(image_ref) if image_ref else None,
        registry=where.registry if where else None,
        repository=where.repository if where else None,
        os_family=os_family,
        os_name=_text(os_info.get("Name")),
        eosl=eosl,
        vulnerabilities=rows,
    )
