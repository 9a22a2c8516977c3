-- Scan reports and Kubernetes pod listings as ingested. A report is stored once (keyed by the sha256 of
-- its file) with the identity *it* names; which collected manifests it covers is worked out by views at
-- query time (views.sql), so a report ingested before its registry was collected still matches once it is.

-- name: schema
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
