"""OCI image layouts as a source: written by skopeo, read like a registry."""

from __future__ import annotations

import json
import shutil

import pytest

import repoaudit
from pusher import layer_bytes
from repoaudit.errors import LayoutError
from repoaudit.sources.ocilayout import _tag_of


@pytest.fixture
def mirrored(registry, pusher, skopeo, tmp_path):
    """The same images in a registry and, copied by skopeo, in a tree of OCI layouts."""
    base = pusher.push_image("base/alpine", ["3.19"], layers=[layer_bytes("alpine", 3_000)],
                             created="2024-02-02T00:00:00Z")
    pusher.push_image("team/api", ["1.0", "latest"], shared_layers=base.layers, mount_from="base/alpine",
                      layers=[layer_bytes("api", 2_000)], created="2024-09-09T09:09:09Z")
    amd = pusher.push_image("team/multi", [], layers=[layer_bytes("m-amd", 500)])
    arm = pusher.push_image("team/multi", [], layers=[layer_bytes("m-arm", 600)], architecture="arm64")
    pusher.push_index("team/multi", ["1"], [amd, arm])
    root = tmp_path / "layouts"
    for repo, tags in {"base/alpine": ["3.19"], "team/api": ["1.0", "latest"], "team/multi": ["1"]}.items():
        (root / repo).mkdir(parents=True)
        for tag in tags:
            skopeo("copy", "--all", "--preserve-digests", f"docker://{registry.host}/{repo}:{tag}",
                   f"oci:{root / repo}:{tag}")
    return root


def test_layout_tree_collects_like_the_registry(registry, mirrored, tmp_path):
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        from_registry = audit.collect(registry.url, progress=False)
        from_layouts = audit.collect(f"oci:{mirrored}", progress=False)
        assert from_layouts.status == "complete"
        assert (from_layouts.repositories, from_layouts.tags, from_layouts.manifests) == \
            (from_registry.repositories, from_registry.tags, from_registry.manifests)
        rows = audit.sql("""
            SELECT t.registry LIKE 'oci:%' AS layout, t.repository, t.tag, t.digest, m.total_size, m.created,
                   m.config_digest
            FROM tags t JOIN manifests m USING (registry, digest) ORDER BY repository, tag, layout""")
        by_source = {k: g.drop(columns="layout").reset_index(drop=True) for k, g in rows.groupby("layout")}
        assert by_source[True].equals(by_source[False])


def test_single_layout_root_is_one_repository(mirrored, tmp_path):
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        result = audit.collect(f"oci:{mirrored / 'team' / 'api'}", progress=False)
        assert result.repositories == 1 and result.tags == 2
        assert set(audit.sql("SELECT repository FROM tags")["repository"]) == {"api"}


def test_layout_without_index_json_fails_the_repository(mirrored, tmp_path):
    (mirrored / "team" / "api" / "index.json").unlink()
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        result = audit.collect(f"oci:{mirrored}", progress=False)
        assert result.status == "partial"
        err = audit.sql("SELECT repository, error FROM collection_errors").iloc[0]
        assert err["repository"] == "team/api" and "missing index.json" in err["error"]


def test_directory_without_layouts_is_a_failed_snapshot(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        with pytest.raises(LayoutError, match="no OCI image layout found"):
            audit.collect(f"oci:{empty}", progress=False)
        snap = audit.query("snapshots").iloc[0]
        assert snap["status"] == "failed" and "no OCI image layout found" in snap["error"]


def test_missing_and_corrupt_blobs_are_recorded_per_tag(mirrored, tmp_path):
    index = json.loads((mirrored / "base" / "alpine" / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    blob = mirrored / "base" / "alpine" / "blobs" / "sha256" / digest.split(":")[1]
    blob.write_bytes(blob.read_bytes() + b" ")
    shutil.rmtree(mirrored / "team" / "multi" / "blobs")
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        result = audit.collect(f"oci:{mirrored}", progress=False)
        assert result.status == "partial"
        errors = audit.sql("SELECT repository, error_type FROM collection_errors ORDER BY repository")
        assert errors.values.tolist() == [["base/alpine", "DigestMismatch"], ["team/multi", "NotFoundError"]]


@pytest.mark.parametrize("ref, tag", [("v1", "v1"), ("registry.example.com/app:v1", "v1"),
                                      ("localhost:5000/app:2.0", "2.0")])
def test_ref_name_forms(ref, tag):
    assert _tag_of(ref) == tag
