-- name: snapshots
-- description: Every collection run, newest first, with its status, counts and the unique bytes it reaches
-- (each layer, config and manifest blob reachable from its tags counted once).
-- param: registry VARCHAR = NULL | only this registry
-- param: limit INTEGER = 100 | at most this many snapshots
SELECT s.snapshot_id, s.registry, s.status, s.mode, s.started_at,
       -- Milliseconds as stored, not rounded: rounding a half (0.415 s) goes up on Spark's decimals and down
       -- on DuckDB's doubles, and a run's duration is whatever it was.
       date_diff('millisecond', s.started_at, s.finished_at) / 1000.0 AS seconds,
       s.repository_count, s.tag_count, s.manifest_count, s.new_manifest_count, s.error_count,
       coalesce(s.unique_bytes, 0) AS unique_bytes, s.error
FROM snapshots s
WHERE $registry IS NULL OR s.registry = $registry
ORDER BY s.started_at DESC, s.snapshot_id DESC
LIMIT $limit;
