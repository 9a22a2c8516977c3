-- name: shared_layers
-- description: Layers used by images of more than one repository in the latest snapshot, most bytes saved first.
-- Bytes saved is what the registry would store again if every repository kept its own copy.
-- param: registry VARCHAR = NULL | only this registry
-- param: min_repositories INTEGER = 2 | shared by at least this many repositories
WITH reach AS (
    SELECT repository_key, manifest_key FROM latest_manifests WHERE $registry IS NULL OR registry = $registry
), manifest_repos AS (
    SELECT manifest_key, count(*) AS repositories FROM reach GROUP BY manifest_key
), multi AS (
    -- Blobs several manifests hold (blob_refs): the only ones that different manifests can share.
    SELECT blob_key FROM blob_refs WHERE lo_manifest < hi_manifest
), shared AS (
    -- Keys stand in for names and digests: counting distinct strings over millions of rows is the slow part.
    SELECT l.blob_key, any_value(l.size) AS size, count(DISTINCT r.repository_key) AS repositories,
           count(DISTINCT r.manifest_key) AS manifests
    FROM reach r
    JOIN layers l ON l.manifest_key = r.manifest_key
    SEMI JOIN multi m ON m.blob_key = l.blob_key
    GROUP BY l.blob_key
    HAVING count(DISTINCT r.repository_key) >= $min_repositories
    UNION ALL
    -- A layer one manifest holds alone is shared when that manifest is in several repositories.
    SELECT l.blob_key, any_value(l.size), any_value(mr.repositories), 1
    FROM manifest_repos mr
    JOIN layers l ON l.manifest_key = mr.manifest_key
    ANTI JOIN multi m ON m.blob_key = l.blob_key
    WHERE mr.repositories >= $min_repositories
    GROUP BY l.blob_key
)
SELECT k.registry, k.digest AS layer_digest, s.size, s.repositories, s.manifests,
       s.size * (s.repositories - 1) AS bytes_saved
FROM shared s JOIN digest_keys k ON k.key = s.blob_key
ORDER BY bytes_saved DESC, layer_digest;
