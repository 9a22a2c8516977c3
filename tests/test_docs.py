"""The docs: README.md is a short front door, docs/ is the reference.

Every command is in the CLI reference, every named query in the query list, every relative link
resolves, the README stays under 12 KB, and its quick start is what CI runs. The public API is tidy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import repoaudit
from repoaudit.cli import main
from repoaudit.analysis.queries import load_queries

ROOT = Path(__file__).resolve().parents[1]
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
DOCS = ROOT / "docs"
DOC_PATHS = sorted(DOCS.glob("*.md"))
ALL_DOCS = "\n".join(p.read_text() for p in DOC_PATHS)
README_MAX_BYTES = 12 * 1024


def all_commands(group, prefix=""):
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        yield full
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, full + " ")


def quick_start() -> str:
    return README.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_readme_is_a_front_door():
    size = len(README.encode())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move reference text to docs/"


def test_every_command_is_in_the_cli_reference():
    cli = (DOCS / "cli.md").read_text()
    missing = [c for c in all_commands(main) if f"repoaudit {c}" not in cli]
    assert not missing, f"commands missing from docs/cli.md: {missing}"


def test_every_named_query_is_in_the_query_list():
    listed = (DOCS / "queries.md").read_text()
    missing = [q for q in load_queries() if f"`{q}`" not in listed]
    assert not missing, f"queries missing from docs/queries.md: {missing}"


def test_readme_and_the_index_link_every_docs_page():
    index = (DOCS / "README.md").read_text()
    for page in DOC_PATHS:
        if page.name != "README.md":
            assert f"](docs/{page.name}" in README, f"README.md does not link docs/{page.name}"
            assert f"]({page.name}" in index, f"docs/README.md does not link {page.name}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def relative_links(path: Path):
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto: …
            yield target


@pytest.mark.parametrize("path", [README_PATH, *DOC_PATHS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path):
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        assert dest.exists(), f"{path.name}: link {target} points at no file"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{path.name}: link {target}: no such heading in {dest.name}"


def test_the_link_checker_sees_headings_and_links():
    assert slug("Tag history, incremental runs and sharding") == "tag-history-incremental-runs-and-sharding"
    assert slug("Python API (notebooks)") == "python-api-notebooks"
    assert "install" in anchors(README_PATH)
    assert "docs/cli.md" in list(relative_links(README_PATH))


def test_no_changelog_figures_in_user_docs():
    for phrase in ("before schema", "before the kept tables"):
        assert phrase not in README + ALL_DOCS, phrase


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci[-1].strip()
    assert command in README, command
    assert "pytest" in command


def test_quick_start_has_two_commands():
    quick = quick_start()
    commands = re.findall(r"^(python3 -m pip install .+)$", quick, re.M)
    assert len(commands) == 2
    assert "repoaudit demo" in commands[0] and "pytest" in commands[1]


def test_quick_start_and_ci_install_into_the_same_virtual_environment():
    quick = quick_start()
    venv = re.search(r"^(python3 -m venv \S+ && \. \S+/bin/activate)", quick, re.M)
    assert venv, "the quick start creates no virtual environment"
    assert quick.index(venv.group(1)) < quick.index("python3 -m pip install")
    ci = (ROOT / ".ci" / "run").read_text()
    assert venv.group(1) in ci, "CI does not install into the README's virtual environment"
    assert ci.index(venv.group(1)) < ci.index("python3 -m pip install")


def test_readme_installs_from_the_checkout_under_our_distribution_name():
    assert "repoaudit-oci" in README
    assert not re.search(r"^\s*(python3 -m )?pip3? install repoaudit\b", README, re.M)


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
