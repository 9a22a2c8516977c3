-- name: mutable_release_tags
-- description: Release-looking tags (full semantic versions, dates, build numbers) that pointed at more than one
-- digest over the snapshots: one row per move, with when (between moved_after and moved_before) and from what to
-- what; kind = tampering. Floating tags (latest, stable, main, a bare major or major.minor version, …) are expected
-- to move and are listed as kind = floating, after the tampering rows. A tag matching neither pattern is left out.
-- Default release_pattern: v?N.N.N[-+._suffix] | YYYY[-]MM[-]DD[suffix] | (build|b|r|ci)[-._]N | N of 5+ digits.
-- Default floating_pattern: latest|stable|edge|main|master|develop|dev|nightly|canary|prod|production|staging|test
-- | v?N[.N][-variant]. Both are RE2 regular expressions matched against the whole tag.
-- param: release_pattern VARCHAR = NULL | regular expression of release tags (NULL: the default above)
-- param: floating_pattern VARCHAR = NULL | regular expression of floating tags (NULL: the default above)
-- param: registry VARCHAR = NULL | only this registry
-- param: repository VARCHAR = NULL | only this repository
-- param: since TIMESTAMP = NULL | only moves seen at or after this time (UTC)
-- param: include_floating BOOLEAN = true | also list the moves of floating tags
WITH patterns AS (
    SELECT coalesce($release_pattern,
                    'v?[0-9]+\.[0-9]+\.[0-9]+([-+._][0-9A-Za-z.+_-]+)?'
                    || '|[0-9]{4}-?[0-9]{2}-?[0-9]{2}([-._T][0-9A-Za-z._-]+)?'
                    || '|(build|b|r|ci)[-._]?[0-9]+|[0-9]{5,}') AS release,
           coalesce($floating_pattern,
                    'latest|stable|edge|main|master|develop|dev|nightly|canary|prod|production|staging|test'
                    || '|v?[0-9]+(\.[0-9]+)?(-[A-Za-z][0-9A-Za-z._-]*)?') AS floating
), moves AS (
    SELECT m.*,
           CASE WHEN regexp_full_match(m.tag, (SELECT release FROM patterns)) THEN 'tampering'
                WHEN regexp_full_match(m.tag, (SELECT floating FROM patterns)) THEN 'floating' END AS kind
    FROM tag_moves_of($registry, $repository) m
    WHERE $since IS NULL OR m.moved_before >= $since
), digests AS (
    SELECT registry, repository, tag, count(DISTINCT digest) AS digests
    FROM tag_history
    WHERE ($registry IS NULL OR registry = $registry) AND ($repository IS NULL OR repository = $repository)
    GROUP BY ALL
)
SELECT m.kind, m.registry, m.repository, m.tag, m.from_digest, m.to_digest, m.moved_after, m.moved_before,
       d.digests, m.from_created, m.to_created, m.rollback, m.recreated, m.from_snapshot, m.to_snapshot
FROM moves m
JOIN digests d ON d.registry = m.registry AND d.repository = m.repository AND d.tag = m.tag
WHERE m.kind = 'tampering' OR (m.kind = 'floating' AND $include_floating)
ORDER BY m.kind = 'floating', m.moved_before DESC, m.registry, m.repository, m.tag;
