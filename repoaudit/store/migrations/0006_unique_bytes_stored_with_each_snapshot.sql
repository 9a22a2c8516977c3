-- The unique bytes of each snapshot, stored with it. Listing snapshots summed the blobs of every snapshot
-- on every call (seconds at a million tags); the writer stores the figure when it commits, and the
-- backfill fills it in for snapshots written before.

-- name: schema
ALTER TABLE snapshots ADD COLUMN unique_bytes BIGINT;

-- name: backfill
UPDATE snapshots AS s SET unique_bytes = b.bytes
FROM (
    SELECT snapshot_id, sum(size) AS bytes FROM (
        SELECT DISTINCT sm.snapshot_id, mb.blob_digest, mb.size
        FROM snapshot_manifests sm
        JOIN manifest_blobs mb ON mb.registry = sm.registry AND mb.manifest_digest = sm.digest
    ) GROUP BY snapshot_id
) AS b
WHERE b.snapshot_id = s.snapshot_id;

UPDATE snapshots SET unique_bytes = 0 WHERE unique_bytes IS NULL AND status <> 'failed';
