-- Retention engine steps, run by repoaudit/retention/engine.py in this order (see its docstring
-- for what a link, an image, a gone manifest and a freed blob are). Every step builds a
-- temporary _ra_* table from the ones before; the per-policy candidates (_ra_cand) come from the
-- SQL the policy compiler (compiler.py) generates, because its shape follows the policy's rules.

-- name: latest_snapshots
-- The snapshot each registry is planned from ($registry NULL: every registry).
SELECT registry, snapshot_id, started_at, source, source_kind
FROM latest_snapshot WHERE $registry IS NULL OR registry = $registry ORDER BY registry;


-- name: links
-- Every (repository, manifest) link a snapshot of the plan's registries reached, by a tag or
-- as a child of a tagged index (kept at commit in repository_links), with its tags in the
-- latest snapshot (NULL: not tagged). link_id is the link's row id: unique, and free, where
-- numbering every link took a single-threaded pass.
CREATE OR REPLACE TEMP TABLE _ra_links AS
SELECT l.rowid AS link_id, l.registry, l.repository, l.digest, l.first_seen, l.last_seen,
       CASE WHEN l.last_snapshot = p.snapshot_id THEN l.tags END AS tags,
       l.manifest_key AS mkey, l.repository_key AS rkey
FROM repository_links l
JOIN _ra_snap p ON p.registry = l.registry;


-- name: children
-- Index -> child links within one repository.
CREATE OR REPLACE TEMP TABLE _ra_children AS
SELECT DISTINCT p.link_id AS parent_id, k.link_id AS child_id
FROM _ra_links p
JOIN manifest_children c ON c.index_key = p.mkey
JOIN _ra_links k ON k.rkey = p.rkey AND k.mkey = c.child_key;


-- name: repositories
-- Every repository of the plan's registries with its status in the latest snapshot
-- ('absent': not in it) and the time of its first look.
CREATE OR REPLACE TEMP TABLE _ra_repos_all AS
SELECT any_value(r.repository_key) AS rkey, r.registry, r.repository,
       split_part(r.repository, '/', 1) AS namespace, min(sn.started_at) AS first_look,
       coalesce(any_value(r.status) FILTER (WHERE r.snapshot_id = p.snapshot_id), 'absent') AS status,
       -- Sorting results by this instead of by (registry, repository) saves string compares on every row.
       row_number() OVER (ORDER BY r.registry, r.repository) AS repo_order
FROM repositories r
JOIN snapshots sn ON sn.snapshot_id = r.snapshot_id
JOIN _ra_snap p ON p.registry = r.registry
WHERE sn.status IN ('complete', 'partial')
GROUP BY r.registry, r.repository;


-- name: deployed
-- What a current workload runs (deployed_manifests: a workload that runs a platform child
-- of an index runs the index too).
CREATE OR REPLACE TEMP TABLE _ra_deployed AS
SELECT registry, repository, digest
FROM deployed_manifests WHERE registry IN (SELECT registry FROM _ra_snap);


-- name: no_deployed
-- A database without the deployed_manifests view: nothing counts as deployed.
CREATE OR REPLACE TEMP TABLE _ra_deployed (registry VARCHAR, repository VARCHAR, digest VARCHAR);


