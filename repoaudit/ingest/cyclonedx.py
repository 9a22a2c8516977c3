"""CycloneDX JSON (an SBOM with ``vulnerabilities``, as Trivy and Grype write it) into a :class:`ParsedScan`."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from repoaudit.errors import IngestError
from repoaudit.ingest.scan_common import (
    SEVERITIES,
    ParsedScan,
    _class_from_type,
    _dict_item,
    _digest,
    _expect,
    _explicit_reference,
    _first_reference,
    _float,
    _list,
    _list_at,
    _row,
    _text,
    _try_reference,
    normalize_severity,
)
from repoaudit.model.reference import ImageReference
from repoaudit.model.timestamps import parse_timestamp

_CDX_METHOD_RANK = {"CVSSv31": 0, "CVSSv3": 1, "CVSSv4": 2, "CVSSv2": 3}
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_RECOMMENDATION_RE = re.compile(r"\bto version (.+?)\s*$", re.IGNORECASE)


def _properties(component: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in _list(component.get("properties")):
        if isinstance(prop, dict) and isinstance(prop.get("name"), str) and isinstance(prop.get("value"), str):
            out.setdefault(prop["name"], []).append(prop["value"])
    return out


def _purl_type(purl: str | None) -> str | None:
    if not purl or not purl.startswith("pkg:"):
        return None
    kind = purl[4:].lstrip("/").split("/", 1)[0]
    return kind.lower() or None


def _oci_purl_reference(purl: str | None) -> ImageReference | None:
    """``pkg:oci/alpine@sha256%3A…?repository_url=index.docker.io/library/alpine`` → reference."""
    if not purl or not purl.startswith("pkg:oci/"):
        return None
    parts = urlsplit(purl)
    path = unquote(parts.path.split("/", 1)[1] if "/" in parts.path else "")
    _, _, digest = path.partition("@")
    repo_url = parse_qs(parts.query).get("repository_url", [None])[0]
    if not repo_url or not digest:
        return None
    return _try_reference(f"{repo_url}@{digest}")


def _walk_components(components: Any, into: dict[str, dict]) -> None:
    for component in _list(components):
        if isinstance(component, dict):
            ref = component.get("bom-ref")
            if isinstance(ref, str):
                into[ref] = component
            _walk_components(component.get("components"), into)


def _cdx_tool(metadata: dict) -> tuple[str | None, str | None]:
    tools = metadata.get("tools")
    if isinstance(tools, dict):  # CycloneDX 1.5+: {"components": [...], "services": [...]}
        tools = _list(tools.get("components")) + _list(tools.get("services"))
    for tool in _list(tools):
        if isinstance(tool, dict) and _text(tool.get("name")):
            return _text(tool.get("name")), _text(tool.get("version"))
    return None, None


def _cdx_source_name(obj: dict) -> str | None:
    source = obj.get("source")
    return _text(source.get("name")) if isinstance(source, dict) else None


def _cdx_pick_rating(ratings: list[dict], source_name: str | None, want: str) -> dict | None:
    """The rating Trivy itself would use: the data source's, then NVD's; v3.x before v2."""

    def usable(rating: dict) -> bool:
        if want == "score":
            return _float(rating.get("score")) is not None
        return normalize_severity(rating.get("severity")) != "UNKNOWN"

    def rank(rating: dict) -> int:
        return _CDX_METHOD_RANK.get(str(rating.get("method")), 4)

    for name in [n for n in (source_name, "nvd", "redhat", "ghsa") if n]:
        same = [r for r in ratings if usable(r) and _cdx_source_name(r) == name]
        if same:
            return min(same, key=rank)
    rest = [r for r in ratings if usable(r)]
    if not rest:
        return None
    if want == "score":
        return min(rest, key=rank)
    # No rating from a known authority: take the most severe rather than guess one.
    return min(rest, key=lambda r: _SEVERITY_RANK[normalize_severity(r.get("severity"))])


def _cdx_fixed_version(vuln: dict) -> str | None:
    recommendation = _text(vuln.get("recommendation"))
    if recommendation:
        # Trivy writes "Upgrade <pkg> to version <fixed>[, <fixed>]".
        match = _RECOMMENDATION_RE.search(recommendation)
        if match:
            return match.group(1)
    return None


def parse_cyclonedx(data: dict, source: str) -> ParsedScan:
    """Parse a CycloneDX 1.4–1.7 JSON BOM with a ``vulnerabilities`` section.

    One row per (vulnerability, ``affects[]`` entry). A BOM without vulnerabilities
    is a clean scan. A BOM whose ``metadata.component`` is not a container raises
    :class:`IngestError`; one without ``metadata.component`` loads with no image identity.
    """
    _expect(data, "cyclonedx", source)
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    subject = metadata.get("component") if isinstance(metadata.get("component"), dict) else {}
    subject_type = _text(subject.get("type"))
    if subject and subject_type != "container":
        raise IngestError(
            f"{source}: is a CycloneDX BOM of a {subject_type or 'untyped'} component, not a container image"
        )
    props = _properties(subject)

    repo_digests = props.get("aquasecurity:trivy:RepoDigest", []) + props.get("aquasecurity:trivy:RepoDigests", [])
    digest_ref = _first_reference(repo_digests, need_digest=True)
    purl_ref = _oci_purl_reference(_text(subject.get("purl")) or _text(subject.get("bom-ref")))
    named_ref = _first_reference(props.get("aquasecurity:trivy:RepoTag", []))
    named_ref = named_ref or _explicit_reference(_text(subject.get("name")))
    image_digest = (digest_ref.digest if digest_ref else None) or (purl_ref.digest if purl_ref else None)
    where = digest_ref or purl_ref or named_ref
    image_ref = named_ref or digest_ref or purl_ref
    image_ids = props.get("aquasecurity:trivy:ImageID", [])

    components: dict[str, dict] = {}
    _walk_components(data.get("components"), components)
    parents: dict[str, str] = {}
    for dep in _list(data.get("dependencies")):
        if isinstance(dep, dict) and isinstance(dep.get("ref"), str):
            for child in _list(dep.get("dependsOn")):
                if isinstance(child, str):
                    parents.setdefault(child, dep["ref"])
    os_component = next((c for c in components.values() if c.get("type") == "operating-system"), None)

    def context(ref: str) -> tuple[str | None, str | None]:
        """(class, target) from the nearest ancestor that Trivy tagged with a Class."""
        seen: set[str] = set()
        current = parents.get(ref)
        while current and current not in seen:
            seen.add(current)
            parent = components.get(current)
            if parent is not None:
                klass = (_properties(parent).get("aquasecurity:trivy:Class") or [None])[0]
                if klass:
                    name = _text(parent.get("name"))
                    if parent.get("type") == "operating-system" and _text(parent.get("version")):
                        name = f"{name} {parent['version']}"
                    return klass, name
            current = parents.get(current)
        return None, None

    tool_name, tool_version = _cdx_tool(metadata)
    rows: list[dict] = []
    for index, vuln in enumerate(_list_at(data, "vulnerabilities", source, "")):
        vuln = _dict_item(vuln, source, f"vulnerabilities[{index}]")
        vuln_id = _text(vuln.get("id"))
        if vuln_id is None:
            raise IngestError(f"{source}: vulnerabilities[{index}] has no id")
        ratings = [r for r in _list(vuln.get("ratings")) if isinstance(r, dict)]
        vuln_source = _cdx_source_name(vuln)
        sev_rating = _cdx_pick_rating(ratings, vuln_source, "severity")
        score_rating = _cdx_pick_rating(ratings, vuln_source, "score")
        fixed = _cdx_fixed_version(vuln)
        analysis = vuln.get("analysis") if isinstance(vuln.get("analysis"), dict) else {}
        affects = [a for a in _list(vuln.get("affects")) if isinstance(a, dict)] or [{}]
        for affect in affects:
            ref = _text(affect.get("ref"))
            component = components.get(ref, {}) if ref else {}
            purl = _text(component.get("purl")) or (ref if ref and ref.startswith("pkg:") else None)
            status = None
            installed = _text(component.get("version"))
            for version in _list(affect.get("versions")):
                if isinstance(version, dict) and version.get("status") == "affected":
                    status = "affected"
                    installed = installed or _text(version.get("version"))
                    break
            pkg_type = _purl_type(purl)
            klass, target = context(ref) if ref else (None, None)
            rows.append(
                _row(
                    vulnerability_id=vuln_id,
                    pkg_name=_text(component.get("name")) or ref,
                    pkg_type=pkg_type,
                    installed_version=installed,
                    fixed_version=fixed,
                    fix_state="fixed" if fixed else (_text(analysis.get("state")) or status),
                    severity=normalize_severity(sev_rating.get("severity") if sev_rating else None),
                    cvss_score=_float(score_rating.get("score")) if score_rating else None,
                    cvss_vector=_text(score_rating.get("vector")) if score_rating else None,
                    cvss_source=_cdx_source_name(score_rating) if score_rating else None,
                    published_at=parse_timestamp(vuln.get("published")),
                    epss=None,
                    known_exploited=None,
                    target=target,
                    **{"class": klass or _class_from_type(pkg_type)},
                )
            )

    return ParsedScan(
        scanner=tool_name or "cyclonedx",
        scanner_version=tool_version,
        db_built=None,
        scanned_at=parse_timestamp(metadata.get("timestamp")),
        artifact_name=_text(subject.get("name")),
        image_digest=image_digest,
        config_digest=_digest(image_ids[0]) if image_ids else None,
        image_ref=str(image_ref) if image_ref else None,
        registry=where.registry if where else None,
        repository=where.repository if where else None,
        os_family=_text(os_component.get("name")) if os_component else None,
        os_name=_text(os_component.get("version")) if os_component else None,
        eosl=None,
        vulnerabilities=rows,
    )
