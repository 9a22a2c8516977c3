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

This module is the parsers' face: it reads a report file and hands it to the scanner's parser
(``trivy.py``, ``grype.py``, ``cyclonedx.py``, sharing ``scan_common.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repoaudit import loader
from repoaudit.errors import ConfigError, IngestError
from repoaudit.ingest.cyclonedx import parse_cyclonedx
from repoaudit.ingest.grype import parse_grype
from repoaudit.ingest.scan_common import (
    OS_PACKAGE_TYPES,
    SCANNERS,
    SEVERITIES,
    VULNERABILITY_KEYS,
    ParsedScan,
    normalize_severity,
)
from repoaudit.ingest.trivy import parse_trivy
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
