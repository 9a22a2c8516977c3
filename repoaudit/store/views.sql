-- repoaudit's views and table macros, each in its current definition.
--
-- The tables are made by the numbered files in migrations/, once each. This file is run whole, with
-- CREATE OR REPLACE, after the migrations of a new or upgraded database and whenever its text changes:
-- the store keeps the sha256 of the text the views were last created from (table schema_views) and
-- compares it on every writable open. Change a view here, never in a migration; a view is created when
-- its statement runs, so each comes after the views and macros it reads. A view dropped from this file
-- stays in existing databases until a migration drops it.

-- ---------------------------------------------------------------------------------------------------------
-- Snapshots.

-- Each registry's newest snapshot that holds data (complete, or partial with some repositories failed).
CREATE OR REPLACE VIEW latest_snapshot AS
SELECT * EXCLUDE (rn) FROM (
    SELECT s.*, row_number() OVER (PARTITION BY registry ORDER BY started_at DESC, snapshot_id DESC) AS rn
    FROM snapshots s
    WHERE status IN ('complete', 'partial')
) WHERE rn = 1;

CREATE OR REPLACE VIEW images AS
SELECT t.registry, t.repository, t.tag, t.digest,
       m.media_type, m.kind, m.artifact_type,
       m.created, m.total_size, m.architecture, m.os,
       date_diff('day', m.created, ls.started_at) AS age_days,
       t.snapshot_id
FROM tags t
JOIN latest_snapshot ls ON ls.snapshot_id = t.snapshot_id
LEFT JOIN manifests m ON m.registry = t.registry AND m.digest = t.digest;

-- Every manifest a snapshot can reach: the tagged ones and the children of tagged indexes.
CREATE OR REPLACE VIEW snapshot_manifests AS
SELECT DISTINCT t.snapshot_id, t.registry, t.repository, t.digest, 'tag' AS via
FROM tags t
UNION ALL
SELECT DISTINCT t.snapshot_id, t.registry, t.repository, c.child_digest AS digest, 'index' AS via
FROM tags t
JOIN manifest_children c ON c.registry = t.registry AND c.index_digest = t.digest;

-- The blobs each manifest holds on to in a registry's blob store: its own bytes, its config, its layers.
CREATE OR REPLACE VIEW manifest_blobs AS
SELECT registry, digest AS manifest_digest, digest AS blob_digest, manifest_size AS size, 'manifest' AS role
FROM manifests
UNION ALL
SELECT registry, digest, config_digest, config_size, 'config'
FROM manifests WHERE config_digest IS NOT NULL
UNION ALL
SELECT registry, manifest_digest, digest, size, 'layer'
FROM layers;

-- manifest_blobs by key: the blobs each manifest holds (its own bytes, its config, its layers), a row per reference.
CREATE OR REPLACE VIEW manifest_blob_keys AS
SELECT registry, manifest_key, manifest_key AS blob_key, manifest_size AS size, 'manifest' AS role
FROM manifests
UNION ALL
SELECT registry, manifest_key, config_key, config_size, 'config'
FROM manifests WHERE config_digest IS NOT NULL
UNION ALL
SELECT registry, manifest_key, blob_key, size, 'layer'
FROM layers;

-- What each registry's latest snapshot reaches, per repository, with keys: read from the kept links, since a
-- link the latest snapshot reached has it as last_snapshot.
CREATE OR REPLACE VIEW latest_manifests AS
SELECT registry, repository, digest, manifest_key, repository_key
FROM repository_links
WHERE last_snapshot IN (SELECT snapshot_id FROM latest_snapshot);

-- ---------------------------------------------------------------------------------------------------------
-- History. It is read from the snapshots that hold data (complete or partial). A
-- repository is only taken as *observed* in a snapshot when it has a repositories
-- row there, and a tag's absence only counts where that row says 'ok' (every tag
-- listed and resolved): a repository that failed, was filtered out or belongs to
-- another shard never makes its tags look deleted.

-- Each registry's snapshots that hold data, numbered in order (seq). History works on
-- these small integers and maps them back to times and ids at the end: aggregating
-- and ordering integers is several times cheaper than timestamps with id tie-breaks.
CREATE OR REPLACE VIEW snapshot_sequence AS
SELECT snapshot_id, registry, started_at,
       row_number() OVER (PARTITION BY registry ORDER BY started_at, snapshot_id) AS seq
FROM snapshots
WHERE status IN ('complete', 'partial');

-- The snapshots in which each repository was seen whole (status 'ok'): only there
-- does a missing tag mean the tag was gone.
CREATE OR REPLACE VIEW complete_repository_looks AS
SELECT r.registry, r.repository, q.seq, q.snapshot_id, q.started_at
FROM repositories r
JOIN snapshot_sequence q ON q.snapshot_id = r.snapshot_id
WHERE r.status = 'ok';

