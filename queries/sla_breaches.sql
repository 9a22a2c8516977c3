-- name: sla_breaches
-- description: Findings in images running now (the newest scan of each) whose fix has been available for longer
-- than the severity's remediation target: days_since_fix counts from the first scan of the repository that
-- reported a fixed version (vulnerability_lifecycle's fix_available_at), days_over is how far past the target.
-- param: critical_days INTEGER = 15 | target for CRITICAL findings, in days from fix available
-- param: high_days INTEGER = 30 | target for HIGH findings
-- param: medium_days INTEGER = 90 | target for MEDIUM findings
-- param: low_days INTEGER = NULL | target for LOW findings (NULL: LOW has no target)
-- param: as_of TIMESTAMP = NULL | count days up to this time (default: now)
-- param: cluster VARCHAR = NULL | only this cluster
-- param: namespace VARCHAR = NULL | only this Kubernetes namespace
WITH settings AS (
    SELECT coalesce($as_of, now()::TIMESTAMP) AS as_of
), running AS (
    SELECT registry, repository, digest,
           string_agg(DISTINCT image_ref, ', ' ORDER BY image_ref) AS image_refs,
           count(DISTINCT (cluster, namespace, pod)) AS running_pods,
           string_agg(DISTINCT namespace, ', ' ORDER BY namespace) AS namespaces
    FROM workload_images
    WHERE phase = 'Running' AND digest IS NOT NULL
      AND ($cluster IS NULL OR cluster = $cluster) AND ($namespace IS NULL OR namespace = $namespace)
    GROUP BY ALL
), findings AS (
    SELECT r.*, s.registry AS scan_registry, s.repository AS scan_repository, v.vulnerability_id, v.severity,
           v.pkg_name, v.installed_version, v.fixed_version,
           CASE v.severity WHEN 'CRITICAL' THEN $critical_days WHEN 'HIGH' THEN $high_days
                           WHEN 'MEDIUM' THEN $medium_days WHEN 'LOW' THEN $low_days END AS sla_days
    FROM running r
    JOIN latest_image_scan ls ON ls.digest = r.digest
    JOIN scans s ON s.scan_id = ls.scan_id
    JOIN vulnerabilities v ON v.scan_id = ls.scan_id
    WHERE v.fixed_version IS NOT NULL
), lifecycle AS (
    SELECT * FROM vulnerability_lifecycle_at((SELECT as_of FROM settings))
)
SELECT f.registry, f.repository, f.digest, f.image_refs, f.running_pods, f.namespaces, f.vulnerability_id,
       f.severity, f.pkg_name, f.installed_version, f.fixed_version, l.first_seen, l.fix_available_at,
       date_diff('day', l.fix_available_at, (SELECT as_of FROM settings)) AS days_since_fix, f.sla_days,
       date_diff('day', l.fix_available_at, (SELECT as_of FROM settings)) - f.sla_days AS days_over
FROM findings f
JOIN lifecycle l ON l.vulnerability_id = f.vulnerability_id AND l.pkg_name IS NOT DISTINCT FROM f.pkg_name
                AND ((l.registry = f.registry AND l.repository = f.repository)
                     OR (l.registry IS NOT DISTINCT FROM f.scan_registry AND l.repository = f.scan_repository))
WHERE f.sla_days IS NOT NULL
  AND date_diff('day', l.fix_available_at, (SELECT as_of FROM settings)) > f.sla_days
QUALIFY row_number() OVER (PARTITION BY f.registry, f.repository, f.digest, f.vulnerability_id, f.pkg_name
                           ORDER BY l.fix_available_at) = 1
ORDER BY days_over DESC, CASE f.severity WHEN 'CRITICAL' THEN 4 WHEN 'HIGH' THEN 3 WHEN 'MEDIUM' THEN 2 ELSE 1 END DESC,
         f.running_pods DESC, f.registry, f.repository, f.vulnerability_id, f.pkg_name;
