-- name: attestation_types
-- description: What each image of each registry's latest snapshot carries besides signatures: attestations by
-- predicate (slsa-provenance, spdx, cyclonedx, vulnerability, vex, other) with the predicate type URI, and SBOM
-- artifacts by format; one row per image, category and predicate.
-- param: registry VARCHAR = NULL | only this registry
-- param: repository VARCHAR = NULL | only this repository
SELECT f.registry, f.repository, f.subject_digest AS digest, f.category,
       coalesce(f.predicate, f.scheme, 'unknown') AS predicate, f.predicate_type,
       count(*) AS referrers, sum(f.bytes) AS bytes, min(f.created) AS first_created
FROM referrer_facts f
JOIN latest_snapshot ls ON ls.snapshot_id = f.snapshot_id
WHERE f.category IN ('attestation', 'sbom')
  AND ($registry IS NULL OR f.registry = $registry)
  AND ($repository IS NULL OR f.repository = $repository)
GROUP BY ALL
ORDER BY f.registry, f.repository, f.subject_digest, f.category, predicate;
