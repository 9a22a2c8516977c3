-- The demo estate as collected, read by repoaudit/demo/collected.py to decide what the demo
-- scanner finds and what the demo cluster runs. $registry is the demo registry's name.

-- name: latest_snapshot
-- The registry's newest snapshot: the scans and pods are written as of its start.
SELECT snapshot_id, started_at FROM latest_snapshot WHERE registry = $registry;

-- name: first_snapshot
-- The registry's first usable snapshot: long-running pods started on what its tags showed.
SELECT min(snapshot_id) AS snapshot_id FROM snapshots
WHERE registry = $registry AND status IN ('complete', 'partial');

-- name: snapshot_tags
-- Every tag of a snapshot with what it points at.
SELECT t.repository, t.tag, t.digest, m.kind, m.created, m.artifact_type, m.config_digest, m.total_size
FROM tags t JOIN manifests m ON m.registry = t.registry AND m.digest = t.digest
WHERE t.snapshot_id = $snapshot_id
ORDER BY t.repository, t.tag;

-- name: snapshot_tag_digests
-- Every tag of a snapshot and its digest.
SELECT repository, tag, digest FROM tags WHERE snapshot_id = $snapshot_id;

-- name: index_children
-- The platform manifests of every index, in the index's order.
SELECT index_digest, child_digest, architecture, variant FROM manifest_children
WHERE registry = $registry
ORDER BY index_digest, position;

-- name: image_layers
-- The layers of every image, in order.
SELECT manifest_digest, digest FROM layers
WHERE registry = $registry
ORDER BY manifest_digest, position;

-- name: images
-- Single-platform images (not signatures or other artifacts), oldest first.
SELECT digest, config_digest, created, architecture, total_size, labels FROM manifests
WHERE registry = $registry AND kind = 'image' AND artifact_type IS NULL AND config_digest IS NOT NULL
ORDER BY created, digest;
