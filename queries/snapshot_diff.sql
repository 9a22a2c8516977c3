-- name: snapshot_diff
-- description: What changed in a registry between two snapshots: repositories and tags added or removed,
-- and tags moved to other content. Defaults compare each registry's latest snapshot with the one before it.
-- Repositories that failed in either snapshot are left out, so a collection error never looks like a deletion.
-- param: registry VARCHAR = NULL | only this registry
-- param: from_snapshot BIGINT = NULL | older snapshot (default: the newest one before to_snapshot); only its registry is compared
-- param: to_snapshot BIGINT = NULL | newer snapshot (default: the registry's latest)
-- param: older_than_hours INTEGER = NULL | without from_snapshot: the older snapshot is the last one collected that started at least this many hours before the newer one (a registry without one is left out)
WITH ranked AS (
    SELECT snapshot_id, registry, started_at,
           row_number() OVER (PARTITION BY registry ORDER BY started_at DESC, snapshot_id DESC) AS rn
    FROM snapshots
    WHERE status IN ('complete', 'partial') AND ($registry IS NULL OR registry = $registry)
), newer AS (
    SELECT registry, snapshot_id AS new_id, started_at AS new_started
    FROM ranked
    WHERE (($to_snapshot IS NULL AND rn = 1) OR snapshot_id = $to_snapshot)
      -- A snapshot id belongs to one registry: compared with another registry's tags, every repository
      -- there would look added or removed.
      AND ($from_snapshot IS NULL OR registry = (SELECT registry FROM snapshots WHERE snapshot_id = $from_snapshot))
), pair AS (
    SELECT n.registry, n.new_id,
           coalesce($from_snapshot, CASE WHEN $older_than_hours IS NULL THEN
               (SELECT r.snapshot_id FROM ranked r
                WHERE r.registry = n.registry AND r.started_at < n.new_started
                ORDER BY r.started_at DESC, r.snapshot_id DESC LIMIT 1)
           ELSE
               (SELECT max(r.snapshot_id) FROM ranked r
                WHERE r.registry = n.registry AND r.started_at <= n.new_started - to_hours($older_than_hours))
           END) AS old_id
    FROM newer n
), ok_repos AS (
    SELECT r.snapshot_id, r.registry, r.repository FROM repositories r WHERE r.status <> 'failed'
), old_tags AS (
    SELECT p.registry, t.repository, t.tag, t.digest
    FROM pair p JOIN tags t ON t.snapshot_id = p.old_id
), new_tags AS (
    SELECT p.registry, t.repository, t.tag, t.digest
    FROM pair p JOIN tags t ON t.snapshot_id = p.new_id
), comparable AS (  -- repositories read successfully in both snapshots
    SELECT p.registry, a.repository FROM pair p
    JOIN ok_repos a ON a.snapshot_id = p.old_id
    JOIN ok_repos b ON b.snapshot_id = p.new_id AND b.repository = a.repository
), repo_changes AS (
    SELECT p.registry, b.repository, NULL AS tag, 'repository added' AS change, NULL AS from_digest, NULL AS to_digest
    FROM pair p JOIN ok_repos b ON b.snapshot_id = p.new_id
    WHERE NOT EXISTS (SELECT 1 FROM repositories a WHERE a.snapshot_id = p.old_id AND a.repository = b.repository)
    UNION ALL
    SELECT p.registry, a.repository, NULL, 'repository removed', NULL, NULL
    FROM pair p JOIN ok_repos a ON a.snapshot_id = p.old_id
    WHERE NOT EXISTS (SELECT 1 FROM repositories b WHERE b.snapshot_id = p.new_id AND b.repository = a.repository)
), old_cmp AS (
    SELECT o.* FROM old_tags o SEMI JOIN comparable c USING (registry, repository)
), new_cmp AS (
    SELECT n.* FROM new_tags n SEMI JOIN comparable c USING (registry, repository)
), tag_changes AS (
    SELECT coalesce(n.registry, o.registry) AS registry, coalesce(n.repository, o.repository) AS repository,
           coalesce(n.tag, o.tag) AS tag,
           CASE WHEN o.tag IS NULL THEN 'tag added' WHEN n.tag IS NULL THEN 'tag removed' ELSE 'tag moved' END AS change,
           o.digest AS from_digest, n.digest AS to_digest
    FROM old_cmp o
    FULL JOIN new_cmp n ON n.registry = o.registry AND n.repository = o.repository AND n.tag = o.tag
    WHERE o.digest IS DISTINCT FROM n.digest
)
SELECT p.old_id AS from_snapshot, p.new_id AS to_snapshot, ch.*
FROM (SELECT * FROM repo_changes UNION ALL SELECT * FROM tag_changes) ch
JOIN pair p USING (registry)
WHERE p.old_id IS NOT NULL
ORDER BY ch.registry, ch.change, ch.repository, ch.tag;
