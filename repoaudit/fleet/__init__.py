"""Beyond one machine: sharded collection as Kubernetes Indexed Jobs, and named queries on Spark.

``deploy`` renders the manifests (an Indexed Job whose pods each collect one shard, and a Job that
merges the shards and appends them to the Parquet lake); ``spark`` runs the named queries, transpiled
from DuckDB SQL with sqlglot, on a Spark session over that lake.
"""

from repoaudit.fleet.deploy import FleetSpec, render_manifests, render_yaml

__all__ = ["FleetSpec", "render_manifests", "render_yaml"]
