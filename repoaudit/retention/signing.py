"""A plan's own hash and optional signature, so ``retention apply`` can tell an edited plan from the one written.

``plan_sha256`` is the SHA-256 of the plan's *canonical* JSON: the document without
``plan_sha256`` and ``signature``, keys sorted, no insignificant whitespace, UTF-8.
Re-indenting a plan keeps it valid; changing any value does not.

A signature covers the same canonical bytes. Two kinds of key file are accepted,
told apart by their content:

``ed25519``      a PEM Ed25519 key (``openssl genpkey -algorithm ed25519 -out plan.key``;
                 ``openssl pkey -in plan.key -pubout -out plan.pub``). The job that plans
                 holds the private key; whoever applies needs only the public key, so
                 they can check a plan but not forge one. Needs the ``cryptography``
                 package.
``hmac-sha256``  any other file: its bytes are a shared secret (``head -c 32 /dev/urandom
                 > plan.key``). Whoever can verify can also sign.

``key_id`` (the first 16 hex digits of the SHA-256 of the public key, or of the secret)
names the key in error messages without revealing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from repoaudit.errors import ConfigError, PlanVerificationError

__all__ = ["canonical_bytes", "plan_digest", "sign_document", "verify_signature"]

_UNSIGNED = ("plan_sha256", "signature")


def canonical_bytes(doc: dict, default: Any = None) -> bytes:
    """The bytes ``plan_sha256`` and the signature cover (see the module docstring)."""
    body = {k: v for k, v in doc.items() if k not in _UNSIGNED}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=default).encode()


def plan_digest(doc: dict, default: Any = None) -> str:
    return hashlib.sha256(canonical_bytes(doc, default)).hexdigest()


def _read_key(path: str | Path) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read key: {exc.strerror or exc}") from None
    if not data.strip():
        raise ConfigError(f"{path}: the key file is empty")
    return data


def _pem_key(data: bytes, path: str | Path, *, private: bool):
    """An Ed25519 key object for PEM ``data``; None when ``data`` is not PEM (then it is an HMAC secret)."""
    if not data.lstrip().startswith(b"-----BEGIN"):
        return None
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ConfigError(f"{path}: PEM keys need the 'cryptography' package (pip install cryptography)") from None
    try:
        if b"PRIVATE KEY" in data:
            key = serialization.load_pem_private_key(data, password=None)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            return key if private else key.public_key()
        if private:
            raise ConfigError(f"{path}: a public key cannot sign; give the private key")
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return key
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an Ed25519 PEM key ({exc})") from None


def _public_id(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_document(doc: dict, key_path: str | Path, default: Any = None) -> dict:
    """The ``signature`` entry for ``doc`` made with the key in ``key_path``."""
    data = _read_key(key_path)
    message = canonical_bytes(doc, default)
    key = _pem_key(data, key_path, private=True)
    if key is not None:
        return {"algorithm": "ed25519", "key_id": _public_id(key.public_key()),
                "value": base64.b64encode(key.sign(message)).decode()}
    return {"algorithm": "hmac-sha256", "key_id": hashlib.sha256(data).hexdigest()[:16],
            "value": hmac.new(data, message, hashlib.sha256).hexdigest()}


def verify_signature(doc: dict, key_path: str | Path, where: str) -> None:
    """Raise :class:`PlanVerificationError` unless ``doc`` carries a valid signature by the key in ``key_path``."""
    data = _read_key(key_path)
    signature = doc.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        raise PlanVerificationError(f"{where}: the plan is not signed, and --verify-key requires a signature "
                                    "(sign it with 'retention plan --sign KEY')")
    message = canonical_bytes(doc)
    key = _pem_key(data, key_path, private=False)
    algorithm = signature.get("algorithm")
    if key is not None:
        want, key_id = "ed25519", _public_id(key)
    else:
        want, key_id = "hmac-sha256", hashlib.sha256(data).hexdigest()[:16]
    if algorithm != want:
        raise PlanVerificationError(f"{where}: signed with {algorithm!r}, but {key_path} is an {want} key")
    if want == "ed25519":
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(base64.b64decode(signature["value"], validate=True), message)
            return
        except (InvalidSignature, ValueError):
            pass
    elif hmac.compare_digest(hmac.new(data, message, hashlib.sha256).hexdigest(), signature["value"]):
        return
    raise PlanVerificationError(f"{where}: signature does not verify with {key_path} (key {key_id}; the plan "
                                f"names key {signature.get('key_id')}): the plan was changed or signed by "
                                "another key")
