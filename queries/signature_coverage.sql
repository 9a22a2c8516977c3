-- name: signature_coverage
-- description: Signed images per team namespace (first path component of the repository) and snapshot: images
-- reached, those with any signature attached, and those with a valid signature from a trusted key, with the
-- shares; every snapshot holding data, newest first, or only the latest of each registry.
-- param: registry VARCHAR = NULL | only this registry
-- param: latest_only BOOLEAN = true | only each registry's latest snapshot (false: the history)
SELECT s.registry, s.snapshot_id, sn.started_at, split_part(s.repository, '/', 1) AS namespace,
       count(*) AS images,
       count(*) FILTER (WHERE s.signatures > 0) AS signed,
       count(*) FILTER (WHERE s.signature_status = 'valid') AS verified,
       count(*) FILTER (WHERE s.signature_status = 'invalid') AS invalid,
       round(100.0 * count(*) FILTER (WHERE s.signatures > 0) / count(*), 1) AS signed_pct,
       round(100.0 * count(*) FILTER (WHERE s.signature_status = 'valid') / count(*), 1) AS verified_pct
FROM image_supply s
JOIN snapshots sn ON sn.snapshot_id = s.snapshot_id AND sn.status IN ('complete', 'partial')
WHERE ($registry IS NULL OR s.registry = $registry)
  AND (NOT $latest_only OR s.snapshot_id IN (SELECT snapshot_id FROM latest_snapshot))
GROUP BY ALL
ORDER BY s.registry, sn.started_at DESC, namespace;
