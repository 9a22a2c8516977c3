-- name: remediation_mttr
-- description: Mean time to remediate per severity and team namespace (first path component of the repository),
-- from vulnerability_lifecycle: fixed findings, their mean and longest days open (first seen → fixed) and mean
-- days from a fix being available to the fixed image's push, per month of the fix when by_month (the trend),
-- else over all time; open is how many are still open as of as_of (over all time only).
-- param: as_of TIMESTAMP = NULL | ignore scans after this time, count open days up to it (default: now)
-- param: by_month BOOLEAN = true | one row per month of fix (the trend); false: one row per severity and namespace
-- param: registry VARCHAR = NULL | only this registry
WITH l AS (
    SELECT * FROM vulnerability_lifecycle_at(coalesce($as_of, now()::TIMESTAMP))
    WHERE $registry IS NULL OR registry = $registry
)
SELECT severity, namespace,
       CASE WHEN $by_month THEN date_trunc('month', fixed_at)::DATE END AS month,
       count(*) FILTER (WHERE status = 'fixed') AS fixed,
       -- Means rounded as decimals (then doubles again): a double's half (0.15 is 0.1499…) rounds down on DuckDB
       -- and up on Spark.
       round((avg(days_open) FILTER (WHERE status = 'fixed'))::DECIMAL(18, 6), 1)::DOUBLE AS mttr_days,
       round((avg(days_since_fix_available) FILTER (WHERE status = 'fixed'))::DECIMAL(18, 6), 1)::DOUBLE
           AS mttr_from_fix_days,
       max(days_open) FILTER (WHERE status = 'fixed') AS max_days_open,
       CASE WHEN NOT $by_month THEN count(*) FILTER (WHERE status = 'open') END AS open
FROM l
WHERE NOT $by_month OR status = 'fixed'
GROUP BY severity, namespace, 3
ORDER BY CASE severity WHEN 'CRITICAL' THEN 4 WHEN 'HIGH' THEN 3 WHEN 'MEDIUM' THEN 2 WHEN 'LOW' THEN 1 ELSE 0 END DESC,
         namespace, month;
