-- name: repository_summary
-- description: Per repository in each registry's latest snapshot: tags, distinct images, newest and oldest image,
-- logical bytes (every image counted whole) and unique bytes (each blob once within the repository).
-- param: registry VARCHAR = NULL | only this registry
WITH tagged AS (
    SELECT i.* FROM images i WHERE $registry IS NULL OR i.registry = $registry
), reach AS (
    SELECT registry, repository, digest FROM latest_manifests WHERE $registry IS NULL OR registry = $registry
), blobs AS (
    SELECT DISTINCT r.registry, r.repository, b.blob_digest, b.size
    FROM reach r JOIN manifest_blobs b ON b.registry = r.registry AND b.manifest_digest = r.digest
), per_repo_bytes AS (
    SELECT registry, repository, sum(size) AS unique_bytes FROM blobs GROUP BY ALL
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
