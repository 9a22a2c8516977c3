"""`repoaudit deploy render`: the Indexed Job manifests validate against the Kubernetes API schema, and
their own command lines, run locally as N processes against a real registry, merge into exactly the
snapshot one full collection writes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from test_merge import rows, seed

import repoaudit
from repoaudit.cli import main
from repoaudit.errors import ConfigError
from repoaudit.fleet.deploy import FleetSpec, render_manifests, render_yaml
from repoaudit.store.exports import read_lake_schema, read_parquet_sql

k8s = pytest.importorskip("kubernetes.client")
ROOT = Path(__file__).resolve().parents[1]


def job_schema() -> dict:
    # The client's models are generated from the API server's OpenAPI document; by alias, with
    # additionalProperties false, so a snake_case or misspelt field fails as the server would refuse it.
    return k8s.V1Job.model_json_schema(by_alias=True)


def validate_job(manifest: dict) -> None:
    k8s.V1Job.model_validate(manifest)
    jsonschema.validate(manifest, job_schema())
    spec = manifest["spec"]
    pod = spec["template"]["spec"]
    # What the API server checks beyond the schema (batch/v1 Job validation).
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    if spec.get("completionMode") == "Indexed":
        assert spec["completions"] >= 1 and spec["parallelism"] <= spec["completions"]
    if "backoffLimitPerIndex" in spec:
        assert spec["completionMode"] == "Indexed" and pod["restartPolicy"] == "Never"
        assert spec.get("maxFailedIndexes", 0) <= spec["completions"]
    assert len(manifest["metadata"]["name"]) <= 63
    mounts = {m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
    assert mounts <= {v["name"] for v in pod["volumes"]}


@pytest.mark.parametrize("shards", [1, 4, 32])
def test_rendered_jobs_validate(shards):
    text = render_yaml(FleetSpec("https://registry.example.com", shards, "20260101"))
    collect, merge = list(yaml.safe_load_all(text))
    for job in (collect, merge):
        validate_job(job)
    assert collect["spec"]["completionMode"] == "Indexed"
    assert collect["spec"]["completions"] == collect["spec"]["parallelism"] == shards
    script = collect["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f'--shard "$i/{shards}"' in script and "JOB_COMPLETION_INDEX" in script
    assert "repoaudit merge" in merge["spec"]["template"]["spec"]["containers"][0]["args"][0]


def test_the_validator_rejects_what_the_api_server_would():
    good = render_manifests(FleetSpec("https://r.example", 2, "r1"))[0]
    for breaks in (lambda j: j["spec"].__setitem__("completions", "two"),
                   lambda j: j["spec"]["template"]["spec"]["containers"][0].pop("name"),
                   lambda j: j["spec"]["template"]["spec"]["containers"][0].__setitem__("volume_mounts", []),
                   lambda j: j["spec"].__setitem__("completionMode", None) or j["spec"].__setitem__("parallelism", 9)):
        bad = copy.deepcopy(good)
        breaks(bad)
        with pytest.raises(Exception):
            validate_job(bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"registry_url": "ftp://x"}, "not an http"),
    ({"registry_url": "https://u:p@r.example"}, "credentials"),
    ({"shards": 0}, "out of range"),
    ({"shards": 100_000}, "out of range"),
    ({"run": "Run_1"}, "not a DNS label"),
    ({"name": "x" * 60}, "too long"),
    ({"data_dir": "data"}, "absolute path"),
    ({"image": "a b"}, "image reference"),
])
def test_bad_specs_are_refused(kwargs, message):
    args = {"registry_url": "https://r.example", "shards": 2, "run": "r1", **kwargs}
    with pytest.raises(ConfigError, match=message):
        FleetSpec(**args)


def test_cli_render_and_its_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "jobs.yaml"
    result = runner.invoke(main, ["deploy", "render", "https://r.example", "--shards", "3", "--run", "r7",
                                  "--collect-arg", "--concurrency", "--collect-arg", "32", "-o", str(out)])
    assert result.exit_code == 0, result.output
    collect, merge = list(yaml.safe_load_all(out.read_text()))
    assert collect["metadata"]["name"] == "repoaudit-collect-r7"
    assert "--no-progress --concurrency 32" in collect["spec"]["template"]["spec"]["containers"][0]["args"][0]
    bad = runner.invoke(main, ["deploy", "render", "https://r.example", "--shards", "0"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines()[-1].endswith("--shards 0 is out of range (1 to 256)")


@pytest.fixture
def repoaudit_on_path(tmp_path):
    """A `repoaudit` command running this checkout with this interpreter, as the image's entry point does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "repoaudit"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; from repoaudit.cli import main; "
                    f"sys.argv[0] = \"repoaudit\"; main()' \"$@\"\n")
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("REPOAUDIT_DB", None)
    return env


