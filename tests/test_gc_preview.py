"""``gc preview`` against its oracle: the real ``docker-registry garbage-collect``, both ways, on one estate.

The estate holds what makes a preview wrong when it guesses: a base layer in every
repository, a manifest deleted by digest (its blobs stay until GC), a tag pushed twice (an
untagged revision), two multi-arch indexes sharing a child, a child copied and tagged in
another repository, an index left untagged by a re-pointed tag, and abandoned uploads.
The storage is copied before GC so both modes run on the same bytes; the preview must name
exactly the blobs each run removes, and their bytes.
"""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner
from pusher import Pusher, layer_bytes

import repoaudit
from repoaudit.cli import main


def start_upload(pusher: Pusher, repo: str, data: bytes) -> None:
    """An upload begun and never finished: POST, one PATCH of ``data``, then nothing."""
    started = pusher.client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202
    location = started.request.url.join(started.headers["Location"])
    sent = pusher.client.patch(location, content=data, headers={"Content-Type": "application/octet-stream"})
    assert sent.status_code == 202


def seed(pusher: Pusher) -> dict:
    base = pusher.push_image("base/os", ["1"], layers=[layer_bytes("gc-base", 30_000)])
    shared = dict(shared_layers=base.layers, mount_from="base/os")
    v1 = pusher.push_image("team/api", ["v1"], layers=[layer_bytes("gc-api1", 11_000)], **shared)
    v2 = pusher.push_image("team/api", ["v2"], layers=[layer_bytes("gc-api2", 12_000)], **shared)
    pusher.delete_manifest("team/api", v1.digest)  # its revision and tag go; its blobs stay until GC

    n1 = pusher.push_image("team/web", ["nightly"], layers=[layer_bytes("gc-n1", 4_000)], **shared)
    n2 = pusher.push_image("team/web", ["nightly"], layers=[layer_bytes("gc-n2", 4_100)], **shared)

    amd1 = pusher.push_image("team/multi", [], layers=[layer_bytes("gc-amd1", 6_000)], architecture="amd64")
    arm = pusher.push_image("team/multi", [], layers=[layer_bytes("gc-arm", 6_100)], architecture="arm64",
                            **shared)
    amd2 = pusher.push_image("team/multi", [], layers=[layer_bytes("gc-amd2", 6_200)], architecture="amd64")
    index1 = pusher.push_index("team/multi", ["1.0"], [amd1, arm])
    index2 = pusher.push_index("team/multi", ["2.0", "rc"], [amd2, arm])
    pusher.tag("team/multi", "rc", index1)  # index2 keeps 2.0; rc moves: its history holds both
    amd3 = pusher.push_image("team/multi", [], layers=[layer_bytes("gc-amd3", 6_300)], architecture="amd64")
    index3 = pusher.push_index("team/multi", ["3.0"], [amd3])
    pusher.tag("team/multi", "3.0", index2)  # index3 is left untagged, and so are all its blobs

    # amd1 copied into another repository under a tag: with --delete-untagged its blobs stay through it.
    for blob in amd1.blobs:
        assert pusher.mount_blob("mirror/multi", blob.digest, "team/multi")
    pusher.push_manifest("mirror/multi", "amd1", amd1.manifest, amd1.media_type)

    start_upload(pusher, "team/api", layer_bytes("gc-upload", 5_000))
    start_upload(pusher, "fresh/only-upload", layer_bytes("gc-upload2", 2_000))
    return {k: v for k, v in locals().items() if k not in ("pusher", "shared", "blob")}


def blob_sizes(registry) -> dict[str, int]:
    return {f"{p.parent.parent.parent.name}:{p.parent.name}": p.stat().st_size
            for p in registry.blobs_dir.rglob("data") if p.is_file()}


