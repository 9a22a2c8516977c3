-- Merging shard databases (repoaudit.store.merge). The input being read is attached read-only and seen
-- through temporary views named _merge_in_<table> (merge._read), so these statements name no database.
-- The copies of rows into the merged snapshot are templates in merge.py, over the columns of each table.

-- name: input_tables
-- How many of the seven snapshot tables the attached database ($1, its alias) has: fewer, and it is not
-- a repoaudit database.
SELECT count(*) FROM duckdb_tables()
WHERE database_name = ?
  AND table_name IN ('snapshots', 'repositories', 'tags', 'manifests', 'layers', 'manifest_children',
                     'collection_errors');

-- name: newest_snapshots
-- The input's newest snapshot of each registry: what it contributes to the merge.
SELECT registry, snapshot_id, source, source_kind, started_at, finished_at, status, mode,
       repository_count, tag_count, error_count, requests, rate_limit, options
FROM _merge_in_snapshots
QUALIFY row_number() OVER (PARTITION BY registry ORDER BY started_at DESC, snapshot_id DESC) = 1
ORDER BY registry;

-- name: shard_repositories
-- The repositories one input's snapshot ($1) saw in a registry ($2): shards must not overlap.
SELECT DISTINCT repository FROM _merge_in_repositories WHERE snapshot_id = ? AND registry = ?;

-- name: new_manifests
-- What the input's snapshot ($old) reaches in $registry (tags and index children), minus what is already
-- stored: the manifests this shard adds.
CREATE OR REPLACE TEMP TABLE _merge_new AS
SELECT DISTINCT m.digest
FROM _merge_in_manifests m
WHERE m.registry = $registry
  AND m.digest IN (
      SELECT digest FROM _merge_in_tags WHERE snapshot_id = $old AND registry = $registry
      UNION
      SELECT c.child_digest FROM _merge_in_tags t
      JOIN _merge_in_manifest_children c ON c.registry = t.registry AND c.index_digest = t.digest
      WHERE t.snapshot_id = $old AND t.registry = $registry)
  AND m.digest NOT IN (SELECT digest FROM manifests WHERE registry = $registry);

-- name: new_manifests_done
DROP TABLE _merge_new;

-- name: supply_referrers
-- A shard's referrer facts the merged database lacks (stored once per digest, like manifests).
INSERT INTO referrers
SELECT * FROM _merge_in_referrers
WHERE registry = $registry AND digest NOT IN (SELECT digest FROM referrers WHERE registry = $registry);

-- name: supply_links
-- The shard snapshot's referrer links, under the merged snapshot.
INSERT INTO referrer_links (snapshot_id, registry, repository, subject_digest, referrer_digest, via)
SELECT $new, registry, repository, subject_digest, referrer_digest, via
FROM _merge_in_referrer_links WHERE snapshot_id = $old AND registry = $registry;

-- name: supply_verifications
-- The shard's signature verdicts the merged database lacks (one per signature, subject, layer and key).
INSERT INTO signature_verifications
SELECT v.* FROM _merge_in_signature_verifications v
WHERE v.registry = $registry
  AND NOT EXISTS (SELECT 1 FROM signature_verifications s
                  WHERE s.registry = v.registry AND s.signature_digest = v.signature_digest
                    AND s.subject_digest = v.subject_digest AND s.position = v.position
                    AND s.key_fingerprint IS NOT DISTINCT FROM v.key_fingerprint);

-- name: posture
-- One shard snapshot's posture probe ($old), under the merged snapshot ($new).
INSERT INTO registry_posture
SELECT * REPLACE ($new AS snapshot_id) FROM _merge_in_registry_posture WHERE snapshot_id = $old AND registry = $registry;
