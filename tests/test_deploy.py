"""The deploy files install this project itself, never a bare name from a package index.

`repoaudit` on the public index is an unrelated project; a deploy file that ran
`pip install repoaudit` would pipe the registry password into whatever that installs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_FILES = sorted(p for p in (ROOT / "deploy").iterdir() if p.is_file())

# A target pip may install in a deploy file: a path in the checkout or a wheel built from it,
# or a VCS reference pinned to a full commit.
_LOCAL = re.compile(r"^(\.{1,2}(/.*)?|/.+|[\w./-]*\*?\.whl|[\w.-]+/.*)$")
_PINNED_VCS = re.compile(r"^[\w.-]*\s*@?\s*git\+\S+@[0-9a-f]{40}(#.*)?$")


def pip_targets(text: str) -> list[str]:
    """Every positional argument of every `pip install` in a file (shell lines, YAML run: steps)."""
    targets = []
    for match in re.finditer(r"pip3?\s+install\b([^\n&;|#]*)", text):
        words = shlex.split(match.group(1))
        skip_next = False
        for word in words:
            if skip_next:
                skip_next = False
                continue
            if word in {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--target", "-t",
                        "--extra-index-url", "-f", "--find-links"}:
                skip_next = True
                continue
            if word.startswith("-"):
                continue
            targets.append(word)
    return targets


def test_deploy_files_exist():
    names = {p.name for p in DEPLOY_FILES}
    assert {"cronjob.yaml", "github-actions-audit.yml", "Dockerfile"} <= names


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_no_bare_index_install(path: Path):
    for target in pip_targets(path.read_text()):
        assert _LOCAL.match(target) or _PINNED_VCS.match(target), (
            f"{path.name}: `pip install {target}` installs a name from a package index")


def test_the_checker_catches_bare_names():
    assert pip_targets("run: pip install repoaudit") == ["repoaudit"]
    bare = pip_targets("pip install --quiet --user repoaudit-oci   # comment")
    assert bare == ["repoaudit-oci"] and not _LOCAL.match(bare[0])
    assert _LOCAL.match("dist/repoaudit_oci-*.whl") and _LOCAL.match(".")
    assert _PINNED_VCS.match("git+https://example.com/org/repoaudit@" + "a" * 40)
    assert not _PINNED_VCS.match("git+https://example.com/org/repoaudit@main")


def test_distribution_name_is_ours_and_wheel_globs_follow_it():
    # tomllib is Python 3.11+; the project supports 3.10, so the two fields are read by pattern.
    pyproject = (ROOT / "pyproject.toml").read_text()
    name = re.search(r'^name = "([^"]+)"$', pyproject, re.M).group(1)
    assert name != "repoaudit"
    wheel_prefix = name.replace("-", "_") + "-"
    assert re.search(r'^repoaudit = "repoaudit.cli:main"$', pyproject, re.M)
    for path in DEPLOY_FILES:
        for wheel in re.findall(r"[\w./*-]+\.whl", path.read_text()):
            assert Path(wheel).name.startswith((wheel_prefix, "*")), f"{path.name}: {wheel}"


def test_dockerfile_copies_what_the_wheel_needs():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.M):
        for name in source.split():
            assert (ROOT / name).exists(), f"Dockerfile copies {name}, which the checkout lacks"
