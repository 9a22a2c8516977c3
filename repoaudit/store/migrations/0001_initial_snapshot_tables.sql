-- The snapshot tables. Snapshot facts (snapshots, repositories, tags, collection_errors) carry the
-- snapshot_id of the run that saw them. Content-addressed facts (manifests, manifest_children, layers)
-- are stored once per (registry, digest) and say which snapshot first saw them.

-- name: schema
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
