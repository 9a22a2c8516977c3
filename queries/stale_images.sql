-- name: stale_images
-- description: Images of each registry's latest snapshot that are older than N days both by config created and by
-- push time (the first snapshot that saw them in their repository, or created when that was the first look at the
-- repository), are not among the newest K of their repository, are not deployed (deployed_images, an index counts
-- when a child runs) and carry no protected tag. unique_bytes: blobs that nothing but this image and its index
-- children holds anywhere in the registry (untagged revisions included), i.e. what deleting it alone frees.
-- last_pulled_at and events_since: the last pull by a runtime, and from when the registry's events are complete
-- (NULL: no events; docs/events.md). With not_pulled_days, an image is stale only where events cover that window.
-- param: older_than_days INTEGER = 90 | older than this many days at the snapshot, by created and by push time
-- param: keep_newest INTEGER = 3 | the newest K images of a repository (by created) are never stale
-- param: protect_tags VARCHAR = 'latest,stable,prod,production,release,main,master' | comma-separated tags that protect
-- param: protect_regex VARCHAR = NULL | a tag matching this regular expression protects the image
-- param: not_pulled_days INTEGER = NULL | also not pulled by a container runtime in this many days (registry events)
-- param: registry VARCHAR = NULL | only this registry
-- param: namespace VARCHAR = NULL | only this team namespace (first path component of the repository)
WITH ls AS (
    SELECT snapshot_id, registry, started_at FROM latest_snapshot WHERE $registry IS NULL OR registry = $registry
), ranked AS (
    -- The latest images, dated and ranked, are kept at commit (latest_images).
    SELECT *, date_diff('day', created, snapshot_at) AS age_days, date_diff('day', pushed_at, snapshot_at) AS pushed_days
    FROM latest_image_push($registry, $namespace)
), stale AS (
    SELECT r.* FROM ranked r
    ANTI JOIN deployed_manifests d ON d.registry = r.registry AND d.repository = r.repository AND d.digest = r.digest
    WHERE r.newest_rank > $keep_newest
      AND coalesce(r.age_days, r.pushed_days) > $older_than_days
      AND r.pushed_days > $older_than_days
      AND ($not_pulled_days IS NULL OR (
            -- "Not pulled" is known only where events cover the window, or the image's whole life (pushed since).
            (SELECT min(c.events_since) FROM event_coverage c WHERE c.registry = r.registry)
                <= greatest(r.snapshot_at - to_days($not_pulled_days),
                            coalesce((SELECT min(p.pushed_at) FROM event_push_times p WHERE p.registry = r.registry
                                      AND p.repository = r.repository AND p.digest = r.digest), '-infinity'))
            AND NOT EXISTS (SELECT 1 FROM last_pull p
                            WHERE p.registry = r.registry AND p.repository = r.repository AND p.digest = r.digest
                              AND p.last_pulled_at >= r.snapshot_at - to_days($not_pulled_days))))
      AND NOT ($protect_tags IS NOT NULL AND list_has_any(r.tags, string_split($protect_tags, ',')))
      AND NOT ($protect_regex IS NOT NULL
               AND coalesce(list_bool_or(list_transform(r.tags, lambda t: regexp_matches(t, $protect_regex))), false))
), links AS (
    -- Every (repository, manifest) a snapshot that holds data reached, kept at commit.
    SELECT repository_key, manifest_key FROM repository_links WHERE registry IN (SELECT registry FROM ls)
), manifest_repos AS (
    -- Integers stand in for names and digests: min/max over millions of strings is the slow part.
    SELECT manifest_key, min(repository_key) AS lo, max(repository_key) AS hi FROM links GROUP BY manifest_key
), sole_bytes AS (
    -- Blobs held by a single link (one manifest, from one repository; kept per manifest at commit): a stale
    -- image without children frees exactly those it holds, so these need no count of distinct links per blob.
    -- Keyed by manifest alone: the one repository holding it is the stale image's.
    SELECT o.manifest_key, o.bytes AS unique_bytes
    FROM manifest_sole_bytes o JOIN manifest_repos mr ON mr.manifest_key = o.manifest_key
    WHERE mr.lo = mr.hi
), index_units AS (
    SELECT * FROM stale s SEMI JOIN manifest_children c ON c.index_key = s.manifest_key
), unit_links AS (
    SELECT registry, repository, repository_key, manifest_key AS unit, manifest_key AS link FROM index_units
    UNION
    SELECT s.registry, s.repository, s.repository_key, s.manifest_key, c.child_key
    FROM index_units s JOIN manifest_children c ON c.index_key = s.manifest_key
), unit_blobs AS (
    SELECT u.registry, u.repository, u.repository_key, u.unit, b.blob_key, max(b.size) AS size,
           count(DISTINCT u.link) AS n
    FROM unit_links u JOIN manifest_blob_keys b ON b.manifest_key = u.link
    GROUP BY u.registry, u.repository, u.repository_key, u.unit, b.blob_key
), refs AS (
    -- The links holding each of these blobs, counted only when they all are in the unit's repository.
    SELECT b.blob_key, min(mr.lo) AS lo, max(mr.hi) AS hi, count(DISTINCT b.manifest_key) AS refs
    FROM (SELECT * FROM manifest_blob_keys mb SEMI JOIN unit_blobs ub ON ub.blob_key = mb.blob_key) b
    JOIN manifest_repos mr ON mr.manifest_key = b.manifest_key
    GROUP BY b.blob_key
), index_bytes AS (
    SELECT ub.registry, ub.repository, ub.unit, sum(ub.size)::BIGINT AS unique_bytes
    FROM unit_blobs ub JOIN refs r ON r.blob_key = ub.blob_key
    WHERE r.lo = ub.repository_key AND r.hi = ub.repository_key AND ub.n = r.refs
    GROUP BY ub.registry, ub.repository, ub.unit
), indexes AS (
    SELECT DISTINCT index_key FROM manifest_children
)
SELECT s.registry, split_part(s.repository, '/', 1) AS namespace, s.repository, s.digest, s.tags, s.kind,
       s.artifact_type, s.created, s.age_days, s.pushed_at, s.pushed_source, s.pushed_days, s.newest_rank,
       s.size, coalesce(CASE WHEN x.index_key IS NULL THEN o.unique_bytes ELSE i.unique_bytes END, 0)
           AS unique_bytes,
       lp.last_pulled_at, ec.events_since
FROM stale s
LEFT JOIN index_bytes i ON i.registry = s.registry AND i.repository = s.repository AND i.unit = s.manifest_key
LEFT JOIN indexes x ON x.index_key = s.manifest_key
LEFT JOIN sole_bytes o ON o.manifest_key = s.manifest_key
LEFT JOIN last_pull lp ON lp.registry = s.registry AND lp.repository = s.repository AND lp.digest = s.digest
LEFT JOIN event_coverage ec ON ec.registry = s.registry
ORDER BY unique_bytes DESC, s.registry, s.repository, s.pushed_at, s.digest;
