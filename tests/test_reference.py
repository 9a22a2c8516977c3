"""Image reference parsing: distribution/reference grammar, Flux canonical names, imageIDs."""

from __future__ import annotations

import dataclasses

import pytest

from repoaudit.errors import ConfigError
from repoaudit.model.reference import DOCKER_HUB_ALIASES, ImageReference, is_docker_hub, parse_image_id, parse_reference, validate_digest

D1 = "sha256:" + "1" * 64
D2 = "sha256:8b4501fe0fe221df663c22e16539f399e89594552f400408303c42f3dd8d0e52"


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "index.docker.io", "library/nginx", None, None),
        ("nginx:1.25", "index.docker.io", "library/nginx", "1.25", None),
        ("docker.io/nginx", "index.docker.io", "library/nginx", None, None),
        ("index.docker.io/nginx", "index.docker.io", "library/nginx", None, None),
        ("registry-1.docker.io/nginx", "index.docker.io", "library/nginx", None, None),
        ("docker.io/library/nginx", "index.docker.io", "library/nginx", None, None),
        ("sonobuoy/sonobuoy:v0.56.0", "index.docker.io", "sonobuoy/sonobuoy", "v0.56.0", None),
        ("k8s.gcr.io/coredns:1.7.0", "k8s.gcr.io", "coredns", "1.7.0", None),
        ("ghcr.io/stefanprodan/podinfo", "ghcr.io", "stefanprodan/podinfo", None, None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/team/app:dev", "localhost:5000", "team/app", "dev", None),
        ("registry.example.com:443/a/b/c", "registry.example.com:443", "a/b/c", None, None),
        ("[::1]:5000/app", "[::1]:5000", "app", None, None),
        (f"alpine@{D1}", "index.docker.io", "library/alpine", None, D1),
        (f"quay.io/org/app:1.0@{D1}", "quay.io", "org/app", "1.0", D1),
        ("a/b__c/d-e---f.g_h", "index.docker.io", "a/b__c/d-e---f.g_h", None, None),
        ("app:" + "x" * 128, "index.docker.io", "library/app", "x" * 128, None),
        # No '/', so ':5000' is a tag, exactly as `docker pull localhost:5000` reads it.
        ("localhost:5000", "index.docker.io", "library/localhost", "5000", None),
    ],
)
def test_parse_valid(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Nginx", "must be lowercase"),
        ("ghcr.io/Org/app", "must be lowercase"),
        (" nginx", "whitespace"),
        ("ngi nx", "whitespace"),
        ("https://ghcr.io/org/app", "URL scheme"),
        ("a//b", "empty path component"),
        ("a/b/", "empty path component"),
        ("foo:", "tag is empty"),
        ("foo:-bad", "tag '-bad'"),
        ("foo:" + "x" * 129, "at most 128"),
        ("foo/-bar", "path component '-bar'"),
        ("foo/bar-", "path component 'bar-'"),
        ("foo@sha256:abc", "64 hex characters"),
        ("foo@sha256:" + "A" * 64, "lowercase hexadecimal"),
        ("foo@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("foo@" + "a" * 64, "algorithm:hex"),
        (f"foo@{D1}@{D1}", "more than one '@'"),
        ("a" * 64, "image ID"),
        ("bad_host.example.com/app", "registry host"),
        ("ghcr.io/" + "a" * 256, "at most 255"),
        ("a" * 250, "at most 255"),  # Docker Hub: library/ + 250 is checked after normalisation
        ("a/" * 128 + "a:tag", "at most 255"),  # distribution/reference reference_test.go: ErrNameTooLong
        (":tag", "repository name is empty"),
    ],
)
def test_parse_invalid_says_why(text, reason):
    with pytest.raises(ConfigError) as info:
        parse_reference(text)
    message = str(info.value)
    assert message.startswith(f"invalid reference {text!r}: ")
    assert reason in message
    assert "\n" not in message


def test_non_string_is_config_error():
    with pytest.raises(ConfigError, match="expected a string"):
        parse_reference(None)  # type: ignore[arg-type]


def test_invalid_message_example_from_spec():
    with pytest.raises(ConfigError) as info:
        parse_reference("Nginx")
    assert str(info.value) == "invalid reference 'Nginx': repository name must be lowercase"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("nginx", "index.docker.io/library/nginx"),
        ("docker.io/fluxcd/flux:1.0", "index.docker.io/fluxcd/flux"),
        ("registry-1.docker.io/library/redis@" + D1, "index.docker.io/library/redis"),
        ("ghcr.io/stefanprodan/podinfo:6.0.0", "ghcr.io/stefanprodan/podinfo"),
        ("localhost:5000/app", "localhost:5000/app"),
    ],
)
def test_canonical_is_flux_canonical_image_name(text, canonical):
    ref = parse_reference(text)
    assert ref.canonical == canonical
    assert ref.name == canonical


def test_str_round_trips_in_canonical_form():
    assert str(parse_reference("nginx")) == "index.docker.io/library/nginx"
    assert str(parse_reference("nginx:1.25")) == "index.docker.io/library/nginx:1.25"
    assert str(parse_reference(f"org/app:1@{D1}")) == f"index.docker.io/org/app:1@{D1}"
    assert str(parse_reference(f"ghcr.io/a/b@{D1}")) == f"ghcr.io/a/b@{D1}"
    for text in ("nginx:1.25", f"ghcr.io/a/b:c@{D1}", "localhost:5000/x/y"):
        once = str(parse_reference(text))
        assert str(parse_reference(once)) == once


