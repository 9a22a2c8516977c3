-- name: unsigned_deployed_images
-- description: Running images with no valid signature from a trusted key (a key given to collect
-- --verify-key), by Kubernetes namespace: signature_status says why (missing, invalid, unverified (keyless),
-- unverified (no trusted key)); a platform manifest counts as signed when its index is. Images from registries
-- repoaudit has not collected have status 'not collected'.
-- param: registry VARCHAR = NULL | only this registry
-- param: include_keyless BOOLEAN = false | also list images whose only signatures are keyless (unverified offline)
WITH running AS (
    SELECT cluster, namespace, registry, repository, digest,
           string_agg(DISTINCT image_ref, ', ' ORDER BY image_ref) AS image_refs,
           count(DISTINCT pod) AS pods, count(DISTINCT pod) FILTER (WHERE phase = 'Running') AS running_pods
    FROM workload_images
    WHERE digest IS NOT NULL
    GROUP BY ALL
), supply AS (
    SELECT s.* FROM image_supply s JOIN latest_snapshot ls ON ls.snapshot_id = s.snapshot_id
)
SELECT r.cluster, r.namespace, r.registry, r.repository, r.digest, r.image_refs, r.pods, r.running_pods,
       coalesce(s.signature_status, 'not collected') AS signature_status, coalesce(s.signatures, 0) AS signatures,
       s.signers, s.invalid_reasons
FROM running r
LEFT JOIN supply s ON s.registry = r.registry AND s.repository = r.repository AND s.digest = r.digest
WHERE coalesce(s.signature_status, 'not collected') <> 'valid'
  AND ($include_keyless OR coalesce(s.signature_status, '') <> 'unverified (keyless)')
  AND ($registry IS NULL OR r.registry = $registry)
ORDER BY r.namespace, r.running_pods DESC, r.registry, r.repository, r.digest;
