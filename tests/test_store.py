"""Snapshots are written in one transaction: failures and kills never leave half a snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

import repoaudit
from fakeregistry import FakeRegistry
from repoaudit.errors import StoreError
from repoaudit.model.retry import NO_BACKOFF
from repoaudit.store.database import connect, migrations, schema_version

URL = "https://registry.test"
TESTS = Path(__file__).resolve().parent


def estate() -> FakeRegistry:
    """The three-repository registry the kill test's child process serves too."""
    fake = FakeRegistry()
    for repo in ("a", "b", "c"):
        fake.add_image(f"team/{repo}", "1", repo.encode())
    return fake


def counts(audit) -> dict:
    return {t: int(audit.sql(f"SELECT count(*) FROM {t}").iloc[0, 0])
            for t in ("snapshots", "repositories", "tags", "manifests", "layers", "collection_errors")}


def test_schema_is_migrated_once_and_versioned(tmp_path):
    path = tmp_path / "db.duckdb"
    con = connect(path)
    assert schema_version(con) == migrations()[-1][0]
    con.close()
    con = connect(path)  # reopening applies nothing twice
    assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(migrations())
    con.execute("INSERT INTO schema_version VALUES (999, 'from the future', now())")
    con.close()
    with pytest.raises(StoreError, match="schema version 999, newer than this repoaudit knows"):
        connect(path)


def test_read_only_open_of_missing_database(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        connect(tmp_path / "nope.duckdb", read_only=True)


def test_unexpected_error_rolls_back_and_marks_failed(tmp_path):
    fake = estate()
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        first = audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False)
        before = counts(audit)
        fake.add_image("team/d", "1", b"d")

        def explode(request):
            if request.url.path.startswith("/v2/team/d/manifests"):
                raise RuntimeError("disk on fire")
            return None

        fake.fault = explode
        with pytest.raises(RuntimeError, match="disk on fire"):
            audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False)
        after = counts(audit)
        # Exactly one more snapshot row (the failed one) and its error; no tags, manifests or layers.
        assert after["snapshots"] == before["snapshots"] + 1
        assert after["collection_errors"] == before["collection_errors"] + 1
        for table in ("repositories", "tags", "manifests", "layers"):
            assert after[table] == before[table], table
        snaps = audit.query("snapshots")
        assert list(snaps["status"]) == ["failed", "complete"]
        assert snaps["error"][0] == "disk on fire"
        assert set(audit.sql("SELECT snapshot_id FROM images")["snapshot_id"]) == {first.snapshot_id}


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import repoaudit
    from fakeregistry import FakeRegistry
    from repoaudit.model.retry import NO_BACKOFF
    fake = FakeRegistry()
    for repo in ("a", "b", "c"):
        fake.add_image("team/" + repo, "1", repo.encode())
    audit = repoaudit.open({db!r})
    if {second}:
        fake.add_image("team/z", "1", b"z")
        def hang(request):
            if request.url.path.startswith("/v2/team/z/manifests"):
                print("hanging", flush=True)
                time.sleep(600)
            return None
        fake.fault = hang
    audit.collect("https://registry.test", transport=fake.transport(), retry=NO_BACKOFF, progress=False)
    print("done", flush=True)
""")


def test_killed_run_leaves_no_trace(tmp_path):
    db = str(tmp_path / "db.duckdb")
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(tests=str(TESTS), db=db, second=False)],
                          capture_output=True, text=True, timeout=60)
    assert "done" in done.stdout, done.stderr
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(tests=str(TESTS), db=db, second=True)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "hanging"
        # The run is mid-transaction: repositories a, b, c and their rows are written but uncommitted.
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with repoaudit.open(db, read_only=True) as audit:
        snaps = audit.query("snapshots")
        assert list(snaps["status"]) == ["complete"]
        assert counts(audit)["tags"] == 3
        assert audit.sql("SELECT count(*) FROM manifests WHERE first_seen_snapshot <> 1").iloc[0, 0] == 0
    # The killed run's staging file is all that is left, and the next run clears it away.
    assert "db.duckdb.stage-2" in {p.name for p in tmp_path.glob("db.duckdb.stage-*")}
    with repoaudit.open(db) as audit:
        again = audit.collect(URL, transport=estate().transport(), retry=NO_BACKOFF, progress=False)
        assert again.status == "complete" and again.tags == 3
    assert not list(tmp_path.glob("db.duckdb.stage-*"))


@pytest.mark.parametrize(("first", "second"), [("x1.duckdb", "x[1].duckdb"), ("x[1].duckdb", "x1.duckdb")])
def test_stage_cleanup_spares_a_neighbours_live_stage_file(tmp_path, first, second):
    # "x[1].duckdb.stage-*" as a glob matches x1.duckdb's stage files: the clean-up of a second
    # run in the same folder must find leftovers by exact name, or it deletes a live stage.
    seen: dict = {}

    def neighbour_runs(request):
        if request.url.path.startswith("/v2/team/b/manifests") and "other" not in seen:
            seen["before"] = {p.name for p in tmp_path.iterdir() if ".stage-" in p.name}
            with repoaudit.open(tmp_path / second) as other:
                seen["other"] = other.collect(URL, transport=estate().transport(), retry=NO_BACKOFF,
                                              progress=False)
            seen["after"] = {p.name for p in tmp_path.iterdir() if ".stage-" in p.name}
        return None

    fake = estate()
    fake.fault = neighbour_runs
    with repoaudit.open(tmp_path / first) as audit:
        result = audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False)
    assert (result.status, result.tags) == ("complete", 3)
    assert (seen["other"].status, seen["other"].tags) == ("complete", 3)
    assert f"{first}.stage-1" in seen["before"] and f"{first}.stage-1" in seen["after"]
    assert not [p for p in tmp_path.iterdir() if ".stage-" in p.name]


def test_insert_rows_keeps_types_for_empty_and_null_batches(tmp_path):
    from repoaudit.store.database import insert_rows

    con = connect(tmp_path / "db.duckdb")
    insert_rows(con, "layers", [])
    insert_rows(con, "layers", [("r", "sha256:m", 0, "sha256:l", None, None)])
    assert con.execute("SELECT size FROM layers").fetchall() == [(None,)]
    with pytest.raises(duckdb.Error):
        insert_rows(con, "tags", [(1, "r", None, "t", "d")])  # NOT NULL repository


def test_engine_sql_files_parse_and_name_each_statement_once():
    """Every .sql file in the package splits into named statements; a missing name says which file."""
    from importlib import resources

    from repoaudit.store.sql import parse_statements

    root = resources.files("repoaudit")
    files = [p for p in Path(str(root)).rglob("*.sql") if "-- name:" in p.read_text()]
    for path in files:
        found = parse_statements(path.read_text(), str(path))
        assert found and all(text.strip() for text in found.values()), path
    with pytest.raises(ValueError, match="defined twice"):
        parse_statements("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")
    with pytest.raises(KeyError, match="no statement named 'b'"):
        parse_statements("-- name: a\nSELECT 1\n", "x.sql")["b"]
