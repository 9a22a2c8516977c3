"""Classification of referrers and verdicts on malformed signatures, without a registry."""
from __future__ import annotations

import base64

from supplychain import new_key, payload_for, public_pem, sign_bytes

from repoaudit.model.manifest import Descriptor, Manifest
from repoaudit.model.signatures import load_public_key, verify_layer
from repoaudit.model.supply import classify, predicate_name, subject_of_tag

SUBJECT = "sha256:" + "a" * 64


def manifest(artifact_type=None, layer_type="application/octet-stream", layer_annotations=None, subject=None):
    return Manifest(digest="sha256:" + "b" * 64, media_type="application/vnd.oci.image.manifest.v1+json", size=1,
                    kind="image", artifact_type=artifact_type, subject=subject,
                    layers=[Descriptor(layer_type, "sha256:" + "c" * 64, 1, annotations=layer_annotations)])


def test_tags_name_their_subject():
    assert subject_of_tag("sha256-" + "a" * 64 + ".sig") == (SUBJECT, "sig")
    assert subject_of_tag("sha256-" + "a" * 64) == (SUBJECT, None)
    assert subject_of_tag("sha256-" + "a" * 63 + ".sig") is None
    assert subject_of_tag("v1.sig") is None


def test_classification():
    assert classify(manifest(layer_type="application/vnd.dev.cosign.simplesigning.v1+json")).category == "signature"
    assert classify(manifest("application/vnd.cncf.notary.signature")).scheme == "notation"
    att = classify(manifest(layer_type="application/vnd.dsse.envelope.v1+json",
                            layer_annotations={"predicateType": "https://cyclonedx.org/bom/v1.5"}))
    assert (att.category, att.predicate) == ("attestation", "cyclonedx")
    assert classify(manifest("application/vnd.cyclonedx+json")).category == "sbom"
    assert classify(manifest("application/vnd.example.thing", subject=SUBJECT)).category == "other"
    assert classify(manifest()) is None
    assert predicate_name("https://slsa.dev/provenance/v0.2") == "slsa-provenance"
    assert predicate_name("https://example.com/custom") == "other"


def test_malformed_signatures_are_invalid_with_a_reason():
    private = new_key("ed25519")
    key = load_public_key(public_pem(private))
    good = payload_for("r", SUBJECT)
    sig = base64.b64encode(sign_bytes(private, good)).decode()
    annotation = "dev.cosignproject.cosign/signature"

    def verdict(annotations, payload, payload_error=None):
        [v] = verify_layer(0, annotations, payload, payload_error, SUBJECT, (key,))
        return v.status, v.reason

    assert verdict({annotation: sig}, good)[0] == "valid"
    assert verdict({}, good) == ("invalid", f"no {annotation} annotation")
    assert verdict({annotation: "***"}, good) == ("invalid", "signature annotation is not base64")
    no_digest = b'{"critical": {"image": {}}}'
    assert verdict({annotation: base64.b64encode(sign_bytes(private, no_digest)).decode()}, no_digest) == (
        "invalid", "payload has no critical.image.docker-manifest-digest")
    assert verdict({annotation: sig}, None, "payload unreadable: too large") == (
        "invalid", "payload unreadable: too large")
    [bad_cert] = verify_layer(0, {annotation: sig, "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----\nx"},
                              good, None, SUBJECT, (key,))
    assert bad_cert.status == "invalid" and bad_cert.reason.startswith("certificate unreadable")
