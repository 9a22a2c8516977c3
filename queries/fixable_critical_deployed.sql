-- name: fixable_critical_deployed
-- description: Critical and high findings that have a fixed version, in images running now (newest scan of each),
-- with the pods and namespaces running them, days since the advisory was published, and the newest tag of the
-- same repository (in the registry's latest snapshot) whose own newest scan no longer has the finding, if any.
-- param: min_severity VARCHAR = 'HIGH' | lowest severity listed: CRITICAL, HIGH, MEDIUM or LOW
-- param: as_of TIMESTAMP = NULL | count days since publication up to this time (default: now)
-- param: cluster VARCHAR = NULL | only this cluster
-- param: namespace VARCHAR = NULL | only this Kubernetes namespace
WITH settings AS (
    SELECT CASE upper($min_severity) WHEN 'CRITICAL' THEN 4 WHEN 'HIGH' THEN 3 WHEN 'MEDIUM' THEN 2 WHEN 'LOW' THEN 1
                ELSE error('min_severity must be CRITICAL, HIGH, MEDIUM or LOW, not ' || coalesce($min_severity, 'NULL'))
           END AS min_rank,
           coalesce($as_of, now()::TIMESTAMP) AS as_of
), running AS (
    SELECT * FROM workload_images
    WHERE phase = 'Running'
      AND ($cluster IS NULL OR cluster = $cluster) AND ($namespace IS NULL OR namespace = $namespace)
), deployed AS (
    SELECT registry, repository, digest, CASE WHEN digest IS NULL THEN config_digest END AS image_id,
           string_agg(DISTINCT image_ref, ', ' ORDER BY image_ref) AS image_refs,
           count(DISTINCT (cluster, namespace, pod)) AS running_pods,
           string_agg(DISTINCT namespace, ', ' ORDER BY namespace) AS namespaces
    FROM running
    GROUP BY ALL
), findings AS (
    SELECT d.*, l.scan_id, v.vulnerability_id, v.severity, v.cvss_score, v.pkg_name, v.pkg_type,
           v.installed_version, v.fixed_version, v.published_at, v.known_exploited, v.target,
           CASE v.severity WHEN 'CRITICAL' THEN 4 WHEN 'HIGH' THEN 3 WHEN 'MEDIUM' THEN 2 WHEN 'LOW' THEN 1 ELSE 0 END
               AS severity_rank
    FROM deployed d
    JOIN latest_image_scan l ON l.digest = coalesce(d.digest, d.image_id)
    JOIN vulnerabilities v ON v.scan_id = l.scan_id
    WHERE v.fixed_version IS NOT NULL
      AND CASE v.severity WHEN 'CRITICAL' THEN 4 WHEN 'HIGH' THEN 3 WHEN 'MEDIUM' THEN 2 WHEN 'LOW' THEN 1 ELSE 0 END
          >= (SELECT min_rank FROM settings)
), newer AS (
    -- Images of the same repository created after the running one, with a scan of their own.
    SELECT DISTINCT d.registry, d.repository, d.digest AS running_digest,
           i.tag, i.digest, i.created, l.scan_id
    FROM deployed d
    JOIN manifests dm ON dm.registry = d.registry AND dm.digest = d.digest
    JOIN images i ON i.registry = d.registry AND i.repository = d.repository
                 AND i.created > dm.created AND i.artifact_type IS NULL
    JOIN latest_image_scan l ON l.digest = i.digest
), fixed_by AS (
    SELECT f.registry, f.repository, f.digest, f.vulnerability_id, f.pkg_name, n.tag, n.digest AS newer_digest,
           row_number() OVER (PARTITION BY f.registry, f.repository, f.digest, f.vulnerability_id, f.pkg_name
                              -- newest image first; of its tags, a fixed release before a moving one
                              ORDER BY n.created DESC,
                                       n.tag IN ('latest', 'stable', 'prod', 'production', 'main', 'master', 'edge',
                                                 'nightly', 'dev'),
                                       n.tag DESC) AS rn
    FROM (SELECT DISTINCT registry, repository, digest, vulnerability_id, pkg_name FROM findings) f
    JOIN newer n ON n.registry = f.registry AND n.repository = f.repository AND n.running_digest = f.digest
    WHERE NOT EXISTS (SELECT 1 FROM vulnerabilities v
                      WHERE v.scan_id = n.scan_id AND v.vulnerability_id = f.vulnerability_id
                        AND v.pkg_name IS NOT DISTINCT FROM f.pkg_name)
)
SELECT f.registry, f.repository, f.digest, f.image_refs, f.running_pods, f.namespaces,
       f.vulnerability_id, f.severity, f.cvss_score, f.known_exploited, f.pkg_name, f.pkg_type,
       f.installed_version, f.fixed_version, f.target, f.published_at,
       date_diff('day', f.published_at, (SELECT as_of FROM settings)) AS days_since_published,
       b.tag AS newer_tag, b.newer_digest
FROM findings f
LEFT JOIN fixed_by b ON b.rn = 1 AND b.registry IS NOT DISTINCT FROM f.registry
                    AND b.repository IS NOT DISTINCT FROM f.repository AND b.digest IS NOT DISTINCT FROM f.digest
                    AND b.vulnerability_id = f.vulnerability_id AND b.pkg_name IS NOT DISTINCT FROM f.pkg_name
ORDER BY f.severity_rank DESC, f.running_pods DESC, f.cvss_score DESC NULLS LAST, days_since_published DESC NULLS LAST,
         f.registry, f.repository, f.digest, f.vulnerability_id, f.pkg_name;
