"""What every scan report parser shares: the parsed-report type, severity names, and tolerant
readers for the fields scanners spell loosely (text, numbers, lists, image references)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from repoaudit.errors import ConfigError, IngestError
from repoaudit.model.reference import ImageReference, parse_reference

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
