-- Loading registry events (repoaudit.ingest.events).

-- name: count
SELECT count(*) FROM registry_events;

-- name: insert_new
-- The batch's events not stored yet, each once. A request seen both by a notification and by the
-- access log (same request id and action) is kept as the notification, which names the digest.
INSERT INTO registry_events
SELECT b.event_id, b.occurred_at, b.action, b.kind, b.method, b.registry, b.repository, b.digest, b.tag, b.media_type,
       b.size, b.actor, b.user_agent, b.source_addr, b.request_id, b.origin, b.client_class, b.client_rule,
       b.source_file, b.ingested_at
FROM _ev_batch b
ANTI JOIN registry_events e ON e.event_id = b.event_id
WHERE NOT (b.origin = 'accesslog' AND EXISTS (
        SELECT 1 FROM (SELECT request_id, action, origin FROM registry_events
                       UNION ALL SELECT request_id, action, origin FROM _ev_batch) n
        WHERE n.origin <> 'accesslog' AND n.request_id = b.request_id AND n.action = b.action))
QUALIFY row_number() OVER (PARTITION BY b.event_id ORDER BY b.source_file) = 1;

-- name: new_counts
SELECT action, kind, client_class, count(*) FROM registry_events WHERE ingested_at = $now GROUP BY ALL;

-- name: clients
-- Every distinct client stored, for reclassification.
SELECT DISTINCT user_agent, actor, source_addr FROM registry_events;

-- name: reclassify
UPDATE registry_events e SET client_class = c.client_class, client_rule = c.client_rule
FROM _ev_classes c
WHERE e.user_agent IS NOT DISTINCT FROM c.user_agent AND e.actor IS NOT DISTINCT FROM c.actor
  AND e.source_addr IS NOT DISTINCT FROM c.source_addr
  AND (e.client_class <> c.client_class OR e.client_rule IS DISTINCT FROM c.client_rule);
