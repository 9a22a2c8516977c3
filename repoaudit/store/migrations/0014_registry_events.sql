-- Push, pull and delete events from the registry itself (repoaudit events serve's spool, Harbor
-- webhooks, Distribution's JSON log), loaded by `repoaudit ingest events`. One row per event id:
-- the registry keeps an event's id when it retries, so ingesting a spool twice adds nothing.

-- name: schema
CREATE TABLE registry_events (
    event_id      VARCHAR PRIMARY KEY,   -- Distribution's UUID; harbor:<hash>; log:<request id>
    occurred_at   TIMESTAMP NOT NULL,    -- UTC, as the registry stamped it
    action        VARCHAR NOT NULL,      -- push | pull | delete | mount
    kind          VARCHAR NOT NULL,      -- manifest | blob
    method        VARCHAR,               -- the request's: a HEAD pull is a runtime resolving a tag
    registry      VARCHAR,               -- host[:port] the client addressed
    repository    VARCHAR NOT NULL,
    digest        VARCHAR,
    tag           VARCHAR,
    media_type    VARCHAR,
    size          BIGINT,
    actor         VARCHAR,               -- the authenticated user, if any
    user_agent    VARCHAR,
    source_addr   VARCHAR,               -- the client's address, without port
    request_id    VARCHAR,
    origin        VARCHAR NOT NULL,      -- distribution | harbor | accesslog
    client_class  VARCHAR NOT NULL,      -- workload | scanner | replication | ci | human
    client_rule   VARCHAR,               -- the classification rule that matched (NULL: none, human)
    source_file   VARCHAR,               -- the spool or log file it was read from
    ingested_at   TIMESTAMP NOT NULL
);
