-- name: stale_images
-- description: Images of each registry's latest snapshot that are older than N days both by config created and by
-- push time (the first snapshot that saw them in their repository, or created when that was the first look at the
-- repository), are not among the newest K of their repository, are not deployed (deployed_images, an index counts
-- when a child runs) and carry no protected tag. unique_bytes: blobs that nothing but this image and its index
-- children holds anywhere in the registry (untagged revisions included), i.e. what deleting it alone frees.
-- param: older_than_days INTEGER = 90 | older than this many days at the snapshot, by created and by push time
-- param: keep_newest INTEGER = 3 | the newest K images of a repository (by created) are never stale
-- param: protect_tags VARCHAR = 'latest,stable,prod,production,release,main,master' | comma-separated tags that protect
-- param: protect_regex VARCHAR = NULL | a tag matching this regular expression protects the image
-- param: registry VARCHAR = NULL | only this registry
-- param: namespace VARCHAR = NULL | only this team namespace (first path component of the repository)
WITH ls AS (
    SELECT snapshot_id, registry, started_at FROM latest_snapshot WHERE $registry IS NULL OR registry = $registry
), tagged AS (
    SELECT t.registry, t.repository, t.digest, list(t.tag ORDER BY t.tag) AS tags,
           any_value(ls.started_at) AS snapshot_at
    FROM tags t JOIN ls ON ls.snapshot_id = t.snapshot_id
    WHERE $namespace IS NULL OR split_part(t.repository, '/', 1) = $namespace
    GROUP BY t.registry, t.repository, t.digest
), first_look AS (
    SELECT r.registry, r.repository, min(s.started_at) AS first_look
    FROM repositories r JOIN snapshots s ON s.snapshot_id = r.snapshot_id
    WHERE s.status IN ('complete', 'partial')
    GROUP BY r.registry, r.repository
), dated AS (
    -- Push time as repoaudit.retention defines it.
    SELECT g.*, m.kind, m.artifact_type, m.created, coalesce(m.total_size, 0) AS size, l.first_seen,
           (l.first_seen <= fl.first_look AND m.created IS NOT NULL AND m.created <= l.first_seen) AS from_created
    FROM tagged g
    LEFT JOIN manifests m ON m.registry = g.registry AND m.digest = g.digest
    LEFT JOIN image_lifecycle l ON l.registry = g.registry AND l.repository = g.repository AND l.digest = g.digest
    LEFT JOIN first_look fl ON fl.registry = g.registry AND fl.repository = g.repository
), ranked AS (
    SELECT * EXCLUDE (from_created),
           CASE WHEN from_created THEN created ELSE first_seen END AS pushed_at,
           CASE WHEN from_created THEN 'created' ELSE 'first_seen' END AS pushed_source,
           date_diff('day', created, snapshot_at) AS age_days,
           date_diff('day', CASE WHEN from_created THEN created ELSE first_seen END, snapshot_at) AS pushed_days,
           row_number() OVER (PARTITION BY registry, repository
                              ORDER BY coalesce(created, first_seen) DESC, digest DESC) AS newest_rank
    FROM dated
), deployed_direct AS (
    SELECT DISTINCT registry, repository, digest FROM deployed_images WHERE digest IS NOT NULL
), deployed AS (
    SELECT registry, repository, digest FROM deployed_direct
    UNION
    SELECT d.registry, d.repository, c.index_digest
    FROM deployed_direct d JOIN manifest_children c ON c.registry = d.registry AND c.child_digest = d.digest
), stale AS (
    SELECT r.* FROM ranked r
    ANTI JOIN deployed d ON d.registry = r.registry AND d.repository = r.repository AND d.digest = r.digest
    WHERE r.newest_rank > $keep_newest
      AND coalesce(r.age_days, r.pushed_days) > $older_than_days
      AND r.pushed_days > $older_than_days
      AND NOT ($protect_tags IS NOT NULL AND list_has_any(r.tags, string_split($protect_tags, ',')))
      AND NOT ($protect_regex IS NOT NULL
               AND coalesce(list_bool_or(list_transform(r.tags, lambda t: regexp_matches(t, $protect_regex))), false))
), links AS (
    SELECT DISTINCT l.registry, l.repository, l.digest
    FROM image_lifecycle l JOIN ls ON ls.registry = l.registry
), refs AS (
    SELECT registry, blob_digest, count(*) AS refs FROM (
        SELECT DISTINCT k.registry, k.repository, k.digest, b.blob_digest
        FROM links k JOIN manifest_blobs b ON b.registry = k.registry AND b.manifest_digest = k.digest
    ) GROUP BY registry, blob_digest
), unit_links AS (
    SELECT registry, repository, digest AS unit, digest AS link FROM stale
    UNION
    SELECT s.registry, s.repository, s.digest, c.child_digest
    FROM stale s JOIN manifest_children c ON c.registry = s.registry AND c.index_digest = s.digest
), unit_blobs AS (
    SELECT u.registry, u.repository, u.unit, b.blob_digest, max(b.size) AS size, count(DISTINCT u.link) AS n
    FROM unit_links u JOIN manifest_blobs b ON b.registry = u.registry AND b.manifest_digest = u.link
    GROUP BY u.registry, u.repository, u.unit, b.blob_digest
), unique_bytes AS (
    SELECT ub.registry, ub.repository, ub.unit, sum(ub.size)::BIGINT AS unique_bytes
    FROM unit_blobs ub JOIN refs r ON r.registry = ub.registry AND r.blob_digest = ub.blob_digest
    WHERE ub.n = r.refs
    GROUP BY ub.registry, ub.repository, ub.unit
)
SELECT s.registry, split_part(s.repository, '/', 1) AS namespace, s.repository, s.digest, s.tags, s.kind,
       s.artifact_type, s.created, s.age_days, s.pushed_at, s.pushed_source, s.pushed_days, s.newest_rank,
       s.size, coalesce(u.unique_bytes, 0) AS unique_bytes
FROM stale s
LEFT JOIN unique_bytes u ON u.registry = s.registry AND u.repository = s.repository AND u.unit = s.digest
ORDER BY unique_bytes DESC, s.registry, s.repository, s.pushed_at, s.digest;
