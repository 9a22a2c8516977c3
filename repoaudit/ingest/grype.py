"""Grype JSON reports (``grype -o json``) into a :class:`ParsedScan`."""

from __future__ import annotations

from typing import Any

from repoaudit.errors import IngestError
from repoaudit.ingest.scan_common import (
    ParsedScan,
    _class_from_type,
    _dict,
    _dict_item,
    _digest,
    _expect,
    _explicit_reference,
    _first_reference,
    _float,
    _list,
    _list_at,
    _row,
    _strings,
    _text,
    normalize_severity,
)
from repoaudit.model.timestamps import parse_timestamp

# grype source schemes that still name an image reference after the prefix.
_GRYPE_IMAGE_SCHEMES = ("docker:", "podman:", "registry:", "containerd:")


def _grype_cvss_rank(entry: dict) -> tuple[int, int]:
    version = str(entry.get("version") or "")
    if version.startswith("3"):
        rank = 0 if version == "3.1" else 1
    elif version.startswith("4"):
        rank = 2
    elif version.startswith("2"):
        rank = 3
    else:
        rank = 4
    # NVD lists the CNA's score as "Secondary"; NVD's own analysis is "Primary".
    secondary = 1 if str(entry.get("type") or "").lower() == "secondary" else 0
    return rank, secondary


def _grype_source_name(entry_source: Any, namespace: Any) -> str | None:
    source = _text(entry_source)
    if source:
        # NVD names the scorer by e-mail; "nvd@nist.gov" is NVD itself.
        return "nvd" if source.lower() in ("nvd@nist.gov", "nvd") else source
    ns = _text(namespace)
    if not ns:
        return None
    head = ns.split(":", 1)[0]
    # Named as Trivy names the same authorities, so cvss_source is comparable across scanners.
    return {"github": "ghsa"}.get(head, head)


def _grype_cvss(vuln: dict, related: list) -> tuple[float | None, str | None, str | None]:
    own = _list(vuln.get("cvss"))
    candidates: list[tuple[dict, Any]] = [(e, vuln.get("namespace")) for e in own if isinstance(e, dict)]
    if not candidates:
        related_dicts = [r for r in related if isinstance(r, dict)]
        # NVD's record is the usual carrier of a score when the matched advisory has none.
        related_dicts.sort(key=lambda r: 0 if str(r.get("namespace", "")).startswith("nvd") else 1)
        for rel in related_dicts:
            entries = [(e, rel.get("namespace")) for e in _list(rel.get("cvss")) if isinstance(e, dict)]
            if entries:
                candidates = entries
                break
    scored = [(e, ns) for e, ns in candidates if _float(_dict(e.get("metrics")).get("baseScore")) is not None]
    if not scored:
        return None, None, None
    entry, namespace = min(scored, key=lambda pair: _grype_cvss_rank(pair[0]))
    return (
        _float(entry["metrics"]["baseScore"]),
        _text(entry.get("vector")),
        _grype_source_name(entry.get("source"), namespace),
    )


def _grype_fixed_version(vuln: dict, match: dict) -> str | None:
    # suggestedVersion is grype's pick for *this* installed version; fix.versions lists
    # fixes for every branch in advisory order, so [0] may be another branch's fix.
    for detail in _list(match.get("matchDetails")):
        if isinstance(detail, dict) and isinstance(detail.get("fix"), dict):
            suggested = _text(detail["fix"].get("suggestedVersion"))
            if suggested:
                return suggested
    fix = vuln.get("fix") if isinstance(vuln.get("fix"), dict) else {}
    versions = _strings(fix.get("versions"))
    return versions[0] if versions else None


def _grype_known_exploited(vuln: dict) -> bool | None:
    if vuln.get("knownExploited"):
        return True
    # knownExploited is omitted when empty, but only reports from grype versions with
    # KEV/EPSS enrichment (marked by "risk"/"epss") can say "not exploited".
    if any(key in vuln for key in ("knownExploited", "epss", "risk")):
        return False
    return None


def _strip_grype_scheme(user_input: str | None) -> str | None:
    if not user_input:
        return None
    for scheme in _GRYPE_IMAGE_SCHEMES:
        if user_input.startswith(scheme):
            return user_input[len(scheme) :]
    return user_input


