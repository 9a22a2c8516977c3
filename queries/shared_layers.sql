-- name: shared_layers
-- description: Layers used by images of more than one repository in the latest snapshot, most bytes saved first.
-- Bytes saved is what the registry would store again if every repository kept its own copy.
-- param: registry VARCHAR = NULL | only this registry
-- param: min_repositories INTEGER = 2 | shared by at least this many repositories
WITH reach AS (
    SELECT registry, repository, digest FROM latest_manifests WHERE $registry IS NULL OR registry = $registry
)
SELECT l.registry, l.digest AS layer_digest, any_value(l.size) AS size,
       count(DISTINCT r.repository) AS repositories, count(DISTINCT r.digest) AS manifests,
       any_value(l.size) * (count(DISTINCT r.repository) - 1) AS bytes_saved
FROM reach r
JOIN layers l ON l.registry = r.registry AND l.manifest_digest = r.digest
GROUP BY l.registry, l.digest
HAVING count(DISTINCT r.repository) >= $min_repositories
ORDER BY bytes_saved DESC, layer_digest;
