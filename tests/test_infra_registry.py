"""The test infrastructure itself: a real registry, the pusher, skopeo as the referee.

Every repoaudit behaviour test trusts that what ``Pusher`` says it pushed is what the
registry holds, and that ``blob_store_bytes`` moves exactly as garbage collection
frees space. These tests check both against an independent client (skopeo), so a
bug in the infrastructure cannot pass for a bug (or a success) in repoaudit.
"""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import _skopeo_command
from pusher import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Pusher,
    layer_bytes,
    sha256_digest,
)
from registry import RegistryServer


def inspect(skopeo, ref: str, *extra: str) -> dict:
    return json.loads(skopeo("inspect", *extra, f"docker://{ref}"))


def raw(skopeo, ref: str) -> bytes:
    return skopeo("inspect", "--raw", f"docker://{ref}").encode()


def test_layer_bytes_are_deterministic_and_exact():
    assert layer_bytes("a", 5000) == layer_bytes("a", 5000)
    assert len(layer_bytes("a", 5000)) == 5000
    assert layer_bytes("a", 64) != layer_bytes("b", 64)
    assert layer_bytes("a", 0) == b""


def test_oci_image_round_trips_through_skopeo(registry, pusher, skopeo):
    image = pusher.push_image(
        "team/app",
        ["1.0", "latest"],
        layers=[layer_bytes("oci-1", 3000), layer_bytes("oci-2", 700)],
        created="2024-03-04T05:06:07Z",
        labels={"org.opencontainers.image.source": "https://example.invalid/app"},
    )
    assert image.media_type == OCI_MANIFEST
    assert image.digest == sha256_digest(image.manifest)
    assert [layer.size for layer in image.layers] == [3000, 700]

    for tag in ("1.0", "latest"):
        assert raw(skopeo, f"{registry.host}/team/app:{tag}") == image.manifest
    assert raw(skopeo, f"{registry.host}/team/app@{image.digest}") == image.manifest

    info = inspect(skopeo, f"{registry.host}/team/app:1.0")
    assert info["Digest"] == image.digest
    assert info["Created"] == "2024-03-04T05:06:07Z"
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Labels"] == {"org.opencontainers.image.source": "https://example.invalid/app"}
    assert info["Layers"] == [layer.digest for layer in image.layers]
    assert sorted(info["RepoTags"]) == ["1.0", "latest"]

    config = skopeo("inspect", "--config", "--raw", f"docker://{registry.host}/team/app:1.0").encode()
    assert sha256_digest(config) == image.config.digest
    assert len(config) == image.config.size
    assert json.loads(config)["rootfs"]["diff_ids"] == [layer.digest for layer in image.layers]


def test_docker_image_round_trips_through_skopeo(registry, pusher, skopeo):
    image = pusher.push_image(
        "legacy", ["v2"], layers=[layer_bytes("docker-1", 2048)], architecture="arm64", style="docker"
    )
    assert image.media_type == DOCKER_MANIFEST
    assert image.config.media_type == DOCKER_CONFIG
    assert image.layers[0].media_type == DOCKER_LAYER
    # docker push indents with three spaces; keeping that proves nobody re-serialises.
    assert image.manifest.startswith(b'{\n   "schemaVersion": 2')

    assert raw(skopeo, f"{registry.host}/legacy:v2") == image.manifest
    info = inspect(skopeo, f"{registry.host}/legacy:v2", "--override-arch", "arm64")
    assert info["Digest"] == image.digest
    assert (info["Architecture"], info["Created"]) == ("arm64", "2024-01-01T00:00:00Z")

    head = pusher.client.head("/v2/legacy/manifests/v2", headers={"Accept": DOCKER_MANIFEST})
    assert head.headers["Content-Type"] == DOCKER_MANIFEST
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert int(head.headers["Content-Length"]) == len(image.manifest)