def parse_grype(data: dict, source: str) -> ParsedScan:
    """Parse ``grype -o json`` output for an image source.

    ``image_digest`` prefers ``source.target.repoDigests`` (the digest a registry and
    Kubernetes know the image by, often a multi-arch index) over ``manifestDigest``
    (the platform manifest grype actually read). Directory/file scans raise
    :class:`IngestError`.
    """
    _expect(data, "grype", source)
    src = data.get("source") if isinstance(data.get("source"), dict) else {}
    source_type = _text(src.get("type"))
    if source_type not in (None, "image"):
        raise IngestError(f"{source}: is a Grype {source_type} scan, not an image scan")
    target = src.get("target") if isinstance(src.get("target"), dict) else {}
    user_input = _text(target.get("userInput"))

    repo_digests = _strings(target.get("repoDigests"))
    digest_ref = _first_reference(repo_digests, need_digest=True)
    input_ref = _explicit_reference(_strip_grype_scheme(user_input))
    named_ref = _first_reference(_strings(target.get("tags"))) or input_ref
    image_digest = (
        (digest_ref.digest if digest_ref else None)
        or (input_ref.digest if input_ref else None)
        or _digest(target.get("manifestDigest"))
    )
    where = digest_ref or named_ref
    image_ref = named_ref or digest_ref

    descriptor = data.get("descriptor") if isinstance(data.get("descriptor"), dict) else {}
    db = descriptor.get("db") if isinstance(descriptor.get("db"), dict) else {}
    # grype ≤0.7x: db.built; grype with the v6 database: db.status.built.
    db_status = db.get("status") if isinstance(db.get("status"), dict) else {}
    version = _text(descriptor.get("version"))
    distro = data.get("distro") if isinstance(data.get("distro"), dict) else {}

    rows: list[dict] = []
    for index, match in enumerate(_list_at(data, "matches", source, "")):
        match = _dict_item(match, source, f"matches[{index}]")
        vuln = _dict_item(match.get("vulnerability"), source, f"matches[{index}].vulnerability")
        artifact = _dict_item(match.get("artifact") or {}, source, f"matches[{index}].artifact")
        vuln_id = _text(vuln.get("id"))
        if vuln_id is None:
            raise IngestError(f"{source}: matches[{index}].vulnerability has no id")
        related = _list(match.get("relatedVulnerabilities"))
        score, vector, cvss_source = _grype_cvss(vuln, related)
        fix = vuln.get("fix") if isinstance(vuln.get("fix"), dict) else {}
        epss_list = vuln.get("epss") if isinstance(vuln.get("epss"), list) else []
        epss = _float(epss_list[0].get("epss")) if epss_list and isinstance(epss_list[0], dict) else None
        locations = artifact.get("locations") if isinstance(artifact.get("locations"), list) else []
        location = _text(locations[0].get("path")) if locations and isinstance(locations[0], dict) else None
        pkg_type = _text(artifact.get("type"))
        rows.append(
            _row(
                vulnerability_id=vuln_id,
                pkg_name=_text(artifact.get("name")),
                pkg_type=pkg_type,
                installed_version=_text(artifact.get("version")),
                fixed_version=_grype_fixed_version(vuln, match),
                fix_state=_text(fix.get("state")),
                severity=normalize_severity(vuln.get("severity")),
                cvss_score=score,
                cvss_vector=vector,
                cvss_source=cvss_source,
                # grype's JSON carries no publication date, not even on related records.
                published_at=None,
                epss=epss,
                known_exploited=_grype_known_exploited(vuln),
                target=location,
                **{"class": _class_from_type(pkg_type)},
            )
        )

    return ParsedScan(
        scanner="grype",
        scanner_version=None if version in (None, "[not provided]") else version,
        db_built=parse_timestamp(db.get("built") or db_status.get("built")),
        scanned_at=parse_timestamp(descriptor.get("timestamp")),
        artifact_name=user_input,
        image_digest=image_digest,
        config_digest=_digest(target.get("imageID")),
        image_ref=str(image_ref) if image_ref else None,
        registry=where.registry if where else None,
        repository=where.repository if where else None,
        os_family=_text(distro.get("name")),
        os_name=_text(distro.get("version")),
        eosl=None,  # grype does not report end-of-life.
        vulnerabilities=rows,
    )
