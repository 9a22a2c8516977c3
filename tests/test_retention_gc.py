"""The byte accounting against the real thing: plan, apply, run Distribution's own GC, weigh the disk.

The seeded registry shares on purpose what makes naive sums wrong: a base layer in
every repository, one config blob under two different manifests (an OCI and a Docker
manifest of the same image), a manifest tagged in two repositories, a multi-arch index
whose children are shared with a newer index, and an untagged revision left behind by a
moved tag. The expected freed blobs are written out by hand from what was pushed.

GC runs *without* ``--delete-untagged``: apply deletes the untagged revisions and index
children the plan lets go by digest itself, and Distribution 2.8's ``--delete-untagged``
would also sweep the configs and layers of children of indexes that stay tagged
(distribution/distribution#3178), which no retention policy asks for.
"""

from __future__ import annotations

import json

import pytest

import repoaudit
from pusher import OCI_INDEX, OCI_MANIFEST, Pusher, layer_bytes
from registry import RegistryServer
from repoaudit.errors import RegistryHTTPError

POLICY = {
    "name": "newest-only",
    "scope": {"include": ["team/**", "mirror/**"]},
    "rules": [
        {"name": "newest", "keep": {"most_recent": 1, "by": "created"}},
        {"name": "pinned", "keep": {"tags": ["keep-*"]}},
    ],
}


def copy_image(pusher: Pusher, image, repo: str, tag: str) -> None:
    """The same manifest in another repository: mount its blobs, push the identical bytes."""
    for blob in image.blobs:
        assert pusher.mount_blob(repo, blob.digest, image.repository)
    pusher.push_manifest(repo, tag, image.manifest, image.media_type)


def seed(pusher: Pusher) -> dict:
    base = pusher.push_image("base/os", ["1"], layers=[layer_bytes("base-os", 40_000)], created="2023-01-01T00:00:00Z")
    shared = dict(shared_layers=base.layers, mount_from="base/os")
    v1 = pusher.push_image("team/api", ["v1"], layers=[layer_bytes("api1", 11_000)], created="2024-01-01T00:00:00Z",
                           **shared)
    v2 = pusher.push_image("team/api", ["v2"], layers=[layer_bytes("api2", 12_000)], created="2024-06-01T00:00:00Z",
                           **shared)
    v3 = pusher.push_image("team/api", ["v3", "latest"], layers=[layer_bytes("api3", 13_000)],
                           created="2025-01-01T00:00:00Z", **shared)
    pinned = pusher.push_image("team/api", ["keep-2023"], layers=[layer_bytes("api0", 9_000)],
                               created="2023-06-01T00:00:00Z", **shared)
    copy_image(pusher, v1, "mirror/api", "v1")  # v1 stays alive through the mirror

    # One manifest tagged in two repositories, deleted from both: freed.
    dup = pusher.push_image("team/dup", ["old"], layers=[layer_bytes("dup-old", 7_000)], created="2024-01-01T00:00:00Z")
    copy_image(pusher, dup, "mirror/dup", "old")
    dup_new = pusher.push_image("team/dup", ["new"], layers=[layer_bytes("dup-new", 7_100)],
                                created="2025-01-01T00:00:00Z")
    mirror_new = pusher.push_image("mirror/dup", ["new"], layers=[layer_bytes("mirror-new", 7_200)],
                                   created="2025-01-01T00:00:00Z")

    # One config blob under two manifests (OCI in cfg-a, Docker in cfg-b): deleting the OCI one frees its
    # manifest bytes only.
    y_layer = layer_bytes("y", 8_000)
    y_oci = pusher.push_image("team/cfg-a", ["y"], layers=[y_layer], created="2024-02-02T00:00:00Z", **shared)
    z = pusher.push_image("team/cfg-a", ["z"], layers=[layer_bytes("z", 8_100)], created="2025-02-02T00:00:00Z",
                          **shared)
    y_docker = pusher.push_image("team/cfg-b", ["y"], layers=[y_layer], created="2024-02-02T00:00:00Z",
                                 style="docker", **shared)
    assert y_docker.config.digest == y_oci.config.digest and y_docker.digest != y_oci.digest

    # Two multi-arch indexes sharing their arm64 child; the old one goes, arm64 stays with the new one.
    amd1 = pusher.push_image("team/multi", [], layers=[layer_bytes("amd1", 6_000)], architecture="amd64",
                             created="2024-03-03T00:00:00Z")
    arm = pusher.push_image("team/multi", [], layers=[layer_bytes("arm", 6_100)], architecture="arm64",
                            created="2024-03-03T00:00:00Z")
    amd2 = pusher.push_image("team/multi", [], layers=[layer_bytes("amd2", 6_200)], architecture="amd64",
                             created="2025-03-03T00:00:00Z")
    index1 = pusher.push_index("team/multi", ["1.0"], [amd1, arm])
    index2 = pusher.push_index("team/multi", ["2.0"], [amd2, arm])

    # nightly is pushed again later; the first build stays behind as an untagged revision.
    n1 = pusher.push_image("team/web", ["nightly"], layers=[layer_bytes("web-deps", 5_000), layer_bytes("n1", 4_000)],
                           created="2025-04-01T00:00:00Z", **shared)
    return {k: v for k, v in locals().items() if k not in ("pusher", "shared", "y_layer")}