-- name: tag_pushes
-- Per tagged link of the latest snapshot: when one of its tags was last pushed onto it, as far as the
-- snapshots tell. A tag's push is the first snapshot of its current stretch at this digest (after the
-- last snapshot that saw it at another digest); a stretch that starts at the first look at its
-- repository tells nothing (the tag may be much older) and is left out. Harbor dates an artifact by
-- the later of its own push and its tags' pushes (pkg/retention/dep/client.go, GetCandidates).
CREATE OR REPLACE TEMP TABLE _ra_tag_push AS
WITH current_tags AS (
    SELECT t.registry, t.repository, t.tag, t.digest
    FROM tags t JOIN _ra_snap p ON p.snapshot_id = t.snapshot_id
), sightings AS MATERIALIZED (
    SELECT c.registry, c.repository, c.tag, c.digest, s.started_at, t.digest = c.digest AS here
    FROM current_tags c
    JOIN tags t ON t.registry = c.registry AND t.repository = c.repository AND t.tag = c.tag
    JOIN snapshots s ON s.snapshot_id = t.snapshot_id
    WHERE s.status IN ('complete', 'partial')
), elsewhere AS (
    SELECT registry, repository, tag, max(started_at) FILTER (WHERE NOT here) AS left_at
    FROM sightings GROUP BY registry, repository, tag
), pushes AS (
    SELECT s.registry, s.repository, s.digest, min(s.started_at) AS tag_pushed
    FROM sightings s
    JOIN elsewhere e ON e.registry = s.registry AND e.repository = s.repository AND e.tag = s.tag
    WHERE s.here AND (e.left_at IS NULL OR s.started_at > e.left_at)
    GROUP BY s.registry, s.repository, s.tag, s.digest
)
SELECT l.link_id, max(p.tag_pushed) AS tag_pushed_at
FROM pushes p
JOIN _ra_links l ON l.registry = p.registry AND l.repository = p.repository AND l.digest = p.digest
JOIN _ra_repos_all r ON r.rkey = l.rkey
WHERE l.tags IS NOT NULL AND p.tag_pushed > r.first_look
GROUP BY l.link_id;


-- name: no_tag_pushes
-- No policy of the plan dates images by their tags' pushes: the scan of every tag sighting is skipped.
CREATE OR REPLACE TEMP TABLE _ra_tag_push (link_id BIGINT, tag_pushed_at TIMESTAMP);


-- name: referrer_links
-- The built-in rule "referrers of live images are kept" (docs/supply-chain.md): every link the latest
-- snapshot reaches as a referrer (through its cosign or fallback tag or a subject field) or that is a fallback
-- tag's index, per subject, and whether that subject is still held in the repository. Such a link is no image
-- the policies rank or decide about; one whose every subject is gone is a candidate of the built-in rule.
CREATE OR REPLACE TEMP TABLE _ra_referrer_links AS
WITH linked AS (
    SELECT l.link_id, l.rkey, l.registry, l.repository, rl.subject_digest
    FROM _ra_links l
    JOIN _ra_snap p ON p.registry = l.registry
    JOIN referrer_links rl ON rl.snapshot_id = p.snapshot_id AND rl.registry = l.registry
                          AND rl.repository = l.repository AND rl.referrer_digest = l.digest AND rl.via <> 'api'
    UNION
    SELECT link_id, rkey, registry, repository, 'sha256:' || substr(tag, 8)
    FROM (SELECT link_id, rkey, registry, repository, unnest(tags) AS tag FROM _ra_links WHERE tags IS NOT NULL)
    WHERE regexp_full_match(tag, 'sha256-[0-9a-f]{64}')
)
SELECT k.link_id, k.rkey, k.subject_digest,
       EXISTS (SELECT 1 FROM snapshot_manifests s JOIN _ra_snap p ON p.snapshot_id = s.snapshot_id
               WHERE s.registry = k.registry AND s.repository = k.repository AND s.digest = k.subject_digest) AS live
FROM linked k;


