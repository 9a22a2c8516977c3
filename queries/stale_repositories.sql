-- name: stale_repositories
-- description: Repositories of each registry's latest snapshot with no new image in N days: the newest push
-- (first snapshot that saw an image there, or its config created when that was the first look at the repository)
-- is older than N days. unique_bytes: blobs the repository reaches now; exclusive_bytes: blobs no link outside
-- the repository holds (untagged revisions included), i.e. what deleting the whole repository would free.
-- param: older_than_days INTEGER = 180 | no image pushed in this many days before the snapshot
-- param: registry VARCHAR = NULL | only this registry
-- param: namespace VARCHAR = NULL | only this team namespace (first path component of the repository)
WITH ls AS (
    SELECT snapshot_id, registry, started_at FROM latest_snapshot WHERE $registry IS NULL OR registry = $registry
), dated AS (
    SELECT * FROM latest_image_push($registry, $namespace)
), deployed AS (
    SELECT registry, repository, count(DISTINCT digest) AS deployed_images
    FROM deployed_images WHERE digest IS NOT NULL GROUP BY registry, repository
), per_repo AS (
    SELECT registry, repository, sum(len(tags))::BIGINT AS tags, count(*) AS images, max(pushed_at) AS newest_pushed,
           max(created) AS newest_created, min(created) AS oldest_created, sum(size)::BIGINT AS logical_bytes,
           date_diff('day', max(pushed_at), any_value(snapshot_at)) AS days_since_push
    FROM dated GROUP BY registry, repository
), stale AS (
    SELECT * FROM per_repo WHERE days_since_push > $older_than_days
), all_links AS (
    -- Every (repository, manifest) a snapshot that holds data reached, kept at commit; live: the latest reached it.
    SELECT l.registry, l.repository, l.repository_key, l.manifest_key, l.last_snapshot = ls.snapshot_id AS live
    FROM repository_links l JOIN ls ON ls.registry = l.registry
), links AS (
    -- Only the stale repositories' links: every other link matters only for the blobs these hold.
    SELECT a.* FROM all_links a SEMI JOIN stale s ON s.registry = a.registry AND s.repository = a.repository
), manifest_repos AS (
    -- Integers stand in for names: per manifest, the lowest and highest repository holding it.
    SELECT manifest_key, min(repository_key) AS lo, max(repository_key) AS hi FROM all_links GROUP BY manifest_key
), sole_bytes AS (
    -- Blobs a single manifest holds (most of them; their bytes are kept per manifest at commit) are distinct
    -- across manifests: sum them per link, exclusive when every link to the manifest is in this repository.
    SELECT k.registry, k.repository, sum(o.bytes) FILTER (WHERE k.live) AS unique_bytes,
           sum(o.bytes) FILTER (WHERE mr.lo = mr.hi) AS exclusive_bytes
    FROM links k
    JOIN manifest_sole_bytes o ON o.manifest_key = k.manifest_key
    JOIN manifest_repos mr ON mr.manifest_key = k.manifest_key
    GROUP BY k.registry, k.repository
), shared_blobs AS (
    SELECT blob_key FROM blob_refs WHERE lo_manifest < hi_manifest AND registry IN (SELECT registry FROM ls)
), link_blobs AS (
    -- Blobs several manifests share, each once per repository: live when a link the latest snapshot reached holds it.
    SELECT k.registry, k.repository, b.blob_key, bool_or(k.live) AS live, max(b.size) AS size
    FROM links k JOIN manifest_blob_keys b ON b.manifest_key = k.manifest_key
    SEMI JOIN shared_blobs sb ON sb.blob_key = b.blob_key
    GROUP BY k.registry, k.repository, b.blob_key
), blob_repos AS (
    -- Across every link, but only for the shared blobs the stale repositories hold.
    SELECT b.blob_key, max(b.size) AS size, min(mr.lo) = max(mr.hi) AS one_repository
    FROM (SELECT * FROM manifest_blob_keys mb SEMI JOIN (SELECT DISTINCT blob_key FROM link_blobs) x
              ON x.blob_key = mb.blob_key) b
    JOIN manifest_repos mr ON mr.manifest_key = b.manifest_key
    GROUP BY b.blob_key
), shared_bytes AS (
    SELECT lb.registry, lb.repository, sum(br.size) FILTER (WHERE lb.live) AS unique_bytes,
           sum(br.size) FILTER (WHERE br.one_repository) AS exclusive_bytes
    FROM link_blobs lb JOIN blob_repos br ON br.blob_key = lb.blob_key
    GROUP BY lb.registry, lb.repository
), repo_bytes AS (
    SELECT registry, repository, coalesce(sum(unique_bytes), 0)::BIGINT AS unique_bytes,
           coalesce(sum(exclusive_bytes), 0)::BIGINT AS exclusive_bytes
    FROM (SELECT * FROM sole_bytes UNION ALL SELECT * FROM shared_bytes)
    GROUP BY registry, repository
)
SELECT s.registry, split_part(s.repository, '/', 1) AS namespace, s.repository, s.tags, s.images,
       s.newest_pushed, s.days_since_push, s.newest_created, s.oldest_created,
       coalesce(d.deployed_images, 0) AS deployed_images, s.logical_bytes,
       coalesce(b.unique_bytes, 0) AS unique_bytes, coalesce(b.exclusive_bytes, 0) AS exclusive_bytes
FROM stale s
LEFT JOIN deployed d ON d.registry = s.registry AND d.repository = s.repository
LEFT JOIN repo_bytes b ON b.registry = s.registry AND b.repository = s.repository
ORDER BY exclusive_bytes DESC, s.registry, s.repository;
