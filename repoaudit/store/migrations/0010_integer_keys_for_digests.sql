-- Integer keys for digests and repository names, and the blob references kept at commit. The Python step
-- after this migration (repoaudit.store.kept.assign_keys) keys the rows of databases written before.

-- name: schema
-- Joining and grouping millions of layer rows on 71-character digest strings was most of the cost of the
-- byte-counting queries. Every (registry, digest) a snapshot stores gets a BIGINT key, once; the fact
-- tables carry it beside the digest. The snapshot writer fills keys as it commits
-- (repoaudit.store.kept.assign_keys), which also fills them for databases written before.
CREATE SEQUENCE digest_key_seq START 1;

CREATE TABLE digest_keys (
    registry  VARCHAR NOT NULL,
    digest    VARCHAR NOT NULL,
    key       BIGINT NOT NULL     -- unique across registries: a key alone names a (registry, digest)
);

ALTER TABLE manifests ADD COLUMN manifest_key BIGINT;

ALTER TABLE manifests ADD COLUMN config_key BIGINT;

ALTER TABLE layers ADD COLUMN manifest_key BIGINT;

ALTER TABLE layers ADD COLUMN blob_key BIGINT;

ALTER TABLE manifest_children ADD COLUMN index_key BIGINT;

ALTER TABLE manifest_children ADD COLUMN child_key BIGINT;

ALTER TABLE repository_links ADD COLUMN manifest_key BIGINT;

-- Repository names too, for the same reason: windows and counts per repository over a million links.
CREATE SEQUENCE repository_key_seq START 1;

CREATE TABLE repository_keys (
    registry    VARCHAR NOT NULL,
    repository  VARCHAR NOT NULL,
    key         BIGINT NOT NULL
);

ALTER TABLE repository_links ADD COLUMN repository_key BIGINT;

ALTER TABLE repositories ADD COLUMN repository_key BIGINT;

-- Per blob, the references to it from manifests some link reached (a row of manifest_blob_keys each): how
-- many, and the lowest and highest manifest key among them (equal: one manifest holds it). Deleting
-- manifests frees a blob when its references are all gone, so byte accounting starts here instead of
-- grouping every layer row again. Kept at commit (repoaudit.store.kept.count_blob_refs); counted_manifests
-- lists the manifests already counted, so each is counted once, when it is first both stored and reached.
CREATE TABLE blob_refs (
    registry     VARCHAR NOT NULL,
    blob_key     BIGINT NOT NULL,
    size         BIGINT,
    refs         BIGINT NOT NULL,
    lo_manifest  BIGINT NOT NULL,
    hi_manifest  BIGINT NOT NULL
);

CREATE TABLE counted_manifests (manifest_key BIGINT NOT NULL);
