"""Retention on the full truth: a plan from a storage snapshot, applied through the API, then the real GC.

The API never showed the untagged revision here (the tag moved before any collection) nor the
manifest deleted by digest, whose blobs nothing references any more. From storage the plan sees
both: the revision is a candidate, and ``reclaimable_bytes`` includes the unreferenced blobs, so
plan + apply + ``garbage-collect`` frees exactly the plan's number.
"""

from __future__ import annotations

from pusher import layer_bytes

import repoaudit

POLICY = {"name": "newest", "rules": [{"name": "newest", "keep": {"most_recent": 1, "by": "created"}}]}


def test_plan_from_storage_frees_exactly_its_bytes(registry, pusher, tmp_path):
    base = pusher.push_image("base/os", ["1"], layers=[layer_bytes("sr-base", 20_000)],
                             created="2023-01-01T00:00:00Z")
    shared = dict(shared_layers=base.layers, mount_from="base/os")
    old = pusher.push_image("svc", ["old"], layers=[layer_bytes("sr-old", 3_000)], created="2024-01-01T00:00:00Z",
                            **shared)
    n1 = pusher.push_image("svc", ["nightly"], layers=[layer_bytes("sr-n1", 3_100)],
                           created="2025-01-01T00:00:00Z", **shared)
    n2 = pusher.push_image("svc", ["nightly"], layers=[layer_bytes("sr-n2", 3_200)],
                           created="2025-02-01T00:00:00Z", **shared)
    gone = pusher.push_image("svc", ["gone"], layers=[layer_bytes("sr-gone", 3_300)],
                             created="2023-06-01T00:00:00Z", **shared)
    pusher.delete_manifest("svc", gone.digest)

    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        audit.collect(f"registry-storage:{registry.storage_dir}", name=registry.host, progress=False)
        plan = audit.retention(POLICY, registry=registry.host)
        cands = plan.candidates.set_index("digest")
        assert sorted(cands.index) == sorted([old.digest, n1.digest])
        assert cands.loc[n1.digest, "untagged"] and not cands.loc[old.digest, "untagged"]
        assert n2.digest not in cands.index
        unreferenced = audit.gc_preview(registry.host).totals["freed_bytes"]
        assert unreferenced == len(gone.manifest) + gone.config.size + gone.layers[1].size
        candidate_bytes = sum(len(i.manifest) + i.config.size + i.layers[1].size for i in (old, n1))
        reclaimable = int(plan.summary.iloc[0]["reclaimable_bytes"])
        assert reclaimable == candidate_bytes + unreferenced

        path = plan.write_json(tmp_path / "plan.json")
        result = audit.retention_apply(path, yes=True, registry_urls={registry.host: registry.url})
        assert result.counts() == {"deleted": 2}

    registry.stop()
    before = registry.blob_store_bytes()
    registry.garbage_collect()
    assert before - registry.blob_store_bytes() == reclaimable
