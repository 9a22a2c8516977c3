-- name: mutable_tag_deployments
-- description: Running workloads that pull an image by tag rather than by digest, per owner (Deployment's
-- ReplicaSet, DaemonSet, …) and container: the digests its pods actually run, where the tag points in the
-- registry's latest snapshot, and whether it has moved since (the next restart would run something else).
-- param: cluster VARCHAR = NULL | only this cluster
-- param: namespace VARCHAR = NULL | only this Kubernetes namespace
WITH w AS (
    SELECT * FROM workload_images
    WHERE NOT pinned_by_digest
      AND ($cluster IS NULL OR cluster = $cluster) AND ($namespace IS NULL OR namespace = $namespace)
), grouped AS (
    SELECT cluster, namespace, coalesce(owner_kind, 'Pod') AS owner_kind, coalesce(owner_name, pod) AS owner_name,
           container, init, image_ref, registry, repository, tag,
           count(DISTINCT pod) AS pods,
           count(DISTINCT pod) FILTER (WHERE phase = 'Running') AS running_pods,
           list(DISTINCT digest ORDER BY digest) FILTER (WHERE digest IS NOT NULL) AS running,
           min(digest_source) AS digest_source
    FROM w
    GROUP BY ALL
)
SELECT g.cluster, g.namespace, g.owner_kind, g.owner_name, g.container, g.init, g.image_ref, g.tag,
       g.pods, g.running_pods, array_to_string(g.running, ', ') AS running_digests, len(g.running) AS digest_count,
       i.digest AS tag_digest_now,
       CASE WHEN i.digest IS NULL OR len(g.running) = 0 THEN NULL
            ELSE NOT (list_contains(g.running, i.digest)
                      OR EXISTS (SELECT 1 FROM manifest_children c
                                 WHERE c.registry = i.registry AND c.index_digest = i.digest
                                   AND list_contains(g.running, c.child_digest)))
       END AS tag_moved
FROM grouped g
LEFT JOIN images i ON i.registry = g.registry AND i.repository = g.repository AND i.tag = g.tag
ORDER BY tag_moved DESC NULLS LAST, g.running_pods DESC, g.cluster, g.namespace, g.owner_name, g.container;
