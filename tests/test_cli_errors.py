"""The CLI's error contract: one line on stderr, a meaningful exit code, no traceback, nothing stored.

Exit codes: 1 for an error repoaudit reports, 2 for usage, 70 for a bug (with a log
file), 130 for an interrupt. Arguments and output paths are checked before the
database is opened.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import repoaudit
import repoaudit.cli
from repoaudit.cli import EXIT_INTERNAL, EXIT_USAGE, main

DEEP_JSON = "[" * 200_000 + "]" * 200_000


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("REPOAUDIT_DB", str(tmp_path / "cli.duckdb"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)

    def invoke(*args, input=None):
        return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


def one_line(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(("Error: ", "repoaudit: ")), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- usage errors and the last resort ----------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (("collect", "--bogus"), "No such option '--bogus'"),
    (("collect", "http://x", "--concurrency", "0"), "Invalid value for '--concurrency'"),
    (("query",), "Missing argument 'NAME'"),
    (("no-such-command",), "No such command 'no-such-command'"),
    (("ingest", "snyk", "x.json"), "No such command 'snyk'"),
])
def test_usage_errors_are_one_line_exit_2(cli, args, fragment):
    line = one_line(cli(*args), EXIT_USAGE, fragment)
    assert "--help'" in line  # says where to look
    assert EXIT_USAGE == 2


def test_help_still_works(cli):
    result = cli("collect", "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_last_resort_handler_logs_the_traceback(cli, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("wheels came off\nsecond line")

    monkeypatch.setattr(repoaudit.cli, "Audit", broken)
    result = cli("collect", "http://127.0.0.1:1", "--proxy", "http://user:hunter2@proxy:3128")
    line = one_line(result, EXIT_INTERNAL, "internal error (RuntimeError: wheels came off second line)",
                    "this is a bug, please report it with ")
    log = tmp_path / "state" / "repoaudit"
    (path,) = log.iterdir()
    assert line.endswith(str(path))
    text = path.read_text()
    assert "Traceback" in text and "wheels came off" in text and "def broken" not in text
    assert "hunter2" not in text  # a proxy password in the arguments is not copied into the log
    assert EXIT_INTERNAL == 70


def test_repoaudit_errors_keep_exit_1(cli):
    one_line(cli("snapshots"), 1, "does not exist")


# -- arguments checked before the database is touched ------------------------------------


def test_bad_exclude_tag_regex_writes_no_snapshot(cli, tmp_path):
    db = tmp_path / "cli.duckdb"
    one_line(cli("collect", "http://127.0.0.1:1", "--exclude-tag", "("), 1,
             "invalid tag exclusion regex '('", "missing )")
    assert not db.exists()  # not even created
    repoaudit.open(db).close()
    one_line(cli("collect", "http://127.0.0.1:1", "--exclude-tag", "ok", "--exclude-tag", "[z-a]"), 1,
             "invalid tag exclusion regex '[z-a]'")
    with repoaudit.open(db, read_only=True) as audit:
        assert audit.sql("SELECT count(*) AS n FROM snapshots")["n"][0] == 0


def test_bad_exclude_tag_regex_in_the_library_writes_no_snapshot(tmp_path):
    with repoaudit.open(tmp_path / "lib.duckdb") as audit:
        with pytest.raises(repoaudit.ConfigError, match="invalid tag exclusion regex"):
            audit.collect("http://127.0.0.1:1", exclude_tags=["("], progress=False)
        assert audit.sql("SELECT count(*) AS n FROM snapshots")["n"][0] == 0


@pytest.mark.parametrize("args, fragment", [
    (("--shard", "4/4"), "invalid shard 4/4"),
    (("--repo", ""), "invalid repository glob ''"),
    (("--repository", " "), "invalid repository ' '"),
])
def test_other_collect_arguments_are_checked_first(cli, tmp_path, args, fragment):
    one_line(cli("collect", "http://127.0.0.1:1", *args), 1, fragment)
    assert not (tmp_path / "cli.duckdb").exists()


def test_deep_flux_file_for_collect_is_one_line(cli, tmp_path):
    path = tmp_path / "flux.yaml"
    path.write_text("apiVersion: v1\nkind: List\nitems: " + DEEP_JSON + "\n")
    one_line(cli("collect", "-f", path), 1, f"{path}:3:", "nested deeper than 100 levels")
    path.write_text("kind: ImageRepository\nmetadata:\n  name: a\x9b\n")
    one_line(cli("collect", "-f", path), 1, f"{path}:3:", "control character U+009B")
    assert not (tmp_path / "cli.duckdb").exists()


# -- output paths ------------------------------------------------------------------------


def _bad_outputs(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    (tmp_path / "a-dir").mkdir(exist_ok=True)
    # A directory is refused by click's own path check: a usage error, exit 2.
    return [(tmp_path / "no" / "dir" / "x.out", "does not exist", 1),
            (a_file / "x.out", "is not a directory", 1),
            (tmp_path / "a-dir", "is a directory", EXIT_USAGE)]


VERBS = {
    "query": lambda out: ("query", "snapshots", "-o", out),
    "retention plan": lambda out: ("retention", "plan", "--policy", "p.yaml", "-o", out),
    "report": lambda out: ("report", "-o", out),
    "export --csv": lambda out: ("export", "tags", "--csv", out),
    "merge": lambda out: ("merge", "a.duckdb", "-o", out),
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_unwritable_output_paths_fail_before_the_database_is_read(cli, tmp_path, verb):
    for out, fragment, code in _bad_outputs(tmp_path):
        one_line(cli(*VERBS[verb](out)), code, str(out), fragment)
    assert not (tmp_path / "cli.duckdb").exists()


def test_parquet_directory_is_checked_too(cli, tmp_path):
    one_line(cli("export", "--parquet", tmp_path / "no" / "dir"), 1, "does not exist")
    (tmp_path / "a-file").write_text("x")
    one_line(cli("export", "--parquet", tmp_path / "a-file"), EXIT_USAGE, "is a file")
    assert not (tmp_path / "cli.duckdb").exists()


def test_dash_is_standard_output_and_never_a_file(cli, tmp_path):
    repoaudit.open(tmp_path / "cli.duckdb").close()
    result = cli("query", "snapshots", "--format", "csv", "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("snapshot_id,")
    result = cli("export", "snapshots", "--csv", "-")
    assert result.exit_code == 0 and result.stdout.startswith("snapshot_id,")
    result = cli("report", "--format", "md", "-o", "-")
    assert result.exit_code == 0 and result.stdout.startswith("**Registry audit**")
    one_line(cli("retention", "plan", "--policy", "p.yaml", "-o", "-"), 1, "--format json")
    one_line(cli("merge", "a.duckdb", "-o", "-"), 1, "cannot be standard output")
    assert not (tmp_path / "-").exists()


# -- ingest: hostile files, malformed pod listings -----------------------------------------


def _pod(name: str, containers) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "apps"},
            "spec": {"containers": containers}, "status": {"phase": "Running"}}


def test_malformed_pod_listings_store_nothing_and_keep_earlier_workloads(cli, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"kind": "PodList", "items": [_pod("web", [{"name": "web", "image": "nginx:1"}])]}))
    assert cli("ingest", "pods", good, "--cluster", "prod").exit_code == 0
    cases = {
        "containers-string.json": ([_pod("a", "nginx")], "items[0] (pod apps/a): spec.containers is str"),
        "image-number.json": ([_pod("b", [{"name": "b", "image": 42}])],
                              "items[0] (pod apps/b): spec.containers[0].image is int, expected a string"),
        "no-containers.json": ([_pod("c", [])], "spec.containers is list, expected a non-empty list"),
        "container-string.json": ([_pod("d", ["nginx"])], "spec.containers[0] is str, expected a container"),
    }
    for name, (items, fragment) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps({"kind": "PodList", "items": items}))
        one_line(cli("ingest", "pods", path, "--cluster", "prod"), 1, str(path), fragment)
    one_line(cli("ingest", "pods", good, tmp_path / "containers-string.json", "--cluster", "prod"), 1,
             "spec.containers is str")
    with repoaudit.open(tmp_path / "cli.duckdb", read_only=True) as audit:
        assert audit.sql("SELECT count(*) AS n FROM workload_snapshots")["n"][0] == 1
        current = audit.sql("SELECT pod, image_ref FROM current_workloads")
        assert list(current["pod"]) == ["web"]


@pytest.mark.parametrize("kind", ["trivy", "grype", "cyclonedx", "pods"])
def test_deep_and_oversized_ingest_files_are_one_line(cli, tmp_path, kind, monkeypatch):
    path = tmp_path / f"{kind}.json"
    path.write_text('{"a": ' + DEEP_JSON + "}")
    one_line(cli("ingest", kind, path), 1, f"{path}:1:", "nested deeper than 100 levels")
    from repoaudit import loader

    monkeypatch.setitem(loader.MAX_BYTES, "pods" if kind == "pods" else "scan", 100)
    path.write_text('{"a": "' + "x" * 200 + '"}')
    one_line(cli("ingest", kind, path), 1, f"{path}: larger than 100 bytes")
    with repoaudit.open(tmp_path / "cli.duckdb", read_only=True) as audit:
        assert audit.sql("SELECT (SELECT count(*) FROM scans) + (SELECT count(*) FROM workload_snapshots) AS n"
                         )["n"][0] == 0


def test_deep_policy_is_one_line(cli, tmp_path):
    repoaudit.open(tmp_path / "cli.duckdb").close()
    policy = tmp_path / "p.json"
    policy.write_text('{"rules": ' + DEEP_JSON + "}")
    one_line(cli("retention", "plan", "--policy", policy), 1, f"{policy}:1:", "nested deeper than")
