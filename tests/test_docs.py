"""The README documents every command, the quick start matches CI, and the public API is tidy."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import repoaudit
from repoaudit.cli import main
from repoaudit.queries import load_queries

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def all_commands(group, prefix=""):
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        yield full
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, full + " ")


def test_every_command_is_in_the_readme():
    missing = [c for c in all_commands(main) if f"repoaudit {c}" not in README]
    assert not missing, f"undocumented commands: {missing}"


def test_every_named_query_is_in_the_readme():
    missing = [q for q in load_queries() if f"`{q}`" not in README]
    assert not missing, f"undocumented queries: {missing}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci[-1].strip()
    assert command in README, command
    assert "pytest" in command


def test_quick_start_has_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(python3 -m pip install .+)$", quick, re.M)
    assert len(commands) == 2
    assert "repoaudit demo" in commands[0] and "pytest" in commands[1]


def test_public_api_all_is_sorted_and_importable():
    assert repoaudit.__all__ == sorted(repoaudit.__all__)
    for name in repoaudit.__all__:
        assert hasattr(repoaudit, name), name


def test_deploy_examples_are_valid_yaml():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "cronjob.yaml").read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["CronJob", "PersistentVolumeClaim"]
    container = docs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    assert "repoaudit collect" in script and "repoaudit report" in script
    workflow = yaml.safe_load((ROOT / "deploy" / "github-actions-audit.yml").read_text())
    assert any("repoaudit collect" in str(step.get("run", "")) for step in workflow["jobs"]["audit"]["steps"])