-- One row per stretch of consecutive sightings of a tag at one digest (a tag that
-- goes A -> B -> A has three), with the stretch before it: previous_digest, when
-- that was last seen, and recreated (the tag was missing from a complete look at
-- its repository in between: deleted and pushed again, not moved in place).
-- Most tags never change digest, so one aggregate settles them and only the tags
-- that did are ordered (a window over every sighting is several times slower).
-- tag_stretches_of(registry, repository, tag) is the same for one registry,
-- repository or tag (NULL: all), filtered where tags are read: a view's filter
-- with a bound parameter does not reach through the aggregates.
CREATE OR REPLACE MACRO tag_stretches_of(in_registry, in_repository, in_tag) AS TABLE
-- Not materialized: each use scans tags again, which is cheaper than buffering every sighting.
WITH sightings AS NOT MATERIALIZED (
    SELECT t.registry, t.repository, t.tag, t.digest, q.seq
    FROM tags t
    JOIN snapshot_sequence q ON q.snapshot_id = t.snapshot_id
    WHERE (in_registry IS NULL OR t.registry = in_registry)
      AND (in_repository IS NULL OR t.repository = in_repository)
      AND (in_tag IS NULL OR t.tag = in_tag)
), per_tag AS (
    SELECT registry, repository, tag, min(digest) AS digest, min(digest) <> max(digest) AS changed,
           min(seq) AS first_seq, max(seq) AS last_seq, count(*) AS snapshots_seen
    FROM sightings
    GROUP BY registry, repository, tag
), changing AS (
    SELECT s.*, (lag(s.digest) OVER w IS DISTINCT FROM s.digest)::INTEGER AS starts_stretch
    FROM sightings s
    SEMI JOIN per_tag p ON p.registry = s.registry AND p.repository = s.repository AND p.tag = s.tag AND p.changed
    WINDOW w AS (PARTITION BY s.registry, s.repository, s.tag ORDER BY s.seq)
), numbered AS (
    SELECT *, sum(starts_stretch) OVER (PARTITION BY registry, repository, tag ORDER BY seq
                                        ROWS UNBOUNDED PRECEDING) AS stretch
    FROM changing
), stretches AS (
    SELECT registry, repository, tag, any_value(digest) AS digest,
           min(seq) AS first_seq, max(seq) AS last_seq, count(*) AS snapshots_seen
    FROM numbered
    GROUP BY registry, repository, tag, stretch
), chained AS (
    SELECT *, lag(digest) OVER w AS previous_digest, lag(last_seq) OVER w AS previous_seq
    FROM stretches
    WINDOW w AS (PARTITION BY registry, repository, tag ORDER BY first_seq)
), moves AS (
    SELECT c.*, coalesce(cl.seq < c.first_seq, false) AS recreated
    FROM (SELECT * FROM chained WHERE previous_digest IS NOT NULL) c
    ASOF LEFT JOIN complete_repository_looks cl
        ON cl.registry = c.registry AND cl.repository = c.repository AND cl.seq > c.previous_seq
), all_stretches AS (
    SELECT registry, repository, tag, digest, first_seq, last_seq, snapshots_seen,
           NULL::VARCHAR AS previous_digest, NULL::BIGINT AS previous_seq, NULL::BOOLEAN AS recreated
    FROM per_tag WHERE NOT changed
    UNION ALL
    SELECT registry, repository, tag, digest, first_seq, last_seq, snapshots_seen, NULL, NULL, NULL
    FROM chained WHERE previous_digest IS NULL
    UNION ALL
    SELECT registry, repository, tag, digest, first_seq, last_seq, snapshots_seen, previous_digest, previous_seq,
           recreated
    FROM moves
)
SELECT a.registry, a.repository, a.tag, a.digest, f.started_at AS first_seen, l.started_at AS last_seen,
       a.snapshots_seen, f.snapshot_id AS first_snapshot, l.snapshot_id AS last_snapshot,
       a.previous_digest, p.started_at AS previous_seen, p.snapshot_id AS previous_snapshot, a.recreated
FROM all_stretches a
JOIN snapshot_sequence f ON f.registry = a.registry AND f.seq = a.first_seq
JOIN snapshot_sequence l ON l.registry = a.registry AND l.seq = a.last_seq
LEFT JOIN snapshot_sequence p ON p.registry = a.registry AND p.seq = a.previous_seq;

CREATE OR REPLACE VIEW tag_stretches AS SELECT * FROM tag_stretches_of(NULL, NULL, NULL);

-- Sightings skip snapshots where the tag was not seen, so snapshots_seen below the
-- number of snapshots in [first_seen, last_seen] means the tag was missing meanwhile.
CREATE OR REPLACE VIEW tag_history AS
SELECT registry, repository, tag, digest, first_seen, last_seen, snapshots_seen, first_snapshot, last_snapshot
FROM tag_stretches;

-- A tag re-pointed to other content between two of its sightings (a supply-chain
-- signal). moved_after / moved_before bracket the move: the last snapshot that saw
-- from_digest and the first that saw to_digest. rollback: the new content is older
-- (by config created) than what the tag showed before; NULL when either age is
-- unknown. recreated: the tag was absent from a complete look at its repository in
-- between (deleted, then pushed again) rather than moved in place.
-- tag_moves_of(registry, repository): the same for one registry or repository (NULL: all).
CREATE OR REPLACE MACRO tag_moves_of(in_registry, in_repository) AS TABLE
SELECT s.registry, s.repository, s.tag, s.previous_digest AS from_digest, s.digest AS to_digest,
       s.previous_seen AS moved_after, s.first_seen AS moved_before,
       s.previous_snapshot AS from_snapshot, s.first_snapshot AS to_snapshot,
       fm.created AS from_created, tm.created AS to_created,
       tm.created < fm.created AS rollback, s.recreated
FROM tag_stretches_of(in_registry, in_repository, NULL) s
LEFT JOIN manifests fm ON fm.registry = s.registry AND fm.digest = s.previous_digest
LEFT JOIN manifests tm ON tm.registry = s.registry AND tm.digest = s.digest
WHERE s.previous_digest IS NOT NULL;

CREATE OR REPLACE VIEW tag_moves AS SELECT * FROM tag_moves_of(NULL, NULL);

