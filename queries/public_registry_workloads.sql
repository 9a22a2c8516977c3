-- name: public_registry_workloads
-- description: Running workloads that pull straight from a public registry (Docker Hub, GHCR, Quay, …) instead
-- of an internal mirror, per owner and container, with whether the image is pinned by digest and, when a
-- collected registry already holds the same digest, where (a mirror the workload could use instead).
-- param: public_registries VARCHAR = 'docker.io,ghcr.io,quay.io,gcr.io,registry.k8s.io,k8s.gcr.io,public.ecr.aws,mcr.microsoft.com,nvcr.io,registry.gitlab.com,docker.elastic.co,cgr.dev' | comma-separated hosts; subdomains count too (docker.io covers index.docker.io, gcr.io covers eu.gcr.io)
-- param: cluster VARCHAR = NULL | only this cluster
-- param: namespace VARCHAR = NULL | only this Kubernetes namespace
WITH public AS (
    SELECT DISTINCT lower(trim(host)) AS host
    FROM (SELECT unnest(string_split($public_registries, ',')) AS host)
    WHERE trim(host) <> ''
), w AS (
    SELECT wi.*, p.host AS public_registry
    FROM workload_images wi
    JOIN public p ON lower(wi.registry) = p.host OR ends_with(lower(wi.registry), '.' || p.host)
    WHERE ($cluster IS NULL OR wi.cluster = $cluster) AND ($namespace IS NULL OR wi.namespace = $namespace)
), mirrors AS (
    SELECT DISTINCT sm.digest, sm.registry || '/' || sm.repository AS location
    FROM snapshot_manifests sm JOIN latest_snapshot ls ON ls.snapshot_id = sm.snapshot_id
)
SELECT w.cluster, w.namespace, coalesce(w.owner_kind, 'Pod') AS owner_kind, coalesce(w.owner_name, w.pod) AS owner_name,
       w.container, w.init, w.image_ref, w.registry, w.repository, w.tag, w.pinned_by_digest,
       count(DISTINCT w.pod) AS pods,
       count(DISTINCT w.pod) FILTER (WHERE w.phase = 'Running') AS running_pods,
       string_agg(DISTINCT w.digest, ', ' ORDER BY w.digest) AS digests,
       string_agg(DISTINCT m.location, ', ' ORDER BY m.location) AS mirrored_in
FROM w
LEFT JOIN mirrors m ON m.digest = w.digest AND m.location NOT LIKE w.registry || '/%'
GROUP BY ALL
ORDER BY running_pods DESC, w.cluster, w.namespace, owner_name, w.container;