def test_upper_case_first_component_is_a_host_to_docker_not_to_flux():
    """distribution/reference splitDockerDomain: "MyOrg/app" names the host MyOrg (the kubelet tries to pull
    from it); go-containerregistry, which Flux uses, has no such host rule and refuses the upper-case name."""
    ref = parse_reference("MyOrg/app")
    assert (ref.registry, ref.repository) == ("MyOrg", "app")
    with pytest.raises(ConfigError, match="must be lowercase"):
        parse_reference("MyOrg/app", flux=True)


def test_effective_tag():
    assert parse_reference("nginx").effective_tag == "latest"
    assert parse_reference("nginx:1").effective_tag == "1"
    assert parse_reference(f"nginx@{D1}").effective_tag is None


def test_tag_and_digest_resolve_by_digest_and_drop_the_tag():
    """Docker pulls ``name:tag@digest`` by digest; the tag is parsed (distribution/reference keeps it) but
    names nothing that runs."""
    ref = parse_reference(f"ghcr.io/a/b:1.0@{D1}")
    assert (ref.tag, ref.digest, ref.effective_tag) == ("1.0", D1, None)
    assert ref.pulled == f"ghcr.io/a/b@{D1}"
    assert parse_reference("nginx").pulled == "index.docker.io/library/nginx:latest"
    assert parse_reference("nginx:1").pulled == "index.docker.io/library/nginx:1"


def test_reference_is_frozen_and_hashable():
    ref = parse_reference("nginx:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "2"  # type: ignore[misc]
    assert ref == ImageReference("index.docker.io", "library/nginx", "1", None)
    assert len({ref, parse_reference("docker.io/library/nginx:1")}) == 1


def test_docker_hub_aliases():
    assert DOCKER_HUB_ALIASES == {"docker.io", "index.docker.io", "registry-1.docker.io"}
    for host in ("docker.io", "index.docker.io", "registry-1.docker.io", "Docker.IO"):
        assert is_docker_hub(host)
    for host in ("ghcr.io", "docker.example.com", "", None, "localhost"):
        assert not is_docker_hub(host)


def test_validate_digest():
    assert validate_digest(D1) == D1
    assert validate_digest("sha512:" + "a" * 128) == "sha512:" + "a" * 128
    with pytest.raises(ConfigError, match="64 hex"):
        validate_digest("sha256:abcd")


# Kubernetes status.containerStatuses[].imageID, in the forms the fixtures carry.
def test_image_id_containerd_repo_digest():
    ref, digest, kind = parse_image_id(
        "docker.io/sonobuoy/sonobuoy@sha256:f950a9ed5e4a943dfb640be1c763919c5016b34c6ce067d9a27c9a50972bf5e4"
    )
    assert kind == "repo-digest"
    assert digest == "sha256:f950a9ed5e4a943dfb640be1c763919c5016b34c6ce067d9a27c9a50972bf5e4"
    assert ref.registry == "index.docker.io"
    assert ref.repository == "sonobuoy/sonobuoy"
    assert ref.digest == digest


def test_image_id_docker_pullable():
    ref, digest, kind = parse_image_id(f"docker-pullable://k8s.gcr.io/nginx-slim@{D2}")
    assert (ref.registry, ref.repository, digest, kind) == ("k8s.gcr.io", "nginx-slim", D2, "repo-digest")


def test_image_id_bare_config_digest():
    image_id = "sha256:bfe3a36ebd2528b454be6aebece806db5b40407b833e2af9617bf39afaff8c16"
    assert parse_image_id(image_id) == (None, image_id, "image-id")
    assert parse_image_id(f"docker://{image_id}") == (None, image_id, "image-id")


def test_image_id_empty():
    assert parse_image_id("") == (None, None, "empty")
    assert parse_image_id(None) == (None, None, "empty")


@pytest.mark.parametrize(
    ("image_id", "reason"),
    [
        ("nginx:1.25", "no @digest"),
        ("sha256:xyz", "lowercase hexadecimal"),
        (f"docker-pullable://Bad/Name@{D1}", "must be lowercase"),
    ],
)
def test_image_id_invalid(image_id, reason):
    with pytest.raises(ConfigError) as info:
        parse_image_id(image_id)
    assert str(info.value).startswith(f"invalid imageID {image_id!r}: ")
    assert reason in str(info.value)


def test_the_255_limit_counts_the_path_not_the_domain():
    """distribution/reference Parse: len(repo.path) > RepositoryNameTotalLengthMax is ErrNameTooLong;
    the domain is not counted (reference_test.go accepts 255 characters of path with a tag)."""
    ref = parse_reference("a/" * 127 + "a:tag-puts-this-over-max")
    assert len(ref.repository) == 255 and ref.tag == "tag-puts-this-over-max"
    long_domain = parse_reference("registry.example.com:5000/" + "b" * 255)
    assert long_domain.registry == "registry.example.com:5000" and len(long_domain.repository) == 255
