-- Retention deletions: what apply did, kept as an audit trail.

-- name: schema
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
