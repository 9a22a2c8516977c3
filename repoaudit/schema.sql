-- repoaudit's DuckDB schema, as forward migrations.
--
-- Each block starts with "-- migration: N <title>" and runs once, in order, in
-- one transaction, recorded in schema_version. Never edit a released block:
-- add a new one. All timestamps are UTC (the store sets TimeZone to UTC).
--
-- Snapshot facts (snapshots, repositories, tags, collection_errors) carry the
-- snapshot_id of the run that saw them. Content-addressed facts (manifests,
-- manifest_children, layers) are stored once per (registry, digest) and say
-- which snapshot first saw them.

-- migration: 1 initial snapshot tables
CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    title       VARCHAR,
    applied_at  TIMESTAMP
);

CREATE SEQUENCE snapshot_id_seq START 1;

CREATE TABLE snapshots (
    snapshot_id       BIGINT PRIMARY KEY,
    registry          VARCHAR NOT NULL,   -- host[:port] of a registry, or oci:/path of a layout tree
    source            VARCHAR NOT NULL,   -- the URL collected
    source_kind       VARCHAR NOT NULL,   -- registry | oci-layout
    started_at        TIMESTAMP NOT NULL,
    finished_at       TIMESTAMP,
    status            VARCHAR NOT NULL,   -- complete | partial | failed
    mode              VARCHAR,            -- full | incremental
    repository_count  INTEGER,
    tag_count         INTEGER,
    manifest_count    INTEGER,            -- distinct manifests referenced (tags and index children)
    new_manifest_count INTEGER,           -- manifests first stored by this snapshot
    error_count       INTEGER,
    error             VARCHAR,            -- why a failed snapshot failed
    requests          JSON,               -- request counts by kind, e.g. {"GET manifest": 120}
    rate_limit        JSON,               -- Docker Hub ratelimit-* headers when sent
    options           JSON,               -- include/exclude globs and mode, never credentials
    repoaudit_version VARCHAR
);

CREATE TABLE repositories (
    snapshot_id  BIGINT NOT NULL,
    registry     VARCHAR NOT NULL,
    repository   VARCHAR NOT NULL,
    tag_count    INTEGER,
    status       VARCHAR NOT NULL,   -- ok | partial (some tags failed) | failed
    error        VARCHAR
);

CREATE TABLE tags (
    snapshot_id  BIGINT NOT NULL,
    registry     VARCHAR NOT NULL,
    repository   VARCHAR NOT NULL,
    tag          VARCHAR NOT NULL,
    digest       VARCHAR NOT NULL
);

CREATE TABLE manifests (
    registry            VARCHAR NOT NULL,
    digest              VARCHAR NOT NULL,
    media_type          VARCHAR,
    kind                VARCHAR,      -- image | index | schema1 | unknown
    artifact_type       VARCHAR,      -- non-image artifacts: cosign signatures, SBOMs, helm charts
    manifest_size       BIGINT,       -- bytes of the manifest itself
    config_digest       VARCHAR,
    config_size         BIGINT,
    layers_size         BIGINT,
    layer_count         INTEGER,
    total_size          BIGINT,       -- image: config + layers; index: unique config and layer blobs of its children
    created             TIMESTAMP,    -- image config "created"; index: newest child
    architecture        VARCHAR,
    os                  VARCHAR,
    variant             VARCHAR,
    labels              JSON,
    annotations         JSON,
    subject             VARCHAR,      -- OCI 1.1 referrer subject digest
    first_seen_snapshot BIGINT,
    PRIMARY KEY (registry, digest)
);

CREATE TABLE manifest_children (
    registry      VARCHAR NOT NULL,
    index_digest  VARCHAR NOT NULL,
    position      INTEGER NOT NULL,
    child_digest  VARCHAR NOT NULL,
    media_type    VARCHAR,
    size          BIGINT,
    os            VARCHAR,
    architecture  VARCHAR,
    variant       VARCHAR
);

CREATE TABLE layers (
    registry         VARCHAR NOT NULL,
    manifest_digest  VARCHAR NOT NULL,
    position         INTEGER NOT NULL,
    digest           VARCHAR NOT NULL,
    media_type       VARCHAR,
    size             BIGINT
);

CREATE TABLE collection_errors (
    snapshot_id  BIGINT NOT NULL,
    registry     VARCHAR NOT NULL,
    repository   VARCHAR,
    reference    VARCHAR,        -- tag or digest, when the error belongs to one
    error_type   VARCHAR,        -- the repoaudit error class
    error        VARCHAR NOT NULL
);

-- Each registry's newest snapshot that holds data (complete, or partial with some repositories failed).
CREATE VIEW latest_snapshot AS
SELECT * EXCLUDE (rn) FROM (
    SELECT s.*, row_number() OVER (PARTITION BY registry ORDER BY started_at DESC, snapshot_id DESC) AS rn
    FROM snapshots s
    WHERE status IN ('complete', 'partial')
) WHERE rn = 1;

CREATE VIEW images AS
SELECT t.registry, t.repository, t.tag, t.digest,
       m.media_type, m.kind, m.artifact_type,
       m.created, m.total_size, m.architecture, m.os,
       date_diff('day', m.created, ls.started_at) AS age_days,
       t.snapshot_id
FROM tags t
JOIN latest_snapshot ls ON ls.snapshot_id = t.snapshot_id
LEFT JOIN manifests m ON m.registry = t.registry AND m.digest = t.digest;

-- Every manifest a snapshot can reach: the tagged ones and the children of tagged indexes.
CREATE VIEW snapshot_manifests AS
SELECT DISTINCT t.snapshot_id, t.registry, t.repository, t.digest, 'tag' AS via
FROM tags t
UNION ALL
SELECT DISTINCT t.snapshot_id, t.registry, t.repository, c.child_digest AS digest, 'index' AS via
FROM tags t
JOIN manifest_children c ON c.registry = t.registry AND c.index_digest = t.digest;

-- The blobs each manifest holds on to in a registry's blob store: its own bytes, its config, its layers.
CREATE VIEW manifest_blobs AS
SELECT registry, digest AS manifest_digest, digest AS blob_digest, manifest_size AS size, 'manifest' AS role
FROM manifests
UNION ALL
SELECT registry, digest, config_digest, config_size, 'config'
FROM manifests WHERE config_digest IS NOT NULL
UNION ALL
SELECT registry, manifest_digest, digest, size, 'layer'
FROM layers;

-- migration: 2 scans, vulnerabilities and workloads
CREATE TABLE _migration_2_placeholder (x INTEGER);
DROP TABLE _migration_2_placeholder;

-- migration: 3 retention deletions
CREATE TABLE _migration_3_placeholder (x INTEGER);
DROP TABLE _migration_3_placeholder;

-- migration: 4 tag history
CREATE TABLE _migration_4_placeholder (x INTEGER);
DROP TABLE _migration_4_placeholder;
