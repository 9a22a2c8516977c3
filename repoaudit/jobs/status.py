"""The Flux status of each repository: what image-reflector-controller would write into an
``ImageRepository``'s status, so ``repoaudit status`` reads like ``kubectl get imagerepository -o yaml``.

The collector records the fields per repository (``repository_status``); this module names the
Ready condition's reason from an error and turns the rows back into Flux objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pandas as pd

from repoaudit.errors import ConfigError
from repoaudit.model.reference import parse_reference

FLUX_API_VERSION = "image.toolkit.fluxcd.io/v1"


def flux_reason(exc: BaseException) -> str:
    """Flux's Ready condition reason for a failed scan."""
    # As image-reflector-controller's reconcile (internal/controller/imagerepository_controller.go) sets
    # them: ImageURLInvalid when spec.image does not parse; ReadOperationFailed when the scan fails,
    # whatever the registry answered (a 404 NAME_UNKNOWN and a 401 for refused credentials alike).
    # Flux's AuthenticationFailed is for credentials it cannot even assemble (a Secret that is missing
    # or malformed), which repoaudit refuses when it reads the files, before any collection.
    if isinstance(exc, ConfigError):
        return "ImageURLInvalid"
    return "ReadOperationFailed"


def canonical_image_name(registry: str, repository: str) -> str:
    try:
        return parse_reference(f"{registry}/{repository}").canonical
    except ConfigError:
        return f"{registry}/{repository}"  # oci:/path layouts are not references


def _json_list(value: Any) -> list:
    """A JSON list column: NULL (an empty list is stored as NULL) reads back as []."""
    return json.loads(value) if isinstance(value, str) else []


def _iso(value: Any) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_documents(rows: Iterable[Any]) -> list[dict]:
    """``ImageRepository`` objects (plain dicts) from the ``repository_status`` query's rows."""
    docs = []
    for row in rows:
        namespace, _, name = (row.name or "").rpartition("/") if isinstance(row.name, str) else ("", "", "")
        meta = {"name": name or row.repository}
        if namespace:
            meta["namespace"] = namespace
        condition = {"type": "Ready", "status": "True" if row.ready else "False", "reason": row.reason,
                     "message": row.message, "lastTransitionTime": _iso(row.scan_time)
                     or _iso(row.last_handled_reconcile_at)}
        status: dict[str, Any] = {"canonicalImageName": row.canonical_image_name, "conditions": [condition],
                                  "lastHandledReconcileAt": _iso(row.last_handled_reconcile_at)}
        if row.ready:
            status["lastScanResult"] = {"latestTags": _json_list(row.latest_tags),
                                        "scanTime": _iso(row.scan_time), "tagCount": int(row.tag_count)}
        status["observedExclusionList"] = _json_list(row.observed_exclusion_list)
        docs.append({"apiVersion": FLUX_API_VERSION, "kind": "ImageRepository", "metadata": meta,
                     "spec": {"image": row.canonical_image_name}, "status": status})
    return docs
