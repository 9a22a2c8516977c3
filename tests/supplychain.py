"""Push supply-chain artifacts the way cosign and oras store them: signatures, attestations, SBOMs.

cosign's layout (sigstore/cosign pkg/oci/static, pkg/cosign/payload): a manifest tagged
``sha256-<hex>.sig`` whose layers are simple-signing payloads
(``application/vnd.dev.cosign.simplesigning.v1+json``) with the base64 signature of the payload bytes in
the layer annotation ``dev.cosignproject.cosign/signature``. OCI 1.1 artifacts carry ``subject`` and
``artifactType``; registries without the referrers API list them in an index under the tag ``sha256-<hex>``.
"""
from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from pusher import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Pusher, sha256_digest

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


def public_pem(private) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def new_key(kind: str = "ecdsa"):
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sign_bytes(private, data: bytes) -> bytes:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return private.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(data)
    return private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def payload_for(repo: str, digest: str) -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": f"registry.test/{repo}"},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"},
                       "optional": None}, separators=(",", ":")).encode()


def push_signature(pusher: Pusher, repo: str, subject: str, private=None, *, payload: bytes | None = None,
                   signature: str | None = None, certificate: str | None = None, signed_payload: bytes | None = None
                   ) -> str:
    """A cosign signature of ``subject`` under ``sha256-<hex>.sig``; the overrides make bad ones."""
    payload = payload if payload is not None else payload_for(repo, subject)
    if signature is None:
        signature = base64.b64encode(sign_bytes(private, signed_payload or payload)).decode()
    annotations = {"dev.cosignproject.cosign/signature": signature}
    if certificate:
        annotations["dev.sigstore.cosign/certificate"] = certificate
    layer = pusher.push_blob(repo, payload, SIMPLESIGNING)
    config = pusher.push_blob(repo, json.dumps({"architecture": "", "os": "", "config": {},
                                                "rootfs": {"type": "layers", "diff_ids": [layer.digest]}}).encode(),
                              OCI_CONFIG)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
                           "layers": [{"mediaType": SIMPLESIGNING, "digest": layer.digest, "size": layer.size,
                                       "annotations": annotations}]}).encode()
    return pusher.push_manifest(repo, f"sha256-{subject[7:]}.sig", manifest, OCI_MANIFEST)


def push_artifact(pusher: Pusher, repo: str, subject, artifact_type: str, layer_type: str, content: bytes,
                  layer_annotations: dict | None = None) -> tuple[str, int]:
    """An OCI 1.1 artifact with ``subject`` (a pushed image), pushed by digest; (digest, manifest size)."""
    empty = pusher.push_blob(repo, b"{}", EMPTY)
    layer = pusher.push_blob(repo, content, layer_type)
    desc = {"mediaType": layer_type, "digest": layer.digest, "size": layer.size}
    if layer_annotations:
        desc["annotations"] = layer_annotations
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                       "config": {"mediaType": EMPTY, "digest": empty.digest, "size": empty.size},
                       "layers": [desc],
                       "subject": {"mediaType": subject.media_type, "digest": subject.digest,
                                   "size": subject.size}}).encode()
    return pusher.push_manifest(repo, sha256_digest(body), body, OCI_MANIFEST), len(body)


def push_fallback_index(pusher: Pusher, repo: str, subject: str, referrers: list[tuple[str, int, str]]) -> str:
    """The referrers tag schema: an index of (digest, size, artifactType) under ``sha256-<hex>``."""
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": s, "artifactType": t}
                                     for d, s, t in referrers]}).encode()
    return pusher.push_manifest(repo, f"sha256-{subject[7:]}", body, OCI_INDEX)
