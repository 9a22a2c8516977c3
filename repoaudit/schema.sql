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
-- Scan reports and Kubernetes pod listings as ingested. A report is stored once (keyed
-- by the sha256 of its file) with the identity *it* names; which collected manifests
-- it covers is worked out by the views below at query time, so a report ingested
-- before its registry was collected still matches once the registry is.
CREATE SEQUENCE scan_id_seq START 1;
CREATE SEQUENCE workload_snapshot_id_seq START 1;

CREATE TABLE scans (
    scan_id          BIGINT PRIMARY KEY,
    scanner          VARCHAR NOT NULL,   -- trivy | grype | the tool that wrote a CycloneDX BOM
    scanner_version  VARCHAR,
    report_format    VARCHAR NOT NULL,   -- trivy | grype | cyclonedx: the ingester that read it
    db_built         TIMESTAMP,          -- vulnerability database build (grype)
    scanned_at       TIMESTAMP,
    artifact_name    VARCHAR,            -- what the scanner was pointed at, as written
    image_ref        VARCHAR,            -- canonical reference the report names
    image_digest     VARCHAR,            -- manifest digest the report names (RepoDigests, @digest)
    config_digest    VARCHAR,            -- image ID, i.e. the config blob digest
    registry         VARCHAR,            -- Docker Hub is index.docker.io
    repository       VARCHAR,
    os_family        VARCHAR,
    os_name          VARCHAR,
    eosl             BOOLEAN,            -- OS release past end of support (Trivy)
    finding_count    INTEGER,
    source_file      VARCHAR NOT NULL,
    source_sha256    VARCHAR NOT NULL UNIQUE,
    ingested_at      TIMESTAMP NOT NULL
);

-- One row per finding as the scanner reports it: one CVE on four packages is four rows.
CREATE TABLE vulnerabilities (
    scan_id            BIGINT NOT NULL,
    vulnerability_id   VARCHAR NOT NULL,
    pkg_name           VARCHAR,
    pkg_type           VARCHAR,
    installed_version  VARCHAR,
    fixed_version      VARCHAR,
    fix_state          VARCHAR,          -- fixed | affected | wont-fix | not-fixed | unknown …
    severity           VARCHAR NOT NULL, -- CRITICAL | HIGH | MEDIUM | LOW | NEGLIGIBLE | UNKNOWN
    cvss_score         DOUBLE,
    cvss_vector        VARCHAR,
    cvss_source        VARCHAR,          -- nvd | redhat | ghsa | …
    published_at       TIMESTAMP,
    epss               DOUBLE,
    known_exploited    BOOLEAN,
    target             VARCHAR,
    class              VARCHAR           -- os-pkgs | lang-pkgs | …
);

-- One row per pod-listing ingest. Pods are not registry snapshots: these ids are their own.
CREATE TABLE workload_snapshots (
    snapshot_id      BIGINT PRIMARY KEY,
    cluster          VARCHAR NOT NULL,
    source_files     JSON NOT NULL,      -- the files read, in order
    source_sha256    VARCHAR NOT NULL,   -- over the files' sha256s; an unchanged re-ingest is skipped
    ingested_at      TIMESTAMP NOT NULL,
    pod_count        INTEGER,
    container_count  INTEGER
);

CREATE TABLE workloads (
    snapshot_id      BIGINT NOT NULL,    -- workload_snapshots.snapshot_id, not snapshots.snapshot_id
    cluster          VARCHAR NOT NULL,
    namespace        VARCHAR,
    pod              VARCHAR,
    owner_kind       VARCHAR,            -- the controlling owner: ReplicaSet, DaemonSet, Job, …
    owner_name       VARCHAR,
    container        VARCHAR,
    init             BOOLEAN,
    image_ref        VARCHAR,            -- spec image, canonical (nginx -> index.docker.io/library/nginx)
    tag              VARCHAR,            -- the tag pulled (latest when the spec names neither tag nor digest)
    registry         VARCHAR,
    repository       VARCHAR,
    image_digest     VARCHAR,            -- manifest digest from the spec or from status imageID
    config_digest    VARCHAR,            -- a bare sha256: imageID: the image ID, not a manifest digest
    resolved_by      VARCHAR,            -- spec-digest | status-repo-digest | status-image-id | unresolved
    pinned_by_digest BOOLEAN,
    phase            VARCHAR,
    ingested_at      TIMESTAMP NOT NULL
);

