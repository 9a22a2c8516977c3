-- name: tag_timeline
-- description: The history of tags: each stretch of a tag at one digest, oldest first, with the image's created
-- time and, when the stretch began with a move, the digest it moved from and whether that was a rollback
-- (to an older image) or a re-created tag.
-- param: registry VARCHAR = NULL | only this registry
-- param: repository VARCHAR = NULL | only this repository
-- param: tag VARCHAR = NULL | only this tag
-- param: limit INTEGER = 1000 | at most this many rows
WITH picked AS (
    -- Cut to the requested rows before looking up ages, so that large histories stay cheap.
    SELECT * FROM tag_stretches_of($registry, $repository, $tag) s
    ORDER BY s.registry, s.repository, s.tag, s.first_seen
    LIMIT $limit
)
SELECT s.registry, s.repository, s.tag, s.digest, m.created, s.first_seen, s.last_seen, s.snapshots_seen,
       s.previous_digest AS moved_from, m.created < pm.created AS rollback, s.recreated
FROM picked s
LEFT JOIN manifests m ON m.registry = s.registry AND m.digest = s.digest
LEFT JOIN manifests pm ON pm.registry = s.registry AND pm.digest = s.previous_digest
ORDER BY s.registry, s.repository, s.tag, s.first_seen;
