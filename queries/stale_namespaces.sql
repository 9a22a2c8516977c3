-- name: stale_namespaces
-- description: Staleness per team namespace (first path component of the repository) in each registry's latest
-- snapshot: repositories and how many had no push in repo_older_than_days, images and tags and how many are stale
-- by the stale_images definition (same parameters), the unique bytes the namespace reaches, and
-- stale_reclaimable_bytes: the blobs that only this namespace's stale images (and their index children) hold
-- anywhere in the registry, i.e. what deleting exactly those images would free.
-- param: older_than_days INTEGER = 90 | an image is stale when older than this, by created and by push time
-- param: keep_newest INTEGER = 3 | the newest K images of a repository (by created) are never stale
-- param: protect_tags VARCHAR = 'latest,stable,prod,production,release,main,master' | comma-separated tags that protect
-- param: protect_regex VARCHAR = NULL | a tag matching this regular expression protects the image
-- param: repo_older_than_days INTEGER = 180 | a repository is stale with no push in this many days
-- param: registry VARCHAR = NULL | only this registry
WITH ls AS (
    SELECT snapshot_id, registry, started_at FROM latest_snapshot WHERE $registry IS NULL OR registry = $registry
), ranked AS (
    -- The stale test is the one of stale_images, on the latest images kept at commit.
    SELECT *, split_part(repository, '/', 1) AS namespace,
           date_diff('day', created, snapshot_at) AS age_days, date_diff('day', pushed_at, snapshot_at) AS pushed_days
    FROM latest_image_push($registry, NULL)
), flagged AS (
    SELECT r.*,
           (r.newest_rank > $keep_newest
            AND coalesce(r.age_days, r.pushed_days) > $older_than_days
            AND r.pushed_days > $older_than_days
            AND NOT ($protect_tags IS NOT NULL AND list_has_any(r.tags, string_split($protect_tags, ',')))
            AND NOT ($protect_regex IS NOT NULL
                     AND coalesce(list_bool_or(list_transform(r.tags, lambda t: regexp_matches(t, $protect_regex))),
                                  false))
            AND d.digest IS NULL) AS stale
    FROM ranked r
    LEFT JOIN deployed_manifests d ON d.registry = r.registry AND d.repository = r.repository AND d.digest = r.digest
), repos AS (
    SELECT registry, namespace, repository,
           date_diff('day', max(pushed_at), any_value(snapshot_at)) > $repo_older_than_days AS stale_repository
    FROM flagged GROUP BY registry, namespace, repository
), namespace_ids AS (
    -- Integers stand in for names and digests below: min/max over millions of strings is the slow part.
    SELECT key AS repository_key, registry, split_part(repository, '/', 1) AS namespace,
           dense_rank() OVER (ORDER BY registry, split_part(repository, '/', 1)) AS nsid
    FROM repository_keys WHERE registry IN (SELECT registry FROM ls)
), links AS (
    -- Every (repository, manifest) a snapshot that holds data reached, kept at commit, with its namespace.
    SELECT l.repository_key, l.manifest_key, n.nsid
    FROM repository_links l JOIN namespace_ids n ON n.repository_key = l.repository_key
), stale_links AS (
    SELECT repository_key, manifest_key FROM flagged WHERE stale
    UNION
    SELECT f.repository_key, c.child_key
    FROM flagged f JOIN manifest_children c ON c.index_key = f.manifest_key
    WHERE f.stale
), manifest_links AS (
    -- Per manifest: are all the links holding it stale, and in which namespaces are they.
    SELECT l.manifest_key, bool_and(s.manifest_key IS NOT NULL) AS all_stale, min(l.nsid) AS lo, max(l.nsid) AS hi
    FROM links l
    LEFT JOIN stale_links s ON s.repository_key = l.repository_key AND s.manifest_key = l.manifest_key
    GROUP BY l.manifest_key
), qualifying AS MATERIALIZED (
    -- Manifests whose links are all stale and in one namespace: only their blobs can be reclaimed.
    SELECT manifest_key, lo AS nsid FROM manifest_links WHERE all_stale AND lo = hi
), shared_candidates AS MATERIALIZED (
    -- A blob several manifests hold can only be reclaimed when its lowest and highest holders qualify, in one
    -- namespace. Two steps, materialized: joined in one, the planner may pair holders by namespace first.
    SELECT c.blob_key FROM (
        SELECT r.blob_key, r.hi_manifest, q.nsid FROM blob_refs r JOIN qualifying q ON q.manifest_key = r.lo_manifest
        WHERE r.lo_manifest < r.hi_manifest AND r.registry IN (SELECT registry FROM ls)) c
    JOIN qualifying q ON q.manifest_key = c.hi_manifest
    WHERE q.nsid = c.nsid
), reclaim_blobs AS (
    -- Deleting a namespace's stale images frees a blob exactly when every link holding it is one of them
    -- (the same as counting the distinct links per blob, without counting them). Most blobs have a single
    -- manifest holding them: their bytes are kept per manifest at commit (manifest_sole_bytes).
    SELECT q.nsid, o.bytes AS size
    FROM manifest_sole_bytes o JOIN qualifying q ON q.manifest_key = o.manifest_key
    UNION ALL
    SELECT min(ml.lo), max(b.size)
    FROM manifest_blob_keys b
    JOIN shared_candidates m ON m.blob_key = b.blob_key
    JOIN manifest_links ml ON ml.manifest_key = b.manifest_key
    GROUP BY b.blob_key
    HAVING bool_and(ml.all_stale) AND min(ml.lo) = max(ml.hi)
), reclaim AS (
    SELECT n.registry, n.namespace, sum(rb.size)::BIGINT AS stale_reclaimable_bytes
    FROM reclaim_blobs rb JOIN (SELECT DISTINCT registry, namespace, nsid FROM namespace_ids) n ON n.nsid = rb.nsid
    GROUP BY n.registry, n.namespace
), latest_ns AS (
    SELECT DISTINCT lm.manifest_key, n.nsid
    FROM latest_manifests lm
    JOIN ls ON ls.registry = lm.registry
    JOIN namespace_ids n ON n.repository_key = lm.repository_key
), reach AS (
    -- The blobs a namespace reaches, each once: those one manifest holds alone (manifest_sole_bytes) count once
    -- in each namespace that has the manifest, so only shared blobs need distinct (namespace, blob) pairs.
    SELECT ln.nsid, o.bytes AS size FROM latest_ns ln JOIN manifest_sole_bytes o ON o.manifest_key = ln.manifest_key
    UNION ALL
    SELECT nsid, size FROM (
        SELECT DISTINCT ln.nsid, b.blob_key, b.size
        FROM latest_ns ln
        JOIN manifest_blob_keys b ON b.manifest_key = ln.manifest_key
        JOIN (SELECT blob_key FROM blob_refs
              WHERE lo_manifest < hi_manifest AND registry IN (SELECT registry FROM ls)) m ON m.blob_key = b.blob_key)
), ns_bytes AS (
    SELECT n.registry, n.namespace, sum(r.size)::BIGINT AS unique_bytes
    FROM (SELECT nsid, sum(size) AS size FROM reach GROUP BY nsid) r
    JOIN (SELECT DISTINCT registry, namespace, nsid FROM namespace_ids) n ON n.nsid = r.nsid
    GROUP BY n.registry, n.namespace
), per_ns AS (
    SELECT registry, namespace, count(DISTINCT repository) AS repositories, count(*) AS images,
           sum(len(tags))::BIGINT AS tags, count(*) FILTER (WHERE stale) AS stale_images,
           coalesce(sum(len(tags)) FILTER (WHERE stale), 0)::BIGINT AS stale_tags,
           coalesce(sum(size) FILTER (WHERE stale), 0)::BIGINT AS stale_logical_bytes
    FROM flagged GROUP BY registry, namespace
), ns_repos AS (
    SELECT registry, namespace, count(*) FILTER (WHERE stale_repository) AS stale_repositories
    FROM repos GROUP BY registry, namespace
)
SELECT p.registry, p.namespace, p.repositories, nr.stale_repositories, p.images, p.tags, p.stale_images,
       p.stale_tags, p.stale_logical_bytes, coalesce(b.unique_bytes, 0) AS unique_bytes,
       coalesce(r.stale_reclaimable_bytes, 0) AS stale_reclaimable_bytes
FROM per_ns p
JOIN ns_repos nr ON nr.registry = p.registry AND nr.namespace = p.namespace
LEFT JOIN ns_bytes b ON b.registry = p.registry AND b.namespace = p.namespace
LEFT JOIN reclaim r ON r.registry = p.registry AND r.namespace = p.namespace
ORDER BY stale_reclaimable_bytes DESC, p.registry, p.namespace;