-- Each cluster's newest pod listing: what runs now.
CREATE VIEW current_workloads AS
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
-- config (preferring one reachable in the spec's repository); else, for containers without a
-- status yet, the digest the tag points at in the registry's latest snapshot.
CREATE VIEW workload_images AS
WITH reach AS (
    SELECT DISTINCT registry, repository, digest FROM snapshot_manifests
), by_config AS (
    SELECT * EXCLUDE (rn) FROM (
        SELECT w.snapshot_id, w.namespace, w.pod, w.container, w.init, m.digest,
               row_number() OVER (PARTITION BY w.snapshot_id, w.namespace, w.pod, w.container, w.init
                                  ORDER BY (r.digest IS NOT NULL) DESC, (m.registry = w.registry) DESC NULLS LAST,
                                           m.digest, m.registry) AS rn
        FROM current_workloads w
        JOIN manifests m ON m.config_digest = w.config_digest
        LEFT JOIN reach r ON r.registry = m.registry AND r.digest = m.digest
                         AND r.registry = w.registry AND r.repository = w.repository
        WHERE w.image_digest IS NULL
    ) WHERE rn = 1
), by_tag AS (
    SELECT w.snapshot_id, w.namespace, w.pod, w.container, w.init, i.digest
    FROM current_workloads w
    JOIN images i ON i.registry = w.registry AND i.repository = w.repository AND i.tag = w.tag
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
CREATE VIEW deployed_images AS
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

-- Which image each scan covers. A digest names content, so a scan of docker.io/x@D also
-- covers a mirror's copy of D. matched_by: digest (the report names it), image-id (a
-- collected manifest's config is the report's image ID; a report known only by image ID
-- also covers that ID itself, for pods that report nothing else), via-child (an index one
-- of whose platform manifests was scanned), via-index (a platform manifest of a scanned index).
CREATE VIEW scan_coverage AS
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
CREATE VIEW latest_image_scan AS
SELECT digest, scan_id, matched_by, scanned_at FROM (
    SELECT c.digest, c.scan_id, c.matched_by, s.scanned_at,
           row_number() OVER (PARTITION BY c.digest
                              ORDER BY c.priority >= 2, s.scanned_at DESC NULLS LAST, c.scan_id DESC) AS rn
    FROM scan_coverage c JOIN scans s ON s.scan_id = c.scan_id
) WHERE rn = 1;

-- migration: 3 retention deletions
-- What 'repoaudit retention apply --yes' did, one row per image or index child of the
-- plan: deleted, skipped (tags changed since the plan, deployed now, its index kept),
-- not found (already gone) or failed. A dry run records nothing.
CREATE TABLE deletions (
    applied_at        TIMESTAMP NOT NULL,   -- when the DELETE was sent, or the candidate skipped
    registry          VARCHAR NOT NULL,
    repository        VARCHAR NOT NULL,
    digest            VARCHAR NOT NULL,
    tags              VARCHAR[],            -- the tags the plan saw (and the registry confirmed) on the digest
    role              VARCHAR NOT NULL,     -- image | index child
    outcome           VARCHAR NOT NULL,     -- deleted | skipped | not found | failed
    reason            VARCHAR,
    policy            VARCHAR,              -- the policy's name in the plan
    plan              VARCHAR,              -- the plan file as given
    plan_sha256       VARCHAR,              -- of the plan file
    plan_snapshot_id  BIGINT                -- the snapshot the plan was computed from
);

-- migration: 4 tag history
-- History is read from the snapshots that hold data (complete or partial). A
-- repository is only taken as *observed* in a snapshot when it has a repositories
-- row there, and a tag's absence only counts where that row says 'ok' (every tag
-- listed and resolved): a repository that failed, was filtered out or belongs to
-- another shard never makes its tags look deleted.

