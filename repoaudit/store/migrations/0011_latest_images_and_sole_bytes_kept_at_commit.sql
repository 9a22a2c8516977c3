-- The latest images and the sole bytes of each manifest, kept at commit. The staleness queries started
-- with every image of the latest snapshots, its push time and its rank among the newest of its repository:
-- a join of the links with the manifests and a sort of every image, at each query. A registry's latest
-- images change only when one of its snapshots commits, so the commit stores them
-- (repoaudit.store.kept.refresh_latest_images), ranked; the macro compute_latest_images (views.sql) is
-- their definition. The Python step after this migration (repoaudit.store.kept.refill_latest) counts the
-- blob references and fills both tables for databases written before.

-- name: schema
-- The columns of compute_latest_images, in its order.
CREATE TABLE latest_images (
    registry        VARCHAR,
    repository      VARCHAR,
    digest          VARCHAR,
    tags            VARCHAR[],
    snapshot_at     TIMESTAMP,    -- started_at of the registry's latest snapshot
    first_seen      TIMESTAMP,
    manifest_key    BIGINT,
    repository_key  BIGINT,
    kind            VARCHAR,
    artifact_type   VARCHAR,
    created         TIMESTAMP,
    size            BIGINT,
    pushed_at       TIMESTAMP,
    pushed_source   VARCHAR,      -- created | first_seen
    newest_rank     BIGINT        -- 1 is the newest image of its repository
);

-- Per manifest, the bytes of the blobs it alone holds (blob_refs with one holder): what deleting that manifest,
-- and nothing else, frees. A manifest that holds no blob alone has no row. Kept with blob_refs at commit.
CREATE TABLE manifest_sole_bytes (
    manifest_key  BIGINT NOT NULL,
    bytes         BIGINT NOT NULL
);
