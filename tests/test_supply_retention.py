"""Retention follows referrers: deleting an image deletes its signatures, attestations and SBOMs with it, and
garbage collection frees exactly the bytes the plan counts (the real registry's garbage-collect)."""
from __future__ import annotations

import json

from supplychain import new_key, push_artifact, push_fallback_index, push_signature

import repoaudit

POLICY = {
    "name": "current-only",
    "rules": [
        {"name": "current", "keep": {"tags": ["v2"]}},
    ],
}


def test_plan_deletes_referrers_with_their_image_and_gc_frees_the_planned_bytes(registry, pusher, tmp_path):
    key = new_key()
    old = pusher.push_image("team/app", ["v1"], created="2024-01-01T00:00:00Z")
    new = pusher.push_image("team/app", ["v2"], created="2024-06-01T00:00:00Z")
    sig_old = push_signature(pusher, "team/app", old.digest, key)
    sig_new = push_signature(pusher, "team/app", new.digest, key)
    sbom, size = push_artifact(pusher, "team/app", old, "application/spdx+json", "application/spdx+json",
                               b'{"spdxVersion": "SPDX-2.3"}')
    fallback = push_fallback_index(pusher, "team/app", old.digest, [(sbom, size, "application/spdx+json")])
    with repoaudit.open(tmp_path / "r.duckdb") as audit:
        audit.collect(registry.url, progress=False)
        plan = audit.retention(POLICY)
        cands = plan.candidates
        assert cands["digest"].tolist() == [old.digest], cands[["tags", "kind", "artifact_type", "untagged"]].to_dict("records")
        assert sorted(cands["referrers"].iloc[0]) == sorted([sig_old, sbom, fallback])
        assert sig_new not in set(plan.freed_blobs["blob_digest"])
        planned = int(plan.summary.iloc[0]["reclaimable_bytes"])
        freed = set(plan.freed_blobs["blob_digest"])
        assert {sig_old, sbom, fallback} <= freed
        plan_file = plan.write_json(tmp_path / "plan.json")
        assert sorted(json.loads(plan_file.read_text())["plans"][0]["candidates"][0]["referrers"]) == \
            sorted([sig_old, sbom, fallback])

        result = audit.retention_apply(plan_file, yes=True)
        assert result.counts() == {"deleted": 4}
        roles = audit.sql("SELECT role, count(*) AS n FROM deletions GROUP BY 1 ORDER BY 1")
        assert dict(zip(roles["role"], roles["n"])) == {"image": 1, "referrer": 3}
        before, digests_before = registry.blob_store_bytes(), registry.blob_digests()
    registry.stop()
    registry.garbage_collect()
    assert digests_before - registry.blob_digests() == freed
    assert before - registry.blob_store_bytes() == planned
    registry.start()
    assert sorted(pusher.tags("team/app")) == sorted(["v2", f"sha256-{new.digest[7:]}.sig"])


def test_dangling_referrers_are_candidates_of_the_built_in_rule(registry, pusher, tmp_path):
    key = new_key()
    kept = pusher.push_image("team/app", ["v1"], created="2024-06-01T00:00:00Z")
    gone = pusher.push_image("team/app", ["v0"], created="2024-01-01T00:00:00Z")
    push_signature(pusher, "team/app", kept.digest, key)
    dangling = push_signature(pusher, "team/app", gone.digest, key)
    pusher.delete_manifest("team/app", gone.digest)
    registry.stop()
    registry.garbage_collect()  # the deleted image's own blobs: only the signature's are left to free
    registry.start()
    policy = {"name": "newest", "rules": [{"name": "newest", "keep": {"most_recent": 1, "by": "created"}}]}
    with repoaudit.open(tmp_path / "d.duckdb") as audit:
        audit.collect(registry.url, progress=False)
        plan = audit.retention(policy)
        # The kept image's signature is neither ranked among the images nor a candidate; the dangling one is.
        assert plan.candidates[["digest", "rule"]].values.tolist() == [
            [dangling, "referrer of an image no longer held (built-in)"]]
        assert int(plan.summary.iloc[0]["reclaimable_bytes"]) == int(audit.query("dangling_referrers")["sole_bytes"].sum())
        planned = int(plan.summary.iloc[0]["reclaimable_bytes"])
        result = audit.retention_apply(plan.write_json(tmp_path / "plan.json"), yes=True)
        assert result.counts() == {"deleted": 1}
        before = registry.blob_store_bytes()
    registry.stop()
    registry.garbage_collect()
    assert before - registry.blob_store_bytes() == planned
