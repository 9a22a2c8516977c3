-- name: risk_exposure
-- description: Per running image: findings by severity in its newest scan, fixable findings, max CVSS, the
-- Dependency-Track inherited risk score (critical×10 + high×5 + medium×3 + low×1 + unassigned×5), the pods and
-- namespaces running it, and exposure = risk score × running pods. Findings are counted as the scanner reports
-- them (one CVE on two packages counts twice). Unscanned images are listed last with no score.
-- param: cluster VARCHAR = NULL | only this cluster
-- param: namespace VARCHAR = NULL | only this Kubernetes namespace
-- param: include_unscanned BOOLEAN = true | also list running images that have no scan
WITH running AS (
    SELECT * FROM workload_images
    WHERE ($cluster IS NULL OR cluster = $cluster) AND ($namespace IS NULL OR namespace = $namespace)
), deployed AS (
    SELECT registry, repository, digest, CASE WHEN digest IS NULL THEN config_digest END AS image_id,
           string_agg(DISTINCT image_ref, ', ' ORDER BY image_ref) AS image_refs,
           count(DISTINCT (cluster, namespace, pod)) FILTER (WHERE phase = 'Running') AS running_pods,
           count(DISTINCT (cluster, namespace, pod)) AS pods,
           count(DISTINCT (cluster, namespace)) AS namespaces
    FROM running
    GROUP BY ALL
), counts AS (
    SELECT scan_id,
           count(*) FILTER (WHERE severity = 'CRITICAL') AS critical,
           count(*) FILTER (WHERE severity = 'HIGH') AS high,
           count(*) FILTER (WHERE severity = 'MEDIUM') AS medium,
           count(*) FILTER (WHERE severity = 'LOW') AS low,
           count(*) FILTER (WHERE severity = 'UNKNOWN') AS unassigned,
           count(*) FILTER (WHERE severity = 'NEGLIGIBLE') AS negligible,
           count(*) FILTER (WHERE fixed_version IS NOT NULL) AS fixable,
           count(*) FILTER (WHERE fixed_version IS NOT NULL AND severity IN ('CRITICAL', 'HIGH')) AS fixable_critical_high,
           count(DISTINCT vulnerability_id) AS vulnerabilities,
           max(cvss_score) AS max_cvss
    FROM vulnerabilities
    GROUP BY scan_id
), scored AS (
    SELECT d.*, l.scan_id, l.matched_by, l.scanned_at,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.critical, 0) END AS critical,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.high, 0) END AS high,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.medium, 0) END AS medium,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.low, 0) END AS low,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.unassigned, 0) END AS unassigned,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.negligible, 0) END AS negligible,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.fixable, 0) END AS fixable,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.fixable_critical_high, 0) END AS fixable_critical_high,
           CASE WHEN l.scan_id IS NOT NULL THEN coalesce(c.vulnerabilities, 0) END AS vulnerabilities,
           c.max_cvss
    FROM deployed d
    LEFT JOIN latest_image_scan l ON l.digest = coalesce(d.digest, d.image_id)
    LEFT JOIN counts c ON c.scan_id = l.scan_id
)
SELECT registry, repository, digest, image_id, image_refs,
       scan_id, matched_by, scanned_at,
       critical, high, medium, low, unassigned, negligible, vulnerabilities,
       fixable, fixable_critical_high, max_cvss,
       critical * 10 + high * 5 + medium * 3 + low * 1 + unassigned * 5 AS risk_score,
       running_pods, pods, namespaces,
       (critical * 10 + high * 5 + medium * 3 + low * 1 + unassigned * 5) * running_pods AS exposure
FROM scored
WHERE $include_unscanned OR scan_id IS NOT NULL
ORDER BY exposure DESC NULLS LAST, risk_score DESC NULLS LAST, running_pods DESC, registry, repository, digest;
