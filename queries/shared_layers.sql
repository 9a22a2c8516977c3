-- name: shared_layers
-- description: Layers used by images of more than one repository in the latest snapshot, most bytes saved first.
-- Bytes saved is what the registry would store again if every repository kept its own copy.
-- param: registry VARCHAR = NULL | only this registry
-- param: min_repositories INTEGER = 2 | shared by at least this many repositories
WITH reach AS (
    SELECT repository_key, manifest_key FROM latest_manifests WHERE $registry IS NULL OR registry = $registry
), shared AS (
    -- Keys stand in for names and digests: counting distinct strings over millions of rows is the slow part.
    SELECT l.blob_key, any_value(l.size) AS size, count(DISTINCT r.repository_key) AS repositories,
           count(DISTINCT r.manifest_key) AS manifests
    FROM reach r
    JOIN layers l ON l.manifest_key = r.manifest_key
    GROUP BY l.blob_key
    HAVING count(DISTINCT r.repository_key) >= $min_repositories
)
SELECT k.registry, k.digest AS layer_digest, s.size, s.repositories, s.manifests,
       s.size * (s.repositories - 1) AS bytes_saved
FROM shared s JOIN digest_keys k ON k.key = s.blob_key
ORDER BY bytes_saved DESC, layer_digest;
