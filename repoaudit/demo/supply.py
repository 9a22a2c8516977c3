"""The demo estate's supply chain: real cosign signatures (most by the demo key, some by a rogue key),
signatures copied onto images they do not name, and SPDX SBOMs attached through the referrers tag schema.

Ed25519 signatures are deterministic, and both keys are derived from fixed seeds, so the estate's bytes stay a
pure function of its seed. The demo collects with the demo key's public half (given to collect by
the demo), so ``unsigned_deployed_images``, ``signature_coverage`` and ``sbom_coverage`` show real rows.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from repoaudit.model.signatures import TrustedKey, load_public_key

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"
REF_NAME = "org.opencontainers.image.ref.name"


def _key(name: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


DEMO_KEY = _key("repoaudit demo signing key")
ROGUE_KEY = _key("repoaudit demo rogue key")


def _pick(digest: str, salt: str, one_in: int) -> bool:
    return int(hashlib.sha256(f"{salt}/{digest}".encode()).hexdigest()[:8], 16) % one_in == 0


def sign(payload: bytes, target_digest: str) -> str:
    """The base64 signature cosign would store; one image in eleven is signed by a key nobody trusts."""
    key = ROGUE_KEY if _pick(target_digest, "rogue", 11) else DEMO_KEY
    return base64.b64encode(key.sign(payload)).decode()


def trusted_key() -> TrustedKey:
    return load_public_key(public_pem(), "demo key")


def public_pem() -> bytes:
    return DEMO_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)


def _dump(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _blob(layout: Path, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest[7:]
    if not path.exists():
        path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def add_supply_artifacts(estate: Path) -> dict[str, int]:
    """Attach SBOMs to some tagged images and copy signatures onto others, in every layout under ``estate``.

    Run on the final epoch's layouts (an earlier epoch rewrites index.json files). Returns what was added.
    """
    added = {"sboms": 0, "copied_signatures": 0}
    for index_file in sorted(estate.rglob("index.json")):
        layout = index_file.parent
        index = json.loads(index_file.read_bytes())
        entries = index["manifests"]
        tags = {d["annotations"][REF_NAME]: d for d in entries}
        signed = {t[7:71] for t in tags if t.startswith("sha256-") and t.endswith(".sig")}
        images = sorted({d["digest"]: d for t, d in tags.items() if not t.startswith("sha256-")}.values(),
                        key=lambda d: d["digest"])
        some_signature = next((tags[t] for t in sorted(tags) if t.endswith(".sig")), None)
        for desc in images:
            hexpart = desc["digest"][7:]
            if _pick(desc["digest"], "sbom", 4) and f"sha256-{hexpart}" not in tags:
                sbom = _dump({"spdxVersion": "SPDX-2.3", "name": layout.name, "documentNamespace":
                              f"https://demo.repoaudit.invalid/{layout.name}/{hexpart[:12]}", "packages": []})
                empty = _blob(layout, b"{}")
                manifest = _dump({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SPDX,
                                  "config": {"mediaType": EMPTY, **empty},
                                  "layers": [{"mediaType": SPDX, **_blob(layout, sbom)}],
                                  "subject": {"mediaType": desc["mediaType"], "digest": desc["digest"],
                                              "size": desc["size"]}})
                referrer = _blob(layout, manifest)
                fallback = _dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                    {"mediaType": OCI_MANIFEST, "artifactType": SPDX, **referrer}]})
                entries.append({"mediaType": OCI_INDEX, **_blob(layout, fallback),
                                "annotations": {REF_NAME: f"sha256-{hexpart}"}})
                added["sboms"] += 1
            elif some_signature and hexpart not in signed and _pick(desc["digest"], "copied", 9):
                # A signature lifted from another image of the repository: it verifies, but names that image.
                entries.append({**some_signature, "annotations": {REF_NAME: f"sha256-{hexpart}.sig"}})
                added["copied_signatures"] += 1
        if some_signature and _pick(str(layout.relative_to(estate)), "deleted", 5):
            # The signature of an image deleted since: its tag outlives the subject, as cosign leaves it.
            gone = hashlib.sha256(f"deleted/{layout.relative_to(estate)}".encode()).hexdigest()
            entries.append({**some_signature, "annotations": {REF_NAME: f"sha256-{gone}.sig"}})
            added["dangling_signatures"] = added.get("dangling_signatures", 0) + 1
        index_file.write_text(json.dumps(index, indent=2) + "\n")
    return added


def echo_supply_chain(audit, echo) -> None:
    """The demo's supply-chain headline: signature and SBOM coverage, and what runs without a valid signature."""
    sig = audit.query("signature_coverage")
    sbom = audit.query("sbom_coverage")
    unsigned = audit.query("unsigned_deployed_images")
    echo("")
    echo(f"supply chain: {int(sig['signed'].sum())} of {int(sig['images'].sum())} images signed, "
         f"{int(sig['verified'].sum())} verified with the demo key, {int(sig['invalid'].sum())} invalid; "
         f"{int(sbom['with_sbom'].sum())} carry an SBOM")
    statuses = unsigned["signature_status"].value_counts().sort_index()
    echo(f"running images without a valid signature: {len(unsigned)} ("
         + ", ".join(f"{n} {status}" for status, n in statuses.items()) + ")")
