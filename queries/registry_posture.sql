-- name: registry_posture
-- description: Each registry's newest access posture, probed at collection without credentials: anonymous read
-- (a tag list or manifest of a collected repository), anonymous catalog, anonymous push (with --probe-push),
-- plain HTTP, TLS version, certificate issuer, trust (system roots, a private CA, or neither), days until the
-- certificate expires and whether TLS 1.0/1.1 is accepted; changes lists what differs from the probe before.
-- param: registry VARCHAR = NULL | only this registry
-- param: cert_warn_days INTEGER = 30 | a certificate expiring within this many days counts as a finding
SELECT registry, snapshot_id, probed_at, auth_scheme, anonymous_read, catalog_anonymous AS anonymous_catalog,
       push_anonymous AS anonymous_push, plain_http, tls_version, cert_issuer, cert_trust, cert_days_left,
       weak_tls,
       list_filter([
           CASE WHEN anonymous_read THEN 'anonymous read' END,
           CASE WHEN catalog_anonymous THEN 'anonymous catalog' END,
           CASE WHEN push_anonymous THEN 'anonymous push' END,
           CASE WHEN plain_http THEN 'plain HTTP' END,
           CASE WHEN cert_days_left < 0 THEN 'certificate expired'
                WHEN cert_days_left <= $cert_warn_days THEN 'certificate expires in ' || cert_days_left || ' days' END,
           CASE WHEN cert_trust = 'untrusted' THEN 'certificate not trusted' END,
           CASE WHEN weak_tls THEN 'accepts ' || array_to_string(weak_tls_versions, ', ') END
       ], lambda x: x IS NOT NULL) AS findings,
       CASE WHEN previous_snapshot IS NULL THEN 'first probe' ELSE coalesce(array_to_string(list_filter([
           CASE WHEN anonymous_read IS DISTINCT FROM previous_anonymous_read
                THEN 'anonymous read ' || coalesce(previous_anonymous_read::VARCHAR, '?') || ' → ' || anonymous_read END,
           CASE WHEN catalog_anonymous IS DISTINCT FROM previous_catalog_anonymous
                THEN 'anonymous catalog ' || coalesce(previous_catalog_anonymous::VARCHAR, '?') || ' → '
                     || coalesce(catalog_anonymous::VARCHAR, '?') END,
           CASE WHEN push_anonymous IS DISTINCT FROM previous_push_anonymous AND push_probed
                THEN 'anonymous push ' || coalesce(previous_push_anonymous::VARCHAR, '?') || ' → '
                     || coalesce(push_anonymous::VARCHAR, '?') END,
           CASE WHEN plain_http IS DISTINCT FROM previous_plain_http
                THEN 'plain HTTP ' || previous_plain_http || ' → ' || plain_http END,
           CASE WHEN cert_trust IS DISTINCT FROM previous_cert_trust
                THEN 'trust ' || coalesce(previous_cert_trust, '?') || ' → ' || coalesce(cert_trust, '?') END,
           CASE WHEN cert_days_left > previous_cert_days_left THEN 'certificate renewed' END,
           CASE WHEN weak_tls IS DISTINCT FROM previous_weak_tls
                THEN 'weak TLS ' || coalesce(previous_weak_tls::VARCHAR, '?') || ' → ' || coalesce(weak_tls::VARCHAR, '?') END
       ], lambda x: x IS NOT NULL), '; '), '') END AS changes,
       previous_snapshot, sample_repository, errors
FROM posture_history
WHERE ($registry IS NULL OR registry = $registry)
QUALIFY row_number() OVER (PARTITION BY registry ORDER BY probed_at DESC, snapshot_id DESC) = 1
ORDER BY len(findings) DESC, registry;
