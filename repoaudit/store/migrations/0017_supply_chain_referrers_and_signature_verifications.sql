-- Supply chain: what refers to each image (cosign signatures, attestations, SBOMs, OCI 1.1 referrers) and
-- the offline verdicts on its signatures. See docs/supply-chain.md.

-- name: schema
-- One row per referrer manifest, stored once by digest like manifests: what it is.
CREATE TABLE referrers (
    registry            VARCHAR NOT NULL,
    digest              VARCHAR NOT NULL,   -- the referrer manifest
    category            VARCHAR NOT NULL,   -- signature | attestation | sbom | other
    scheme              VARCHAR,            -- cosign | notation | in-toto | spdx | cyclonedx | syft
    predicate_type      VARCHAR,            -- attestations: the in-toto predicate type URI
    predicate           VARCHAR,            -- slsa-provenance | spdx | cyclonedx | vulnerability | vex | other
    artifact_type       VARCHAR,
    layer_media_types   JSON,
    annotations         JSON,               -- the manifest's annotations
    created             TIMESTAMP,          -- org.opencontainers.image.created, when annotated
    first_seen_snapshot BIGINT
);

-- Which subject each referrer refers to in each snapshot, and how it was found: cosign-tag
-- (sha256-<hex>.sig/.att/.sbom), fallback-tag (the OCI 1.1 referrers tag schema's index), subject (a
-- tagged manifest's own subject field) or api (the OCI 1.1 referrers API).
CREATE TABLE referrer_links (
    snapshot_id     BIGINT NOT NULL,
    registry        VARCHAR NOT NULL,
    repository      VARCHAR NOT NULL,
    subject_digest  VARCHAR NOT NULL,
    referrer_digest VARCHAR NOT NULL,
    via             VARCHAR NOT NULL
);

-- Verdicts on cosign signatures, one per signature (layer of a signature manifest) and trusted key, or one
-- per keyless signature; made once per signature manifest, subject and key.
CREATE TABLE signature_verifications (
    registry          VARCHAR NOT NULL,
    repository        VARCHAR NOT NULL,
    subject_digest    VARCHAR NOT NULL,   -- the image the signature is attached to
    signature_digest  VARCHAR NOT NULL,   -- the signature manifest
    position          INTEGER NOT NULL,   -- its layer
    key_fingerprint   VARCHAR,            -- sha256 of the key's DER SubjectPublicKeyInfo; NULL for keyless
    status            VARCHAR NOT NULL,   -- valid | invalid | unverified (keyless)
    reason            VARCHAR,
    signed_digest     VARCHAR,            -- what the payload's critical.image.docker-manifest-digest names
    identity          VARCHAR,            -- keyless: the certificate's email or URI
    issuer            VARCHAR,            -- keyless: the OIDC issuer the certificate names
    snapshot_id       BIGINT NOT NULL     -- the snapshot that verified it
);

-- name: backfill
-- Manifests stored before: what their stored media types tell (predicates and verdicts need a new collect).
INSERT INTO referrers
SELECT m.registry, m.digest,
       CASE WHEN m.artifact_type LIKE 'application/vnd.dev.cosign%' OR coalesce(l.types, '') LIKE '%cosign.simplesigning%'
                 THEN 'signature'
            WHEN m.artifact_type LIKE 'application/vnd.cncf.notary.signature%' THEN 'signature'
            WHEN coalesce(l.types, '') LIKE '%dsse.envelope%' OR m.artifact_type LIKE '%in-toto%' THEN 'attestation'
            WHEN lower(coalesce(m.artifact_type, '') || coalesce(l.types, '')) SIMILAR TO '.*(spdx|cyclonedx|syft).*' THEN 'sbom'
            ELSE 'other' END,
       NULL, NULL, NULL, m.artifact_type, NULL, m.annotations, NULL, m.first_seen_snapshot
FROM manifests m
LEFT JOIN (SELECT registry, manifest_digest, string_agg(media_type, ' ') AS types FROM layers GROUP BY ALL) l
       ON l.registry = m.registry AND l.manifest_digest = m.digest
WHERE m.artifact_type IS NOT NULL OR m.subject IS NOT NULL;
