"""Parsers for vulnerability scan reports: Trivy JSON, Grype JSON and CycloneDX JSON.

Each parser turns one report into a :class:`ParsedScan`: who scanned what, when,
and one row per finding *as reported* (one CVE on four packages is four rows).
Nothing here touches the database; the store decides how to key and join.

Image identity is split on purpose:

* ``image_digest`` is a registry *manifest* digest (what ``RepoDigests`` and a
  Kubernetes ``repo@sha256:`` imageID carry) and joins with registry snapshots;
* ``config_digest`` is the image ID (config blob digest), which a registry never
  lists as a manifest but which kind/containerd report as a bare ``sha256:`` imageID.

``registry``/``repository`` are canonicalised with :mod:`repoaudit.model.reference`, so a
Docker Hub image is ``index.docker.io/library/alpine`` whichever spelling the
scanner used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from repoaudit import loader
from repoaudit.errors import ConfigError, IngestError
from repoaudit.model.reference import ImageReference, parse_reference
from repoaudit.model.timestamps import parse_timestamp

__all__ = [
    "OS_PACKAGE_TYPES",
    "ParsedScan",
    "SCANNERS",
    "SEVERITIES",
    "VULNERABILITY_KEYS",
    "load_report",
    "normalize_severity",
    "parse_cyclonedx",
    "parse_grype",
    "parse_trivy",
    "parse_timestamp",
]

SCANNERS = ("trivy", "grype", "cyclonedx")
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "NEGLIGIBLE", "UNKNOWN")
VULNERABILITY_KEYS = (
    "vulnerability_id",
    "pkg_name",
    "pkg_type",
    "installed_version",
    "fixed_version",
    "fix_state",
    "severity",
    "cvss_score",
    "cvss_vector",
    "cvss_source",
    "published_at",
    "epss",
    "known_exploited",
    "target",
    "class",
)
# Package types (grype artifact types / purl types) that come from the OS package
# manager; used to fill ``class`` where the report does not say, in Trivy's vocabulary.
OS_PACKAGE_TYPES = frozenset({"apk", "deb", "rpm", "alpm", "portage", "ebuild"})

_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_AT_DIGEST_RE = re.compile(r"@(sha256:[a-f0-9]{64})")


@dataclass
class ParsedScan:
    """One scan report, normalised. ``vulnerabilities`` rows have exactly :data:`VULNERABILITY_KEYS`."""

    scanner: str
    scanner_version: str | None
    db_built: datetime | None
    scanned_at: datetime | None
    artifact_name: str | None
    image_digest: str | None
    config_digest: str | None
    image_ref: str | None
    registry: str | None
    repository: str | None
    os_family: str | None
    os_name: str | None
    eosl: bool | None
    vulnerabilities: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def normalize_severity(value: Any) -> str:
    """Upper-case a scanner's severity; anything outside :data:`SEVERITIES` becomes ``UNKNOWN``.

    CycloneDX's ``info`` and ``none`` (no security impact) map to ``NEGLIGIBLE``,
    grype's name for the same thing.
    """
    if not isinstance(value, str):
        return "UNKNOWN"
    upper = value.strip().upper()
    if upper in ("INFO", "NONE"):
        return "NEGLIGIBLE"
    return upper if upper in SEVERITIES else "UNKNOWN"


def _text(value: Any) -> str | None:
    """A non-empty string, else None (reports use "" for 'absent')."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    value = value.strip()
    return value or None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and v.strip()]


def _try_reference(text: str | None) -> ImageReference | None:
    # Reports carry placeholders such as "<none>@<none>" for untagged images; those
    # are not references and must not stop the report from loading.
    if not text:
        return None
    try:
        return parse_reference(text)
    except ConfigError:
        return None


def _first_reference(candidates: Iterable[str | None], *, need_digest: bool = False) -> ImageReference | None:
    for candidate in candidates:
        ref = _try_reference(candidate)
        if ref is not None and (ref.digest or not need_digest):
            return ref
    return None


