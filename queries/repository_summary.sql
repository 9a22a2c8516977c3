-- name: repository_summary
-- description: Per repository in each registry's latest snapshot: tags, distinct images, newest and oldest image,
-- logical bytes (every image counted whole) and unique bytes (each blob once within the repository).
-- param: registry VARCHAR = NULL | only this registry
WITH tagged AS (
    SELECT i.* FROM images i WHERE $registry IS NULL OR i.registry = $registry
), blobs AS (
    -- Keys stand in for names and digests: distinct strings over millions of rows are the slow part.
    SELECT DISTINCT r.repository_key, b.blob_key, b.size
    FROM latest_manifests r
    JOIN manifest_blob_keys b ON b.manifest_key = r.manifest_key
    WHERE $registry IS NULL OR r.registry = $registry
), per_repo_bytes AS (
    SELECT k.registry, k.repository, b.unique_bytes
    FROM (SELECT repository_key, sum(size) AS unique_bytes FROM blobs GROUP BY repository_key) b
    JOIN repository_keys k ON k.key = b.repository_key
), per_repo AS (
    SELECT registry, repository, count(*) AS tags, count(DISTINCT digest) AS images,
           min(created) AS oldest_created, max(created) AS newest_created,
           sum(total_size) FILTER (WHERE artifact_type IS NULL) AS logical_bytes
    FROM (SELECT DISTINCT ON (registry, repository, digest) * FROM tagged) d
    GROUP BY ALL
), tag_counts AS (
    SELECT registry, repository, count(*) AS tags FROM tagged GROUP BY ALL
)
SELECT p.registry, p.repository, t.tags, p.images, p.oldest_created, p.newest_created,
       coalesce(p.logical_bytes, 0) AS logical_bytes, coalesce(b.unique_bytes, 0) AS unique_bytes
FROM per_repo p
JOIN tag_counts t USING (registry, repository)
LEFT JOIN per_repo_bytes b USING (registry, repository)
ORDER BY unique_bytes DESC, p.registry, p.repository;
