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
), dated AS (
    SELECT * FROM latest_image_push($registry, $namespace)
), ranked AS (
    SELECT *,
           date_diff('day', created, snapshot_at) AS age_days,
           date_diff('day', pushed_at, snapshot_at) AS pushed_days,
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
    -- Every (repository, manifest) a snapshot that holds data reached, kept at commit.
    SELECT registry, repository, digest FROM repository_links WHERE registry IN (SELECT registry FROM ls)
), repository_ids AS (
    -- Small integers stand in for names and digests below: min/max over millions of strings is the slow part.
    SELECT repository, row_number() OVER () AS rid FROM (SELECT DISTINCT repository FROM links)
), manifest_repos AS (
    SELECT *, row_number() OVER () AS mid FROM (
        SELECT l.registry, l.digest, min(r.rid) AS lo, max(r.rid) AS hi
        FROM links l JOIN repository_ids r ON r.repository = l.repository
        GROUP BY l.registry, l.digest)
), blob_holders AS (
    -- Blobs held by a single link (one manifest, from one repository): a stale image without children frees
    -- exactly those it holds, so these need no count of distinct links per blob.
    SELECT b.registry, b.blob_digest, min(mr.mid) AS mid, max(b.size) AS size
    FROM manifest_repos mr JOIN manifest_blobs b ON b.registry = mr.registry AND b.manifest_digest = mr.digest
    GROUP BY b.registry, b.blob_digest
    HAVING min(mr.lo) = max(mr.hi) AND min(mr.mid) = max(mr.mid)
), sole_bytes AS (
    SELECT mr.registry, r.repository, mr.digest, h.unique_bytes
    FROM (SELECT mid, sum(size)::BIGINT AS unique_bytes FROM blob_holders GROUP BY mid) h
    JOIN manifest_repos mr ON mr.mid = h.mid
    JOIN repository_ids r ON r.rid = mr.lo
), index_units AS (
    SELECT * FROM stale s SEMI JOIN manifest_children c ON c.registry = s.registry AND c.index_digest = s.digest
), unit_links AS (
    SELECT registry, repository, digest AS unit, digest AS link FROM index_units
    UNION
    SELECT s.registry, s.repository, s.digest, c.child_digest
    FROM index_units s JOIN manifest_children c ON c.registry = s.registry AND c.index_digest = s.digest
), unit_blobs AS (
    SELECT u.registry, u.repository, u.unit, b.blob_digest, max(b.size) AS size, count(DISTINCT u.link) AS n
    FROM unit_links u JOIN manifest_blobs b ON b.registry = u.registry AND b.manifest_digest = u.link
    GROUP BY u.registry, u.repository, u.unit, b.blob_digest
), refs AS (
    -- The links holding each of these blobs, counted only when they all are in the unit's repository.
    SELECT b.registry, b.blob_digest, min(mr.lo) AS lo, max(mr.hi) AS hi, count(DISTINCT b.manifest_digest) AS refs
    FROM (SELECT * FROM manifest_blobs mb
          SEMI JOIN unit_blobs ub ON ub.registry = mb.registry AND ub.blob_digest = mb.blob_digest) b
    JOIN manifest_repos mr ON mr.registry = b.registry AND mr.digest = b.manifest_digest
    GROUP BY b.registry, b.blob_digest
), index_bytes AS (
    SELECT ub.registry, ub.repository, ub.unit, sum(ub.size)::BIGINT AS unique_bytes
    FROM unit_blobs ub JOIN refs r ON r.registry = ub.registry AND r.blob_digest = ub.blob_digest
    JOIN repository_ids ri ON ri.repository = ub.repository
    WHERE r.lo = ri.rid AND r.hi = ri.rid AND ub.n = r.refs
    GROUP BY ub.registry, ub.repository, ub.unit
), indexes AS (
    SELECT DISTINCT registry, index_digest FROM manifest_children
)
SELECT s.registry, split_part(s.repository, '/', 1) AS namespace, s.repository, s.digest, s.tags, s.kind,
       s.artifact_type, s.created, s.age_days, s.pushed_at, s.pushed_source, s.pushed_days, s.newest_rank,
       s.size, coalesce(CASE WHEN x.index_digest IS NULL THEN o.unique_bytes ELSE i.unique_bytes END, 0)
           AS unique_bytes
FROM stale s
LEFT JOIN index_bytes i ON i.registry = s.registry AND i.repository = s.repository AND i.unit = s.digest
LEFT JOIN indexes x ON x.registry = s.registry AND x.index_digest = s.digest
LEFT JOIN sole_bytes o ON o.registry = s.registry AND o.repository = s.repository AND o.digest = s.digest
ORDER BY unique_bytes DESC, s.registry, s.repository, s.pushed_at, s.digest;
