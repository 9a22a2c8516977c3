-- name: artifact_inventory
-- description: What the latest snapshots hold by kind: images, indexes, schema 1 manifests and non-image
-- artifacts (cosign signatures, SBOMs, Helm charts), with tag and manifest counts.
-- param: registry VARCHAR = NULL | only this registry
SELECT registry, kind, coalesce(artifact_type, '(image)') AS artifact_type, media_type,
       count(DISTINCT digest) AS manifests, count(*) AS tags
FROM images
WHERE $registry IS NULL OR registry = $registry
GROUP BY ALL
ORDER BY registry, tags DESC;