def push_second_nightly(pusher: Pusher, seeded: dict):
    n1 = seeded["n1"]
    return pusher.push_image("team/web", ["nightly"], shared_layers=n1.layers[:2], layers=[layer_bytes("n2", 4_100)],
                             created="2025-04-02T00:00:00Z")


def test_gc_frees_exactly_the_planned_bytes(registry, pusher, tmp_path):
    s = seed(pusher)
    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        audit.collect(registry.url, progress=False)
        n2 = push_second_nightly(pusher, s)
        audit.collect(registry.url, progress=False)
        plan = audit.retention(POLICY)

        # Hand-written: what the policy deletes and which blobs nothing else holds any more.
        cands = plan.candidates
        got = sorted(zip(cands["repository"], cands["digest"]))
        expected = sorted([
            ("team/api", s["v1"].digest), ("team/api", s["v2"].digest),
            ("team/dup", s["dup"].digest), ("mirror/dup", s["dup"].digest),
            ("team/cfg-a", s["y_oci"].digest),
            ("team/multi", s["index1"].digest),
            ("team/web", s["n1"].digest),
        ])
        assert got == expected
        assert cands.set_index("digest").loc[s["n1"].digest, "untagged"]
        freed = {
            s["v2"].digest: len(s["v2"].manifest), s["v2"].config.digest: s["v2"].config.size,
            s["v2"].layers[1].digest: s["v2"].layers[1].size,
            s["dup"].digest: len(s["dup"].manifest), s["dup"].config.digest: s["dup"].config.size,
            s["dup"].layers[0].digest: s["dup"].layers[0].size,
            s["y_oci"].digest: len(s["y_oci"].manifest),
            s["index1"].digest: len(s["index1"].manifest), s["amd1"].digest: len(s["amd1"].manifest),
            s["amd1"].config.digest: s["amd1"].config.size, s["amd1"].layers[0].digest: s["amd1"].layers[0].size,
            s["n1"].digest: len(s["n1"].manifest), s["n1"].config.digest: s["n1"].config.size,
            s["n1"].layers[2].digest: s["n1"].layers[2].size,
        }
        summary = plan.summary.iloc[0]
        assert summary["reclaimable_bytes"] == sum(freed.values())
        assert set(plan.freed_blobs["blob_digest"]) == set(freed)
        # Shared with survivors, so never counted: the base layer, v1's blobs (the mirror keeps them),
        # y's config and layer (the Docker manifest keeps them), the shared arm64 child, nightly's deps.
        for kept in (s["base"].layers[0], s["v1"].config, s["y_oci"].config, s["y_oci"].layers[1], s["arm"].config,
                     s["n1"].layers[1]):
            assert kept.digest not in set(plan.freed_blobs["blob_digest"])
        assert summary["candidate_manifests"] == len(expected) + 1  # + amd1, which dies with index1
        plan_file = plan.write_json(tmp_path / "plan.json")

        dry = audit.retention_apply(plan_file)
        assert dry.counts() == {"would delete": 8}
        assert audit.sql("SELECT count(*) AS n FROM deletions").iloc[0, 0] == 0

        before, digests_before = registry.blob_store_bytes(), registry.blob_digests()
        result = audit.retention_apply(plan_file, yes=True)
        assert result.counts() == {"deleted": 8}
        recorded = audit.sql("SELECT repository, digest, role, outcome, policy, plan_snapshot_id FROM deletions")
        assert len(recorded) == 8 and set(recorded["outcome"]) == {"deleted"}
        assert set(recorded["policy"]) == {"newest-only"}

    registry.stop()
    registry.garbage_collect()
    assert digests_before - registry.blob_digests() == set(freed)
    assert before - registry.blob_store_bytes() == summary["reclaimable_bytes"]

    # Everything kept still pulls completely.
    registry.start()
    for repo, ref, image in [("team/api", "v3", s["v3"]), ("mirror/api", "v1", s["v1"]), ("team/cfg-b", "y",
                             s["y_docker"]), ("team/web", "nightly", n2), ("team/api", "keep-2023", s["pinned"]),
                             ("base/os", "1", s["base"])]:
        got = pusher.client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": image.media_type})
        assert got.status_code == 200 and got.content == image.manifest
        for blob in image.blobs:
            assert pusher.blob_exists(repo, blob.digest), (repo, blob.digest)
    index = pusher.client.get("/v2/team/multi/manifests/2.0", headers={"Accept": OCI_INDEX})
    assert index.status_code == 200
    for child in (s["amd2"], s["arm"]):
        got = pusher.client.get(f"/v2/team/multi/manifests/{child.digest}", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200
        assert all(pusher.blob_exists("team/multi", b.digest) for b in child.blobs)


def test_moved_tag_is_skipped_and_reported(registry, pusher, tmp_path):
    old = pusher.push_image("svc", ["a", "b"], layers=[layer_bytes("old", 3_000)], created="2024-01-01T00:00:00Z")
    other = pusher.push_image("svc", ["c"], layers=[layer_bytes("other", 3_100)], created="2024-02-01T00:00:00Z")
    pusher.push_image("svc", ["latest"], layers=[layer_bytes("new", 3_200)], created="2025-01-01T00:00:00Z")
    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        audit.collect(registry.url, progress=False)
        plan = audit.retention({"rules": [{"keep": {"most_recent": 1}}]})
        assert sorted(plan.candidates["digest"]) == sorted([old.digest, other.digest])
        path = plan.write_json(tmp_path / "plan.json")
        # After the plan: someone points 'prod' at the old image. Deleting it now would delete prod too.
        pusher.tag("svc", "prod", old)
        result = audit.retention_apply(path, yes=True)
        rows = result.outcomes.set_index("digest")
        assert rows.loc[old.digest, "outcome"] == "skipped"
        assert "planned: a, b; now: a, b, prod" in rows.loc[old.digest, "reason"]
        assert rows.loc[other.digest, "outcome"] == "deleted"
        recorded = audit.sql("SELECT digest, outcome, reason FROM deletions").set_index("digest")
        assert recorded.loc[old.digest, "outcome"] == "skipped"
    assert sorted(pusher.tags("svc")) == ["a", "b", "latest", "prod"]


def test_apply_on_a_registry_with_deletes_disabled(tmp_path):
    with RegistryServer(tmp_path / "registry", delete=False) as server, Pusher(server.url) as pusher:
        pusher.push_image("svc", ["old"], created="2024-01-01T00:00:00Z")
        pusher.push_image("svc", ["new"], created="2025-01-01T00:00:00Z")
        with repoaudit.open(tmp_path / "audit.duckdb") as audit:
            audit.collect(server.url, progress=False)
            path = audit.retention({"rules": [{"keep": {"most_recent": 1}}]}).write_json(tmp_path / "plan.json")
            with pytest.raises(RegistryHTTPError, match=rf"deletes are disabled on {server.host} "
                                                        r"\(storage.delete.enabled\)") as info:
                audit.retention_apply(path, yes=True)
            assert info.value.status == 405
        assert sorted(pusher.tags("svc")) == ["new", "old"]


def test_plan_json_round_trip(registry, pusher, tmp_path):
    pusher.push_image("svc", ["1"], created="2024-01-01T00:00:00Z")
    pusher.push_image("svc", ["2"], created="2025-01-01T00:00:00Z")
    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        result = audit.collect(registry.url, progress=False)
        doc = json.loads(audit.retention({"rules": [{"keep": {"most_recent": 1}}]}, POLICY)
                         .write_json(tmp_path / "p.json").read_text())
    assert doc["snapshots"] == [{"registry": registry.host, "snapshot_id": result.snapshot_id,
                                 "started_at": doc["snapshots"][0]["started_at"], "source": registry.url,
                                 "source_kind": "registry"}]
    assert [p["policy"]["name"] for p in doc["plans"]] == ["native", "newest-only"]
    first = doc["plans"][0]
    assert first["totals"]["candidate_images"] == 1 and first["candidates"][0]["tags"] == ["1"]
    assert {"registry", "repository", "digest", "tags", "size", "rule", "pushed_at", "pushed_source"} <= set(
        first["candidates"][0])
    assert doc["plans"][1]["totals"]["candidate_images"] == 0  # svc is outside newest-only's scope


def test_cli_plan_and_apply(registry, pusher, tmp_path):
    from click.testing import CliRunner

    from repoaudit.cli import main

    old = pusher.push_image("svc", ["old"], layers=[layer_bytes("cli-old", 3_000)], created="2024-01-01T00:00:00Z")
    pusher.push_image("svc", ["new"], layers=[layer_bytes("cli-new", 3_000)], created="2025-01-01T00:00:00Z")
    db = tmp_path / "cli.duckdb"
    policy = tmp_path / "keep1.yaml"
    policy.write_text("rules:\n  - keep: {most_recent: 1}\n")
    ecr = tmp_path / "ecr.json"
    ecr.write_text(json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5}, "action": {"type": "expire"}}]}))
    runner = CliRunner()

    def cli(*args, input=None):
        return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)

    assert cli("collect", registry.url, "--db", db, "--no-progress").exit_code == 0
    out = cli("retention", "plan", "--policy", policy, "--policy", ecr, "--db", db, "-o", tmp_path / "plan.json")
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    header = next(l for l in lines if "keep1" in l)
    assert header.split() == ["keep1", "ecr"]
    assert next(l for l in lines if "candidate images" in l).split()[-2:] == ["1", "0"]
    assert "plan written to" in out.stderr

    csv = cli("retention", "plan", "--policy", policy, "--db", db, "--format", "csv")
    row = next(iter(__import__("csv").DictReader(csv.stdout.splitlines())))
    assert [row[k] for k in ("policy", "registry", "repository", "namespace", "digest")] == \
        ["keep1", registry.host, "svc", "svc", old.digest]
    assert json.loads(row["tags"]) == ["old"]  # lists are JSON arrays in CSV cells

    two = cli("retention", "apply", tmp_path / "plan.json", "--db", db)
    assert two.exit_code != 0 and "holds 2 policies (keep1, ecr); choose one with --policy NAME" in two.stderr

    dry = cli("retention", "apply", tmp_path / "plan.json", "--policy", "keep1", "--db", db)
    assert dry.exit_code == 0, dry.output
    assert "keep1: dry run (nothing deleted; add --yes to delete): 1 would delete" in dry.stderr
    assert sorted(pusher.tags("svc")) == ["new", "old"]

    done = cli("retention", "apply", tmp_path / "plan.json", "--policy", "keep1", "--db", db, "--yes",
               "-u", "nobody", "--password-stdin", input="secret\n")
    assert done.exit_code == 0, done.output
    assert "keep1: applied: 1 deleted" in done.stderr
    assert pusher.tags("svc") == ["new"]

    bad = cli("retention", "plan", "--policy", tmp_path / "nope.yaml", "--db", db)
    assert bad.exit_code == 1 and "nope.yaml: cannot read policy" in bad.stderr


def test_image_deployed_after_the_plan_is_skipped(registry, pusher, tmp_path):
    old = pusher.push_image("svc", ["old"], layers=[layer_bytes("dep-old", 3_000)], created="2024-01-01T00:00:00Z")
    pusher.push_image("svc", ["new"], layers=[layer_bytes("dep-new", 3_000)], created="2025-01-01T00:00:00Z")
    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        audit.collect(registry.url, progress=False)
        path = audit.retention({"rules": [{"keep": {"most_recent": 1}}]}).write_json(tmp_path / "plan.json")
        pods = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "svc-0", "namespace": "prod", "uid": "1"},
                "spec": {"containers": [{"name": "svc", "image": f"{registry.host}/svc@{old.digest}"}]},
                "status": {"phase": "Running"}}
        (tmp_path / "pods.json").write_text(json.dumps(pods))
        audit.ingest("pods", tmp_path / "pods.json", cluster="prod")
        result = audit.retention_apply(path, yes=True)
        assert result.outcomes[["digest", "outcome", "reason"]].values.tolist() == [
            [old.digest, "skipped", "deployed now (deployed_images)"]]
    assert sorted(pusher.tags("svc")) == ["new", "old"]