-- The links one snapshot reached (sid), or every snapshot holding data (sid NULL), aggregated: the table
-- repository_links is their fold, kept at commit (repoaudit.store.kept.fold_links).
CREATE OR REPLACE MACRO links_reached(sid) AS TABLE
WITH tagged AS (
    SELECT t.snapshot_id, t.registry, t.repository, t.digest, list(t.tag ORDER BY t.tag) AS tags
    FROM tags t
    WHERE sid IS NULL OR t.snapshot_id = sid
    GROUP BY t.snapshot_id, t.registry, t.repository, t.digest
), reached AS (
    SELECT snapshot_id, registry, repository, digest, tags FROM tagged
    UNION ALL
    -- A child also tagged itself keeps its own tags: max() of a list and NULL is the list.
    SELECT DISTINCT s.snapshot_id, s.registry, s.repository, c.child_digest, NULL::VARCHAR[]
    FROM tagged s JOIN manifest_children c ON c.registry = s.registry AND c.index_digest = s.digest
    UNION ALL
    -- A storage snapshot (issue 19) reaches every revision the repository holds, tagged or not.
    SELECT snapshot_id, registry, repository, digest, NULL::VARCHAR[]
    FROM storage_revisions
    WHERE (sid IS NULL OR snapshot_id = sid) AND linked AND blob_present AND NOT tagged
), per_snapshot AS (
    SELECT snapshot_id, registry, repository, digest, max(tags) AS tags
    FROM reached GROUP BY snapshot_id, registry, repository, digest
)
SELECT r.registry, r.repository, r.digest,
       min(s.started_at) AS first_seen, arg_min(s.snapshot_id, (s.started_at, s.snapshot_id)) AS first_snapshot,
       max(s.started_at) AS last_seen, arg_max(s.snapshot_id, (s.started_at, s.snapshot_id)) AS last_snapshot,
       arg_max_null(r.tags, (s.started_at, s.snapshot_id)) AS tags  -- NULL tags count: arg_max skips them
FROM per_snapshot r
JOIN snapshots s ON s.snapshot_id = r.snapshot_id
WHERE s.status IN ('complete', 'partial')
GROUP BY r.registry, r.repository, r.digest;

