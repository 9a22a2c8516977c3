-- Repository links kept at commit. The backfill folds in every snapshot written before.

-- name: schema
-- Every (repository, manifest) that a snapshot holding data reached, by a tag or as a child of a tagged
-- index, with the first and last such snapshot (by started_at, then snapshot_id). Push times, staleness,
-- image lifecycles and retention read this instead of aggregating the tags of every snapshot again,
-- which took seconds at a million tags. The snapshot writer folds each snapshot in as it commits
-- (repoaudit.store.kept.fold_links); the backfill fills it for databases written before.
CREATE TABLE repository_links (
    registry        VARCHAR NOT NULL,
    repository      VARCHAR NOT NULL,
    digest          VARCHAR NOT NULL,
    first_seen      TIMESTAMP NOT NULL,   -- started_at of the first snapshot that reached it
    first_snapshot  BIGINT NOT NULL,
    last_seen       TIMESTAMP NOT NULL,   -- started_at of the last snapshot that reached it
    last_snapshot   BIGINT NOT NULL,
    tags            VARCHAR[]             -- its tags in last_snapshot, sorted; NULL: reached only through an index
);

-- name: backfill
-- By name: the key columns of migration 10 may be there already; assign_keys fills them after migration 10.
INSERT INTO repository_links BY NAME SELECT * FROM links_reached(NULL);