@pytest.mark.parametrize(("style", "media_type"), [("oci", OCI_INDEX), ("docker", DOCKER_MANIFEST_LIST)])
def test_index_of_untagged_children(registry, pusher, skopeo, style, media_type):
    amd64 = pusher.push_image("multi", (), architecture="amd64", style=style)
    arm64 = pusher.push_image("multi", (), architecture="arm64", style=style)
    index = pusher.push_index("multi", ["1"], [amd64, arm64], style=style)
    assert index.media_type == media_type

    assert raw(skopeo, f"{registry.host}/multi:1") == index.manifest
    document = json.loads(index.manifest)
    assert [(m["digest"], m["size"], m["platform"]["architecture"]) for m in document["manifests"]] == [
        (amd64.digest, len(amd64.manifest), "amd64"),
        (arm64.digest, len(arm64.manifest), "arm64"),
    ]
    # skopeo resolves the platform but reports the digest of what the tag points at.
    picked = inspect(skopeo, f"{registry.host}/multi:1", "--override-arch", "arm64")
    assert picked["Digest"] == index.digest
    assert (picked["Architecture"], picked["Layers"]) == ("arm64", [arm64.layers[0].digest])
    # Children were pushed by digest only: the index is the one tag in the repository.
    assert pusher.tags("multi") == ["1"]


def test_cross_repository_mount(registry, pusher, skopeo):
    base = pusher.push_image("base", ["3.19"], layers=[layer_bytes("base-os", 4096)])
    before = len(registry.access_log_lines())
    app = pusher.push_image(
        "app", ["1"], shared_layers=base.layers, mount_from="base", layers=[layer_bytes("app", 512)]
    )
    new_lines = registry.access_log_lines()[before:]

    mounts = [line for line in new_lines if "mount=" in line]
    assert len(mounts) == 1 and '" 201 ' in mounts[0], new_lines
    # The shared layer travelled by mount, not by upload: one PUT for the app layer, one for the config.
    assert sum('"PUT /v2/app/blobs/uploads/' in line for line in new_lines) == 2, new_lines
    assert app.layers[0] == base.layers[0]
    assert inspect(skopeo, f"{registry.host}/app:1")["Layers"] == [base.layers[0].digest, app.layers[1].digest]

    assert pusher.mount_blob("app", sha256_digest(b"never pushed"), "base") is False
    assert pusher.mount_blob("other", base.layers[0].digest, "base") is True


def test_tags_list_and_retagging(registry, pusher, skopeo):
    first = pusher.push_image("svc", ["b", "a"])
    second = pusher.push_image("svc", ["c"])
    pusher.tag("svc", "a", second)  # move a tag
    pusher.tag("svc", "d", first)

    # Distribution 2.8 lists tags in directory order, not sorted (and does not page them).
    listed = pusher.client.get("/v2/svc/tags/list", params={"n": 2}).json()
    assert listed["name"] == "svc" and sorted(listed["tags"]) == ["a", "b", "c", "d"]
    assert sorted(json.loads(skopeo("list-tags", f"docker://{registry.host}/svc"))["Tags"]) == ["a", "b", "c", "d"]
    assert inspect(skopeo, f"{registry.host}/svc:a")["Digest"] == second.digest
    assert pusher.client.get("/v2/_catalog").json() == {"repositories": ["svc"]}


def test_delete_then_garbage_collect_frees_exactly_the_unique_blobs(registry, pusher, skopeo):
    shared = layer_bytes("shared-base", 10_000)
    keep = pusher.push_image("gc", ["keep"], layers=[shared, layer_bytes("keep-only", 3_000)])
    drop = pusher.push_image("gc", ["drop", "drop-too"], layers=[shared, layer_bytes("drop-only", 5_000)])
    # A second repository referencing the shared layer must not change the answer either.
    pusher.push_image("gc-other", ["x"], shared_layers=keep.layers[:1], mount_from="gc", layers=[])

    unique = {drop.config, drop.layers[1]}
    expected_freed = sum(blob.size for blob in unique) + len(drop.manifest)
    expected_gone = {blob.digest for blob in unique} | {drop.digest}
    bytes_before, digests_before = registry.blob_store_bytes(), registry.blob_digests()
    assert expected_gone <= digests_before

    pusher.delete_manifest("gc", drop.digest)
    assert pusher.tags("gc") == ["keep"]  # deleting a manifest drops its tags too
    assert registry.blob_store_bytes() == bytes_before  # nothing is freed until GC

    registry.stop()
    output = registry.garbage_collect()
    assert "blob eligible for deletion" in output
    registry.start()

    assert digests_before - registry.blob_digests() == expected_gone
    assert bytes_before - registry.blob_store_bytes() == expected_freed
    assert raw(skopeo, f"{registry.host}/gc:keep") == keep.manifest


