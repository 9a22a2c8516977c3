-- Access posture of each registry, probed once per collection without the user's credentials
-- (repoaudit.collect.posture): what an anonymous client can do, and what its TLS endpoint offers.
-- One row per snapshot that probed; a probe that could not run leaves its columns NULL and says why in
-- errors. Nothing here is a secret: no header, token or credential is stored.

-- name: schema
CREATE TABLE registry_posture (
    snapshot_id          BIGINT NOT NULL,
    registry             VARCHAR NOT NULL,
    url                  VARCHAR NOT NULL,    -- the base URL probed
    probed_at            TIMESTAMP NOT NULL,
    plain_http           BOOLEAN NOT NULL,    -- http:// : every byte, credentials included, in clear
    auth_scheme          VARCHAR,             -- none | basic | bearer | other: what /v2/ challenges with
    v2_status            INTEGER,             -- anonymous GET /v2/
    v2_anonymous         BOOLEAN,             -- /v2/ answered 200 without credentials
    catalog_status       INTEGER,
    catalog_anonymous    BOOLEAN,             -- GET /v2/_catalog listed repositories anonymously
    sample_repository    VARCHAR,             -- the repository the read probes used (first collected)
    sample_tag           VARCHAR,
    tags_status          INTEGER,
    tags_anonymous       BOOLEAN,             -- the sample's tag list was readable anonymously
    manifest_status      INTEGER,
    manifest_anonymous   BOOLEAN,             -- the sample tag's manifest was readable anonymously
    push_probed          BOOLEAN NOT NULL,    -- --probe-push
    push_status          INTEGER,             -- anonymous POST /v2/<sample>/blobs/uploads/
    push_anonymous       BOOLEAN,             -- an anonymous upload was accepted (202)
    push_cancelled       BOOLEAN,             -- the accepted upload was cancelled with DELETE
    tls_version          VARCHAR,             -- negotiated with a default client: TLSv1.3, TLSv1.2, ...
    tls_cipher           VARCHAR,
    cert_subject         VARCHAR,
    cert_issuer          VARCHAR,
    cert_sans            VARCHAR[],           -- DNS:name and IP:address entries
    cert_not_after       TIMESTAMP,
    cert_days_left       INTEGER,             -- whole days from probed_at to not_after (negative: expired)
    cert_trust           VARCHAR,             -- system | private-ca | untrusted
    cert_error           VARCHAR,             -- why verification against the system roots failed
    weak_tls             BOOLEAN,             -- accepts TLS 1.0 or 1.1; NULL when this host cannot test it
    weak_tls_versions    VARCHAR[],           -- the old versions accepted
    errors               JSON,                -- {probe: one-line reason} for probes that could not run
    PRIMARY KEY (snapshot_id)
);
