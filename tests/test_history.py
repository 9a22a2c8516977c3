"""Tag history, moves and orphaned manifests on a real registry, and in the demo database."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import repoaudit
from pusher import PUSHER_USER_AGENT, Pusher, PushedImage, layer_bytes
from repoaudit.cli import main
from repoaudit.model.options import ClientOptions
from repoaudit.model.retry import NO_BACKOFF

_REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) .* "([^"]*)"$')


def our_requests(lines: list[str]) -> list[tuple[str, str]]:
    """(method, path) of every request repoaudit's own client made, from registry access lines."""
    out = []
    for line in lines:
        m = _REQUEST.search(line)
        assert m, line
        if m.group(4).startswith("repoaudit/"):
            out.append((m.group(1), m.group(2)))
        elif m.group(4).startswith("repoaudit-posture/"):
            continue  # the access posture probes (docs/posture.md), a client of their own with a fixed count
        else:
            assert m.group(4) == PUSHER_USER_AGENT, line
    return out


_placeholders = iter(range(10**6))


def delete_tag(pusher: Pusher, repo: str, tag: str) -> PushedImage:
    """Delete one tag, leaving its manifest in place (Distribution 2.8 has no tag DELETE).

    As ``regctl tag delete`` does: point the tag at a throwaway manifest, then delete
    that manifest by digest. Returns the throwaway, whose blobs a GC will reclaim.
    """
    n = next(_placeholders)
    dummy = pusher.push_image(repo, [tag], layers=[], labels={"placeholder": f"{repo}:{tag}:{n}"},
                              created=f"2020-01-01T00:00:{n % 60:02d}Z")
    pusher.delete_manifest(repo, dummy.digest)
    return dummy


def image_bytes(image: PushedImage, *own_layers: int) -> int:
    """What an image holds on its own: manifest, config and the given layers (by position)."""
    return len(image.manifest) + image.config.size + sum(image.layers[i].size for i in own_layers)


def at(audit, snapshot_id: int) -> pd.Timestamp:
    return audit.sql("SELECT started_at FROM snapshots WHERE snapshot_id = $s", {"s": snapshot_id}).iloc[0, 0]


@pytest.fixture
def audit(tmp_path):
    with repoaudit.open(tmp_path / "history.duckdb") as a:
        yield a


