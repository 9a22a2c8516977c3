"""Supply-chain artifacts: what a manifest that refers to an image is, and which tags name a subject.

Registries keep signatures, attestations and SBOMs next to the images they describe, found three ways:

- cosign's tag conventions: ``sha256-<hex>.sig`` / ``.att`` / ``.sbom`` in the image's repository;
- the OCI 1.1 referrers tag schema (registries without the referrers API): the tag ``sha256-<hex>``
  holds an index whose entries are the manifests whose ``subject`` is ``sha256:<hex>``;
- the OCI 1.1 referrers API, ``GET /v2/<name>/referrers/<digest>``, and any manifest's ``subject``.

Pure values only: the collector decides where a manifest was found, this module what it is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from repoaudit.model.manifest import Manifest

COSIGN_TAG = re.compile(r"^sha256-([0-9a-f]{64})(?:\.(sig|att|sbom))?$")

COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
COSIGN_ARTIFACT_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

# In-toto predicate types by what they say, prefix-matched (versions vary: v0.1, v0.2, v1).
PREDICATES = (
    ("https://slsa.dev/provenance/", "slsa-provenance"),
    ("https://spdx.dev/Document", "spdx"),
    ("https://cyclonedx.org/bom", "cyclonedx"),
    ("https://cosign.sigstore.dev/attestation/vuln/", "vulnerability"),
    ("https://openvex.dev/ns", "vex"),
)

SBOM_TYPES = ("spdx", "cyclonedx", "syft")


@dataclass(frozen=True)
class Classified:
    """What a referrer is: ``category`` (signature, attestation, sbom, other), its ``scheme``
    (cosign, notation, in-toto, or the SBOM format) and, for attestations, the predicate."""

    category: str
    scheme: str | None = None
    predicate_type: str | None = None
    predicate: str | None = None


def subject_of_tag(tag: str) -> tuple[str, str | None] | None:
    """``("sha256:<hex>", suffix)`` for a cosign or fallback tag (suffix ``None`` for the fallback), else None."""
    match = COSIGN_TAG.match(tag)
    if match is None:
        return None
    return "sha256:" + match.group(1), match.group(2)


def predicate_name(predicate_type: str | None) -> str | None:
    if not predicate_type:
        return None
    for prefix, name in PREDICATES:
        if predicate_type.startswith(prefix):
            return name
    return "other"


def _is_sbom_type(media_type: str | None) -> bool:
    return bool(media_type) and any(s in media_type.lower() for s in SBOM_TYPES)


def classify(m: Manifest, tag_suffix: str | None = None) -> Classified | None:
    """What ``m`` is as a supply-chain artifact, or None when it is an ordinary image or index.

    ``tag_suffix`` is the cosign tag it was found under (sig, att, sbom), when it was.
    """
    layer_types = [l.media_type or "" for l in m.layers]
    artifact = m.artifact_type or ""
    if COSIGN_SIMPLESIGNING in layer_types or artifact == COSIGN_ARTIFACT_SIG or tag_suffix == "sig":
        return Classified("signature", "cosign")
    if artifact.startswith(NOTATION_SIGNATURE):
        return Classified("signature", "notation")
    if DSSE_ENVELOPE in layer_types or artifact in (DSSE_ENVELOPE, IN_TOTO) or tag_suffix == "att":
        predicate_type = m.annotations.get("in-toto.io/predicate-type")
        for layer in m.layers:
            predicate_type = predicate_type or (layer.annotations or {}).get("predicateType")
        return Classified("attestation", "in-toto", predicate_type, predicate_name(predicate_type))
    if _is_sbom_type(artifact) or tag_suffix == "sbom" or any(_is_sbom_type(t) for t in layer_types):
        fmt = next((s for s in SBOM_TYPES if s in (artifact + " " + " ".join(layer_types)).lower()), None)
        return Classified("sbom", fmt)
    if m.subject is not None or m.artifact_type is not None:
        return Classified("other", None)
    return None
