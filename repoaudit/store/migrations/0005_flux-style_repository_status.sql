-- Flux-style repository status, so a collection can be compared with the Flux objects.

-- name: schema
-- Per snapshot and repository, what Flux's image-reflector-controller would put in an
-- ImageRepository's status, so a collection can be compared with `kubectl get imagerepository -o yaml`.
CREATE TABLE repository_status (
    snapshot_id                BIGINT NOT NULL,
    registry                   VARCHAR NOT NULL,
    repository                 VARCHAR NOT NULL,
    name                       VARCHAR,    -- the Flux object (namespace/name) or config entry, when there is one
    canonical_image_name       VARCHAR,    -- index.docker.io/library/nginx for nginx, as Flux writes it
    tag_count                  INTEGER,    -- lastScanResult.tagCount: tags after the exclusion list
    scan_time                  TIMESTAMP,  -- lastScanResult.scanTime
    latest_tags                JSON,       -- lastScanResult.latestTags: the first ten in descending order
    observed_exclusion_list    JSON,
    ready                      BOOLEAN,    -- the Ready condition
    reason                     VARCHAR,    -- Succeeded | AuthenticationFailed | ImageURLInvalid | ReadOperationFailed
    message                    VARCHAR,
    last_handled_reconcile_at  TIMESTAMP
);