-- Each registry's snapshots that hold data, numbered in order (seq). History works on
-- these small integers and maps them back to times and ids at the end: aggregating
-- and ordering integers is several times cheaper than timestamps with id tie-breaks.
CREATE VIEW snapshot_sequence AS
SELECT snapshot_id, registry, started_at,
       row_number() OVER (PARTITION BY registry ORDER BY started_at, snapshot_id) AS seq
FROM snapshots
WHERE status IN ('complete', 'partial');

-- The snapshots in which each repository was seen whole (status 'ok'): only there
-- does a missing tag mean the tag was gone.
CREATE VIEW complete_repository_looks AS
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
CREATE MACRO tag_stretches_of(in_registry, in_repository, in_tag) AS TABLE
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

CREATE VIEW tag_stretches AS SELECT * FROM tag_stretches_of(NULL, NULL, NULL);

-- Sightings skip snapshots where the tag was not seen, so snapshots_seen below the
-- number of snapshots in [first_seen, last_seen] means the tag was missing meanwhile.
CREATE VIEW tag_history AS
SELECT registry, repository, tag, digest, first_seen, last_seen, snapshots_seen, first_snapshot, last_snapshot
FROM tag_stretches;

-- A tag re-pointed to other content between two of its sightings (a supply-chain
-- signal). moved_after / moved_before bracket the move: the last snapshot that saw
-- from_digest and the first that saw to_digest. rollback: the new content is older
-- (by config created) than what the tag showed before; NULL when either age is
-- unknown. recreated: the tag was absent from a complete look at its repository in
-- between (deleted, then pushed again) rather than moved in place.
-- tag_moves_of(registry, repository): the same for one registry or repository (NULL: all).
CREATE MACRO tag_moves_of(in_registry, in_repository) AS TABLE
SELECT s.registry, s.repository, s.tag, s.previous_digest AS from_digest, s.digest AS to_digest,
       s.previous_seen AS moved_after, s.first_seen AS moved_before,
       s.previous_snapshot AS from_snapshot, s.first_snapshot AS to_snapshot,
       fm.created AS from_created, tm.created AS to_created,
       tm.created < fm.created AS rollback, s.recreated
FROM tag_stretches_of(in_registry, in_repository, NULL) s
LEFT JOIN manifests fm ON fm.registry = s.registry AND fm.digest = s.previous_digest
LEFT JOIN manifests tm ON tm.registry = s.registry AND tm.digest = s.digest
WHERE s.previous_digest IS NOT NULL;

CREATE VIEW tag_moves AS SELECT * FROM tag_moves_of(NULL, NULL);