def test_preview_equals_what_garbage_collect_removes_both_ways(registry, pusher, tmp_path):
    s = seed(pusher)
    registry.stop()  # GC is offline; a storage walk of a stopped registry is exact
    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        result = audit.collect(f"registry-storage:{registry.storage_dir}", name=registry.host, progress=False)
        assert result.status == "complete", audit.sql("SELECT * FROM collection_errors")["error"].tolist()
        preview = audit.gc_preview(registry.host)
        zero_age = audit.gc_preview(registry.host, upload_age_hours=0)

    blobs = preview.blobs.set_index("digest")
    freed = {d: int(r["size"]) for d, r in blobs.iterrows() if r["freed"]}
    freed_untagged = {d: int(r["size"]) for d, r in blobs.iterrows() if r["freed_untagged"]}

    # What the estate was built to leave behind, written out by hand.
    v1 = s["v1"]
    assert set(freed) == {v1.digest, v1.config.digest, v1.layers[1].digest}
    # --delete-untagged also takes n1 and index3 whole, and from the tagged indexes' children the configs and
    # layers nothing tagged holds (#3178): amd2's and arm's (but not arm's base layer; amd1's live in the mirror).
    amd3, arm, amd2, n1 = s["amd3"], s["arm"], s["amd2"], s["n1"]
    taken_from_indexes = {amd2.config.digest, amd2.layers[0].digest, arm.config.digest, arm.layers[1].digest}
    assert set(blobs.index[blobs["from_tagged_index"]]) == taken_from_indexes
    assert set(freed_untagged) == set(freed) | taken_from_indexes | {
        n1.digest, n1.config.digest, n1.layers[1].digest,
        s["index3"].digest, amd3.digest, amd3.config.digest, amd3.layers[0].digest}
    assert preview.totals["freed_bytes"] == sum(freed.values())
    assert preview.totals["freed_untagged_bytes"] == sum(freed_untagged.values())
    assert preview.totals["from_tagged_index_bytes"] == sum(blobs.loc[list(taken_from_indexes), "size"])
    assert preview.warnings == []

    repos = preview.repositories.set_index("repository", drop=False)
    assert repos.loc["team/api", "freed_bytes"] == sum(freed.values())  # v1's blobs are linked from team/api only
    assert repos.loc["base/os", "freed_untagged_bytes"] == 0
    # Uploads: none old enough at the default age; at age 0 both, in their repositories.
    assert preview.totals["purgeable_uploads"] == 0
    assert zero_age.totals["purgeable_uploads"] == 2
    assert zero_age.totals["purgeable_upload_bytes"] == 7_000
    up = zero_age.repositories.set_index("repository", drop=False)
    assert up.loc["fresh/only-upload", "purgeable_upload_bytes"] == 2_000

    # The oracle, on two identical copies of the storage.
    pristine = tmp_path / "pristine"
    shutil.copytree(registry.storage_dir, pristine, symlinks=True)
    before = blob_sizes(registry)
    registry.garbage_collect()
    after = blob_sizes(registry)
    removed = {d: size for d, size in before.items() if d not in after}
    assert removed == freed
    assert sum(before.values()) - sum(after.values()) == preview.totals["freed_bytes"]

    shutil.rmtree(registry.storage_dir)
    shutil.copytree(pristine, registry.storage_dir, symlinks=True)
    registry.garbage_collect(delete_untagged=True)
    after = blob_sizes(registry)
    removed = {d: size for d, size in before.items() if d not in after}
    assert removed == freed_untagged
    assert sum(before.values()) - sum(after.values()) == preview.totals["freed_untagged_bytes"]


def test_cli_gc_preview(registry, pusher, tmp_path):
    s = seed(pusher)
    registry.stop()
    db = tmp_path / "cli.duckdb"
    runner = CliRunner()

    def cli(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    repoaudit.open(db).close()  # a database without a storage snapshot
    none = cli("gc", "preview", "--db", db)
    assert none.exit_code == 1 and "no storage snapshot" in none.stderr
    out = cli("collect", f"registry-storage:{registry.storage_dir}", "--name", registry.host, "--db", db,
              "--no-progress")
    assert out.exit_code == 0, out.output
    table = cli("gc", "preview", "--db", db)
    assert table.exit_code == 0, table.output
    assert "team/api" in table.stdout and "total" in table.stdout
    doc = json.loads(cli("gc", "preview", "--db", db, "--format", "json", "--upload-age", "0h").stdout)
    assert doc["registry"] == registry.host
    v1 = s["v1"]
    freed = {b["digest"] for b in doc["blobs"] if b["freed"]}
    assert freed == {v1.digest, v1.config.digest, v1.layers[1].digest}
    assert doc["totals"]["freed_bytes"] == sum(b["size"] for b in doc["blobs"] if b["freed"])
    assert doc["totals"]["purgeable_uploads"] == 2
    bad = cli("gc", "preview", "--db", db, "--upload-age", "soon")
    assert bad.exit_code == 1 and "--upload-age: invalid duration 'soon'" in bad.stderr

    # The registry's own config: its purge age (0s: both uploads are due), or purging switched off.
    config = tmp_path / "config.yml"
    config.write_text("version: 0.1\nstorage:\n  maintenance:\n    uploadpurging: {enabled: true, age: 0s}\n")
    doc = json.loads(cli("gc", "preview", "--db", db, "--format", "json", "--registry-config", config).stdout)
    assert doc["upload_age_hours"] == 0 and doc["totals"]["purgeable_uploads"] == 2
    config.write_text(registry.config_path.read_text())  # the test registry's: purging disabled
    off = cli("gc", "preview", "--db", db, "--registry-config", config)
    assert off.exit_code == 0 and "upload purging is disabled" in off.stderr
    config.write_text("storage: {maintenance: {uploadpurging: {age: soon}}}\n")
    broken = cli("gc", "preview", "--db", db, "--registry-config", config)
    assert broken.exit_code == 1 and "storage.maintenance.uploadpurging.age: invalid duration" in broken.stderr
