"""For schedulers: exit codes by snapshot status, --fail-on, and the Prometheus --metrics-file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from repoaudit.cli import EXIT_FAILED, EXIT_PARTIAL, main

ROOT = Path(__file__).resolve().parents[1]


def layout(path: Path, *, index: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    if index:
        (path / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def samples(path: Path) -> dict[tuple[str, tuple], float]:
    text = path.read_text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def trees(tmp_path):
    ok = tmp_path / "ok"
    layout(ok / "team" / "a")
    partial = tmp_path / "partial"
    layout(partial / "team" / "a")
    layout(partial / "team" / "b", index=False)
    failed = tmp_path / "failed"
    layout(failed / "team" / "b", index=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"ok": ok, "partial": partial, "failed": failed, "empty": empty}


@pytest.mark.parametrize("tree, fail_on, code, status", [
    ("ok", "failed", 0, "complete"),
    ("ok", "partial", 0, "complete"),
    ("partial", "failed", 0, "partial"),
    ("partial", "partial", EXIT_PARTIAL, "partial"),
    ("failed", "failed", EXIT_FAILED, "failed"),
    ("failed", "partial", EXIT_FAILED, "failed"),
    ("empty", "failed", EXIT_FAILED, "failed"),  # the run raises: the snapshot is recorded failed all the same
])
def test_exit_codes_and_metrics(trees, tmp_path, tree, fail_on, code, status):
    metrics = tmp_path / "repoaudit.prom"
    result = run("collect", f"oci:{trees[tree]}", "--db", tmp_path / "db.duckdb", "--no-progress",
                 "--fail-on", fail_on, "--metrics-file", metrics)
    assert result.exit_code == code, result.output
    if code:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0])
    found = samples(metrics)
    registry = f"oci:{trees[tree]}"
    for name in ("complete", "partial", "failed"):
        key = ("repoaudit_snapshot_status", (("registry", registry), ("status", name)))
        assert found[key] == (1.0 if name == status else 0.0)
    for gauge in ("duration_seconds", "requests", "errors", "unique_bytes", "snapshot_id"):
        name = gauge if gauge == "snapshot_id" else f"snapshot_{gauge}"
        assert (f"repoaudit_{name}", (("registry", registry),)) in found
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("repoaudit.prom.")]  # no temp file left


def test_collect_json_summary(trees, tmp_path):
    result = run("collect", f"oci:{trees['partial']}", "--db", tmp_path / "db.duckdb", "--no-progress",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    [summary] = json.loads(result.stdout)
    assert summary["status"] == "partial" and summary["repositories"] == 2 and summary["errors"] == 1
    assert isinstance(summary["unique_bytes"], int) and isinstance(summary["snapshot_id"], int)


def test_collect_file_worst_status(registry, pusher, tmp_path):
    """collect -f with several registries exits with the worst status and writes metrics for each."""
    from pusher import layer_bytes
    from registry import free_port

    pusher.push_image("team/app", ["1.0"], layers=[layer_bytes("x", 1024)])
    gone = f"127.0.0.1:{free_port()}"
    config = tmp_path / "repoaudit.yaml"
    config.write_text(f"registries:\n  - url: {registry.url}\n  - url: http://{gone}\n")
    metrics = tmp_path / "m.prom"
    result = run("collect", "-f", config, "--db", tmp_path / "db.duckdb", "--no-progress",
                 "--metrics-file", metrics)
    assert result.exit_code == EXIT_FAILED, result.output
    assert "cannot reach" in result.stderr
    found = samples(metrics)
    assert found[("repoaudit_snapshot_status", (("registry", registry.host), ("status", "complete")))] == 1
    assert found[("repoaudit_snapshot_status", (("registry", gone), ("status", "failed")))] == 1


def test_metrics_file_must_be_a_file(trees, tmp_path):
    result = run("collect", f"oci:{trees['ok']}", "--db", tmp_path / "db.duckdb", "--metrics-file", "-")
    assert result.exit_code == 1 and "--metrics-file -" in result.stderr
    assert not (tmp_path / "db.duckdb").exists()


def test_retention_plan_metrics(demo_db, tmp_path):
    metrics = tmp_path / "retention.prom"
    policy = ROOT / "data" / "policies" / "native-keep-releases.yaml"
    result = run("retention", "plan", "--policy", policy, "--db", demo_db, "--metrics-file", metrics)
    assert result.exit_code == 0, result.output
    found = samples(metrics)
    reclaimable = {dict(k[1])["policy"]: v for k, v in found.items() if k[0] == "repoaudit_retention_reclaimable_bytes"}
    assert len(reclaimable) == 1 and next(iter(reclaimable.values())) > 0


def test_collect_metrics_count_deployed_fixable_criticals(demo_db, tmp_path):
    import repoaudit

    with repoaudit.open(demo_db, read_only=True) as audit:
        registry = audit.query("snapshots", limit=1).iloc[0]["registry"]
        result = audit.latest_result(registry)
        fixable = audit.query("fixable_critical_deployed", min_severity="CRITICAL")
        expected = fixable[fixable["registry"] == registry]["digest"].nunique()
        audit.write_collect_metrics(tmp_path / "m.prom", [result])
    found = samples(tmp_path / "m.prom")
    assert expected > 0
    assert found[("repoaudit_deployed_images_fixable_critical", (("registry", registry),))] == expected
    assert found[("repoaudit_snapshot_status", (("registry", registry), ("status", result.status)))] == 1