def test_garbage_collect_delete_untagged(registry, pusher):
    tagged = pusher.push_image("u", ["t"])
    untagged = pusher.push_image("u", ())
    with pytest.raises(RuntimeError, match="stop the registry"):
        registry.garbage_collect()
    registry.stop()

    before = registry.blob_store_bytes()
    registry.garbage_collect(delete_untagged=True)
    freed = before - registry.blob_store_bytes()
    assert freed == untagged.config.size + untagged.layers[0].size + len(untagged.manifest)
    assert tagged.digest in registry.blob_digests()


def test_delete_untagged_also_removes_children_of_a_tagged_index(registry, pusher):
    """Pins a Distribution 2.8 behaviour (upstream issue distribution/distribution#3178).

    ``--delete-untagged`` treats the untagged children of a tagged index as untagged:
    it deletes their revision links and sweeps their configs and layers, breaking the
    index. The children's manifest blobs survive because the index marks them. Any
    "reclaimable bytes" figure for this mode has to reproduce exactly this.
    """
    amd64 = pusher.push_image("m", (), architecture="amd64")
    arm64 = pusher.push_image("m", (), architecture="arm64")
    index = pusher.push_index("m", ["1"], [amd64, arm64])
    registry.stop()
    before, digests_before = registry.blob_store_bytes(), registry.blob_digests()
    registry.garbage_collect(delete_untagged=True)
    registry.start()

    swept = {blob for child in (amd64, arm64) for blob in child.blobs}
    assert digests_before - registry.blob_digests() == {blob.digest for blob in swept}
    assert before - registry.blob_store_bytes() == sum(blob.size for blob in swept)
    assert pusher.client.get(f"/v2/m/manifests/{index.digest}", headers={"Accept": OCI_INDEX}).status_code == 200
    child = pusher.client.get(f"/v2/m/manifests/{amd64.digest}", headers={"Accept": OCI_MANIFEST})
    assert child.status_code == 404


def test_htpasswd_registry_requires_credentials(tmp_path, skopeo):
    with RegistryServer(tmp_path / "auth", htpasswd={"alice": "s3cret"}) as server:
        assert httpx.get(f"{server.url}/v2/").status_code == 401
        assert httpx.get(f"{server.url}/v2/", auth=("alice", "wrong")).status_code == 401
        with Pusher(server.url, auth=("alice", "s3cret")) as client:
            image = client.push_image("private", ["1"])
        ref = f"docker://{server.host}/private:1"
        with pytest.raises(AssertionError, match="unauthorized|authentication required"):
            skopeo("inspect", "--raw", "--no-creds", ref)
        assert skopeo("inspect", "--raw", "--creds", "alice:s3cret", ref).encode() == image.manifest


def test_access_log_counts_each_request(registry, pusher):
    before = registry.access_log_lines()
    assert all("repoaudit-tests-probe" not in line for line in before)
    pusher.blob_exists("any", sha256_digest(b"x"))
    pusher.client.get("/v2/_catalog")
    after = registry.access_log_lines()
    assert len(after) - len(before) == 2
    assert '"HEAD /v2/any/blobs/sha256:' in after[-2] and '" 404 ' in after[-2]


def test_pusher_failures_name_status_and_body(registry, pusher):
    missing_config = {"mediaType": "x", "digest": sha256_digest(b"never pushed"), "size": 12}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": missing_config, "layers": []})
    with pytest.raises(AssertionError, match=r"push manifest bad:1: PUT .* answered 400 .*BLOB_UNKNOWN"):
        pusher.push_manifest("bad", "1", body.encode(), OCI_MANIFEST)
    with pytest.raises(AssertionError, match="answered 404"):
        pusher.delete_manifest("bad", sha256_digest(b"nothing"))


def test_skopeo_flags_are_inserted_once():
    assert _skopeo_command("skopeo", ("inspect", "--raw", "docker://h/r:t")) == [
        "skopeo", "inspect", "--tls-verify=false", "--raw", "docker://h/r:t"
    ]
    assert _skopeo_command("skopeo", ("inspect", "--tls-verify=true", "docker://h/r:t")) == [
        "skopeo", "inspect", "--tls-verify=true", "docker://h/r:t"
    ]
    assert _skopeo_command("skopeo", ("copy", "docker://a/b:c", "dir:/tmp/x")) == [
        "skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
        "docker://a/b:c", "dir:/tmp/x",
    ]
