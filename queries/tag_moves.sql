-- name: tag_moves
-- description: Tags re-pointed to other content between two snapshots, newest first: a supply-chain signal
-- (a tag should name one build). rollback marks a move to an older image (by config created); recreated marks
-- a tag that was deleted and pushed again rather than moved in place.
-- param: registry VARCHAR = NULL | only this registry
-- param: repository VARCHAR = NULL | only this repository
-- param: since TIMESTAMP = NULL | only moves seen at or after this time (UTC)
-- param: rollbacks_only BOOLEAN = false | only moves to an older image
SELECT registry, repository, tag, from_digest, to_digest, moved_after, moved_before,
       from_created, to_created, rollback, recreated, from_snapshot, to_snapshot
FROM tag_moves_of($registry, $repository)
WHERE ($since IS NULL OR moved_before >= $since)
  AND (NOT $rollbacks_only OR rollback)
ORDER BY moved_before DESC, rollback DESC NULLS LAST, registry, repository, tag;
