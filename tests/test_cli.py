"""The CLI: thin over the library, one-line errors, non-zero exits, no partial data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import repoaudit
from pusher import layer_bytes
from registry import free_port
from repoaudit.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("REPOAUDIT_DB", str(tmp_path / "cli.duckdb"))
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


def one_line_error(result, *fragments):
    assert result.exit_code != 0, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_collect_then_query_export(cli, registry, pusher, tmp_path):
    pusher.push_image("team/app", ["1.0", "latest"], layers=[layer_bytes("x", 2048)])
    pusher.push_image("team/web", ["2"], layers=[layer_bytes("y", 4096)])
    result = cli("collect", registry.url, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"of {registry.host}: complete (full)" in result.stdout
    assert "repositories 2, tags 3, manifests 2 (2 new)" in result.stdout

    out = cli("sql", "SELECT repository, tag FROM images ORDER BY 1, 2", "--format", "json")
    assert json.loads(out.stdout) == [{"repository": "team/app", "tag": "1.0"},
                                      {"repository": "team/app", "tag": "latest"},
                                      {"repository": "team/web", "tag": "2"}]
    snaps = cli("snapshots", "--format", "csv")
    assert snaps.stdout.splitlines()[0].startswith("snapshot_id,registry,status")
    q = cli("query", "repository_summary", "--format", "csv")
    assert q.exit_code == 0 and "team/web" in q.stdout
    csv_path = tmp_path / "out" / "tags.csv"
    one_line_error(cli("export", "tags", "--csv", csv_path), f"{tmp_path / 'out'} does not exist")
    csv_path.parent.mkdir()  # output directories are not created: a typo in one is an error, before any work
    exp = cli("export", "tags", "--csv", csv_path)
    assert exp.stdout.strip() == f"3 rows written to {csv_path}"
    assert len(csv_path.read_text().splitlines()) == 4
    exp = cli("export", "snapshots", "--csv", tmp_path / "s.csv", "-p", "limit=1")
    one_line_error(exp, "snapshots is a table or view and takes no parameters")


def test_unreachable_registry(cli, tmp_path):
    result = cli("collect", f"http://127.0.0.1:{free_port()}", "--no-progress")
    line = one_line_error(result, "cannot reach http://127.0.0.1:", "ConnectError")
    assert line.startswith("Error: ")
    with repoaudit.open(tmp_path / "cli.duckdb", read_only=True) as audit:
        snap = audit.query("snapshots")
        assert list(snap["status"]) == ["failed"] and "cannot reach" in snap["error"][0]
        assert audit.sql("SELECT count(*) FROM tags").iloc[0, 0] == 0


@pytest.mark.parametrize("url, fragment", [
    ("ftp://example.com", "unsupported scheme 'ftp'"),
    ("https://example.com/some/path", "give the registry root"),
])
def test_bad_urls(cli, url, fragment):
    one_line_error(cli("collect", url, "--no-progress"), fragment)


def test_layout_without_index(cli, tmp_path):
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    result = cli("collect", f"oci:{layout}", "--no-progress")
    one_line_error(result, "failed", "all 1 repositories failed")
    with repoaudit.open(tmp_path / "cli.duckdb", read_only=True) as audit:
        err = audit.sql("SELECT error FROM collection_errors").iloc[0, 0]
        assert "missing index.json" in err
        assert audit.sql("SELECT count(*) FROM tags").iloc[0, 0] == 0


def test_unknown_query_and_parameter(cli, registry):
    cli("collect", registry.url, "--no-progress")
    line = one_line_error(cli("query", "no_such_query"), "unknown query 'no_such_query'", "repository_summary")
    assert "snapshots" in line
    one_line_error(cli("query", "snapshots", "-p", "bogus=1"), "query snapshots has no parameter bogus",
                   "valid: registry, limit")
    one_line_error(cli("query", "snapshots", "-p", "limit=many"), "parameter limit wants INTEGER, got 'many'")
    one_line_error(cli("query", "snapshots", "-p", "limit"), "--param wants key=value")
    one_line_error(cli("export", "nothing", "--csv", "x.csv"), "unknown table, view or query 'nothing'")
    one_line_error(cli("sql", "SELEC 1"), "SQL failed")


def test_queries_lists_every_query(cli):
    out = cli("queries", "--format", "json")
    names = {q["name"] for q in json.loads(out.stdout)}
    assert {"snapshots", "repository_summary", "shared_layers"} <= names


def test_password_stdin_needs_username(cli, registry):
    one_line_error(cli("collect", registry.url, "--password-stdin", input="secret\n"),
                   "--password-stdin needs --username")


def test_missing_database_for_reading(cli, tmp_path):
    one_line_error(cli("snapshots", "--db", tmp_path / "absent.duckdb"), "does not exist")


def test_every_command_has_help(cli):
    for command in main.commands:
        result = cli(command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout


def test_demo_writes_its_database_under_dir(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray default path would land here, under data/demo
    out = tmp_path / "elsewhere"
    result = cli("demo", "--dir", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert (out / "repoaudit-demo.duckdb").is_file() and (out / "report.html").is_file()
    assert not (tmp_path / "data").exists()
    assert f"--db {out / 'repoaudit-demo.duckdb'}" in result.output
    with repoaudit.open(out / "repoaudit-demo.duckdb", read_only=True) as audit:
        assert len(audit.snapshots()) == 3


def test_progress_bars_only_for_people(tmp_path):
    """`repoaudit demo > log 2>&1` writes no bar frames: stderr is not a terminal there."""
    import io

    from repoaudit.collect.progress import NullProgress, TqdmProgress, for_people

    assert isinstance(for_people("x", stream=io.StringIO()), NullProgress)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(for_people("x", stream=Terminal()), TqdmProgress)
    log = tmp_path / "log"
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-m", "repoaudit.cli", "demo", "--dir", str(tmp_path / "demo")],
                       stdout=out, stderr=subprocess.STDOUT, check=True, timeout=300, cwd=ROOT)
    text = log.read_text()
    assert "\r" not in text and "\x1b[" not in text and "it/s" not in text, text[:2000]
    assert "report" in text
