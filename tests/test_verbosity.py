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


def test_repository_globs_are_doublestar_and_a_miss_is_said(registry, pusher, tmp_path, monkeypatch):
    for name in ("team/app", "team/sub/api", "other/x"):
        pusher.push_image(name, ["1"])
    monkeypatch.setenv("REPOAUDIT_DB", str(tmp_path / "g.duckdb"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    one = run("collect", registry.url, "--no-progress", "--repo", "team/*", "--repo", "nope/*")
    assert "repositories 1," in one.stdout  # team/* stops at '/', as retention's --repo does
    assert "repoaudit: --repo 'nope/*' matches no repository of 3" in one.stderr
    both = run("collect", registry.url, "--no-progress", "--repo", "team/**", "--exclude-repo", "{x,y}")
    assert "repositories 2," in both.stdout
    assert "--exclude-repo '{x,y}' matches no repository" in both.stderr
    bad = CliRunner().invoke(main, ["collect", registry.url, "--repo", "team/[a"])
    assert bad.exit_code == 1 and "invalid repository glob 'team/[a'" in bad.stderr
