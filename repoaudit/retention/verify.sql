-- What a plan's snapshot holds, for the candidates of one registry: run by verify.py
-- (_check_in_snapshot) with $snapshot_id, $registry, $repositories (the candidates' repositories)
-- and $started_at (the snapshot's start).

-- name: repository_status
-- Each repository's status in the snapshot ('ok': read completely).
SELECT repository, status
FROM repositories
WHERE snapshot_id = $snapshot_id AND list_contains($repositories, repository);

-- name: tags_by_digest
-- The tags each digest had in the snapshot.
SELECT repository, digest, list(tag)
FROM tags
WHERE snapshot_id = $snapshot_id AND list_contains($repositories, repository)
GROUP BY ALL;

-- name: links_seen
-- Every digest a repository held up to the snapshot (an untagged candidate must be one of them).
SELECT repository, digest
FROM repository_links
WHERE registry = $registry AND list_contains($repositories, repository) AND first_seen <= $started_at;
