-- name: gc_preview
-- description: What Distribution 2.8's offline garbage-collect would free now, from each registry's latest storage
-- snapshot (collect registry-storage:PATH): per repository, then one row with repository NULL for the whole
-- registry. freed_bytes without --delete-untagged, freed_untagged_bytes with it; from_tagged_index_bytes is
-- the part --delete-untagged takes from children of indexes that stay tagged (distribution/distribution#3178).
-- A blob linked from several repositories counts in each of their rows and once in the total; blobs no
-- repository links count in the total only. purgeable uploads: started more than upload_age_hours before the
-- snapshot (the registry's storage.maintenance.uploadpurging.age, 168h by default), which the running registry
-- removes itself, not garbage-collect.
-- param: registry VARCHAR = NULL | only this registry
-- param: snapshot BIGINT = NULL | this storage snapshot instead of the latest
-- param: upload_age_hours DOUBLE = 168 | the registry's uploadpurging age, in hours
WITH snaps AS (
    SELECT snapshot_id, registry, started_at FROM storage_snapshot_of($registry, $snapshot)
), blobs AS (
    SELECT s.snapshot_id, g.* FROM snaps s, gc_blobs(s.snapshot_id) g WHERE g.registry = s.registry
), per_repo AS (
    SELECT b.registry, r.repository,
           sum(b.size) FILTER (WHERE b.freed) AS freed_bytes,
           count(*) FILTER (WHERE b.freed) AS freed_blobs,
           sum(b.size) FILTER (WHERE b.freed_untagged) AS freed_untagged_bytes,
           count(*) FILTER (WHERE b.freed_untagged) AS freed_untagged_blobs,
           sum(b.size) FILTER (WHERE b.from_tagged_index) AS from_tagged_index_bytes
    FROM blobs b, unnest(b.repositories) AS r(repository)
    GROUP BY b.registry, r.repository
), totals AS (
    SELECT registry, NULL::VARCHAR AS repository,
           sum(size) FILTER (WHERE freed) AS freed_bytes,
           count(*) FILTER (WHERE freed) AS freed_blobs,
           sum(size) FILTER (WHERE freed_untagged) AS freed_untagged_bytes,
           count(*) FILTER (WHERE freed_untagged) AS freed_untagged_blobs,
           sum(size) FILTER (WHERE from_tagged_index) AS from_tagged_index_bytes
    FROM blobs GROUP BY registry
), uploads AS (
    SELECT u.registry, u.repository, count(*) AS purgeable_uploads, sum(coalesce(u.size, 0)) AS purgeable_upload_bytes
    FROM storage_uploads u JOIN snaps s ON s.snapshot_id = u.snapshot_id
    WHERE u.started_at < s.started_at - to_microseconds(($upload_age_hours * 3600e6)::BIGINT)
    GROUP BY GROUPING SETS ((u.registry, u.repository), (u.registry))
), rows AS (
    SELECT * FROM per_repo UNION ALL SELECT * FROM totals
), joined AS (
SELECT coalesce(r.registry, u.registry) AS registry, coalesce(r.repository, u.repository) AS repository,
       coalesce(r.freed_bytes, 0)::BIGINT AS freed_bytes, coalesce(r.freed_blobs, 0)::BIGINT AS freed_blobs,
       coalesce(r.freed_untagged_bytes, 0)::BIGINT AS freed_untagged_bytes,
       coalesce(r.freed_untagged_blobs, 0)::BIGINT AS freed_untagged_blobs,
       coalesce(r.from_tagged_index_bytes, 0)::BIGINT AS from_tagged_index_bytes,
       coalesce(u.purgeable_uploads, 0)::BIGINT AS purgeable_uploads,
       coalesce(u.purgeable_upload_bytes, 0)::BIGINT AS purgeable_upload_bytes
FROM rows r
FULL JOIN uploads u ON u.registry = r.registry AND u.repository IS NOT DISTINCT FROM r.repository
)
SELECT * FROM joined
ORDER BY registry, repository IS NULL, freed_untagged_bytes DESC, repository;
