"""``registry-storage:PATH`` on the real registry: the same snapshot as its API, plus what only storage shows.

The estate has manifests deleted by digest, re-pointed tags (untagged revisions), a multi-arch
index and abandoned uploads. An API collection and a storage collection of it must agree on
every table the API fills; the storage tables must match the files themselves; and the
storage is never written. Broken files (a truncated manifest blob, a link to a missing blob, a
directory that cannot be listed) become recorded errors while the run goes on.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from click.testing import CliRunner
from pusher import layer_bytes
from test_gc_preview import seed

import repoaudit
from repoaudit.cli import main


def tree_state(root) -> dict[str, tuple]:
    """Every path under ``root`` with its size, mtime and content hash: proof nothing was written."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, digest)
    return out


TABLES = {
    "tags": "SELECT repository, tag, digest FROM tags ORDER BY ALL",
    "repositories": "SELECT repository, tag_count, status FROM repositories ORDER BY ALL",
}


def reached(audit, table: str) -> list[tuple]:
    """Rows of manifests/layers/children for the manifests the snapshot's tags reach (storage stores untagged ones too)."""
    reach = ("WITH RECURSIVE r(digest) AS (SELECT digest FROM tags UNION "
             "SELECT c.child_digest FROM manifest_children c JOIN r ON c.index_digest = r.digest) ")
    if table == "manifests":
        sql = (reach + "SELECT * EXCLUDE (registry, first_seen_snapshot, manifest_key, config_key) FROM manifests "
               "WHERE digest IN (SELECT digest FROM r) ORDER BY ALL")
    elif table == "manifest_children":
        sql = (reach + "SELECT * EXCLUDE (registry, index_key, child_key) FROM manifest_children "
               "WHERE index_digest IN (SELECT digest FROM r) ORDER BY ALL")
    else:
        sql = (reach + "SELECT manifest_digest, position, digest, media_type, size FROM layers "
               "WHERE manifest_digest IN (SELECT digest FROM r) ORDER BY ALL")
    return [tuple(row) for row in audit.sql(sql).itertuples(index=False)]


def rows(audit, sql: str) -> list[tuple]:
    return [tuple(r) for r in audit.sql(sql).itertuples(index=False)]


def test_storage_snapshot_agrees_with_the_api_and_the_files(registry, pusher, tmp_path):
    s = seed(pusher)
    with repoaudit.open(tmp_path / "api.duckdb") as api:
        api_result = api.collect(registry.url, progress=False)
        assert api_result.status == "complete"
        api_rows = {name: rows(api, sql) for name, sql in TABLES.items()}
        api_reached = {t: reached(api, t) for t in ("manifests", "layers", "manifest_children")}

    before = tree_state(registry.storage_dir)
    target = f"registry-storage:{registry.storage_dir}"
    with repoaudit.open(tmp_path / "storage.duckdb") as audit:
        result = audit.collect(target, name=registry.host, progress=False)  # the registry is still running
        assert result.status == "complete", audit.sql("SELECT error FROM collection_errors")["error"].tolist()
        assert result.registry == registry.host
        assert result.requests.get("read manifest", 0) == len(set(
            rows(audit, "SELECT digest FROM storage_revisions WHERE linked AND blob_present")))
        for name, sql in TABLES.items():
            assert rows(audit, sql) == api_rows[name], name
        for table in ("manifests", "layers", "manifest_children"):
            assert reached(audit, table) == api_reached[table], table
        snap = audit.sql("SELECT source_kind, source FROM snapshots").iloc[0]
        assert snap["source_kind"] == "registry-storage" and snap["source"] == target

        # Only storage: the untagged revisions, stored as manifests too.
        untagged = set(audit.sql("SELECT digest FROM storage_revisions WHERE linked AND NOT tagged")["digest"])
        assert untagged == {s["n1"].digest, s["index3"].digest, s["amd1"].digest, s["arm"].digest,
                            s["amd2"].digest, s["amd3"].digest}
        stored = set(audit.sql("SELECT digest FROM manifests")["digest"])
        assert untagged <= stored
        deleted = rows(audit, "SELECT repository, digest FROM storage_revisions WHERE NOT linked")
        assert deleted == [("team/api", s["v1"].digest)]
        # The files themselves: every blob with its size, every layer link, the tag histories, the uploads.
        on_disk = {f"{p.parent.parent.parent.name}:{p.parent.name}": p.stat().st_size
                   for p in registry.blobs_dir.rglob("data")}
        assert dict(rows(audit, "SELECT digest, size FROM storage_blobs")) == on_disk
        layer_root = registry.storage_dir / "docker/registry/v2/repositories/team/multi/_layers/sha256"
        assert set(audit.sql("SELECT digest FROM storage_layer_links WHERE repository = 'team/multi'")["digest"]) \
            == {f"sha256:{p.name}" for p in layer_root.iterdir() if (p / "link").exists()}
        rc = set(audit.sql("SELECT digest FROM storage_tag_history WHERE repository = 'team/multi' AND tag = 'rc'")
                 ["digest"])
        assert rc == {s["index1"].digest, s["index2"].digest}
        uploads = audit.sql("SELECT repository, size, started_at FROM storage_uploads ORDER BY repository")
        assert uploads[["repository", "size"]].values.tolist() == [["fresh/only-upload", 2_000], ["team/api", 5_000]]
        assert uploads["started_at"].notna().all()

        # Run twice: incremental, nothing new, the same tags.
        again = audit.collect(target, name=registry.host, progress=False)
        assert again.mode == "incremental" and again.new_manifests == 0 and again.tags == result.tags
    assert tree_state(registry.storage_dir) == before  # read-only: not a byte, not an mtime changed


