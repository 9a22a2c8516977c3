"""A moved release tag for the demo: a release re-pushed over its own tag for one epoch.

The demo estate's history moves only floating tags (``latest``, ``stable``), as a disciplined
team would. So that ``mutable_release_tags`` and the report's "tags that moved" have a real row,
:func:`repush_release_tag` does what a careless (or hostile) push does to one layout of the estate
written for an epoch: it writes a second manifest for a release tag (the same config and layers,
one more annotation, so another digest) and points the tag at it. The next epoch rewrites every
``index.json`` from the history, which moves the tag back: two moves of one release tag, the
second of them the restore. Neither is a rollback (both manifests share the config, so the
same ``created``), which leaves the demo's one rollback (``payments/ledger:stable``) alone.

The demo's posture rows need nothing from here: collecting an OCI layout probes it from its
permission bits (``collect.posture.probe_layout``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

REF_NAME = "org.opencontainers.image.ref.name"
RELEASE = re.compile(r"v?\d+\.\d+\.\d+")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Which repository's release is re-pushed: a service whose releases run in the cluster.
REPOSITORY = "payments/gateway"


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in tag.lstrip("v").split("."))


def repush_release_tag(root: Path, repository: str = REPOSITORY) -> tuple[str, str, str] | None:
    """Point ``repository``'s oldest single-platform release tag at a re-pushed copy of its manifest.

    The oldest, because it was there in the epoch before too: the demo then records both moves, away and back.

    Returns ``(repository:tag, old digest, new digest)``, or None when the layout holds no such tag.
    """
    layout = Path(root) / repository
    index_path = layout / "index.json"
    if not index_path.is_file():
        return None
    index = json.loads(index_path.read_text())
    releases = [d for d in index["manifests"]
                if RELEASE.fullmatch(d.get("annotations", {}).get(REF_NAME, "")) and d["mediaType"] == OCI_MANIFEST]
    if not releases:
        return None
    descriptor = min(releases, key=lambda d: _version(d["annotations"][REF_NAME]))
    tag = descriptor["annotations"][REF_NAME]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / descriptor["digest"].split(":", 1)[1]).read_bytes())
    manifest.setdefault("annotations", {})["org.opencontainers.image.description"] = (
        "re-pushed over a release tag outside the release pipeline (repoaudit demo)")
    body = (json.dumps(manifest, indent=2) + "\n").encode()
    digest = hashlib.sha256(body).hexdigest()
    tmp = blobs / f".{digest}.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, blobs / digest)
    old = descriptor["digest"]
    descriptor.update(digest=f"sha256:{digest}", size=len(body))
    tmp = layout / ".index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(tmp, index_path)
    return f"{repository}:{tag}", old, f"sha256:{digest}"


def posture_lines(audit) -> list[str]:
    """What ``repoaudit demo`` prints of posture, moved release tags and remediation (the report has the rest)."""
    lines = ["registry posture (an OCI layout: the anonymous client is any other local user):"]
    for row in audit.query("registry_posture").itertuples():
        lines.append(f"  {row.registry}: {', '.join(row.findings) or 'no findings'}")
    moves = audit.query("mutable_release_tags", include_floating=False)
    lines.append(f"release tags that moved: {len(moves)}")
    for row in moves.itertuples():
        lines.append(f"  {row.repository}:{row.tag} {row.from_digest[:19]} -> {row.to_digest[:19]} "
                     f"between {row.moved_after:%Y-%m-%d} and {row.moved_before:%Y-%m-%d}")
    as_of = audit.sql("SELECT max(started_at) AS at FROM latest_snapshot")["at"].iloc[0]
    mttr = audit.query("remediation_mttr", by_month=False, as_of=as_of)
    breaches = audit.query("sla_breaches", as_of=as_of)
    lines.append(f"remediation: {int(mttr['fixed'].sum())} findings fixed, {int(mttr['open'].sum())} open; "
                 f"{len(breaches)} SLA breaches in running images")
    for severity, part in mttr[mttr["fixed"] > 0].groupby("severity", sort=False):
        days = (part["mttr_days"] * part["fixed"]).sum() / part["fixed"].sum()
        lines.append(f"  {severity.lower():<8} mean {days:.1f} days to a fixed image ({int(part['fixed'].sum())} fixed)")
    return lines
