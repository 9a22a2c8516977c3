-- name: dangling_referrers
-- description: Signatures, attestations and SBOMs in each registry's latest snapshot whose subject no longer
-- exists in their repository (deleted images leave their cosign tags and fallback indexes behind), with the
-- bytes of each referrer's manifest, config and layers (blobs shared with live content are not freed by
-- deleting it).
-- param: registry VARCHAR = NULL | only this registry
SELECT f.registry, f.repository, f.subject_digest, f.referrer_digest, f.category, f.scheme, f.predicate, f.via,
       f.artifact_type, f.bytes
FROM referrer_facts f
JOIN latest_snapshot ls ON ls.snapshot_id = f.snapshot_id
WHERE ($registry IS NULL OR f.registry = $registry)
  AND NOT EXISTS (SELECT 1 FROM snapshot_manifests s
                  WHERE s.snapshot_id = f.snapshot_id AND s.registry = f.registry AND s.repository = f.repository
                    AND s.digest = f.subject_digest)
ORDER BY f.registry, f.repository, f.bytes DESC, f.referrer_digest;
