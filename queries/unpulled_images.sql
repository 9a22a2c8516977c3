-- name: unpulled_images
-- description: Images of each registry's latest snapshot with their last pull by a container runtime (registry
-- events: scanners, replication, CI tools and people do not count) and whether that answer is complete: known is
-- true where the registry's events cover the last N days before the snapshot or the image's whole life (its push
-- event came after events began). pulled_recently: a runtime pulled it in those N days. Registries without events
-- are listed with known false.
-- param: days INTEGER = 30 | the window before each registry's latest snapshot
-- param: registry VARCHAR = NULL | only this registry
-- param: namespace VARCHAR = NULL | only this team namespace (first path component of the repository)
SELECT i.registry, split_part(i.repository, '/', 1) AS namespace, i.repository, i.digest, i.tags, i.size,
       coalesce(p.pushed_at, i.pushed_at) AS pushed_at, CASE WHEN p.pushed_at IS NULL THEN i.pushed_source
                                                           ELSE 'event' END AS pushed_source,
       lp.last_pulled_at, coalesce(lp.pulls, 0) AS runtime_pulls, c.events_since,
       coalesce(c.events_since <= greatest(i.snapshot_at - to_days($days), coalesce(p.pushed_at, '-infinity')),
                false) AS known,
       coalesce(lp.last_pulled_at >= i.snapshot_at - to_days($days), false) AS pulled_recently
FROM latest_image_push($registry, $namespace) i
LEFT JOIN event_push_times p ON p.registry = i.registry AND p.repository = i.repository AND p.digest = i.digest
LEFT JOIN last_pull lp ON lp.registry = i.registry AND lp.repository = i.repository AND lp.digest = i.digest
LEFT JOIN event_coverage c ON c.registry = i.registry
ORDER BY pulled_recently, known DESC, i.registry, i.repository, pushed_at, i.digest;