def blob_data(registry, digest: str):
    hexpart = digest.split(":", 1)[1]
    return registry.blobs_dir / "sha256" / hexpart[:2] / hexpart / "data"


def test_broken_storage_is_recorded_and_the_run_goes_on(registry, pusher, tmp_path):
    good = pusher.push_image("good/app", ["1"], layers=[layer_bytes("st-good", 2_000)])
    trunc = pusher.push_image("bad/truncated", ["1"], layers=[layer_bytes("st-trunc", 2_000)])
    old = pusher.push_image("bad/dangling", ["old"], layers=[layer_bytes("st-old", 2_000)])
    pusher.push_image("bad/dangling", ["old"], layers=[layer_bytes("st-new", 2_000)])  # old: untagged now
    pusher.push_image("bad/loop", ["1"], layers=[layer_bytes("st-loop", 2_000)])
    registry.stop()
    v2 = registry.storage_dir / "docker/registry/v2"
    path = blob_data(registry, trunc.digest)
    path.write_bytes(path.read_bytes()[:40])
    blob_data(registry, old.digest).unlink()
    # Directories Distribution could not have written: not repository names, skipped with a recorded error.
    not_utf8 = v2 / "repositories" / "bad name\udcff"
    (not_utf8 / "_layers").mkdir(parents=True)
    (v2 / "repositories" / "bad" / "Upper" / "_layers").mkdir(parents=True)
    tags = v2 / "repositories/bad/loop/_manifests/tags"
    shutil.rmtree(tags)
    tags.symlink_to(tags.name)  # listing it fails (ELOOP) whoever runs the test, root included

    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        result = audit.collect(f"registry-storage:{registry.storage_dir}", name=registry.host, progress=False)
        assert result.status == "partial"
        errors = audit.sql("SELECT repository, reference, error_type, error FROM collection_errors")
        by_repo = {r: list(g["error"]) for r, g in errors.groupby("repository")}
        assert any("hashes to" in e and "truncated or corrupt" in e for e in by_repo["bad/truncated"])
        assert any("dangling link" in e and old.digest in e for e in by_repo["bad/dangling"])
        assert any("cannot list" in e for e in by_repo["bad/loop"])
        assert "good/app" not in by_repo
        assert any("is not a valid repository name; skipped" in e for e in errors["error"])
        assert rows(audit, "SELECT repository, tag, digest FROM tags WHERE repository = 'good/app'") == [
            ("good/app", "1", good.digest)]
        status = dict(rows(audit, "SELECT repository, status FROM repositories"))
        assert status["good/app"] == "ok" and status["bad/truncated"] == "failed"

        # GC would stop at the truncated manifest: the preview says so, and the real garbage-collect agrees.
        preview = audit.gc_preview(registry.host)
        assert any("could not be read" in w and trunc.digest in w for w in preview.warnings)
        assert any("2 repository directories have names Distribution cannot parse" in w for w in preview.warnings)
    shutil.rmtree(not_utf8)  # the test helper reads GC's output as UTF-8
    with pytest.raises(RuntimeError, match="failed to parse repo name bad/Upper"):
        registry.garbage_collect()
    shutil.rmtree(v2 / "repositories" / "bad" / "Upper")
    with pytest.raises(RuntimeError, match=f"failed to mark: .*failed to retrieve manifest for digest {trunc.digest}: "
                                           "unexpected end of JSON input"):
        registry.garbage_collect()


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "not a directory"),
    (lambda p: p, "no docker/registry/v2/repositories or docker/registry/v2/blobs below it"),
])
def test_cli_refuses_what_is_not_a_storage_root(tmp_path, make, message):
    target = make(tmp_path)
    out = CliRunner().invoke(main, ["collect", f"registry-storage:{target}", "--db", str(tmp_path / "x.duckdb"),
                                    "--no-progress"])
    assert out.exit_code == 4  # collect's "the snapshot failed", recorded as for an unreachable registry
    assert message in out.stderr and "Traceback" not in out.output
    lines = [line for line in out.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1


def test_target_parsing():
    target = repoaudit.parse_target("registry-storage:/var/lib/registry", "registry.example.com")
    assert (target.kind, target.url, target.name) == ("registry-storage", "registry-storage:/var/lib/registry",
                                                       "registry.example.com")
    assert str(target.path) == "/var/lib/registry"
    with pytest.raises(repoaudit.ConfigError, match="needs the storage root directory"):
        repoaudit.parse_target("registry-storage:")