def test_moves_orphans_and_incremental_requests(registry, pusher, audit):
    base = pusher.push_image("base/debian", ["12", "bookworm"], layers=[layer_bytes("debian", 40_000)],
                             created="2024-03-01T00:00:00Z")
    old = pusher.push_image("team/app", ["1.0"], shared_layers=base.layers, mount_from="base/debian",
                            layers=[layer_bytes("app-a", 11_000)], created="2024-05-01T00:00:00Z")
    mid = pusher.push_image("team/app", ["1.1", "latest", "stable"], shared_layers=base.layers,
                            mount_from="base/debian", layers=[layer_bytes("app-b", 13_000)],
                            created="2025-01-15T00:00:00Z")
    # The same manifest in a second repository.
    for blob in (base.config, *base.layers):
        assert pusher.mount_blob("mirror/debian", blob.digest, "base/debian")
    pusher.tag("mirror/debian", "12", base)

    first = audit.collect(registry.url, progress=False)
    assert first.status == "complete" and first.tags == 7
    log_mark = len(registry.access_log_lines())

    new = pusher.push_image("team/app", ["1.2"], shared_layers=base.layers, mount_from="base/debian",
                            layers=[layer_bytes("app-c", 9_000)], created="2025-06-01T00:00:00Z")
    pusher.tag("team/app", "latest", new)       # forward
    pusher.tag("team/app", "stable", old)       # rollback to an older image
    dummies = [delete_tag(pusher, "team/app", "1.1"),         # mid loses its last tag
               delete_tag(pusher, "mirror/debian", "12")]     # base stays tagged in base/debian
    log_mark_after_changes = len(registry.access_log_lines())

    second = audit.collect(registry.url, progress=False)
    assert second.status == "complete" and second.mode == "incremental"

    # The registry's own log: HEAD per tag; GETs only for the one manifest never stored before.
    requests = our_requests(registry.access_log_lines()[log_mark_after_changes:])
    assert not our_requests(registry.access_log_lines()[log_mark:log_mark_after_changes])
    heads = sorted(path for method, path in requests if method == "HEAD")
    assert heads == sorted(f"/v2/{ref.replace(':', '/manifests/')}" for ref in
                           ["base/debian:12", "base/debian:bookworm", "team/app:1.0", "team/app:1.2",
                            "team/app:latest", "team/app:stable"])
    gets = sorted(path for method, path in requests if method == "GET" and ("/manifests/" in path or "/blobs/" in path))
    assert gets == sorted([f"/v2/team/app/manifests/{new.digest}", f"/v2/team/app/blobs/{new.config.digest}"])

    moves = audit.query("tag_moves")
    assert sorted(zip(moves["repository"], moves["tag"], moves["from_digest"], moves["to_digest"],
                      moves["rollback"])) == [("team/app", "latest", mid.digest, new.digest, False),
                                              ("team/app", "stable", mid.digest, old.digest, True)]
    assert set(moves["moved_after"]) == {at(audit, first.snapshot_id)}
    assert set(moves["moved_before"]) == {at(audit, second.snapshot_id)}
    assert not moves["recreated"].any()
    assert list(audit.query("tag_moves", rollbacks_only=True)["tag"]) == ["stable"]

    orphans = audit.query("orphaned_manifests").set_index(["repository", "digest"])
    assert set(orphans.index) == {("team/app", mid.digest), ("mirror/debian", base.digest)}
    mid_row = orphans.loc[("team/app", mid.digest)]
    assert mid_row["unique_bytes"] == image_bytes(mid, 1)
    assert list(mid_row["last_tags"]) == ["1.1", "latest", "stable"]
    assert not mid_row["tagged_elsewhere"]
    assert mid_row["last_seen_tagged"] == at(audit, first.snapshot_id)
    assert mid_row["untagged_since"] == at(audit, second.snapshot_id)
    mirror_row = orphans.loc[("mirror/debian", base.digest)]
    assert mirror_row["unique_bytes"] == 0 and mirror_row["tagged_elsewhere"]

    stable = audit.history("team/app:stable")
    assert list(stable["digest"]) == [mid.digest, old.digest]
    assert list(stable["rollback"].fillna(False)) == [False, True]

    # What the registry's garbage collector frees is exactly the orphans' unique bytes
    # plus the throwaway manifests the tag deletions left behind.
    registry.stop()
    before = registry.blob_store_bytes()
    registry.garbage_collect(delete_untagged=True)
    freed = before - registry.blob_store_bytes()
    assert freed == image_bytes(mid, 1) + sum(image_bytes(d) for d in dummies)
    assert freed == orphans["unique_bytes"].sum() + sum(image_bytes(d) for d in dummies)


def test_index_children_live_and_die_with_their_index(registry, pusher, audit):
    amd = pusher.push_image("team/multi", [], layers=[layer_bytes("amd", 9_000)], architecture="amd64",
                            created="2025-01-01T00:00:00Z")
    arm = pusher.push_image("team/multi", [], layers=[layer_bytes("arm", 8_000)], architecture="arm64",
                            created="2025-01-02T00:00:00Z")
    index = pusher.push_index("team/multi", ["2.0"], [amd, arm])
    first = audit.collect(registry.url, progress=False)
    arm2 = pusher.push_image("team/multi", [], layers=[layer_bytes("arm2", 7_000)], architecture="arm64",
                             created="2025-02-01T00:00:00Z")
    index2 = pusher.push_index("team/multi", ["2.0"], [amd, arm2])
    second = audit.collect(registry.url, progress=False)

    life = audit.sql("SELECT digest, untagged_since FROM image_lifecycle").set_index("digest")["untagged_since"]
    assert set(life.index) == {amd.digest, arm.digest, index.digest, arm2.digest, index2.digest}
    assert life[[index.digest, arm.digest]].tolist() == [at(audit, second.snapshot_id)] * 2
    assert life[[amd.digest, arm2.digest, index2.digest]].isna().all()

    orphans = audit.query("orphaned_manifests").set_index("digest")
    assert sorted(orphans.index) == sorted([index.digest, arm.digest])
    assert orphans.loc[index.digest, "unique_bytes"] == len(index.manifest)
    assert orphans.loc[arm.digest, "unique_bytes"] == image_bytes(arm, 0)
    assert list(orphans.loc[index.digest, "last_tags"]) == ["2.0"]

    moves = audit.query("tag_moves")
    assert list(zip(moves["from_digest"], moves["to_digest"], moves["rollback"])) == [
        (index.digest, index2.digest, False)]
    assert first.snapshot_id < second.snapshot_id