-- Per repository and manifest: when a tag first and last reached it (directly, or as
-- a child of a tagged index), and untagged_since, the first complete look at the
-- repository after that where nothing reached it any more (NULL while it is still
-- reached, or when the repository has not been seen complete since). An untagged
-- manifest keeps its blobs in the registry until it is deleted and garbage-collected
-- (the registry's API cannot tell "untagged" from "deleted, not yet collected").
-- Read from the kept links (repository_links) rather than every snapshot's tags.
CREATE OR REPLACE VIEW image_lifecycle AS
WITH lifecycle AS (
    SELECT l.registry, l.repository, l.digest, f.seq AS first_seq, s.seq AS last_seq
    FROM repository_links l
    JOIN snapshot_sequence f ON f.snapshot_id = l.first_snapshot
    JOIN snapshot_sequence s ON s.snapshot_id = l.last_snapshot
), last_look AS (
    SELECT registry, repository, max(seq) AS seq FROM complete_repository_looks GROUP BY ALL
), untagged AS (
    -- Only manifests last reached before their repository's latest complete look can be untagged.
    SELECT l.registry, l.repository, l.digest, cl.seq AS untagged_seq
    FROM (SELECT l.* FROM lifecycle l
          JOIN last_look ll ON ll.registry = l.registry AND ll.repository = l.repository AND l.last_seq < ll.seq) l
    ASOF JOIN complete_repository_looks cl
        ON cl.registry = l.registry AND cl.repository = l.repository AND cl.seq > l.last_seq
)
SELECT l.registry, l.repository, l.digest, f.started_at AS first_seen, s.started_at AS last_seen_tagged,
       x.started_at AS untagged_since, s.snapshot_id AS last_tagged_snapshot, x.snapshot_id AS untagged_snapshot
FROM lifecycle l
JOIN snapshot_sequence f ON f.registry = l.registry AND f.seq = l.first_seq
JOIN snapshot_sequence s ON s.registry = l.registry AND s.seq = l.last_seq
LEFT JOIN untagged u ON u.registry = l.registry AND u.repository = l.repository AND u.digest = l.digest
LEFT JOIN snapshot_sequence x ON x.registry = l.registry AND x.seq = u.untagged_seq;

-- ---------------------------------------------------------------------------------------------------------
-- Latest images. Each image of each registry's latest snapshot (reg, or NULL for all) with its tags, push
-- time and rank among the newest of its repository. The push time is as repoaudit.retention defines it:
-- the first snapshot that saw it in its repository (directly or through a tagged index), or its config
-- created when that snapshot was the first look at the repository. A registry's latest images change only
-- when one of its snapshots commits, so the commit stores them in the table latest_images
-- (repoaudit.store.kept.refresh_latest_images); compute_latest_images is the definition.
CREATE OR REPLACE MACRO compute_latest_images(reg) AS TABLE
WITH ls AS (
    SELECT snapshot_id, registry, started_at FROM latest_snapshot WHERE reg IS NULL OR registry = reg
), first_look AS (
    SELECT r.registry, r.repository, min(s.started_at) AS first_look
    FROM repositories r JOIN snapshots s ON s.snapshot_id = r.snapshot_id
    WHERE s.status IN ('complete', 'partial') AND (reg IS NULL OR r.registry = reg)
    GROUP BY r.registry, r.repository
), dated AS (
    SELECT l.registry, l.repository, l.digest, l.tags, ls.started_at AS snapshot_at, l.first_seen, l.manifest_key,
           l.repository_key,
           m.kind, m.artifact_type, m.created, coalesce(m.total_size, 0) AS size,
           (l.first_seen <= fl.first_look AND m.created IS NOT NULL AND m.created <= l.first_seen) AS from_created
    FROM repository_links l
    JOIN ls ON ls.snapshot_id = l.last_snapshot
    LEFT JOIN manifests m ON m.manifest_key = l.manifest_key
    LEFT JOIN first_look fl ON fl.registry = l.registry AND fl.repository = l.repository
    WHERE l.tags IS NOT NULL
)
SELECT * EXCLUDE (from_created),
       CASE WHEN from_created THEN created ELSE first_seen END AS pushed_at,
       CASE WHEN from_created THEN 'created' ELSE 'first_seen' END AS pushed_source,
       -- 1 is the newest image of its repository, by created (first seen when a config has none)
       row_number() OVER (PARTITION BY registry, repository_key
                          ORDER BY coalesce(created, first_seen) DESC, digest DESC) AS newest_rank
FROM dated;

-- The stored latest images of one registry (reg) and team namespace (ns: a repository's first path segment),
-- NULL for all: where the staleness queries start.
CREATE OR REPLACE MACRO latest_image_push(reg, ns) AS TABLE
SELECT * FROM latest_images
WHERE (reg IS NULL OR registry = reg) AND (ns IS NULL OR split_part(repository, '/', 1) = ns);

-- ---------------------------------------------------------------------------------------------------------
-- Scans and workloads. A scan report is stored once with the identity *it* names; which collected
-- manifests it covers is worked out here at query time, so a report ingested before its registry was
-- collected still matches once the registry is.

-- Each cluster's newest pod listing: what runs now.
CREATE OR REPLACE VIEW current_workloads AS
SELECT w.*
FROM workloads w
JOIN (
    SELECT snapshot_id FROM (
        SELECT snapshot_id,
               row_number() OVER (PARTITION BY cluster ORDER BY ingested_at DESC, snapshot_id DESC) AS rn
        FROM workload_snapshots
    ) WHERE rn = 1
) latest ON latest.snapshot_id = w.snapshot_id;

-- Current workloads with the manifest digest each container runs (digest_source says how it
-- was found): the spec or status digest; else the image ID matched to a collected manifest's
-- config (preferring one reachable in the spec's repository, from repository_links: a failed
-- snapshot keeps no tags, so the links hold every reach); else, for containers without a
-- status yet, the digest the tag points at in the registry's latest snapshot. Every risk
-- query starts here.
CREATE OR REPLACE VIEW workload_images AS
WITH by_config AS (
    SELECT * EXCLUDE (rn) FROM (
        SELECT w.snapshot_id, w.namespace, w.pod, w.container, w.init, m.digest,
               row_number() OVER (PARTITION BY w.snapshot_id, w.namespace, w.pod, w.container, w.init
                                  ORDER BY (r.digest IS NOT NULL) DESC, (m.registry = w.registry) DESC NULLS LAST,
                                           m.digest, m.registry) AS rn
        FROM current_workloads w
        JOIN manifests m ON m.config_digest = w.config_digest
        LEFT JOIN repository_links r ON r.registry = m.registry AND r.digest = m.digest
                                    AND r.registry = w.registry AND r.repository = w.repository
        WHERE w.image_digest IS NULL
    ) WHERE rn = 1
), by_tag AS (
    SELECT w.snapshot_id, w.namespace, w.pod, w.container, w.init, t.digest
    FROM current_workloads w
    JOIN tags t ON t.registry = w.registry AND t.repository = w.repository AND t.tag = w.tag
    JOIN latest_snapshot ls ON ls.snapshot_id = t.snapshot_id
    WHERE w.image_digest IS NULL AND w.config_digest IS NULL
)
SELECT w.*,
       coalesce(w.image_digest, c.digest, t.digest) AS digest,
       CASE WHEN w.image_digest IS NOT NULL THEN w.resolved_by
            WHEN c.digest IS NOT NULL THEN 'image-id'
            WHEN t.digest IS NOT NULL THEN 'registry-tag'
            WHEN w.config_digest IS NOT NULL THEN 'image-id-unmatched'
            ELSE 'unresolved' END AS digest_source
FROM current_workloads w
LEFT JOIN by_config c ON c.snapshot_id = w.snapshot_id AND c.namespace IS NOT DISTINCT FROM w.namespace
                     AND c.pod IS NOT DISTINCT FROM w.pod AND c.container IS NOT DISTINCT FROM w.container
                     AND c.init = w.init
LEFT JOIN by_tag t ON t.snapshot_id = w.snapshot_id AND t.namespace IS NOT DISTINCT FROM w.namespace
                  AND t.pod IS NOT DISTINCT FROM w.pod AND t.container IS NOT DISTINCT FROM w.container
                  AND t.init = w.init;

-- What runs now, per image: digest is the manifest digest (NULL when only the image ID is
-- known, which is then in image_id). Pods are counted across clusters' latest listings;
-- running_pods only those in phase Running.
CREATE OR REPLACE VIEW deployed_images AS
SELECT registry, repository, digest,
       CASE WHEN digest IS NULL THEN config_digest END AS image_id,
       min(digest_source) AS digest_source,
       string_agg(DISTINCT image_ref, ', ' ORDER BY image_ref) AS image_refs,
       count(DISTINCT cluster) AS clusters,
       count(DISTINCT (cluster, namespace)) AS namespaces,
       count(DISTINCT (cluster, namespace, pod)) AS pods,
       count(DISTINCT (cluster, namespace, pod)) FILTER (WHERE phase = 'Running') AS running_pods,
       count(*) AS containers
FROM workload_images
GROUP BY ALL;

-- What runs now, per repository and manifest digest: a workload that runs a platform child of an index
-- runs the index too. Staleness and retention never count a deployed image as a candidate.
CREATE OR REPLACE VIEW deployed_manifests AS
WITH direct AS (
    SELECT DISTINCT registry, repository, digest FROM deployed_images WHERE digest IS NOT NULL
)
SELECT registry, repository, digest FROM direct
UNION
SELECT d.registry, d.repository, c.index_digest
FROM direct d JOIN manifest_children c ON c.registry = d.registry AND c.child_digest = d.digest;

-- Which image each scan covers. A digest names content, so a scan of docker.io/x@D also
-- covers a mirror's copy of D. matched_by: digest (the report names it), image-id (a
-- collected manifest's config is the report's image ID; a report known only by image ID
-- also covers that ID itself, for pods that report nothing else), via-child (an index one
-- of whose platform manifests was scanned), via-index (a platform manifest of a scanned index).
CREATE OR REPLACE VIEW scan_coverage AS
WITH direct AS (
    SELECT scan_id, image_digest AS digest, 'digest' AS matched_by, 0 AS priority
    FROM scans WHERE image_digest IS NOT NULL
    UNION ALL
    SELECT DISTINCT s.scan_id, m.digest, 'image-id', 1
    FROM scans s JOIN manifests m ON m.config_digest = s.config_digest
    UNION ALL
    SELECT scan_id, config_digest, 'image-id', 1
    FROM scans WHERE config_digest IS NOT NULL
), related AS (
    SELECT DISTINCT d.scan_id, c.index_digest AS digest, 'via-child' AS matched_by, 2 AS priority
    FROM direct d JOIN manifest_children c ON c.child_digest = d.digest
    UNION ALL
    SELECT DISTINCT d.scan_id, c.child_digest, 'via-index', 3
    FROM direct d JOIN manifest_children c ON c.index_digest = d.digest
)
SELECT scan_id, digest, arg_min(matched_by, priority) AS matched_by, min(priority) AS priority
FROM (SELECT * FROM direct UNION ALL SELECT * FROM related)
GROUP BY scan_id, digest;

-- The scan that speaks for each digest (or image ID): one that scanned this very content
-- before one that scanned a sibling platform, then the newest.
CREATE OR REPLACE VIEW latest_image_scan AS
SELECT digest, scan_id, matched_by, scanned_at FROM (
    SELECT c.digest, c.scan_id, c.matched_by, s.scanned_at,
           row_number() OVER (PARTITION BY c.digest
                              ORDER BY c.priority >= 2, s.scanned_at DESC NULLS LAST, c.scan_id DESC) AS rn
    FROM scan_coverage c JOIN scans s ON s.scan_id = c.scan_id
) WHERE rn = 1;

-- ==== issue 18: push and pull history from registry events ====
-- registry_events holds what the registry itself reported (repoaudit events serve, Harbor webhooks,
-- Distribution's JSON log). Manifest events only below: a blob GET is part of a pull, not a pull.

-- From when each registry's events are complete: the first event stored. Before that, "never pulled"
-- means "not known"; pull-based answers say so with this time.
CREATE OR REPLACE VIEW event_coverage AS
SELECT registry, min(occurred_at) AS events_since, max(occurred_at) AS events_until, count(*) AS events,
       count(*) FILTER (WHERE action = 'pull' AND kind = 'manifest') AS manifest_pulls,
       list(DISTINCT origin ORDER BY origin) AS origins
FROM registry_events
GROUP BY registry;

-- The last pull by a container runtime (client_class workload; scanners, replication, CI tools and people
-- excluded) of each manifest digest, with how many such pulls there were. A pull by tag that named no digest
-- (access-log lines) is attributed through the tag's digest at the latest snapshot.
CREATE OR REPLACE VIEW last_pull AS
WITH pulls AS (
    SELECT e.registry, e.repository, coalesce(e.digest, li.digest) AS digest, e.occurred_at, e.user_agent,
           e.client_rule
    FROM registry_events e
    LEFT JOIN latest_images li
        ON e.digest IS NULL AND li.registry = e.registry AND li.repository = e.repository
       AND list_contains(li.tags, e.tag)
    WHERE e.action = 'pull' AND e.kind = 'manifest' AND e.client_class = 'workload'
)
SELECT p.registry, p.repository, p.digest, max(p.occurred_at) AS last_pulled_at, count(*) AS pulls,
       arg_max(p.user_agent, p.occurred_at) AS last_user_agent, arg_max(p.client_rule, p.occurred_at) AS last_client,
       any_value(c.events_since) AS events_since
FROM pulls p
JOIN event_coverage c ON c.registry IS NOT DISTINCT FROM p.registry
WHERE p.digest IS NOT NULL
GROUP BY p.registry, p.repository, p.digest;

-- Manifest pulls per day, registry, repository and client class: pulls are GETs, checks are HEADs (a runtime
-- resolving a tag it may already hold).
CREATE OR REPLACE VIEW pulls_by_day AS
SELECT CAST(occurred_at AS DATE) AS day, registry, repository, client_class,
       count(*) FILTER (WHERE method IS DISTINCT FROM 'HEAD') AS pulls, count(*) FILTER (WHERE method = 'HEAD') AS checks,
       count(DISTINCT coalesce(digest, tag)) AS images, count(DISTINCT source_addr) AS clients
FROM registry_events
WHERE action = 'pull' AND kind = 'manifest'
GROUP BY ALL;

-- Exact push times: the first push event of each manifest digest in each repository (a later push of the same
-- digest, a re-tag, does not move it).
CREATE OR REPLACE VIEW event_push_times AS
SELECT registry, repository, digest, min(occurred_at) AS pushed_at, max(occurred_at) AS last_pushed_at,
       count(*) AS pushes
FROM registry_events
WHERE action = 'push' AND kind = 'manifest' AND digest IS NOT NULL
GROUP BY ALL;

-- image_lifecycle with the exact push time where events saw the push (pushed_source 'event'), else the
-- first snapshot that saw the image ('first_seen').
CREATE OR REPLACE VIEW image_push_times AS
SELECT l.*, coalesce(p.pushed_at, l.first_seen) AS pushed_at,
       CASE WHEN p.pushed_at IS NOT NULL THEN 'event' ELSE 'first_seen' END AS pushed_source
FROM image_lifecycle l
LEFT JOIN event_push_times p ON p.registry = l.registry AND p.repository = l.repository AND p.digest = l.digest;

-- ==== issue 19: registry storage and garbage-collection preview ====

-- Each blob of a storage snapshot (sid) and whether Distribution 2.8's offline garbage-collect would remove
-- it: freed without --delete-untagged, freed_untagged with it. GC marks, per repository, every revision whose
-- blob exists and what its manifest references (an image: config and layers; an index: its child manifests,
-- not their blobs), then removes every blob nobody marked. With --delete-untagged a revision no tag of its
-- own repository points at is neither marked nor followed, even when a tagged index lists it: the child's
-- manifest blob stays (the index marks it) but its config and layers go unless something else holds them
-- (distribution/distribution#3178); from_tagged_index says which blobs those are. repositories: the
-- repositories that link the blob (revisions, deleted ones too, and _layers links), where its bytes count.
-- The storage snapshot a GC preview reads, per registry: the latest complete or partial one, or the one
-- given. (Parameters named apart from the columns they filter: a macro's parameters shadow them.)
CREATE OR REPLACE MACRO storage_snapshot_of(for_registry, for_snapshot) AS TABLE
SELECT snapshot_id, registry, started_at, options FROM (
    SELECT s.*, row_number() OVER (PARTITION BY registry ORDER BY started_at DESC, snapshot_id DESC) AS rn
    FROM snapshots s
    WHERE source_kind = 'registry-storage' AND status IN ('complete', 'partial')
      AND (for_registry IS NULL OR registry = for_registry)
      AND (for_snapshot IS NULL OR snapshot_id = for_snapshot)
) WHERE rn = 1;

CREATE OR REPLACE MACRO gc_blobs(sid) AS TABLE
WITH rev AS (
    SELECT registry, repository, digest, tagged FROM storage_revisions
    WHERE snapshot_id = sid AND linked AND blob_present
), refs AS (
    SELECT registry, digest AS manifest_digest, config_digest AS ref FROM manifests WHERE config_digest IS NOT NULL
    UNION ALL
    SELECT registry, manifest_digest, digest FROM layers
    UNION ALL
    SELECT registry, index_digest, child_digest FROM manifest_children
), marked AS (
    SELECT digest, tagged FROM rev
    UNION ALL
    SELECT f.ref, r.tagged FROM rev r JOIN refs f ON f.registry = r.registry AND f.manifest_digest = r.digest
), marks AS (
    SELECT digest, true AS any_mark, bool_or(tagged) AS tagged_mark FROM marked GROUP BY digest
), orphaned_children AS (
    -- Untagged children of tagged indexes of the same repository: what --delete-untagged stops following.
    SELECT DISTINCT f.ref AS blob
    FROM rev i
    JOIN manifest_children c ON c.registry = i.registry AND c.index_digest = i.digest
    JOIN rev ch ON ch.registry = i.registry AND ch.repository = i.repository AND ch.digest = c.child_digest
    JOIN refs f ON f.registry = ch.registry AND f.manifest_digest = ch.digest
    WHERE i.tagged AND NOT ch.tagged
), linked AS (
    SELECT digest, list(DISTINCT repository ORDER BY repository) AS repositories FROM (
        SELECT digest, repository FROM storage_revisions WHERE snapshot_id = sid
        UNION ALL
        SELECT digest, repository FROM storage_layer_links WHERE snapshot_id = sid
    ) GROUP BY digest
)
SELECT b.registry, b.digest, b.size,
       m.digest IS NULL AS freed,
       coalesce(NOT m.tagged_mark, true) AS freed_untagged,
       coalesce(NOT m.tagged_mark, true) AND o.blob IS NOT NULL AS from_tagged_index,
       coalesce(l.repositories, []::VARCHAR[]) AS repositories
FROM storage_blobs b
LEFT JOIN marks m ON m.digest = b.digest
LEFT JOIN orphaned_children o ON o.blob = b.digest
LEFT JOIN linked l ON l.digest = b.digest
WHERE b.snapshot_id = sid;

-- ==== issue 20: registry posture, tag tampering, remediation ====
-- Each probe of a registry's access posture beside the one before it (collect.posture), so that a report says
-- what changed: anonymous_read is either read probe succeeding (a tag list or a manifest).
CREATE OR REPLACE VIEW posture_history AS
SELECT p.*,
       coalesce(p.tags_anonymous, false) OR coalesce(p.manifest_anonymous, false) AS anonymous_read,
       lag(p.snapshot_id) OVER w AS previous_snapshot,
       lag(p.probed_at) OVER w AS previous_probed_at,
       lag(coalesce(p.tags_anonymous, false) OR coalesce(p.manifest_anonymous, false)) OVER w AS previous_anonymous_read,
       lag(p.catalog_anonymous) OVER w AS previous_catalog_anonymous,
       lag(p.push_anonymous) OVER w AS previous_push_anonymous,
       lag(p.plain_http) OVER w AS previous_plain_http,
       lag(p.cert_days_left) OVER w AS previous_cert_days_left,
       lag(p.cert_trust) OVER w AS previous_cert_trust,
       lag(p.weak_tls) OVER w AS previous_weak_tls
FROM registry_posture p
WINDOW w AS (PARTITION BY p.registry ORDER BY p.probed_at, p.snapshot_id);

-- Every scan of an image of a repository, with the image's push time. Collected images are matched to scans
-- by content (scan_coverage: the digest, or the image ID of the config); their push time is the first snapshot
-- that reached them in the repository, or their config's created when that snapshot was the repository's first
-- look (as retention reads push times). A scan of an image never collected counts for the repository its report
-- names, pushed (as far as anyone knows) when it was first scanned.
CREATE OR REPLACE VIEW scanned_repository_images AS
WITH first_look AS (
    SELECT registry, repository, min(first_snapshot) AS snapshot_id FROM repository_links GROUP BY ALL
), collected AS (
    SELECT l.registry, l.repository, l.digest, c.scan_id,
           CASE WHEN l.first_snapshot = fl.snapshot_id AND m.created < l.first_seen THEN m.created
                ELSE l.first_seen END AS pushed_at
    FROM repository_links l
    JOIN first_look fl ON fl.registry = l.registry AND fl.repository = l.repository
    LEFT JOIN manifests m ON m.registry = l.registry AND m.digest = l.digest
    JOIN scan_coverage c ON c.digest = l.digest AND c.priority < 2
), uncollected AS (
    SELECT s.registry, s.repository, coalesce(s.image_digest, s.config_digest) AS digest, s.scan_id,
           NULL::TIMESTAMP AS pushed_at
    FROM scans s
    WHERE s.repository IS NOT NULL AND s.scan_id NOT IN (SELECT scan_id FROM collected)
)
SELECT x.registry, x.repository, x.digest, x.scan_id, s.scanned_at,
       coalesce(x.pushed_at, min(s.scanned_at) OVER (PARTITION BY x.registry, x.repository, x.digest)) AS pushed_at
FROM (SELECT * FROM collected UNION ALL SELECT * FROM uncollected) x
JOIN scans s ON s.scan_id = x.scan_id
WHERE s.scanned_at IS NOT NULL;

-- One vulnerability of one package in one repository, across every scan of its images: first_seen (the first
-- scan that reported it), fix_available_at (the first that reported a fixed version), last_seen, and fixed_at:
-- the push time of the first scanned image of the repository pushed after the last image that carried it (so
-- a newer image no longer carries it). days_open counts to fixed_at, or to as_of while it is open.
CREATE OR REPLACE MACRO vulnerability_lifecycle_at(as_of) AS TABLE
WITH sightings AS (
    SELECT i.registry, i.repository, i.digest, i.pushed_at, i.scanned_at, v.vulnerability_id, v.pkg_name,
           v.severity, v.fixed_version, v.installed_version
    FROM scanned_repository_images i
    JOIN vulnerabilities v ON v.scan_id = i.scan_id
    WHERE i.scanned_at <= as_of
), found AS (
    SELECT registry, repository, vulnerability_id, pkg_name,
           arg_max(severity, scanned_at) AS severity,
           min(scanned_at) AS first_seen,
           min(scanned_at) FILTER (WHERE fixed_version IS NOT NULL) AS fix_available_at,
           arg_max(fixed_version, scanned_at) FILTER (WHERE fixed_version IS NOT NULL) AS fixed_version,
           max(scanned_at) AS last_seen,
           max(pushed_at) AS last_carrier_pushed_at,
           count(DISTINCT digest) AS images
    FROM sightings
    GROUP BY ALL
), fixers AS (
    SELECT f.registry, f.repository, f.vulnerability_id, f.pkg_name,
           arg_min(i.digest, (i.pushed_at, i.digest)) AS fixed_by_digest, min(i.pushed_at) AS fixed_at
    FROM found f
    JOIN scanned_repository_images i ON i.registry IS NOT DISTINCT FROM f.registry AND i.repository = f.repository
                                    AND i.pushed_at > f.last_carrier_pushed_at AND i.scanned_at <= as_of
    GROUP BY ALL
)
SELECT f.registry, f.repository, split_part(f.repository, '/', 1) AS namespace, f.vulnerability_id, f.pkg_name,
       f.severity, f.fixed_version, f.images, f.first_seen, f.fix_available_at, f.last_seen, x.fixed_at,
       x.fixed_by_digest, CASE WHEN x.fixed_at IS NULL THEN 'open' ELSE 'fixed' END AS status,
       date_diff('day', f.first_seen, coalesce(x.fixed_at, as_of)) AS days_open,
       date_diff('day', f.fix_available_at, coalesce(x.fixed_at, as_of)) AS days_since_fix_available
FROM found f
LEFT JOIN fixers x ON x.registry IS NOT DISTINCT FROM f.registry AND x.repository = f.repository
                  AND x.vulnerability_id = f.vulnerability_id AND x.pkg_name IS NOT DISTINCT FROM f.pkg_name;

-- ==== issue 17: supply chain ====
-- Signatures, attestations and SBOMs attached to images (docs/supply-chain.md). The referrer links of each
-- snapshot, one row per subject and referrer however many ways it was found (via: the first of them), with
-- what the referrer is and the bytes of its manifest, config and layers. The referrer's columns are named,
-- not COLUMNS(* EXCLUDE ...): Spark runs this view too (repoaudit/fleet/spark.py).
CREATE OR REPLACE VIEW referrer_facts AS
WITH links AS (
    SELECT snapshot_id, registry, repository, subject_digest, referrer_digest, min(via) AS via
    FROM referrer_links GROUP BY ALL
)
SELECT l.snapshot_id, l.registry, l.repository, l.subject_digest, l.referrer_digest, l.via,
       coalesce(r.category, 'other') AS category, r.scheme, r.predicate_type, r.predicate,
       coalesce(r.artifact_type, m.artifact_type) AS artifact_type, m.media_type, r.layer_media_types,
       r.annotations, r.created,
       coalesce(m.manifest_size, 0) + coalesce(m.config_size, 0) + coalesce(m.layers_size, 0) AS bytes
FROM links l
LEFT JOIN (SELECT registry, digest, any_value(category) AS category, any_value(scheme) AS scheme,
                  any_value(predicate_type) AS predicate_type, any_value(predicate) AS predicate,
                  any_value(artifact_type) AS artifact_type, any_value(layer_media_types) AS layer_media_types,
                  any_value(annotations) AS annotations, any_value(created) AS created
           FROM referrers GROUP BY ALL) r
       ON r.registry = l.registry AND r.digest = l.referrer_digest
LEFT JOIN manifests m ON m.registry = l.registry AND m.digest = l.referrer_digest;

-- Per snapshot, repository and image (an image or index manifest the snapshot reaches, no referrer): its
-- signatures, attestations and SBOMs, counting those attached to an index that holds it, and the best verdict
-- on its signatures: valid (a trusted key verifies one whose payload names it), unverified (keyless),
-- invalid, unverified (no trusted key) (signed, but by no key given to collect), or missing.
CREATE OR REPLACE VIEW image_supply AS
WITH reached AS (
    SELECT DISTINCT s.snapshot_id, s.registry, s.repository, s.digest
    FROM snapshot_manifests s
    JOIN manifests m ON m.registry = s.registry AND m.digest = s.digest
    WHERE m.artifact_type IS NULL AND m.kind IN ('image', 'index')
), subjects AS (
    SELECT snapshot_id, registry, repository, digest, digest AS subject FROM reached
    UNION
    SELECT r.snapshot_id, r.registry, r.repository, r.digest, c.index_digest
    FROM reached r JOIN manifest_children c ON c.registry = r.registry AND c.child_digest = r.digest
), refs AS (
    SELECT s.snapshot_id, s.registry, s.repository, s.digest, f.referrer_digest, f.subject_digest, f.category,
           f.predicate
    FROM subjects s
    JOIN referrer_facts f ON f.snapshot_id = s.snapshot_id AND f.registry = s.registry
                         AND f.repository = s.repository AND f.subject_digest = s.subject
), verdicts AS (
    SELECT r.snapshot_id, r.registry, r.repository, r.digest,
           max(CASE v.status WHEN 'valid' THEN 4 WHEN 'unverified (keyless)' THEN 3 ELSE 2 END) AS rank,
           string_agg(DISTINCT coalesce(v.identity, v.key_fingerprint), ', ') FILTER (WHERE v.status <> 'invalid')
               AS signers,
           string_agg(DISTINCT v.reason, '; ') FILTER (WHERE v.status = 'invalid') AS invalid_reasons
    FROM refs r
    JOIN signature_verifications v ON v.registry = r.registry AND v.signature_digest = r.referrer_digest
                                  AND v.subject_digest = r.subject_digest
    WHERE r.category = 'signature'
    GROUP BY ALL
), counted AS (
    SELECT x.snapshot_id, x.registry, x.repository, x.digest,
           count(DISTINCT r.referrer_digest) FILTER (WHERE r.category = 'signature') AS signatures,
           count(DISTINCT r.referrer_digest) FILTER (WHERE r.category = 'attestation') AS attestations,
           count(DISTINCT r.referrer_digest) FILTER (WHERE r.category = 'sbom'
                                                        OR r.predicate IN ('spdx', 'cyclonedx')) AS sboms,
           string_agg(DISTINCT r.predicate, ', ') AS predicates
    FROM reached x
    LEFT JOIN refs r ON r.snapshot_id = x.snapshot_id AND r.registry = x.registry AND r.repository = x.repository
                    AND r.digest = x.digest
    GROUP BY ALL
)
SELECT c.*,
       CASE v.rank WHEN 4 THEN 'valid' WHEN 3 THEN 'unverified (keyless)' WHEN 2 THEN 'invalid'
            ELSE CASE WHEN c.signatures > 0 THEN 'unverified (no trusted key)' ELSE 'missing' END
       END AS signature_status,
       v.signers, v.invalid_reasons
FROM counted c
LEFT JOIN verdicts v ON v.snapshot_id = c.snapshot_id AND v.registry = c.registry AND v.repository = c.repository
                    AND v.digest = c.digest;
