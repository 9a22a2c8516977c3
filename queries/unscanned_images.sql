-- name: unscanned_images
-- description: Images that need a scan: those running now and those pushed recently (created within recent_days)
-- that have no scan at all, or whose newest scan is older than max_scan_age_days. Running images come first.
-- param: max_scan_age_days INTEGER = 30 | a newest scan older than this many days counts as stale
-- param: recent_days INTEGER = 30 | registry images created within this many days count as recent
-- param: as_of TIMESTAMP = NULL | measure ages at this time (default: now)
-- param: registry VARCHAR = NULL | only this registry
WITH settings AS (
    SELECT coalesce($as_of, now()::TIMESTAMP) AS as_of
), deployed AS (
    SELECT registry, repository, digest, image_id, image_refs, running_pods, pods
    FROM deployed_images
), recent AS (
    SELECT registry, repository, digest, string_agg(tag, ', ' ORDER BY tag) AS tags, max(created) AS created
    FROM images
    WHERE artifact_type IS NULL AND kind IN ('image', 'index')
      AND created >= (SELECT as_of FROM settings) - to_days($recent_days)
    GROUP BY ALL
), candidates AS (
    SELECT coalesce(d.registry, r.registry) AS registry, coalesce(d.repository, r.repository) AS repository,
           coalesce(d.digest, r.digest) AS digest, d.image_id, r.tags, d.image_refs,
           coalesce(r.created, m.created) AS created,
           d.pods IS NOT NULL AS deployed, coalesce(d.running_pods, 0) AS running_pods
    FROM deployed d
    FULL OUTER JOIN recent r ON r.registry = d.registry AND r.repository = d.repository AND r.digest = d.digest
    LEFT JOIN (SELECT digest, max(created) AS created FROM manifests GROUP BY digest) m ON m.digest = d.digest
)
SELECT c.registry, c.repository, c.digest, c.image_id, c.tags, c.image_refs, c.created, c.deployed, c.running_pods,
       l.scanned_at AS last_scanned_at, l.matched_by,
       date_diff('day', l.scanned_at, (SELECT as_of FROM settings)) AS scan_age_days,
       CASE WHEN c.digest IS NULL AND c.image_id IS NULL THEN 'digest unknown'
            WHEN l.scan_id IS NULL THEN 'never scanned'
            WHEN l.scanned_at IS NULL THEN 'scan date unknown'
            ELSE 'scan older than ' || $max_scan_age_days || ' days' END AS reason
FROM candidates c
LEFT JOIN latest_image_scan l ON l.digest = coalesce(c.digest, c.image_id)
WHERE ($registry IS NULL OR c.registry = $registry)
  AND (l.scan_id IS NULL
       OR l.scanned_at IS NULL
       OR l.scanned_at < (SELECT as_of FROM settings) - to_days($max_scan_age_days))
ORDER BY c.deployed DESC, c.running_pods DESC, c.created DESC NULLS LAST, c.registry, c.repository, c.digest;
