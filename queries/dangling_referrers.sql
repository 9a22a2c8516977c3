-- name: dangling_referrers
-- description: Signatures, attestations and SBOMs in each registry's latest snapshot whose subject no longer
-- exists in their repository (deleted images leave their cosign tags and fallback indexes behind), with the
-- bytes of each referrer's manifest, config and layers, and sole_bytes: the blobs it alone holds, what deleting
-- it and garbage-collecting frees.
-- param: registry VARCHAR = NULL | only this registry
SELECT f.registry, f.repository, f.subject_digest, f.referrer_digest, f.category, f.scheme, f.predicate, f.via,
       f.artifact_type, f.bytes, coalesce(s.bytes, 0) AS sole_bytes
FROM referrer_facts f
JOIN latest_snapshot ls ON ls.snapshot_id = f.snapshot_id
LEFT JOIN manifests m ON m.registry = f.registry AND m.digest = f.referrer_digest
LEFT JOIN manifest_sole_bytes s ON s.manifest_key = m.manifest_key
WHERE ($registry IS NULL OR f.registry = $registry)
  AND NOT EXISTS (SELECT 1 FROM snapshot_manifests s
                  WHERE s.snapshot_id = f.snapshot_id AND s.registry = f.registry AND s.repository = f.repository
                    AND s.digest = f.subject_digest)
ORDER BY f.registry, f.repository, f.bytes DESC, f.referrer_digest;
