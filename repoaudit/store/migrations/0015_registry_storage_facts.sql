-- What only a registry's storage shows (collect registry-storage:PATH), a row per fact per snapshot. An API
-- snapshot writes none of these; a storage snapshot writes the usual tables too.

-- name: schema
-- Every repository (a directory holding _layers), collected or not. valid_name: a name Distribution's
-- reference grammar accepts (garbage-collect stops at the first it cannot parse; the collection skips it;
-- repository is then its printable form). has_tags_dir: _manifests/tags exists; a repository pushed to by
-- digest only has none, and Distribution 2.8's garbage-collect --delete-untagged then stops.
CREATE TABLE storage_repositories (
    snapshot_id   BIGINT NOT NULL,
    registry      VARCHAR NOT NULL,
    repository    VARCHAR NOT NULL,
    valid_name    BOOLEAN NOT NULL,
    has_tags_dir  BOOLEAN NOT NULL
);

-- Every manifest revision (_manifests/revisions) of a repository. linked: its link file exists; a directory
-- without one is a manifest deleted through the API (kept so its bytes are attributed to the repository).
-- tagged: some tag's current link names it; blob_present: its blob's data file exists (Distribution skips a
-- revision without one).
CREATE TABLE storage_revisions (
    snapshot_id   BIGINT NOT NULL,
    registry      VARCHAR NOT NULL,
    repository    VARCHAR NOT NULL,
    digest        VARCHAR NOT NULL,
    linked        BOOLEAN NOT NULL,
    tagged        BOOLEAN NOT NULL,
    blob_present  BOOLEAN NOT NULL
);

-- Every blob a repository may serve (_layers links): configs and layers pushed or mounted into it.
CREATE TABLE storage_layer_links (
    snapshot_id   BIGINT NOT NULL,
    registry      VARCHAR NOT NULL,
    repository    VARCHAR NOT NULL,
    digest        VARCHAR NOT NULL,
    blob_present  BOOLEAN NOT NULL
);

-- Every digest a tag has pointed at (_manifests/tags/<tag>/index), current one included.
CREATE TABLE storage_tag_history (
    snapshot_id  BIGINT NOT NULL,
    registry     VARCHAR NOT NULL,
    repository   VARCHAR NOT NULL,
    tag          VARCHAR NOT NULL,
    digest       VARCHAR NOT NULL
);

-- Every blob in the blob store with the size of its data file, referenced or not.
CREATE TABLE storage_blobs (
    snapshot_id  BIGINT NOT NULL,
    registry     VARCHAR NOT NULL,
    digest       VARCHAR NOT NULL,
    size         BIGINT NOT NULL
);

-- Uploads in progress or abandoned (_uploads/<id>): started_at from its startedat file (NULL: unreadable,
-- which Distribution's upload purging treats as never old enough), size of its data so far.
CREATE TABLE storage_uploads (
    snapshot_id  BIGINT NOT NULL,
    registry     VARCHAR NOT NULL,
    repository   VARCHAR NOT NULL,
    upload_id    VARCHAR NOT NULL,
    started_at   TIMESTAMP,
    size         BIGINT
);
