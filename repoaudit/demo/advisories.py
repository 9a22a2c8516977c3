"""The demo scanner's advisories and the Trivy report documents built from them.

The catalogues live in ``data/advisories.csv``, one row per advisory::

    catalog,id,packages,installed_version,fixed_version,status,severity,cvss,published,gate,title

``packages`` is space-separated (one finding each); ``fixed_version`` is empty
when ``status`` is ``affected`` (no fix yet) or ``will_not_fix``; ``cvss`` is the
CVSS v3 score, empty for none. For operating-system catalogues ``gate`` is the
base-release age in days above which an image still carries the advisory (``-``:
every release); for language catalogues ``*`` means a repository's dependencies
pick it up by chance and fix it at some generation, ``only:REPO|REPO`` that those
repositories carry it in every build. Rows keep their order in each catalogue,
which is the order of findings in a report.

``data/scans.json`` says which catalogues each base image (``os_catalogs``) and
Dockerfile profile (``app_catalogs``) carries, each root base's OS family, what
Trivy calls each catalogue's packages (``result_kind``), its data sources, the
CVSS vectors of the scores used, and the public images scanned nightly.

The advisories are real: CVE IDs, affected packages, severities and publication dates
follow the public records (NVD, GitHub, Debian, Ubuntu and Alpine trackers). Installed
and fixed versions and CVSS scores are representative of those records, not an
authoritative copy, and which image carries which advisory is invented.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from repoaudit.demo.derive import hexdigest, rfc3339, rng, uuid
from repoaudit.demo.tables import data_json, data_text

TRIVY_VERSION = "0.65.0"
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
STATUSES = ("fixed", "affected", "will_not_fix")


@dataclass(frozen=True)
class Advisory:
    catalog: str
    id: str
    packages: tuple[str, ...]
    installed: str
    fixed: str | None
    status: str
    severity: str
    cvss: float | None
    published: date
    gate: str
    title: str


def _load_catalogs(name: str = "advisories.csv") -> dict[str, tuple[Advisory, ...]]:
    catalogs: dict[str, list[Advisory]] = defaultdict(list)
    for line, row in enumerate(csv.DictReader(io.StringIO(data_text(name))), start=2):
        try:
            adv = Advisory(row["catalog"], row["id"], tuple(row["packages"].split()), row["installed_version"],
                           row["fixed_version"] or None, row["status"], row["severity"],
                           float(row["cvss"]) if row["cvss"] else None, date.fromisoformat(row["published"]),
                           row["gate"], row["title"])
            if (adv.severity not in SEVERITIES or adv.status not in STATUSES or not adv.packages
                    or (adv.fixed is None) != (adv.status != "fixed")):
                raise ValueError(row)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{name}:{line}: bad advisory row {row!r}") from None
        catalogs[adv.catalog].append(adv)
    return {catalog: tuple(rows) for catalog, rows in catalogs.items()}


CATALOGS = _load_catalogs()
_SCANS = data_json("scans.json")
OS_CATALOGS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _SCANS["os_catalogs"].items()}
APP_CATALOGS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _SCANS["app_catalogs"].items()}
OS_FAMILY: dict[str, str] = _SCANS["os_family"]
# (result Type, Class, Target or None for the OS line) per catalogue.
RESULT_KIND: dict[str, tuple[str, str, str | None]] = {
    k: (v["type"], v["class"], v["target"]) for k, v in _SCANS["result_kind"].items()}
DATA_SOURCES: dict[str, dict[str, str]] = _SCANS["data_sources"]
VECTORS: dict[float, str] = {float(score): vector for score, vector in _SCANS["cvss_vectors"].items()}
# image -> (base, OS version, base age in days, OS catalogues, language catalogues)
PUBLIC_SCANS: dict[str, tuple[str, str, float, tuple[str, ...], tuple[str, ...]]] = {
    image: (s["base"], s["os_name"], float(s["base_age_days"]), tuple(s["os_catalogs"]), tuple(s["app_catalogs"]))
    for image, s in _SCANS["public_scans"].items()}
_unknown = {c for cs in (*OS_CATALOGS.values(), *APP_CATALOGS.values()) for c in cs} - set(CATALOGS) | (
    set(CATALOGS) - set(RESULT_KIND))
if _unknown:
    raise ValueError(f"scans.json and advisories.csv disagree on catalogues: {', '.join(sorted(_unknown))}")


def os_findings(catalogs: tuple[str, ...], age: float, scanned: datetime) -> list[Advisory]:
    out = []
    for name in catalogs:
        for adv in CATALOGS[name]:
            if adv.published > scanned.date():
                continue
            if adv.gate == "-" or age > float(adv.gate):
                out.append(adv)
    return out


def app_findings(catalogs: tuple[str, ...], source: str, generation: int, generations: int,
                 scanned: datetime) -> list[Advisory]:
    out = []
    for name in catalogs:
        for adv in CATALOGS[name]:
            if adv.published > scanned.date():
                continue
            if adv.gate.startswith("only:"):
                if source in adv.gate[5:].split("|"):
                    out.append(adv)
                continue
            draw = rng("app", source, adv.id)
            if draw.random() >= 0.45:
                continue
            # The generation that upgraded the library: a fraction of the way through the
            # repository's history, or never (fractions above 1) for some.
            fixed_at = draw.uniform(0.15, 1.35) * generations
            if generation < fixed_at:
                out.append(adv)
    return out


def _vulnerability(adv: Advisory, package: str, result_type: str, os_distro: str | None,
                   scanned: datetime) -> dict:
    if result_type in ("debian", "ubuntu", "alpine"):
        purl = f"pkg:{'apk' if result_type == 'alpine' else 'deb'}/{result_type}/{package}@{adv.installed}"
        purl += f"?arch=amd64&distro={os_distro}"
    elif result_type == "jar":
        group, _, artifact = package.partition(":")
        purl = f"pkg:maven/{group}/{artifact}@{adv.installed}"
    elif result_type == "python-pkg":
        purl = f"pkg:pypi/{package}@{adv.installed}"
    elif result_type == "node-pkg":
        purl = f"pkg:npm/{package}@{adv.installed}"
    else:
        purl = f"pkg:golang/{package}@{adv.installed}"
    source = "nvd" if adv.severity != "UNKNOWN" else None
    vuln: dict[str, Any] = {
        "VulnerabilityID": adv.id,
        "PkgID": f"{package}@{adv.installed}",
        "PkgName": package,
        "PkgIdentifier": {"PURL": purl},
        "InstalledVersion": adv.installed,
    }
    if adv.fixed:
        vuln["FixedVersion"] = adv.fixed
    vuln["Status"] = adv.status
    if source:
        vuln["SeveritySource"] = source
    vuln["PrimaryURL"] = (f"https://avd.aquasec.com/nvd/{adv.id.lower()}" if adv.id.startswith("CVE-")
                          else f"https://security-tracker.debian.org/tracker/{adv.id}")
    vuln["DataSource"] = DATA_SOURCES[result_type]
    vuln["Title"] = adv.title
    vuln["Severity"] = adv.severity
    if adv.cvss is not None:
        entry: dict[str, Any] = {"V3Score": adv.cvss}
        if adv.cvss in VECTORS:
            entry = {"V3Vector": VECTORS[adv.cvss], "V3Score": adv.cvss}
        vuln["CVSS"] = {"nvd": entry}
    if adv.id.startswith("CVE-"):
        moment = datetime.combine(adv.published, time(15, 15))
        vuln["PublishedDate"] = rfc3339(moment)
        vuln["LastModifiedDate"] = rfc3339(min(moment + timedelta(days=120), scanned))
    return vuln


def trivy_results(artifact: str, os_family: str, os_name: str, os_catalogs: tuple[str, ...],
                  app_catalogs: tuple[str, ...], os_advisories: list[Advisory], app_advisories: list[Advisory], scanned: datetime) -> list[dict]:
    distro = f"{os_family}-{os_name}"
    results: list[dict] = []
    # Trivy always writes the OS result, even when clean; language results only when packages were found.
    os_vulns = [_vulnerability(a, p, RESULT_KIND[a.catalog][0], distro, scanned)
                for a in os_advisories if RESULT_KIND[a.catalog][1] == "os-pkgs" for p in a.packages]
    results.append({"Target": f"{artifact} ({os_family} {os_name})", "Class": "os-pkgs", "Type": os_family,
                    **({"Vulnerabilities": os_vulns} if os_vulns else {})})
    lang: dict[tuple[str, str], list[dict]] = {}
    for name in (*os_catalogs, *app_catalogs):
        kind, klass, target = RESULT_KIND[name]
        if klass == "lang-pkgs":
            lang.setdefault((target, kind), [])
    for adv in (*os_advisories, *app_advisories):
        kind, klass, target = RESULT_KIND[adv.catalog]
        if klass == "lang-pkgs":
            lang[(target, kind)].extend(_vulnerability(adv, p, kind, None, scanned) for p in adv.packages)
    for (target, kind), vulns in lang.items():
        results.append({"Target": target, "Class": "lang-pkgs", "Type": kind,
                        **({"Vulnerabilities": vulns} if vulns else {})})
    return results


def trivy_report(*, artifact: str, image_ref: str, repo_digest: str | None, image_id: str, size: int, arch: str,
                 os_family: str, os_name: str, results: list[dict], scanned: datetime,
                 with_repo_digest: bool) -> dict:
    metadata: dict[str, Any] = {"Size": size, "OS": {"Family": os_family, "Name": os_name}, "ImageID": image_id,
                                "RepoTags": [image_ref]}
    if with_repo_digest and repo_digest:
        metadata["RepoDigests"] = [repo_digest]
    metadata["ImageConfig"] = {"architecture": arch, "os": "linux"}
    nanos = int(hexdigest("nanos", artifact, scanned.isoformat())[:8], 16) % 1_000_000_000
    return {
        "SchemaVersion": 2,
        "Trivy": {"Version": TRIVY_VERSION},
        "ReportID": str(uuid(artifact, scanned)),
        "CreatedAt": rfc3339(scanned, nanos=nanos),
        "ArtifactName": artifact,
        "ArtifactType": "container_image",
        "Metadata": metadata,
        "Results": results,
    }

