"""The database opens in the DuckDB releases people have: the 1.x CLI, and DuckDB 1.2's engine.

DuckDB 2 writes its newest storage format unless asked for an older one, and 1.x refuses such a file
("created with a newer version of DuckDB"). Both old releases are installed from the package index into a
throw-away directory, as the issue asks, and open the demo database read-only.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from repoaudit.store.database import STORAGE_VERSION, connect

OLD_CLI = "duckdb-cli==1.4.4"  # the oldest CLI release on PyPI
OLD_ENGINE = "duckdb==1.2.2"  # the oldest engine STORAGE_VERSION promises


def _pip_target(target: Path, requirement: str) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--target", str(target), requirement], check=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def old_tools(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("old-duckdb")
    cli_dir = _pip_target(base / "cli", OLD_CLI)
    cli = cli_dir / "bin" / "duckdb"
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)  # the wheel's data file loses its mode under --target
    return {"cli": cli, "engine": _pip_target(base / "engine", OLD_ENGINE)}


def test_a_new_database_is_written_in_the_compatible_format(tmp_path):
    con = connect(tmp_path / "a.duckdb")
    try:
        assert con.execute("SELECT current_setting('storage_compatibility_version')").fetchone()[0] == STORAGE_VERSION
    finally:
        con.close()


def test_the_old_cli_reads_the_demo_database(old_tools, demo_db):
    out = subprocess.run([str(old_tools["cli"]), "-readonly", "-csv", str(demo_db), "-c",
                          "SELECT count(*) AS n FROM snapshots; SELECT count(*) AS n FROM latest_snapshot;"
                          "SELECT count(*) AS n FROM latest_manifests;"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == "n" and int(lines[1]) > 0
    with duckdb.connect(str(demo_db), read_only=True) as con:
        assert int(lines[1]) == con.execute("SELECT count(*) FROM snapshots").fetchone()[0]


def test_duckdb_1_2_reads_every_view_and_table(old_tools, demo_db):
    script = """
import sys
sys.path.insert(0, sys.argv[1])
import duckdb
assert duckdb.__version__.startswith("1.2."), duckdb.__version__
con = duckdb.connect(sys.argv[2], read_only=True)
names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()]
for name in names:
    con.execute(f'SELECT count(*) FROM "{name}"').fetchall()
print(len(names))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", script, str(old_tools["engine"]), str(demo_db)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    with duckdb.connect(str(demo_db), read_only=True) as con:
        expected = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main'").fetchone()[0]
    assert int(out.stdout.strip()) == expected
