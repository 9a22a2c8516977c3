-- The tables a commit keeps besides the snapshot's own rows (repoaudit.store.kept): repository_links,
-- blob_refs with counted_manifests, manifest_sole_bytes, latest_images. The integer keys are filled by
-- templates in kept.py, since they run over its table of keyed columns.
-- Their working tables (main._repoaudit_*) are tables of the database, created and dropped inside the
-- commit's transaction, so never seen by anyone else: a TEMP table is held in memory whole, while a
-- transaction's rows of a database table are written out when the memory limit needs their room.

-- name: fold_snapshot
-- The links one snapshot ($1) reached, aggregated, to fold into repository_links.
CREATE OR REPLACE TABLE main._repoaudit_fold AS SELECT * FROM links_reached(?);

-- name: fold_known_links
-- Links already kept take the earlier first sighting and the later last one (with its tags).
UPDATE repository_links AS l SET
    first_seen = CASE WHEN (f.first_seen, f.first_snapshot) < (l.first_seen, l.first_snapshot)
                      THEN f.first_seen ELSE l.first_seen END,
    first_snapshot = CASE WHEN (f.first_seen, f.first_snapshot) < (l.first_seen, l.first_snapshot)
                          THEN f.first_snapshot ELSE l.first_snapshot END,
    last_seen = CASE WHEN (f.last_seen, f.last_snapshot) > (l.last_seen, l.last_snapshot)
                     THEN f.last_seen ELSE l.last_seen END,
    last_snapshot = CASE WHEN (f.last_seen, f.last_snapshot) > (l.last_seen, l.last_snapshot)
                         THEN f.last_snapshot ELSE l.last_snapshot END,
    tags = CASE WHEN (f.last_seen, f.last_snapshot) > (l.last_seen, l.last_snapshot)
                THEN f.tags ELSE l.tags END
FROM main._repoaudit_fold f
WHERE f.registry = l.registry AND f.repository = l.repository AND f.digest = l.digest;

-- name: fold_new_links
-- The links not kept yet, shaped like repository_links, keys to be looked up as they are copied in.
CREATE OR REPLACE TABLE main._repoaudit_new_links AS
SELECT f.*, NULL::BIGINT AS manifest_key, NULL::BIGINT AS repository_key FROM main._repoaudit_fold f
ANTI JOIN repository_links l
    ON l.registry = f.registry AND l.repository = f.repository AND l.digest = f.digest;

-- name: fold_done
DROP TABLE main._repoaudit_fold;
DROP TABLE main._repoaudit_new_links;

-- name: count_new_manifests
-- Manifests now both stored and reached by a link, not counted yet: each is counted once.
CREATE OR REPLACE TABLE main._repoaudit_count AS
SELECT DISTINCT m.manifest_key FROM manifests m
SEMI JOIN repository_links l ON l.manifest_key = m.manifest_key
ANTI JOIN counted_manifests c ON c.manifest_key = m.manifest_key;

-- name: count_new_refs_table
CREATE OR REPLACE TABLE main._repoaudit_refs (registry VARCHAR, blob_key BIGINT, size BIGINT, refs BIGINT,
                                              lo_manifest BIGINT, hi_manifest BIGINT);

-- name: count_new_refs
-- Their references to each blob: how many, and the lowest and highest manifest key among them; one part
-- ($part of $parts, by blob key) at a time, since grouping a million manifests' blobs at once outgrew the
-- commit's memory limit (a blob falls in one part, so the parts' groups are the whole's).
-- Grouped on fixed-width values only, the registry joined on after (a key names one registry): a string
-- in every group's state made this the commit's largest allocation, and the one that outgrew its limit.
INSERT INTO main._repoaudit_refs
SELECT k.registry, a.* FROM (
    SELECT b.blob_key, max(b.size) AS size, count(*) AS refs, min(b.manifest_key) AS lo_manifest,
           max(b.manifest_key) AS hi_manifest
    FROM manifest_blob_keys b SEMI JOIN main._repoaudit_count n ON n.manifest_key = b.manifest_key
    WHERE b.blob_key % $parts = $part
    GROUP BY b.blob_key) a
JOIN digest_keys k ON k.key = a.blob_key;

-- name: count_changed_holders
-- Manifests whose sole bytes change: the new ones, and those that held alone a blob a new one now shares.
CREATE OR REPLACE TABLE main._repoaudit_sole AS
SELECT manifest_key FROM main._repoaudit_count
UNION
SELECT r.lo_manifest FROM blob_refs r SEMI JOIN main._repoaudit_refs n ON n.blob_key = r.blob_key
WHERE r.lo_manifest = r.hi_manifest;

-- name: count_add_known_refs
UPDATE blob_refs AS r SET size = greatest(r.size, n.size), refs = r.refs + n.refs,
                          lo_manifest = least(r.lo_manifest, n.lo_manifest),
                          hi_manifest = greatest(r.hi_manifest, n.hi_manifest)
FROM main._repoaudit_refs n WHERE n.blob_key = r.blob_key;

-- name: count_add_new_refs
INSERT INTO blob_refs BY NAME
SELECT n.* FROM main._repoaudit_refs n ANTI JOIN blob_refs r ON r.blob_key = n.blob_key;

-- name: count_mark_counted
INSERT INTO counted_manifests SELECT manifest_key FROM main._repoaudit_count;

-- name: count_done
DROP TABLE main._repoaudit_count;
DROP TABLE main._repoaudit_refs;
DROP TABLE main._repoaudit_sole;

-- name: sole_bytes_clear
DELETE FROM manifest_sole_bytes;

-- name: sole_bytes_sum
-- Per manifest, the bytes of the blobs it alone holds (one holder in blob_refs).
INSERT INTO manifest_sole_bytes
SELECT r.lo_manifest, sum(r.size) FROM blob_refs r
WHERE r.lo_manifest = r.hi_manifest AND r.size IS NOT NULL
GROUP BY r.lo_manifest;

-- name: sole_bytes_clear_changed
DELETE FROM manifest_sole_bytes WHERE manifest_key IN (SELECT manifest_key FROM main._repoaudit_sole);

-- name: sole_bytes_sum_changed
-- sole_bytes_sum for the manifests of count_changed_holders only.
INSERT INTO manifest_sole_bytes
SELECT r.lo_manifest, sum(r.size) FROM blob_refs r SEMI JOIN main._repoaudit_sole s ON s.manifest_key = r.lo_manifest
WHERE r.lo_manifest = r.hi_manifest AND r.size IS NOT NULL
GROUP BY r.lo_manifest;

-- name: latest_images_clear
-- The latest images of one registry ($registry), or of all (NULL).
DELETE FROM latest_images WHERE $registry::VARCHAR IS NULL OR registry = $registry;

-- name: latest_images_fill
INSERT INTO latest_images BY NAME SELECT * FROM compute_latest_images($registry::VARCHAR);

-- name: rebuild_clear
-- Every kept table emptied, and the links folded again from every snapshot, for a recount.
DELETE FROM repository_links;
INSERT INTO repository_links BY NAME SELECT * FROM links_reached(NULL);
DELETE FROM blob_refs;
DELETE FROM counted_manifests;
DELETE FROM manifest_sole_bytes;
