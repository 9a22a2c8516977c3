"""The nightly run beside open notebooks, with real processes.

A Jupyter kernel (started by nbclient) keeps ``audit = repoaudit.open(db)`` alive and a jupysql
connection; ``repoaudit collect``, ``ingest`` and ``retention apply`` run as separate processes, as a
CronJob would. DuckDB locks a file per process, so these tests show what each side holds and when.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import FIXTURES

pytest.importorskip("sql", reason="jupysql is in the test extra")


def repoaudit(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repoaudit.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


class Kernel:
    """One live kernel; ``run(code)`` executes a cell and returns its stdout."""

    def __init__(self, workdir: Path):
        self.nb = new_notebook()
        self.client = NotebookClient(self.nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})

    def __enter__(self) -> "Kernel":
        self._setup = self.client.setup_kernel()
        self._setup.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._setup.__exit__(*exc)

    def run(self, code: str) -> str:
        cell = new_code_cell(code)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, errors[0].get("evalue")
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.fixture
def estate(registry, pusher, tmp_path) -> Path:
    for n in range(3):
        pusher.push_image("team/app", [f"v{n}"], layers=[f"app layer {n}".encode() * 50])
    pusher.push_image("team/tool", ["1.0"], layers=[b"tool layer" * 50])
    db = tmp_path / "audit.duckdb"
    first = repoaudit("collect", registry.url, "--db", db, "--no-progress")
    assert first.returncode == 0, first.stderr
    return db


def snapshot_count(db: Path) -> int:
    out = repoaudit("snapshots", "--db", db, "--format", "json")
    assert out.returncode == 0, out.stderr
    return len(json.loads(out.stdout))


def test_the_nightly_run_beside_an_open_notebook(registry, estate, tmp_path):
    db = estate
    policy = tmp_path / "keep-newest.yaml"
    policy.write_text("rules:\n  - keep: {most_recent: 1}\n")
    with Kernel(tmp_path) as kernel:
        pid = int(kernel.run(f"import os, repoaudit\naudit = repoaudit.open({str(db)!r})\n"
                             "print(os.getpid())").strip())
        assert kernel.run("print(len(audit.query('snapshots')))").strip() == "1"

        # The open API object holds nothing between calls: every writer runs without waiting.
        collect = repoaudit("collect", registry.url, "--db", db, "--no-progress", "--lock-timeout", "0")
        assert collect.returncode == 0, collect.stderr
        ingest = repoaudit("ingest", "trivy", FIXTURES / "trivy" / "alpine-310.json", "--db", db,
                           "--lock-timeout", "0")
        assert ingest.returncode == 0, ingest.stderr
        plan = tmp_path / "plan.json"
        planned = repoaudit("retention", "plan", "--policy", policy, "--db", db, "-o", plan, "--lock-timeout", "0")
        assert planned.returncode == 0, planned.stderr
        applied = repoaudit("retention", "apply", plan, "--db", db, "--yes", "--lock-timeout", "0")
        assert applied.returncode == 0, applied.stderr
        assert kernel.run("print(len(audit.query('snapshots')))").strip() == "2"  # it reads what they wrote
        assert kernel.run("print(audit.sql('SELECT count(*) AS n FROM deletions')['n'][0])").strip() == "2"

        # A jupysql connection does hold the file (SQLAlchemy keeps it in its pool): collect says who
        # holds it and waits, and goes on as soon as the notebook lets go.
        kernel.run(f"%load_ext sql\n%sql duckdb:///{db} --alias nb\n"
                   "%sql SELECT count(*) FROM snapshots")
        waiting = subprocess.Popen([sys.executable, "-m", "repoaudit.cli", "collect", registry.url, "--db", str(db),
                                    "--no-progress", "--lock-timeout", "120"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = waiting.stderr.readline()
            assert re.search(rf"database .* is locked by PID {pid} \(python[\d.]*\); waiting up to 120 s", line), line
            time.sleep(1)
            assert waiting.poll() is None  # still waiting
            kernel.run("%sql --close nb")
            out, err = waiting.communicate(timeout=120)
        finally:
            if waiting.poll() is None:
                waiting.kill()
        assert waiting.returncode == 0, err
        assert "snapshot 3 of" in out

        # Held past --lock-timeout: one line, exit 75 (a scheduler's retry), nothing recorded.
        kernel.run(f"%sql duckdb:///{db} --alias nb2\n%sql SELECT count(*) FROM snapshots")
        stages_before = sorted(p.name for p in db.parent.iterdir())
        refused = repoaudit("collect", registry.url, "--db", db, "--no-progress", "--lock-timeout", "1")
        assert refused.returncode == 75, refused.stderr
        last = refused.stderr.strip().splitlines()[-1]
        assert re.fullmatch(rf"Error: database .* is locked by PID {pid} \(python[\d.]*\) after waiting 1 s "
                            r"\(--lock-timeout to wait longer\)", last), last
        assert sorted(p.name for p in db.parent.iterdir()) == stages_before  # its stage is gone too
        kernel.run("%sql --close nb2")
    assert snapshot_count(db) == 3


def test_a_notebook_reads_while_a_collect_holds_the_commit(registry, estate, tmp_path):
    """The other way round: while a writer holds the lock, the notebook's read waits for it, then answers."""
    import duckdb

    db = estate
    writer = duckdb.connect(str(db))  # this process holds the write lock, as a commit would
    try:
        with Kernel(tmp_path) as kernel:
            kernel.run("import threading, repoaudit\nlines = []")
            kernel.run(f"result = {{}}\n"
                       f"def read():\n"
                       f"    a = repoaudit.Audit({str(db)!r}, read_only=True, lock_timeout=60, on_wait=lines.append)\n"
                       f"    result['n'] = len(a.query('snapshots'))\n"
                       f"t = threading.Thread(target=read); t.start()")
            deadline = time.monotonic() + 60
            while "locked by PID" not in kernel.run("print(lines)") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "locked by PID" in kernel.run("print(lines)")
            writer.close()
            assert kernel.run("t.join(60); print(result['n'])").strip() == "1"
    finally:
        writer.close()


def test_a_notebook_can_still_hold_the_connection_on_purpose(estate):
    import repoaudit as ra

    audit = ra.open(estate)
    con = audit.con  # asked for: kept until close()
    assert con is audit.con
    audit.query("snapshots")
    assert audit.con is con
    audit.close()
    # and without it, nothing stays open: another writable connection opens at once
    ra.open(estate).query("snapshots")
    import duckdb

    duckdb.connect(str(estate)).close()


def test_read_only_refuses_writes_with_one_line(estate):
    import repoaudit as ra

    with pytest.raises(ra.StoreError, match="is open read-only; open it writable to ingest"):
        ra.open(estate, read_only=True).ingest("trivy", FIXTURES / "trivy" / "alpine-310.json")

