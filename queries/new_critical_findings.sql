-- name: new_critical_findings
-- description: Critical findings in the newest scan of each image of the latest snapshots that no scan of the same
-- repository had reported by `since` (default: each registry's previous snapshot): what got worse since last time,
-- with how many pods run the image now.
-- param: since TIMESTAMP = NULL | compare with what scans reported up to this time
-- param: since_snapshot BIGINT = NULL | without since: compare with what scans reported up to the start of this snapshot
-- param: since_hours INTEGER = NULL | without since or since_snapshot: compare with what scans reported up to this many hours before the newest latest snapshot started
-- param: registry VARCHAR = NULL | only this registry
WITH chosen AS (  -- the cutoff asked for, if any; NULL falls back to each registry's previous snapshot
    SELECT coalesce($since,
                    (SELECT started_at FROM snapshots WHERE snapshot_id = $since_snapshot),
                    (SELECT max(started_at) FROM latest_snapshot) - to_hours($since_hours)) AS cutoff
), previous AS (
    SELECT registry, started_at FROM (
        SELECT registry, started_at,
               row_number() OVER (PARTITION BY registry ORDER BY started_at DESC, snapshot_id DESC) AS rn
        FROM snapshots WHERE status IN ('complete', 'partial')
    ) WHERE rn = 2
), imgs AS (
    -- The latest images (kept at commit) with their tags in order, instead of grouping every tag again.
    SELECT registry, repository, digest, array_to_string(tags, ', ') AS tags
    FROM latest_image_push($registry, NULL)
    WHERE artifact_type IS NULL
), current_findings AS (
    SELECT i.registry, i.repository, i.digest, i.tags, v.vulnerability_id, v.pkg_name, v.installed_version,
           v.fixed_version, v.cvss_score, s.scanned_at, coalesce((SELECT cutoff FROM chosen), p.started_at) AS cutoff
    FROM imgs i
    JOIN latest_image_scan l ON l.digest = i.digest
    JOIN scans s ON s.scan_id = l.scan_id
    JOIN vulnerabilities v ON v.scan_id = l.scan_id AND v.severity = 'CRITICAL'
    LEFT JOIN previous p ON p.registry = i.registry
), known_before AS (  -- vulnerability IDs each repository's images were already reported with at the cutoff
    SELECT DISTINCT c.registry, c.repository, v.vulnerability_id
    FROM (SELECT DISTINCT registry, repository, cutoff FROM current_findings) c
    JOIN imgs i ON i.registry = c.registry AND i.repository = c.repository
    JOIN scan_coverage sc ON sc.digest = i.digest
    JOIN scans s ON s.scan_id = sc.scan_id AND s.scanned_at <= c.cutoff
    JOIN vulnerabilities v ON v.scan_id = s.scan_id
)
SELECT f.registry, f.repository, f.tags, f.digest, f.vulnerability_id, f.pkg_name, f.installed_version,
       f.fixed_version, f.cvss_score, f.scanned_at, CAST(coalesce(d.running_pods, 0) AS INTEGER) AS running_pods
FROM current_findings f
LEFT JOIN known_before k USING (registry, repository, vulnerability_id)
LEFT JOIN (SELECT registry, repository, digest, sum(running_pods) AS running_pods FROM deployed_images GROUP BY ALL) d
       USING (registry, repository, digest)
WHERE k.vulnerability_id IS NULL AND f.cutoff IS NOT NULL
ORDER BY running_pods DESC, f.cvss_score DESC NULLS LAST, f.repository, f.vulnerability_id, f.registry, f.digest,
         f.pkg_name, f.installed_version, f.fixed_version;
