-- name: storage_snapshot
-- The storage snapshot a preview reads: the latest complete or partial one of the registry, or the one given.
SELECT * FROM storage_snapshot_of($registry, $snapshot) ORDER BY registry;

-- name: blobs
-- Every blob of the snapshot that either mode frees, biggest first.
SELECT digest, size, freed, freed_untagged, from_tagged_index, repositories
FROM gc_blobs($snapshot)
WHERE freed OR freed_untagged
ORDER BY size DESC, digest;

-- name: unreadable_revisions
-- Revisions whose blob exists but whose manifest the collection could not store: garbage-collect reads every
-- revision it marks and stops at the first it cannot parse; without --delete-untagged it marks them all.
SELECT r.repository, r.digest, r.tagged
FROM storage_revisions r
ANTI JOIN manifests m ON m.registry = r.registry AND m.digest = r.digest
WHERE r.snapshot_id = $snapshot AND r.linked AND r.blob_present
ORDER BY r.repository, r.digest;

-- name: untagged_without_tags_dir
-- Repositories with revisions but no _manifests/tags directory (pushed to by digest only): with
-- --delete-untagged, garbage-collect asks for their tag list, gets "repository unknown" and stops.
SELECT DISTINCT r.repository
FROM storage_revisions r
JOIN storage_repositories p ON p.snapshot_id = r.snapshot_id AND p.repository = r.repository
WHERE r.snapshot_id = $snapshot AND r.linked AND r.blob_present AND NOT p.has_tags_dir
ORDER BY r.repository;

-- name: invalid_repository_names
-- Repository directories whose names Distribution's reference grammar refuses: garbage-collect stops at the
-- first ("failed to parse repo name"), in both modes.
SELECT repository FROM storage_repositories
WHERE snapshot_id = $snapshot AND NOT valid_name
ORDER BY repository;
