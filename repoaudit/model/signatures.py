"""Offline verification of cosign signatures: trusted public keys, the simple-signing payload, keyless certificates.

A cosign signature manifest (tag ``sha256-<hex>.sig``) holds one layer per signature: the layer's blob is
the *simple-signing payload*, a JSON document naming the signed manifest in
``critical.image.docker-manifest-digest``, and the layer's annotation ``dev.cosignproject.cosign/signature``
holds the base64 signature of those payload bytes. A signature is ``valid`` for a key when the key verifies
it *and* the payload names the subject the signature is attached to: a signature copied from another image
verifies cryptographically but names the other digest, and is ``invalid``.

What is not checked, because it needs the network: keyless signatures (a Fulcio certificate in the
annotation ``dev.sigstore.cosign/certificate``) are recorded with the certificate's identity and issuer
and the status ``unverified (keyless)``; neither the certificate chain to Fulcio's root nor the
transparency-log (Rekor) inclusion is checked, nor are key revocations.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from repoaudit.errors import ConfigError
from repoaudit.model.supply import (
    COSIGN_CERTIFICATE_ANNOTATION,
    COSIGN_SIGNATURE_ANNOTATION,
)

VALID = "valid"
INVALID = "invalid"
KEYLESS = "unverified (keyless)"

# Fulcio's certificate extensions naming the OIDC issuer: v1 holds the raw string, v2 a DER UTF8String.
FULCIO_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
FULCIO_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")

# A simple-signing payload is a few hundred bytes; cosign's own limit is far above anything legitimate.
MAX_PAYLOAD = 128 * 1024


@dataclass(frozen=True)
class TrustedKey:
    """A public key signatures are checked against, named by the sha256 of its DER SubjectPublicKeyInfo."""

    fingerprint: str
    algorithm: str
    key: object = field(repr=False, compare=False)
    source: str = ""


@dataclass(frozen=True)
class TrustRule:
    """A key trusted for the repositories matching any of ``repositories`` (shell globs, as ``--repo``)."""

    repositories: tuple[str, ...]
    key: TrustedKey

    def covers(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, g) for g in self.repositories)


def load_public_key(data: bytes, source: str = "key") -> TrustedKey:
    """A PEM public key (ECDSA P-256/P-384, Ed25519 or RSA), as ``cosign generate-key-pair`` writes ``cosign.pub``."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{source}: not a PEM public key ({str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
                          ) from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, (ec.SECP256R1, ec.SECP384R1)):
            raise ConfigError(f"{source}: ECDSA curve {key.curve.name} is not one cosign signs with (P-256, P-384)")
        algorithm = f"ecdsa-{key.curve.name}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    elif isinstance(key, rsa.RSAPublicKey):
        algorithm = f"rsa-{key.key_size}"
    else:
        raise ConfigError(f"{source}: unsupported key type {type(key).__name__} (ECDSA, Ed25519 or RSA)")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return TrustedKey("sha256:" + hashlib.sha256(der).hexdigest(), algorithm, key, source)


def load_key_file(path: str | Path) -> TrustedKey:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"verify key {p}: {exc.strerror or exc}") from None
    return load_public_key(data, f"verify key {p}")


def _verify(key: TrustedKey, signature: bytes, payload: bytes) -> bool:
    try:
        k = key.key
        if isinstance(k, ec.EllipticCurvePublicKey):
            digest = hashes.SHA384() if isinstance(k.curve, ec.SECP384R1) else hashes.SHA256()
            k.verify(signature, payload, ec.ECDSA(digest))
        elif isinstance(k, ed25519.Ed25519PublicKey):
            k.verify(signature, payload)
        else:
            k.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Verification:
    """One signature (layer ``position`` of a signature manifest) checked against one key (None: keyless)."""

    position: int
    key_fingerprint: str | None
    status: str
    reason: str
    signed_digest: str | None = None
    identity: str | None = None
    issuer: str | None = None


