"""The package's layering, declared in pyproject.toml ([tool.importlinter]), holds: no import runs back up a stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    # lint-imports reads the contracts from pyproject.toml and the package from the import path.
    result = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                             "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_a_broken_contract_is_reported(tmp_path):
    """The check can fail: a module importing upward is caught."""
    package = tmp_path / "layered"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "high.py").write_text("")
    (package / "low" / "__init__.py").write_text("from layered import high\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_package = "layered"\n[[tool.importlinter.contracts]]\nname = "down"\n'
        'type = "layers"\nlayers = ["layered.high", "layered.low"]\n')
    result = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); "
                             "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "BROKEN" in result.stdout


# SQL generated from a policy's rules, or templated over column lists, is code by nature; everything
# else lives in queries/ or in .sql files beside the code that runs it.
SQL_TEMPLATES = {"repoaudit/retention/compiler.py", "repoaudit/store/kept.py"}


def test_no_multi_line_sql_in_python_outside_the_templates():
    import ast
    import re

    statement = re.compile(r"^\s*(SELECT|WITH|INSERT|CREATE|UPDATE|DELETE|DROP)\b", re.I)
    found = []
    for path in sorted((ROOT / "repoaudit").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in SQL_TEMPLATES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value.strip().count("\n") >= 2 and statement.match(node.value)):
                found.append(f"{rel}:{node.lineno}")
    assert not found, f"multi-line SQL in Python (move it to a .sql file): {found}"
