"""-q and -v on every verb: what reaches stderr, and only for people."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from repoaudit.cli import main


def leaves(group: click.Group, prefix=()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaves(command, (*prefix, name))
        else:
            yield (*prefix, name), command


@pytest.mark.parametrize("path,command", list(leaves(main)), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_verb_takes_quiet_and_verbose(path, command):
    options = {opt for p in command.params for opt in getattr(p, "opts", [])}
    assert {"-q", "--quiet", "-v", "--verbose"} <= options


@pytest.fixture
def collected(registry, pusher, tmp_path, monkeypatch):
    pusher.push_image("team/app", ["1.0", "2.0"])
    monkeypatch.setenv("REPOAUDIT_DB", str(tmp_path / "v.duckdb"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    return registry


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_verbose_levels_and_quiet(collected):
    normal = run("collect", collected.url, "--no-progress")
    assert "team/app" not in normal.stderr and "GET " not in normal.stderr
    verbose = run("collect", collected.url, "--no-progress", "-v")
    assert f"repoaudit: {collected.host}/team/app: ok, 2 of 2 tags read" in verbose.stderr
    assert "GET /v2/" not in verbose.stderr
    very = run("collect", collected.url, "--no-progress", "-vv")
    assert "repoaudit: GET /v2/team/app/tags/list (tags)" in very.stderr, very.stderr
    assert "Authorization" not in very.stderr
    quiet = run("collect", collected.url, "-q")
    assert quiet.stderr == "" and "snapshot 4 of" in quiet.stdout