def payload_digest(payload: bytes) -> tuple[str | None, str | None]:
    """The manifest digest a simple-signing payload names, or (None, why not)."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"payload is not JSON ({exc.__class__.__name__})"
    digest = None
    if isinstance(doc, dict):
        critical = doc.get("critical")
        image = critical.get("image") if isinstance(critical, dict) else None
        digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        return None, "payload has no critical.image.docker-manifest-digest"
    return digest, None


def certificate_identity(pem: str) -> tuple[str | None, str | None, str | None]:
    """(identity, issuer, error) of a Fulcio certificate: its first email or URI SAN and its OIDC issuer."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        return None, None, f"certificate unreadable ({str(exc).splitlines()[0] if str(exc) else 'bad PEM'})"
    identity = issuer = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.RFC822Name) + san.get_values_for_type(x509.UniformResourceIdentifier)
        identity = names[0] if names else None
    except x509.ExtensionNotFound:
        pass
    for oid in (FULCIO_ISSUER_V2, FULCIO_ISSUER_V1):
        try:
            raw = cert.extensions.get_extension_for_oid(oid).value.value
        except x509.ExtensionNotFound:
            continue
        if oid == FULCIO_ISSUER_V2 and len(raw) > 2 and raw[0] == 0x0C:
            raw = raw[2:] if raw[1] < 0x80 else raw[2 + (raw[1] & 0x7F):]  # DER UTF8String: tag, length
        issuer = raw.decode("utf-8", "replace")
        break
    return identity, issuer, None


def verify_layer(position: int, annotations: dict | None, payload: bytes | None, payload_error: str | None,
                 subject: str, keys: tuple[TrustedKey, ...]) -> list[Verification]:
    """Every verdict on one signature layer: one per trusted key, or one keyless record.

    Never raises on what the registry served: a bad signature, payload or certificate is a verdict
    ``invalid`` with its reason.
    """
    annotations = annotations or {}
    signed, bad_payload = (None, payload_error) if payload is None else payload_digest(payload)
    cert = annotations.get(COSIGN_CERTIFICATE_ANNOTATION)
    identity = issuer = None
    if isinstance(cert, str) and cert.strip():
        identity, issuer, cert_error = certificate_identity(cert)
        if cert_error:
            return [Verification(position, None, INVALID, cert_error, signed)]
    encoded = annotations.get(COSIGN_SIGNATURE_ANNOTATION)
    signature, bad_signature = None, None
    if not isinstance(encoded, str) or not encoded:
        bad_signature = f"no {COSIGN_SIGNATURE_ANNOTATION} annotation"
    else:
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            bad_signature = "signature annotation is not base64"
    if cert:
        # The key is in the certificate, which only Fulcio's root (online trust material) vouches for.
        reason = "certificate chain and transparency log need the network; not checked offline"
        if bad_payload or bad_signature:
            return [Verification(position, None, INVALID, bad_payload or bad_signature, signed, identity, issuer)]
        if signed != subject:
            return [Verification(position, None, INVALID, f"payload names {signed}, not the subject", signed,
                                 identity, issuer)]
        return [Verification(position, None, KEYLESS, reason, signed, identity, issuer)]
    verdicts = []
    for key in keys:
        if bad_payload or bad_signature:
            verdicts.append(Verification(position, key.fingerprint, INVALID, bad_payload or bad_signature, signed))
        elif not _verify(key, signature, payload):
            verdicts.append(Verification(position, key.fingerprint, INVALID, "signature does not verify with this key",
                                         signed))
        elif signed != subject:
            verdicts.append(Verification(position, key.fingerprint, INVALID,
                                         f"signature verifies but its payload names {signed}, not the subject",
                                         signed))
        else:
            verdicts.append(Verification(position, key.fingerprint, VALID, "signature verifies; payload names "
                                         "the subject", signed))
    return verdicts
