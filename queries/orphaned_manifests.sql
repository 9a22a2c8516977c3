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
    SELECT l.*, ls.started_at AS latest_at
    FROM image_lifecycle l
    JOIN latest ls ON ls.registry = l.registry
    SEMI JOIN read_whole w ON w.registry = l.registry AND w.repository = l.repository
    WHERE l.untagged_since IS NOT NULL
      AND ($repository IS NULL OR l.repository = $repository)
      AND date_diff('day', l.untagged_since, ls.started_at) >= $min_days_untagged
), current_tags AS (
    SELECT t.registry, t.digest FROM tags t
    SEMI JOIN last_reads lr ON lr.snapshot_id = t.snapshot_id AND lr.registry = t.registry
                           AND lr.repository = t.repository
    WHERE t.snapshot_id IN (SELECT DISTINCT snapshot_id FROM last_reads)  -- skips older snapshots' row groups
), live AS (
    -- What the registry holds tagged now: current tags and the children of tagged indexes.
    -- Duplicates are fine: live is only used in semi joins.
    SELECT registry, digest FROM current_tags
    UNION ALL
    SELECT c.registry, c.child_digest
    FROM current_tags t JOIN manifest_children c ON c.registry = t.registry AND c.index_digest = t.digest
), orphan_blobs AS (
    SELECT DISTINCT o.registry, o.digest, b.blob_digest, b.size
    FROM (SELECT DISTINCT registry, digest FROM orphans) o
    JOIN manifest_blobs b ON b.registry = o.registry AND b.manifest_digest = o.digest
), orphan_blob_set AS MATERIALIZED (
    SELECT DISTINCT registry, blob_digest FROM orphan_blobs
), holders AS MATERIALIZED (
    -- Every manifest holding a blob of an orphan. Materialized so that the planner joins
    -- from this small set instead of from everything live (a wrong order costs seconds).
    SELECT b.registry, b.blob_digest, b.manifest_digest
    FROM manifest_blobs b
    SEMI JOIN orphan_blob_set ob ON ob.registry = b.registry AND ob.blob_digest = b.blob_digest
), kept_blobs AS (
    SELECT DISTINCT h.registry, h.blob_digest
    FROM holders h
    SEMI JOIN live ON live.registry = h.registry AND live.digest = h.manifest_digest
), unique_bytes AS (
    SELECT ob.registry, ob.digest, sum(ob.size) AS unique_bytes
    FROM orphan_blobs ob
    ANTI JOIN kept_blobs k ON k.registry = ob.registry AND k.blob_digest = ob.blob_digest
    GROUP BY ob.registry, ob.digest
), last_tags AS (
    SELECT o.registry, o.repository, o.digest, list(t.tag ORDER BY t.tag) AS last_tags
    FROM orphans o
    JOIN tags t ON t.snapshot_id = o.last_tagged_snapshot AND t.registry = o.registry
               AND t.repository = o.repository AND t.digest = o.digest
    GROUP BY ALL
)
SELECT o.registry, o.repository, o.digest, m.kind, m.artifact_type, m.created, m.total_size,
       coalesce(u.unique_bytes, 0)::BIGINT AS unique_bytes,
       o.first_seen, o.last_seen_tagged, o.untagged_since,
       date_diff('day', o.untagged_since, o.latest_at) AS days_untagged,
       lt.last_tags,
       EXISTS (SELECT 1 FROM live WHERE live.registry = o.registry AND live.digest = o.digest) AS tagged_elsewhere
FROM orphans o
LEFT JOIN manifests m ON m.registry = o.registry AND m.digest = o.digest
LEFT JOIN unique_bytes u ON u.registry = o.registry AND u.digest = o.digest
LEFT JOIN last_tags lt ON lt.registry = o.registry AND lt.repository = o.repository AND lt.digest = o.digest
ORDER BY unique_bytes DESC, o.untagged_since, o.registry, o.repository, o.digest;