def _explicit_reference(text: str | None) -> ImageReference | None:
    """A free-text target (ArtifactName, userInput) counts only with a tag or digest.

    Without that, a tarball path like ``testdata/images/alpine.tar.gz`` would parse
    as a Docker Hub repository.
    """
    ref = _try_reference(text)
    if ref is None or (ref.tag is None and ref.digest is None):
        return None
    return ref


def _digest(value: Any) -> str | None:
    text = _text(value)
    return text if text and _SHA256_RE.fullmatch(text) else None


def _row(**values: Any) -> dict:
    return {key: values.get(key) for key in VULNERABILITY_KEYS}


def _class_from_type(pkg_type: str | None) -> str | None:
    if not pkg_type:
        return None
    return "os-pkgs" if pkg_type in OS_PACKAGE_TYPES else "lang-pkgs"


def _sniff(data: Any) -> str | None:
    """Name the report format ``data`` looks like, for 'wrong parser' errors."""
    if isinstance(data, list):
        return "JSON array (not a report object; Trivy schema v1?)"
    if not isinstance(data, dict):
        return None
    if data.get("bomFormat") == "CycloneDX":
        return "CycloneDX"
    if "spdxVersion" in data:
        return "SPDX"
    if "runs" in data and ("sarif" in str(data.get("$schema", "")).lower() or data.get("version") == "2.1.0"):
        return "SARIF"
    if "matches" in data and ("descriptor" in data or "source" in data):
        return "Grype"
    if "artifacts" in data and "artifactRelationships" in data:
        return "Syft"
    if "ClusterName" in data and "Resources" in data:
        return "Trivy Kubernetes"
    if "SchemaVersion" in data and ("ArtifactName" in data or "ArtifactType" in data or "Results" in data):
        return "Trivy"
    return None


_EXPECTED = {"trivy": "Trivy", "grype": "Grype", "cyclonedx": "CycloneDX"}


def _expect(data: Any, scanner: str, source: str) -> dict:
    found = _sniff(data)
    wanted = _EXPECTED[scanner]
    if found == wanted:
        return data
    if found is None:
        shape = f"keys {sorted(data)[:6]}" if isinstance(data, dict) else type(data).__name__
        raise IngestError(f"{source}: not a {wanted} JSON report (found {shape})")
    raise IngestError(f"{source}: is a {found} report, not a {wanted} JSON report")


def _list_at(container: dict, key: str, source: str, where: str) -> list:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise IngestError(f"{source}: {where}{key} is {type(value).__name__}, expected a list")
    return value


def _dict_item(item: Any, source: str, where: str) -> dict:
    if not isinstance(item, dict):
        raise IngestError(f"{source}: {where} is {type(item).__name__}, expected an object")
    return item


# --------------------------------------------------------------------------- Trivy

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


# --------------------------------------------------------------------------- Grype

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


# --------------------------------------------------------------------------- CycloneDX

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


# --------------------------------------------------------------------------- files

_PARSERS = {"trivy": parse_trivy, "grype": parse_grype, "cyclonedx": parse_cyclonedx}


def read_text(path: Path) -> str:
    """A report file as text: unreadable, oversized, non-UTF-8 and empty files are :class:`IngestError`."""
    return loader.read_text(path, kind="scan")


def _read_json(path: Path) -> Any:
    text = read_text(path)
    if text.lstrip().startswith("<"):
        raise IngestError(f"{path}: looks like XML; only JSON reports are supported")
    return loader.parse_document(text, name=str(path), kind="scan", fmt="json")


def load_report(path: Path, scanner: str) -> ParsedScan:
    """Read and parse one report file; ``scanner`` is ``"trivy"``, ``"grype"`` or ``"cyclonedx"``.

    An unreadable, empty, non-UTF-8, malformed or truncated file, or a report of
    another kind than ``scanner``, raises :class:`IngestError` with a one-line
    message naming the file. An unknown ``scanner`` raises :class:`ConfigError`.
    """
    parser = _PARSERS.get(scanner)
    if parser is None:
        raise ConfigError(f"unknown scanner {scanner!r} (expected one of {', '.join(SCANNERS)})")
    path = Path(path)
    return parser(_read_json(path), str(path))
