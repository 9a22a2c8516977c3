"""Kubernetes manifests for a sharded collection: an Indexed Job, then a merge-and-export Job.

``render_manifests(FleetSpec(...))`` returns two ``batch/v1`` Jobs as plain dicts:

* ``<name>-collect-<run>``: ``completionMode: Indexed`` with ``completions = parallelism = shards``;
  pod *i* (``$JOB_COMPLETION_INDEX``) runs ``repoaudit collect URL --shard i/N`` into its own
  database on the shared volume, ``<data>/shards/shard-i-of-N.duckdb`` (kept between runs, so each
  shard's next collection is incremental), and then drops a marker ``<data>/shards/<run>/i.done``.
* ``<name>-merge-<run>``: waits until every shard's marker of this run is there (or ``wait_minutes``
  have passed: a shard that never finished makes the merged snapshot ``partial``, as
  ``repoaudit merge`` records), merges the finished shards into ``<data>/repoaudit.duckdb`` and
  appends the new snapshot to the Parquet lake under ``<data>/lake``.

Both Jobs can be applied together: the markers order them, so no controller beyond the Job one is
needed. The pods' command lines are plain POSIX shell scripts, the same ones the tests run locally
with N processes against a real registry.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

from repoaudit.errors import ConfigError

# Indexed Jobs allow far more, but one registry split past this many shards is a mistake, not a plan.
MAX_SHARDS = 256
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class FleetSpec:
    """What a sharded run collects, where it keeps its files and how its pods are built."""

    registry_url: str
    shards: int
    run: str
    image: str = "registry.example.com/platform/repoaudit:0.1.0"
    namespace: str = "platform-audit"
    name: str = "repoaudit"
    claim: str = "repoaudit-data"
    data_dir: str = "/data"
    auth_secret: str | None = "regcred"
    wait_minutes: int = 360
    collect_args: tuple[str, ...] = field(default=())

    def __post_init__(self):
        url = urlsplit(self.registry_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"registry URL {self.registry_url!r} is not an http(s) URL")
        if url.username or url.password:
            raise ConfigError("registry URL carries credentials; give them as the auth Secret instead")
        if not isinstance(self.shards, int) or not 1 <= self.shards <= MAX_SHARDS:
            raise ConfigError(f"--shards {self.shards!r} is out of range (1 to {MAX_SHARDS})")
        for label, value in (("--run", self.run), ("--name", self.name), ("--namespace", self.namespace),
                             ("--claim", self.claim)):
            if not _DNS_LABEL.match(value or ""):
                raise ConfigError(f"{label} {value!r} is not a DNS label (lower-case letters, digits, '-')")
        # Job names get "-collect-" plus the run appended and must stay within 63 characters.
        if len(f"{self.name}-collect-{self.run}") > 63:
            raise ConfigError(f"--name and --run are too long together ({self.name}-collect-{self.run})")
        if self.auth_secret is not None and not _DNS_LABEL.match(self.auth_secret):
            raise ConfigError(f"--auth-secret {self.auth_secret!r} is not a Secret name")
        if not self.image or any(c.isspace() for c in self.image):
            raise ConfigError(f"--image {self.image!r} is not an image reference")
        if not self.data_dir.startswith("/") or any(c.isspace() for c in self.data_dir):
            raise ConfigError(f"--data-dir {self.data_dir!r} must be an absolute path without spaces")
        if self.wait_minutes < 1:
            raise ConfigError(f"--wait-minutes {self.wait_minutes!r} must be at least 1")

    def shard_db(self, index: str | int) -> str:
        return f"{self.data_dir.rstrip('/')}/shards/shard-{index}-of-{self.shards}.duckdb"

    @property
    def marker_dir(self) -> str:
        return f"{self.data_dir.rstrip('/')}/shards/{self.run}"

    @property
    def database(self) -> str:
        return f"{self.data_dir.rstrip('/')}/repoaudit.duckdb"

    @property
    def lake(self) -> str:
        return f"{self.data_dir.rstrip('/')}/lake"


def collect_script(spec: FleetSpec) -> str:
    """What pod ``$JOB_COMPLETION_INDEX`` of the Indexed Job runs."""
    q = shlex.quote
    extra = "".join(f" {q(a)}" for a in spec.collect_args)
    return (
        'i="$JOB_COMPLETION_INDEX"\n'
        f"mkdir -p {q(spec.marker_dir)}\n"
        f'repoaudit collect {q(spec.registry_url)} --shard "$i/{spec.shards}" '
        f'--db "{spec.shard_db("$i")}" --no-progress{extra}\n'
        # Written only when the collection succeeded (sh -e): the merge waits for these.
        f'touch "{spec.marker_dir}/$i.done"\n'
    )


def merge_script(spec: FleetSpec) -> str:
    """What the follow-up Job runs: wait for the shards of this run, merge them, append to the lake."""
    q = shlex.quote
    last = spec.shards - 1
    return (
        f"deadline=$(( $(date +%s) + {spec.wait_minutes * 60} ))\n"
        f"until [ \"$(ls {q(spec.marker_dir)} 2>/dev/null | grep -c '\\.done$')\" -ge {spec.shards} ]; do\n"
        f'  if [ "$(date +%s)" -ge "$deadline" ]; then echo "not every shard finished; merging the rest" >&2; break; fi\n'
        "  sleep 10\n"
        "done\n"
        "set --\n"
        f"for i in $(seq 0 {last}); do\n"
        f'  if [ -e "{spec.marker_dir}/$i.done" ]; then set -- "$@" "{spec.shard_db("$i")}"; fi\n'
        "done\n"
        'if [ "$#" -eq 0 ]; then echo "no shard of this run finished" >&2; exit 1; fi\n'
        f'repoaudit merge "$@" -o {q(spec.database)}\n'
        f"repoaudit export --db {q(spec.database)} --parquet {q(spec.lake)} --append\n"
    )


def _pod(spec: FleetSpec, container: str, script: str, memory: str) -> dict:
    env = [{"name": "HOME", "value": "/tmp"}]
    mounts = [{"name": "data", "mountPath": spec.data_dir}]
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": spec.claim}}]
    if spec.auth_secret:
        env.append({"name": "DOCKER_CONFIG", "value": "/etc/registry-auth"})  # read as $DOCKER_CONFIG/config.json
        mounts.append({"name": "registry-auth", "mountPath": "/etc/registry-auth", "readOnly": True})
        volumes.append({"name": "registry-auth", "secret": {
            "secretName": spec.auth_secret, "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}})
    return {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
        "containers": [{
            "name": container,
            "image": spec.image,
            "command": ["/bin/sh", "-ec"],
            "args": [script],
            "env": env,
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": memory}},
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    }


def _metadata(spec: FleetSpec, role: str) -> dict:
    return {"name": f"{spec.name}-{role}-{spec.run}", "namespace": spec.namespace,
            "labels": {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": role,
                       "repoaudit/run": spec.run}}


def render_manifests(spec: FleetSpec) -> list[dict]:
    """The Indexed collect Job and the merge-and-export Job, as Kubernetes objects."""
    collect = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(spec, "collect"),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.shards,
            "parallelism": spec.shards,
            # Each index retries on its own; one shard's flaky registry path does not fail the others.
            "backoffLimitPerIndex": 2,
            "maxFailedIndexes": spec.shards,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": _metadata(spec, "collect")["labels"]},
                         "spec": _pod(spec, "collect", collect_script(spec), "2Gi")},
        },
    }
    merge = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(spec, "merge"),
        "spec": {
            "backoffLimit": 1,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": _metadata(spec, "merge")["labels"]},
                         "spec": _pod(spec, "merge", merge_script(spec), "8Gi")},
        },
    }
    return [collect, merge]


class _Literal(str):
    """A multi-line string dumped as a YAML block scalar, so the scripts stay readable."""


def _literal(dumper, value):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def _blocks(value):
    if isinstance(value, dict):
        return {k: _blocks(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blocks(v) for v in value]
    if isinstance(value, str) and "\n" in value:
        return _Literal(value)
    return value


def render_yaml(spec: FleetSpec) -> str:
    header = (f"# Rendered by `repoaudit deploy render --shards {spec.shards} --run {spec.run}`; re-render, do not edit.\n"
              f"# Apply both Jobs together: the merge Job waits for the {spec.shards} shard markers of run "
              f"{spec.run}.\n")
    docs = [yaml.dump(_blocks(m), Dumper=_Dumper, sort_keys=False, width=1000) for m in render_manifests(spec)]
    return header + "---\n".join(docs)