def _hide_manifest(registry, digest: str) -> tuple[Path, Path]:
    hexpart = digest.split(":")[1]
    data = registry.blobs_dir / "sha256" / hexpart[:2] / hexpart / "data"
    hidden = data.with_name("data.hidden")
    data.rename(hidden)
    return hidden, data


def test_failed_repositories_do_not_look_deleted(registry, pusher, audit):
    m1 = pusher.push_image("x/partial", ["t1"], layers=[layer_bytes("m1", 1_000)], created="2025-01-01T00:00:00Z")
    m2 = pusher.push_image("x/partial", ["t2"], layers=[layer_bytes("m2", 1_000)], created="2025-02-01T00:00:00Z")
    m3 = pusher.push_image("x/failed", ["only"], layers=[layer_bytes("m3", 1_000)])
    pusher.push_image("x/fine", ["f"], layers=[layer_bytes("m4", 1_000)])
    opts = ClientOptions(retry=NO_BACKOFF)
    s1 = audit.collect(registry.url, client_options=opts, progress=False)

    # A manifest the registry cannot serve: its tag fails, and with it all of x/failed.
    hidden = [_hide_manifest(registry, m2.digest), _hide_manifest(registry, m3.digest)]
    s2 = audit.collect(registry.url, client_options=opts, progress=False)
    assert s2.status == "partial"
    status = audit.sql("SELECT repository, status FROM repositories WHERE snapshot_id = $s",
                       {"s": s2.snapshot_id}).set_index("repository")["status"].to_dict()
    assert status == {"x/partial": "partial", "x/failed": "failed", "x/fine": "ok"}
    assert audit.query("orphaned_manifests").empty
    assert audit.query("tag_moves").empty
    assert audit.sql("SELECT count(*) FROM image_lifecycle WHERE untagged_since IS NOT NULL").iloc[0, 0] == 0

    for now, original in hidden:
        now.rename(original)
    s3 = audit.collect(registry.url, client_options=opts, progress=False)
    assert s3.status == "complete"
    only = audit.history("x/failed:only")
    assert len(only) == 1
    assert (only.iloc[0]["first_seen"], only.iloc[0]["last_seen"], only.iloc[0]["snapshots_seen"]) == (
        at(audit, s1.snapshot_id), at(audit, s3.snapshot_id), 2)
    assert audit.query("orphaned_manifests").empty and audit.query("tag_moves").empty

    # Now really untag m2: it is untagged since s4, not since the run where its tag merely failed.
    delete_tag(pusher, "x/partial", "t2")
    s4 = audit.collect(registry.url, client_options=opts, progress=False)
    orphans = audit.query("orphaned_manifests")
    assert list(orphans["digest"]) == [m2.digest]
    assert orphans.iloc[0]["untagged_since"] == at(audit, s4.snapshot_id)
    assert orphans.iloc[0]["last_seen_tagged"] == at(audit, s3.snapshot_id)

    # Pushed again onto other content after an absence: a move, flagged as a re-created tag.
    pusher.tag("x/partial", "t2", m1)
    s5 = audit.collect(registry.url, client_options=opts, progress=False)
    moves = audit.query("tag_moves")
    assert list(zip(moves["tag"], moves["from_digest"], moves["to_digest"], moves["rollback"], moves["recreated"])) == [
        ("t2", m2.digest, m1.digest, True, True)]
    assert moves.iloc[0]["moved_after"] == at(audit, s3.snapshot_id)
    assert moves.iloc[0]["moved_before"] == at(audit, s5.snapshot_id)


