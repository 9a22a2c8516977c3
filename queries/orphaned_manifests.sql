-- name: orphaned_manifests
-- description: Manifests that lost every tag (directly, or as a child of a tagged index) and still hold storage
-- until they are deleted and garbage-collected, biggest first. Only repositories whose latest look was complete
-- are judged. unique_bytes counts the blobs (the manifest, its config, its layers) that nothing still tagged
-- holds, in any repository as last read; a blob shared by two orphans counts for both. tagged_elsewhere: the same
-- digest is still reached from another repository. A deleted manifest not yet garbage-collected is listed too:
-- the registry API cannot tell it from an untagged one, and both hold their blobs until GC.
-- param: registry VARCHAR = NULL | only this registry
-- param: repository VARCHAR = NULL | only this repository
-- param: min_days_untagged INTEGER = 0 | untagged for at least this many days at the latest snapshot
WITH latest AS (
    SELECT snapshot_id, registry, started_at FROM latest_snapshot
    WHERE $registry IS NULL OR registry = $registry
), looks AS (
    SELECT r.registry, r.repository, r.snapshot_id, r.status, q.seq
    FROM repositories r JOIN snapshot_sequence q ON q.snapshot_id = r.snapshot_id
    WHERE $registry IS NULL OR r.registry = $registry
), read_whole AS (
    -- Repositories whose most recent look listed and resolved every tag: elsewhere "untagged"
    -- could be a tag that failed to resolve this time.
    SELECT registry, repository FROM looks GROUP BY registry, repository HAVING arg_max(status, seq) = 'ok'
), last_reads AS (
    -- Each repository's most recent snapshot with its tags, so a run limited to some
    -- repositories (--repo, a shard) does not make the others' images look unreferenced.
    SELECT registry, repository, arg_max(snapshot_id, seq) AS snapshot_id
    FROM looks WHERE status IN ('ok', 'partial') GROUP BY registry, repository
), orphans AS (
    -- With the link's keys and its tags when last tagged (a link keeps the tags of its last snapshot).
    SELECT l.*, ls.started_at AS latest_at, k.manifest_key, k.tags AS last_tags
    FROM image_lifecycle l
    JOIN latest ls ON ls.registry = l.registry
    JOIN repository_links k ON k.registry = l.registry AND k.repository = l.repository AND k.digest = l.digest
    SEMI JOIN read_whole w ON w.registry = l.registry AND w.repository = l.repository
    WHERE l.untagged_since IS NOT NULL
      AND ($repository IS NULL OR l.repository = $repository)
      AND date_diff('day', l.untagged_since, ls.started_at) >= $min_days_untagged
), live AS (
    -- What the registry holds tagged now: what each repository's most recent read reached, by a tag or as the
    -- child of a tagged index (kept in repository_links as its last snapshot).
    SELECT DISTINCT l.manifest_key
    FROM repository_links l
    JOIN last_reads lr ON lr.registry = l.registry AND lr.repository = l.repository
                      AND lr.snapshot_id = l.last_snapshot
), orphan_keys AS (
    SELECT DISTINCT manifest_key FROM orphans
), orphan_shared AS (
    -- The blobs of orphans that other manifests hold too (blob_refs); the rest only the orphan holds.
    SELECT DISTINCT b.manifest_key, b.blob_key, b.size
    FROM manifest_blob_keys b
    SEMI JOIN orphan_keys o ON o.manifest_key = b.manifest_key
    SEMI JOIN (SELECT blob_key FROM blob_refs WHERE lo_manifest < hi_manifest) r ON r.blob_key = b.blob_key
), kept_blobs AS MATERIALIZED (
    SELECT DISTINCT b.blob_key
    FROM manifest_blob_keys b
    SEMI JOIN (SELECT DISTINCT blob_key FROM orphan_shared) x ON x.blob_key = b.blob_key
    SEMI JOIN live ON live.manifest_key = b.manifest_key
), unique_bytes AS (
    SELECT manifest_key, sum(size) AS unique_bytes FROM (
        SELECT o.manifest_key, s.bytes AS size
        FROM orphan_keys o JOIN manifest_sole_bytes s ON s.manifest_key = o.manifest_key
        ANTI JOIN live ON live.manifest_key = o.manifest_key
        UNION ALL
        SELECT manifest_key, size FROM orphan_shared ANTI JOIN kept_blobs k ON k.blob_key = orphan_shared.blob_key)
    GROUP BY manifest_key
)
SELECT o.registry, o.repository, o.digest, m.kind, m.artifact_type, m.created, m.total_size,
       coalesce(u.unique_bytes, 0)::BIGINT AS unique_bytes,
       o.first_seen, o.last_seen_tagged, o.untagged_since,
       date_diff('day', o.untagged_since, o.latest_at) AS days_untagged,
       o.last_tags, o.manifest_key IN (SELECT manifest_key FROM live) AS tagged_elsewhere
FROM orphans o
LEFT JOIN manifests m ON m.manifest_key = o.manifest_key
LEFT JOIN unique_bytes u ON u.manifest_key = o.manifest_key
ORDER BY unique_bytes DESC, o.untagged_since, o.registry, o.repository, o.digest;