def run_script(script: str, env: dict, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-ec", script], env={**env, **extra}, capture_output=True, text=True,
                          timeout=300)


def test_the_jobs_command_lines_reproduce_one_collection(registry, pusher, repoaudit_on_path, tmp_path):
    seed(pusher)
    shards = 3
    data = tmp_path / "data"
    spec = FleetSpec(registry.url, shards, "r1", data_dir=str(data), wait_minutes=1)
    collect, merge = render_manifests(spec)
    for job in (collect, merge):
        validate_job(job)
    collect_script = collect["spec"]["template"]["spec"]["containers"][0]["args"][0]
    merge_script = merge["spec"]["template"]["spec"]["containers"][0]["args"][0]

    # The Indexed Job's pods: one process per completion index, all at once.
    with ThreadPoolExecutor(shards) as pool:
        done = list(pool.map(lambda i: run_script(collect_script, repoaudit_on_path, JOB_COMPLETION_INDEX=str(i)),
                             range(shards)))
    for i, proc in enumerate(done):
        assert proc.returncode == 0, f"shard {i}: {proc.stderr}"
        assert (data / "shards" / "r1" / f"{i}.done").exists()
    proc = run_script(merge_script, repoaudit_on_path)
    assert proc.returncode == 0, proc.stderr
    assert "merged from 3 databases" in proc.stdout

    single = tmp_path / "single.duckdb"
    with repoaudit.open(single) as audit:
        audit.collect(registry.url, progress=False)
    merged = data / "repoaudit.duckdb"
    with repoaudit.open(merged, read_only=True) as audit:
        merged_id, status = audit.sql("SELECT snapshot_id, status FROM snapshots").iloc[0]
    merged_id = int(merged_id)
    assert status == "complete"
    assert rows(merged, merged_id) == rows(single, 1)

    # The merge Job appended the snapshot to the lake, readable by DuckDB with the same tags.
    lake = data / "lake"
    schema = read_lake_schema(lake)
    assert schema["tables"]["tags"]["snapshots"] == {str(merged_id): len(rows(single, 1)["tags"])}
    with repoaudit.open(single, read_only=True) as audit:
        back = audit.sql(f"SELECT registry, repository, tag, digest FROM {read_parquet_sql(lake, 'tags')}")
    assert set(back.itertuples(index=False, name=None)) == rows(single, 1)["tags"]


def test_merge_job_merges_the_finished_shards_when_one_never_ends(registry, pusher, repoaudit_on_path, tmp_path):
    seed(pusher)
    data = tmp_path / "data"
    spec = FleetSpec(registry.url, 2, "r2", data_dir=str(data), wait_minutes=1)
    collect, merge = render_manifests(spec)
    script = collect["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert run_script(script, repoaudit_on_path, JOB_COMPLETION_INDEX="1").returncode == 0
    # Index 0 never finishes; rather than wait the minute out, the deadline is moved to now.
    merge_script = merge["spec"]["template"]["spec"]["containers"][0]["args"][0].replace("+ 60 ))", "+ 0 ))")
    proc = run_script(merge_script, repoaudit_on_path)
    assert proc.returncode == 0, proc.stderr
    assert "not every shard finished" in proc.stderr and "partial" in proc.stdout and "missing shards 0/2" in proc.stdout


def test_the_example_in_deploy_is_the_rendered_one():
    # deploy/fleet.yaml is generated: `repoaudit deploy render https://registry.example.com --shards 4 --run example`
    spec = FleetSpec("https://registry.example.com", 4, "example")
    assert (ROOT / "deploy" / "fleet.yaml").read_text() == render_yaml(spec)
    for job in yaml.safe_load_all((ROOT / "deploy" / "fleet.yaml").read_text()):
        validate_job(job)