-- name: images
-- The images policies decide about: tagged links of the latest snapshot and untagged
-- revisions, with push time (and its source), size and whether a workload runs them.
-- pushed_at is the image's own push (ECR's imagePushedAt, Artifact Registry's upload time);
-- last_pushed_at raises it to its tags' pushes (Harbor's push time), with last_pushed_source.
CREATE OR REPLACE TEMP TABLE _ra_images AS
WITH live AS (
    SELECT link_id FROM _ra_links WHERE tags IS NOT NULL
    UNION
    SELECT c.child_id FROM _ra_links l JOIN _ra_children c ON c.parent_id = l.link_id WHERE l.tags IS NOT NULL
), roots AS (
    SELECT * FROM _ra_links WHERE tags IS NOT NULL
    UNION ALL
    -- Untagged revisions: reached once, not now, although the latest snapshot read the repository completely.
    -- (columns named rather than u.* REPLACE (...): the same statement runs on Spark, fleet/spark_retention.py)
    SELECT u.link_id, u.registry, u.repository, u.digest, u.first_seen, u.last_seen, []::VARCHAR[] AS tags,
           u.mkey, u.rkey
    FROM _ra_links u
    JOIN _ra_repos_all r ON r.rkey = u.rkey AND r.status = 'ok'
    ANTI JOIN live v ON v.link_id = u.link_id
    WHERE u.tags IS NULL
), facts AS (
    SELECT m.manifest_key AS mkey, m.kind, m.artifact_type, m.created, m.total_size
    FROM manifests m WHERE m.registry IN (SELECT registry FROM _ra_snap)
), joined AS (
    SELECT l.link_id, l.registry, l.repository, l.digest, l.mkey, l.rkey, l.tags, m.kind, m.artifact_type,
           m.created, coalesce(m.total_size, 0) AS size, l.first_seen, l.last_seen,
           -- The first look at a repository cannot tell when older images were pushed: use created.
           (l.first_seen <= r.first_look AND m.created IS NOT NULL AND m.created <= l.first_seen) AS from_created,
           s.as_of, coalesce(r.status, 'absent') AS repository_status, r.namespace, r.repo_order,
           dp.digest IS NOT NULL AS deployed, tp.tag_pushed_at, rr.link_id IS NOT NULL AS referrer
    FROM roots l
    JOIN _ra_snap s ON s.registry = l.registry
    LEFT JOIN facts m ON m.mkey = l.mkey
    LEFT JOIN _ra_repos_all r ON r.rkey = l.rkey
    LEFT JOIN _ra_deployed dp
        ON dp.registry = l.registry AND dp.repository = l.repository AND dp.digest = l.digest
    LEFT JOIN _ra_tag_push tp ON tp.link_id = l.link_id
    LEFT JOIN (SELECT DISTINCT link_id FROM _ra_referrer_links) rr ON rr.link_id = l.link_id
), dated AS (
    SELECT *, CASE WHEN from_created THEN created ELSE first_seen END AS pushed_at,
           CASE WHEN from_created THEN 'created' ELSE 'first_seen' END AS pushed_source
    FROM joined
)
SELECT link_id, registry, repository, coalesce(namespace, split_part(repository, '/', 1)) AS namespace, digest,
       mkey, rkey, tags, len(tags) > 0 AS tagged, kind, artifact_type, created, size, first_seen,
       CASE WHEN len(tags) = 0 THEN last_seen END AS last_tagged,
       pushed_at, pushed_source,
       CASE WHEN tag_pushed_at > pushed_at THEN tag_pushed_at ELSE pushed_at END AS last_pushed_at,
       CASE WHEN tag_pushed_at > pushed_at THEN 'tag_first_seen' ELSE pushed_source END AS last_pushed_source,
       coalesce(created, pushed_at) AS created_or_pushed,
       as_of, repository_status, repository_status = 'ok' AND NOT referrer AS eligible, deployed, repo_order,
       referrer
FROM dated;


-- name: manifest_links
-- How many links (in any repository) each manifest has.
CREATE OR REPLACE TEMP TABLE _ra_mlinks AS
SELECT mkey, count(*) AS links FROM _ra_links GROUP BY mkey;


