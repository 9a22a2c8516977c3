"""The collector against a real Distribution registry, cross-checked with skopeo."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest

import repoaudit
from pusher import Pusher, PushedImage, PushedIndex, layer_bytes
from repoaudit.collect.selection import select_repositories
from repoaudit.model.options import ClientOptions
from repoaudit.model.retry import NO_BACKOFF


@dataclass
class Estate:
    images: dict[str, PushedImage | PushedIndex]  # "repo:tag" -> what was pushed
    untagged: PushedImage


def seed(pusher: Pusher) -> Estate:
    """Base layers shared across repositories, both manifest styles, an index, an untagged image."""
    base = pusher.push_image("base/debian", ["12", "bookworm"], layers=[layer_bytes("debian", 40_000)],
                             created="2024-03-01T10:00:00Z")
    app1 = pusher.push_image("team/app", ["1.0"], shared_layers=base.layers, mount_from="base/debian",
                             layers=[layer_bytes("app1", 12_000)], created="2024-05-01T00:00:00Z",
                             labels={"org.opencontainers.image.version": "1.0"})
    app2 = pusher.push_image("team/app", ["1.1", "latest"], shared_layers=base.layers, mount_from="base/debian",
                             layers=[layer_bytes("app2", 13_000)], created="2025-01-15T08:30:00.123456789Z")
    legacy = pusher.push_image("team/legacy", ["v0.9"], layers=[layer_bytes("legacy", 7_000)],
                               created="2023-07-07T07:07:07Z", style="docker")
    amd = pusher.push_image("team/multi", [], layers=[layer_bytes("amd", 9_000)], architecture="amd64")
    arm = pusher.push_image("team/multi", [], layers=[layer_bytes("arm", 8_000)], architecture="arm64")
    index = pusher.push_index("team/multi", ["2.0"], [amd, arm])
    untagged = pusher.push_image("team/app", [], layers=[layer_bytes("orphan", 5_000)])
    images = {"base/debian:12": base, "base/debian:bookworm": base, "team/app:1.0": app1, "team/app:1.1": app2,
              "team/app:latest": app2, "team/legacy:v0.9": legacy, "team/multi:2.0": index}
    return Estate(images, untagged)


@pytest.fixture
def estate(pusher) -> Estate:
    return seed(pusher)


@pytest.fixture
def audit(tmp_path):
    with repoaudit.open(tmp_path / "audit.duckdb") as a:
        yield a


def test_collect_matches_skopeo(registry, estate, audit, skopeo):
    result = audit.collect(registry.url, progress=False)
    assert result.status == "complete"
    assert (result.repositories, result.tags, result.errors) == (4, 7, 0)
    # tags + the two children of the index
    assert result.manifests == 7

    tags = audit.sql("SELECT repository || ':' || tag AS ref, digest FROM tags").set_index("ref")["digest"].to_dict()
    for ref, pushed in estate.images.items():
        inspected = json.loads(skopeo("inspect", "--raw", f"docker://{registry.host}/{ref}"))
        assert inspected == json.loads(pushed.manifest)
        assert tags[ref] == pushed.digest

    for ref in ("base/debian:12", "team/app:1.0", "team/app:1.1", "team/legacy:v0.9"):
        info = json.loads(skopeo("inspect", f"docker://{registry.host}/{ref}"))
        raw = json.loads(skopeo("inspect", "--raw", f"docker://{registry.host}/{ref}"))
        row = audit.sql("SELECT * FROM manifests WHERE digest = $d", {"d": info["Digest"]}).iloc[0]
        assert row["config_digest"] == raw["config"]["digest"]
        assert row["config_size"] == raw["config"]["size"]
        assert row["created"] == pd.Timestamp(info["Created"]).tz_convert(None).floor("us")
        assert row["architecture"] == info["Architecture"] and row["os"] == info["Os"]
        layers = audit.sql("SELECT digest, size FROM layers WHERE manifest_digest = $d ORDER BY position",
                           {"d": info["Digest"]})
        assert list(layers["digest"]) == info["Layers"] == [l["digest"] for l in raw["layers"]]
        assert list(layers["size"]) == [l["size"] for l in raw["layers"]]
        assert row["total_size"] == raw["config"]["size"] + sum(l["size"] for l in raw["layers"])
        labels = json.loads(row["labels"]) if row["labels"] else {}
        assert labels == (info.get("Labels") or {})


def test_created_with_nanoseconds_and_index_rollup(registry, estate, audit):
    audit.collect(registry.url, progress=False)
    app2 = estate.images["team/app:1.1"]
    created = audit.sql("SELECT created FROM manifests WHERE digest = $d", {"d": app2.digest}).iloc[0, 0]
    assert created.isoformat() == "2025-01-15T08:30:00.123456"

    index = estate.images["team/multi:2.0"]
    row = audit.sql("SELECT kind, total_size, manifest_size FROM manifests WHERE digest = $d",
                    {"d": index.digest}).iloc[0]
    assert row["kind"] == "index" and row["manifest_size"] == len(index.manifest)
    assert row["total_size"] == sum(c.config.size + sum(l.size for l in c.layers) for c in index.children)
    children = audit.sql("SELECT child_digest, architecture FROM manifest_children WHERE index_digest = $d "
                         "ORDER BY position", {"d": index.digest})
    assert list(children["child_digest"]) == [c.digest for c in index.children]
    assert list(children["architecture"]) == ["amd64", "arm64"]


def test_docker_style_media_types_recorded(registry, estate, audit):
    audit.collect(registry.url, progress=False)
    legacy = estate.images["team/legacy:v0.9"]
    mt = audit.sql("SELECT media_type FROM manifests WHERE digest = $d", {"d": legacy.digest}).iloc[0, 0]
    assert mt == "application/vnd.docker.distribution.manifest.v2+json"


def test_catalog_pagination_over_several_pages(registry, pusher, audit):
    names = [f"page/repo{i:02d}" for i in range(7)]
    shared = pusher.push_image(names[0], ["t"], layers=[layer_bytes("p", 100)])
    for name in names[1:]:
        pusher.push_image(name, ["t"], shared_layers=shared.layers, mount_from=names[0], layers=[])
    opts = ClientOptions(page_size=2, retry=NO_BACKOFF)
    result = audit.collect(registry.url, client_options=opts, progress=False)
    assert result.repositories == 7
    assert result.requests["GET catalog"] == 4  # 2 + 2 + 2 + 1
    assert sorted(audit.sql("SELECT repository FROM repositories")["repository"]) == names


def test_two_collections_are_idempotent(registry, estate, audit):
    first = audit.collect(registry.url, progress=False)
    second = audit.collect(registry.url, progress=False)
    assert first.snapshot_id != second.snapshot_id
    assert second.mode == "incremental" and second.new_manifests == 0
    # No manifest body or blob was fetched again: HEAD per tag only.
    assert "GET manifest" not in second.requests and "GET blob" not in second.requests
    assert second.requests["HEAD manifest"] == 7
    sets = audit.sql("SELECT snapshot_id, list(repository || ':' || tag || '@' || digest ORDER BY repository, tag) "
                     "AS s FROM tags GROUP BY snapshot_id ORDER BY snapshot_id")["s"]
    assert list(sets[0]) == list(sets[1])
    dupes = audit.sql("SELECT registry, digest, count(*) AS n FROM manifests GROUP BY ALL HAVING n > 1")
    assert dupes.empty
    assert audit.sql("SELECT count(*) FROM manifests").iloc[0, 0] == 7
    layer_dupes = audit.sql("SELECT manifest_digest, position, count(*) n FROM layers GROUP BY ALL HAVING n > 1")
    assert layer_dupes.empty
    full = audit.collect(registry.url, full=True, progress=False)
    assert full.mode == "full" and full.new_manifests == 0
    assert audit.sql("SELECT count(*) FROM manifests").iloc[0, 0] == 7


def test_untagged_manifest_is_not_seen_through_the_api(registry, estate, audit):
    audit.collect(registry.url, progress=False)
    found = audit.sql("SELECT count(*) FROM manifests WHERE digest = $d", {"d": estate.untagged.digest}).iloc[0, 0]
    assert found == 0


def test_repository_filters(registry, estate, audit):
    result = audit.collect(registry.url, include=["team/*"], exclude=["team/legacy"], progress=False)
    assert result.repositories == 2
    assert sorted(audit.sql("SELECT DISTINCT repository FROM tags")["repository"]) == ["team/app", "team/multi"]


def test_select_repositories_globs():
    names = ["a/x", "a/y-cache", "b/z"]
    assert select_repositories(names, (), ()) == names
    # Doublestar, as retention's --repo: '*' stops at '/', '**' crosses it.
    assert select_repositories(names, ("a/*",), ("*-cache",)) == ["a/x", "a/y-cache"]
    assert select_repositories(names, ("a/*",), ("**-cache",)) == ["a/x"]
    assert select_repositories(names, ("**/{x,z}",), ()) == ["a/x", "b/z"]


def test_moved_and_deleted_tags_between_snapshots(registry, estate, pusher, audit):
    audit.collect(registry.url, progress=False)
    newer = pusher.push_image("team/app", ["1.2"], layers=[layer_bytes("app3", 1_000)], created="2025-06-01T00:00:00Z")
    pusher.tag("team/app", "latest", newer)
    pusher.delete_manifest("team/legacy", estate.images["team/legacy:v0.9"].digest)
    second = audit.collect(registry.url, progress=False)
    assert second.status == "complete" and second.new_manifests == 1
    assert second.requests["GET manifest"] == 1
    latest = audit.sql("SELECT digest FROM images WHERE repository = 'team/app' AND tag = 'latest'").iloc[0, 0]
    assert latest == newer.digest
    legacy = audit.sql("SELECT tag_count, status FROM repositories WHERE snapshot_id = $s AND "
                       "repository = 'team/legacy'", {"s": second.snapshot_id}).iloc[0]
    assert legacy["tag_count"] == 0 and legacy["status"] == "ok"


def test_images_view_reads_latest_snapshot(registry, estate, audit):
    audit.collect(registry.url, progress=False)
    second = audit.collect(registry.url, progress=False)
    images = audit.sql("SELECT * FROM images")
    assert set(images["snapshot_id"]) == {second.snapshot_id}
    assert len(images) == 7
    assert images.loc[images["tag"] == "v0.9", "age_days"].iloc[0] > 365


def test_snapshot_unique_bytes_count_every_reachable_blob_once(registry, estate, audit):
    audit.collect(registry.url, progress=False)
    blobs: dict[str, int] = {}

    def add(image):
        blobs[image.digest] = len(image.manifest)
        for blob in (image.config, *image.layers):
            blobs[blob.digest] = blob.size

    for pushed in estate.images.values():
        if isinstance(pushed, PushedIndex):
            blobs[pushed.digest] = len(pushed.manifest)
            for child in pushed.children:
                add(child)
        else:
            add(pushed)
    assert audit.query("snapshots").iloc[0]["unique_bytes"] == sum(blobs.values())