-- Per repository and manifest: when a tag first and last reached it (directly, or as
-- a child of a tagged index), and untagged_since, the first complete look at the
-- repository after that where nothing reached it any more (NULL while it is still
-- reached, or when the repository has not been seen complete since). An untagged
-- manifest keeps its blobs in the registry until it is deleted and garbage-collected
-- (the registry's API cannot tell "untagged" from "deleted, not yet collected").
CREATE VIEW image_lifecycle AS
WITH tagged AS (
    SELECT t.registry, t.repository, t.digest, min(q.seq) AS first_seq, max(q.seq) AS last_seq
    FROM tags t
    JOIN snapshot_sequence q ON q.snapshot_id = t.snapshot_id
    GROUP BY t.registry, t.repository, t.digest
), children AS (
    SELECT x.registry, x.repository, c.child_digest AS digest, min(x.first_seq) AS first_seq,
           max(x.last_seq) AS last_seq
    FROM tagged x
    JOIN manifest_children c ON c.registry = x.registry AND c.index_digest = x.digest
    GROUP BY ALL
), lifecycle AS (
    -- A child can also be tagged itself; an outer join merges the two without regrouping everything.
    SELECT coalesce(t.registry, c.registry) AS registry, coalesce(t.repository, c.repository) AS repository,
           coalesce(t.digest, c.digest) AS digest,
           least(t.first_seq, c.first_seq) AS first_seq, greatest(t.last_seq, c.last_seq) AS last_seq
    FROM tagged t
    FULL JOIN children c ON c.registry = t.registry AND c.repository = t.repository AND c.digest = t.digest
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

-- migration: 5 flux-style repository status
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

-- migration: 6 unique bytes stored with each snapshot
-- Listing snapshots summed the blobs of every snapshot on every call (seconds at a million tags);
-- the writer now stores the figure when it commits, and this fills it in for older snapshots.
ALTER TABLE snapshots ADD COLUMN unique_bytes BIGINT;
UPDATE snapshots AS s SET unique_bytes = b.bytes
FROM (
    SELECT snapshot_id, sum(size) AS bytes FROM (
        SELECT DISTINCT sm.snapshot_id, mb.blob_digest, mb.size
        FROM snapshot_manifests sm
        JOIN manifest_blobs mb ON mb.registry = sm.registry AND mb.manifest_digest = sm.digest
    ) GROUP BY snapshot_id
) AS b
WHERE b.snapshot_id = s.snapshot_id;
UPDATE snapshots SET unique_bytes = 0 WHERE unique_bytes IS NULL AND status <> 'failed';

-- migration: 7 latest manifests view
-- What each registry's latest snapshot reaches, per repository: snapshot_manifests for the latest
-- snapshots, but reading tags by snapshot id first, which is several times cheaper at a million tags.
CREATE VIEW latest_manifests AS
WITH latest_tags AS (
    SELECT DISTINCT t.registry, t.repository, t.digest FROM tags t
    WHERE t.snapshot_id IN (SELECT snapshot_id FROM latest_snapshot)
)
SELECT registry, repository, digest FROM latest_tags
UNION
SELECT l.registry, l.repository, c.child_digest
FROM latest_tags l JOIN manifest_children c ON c.registry = l.registry AND c.index_digest = l.digest;

-- migration: 8 push times of the latest images
-- Each image of each registry's latest snapshot with its tags and push time, as repoaudit.retention
-- defines it: the first snapshot that saw it in its repository (directly or through a tagged index),
-- or its config created when that snapshot was the first look at the repository. The staleness
-- queries share it; reg and ns (a team namespace) filter where tags are read, NULL for all.
CREATE MACRO latest_image_push(reg, ns) AS TABLE
WITH ls AS (
    SELECT snapshot_id, registry, started_at FROM latest_snapshot WHERE reg IS NULL OR registry = reg
), sightings AS (
    -- One pass over the tags of every snapshot that holds data gives the latest snapshot's tags and when
    -- each of its images was first seen in its repository, without the whole history of image_lifecycle.
    SELECT t.registry, t.repository, t.digest,
           list(t.tag ORDER BY t.tag) FILTER (WHERE t.snapshot_id = ls.snapshot_id) AS tags,
           any_value(ls.started_at) AS snapshot_at, min(s.started_at) AS first_seen
    FROM tags t
    JOIN snapshots s ON s.snapshot_id = t.snapshot_id
    JOIN ls ON ls.registry = t.registry
    WHERE s.status IN ('complete', 'partial')
      AND (ns IS NULL OR split_part(t.repository, '/', 1) = ns)
    GROUP BY t.registry, t.repository, t.digest
    HAVING bool_or(t.snapshot_id = ls.snapshot_id)
), via_index AS (
    -- A tagged index reaches its children too: an image was seen from the first snapshot that reached it either way.
    SELECT t.registry, t.repository, c.child_digest AS digest, min(s.started_at) AS first_seen
    FROM tags t
    JOIN manifest_children c ON c.registry = t.registry AND c.index_digest = t.digest
    JOIN snapshots s ON s.snapshot_id = t.snapshot_id
    WHERE s.status IN ('complete', 'partial')
    GROUP BY ALL
), tagged AS (
    SELECT g.* EXCLUDE (first_seen), least(g.first_seen, v.first_seen) AS first_seen
    FROM sightings g
    LEFT JOIN via_index v ON v.registry = g.registry AND v.repository = g.repository AND v.digest = g.digest
), first_look AS (
    SELECT r.registry, r.repository, min(s.started_at) AS first_look
    FROM repositories r JOIN snapshots s ON s.snapshot_id = r.snapshot_id
    WHERE s.status IN ('complete', 'partial')
    GROUP BY r.registry, r.repository
), dated AS (
    SELECT g.*, m.kind, m.artifact_type, m.created, coalesce(m.total_size, 0) AS size,
           (g.first_seen <= fl.first_look AND m.created IS NOT NULL AND m.created <= g.first_seen) AS from_created
    FROM tagged g
    LEFT JOIN manifests m ON m.registry = g.registry AND m.digest = g.digest
    LEFT JOIN first_look fl ON fl.registry = g.registry AND fl.repository = g.repository
)
SELECT * EXCLUDE (from_created),
       CASE WHEN from_created THEN created ELSE first_seen END AS pushed_at,
       CASE WHEN from_created THEN 'created' ELSE 'first_seen' END AS pushed_source
FROM dated;

-- migration: 9 repository links kept at commit
-- Every (repository, manifest) that a snapshot holding data reached, by a tag or as a child of a tagged
-- index, with the first and last such snapshot (by started_at, then snapshot_id). Push times, staleness,
-- image lifecycles and retention read this instead of aggregating the tags of every snapshot again,
-- which took seconds at a million tags. The snapshot writer folds each snapshot in as it commits
-- (repoaudit.store.fold_links); this fills it for databases written before.
CREATE TABLE repository_links (
    registry        VARCHAR NOT NULL,
    repository      VARCHAR NOT NULL,
    digest          VARCHAR NOT NULL,
    first_seen      TIMESTAMP NOT NULL,   -- started_at of the first snapshot that reached it
    first_snapshot  BIGINT NOT NULL,
    last_seen       TIMESTAMP NOT NULL,   -- started_at of the last snapshot that reached it
    last_snapshot   BIGINT NOT NULL,
    tags            VARCHAR[]             -- its tags in last_snapshot, sorted; NULL: reached only through an index
);

-- The links one snapshot reached (sid), or every snapshot holding data (sid NULL), aggregated.
CREATE MACRO links_reached(sid) AS TABLE
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

INSERT INTO repository_links SELECT * FROM links_reached(NULL);

-- image_lifecycle (migration 4) from the kept links.
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

-- migration: 10 integer keys for digests
-- Joining and grouping millions of layer rows on 71-character digest strings was most of the cost of the
-- byte-counting queries. Every (registry, digest) a snapshot stores gets a BIGINT key, once; the fact
-- tables carry it beside the digest. The snapshot writer fills keys as it commits
-- (repoaudit.store.assign_keys), which also fills them here for databases written before.
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

-- manifest_blobs by key: the blobs each manifest holds (its own bytes, its config, its layers), a row per reference.
CREATE VIEW manifest_blob_keys AS
SELECT registry, manifest_key, manifest_key AS blob_key, manifest_size AS size, 'manifest' AS role
FROM manifests
UNION ALL
SELECT registry, manifest_key, config_key, config_size, 'config'
FROM manifests WHERE config_digest IS NOT NULL
UNION ALL
SELECT registry, manifest_key, blob_key, size, 'layer'
FROM layers;

-- What runs now, per repository and manifest digest: a workload that runs a platform child of an index
-- runs the index too. Staleness and retention never count a deployed image as a candidate.
CREATE VIEW deployed_manifests AS
WITH direct AS (
    SELECT DISTINCT registry, repository, digest FROM deployed_images WHERE digest IS NOT NULL
)
SELECT registry, repository, digest FROM direct
UNION
SELECT d.registry, d.repository, c.index_digest
FROM direct d JOIN manifest_children c ON c.registry = d.registry AND c.child_digest = d.digest;

-- latest_manifests (migration 7) from the kept links: a link the latest snapshot reached has it as last_snapshot.
CREATE OR REPLACE VIEW latest_manifests AS
SELECT registry, repository, digest, manifest_key, repository_key
FROM repository_links
WHERE last_snapshot IN (SELECT snapshot_id FROM latest_snapshot);

-- latest_image_push (migration 8) from the kept links: a link the latest snapshot tagged has it as last_snapshot
-- and its tags there, so no tags are read at all. Each image comes with its manifest and repository keys.
CREATE OR REPLACE MACRO latest_image_push(reg, ns) AS TABLE
WITH ls AS (
    SELECT snapshot_id, registry, started_at FROM latest_snapshot WHERE reg IS NULL OR registry = reg
), first_look AS (
    SELECT r.registry, r.repository, min(s.started_at) AS first_look
    FROM repositories r JOIN snapshots s ON s.snapshot_id = r.snapshot_id
    WHERE s.status IN ('complete', 'partial')
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
      AND (ns IS NULL OR split_part(l.repository, '/', 1) = ns)
)
SELECT * EXCLUDE (from_created),
       CASE WHEN from_created THEN created ELSE first_seen END AS pushed_at,
       CASE WHEN from_created THEN 'created' ELSE 'first_seen' END AS pushed_source
FROM dated;

-- Per blob, the references to it from manifests some link reached (a row of manifest_blob_keys each): how
-- many, and the lowest and highest manifest key among them (equal: one manifest holds it). Deleting
-- manifests frees a blob when its references are all gone, so byte accounting starts here instead of
-- grouping every layer row again. Kept at commit (repoaudit.store.count_blob_refs); counted_manifests
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

-- migration: 11 latest images and sole bytes kept at commit
-- The staleness queries started with every image of the latest snapshots, its push time and its rank among
-- the newest of its repository: a join of the links with the manifests and a sort of every image, at each
-- query. A registry's latest images change only when one of its snapshots commits, so the commit stores
-- them (repoaudit.store.refresh_latest_images), ranked. compute_latest_images is the definition.
CREATE MACRO compute_latest_images(reg) AS TABLE
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
CREATE TABLE latest_images AS SELECT * FROM compute_latest_images(NULL) LIMIT 0;
CREATE OR REPLACE MACRO latest_image_push(reg, ns) AS TABLE
SELECT * FROM latest_images
WHERE (reg IS NULL OR registry = reg) AND (ns IS NULL OR split_part(repository, '/', 1) = ns);

-- Per manifest, the bytes of the blobs it alone holds (blob_refs with one holder): what deleting that manifest,
-- and nothing else, frees. A manifest that holds no blob alone has no row. Kept with blob_refs at commit.
CREATE TABLE manifest_sole_bytes (
    manifest_key  BIGINT NOT NULL,
    bytes         BIGINT NOT NULL
);

-- migration: 12 workload images from the kept links
-- workload_images (migration 2) with the same answers, cheaper: whether a snapshot reached a manifest in the
-- workload's repository comes from repository_links (a failed snapshot keeps no tags, so the links hold every
-- reach) instead of a distinct over every snapshot's tags, and a tag resolves against the latest snapshots'
-- tags without their manifests. Every risk query starts here, and paid for both even with no workloads.
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
