"""Manifest and config parsing on the OCI spec's own examples and on the odd cases registries hold."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES
from repoaudit.errors import UnsupportedMediaType
from repoaudit.model.manifest import DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST, parse_config, parse_manifest, sha256_digest, verify_digest

OCI = FIXTURES / "oci"


def load(name: str) -> bytes:
    return (OCI / name).read_bytes()


def test_spec_image_manifest_with_subject():
    body = load("image-manifest-example.json")
    m = parse_manifest(body, sha256_digest(body))
    assert (m.kind, m.media_type, m.size) == ("image", OCI_MANIFEST, len(body))
    assert m.config.size == 7023 and m.has_image_config
    assert [l.size for l in m.layers] == [32654, 16724, 73109]
    assert m.subject == "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270"
    assert m.annotations == {"com.example.key1": "value1", "com.example.key2": "value2"}
    assert m.artifact_type is None


def test_spec_index():
    body = load("image-index-example.json")
    m = parse_manifest(body, sha256_digest(body))
    assert m.kind == "index" and m.media_type == OCI_INDEX
    assert [c.platform["architecture"] for c in m.children] == ["ppc64le", "amd64"]


def test_spec_layout_index_with_nested_index_and_foreign_descriptor():
    body = load("image-layout-index-example.json")
    m = parse_manifest(body, sha256_digest(body))
    assert m.kind == "index"
    assert {c.media_type for c in m.children} >= {OCI_INDEX, OCI_MANIFEST, "application/xml"}


def test_spec_config():
    body = load("image-config-example.json")
    cfg = parse_config(body, sha256_digest(body))
    assert cfg.created == "2015-10-31T22:22:56.015925234Z"
    assert (cfg.architecture, cfg.os) == ("amd64", "linux")


def test_media_type_from_header_or_shape():
    body = json.dumps({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                      "digest": "sha256:" + "a" * 64, "size": 2},
                       "layers": []}).encode()
    assert parse_manifest(body, "sha256:x", "application/json").media_type == OCI_MANIFEST
    idx = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert parse_manifest(idx, "sha256:y", None).kind == "index"


def test_schema1_is_recorded_not_fatal():
    body = json.dumps({"schemaVersion": 1, "name": "old/app", "tag": "1",
                       "fsLayers": [{"blobSum": "sha256:" + "1" * 64}, {"blobSum": "sha256:" + "2" * 64}],
                       "signatures": [{}]}).encode()
    m = parse_manifest(body, sha256_digest(body), DOCKER_SCHEMA1_SIGNED)
    assert m.kind == "schema1" and m.media_type == DOCKER_SCHEMA1_SIGNED
    assert [l.digest[-1] for l in m.layers] == ["2", "1"]  # base first, as in schema 2
    assert all(l.size is None for l in m.layers)


def test_artifacts_get_an_artifact_type():
    helm = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                                  "digest": "sha256:" + "c" * 64, "size": 100},
                       "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                                   "digest": "sha256:" + "d" * 64, "size": 5000}]}).encode()
    m = parse_manifest(helm, sha256_digest(helm))
    assert m.artifact_type == "application/vnd.cncf.helm.config.v1+json" and not m.has_image_config
    sig = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": "sha256:" + "e" * 64, "size": 233},
                      "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                                  "digest": "sha256:" + "f" * 64, "size": 250}]}).encode()
    assert parse_manifest(sig, sha256_digest(sig)).artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"


def test_unknown_media_type_is_kept():
    body = json.dumps({"mediaType": "application/vnd.example.thing+json"}).encode()
    m = parse_manifest(body, "sha256:z")
    assert m.kind == "unknown" and m.media_type == "application/vnd.example.thing+json"


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b"\xff\xfe"])
def test_garbage_raises(body):
    with pytest.raises(UnsupportedMediaType):
        parse_manifest(body, "sha256:bad")


def test_verify_digest():
    assert verify_digest(sha256_digest(b"abc"), b"abc")
    assert not verify_digest(sha256_digest(b"abc"), b"abd")
    assert verify_digest("blake9:whatever", b"abc")  # unknown algorithm: trusted, not failed
