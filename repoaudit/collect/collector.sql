-- name: finalize_indexes
-- New indexes of a snapshot get their size and age from their children, once every child is stored:
-- total_size counts each config and layer blob once even when several platforms share it (what the
-- index costs in the blob store); created is the newest child's.
UPDATE manifests AS m SET
    total_size = agg.total_size,
    created = agg.created
FROM (
    SELECT c.index_digest,
           (SELECT sum(size) FROM (
                SELECT DISTINCT b.blob_digest, b.size FROM manifest_children c2
                JOIN manifest_blobs b ON b.registry = c2.registry AND b.manifest_digest = c2.child_digest
                WHERE c2.registry = c.registry AND c2.index_digest = c.index_digest AND b.role <> 'manifest'
           )) AS total_size,
           max(cm.created) AS created
    FROM manifest_children c
    LEFT JOIN manifests cm ON cm.registry = c.registry AND cm.digest = c.child_digest
    WHERE c.registry = $registry
    GROUP BY c.registry, c.index_digest
) AS agg
WHERE m.registry = $registry AND m.digest = agg.index_digest AND m.first_seen_snapshot = $snapshot
