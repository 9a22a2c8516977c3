-- name: repository_status
-- description: Flux ImageRepository-style status of every repository in each registry's newest snapshot
-- (failed snapshots included, so an authentication failure shows as Ready=False AuthenticationFailed).
-- param: registry VARCHAR = NULL | only this registry
WITH newest AS (
    SELECT registry, max_by(snapshot_id, started_at) AS snapshot_id
    FROM snapshots
    WHERE $registry IS NULL OR registry = $registry
    GROUP BY registry
)
SELECT rs.registry, rs.repository, rs.name, rs.canonical_image_name, rs.ready, rs.reason, rs.message,
       rs.tag_count, rs.scan_time, rs.latest_tags, rs.observed_exclusion_list, rs.last_handled_reconcile_at,
       rs.snapshot_id
FROM repository_status rs
JOIN newest n USING (registry, snapshot_id)
ORDER BY rs.registry, rs.repository;