def test_a_run_limited_to_some_repositories_keeps_the_others_referenced(registry, pusher, audit):
    shared = layer_bytes("shared", 20_000)
    gone = pusher.push_image("x/a", ["1"], layers=[shared, layer_bytes("a-own", 3_000)])
    pusher.push_image("x/b", ["1"], layers=[shared, layer_bytes("b-own", 4_000)])
    audit.collect(registry.url, progress=False)
    delete_tag(pusher, "x/a", "1")
    second = audit.collect(registry.url, include=["x/a"], progress=False)
    assert second.repositories == 1
    orphans = audit.query("orphaned_manifests")
    assert list(orphans["digest"]) == [gone.digest]
    # x/b was not read this time, but its image still holds the shared layer.
    assert orphans.iloc[0]["unique_bytes"] == image_bytes(gone, 1)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    from repoaudit.demo.runner import run_demo

    root = tmp_path_factory.mktemp("demo")
    return run_demo(root, root / "demo.duckdb", progress=False, echo=lambda line: None)


def test_demo_rollback_is_a_move_to_an_older_image(demo_db):
    with repoaudit.open(demo_db, read_only=True) as audit:
        moves = audit.query("tag_moves", repository="payments/ledger")
        stable = moves[moves["tag"] == "stable"].sort_values("moved_before")
        last = stable.iloc[-1]
        assert last["rollback"] and last["to_created"] < last["from_created"]
        # The same facts, read straight from the snapshot tables.
        raw = audit.sql("""
            SELECT s.snapshot_id, t.digest, m.created FROM tags t
            JOIN snapshots s USING (snapshot_id) JOIN manifests m ON m.registry = t.registry AND m.digest = t.digest
            WHERE t.repository = 'payments/ledger' AND t.tag = 'stable' ORDER BY s.started_at""")
        assert (last["from_digest"], last["to_digest"]) == tuple(raw["digest"].iloc[-2:])
        assert raw["created"].iloc[-1] < raw["created"].iloc[-2]
        assert audit.query("tag_moves", rollbacks_only=True)[["repository", "tag"]].values.tolist() == [
            ["payments/ledger", "stable"]]


def test_demo_orphans_are_untagged_in_the_latest_snapshot(demo_db):
    with repoaudit.open(demo_db, read_only=True) as audit:
        orphans = audit.query("orphaned_manifests")
        assert len(orphans) > 0 and (orphans["unique_bytes"] > 0).any()
        still = audit.sql("""
            SELECT DISTINCT sm.repository, sm.digest FROM snapshot_manifests sm
            JOIN latest_snapshot ls USING (snapshot_id)""")
        live = set(zip(still["repository"], still["digest"]))
        assert not live & set(zip(orphans["repository"], orphans["digest"]))
        ever = audit.sql("SELECT DISTINCT repository, digest FROM snapshot_manifests")
        assert set(zip(orphans["repository"], orphans["digest"])) <= set(zip(ever["repository"], ever["digest"]))
        # Every manifest reached once and not now, in a repository seen complete since, is an orphan.
        assert len(set(zip(ever["repository"], ever["digest"])) - live) == len(orphans)


def test_history_command(demo_db):
    result = CliRunner().invoke(main, ["history", "payments/ledger:stable", "--db", str(demo_db),
                                       "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["rollback"] for r in rows] == [None, False, True]
    assert rows[0]["digest"] == rows[2]["digest"] != rows[1]["digest"]
    bad = CliRunner().invoke(main, ["history", "payments/ledger:", "--db", str(demo_db)])
    assert bad.exit_code == 1 and "want REPOSITORY or REPOSITORY:TAG" in bad.stderr