-- name: shared_refs
-- References per blob come from manifests some link reached (blob_refs, counted at commit): a
-- manifest no snapshot reached (a partial run's leftovers) is no revision of any repository.
-- Most blobs have a single manifest holding them and go when it goes: their bytes are kept
-- summed per manifest (manifest_sole_bytes, keyed by mkey); only the blobs several manifests
-- hold are counted reference by reference (_ra_shared_refs), where a manifest naming a blob
-- twice counts twice on both sides of the "every reference is gone" test.
CREATE OR REPLACE TEMP TABLE _ra_shared_refs AS
SELECT blob_key AS bkey, refs, size
FROM blob_refs WHERE lo_manifest < hi_manifest AND registry IN (SELECT registry FROM _ra_snap);


-- name: dangling_referrers
-- The built-in rule's candidates for policy $policy (rule -2): referrers whose image is gone, in the
-- repositories of the plan and the policy's scope (_ra_repos) that the latest snapshot read completely.
INSERT INTO _ra_cand
SELECT $policy, i.link_id, -2
FROM _ra_images i
JOIN (SELECT link_id FROM _ra_referrer_links GROUP BY link_id HAVING NOT bool_or(live)) r ON r.link_id = i.link_id
JOIN _ra_repos rp ON rp.rkey = i.rkey AND rp.in_plan AND rp.in_scope
WHERE i.repository_status = 'ok' AND NOT i.deployed;


-- name: candidates_table
-- The candidates of every policy: compiler.py's query of each policy inserts its rows.
CREATE OR REPLACE TEMP TABLE _ra_cand (policy INTEGER, link_id BIGINT, rule_index INTEGER);


-- name: referrers
-- The referrers of each policy's candidates (_ra_referrer_links: their cosign or fallback tags, their subject
-- fields, the fallback tag's index), in the candidate's repository: they are deleted with their image.
-- subject_id is the candidate they go with.
CREATE OR REPLACE TEMP TABLE _ra_referrers AS
WITH c AS (
    SELECT DISTINCT policy, link_id FROM _ra_cand
)
SELECT DISTINCT c.policy, c.link_id AS subject_id, r.link_id
FROM c
JOIN _ra_links s ON s.link_id = c.link_id
JOIN _ra_referrer_links r ON r.rkey = s.rkey AND r.subject_digest = s.digest
ANTI JOIN c AS self ON self.policy = c.policy AND self.link_id = r.link_id;


-- name: deleted
-- The links each policy deletes: its candidates, the index children that die with them, and their referrers.
CREATE OR REPLACE TEMP TABLE _ra_deleted AS
WITH c AS (
    SELECT DISTINCT policy, link_id FROM _ra_cand
), kids AS (
    SELECT DISTINCT c.policy, ch.child_id AS link_id FROM c JOIN _ra_children ch ON ch.parent_id = c.link_id
), free_kids AS (
    -- A child dies with its index only when every index holding it in that repository dies too.
    SELECT k.policy, k.link_id
    FROM kids k
    JOIN _ra_children p ON p.child_id = k.link_id
    LEFT JOIN c cp ON cp.policy = k.policy AND cp.link_id = p.parent_id
    GROUP BY k.policy, k.link_id
    HAVING count(*) = count(cp.link_id)
), deleted AS (
    SELECT policy, link_id, 'image' AS role FROM c
    UNION ALL
    -- A child that is an image of its own (tagged, or an untagged revision) is decided by the policy, not here.
    SELECT f.policy, f.link_id, 'index child' AS role FROM free_kids f ANTI JOIN _ra_images i ON i.link_id = f.link_id
    UNION ALL
    SELECT DISTINCT r.policy, r.link_id, 'referrer' FROM _ra_referrers r
    ANTI JOIN free_kids f ON f.policy = r.policy AND f.link_id = r.link_id
)
SELECT d.policy, d.link_id, d.role, l.mkey, l.rkey
FROM deleted d JOIN _ra_links l ON l.link_id = d.link_id;


-- name: gone
-- Gone: every link of the manifest, in every repository, is deleted.
CREATE OR REPLACE TEMP TABLE _ra_gone AS
SELECT d.policy, d.mkey
FROM (SELECT policy, mkey, count(*) AS n FROM _ra_deleted GROUP BY policy, mkey) d
JOIN _ra_mlinks m ON m.mkey = d.mkey
WHERE d.n = m.links;


-- name: gone_blobs
-- The shared blobs of gone manifests.
CREATE OR REPLACE TEMP TABLE _ra_gone_blobs AS
SELECT g.policy, g.mkey, b.blob_key AS bkey, b.size
FROM manifest_blob_keys b
SEMI JOIN _ra_shared_refs r ON r.bkey = b.blob_key
JOIN _ra_gone g ON g.mkey = b.manifest_key;


-- name: freed
-- Freed: every reference to the blob belongs to a gone manifest. The blobs a gone manifest
-- alone holds go as one bundle (bkey -mkey; keys are positive): every total below treats it as
-- one blob, which is exact because all of its blobs have the same holders.
CREATE OR REPLACE TEMP TABLE _ra_freed AS
SELECT g.policy, -g.mkey AS bkey, s.bytes AS size
FROM _ra_gone g JOIN manifest_sole_bytes s ON s.manifest_key = g.mkey
UNION ALL
SELECT x.policy, x.bkey, x.size
FROM (SELECT policy, bkey, any_value(size) AS size, count(*) AS n FROM _ra_gone_blobs GROUP BY policy, bkey) x
JOIN _ra_shared_refs r ON r.bkey = x.bkey
WHERE x.n = r.refs;


-- name: freed_links
-- Which deleted links reference each freed blob: for the per-group and per-candidate shares.
CREATE OR REPLACE TEMP TABLE _ra_freed_links AS
SELECT d.policy, d.link_id, d.rkey, -d.mkey AS bkey, s.bytes AS size
FROM _ra_deleted d
SEMI JOIN _ra_gone g ON g.policy = d.policy AND g.mkey = d.mkey
JOIN manifest_sole_bytes s ON s.manifest_key = d.mkey
UNION ALL
SELECT DISTINCT d.policy, d.link_id, d.rkey, f.bkey, f.size
FROM _ra_gone_blobs gb
JOIN _ra_freed f ON f.policy = gb.policy AND f.bkey = gb.bkey
JOIN _ra_deleted d ON d.policy = gb.policy AND d.mkey = gb.mkey;


-- name: summary
-- One row per policy: the plan's totals (the reclaimable bytes of the freed blobs, each once).
-- Reads _ra_repos_in_plan, the repositories the plan's --repo globs keep.
WITH cands AS (
    SELECT c.policy, count(*) AS candidate_images, count(*) FILTER (WHERE NOT c.tagged) AS untagged_images,
           sum(len(c.tags))::BIGINT AS candidate_tags, count(*) FILTER (WHERE c.deployed) AS deployed_candidates,
           sum(c.size)::BIGINT AS logical_bytes,
           count(*) FILTER (WHERE source = 'first_seen') AS pushed_from_first_seen,
           count(*) FILTER (WHERE source = 'created') AS pushed_from_created,
           count(*) FILTER (WHERE source = 'tag_first_seen') AS pushed_from_tag
    FROM (SELECT c.policy, i.tagged, i.tags, i.deployed, i.size,
                 CASE WHEN pn.tag_push THEN i.last_pushed_source ELSE i.pushed_source END AS source
          FROM _ra_cand c JOIN _ra_images i ON i.link_id = c.link_id JOIN _ra_policy_names pn USING (policy)) c
    GROUP BY c.policy
), links AS (SELECT policy, count(*) AS candidate_manifests FROM _ra_deleted GROUP BY policy),
freed AS (SELECT policy, sum(size)::BIGINT AS reclaimable_bytes FROM _ra_freed GROUP BY policy)
SELECT pn.name AS policy, coalesce(c.candidate_images, 0) AS candidate_images,
       coalesce(c.untagged_images, 0) AS untagged_images, coalesce(c.candidate_tags, 0) AS candidate_tags,
       coalesce(l.candidate_manifests, 0) AS candidate_manifests,
       coalesce(c.deployed_candidates, 0) AS deployed_candidates, coalesce(c.logical_bytes, 0) AS logical_bytes,
       coalesce(f.reclaimable_bytes, 0) + (
           -- From a storage snapshot: the blobs nothing references already, which the same GC frees too.
           SELECT coalesce(sum(g.size), 0)::BIGINT FROM _ra_snap p, gc_blobs(p.snapshot_id) g
           WHERE p.source_kind = 'registry-storage' AND g.freed) AS reclaimable_bytes,
       (SELECT coalesce(sum(size), 0)::BIGINT FROM blob_refs WHERE registry IN (SELECT registry FROM _ra_snap))
           AS stored_bytes,
       (SELECT count(*) FROM _ra_images i JOIN _ra_repos_in_plan r ON r.rkey = i.rkey WHERE i.eligible)
           AS images_evaluated,
       coalesce(c.pushed_from_first_seen, 0) AS pushed_from_first_seen,
       coalesce(c.pushed_from_created, 0) AS pushed_from_created,
       coalesce(c.pushed_from_tag, 0) AS pushed_from_tag
FROM _ra_policy_names pn
LEFT JOIN cands c USING (policy) LEFT JOIN links l USING (policy) LEFT JOIN freed f USING (policy)
ORDER BY pn.policy;


-- name: candidates
-- Per image to delete: the rule that expired it, push time and its source, size, and the
-- freed bytes no other candidate of the plan references.
WITH units AS (
    -- Each deleted link belongs to the candidates it dies with: itself, or the indexes holding a child.
    SELECT policy, link_id AS unit, link_id FROM _ra_deleted WHERE role = 'image'
    UNION ALL
    SELECT d.policy, p.parent_id, d.link_id
    FROM _ra_deleted d
    JOIN _ra_children p ON p.child_id = d.link_id
    SEMI JOIN _ra_cand c ON c.policy = d.policy AND c.link_id = p.parent_id
    WHERE d.role = 'index child'
    UNION ALL
    SELECT policy, subject_id, link_id FROM _ra_referrers
), unit_freed AS (
    SELECT DISTINCT u.policy, u.unit, fl.bkey, fl.size
    FROM units u JOIN _ra_freed_links fl ON fl.policy = u.policy AND fl.link_id = u.link_id
), shared AS (
    -- Freed blobs more than one candidate holds (a grouping, not a window: no sort of every freed blob).
    SELECT policy, bkey FROM unit_freed GROUP BY policy, bkey HAVING count(*) > 1
), alone AS (
    SELECT policy, unit, sum(size)::BIGINT AS alone_bytes
    FROM unit_freed u ANTI JOIN shared s ON s.policy = u.policy AND s.bkey = u.bkey
    GROUP BY policy, unit
), kids AS (
    SELECT u.policy, u.unit, list(l.digest ORDER BY l.digest) AS children
    FROM units u JOIN _ra_links l ON l.link_id = u.link_id
    WHERE u.link_id <> u.unit
      AND NOT EXISTS (SELECT 1 FROM _ra_referrers r WHERE r.policy = u.policy AND r.link_id = u.link_id)
    GROUP BY ALL
), refs AS (
    SELECT r.policy, r.subject_id AS unit, list(DISTINCT l.digest ORDER BY l.digest) AS referrers
    FROM _ra_referrers r JOIN _ra_links l ON l.link_id = r.link_id GROUP BY ALL
)
SELECT pn.name AS policy, i.registry, i.repository, i.namespace, i.digest, i.tags, NOT i.tagged AS untagged,
       i.kind, i.artifact_type, i.size, coalesce(a.alone_bytes, 0) AS reclaimable_alone_bytes,
       -- The push time the policy's format defines (see the images step).
       i.created, CASE WHEN pn.tag_push THEN i.last_pushed_at ELSE i.pushed_at END AS pushed_at,
       CASE WHEN pn.tag_push THEN i.last_pushed_source ELSE i.pushed_source END AS pushed_source,
       i.last_tagged, i.deployed, rl.label AS rule,
       coalesce(k.children, []::VARCHAR[]) AS children, coalesce(rf.referrers, []::VARCHAR[]) AS referrers
FROM _ra_cand c
JOIN _ra_policy_names pn ON pn.policy = c.policy
JOIN _ra_rule_labels rl ON rl.policy = c.policy AND rl.rule_index = coalesce(c.rule_index, -1)
JOIN _ra_images i ON i.link_id = c.link_id
LEFT JOIN alone a ON a.policy = c.policy AND a.unit = c.link_id
LEFT JOIN kids k ON k.policy = c.policy AND k.unit = c.link_id
LEFT JOIN refs rf ON rf.policy = c.policy AND rf.unit = c.link_id
ORDER BY c.policy, i.repo_order, CASE WHEN pn.tag_push THEN i.last_pushed_at ELSE i.pushed_at END, i.digest;


-- name: deletions
-- Per manifest link to delete: the images and their index children.
SELECT pn.name AS policy, l.registry, l.repository, l.digest, d.role
FROM _ra_deleted d
JOIN _ra_policy_names pn ON pn.policy = d.policy
JOIN _ra_links l ON l.link_id = d.link_id
JOIN _ra_repos_all r ON r.rkey = l.rkey
ORDER BY d.policy, r.repo_order, d.role DESC, l.digest;


-- name: group_totals
-- Totals per $group ('namespace' or 'repository', the column grp): reclaimable_bytes counts
-- a freed blob in every group that deletes a link to it, reclaimable_alone_bytes only when
-- that group alone does.
WITH names AS (
    SELECT rkey, registry, CASE WHEN $group = 'namespace' THEN namespace ELSE repository END AS grp
    FROM _ra_repos_all
), cands AS (
    SELECT c.policy, i.rkey, count(*) AS candidate_images, count(*) FILTER (WHERE NOT i.tagged) AS untagged_images,
           sum(len(i.tags))::BIGINT AS candidate_tags, sum(i.size)::BIGINT AS logical_bytes
    FROM _ra_cand c JOIN _ra_images i ON i.link_id = c.link_id
    GROUP BY c.policy, i.rkey
), links AS (
    SELECT policy, rkey, count(*) AS candidate_manifests FROM _ra_deleted GROUP BY policy, rkey
), per_repo AS (
    SELECT c.policy, n.registry, n.grp, c.candidate_images, c.untagged_images, c.candidate_tags, c.logical_bytes,
           coalesce(l.candidate_manifests, 0) AS candidate_manifests
    FROM cands c JOIN names n ON n.rkey = c.rkey
    LEFT JOIN links l ON l.policy = c.policy AND l.rkey = c.rkey
), totals AS (
    SELECT policy, registry, grp, sum(candidate_images)::BIGINT AS candidate_images,
           sum(untagged_images)::BIGINT AS untagged_images, sum(candidate_tags)::BIGINT AS candidate_tags,
           sum(candidate_manifests)::BIGINT AS candidate_manifests, sum(logical_bytes)::BIGINT AS logical_bytes
    FROM per_repo GROUP BY policy, registry, grp
), freed AS (
    SELECT DISTINCT fl.policy, n.registry, n.grp, fl.bkey, fl.size
    FROM _ra_freed_links fl JOIN names n ON n.rkey = fl.rkey
), shared AS (
    SELECT policy, bkey FROM freed GROUP BY policy, bkey HAVING count(*) > 1
), bytes AS (
    SELECT f.policy, f.registry, f.grp, sum(f.size)::BIGINT AS reclaimable_bytes,
           coalesce(sum(f.size) FILTER (WHERE s.bkey IS NULL), 0)::BIGINT AS reclaimable_alone_bytes
    FROM freed f LEFT JOIN shared s ON s.policy = f.policy AND s.bkey = f.bkey
    GROUP BY f.policy, f.registry, f.grp
)
SELECT pn.name AS policy, t.registry, t.grp, t.candidate_images, t.untagged_images,
       t.candidate_tags, t.candidate_manifests, t.logical_bytes,
       coalesce(b.reclaimable_bytes, 0) AS reclaimable_bytes,
       coalesce(b.reclaimable_alone_bytes, 0) AS reclaimable_alone_bytes
FROM totals t
JOIN _ra_policy_names pn ON pn.policy = t.policy
LEFT JOIN bytes b ON b.policy = t.policy AND b.registry = t.registry AND b.grp = t.grp
ORDER BY t.policy, reclaimable_bytes DESC, t.registry, t.grp;


-- name: freed_blobs
-- Every blob garbage collection would remove, with its size.
WITH freed AS (
    -- A bundle (bkey -mkey) is the blobs that manifest alone holds.
    SELECT f.policy, r.blob_key AS bkey, r.size
    FROM _ra_freed f JOIN blob_refs r ON r.lo_manifest = -f.bkey AND r.hi_manifest = -f.bkey
    WHERE f.bkey < 0
    UNION ALL
    SELECT policy, bkey, size FROM _ra_freed WHERE bkey > 0
)
SELECT pn.name AS policy, k.registry, k.digest AS blob_digest, f.size
FROM freed f JOIN _ra_policy_names pn ON pn.policy = f.policy JOIN digest_keys k ON k.key = f.bkey
ORDER BY f.policy, f.size DESC, blob_digest;


-- name: no_freed_blobs
-- The freed_blobs columns without rows, for a plan made with blobs=False.
SELECT NULL::VARCHAR AS policy, NULL::VARCHAR AS registry, NULL::VARCHAR AS blob_digest, NULL::BIGINT AS size
WHERE false;


-- name: repositories_not_read
-- Repositories the latest snapshot did not read completely, per registry and
-- status, with up to three names: the plan's warnings.
SELECT u.registry, coalesce(r.status, 'absent') AS status, count(*) AS n,
       list(u.repository ORDER BY u.repository)[:3]
FROM (SELECT DISTINCT rkey FROM _ra_links) k
JOIN _ra_repos_all u ON u.rkey = k.rkey
-- _ra_snap holds one row per registry; a join, not a correlated subquery in the join condition (Spark has none)
LEFT JOIN _ra_snap s ON s.registry = u.registry
LEFT JOIN repositories r ON r.snapshot_id = s.snapshot_id AND r.registry = u.registry AND r.repository = u.repository
WHERE r.status IS DISTINCT FROM 'ok'
GROUP BY ALL ORDER BY ALL;


-- name: event_columns
-- Registry events (issue 18): the last pull by a container runtime, for pull-based rules.
ALTER TABLE _ra_images ADD COLUMN last_pulled_at TIMESTAMP;


-- name: event_push_times
-- Where the registry reported the push, its time replaces first-seen or created (pushed_source 'event').
-- Harbor's later-of-tag-pushes time keeps a tag sighting only when it is later than the reported push.
UPDATE _ra_images i
SET pushed_at = p.pushed_at, pushed_source = 'event', created_or_pushed = coalesce(i.created, p.pushed_at),
    last_pushed_at = CASE WHEN i.last_pushed_source = 'tag_first_seen' AND i.last_pushed_at > p.pushed_at
                          THEN i.last_pushed_at ELSE p.pushed_at END,
    last_pushed_source = CASE WHEN i.last_pushed_source = 'tag_first_seen' AND i.last_pushed_at > p.pushed_at
                              THEN 'tag_first_seen' ELSE 'event' END
FROM event_push_times p
WHERE p.registry = i.registry AND p.repository = i.repository AND p.digest = i.digest AND p.pushed_at <= i.as_of;


-- name: event_last_pulls
-- Pulls by a runtime up to the plan's reference time; a pull that named only a tag (an access-log line)
-- counts for the image carrying that tag.
UPDATE _ra_images i
SET last_pulled_at = p.last_pulled_at
FROM (
    SELECT i.link_id, max(e.occurred_at) AS last_pulled_at
    FROM _ra_images i
    JOIN registry_events e
        ON e.registry = i.registry AND e.repository = i.repository
       AND (e.digest = i.digest OR (e.digest IS NULL AND list_contains(i.tags, e.tag)))
    WHERE e.action = 'pull' AND e.kind = 'manifest' AND e.client_class = 'workload' AND e.occurred_at <= i.as_of
    GROUP BY i.link_id
) p
WHERE p.link_id = i.link_id;


-- name: pull_coverage
-- Per registry of the plan: from when its events are complete, and the oldest push among the images of the
-- repositories in the plan (before that nothing existed to be pulled).
SELECT s.registry, any_value(s.as_of) AS as_of, any_value(c.events_since) AS events_since,
       min(i.pushed_at) AS oldest_push
FROM _ra_snap s
LEFT JOIN event_coverage c ON c.registry = s.registry
LEFT JOIN (SELECT i.* FROM _ra_images i SEMI JOIN _ra_repos_in_plan r ON r.rkey = i.rkey WHERE i.eligible) i
    ON i.registry = s.registry
GROUP BY s.registry
ORDER BY s.registry;
