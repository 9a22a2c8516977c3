-- The snapshot writer (repoaudit.store.writer): its staging database, the keys its rows take, and the
-- snapshot's own row. The per-table copies in and out of the stage are templates in writer.py, one per
-- staged table with that table's columns.

-- name: snapshot_reach
-- The distinct manifests a snapshot ($1) reaches, with their keys: counted, then their blobs' bytes summed
-- (snapshot_bytes), and both stored with each snapshot, so that listing snapshots never re-walks every blob of
-- every snapshot. A reached digest never stored (its fetch failed) counts, and holds no bytes (no key).
-- A working table of the database, dropped before the transaction commits (see kept.sql on why not TEMP).
CREATE OR REPLACE TABLE main._repoaudit_reach AS
WITH reach AS (
    SELECT registry, digest FROM tags WHERE snapshot_id = $1
    UNION
    SELECT c.registry, c.child_digest FROM tags t
    JOIN manifest_children c ON c.registry = t.registry AND c.index_digest = t.digest
    WHERE t.snapshot_id = $1
)
SELECT r.registry, r.digest, k.key FROM reach r
LEFT JOIN digest_keys k ON k.registry = r.registry AND k.digest = r.digest;

-- name: snapshot_bytes
-- The bytes of the blobs the reached manifests hold, each blob once, for the blobs of one part ($part of
-- $parts, by blob key; kept.parts): DISTINCT over a million manifests' blobs at once outgrew the commit's
-- memory limit, and a blob falls in one part, so the parts' sums add up. Distinct by key, not by digest
-- string; keys are unique across registries and name one (registry, digest), so a manifest key matches no
-- blob of another manifest. Every row is keyed by now (SnapshotWriter._finish).
SELECT coalesce(sum(size), 0) FROM (
    SELECT DISTINCT b.blob_key, b.size FROM manifest_blob_keys b
    SEMI JOIN main._repoaudit_reach r ON r.key = b.manifest_key
    WHERE b.blob_key % $parts = $part);

-- name: snapshot_reach_done
DROP TABLE main._repoaudit_reach;

-- name: table_columns
-- A table's columns and their types, in order: the stage's tables copy them.
SELECT column_name, data_type FROM information_schema.columns
WHERE table_catalog = current_database() AND table_schema = 'main' AND table_name = ?
ORDER BY ordinal_position;

-- name: stage_keys_table
-- Inside the attached stage: the key of every digest its rows name (filled by stage_keys, part by part).
CREATE OR REPLACE TABLE _repoaudit_stage._keys (registry VARCHAR, digest VARCHAR, key BIGINT, new BOOLEAN);

-- name: stage_digest_rows
-- How many digests the stage's rows name, repeats included: how many parts stage_keys runs in.
SELECT (SELECT 2 * count(*) FROM _repoaudit_stage.manifests) + (SELECT 2 * count(*) FROM _repoaudit_stage.layers)
       + (SELECT 2 * count(*) FROM _repoaudit_stage.manifest_children);

-- name: stage_keys
-- One part ($part of $parts, by a hash of the digest) of the stage's digests, each with its key: an existing
-- one from digest_keys, else a new one numbered after the highest key so far (new = true). One SELECT per
-- keyed digest column of a staged table (kept._KEYED; tests/test_kept_tables.py checks this list against it).
-- In parts because the DISTINCT over a million digest strings could not spill under the keying's memory
-- limit; the hash only picks a digest's part (equal digests always fall in the same one), digests are still
-- told apart by their text, so a collision costs nothing. New digests are numbered in order within each
-- part, so two runs over the same registry give the same keys (tests/test_storm.py compares them); one
-- part's sort fits where ordering every digest string of the stage did not.
INSERT INTO _repoaudit_stage._keys
WITH named AS (
    SELECT registry, digest AS digest FROM _repoaudit_stage.manifests WHERE digest IS NOT NULL
    UNION ALL SELECT registry, config_digest AS digest FROM _repoaudit_stage.manifests WHERE config_digest IS NOT NULL
    UNION ALL SELECT registry, manifest_digest AS digest FROM _repoaudit_stage.layers WHERE manifest_digest IS NOT NULL
    UNION ALL SELECT registry, digest AS digest FROM _repoaudit_stage.layers WHERE digest IS NOT NULL
    UNION ALL SELECT registry, index_digest AS digest FROM _repoaudit_stage.manifest_children
              WHERE index_digest IS NOT NULL
    UNION ALL SELECT registry, child_digest AS digest FROM _repoaudit_stage.manifest_children
              WHERE child_digest IS NOT NULL
), found AS (
    SELECT n.registry, n.digest, k.key FROM (
        SELECT DISTINCT registry, digest FROM named WHERE hash(registry, digest) % $parts = $part) n
    LEFT JOIN main.digest_keys k ON k.registry = n.registry AND k.digest = n.digest
), base AS (
    SELECT greatest(coalesce((SELECT max(key) FROM main.digest_keys), 0),
                    coalesce((SELECT last_value FROM duckdb_sequences()
                              WHERE database_name = current_database()
                                AND sequence_name = 'digest_key_seq'), 0),
                    coalesce((SELECT max(key) FROM _repoaudit_stage._keys), 0)) AS base
)
SELECT registry, digest, key, false AS new FROM found WHERE key IS NOT NULL
UNION ALL
SELECT registry, digest, (SELECT base FROM base) + row_number() OVER (ORDER BY registry, digest), true
FROM found WHERE key IS NULL;

-- name: copy_stage_keys
-- Inside the snapshot's transaction: the keys the stage's new digests took ...
INSERT INTO digest_keys SELECT registry, digest, key FROM _repoaudit_stage._keys WHERE new;

-- name: advance_digest_key_seq
-- ... and the sequence moved past them, so keys taken later never collide.
SELECT setval('digest_key_seq', (SELECT max(key) FROM digest_keys)) WHERE EXISTS (SELECT 1 FROM digest_keys);

-- name: insert_snapshot
-- The snapshot's row, written last in its transaction.
INSERT INTO snapshots (snapshot_id, registry, source, source_kind, started_at, finished_at, status, mode,
                       repository_count, tag_count, manifest_count, new_manifest_count, error_count, error,
                       requests, rate_limit, options, repoaudit_version, unique_bytes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: has_manifests
-- Whether the registry ($1) has any manifest stored: the run is then incremental.
SELECT 1 FROM manifests WHERE registry = ? LIMIT 1;

-- name: known_manifests
-- The registry's ($1) stored manifest digests, read in batches by the collector.
SELECT digest FROM manifests WHERE registry = ?;
