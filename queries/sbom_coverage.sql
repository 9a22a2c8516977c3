-- name: sbom_coverage
-- description: Images carrying an SBOM per team namespace (first path component of the repository) and
-- snapshot: an SBOM artifact (cosign .sbom, an OCI artifact of an SPDX or CycloneDX type) or an in-toto
-- attestation with an SPDX or CycloneDX predicate, attached to the image or to an index holding it; and images
-- with SLSA provenance.
-- param: registry VARCHAR = NULL | only this registry
-- param: latest_only BOOLEAN = true | only each registry's latest snapshot (false: the history)
SELECT s.registry, s.snapshot_id, sn.started_at, split_part(s.repository, '/', 1) AS namespace,
       count(*) AS images,
       count(*) FILTER (WHERE s.sboms > 0) AS with_sbom,
       count(*) FILTER (WHERE s.predicates LIKE '%slsa-provenance%') AS with_provenance,
       round(100.0 * count(*) FILTER (WHERE s.sboms > 0) / count(*), 1) AS sbom_pct
FROM image_supply s
JOIN snapshots sn ON sn.snapshot_id = s.snapshot_id AND sn.status IN ('complete', 'partial')
WHERE ($registry IS NULL OR s.registry = $registry)
  AND (NOT $latest_only OR s.snapshot_id IN (SELECT snapshot_id FROM latest_snapshot))
GROUP BY ALL
ORDER BY s.registry, sn.started_at DESC, namespace;
