"""Snapshots are written in one transaction: failures and kills never leave half a snapshot."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

import repoaudit
from fakeregistry import FakeRegistry
from oldschema import build_old_database, old_migrations
from repoaudit.errors import StoreError
from repoaudit.model.retry import NO_BACKOFF
from repoaudit.store.database import connect, migrations, schema_version, views_sha256

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
    assert schema_version(con) == migrations()[-1].version
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
    # The killed run's staging file (named by snapshot and process) is all that is left, and the next run
    # clears it away: its process is gone.
    assert f"db.duckdb.stage-2-{proc.pid}" in {p.name for p in tmp_path.glob("db.duckdb.stage-*")}
    with repoaudit.open(db) as audit:
        again = audit.collect(URL, transport=estate().transport(), retry=NO_BACKOFF, progress=False)
        assert again.status == "complete" and again.tags == 3
    assert not list(tmp_path.glob("db.duckdb.stage-*"))


@pytest.mark.parametrize(("first", "second"), [("x1.duckdb", "x[1].duckdb"), ("x[1].duckdb", "x1.duckdb"),
                                               ("same.duckdb", "same.duckdb")])
def test_stage_cleanup_spares_a_neighbours_live_stage_file(tmp_path, first, second):
    # "x[1].duckdb.stage-*" as a glob matches x1.duckdb's stage files: the clean-up of a second
    # run in the same folder must find leftovers by exact name, or it deletes a live stage. And as a
    # collect holds the database only to begin and to commit, a second run into the same database can
    # start and finish meanwhile: it must spare the first run's live stage too.
    seen: dict = {}

    def neighbour_runs(request):
        if request.url.path.startswith("/v2/team/b/manifests") and "other" not in seen:
            seen["before"] = {p.name for p in tmp_path.iterdir() if ".stage-" in p.name}
            with repoaudit.open(tmp_path / second, lock_timeout=0.5) as other:
                try:
                    seen["other"] = other.collect(URL, transport=estate().transport(), retry=NO_BACKOFF,
                                                  progress=False)
                except repoaudit.DatabaseLocked as exc:
                    seen["other"] = exc
            seen["after"] = {p.name for p in tmp_path.iterdir() if ".stage-" in p.name}
        return None

    fake = estate()
    fake.fault = neighbour_runs
    with repoaudit.open(tmp_path / first) as audit:
        result = audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False)
    assert (result.status, result.tags) == ("complete", 3)
    live = f"{first}.stage-1-{os.getpid()}"
    assert live in seen["before"] and live in seen["after"]
    assert not [p for p in tmp_path.iterdir() if ".stage-" in p.name]
    if first != second:
        assert (seen["other"].status, seen["other"].tags) == ("complete", 3)
    else:
        # The database is free meanwhile, but not for a second collect of the same registry: both would
        # store the manifests neither had seen. It waits for --lock-timeout, then stops having recorded nothing.
        assert isinstance(seen["other"], repoaudit.DatabaseLocked), seen["other"]
        assert "another collect of registry.test into" in str(seen["other"])
        with repoaudit.open(tmp_path / first, read_only=True) as audit:
            assert list(audit.query("snapshots")["status"]) == ["complete"]


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


# -- schema: numbered migrations and views.sql --------------------------------------------------------

REG = "registry.test"
PACKAGE = Path(repoaudit.__file__).resolve().parent / "store"


def _d(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


def _seed(con: duckdb.DuckDBPyConnection, version: int) -> None:
    """Rows for the tables each old migration added, written right after it, as a user of that version did."""
    a, b, idx = _d("a"), _d("b"), _d("idx")
    if version == 1:
        con.execute(f"""
            INSERT INTO snapshots (snapshot_id, registry, source, source_kind, started_at, finished_at, status,
                                   mode, repository_count, tag_count, error_count, error, repoaudit_version)
            VALUES (1, '{REG}', 'https://{REG}', 'registry', TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-01 00:01',
                    'complete', 'full', 1, 1, 0, NULL, '0.1.0'),
                   (2, '{REG}', 'https://{REG}', 'registry', TIMESTAMP '2026-01-08', TIMESTAMP '2026-01-08 00:01',
                    'complete', 'full', 2, 2, 0, NULL, '0.1.0'),
                   (3, '{REG}', 'https://{REG}', 'registry', TIMESTAMP '2026-01-15', NULL,
                    'failed', 'full', 0, 0, 1, 'down', '0.1.0');
            INSERT INTO repositories VALUES (1, '{REG}', 'app', 1, 'ok', NULL), (2, '{REG}', 'app', 2, 'ok', NULL),
                                            (2, '{REG}', 'lib', 1, 'ok', NULL);
            INSERT INTO tags VALUES (1, '{REG}', 'app', 'v1', '{a}'), (2, '{REG}', 'app', 'v1', '{b}'),
                                    (2, '{REG}', 'app', 'multi', '{idx}'), (2, '{REG}', 'lib', 'v1', '{a}');
            INSERT INTO manifests (registry, digest, kind, manifest_size, config_digest, config_size, layers_size,
                                   layer_count, total_size, created, architecture, os, first_seen_snapshot)
            VALUES ('{REG}', '{a}', 'image', 500, '{_d("cfg-a")}', 100, 12, 2, 112, TIMESTAMP '2025-12-01',
                    'amd64', 'linux', 1),
                   ('{REG}', '{b}', 'image', 500, '{_d("cfg-b")}', 100, 5, 1, 105, TIMESTAMP '2026-01-05',
                    'amd64', 'linux', 2),
                   ('{REG}', '{idx}', 'index', 300, NULL, NULL, NULL, NULL, 112, TIMESTAMP '2025-12-01',
                    NULL, NULL, 2);
            INSERT INTO layers VALUES ('{REG}', '{a}', 0, '{_d("l-shared")}', NULL, 5),
                                      ('{REG}', '{a}', 1, '{_d("l-a")}', NULL, 7),
                                      ('{REG}', '{b}', 0, '{_d("l-shared")}', NULL, 5);
            INSERT INTO manifest_children VALUES ('{REG}', '{idx}', 0, '{a}', NULL, 500, 'linux', 'amd64', NULL);
            INSERT INTO collection_errors VALUES (3, '{REG}', NULL, NULL, 'RegistryError', 'down');
            SELECT setval('snapshot_id_seq', 3);""")
    elif version == 2:
        con.execute(f"""
            INSERT INTO scans (scan_id, scanner, report_format, scanned_at, image_digest, registry, repository,
                               finding_count, source_file, source_sha256, ingested_at)
            VALUES (1, 'trivy', 'trivy', TIMESTAMP '2026-01-09', '{b}', '{REG}', 'app', 1, 'b.json', 'f00',
                    TIMESTAMP '2026-01-09');
            INSERT INTO vulnerabilities (scan_id, vulnerability_id, pkg_name, severity)
            VALUES (1, 'CVE-2026-0001', 'openssl', 'HIGH');
            INSERT INTO workload_snapshots VALUES (1, 'prod', '["pods.json"]', 'c0ffee', TIMESTAMP '2026-01-10', 1, 1);
            INSERT INTO workloads (snapshot_id, cluster, namespace, pod, container, init, image_ref, tag, registry,
                                   repository, config_digest, resolved_by, pinned_by_digest, phase, ingested_at)
            VALUES (1, 'prod', 'team', 'app-1', 'app', false, '{REG}/app:v1', 'v1', '{REG}', 'app',
                    '{_d("cfg-b")}', 'status-image-id', false, 'Running', TIMESTAMP '2026-01-10');""")
    elif version == 3:
        con.execute(f"""
            INSERT INTO deletions (applied_at, registry, repository, digest, role, outcome, policy)
            VALUES (TIMESTAMP '2026-01-11', '{REG}', 'app', '{_d("gone")}', 'image', 'not found', 'keep-5');""")
    elif version == 5:
        con.execute(f"""
            INSERT INTO repository_status (snapshot_id, registry, repository, name, tag_count, ready, reason)
            VALUES (2, '{REG}', 'app', 'flux-system/app', 2, true, 'Succeeded');""")


def _rows(con, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=repr)


def catalog(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """What the schema is made of: relations with their columns and types, constraints, macros, sequences."""
    here = "database_name = current_database() AND NOT internal"
    return {
        "tables": _rows(con, f"SELECT table_name FROM duckdb_tables() WHERE {here}"),
        "views": _rows(con, f"SELECT view_name FROM duckdb_views() WHERE {here}"),
        "columns": _rows(con, f"SELECT table_name, column_index, column_name, data_type, is_nullable, column_default "
                              f"FROM duckdb_columns() WHERE {here}"),
        "constraints": _rows(con, "SELECT table_name, constraint_type, constraint_column_names FROM "
                                  "duckdb_constraints() WHERE database_name = current_database()"),
        "indexes": _rows(con, "SELECT table_name, index_name FROM duckdb_indexes() "
                              "WHERE database_name = current_database()"),
        "macros": _rows(con, f"SELECT function_name, function_type, parameters FROM duckdb_functions() "
                             f"WHERE {here}"),
        "sequences": _rows(con, "SELECT sequence_name FROM duckdb_sequences() "
                                "WHERE database_name = current_database()"),
    }


_DIGEST_KEYS = {"manifest_key", "config_key", "blob_key", "index_key", "child_key", "lo_manifest", "hi_manifest"}


def contents(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Every table's rows, and what a few views give, with each integer key replaced by the digest or
    repository it names (keys are numbered in whatever order they were assigned)."""
    digests = {k: (r, d) for r, d, k in con.execute("SELECT registry, digest, key FROM digest_keys").fetchall()}
    repos = {k: (r, n) for r, n, k in con.execute("SELECT registry, repository, key FROM repository_keys").fetchall()}
    out = {}
    tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                        "current_database() AND NOT internal").fetchall()]
    for table in [t for t in tables if t not in ("schema_version", "schema_views")] + [
            "images", "image_lifecycle", "tag_moves", "deployed_images", "latest_image_scan"]:
        cursor = con.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        rows = []
        for row in cursor.fetchall():
            rows.append(tuple(
                digests.get(v, ("missing", v)) if n in _DIGEST_KEYS and v is not None
                else repos.get(v, ("missing", v)) if n == "repository_key" and v is not None
                else None if n == "key" and table in ("digest_keys", "repository_keys")
                else tuple(v) if isinstance(v, list) else v
                for n, v in zip(names, row)))
        out[table] = sorted(rows, key=repr)
    return out


@pytest.fixture(scope="module")
def upgraded_from_v12(tmp_path_factory) -> dict:
    """A database the schema-12 repoaudit wrote and this one opened: what every older one must become."""
    path = tmp_path_factory.mktemp("v12") / "old.duckdb"
    build_old_database(path, 12, _seed)
    con = connect(path)
    try:
        return {"catalog": catalog(con), "contents": contents(con)}
    finally:
        con.close()


def test_migrations_hold_tables_and_views_sql_holds_views():
    """Views and macros live in views.sql only, each created with CREATE OR REPLACE; migrations hold the rest."""
    known = migrations()
    assert [m.version for m in known] == list(range(1, len(known) + 1))
    assert len(old_migrations()) == 12 and len(known) >= 12
    for path in sorted((PACKAGE / "migrations").glob("*.sql")):
        text = path.read_text()
        assert not re.search(r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(TEMP\w*\s+)?(VIEW|MACRO)", text, re.M | re.I), path
    views = (PACKAGE / "views.sql").read_text()
    created = re.findall(r"^CREATE\b.*$", views, re.M)
    assert created and all(re.match(r"CREATE OR REPLACE (VIEW|MACRO) \w+", line) for line in created)
    assert not re.search(r"^\s*(INSERT|UPDATE|DELETE|ALTER|DROP)\b", views, re.M | re.I)


@pytest.mark.parametrize("version", range(1, 13))
def test_a_database_of_every_older_schema_upgrades_to_what_a_new_one_is(tmp_path, version, upgraded_from_v12):
    fresh = connect(tmp_path / "fresh.duckdb")
    expected = catalog(fresh)
    fresh.close()
    path = tmp_path / f"v{version}.duckdb"
    build_old_database(path, version, _seed)
    con = connect(path)
    try:
        assert schema_version(con) == migrations()[-1].version
        assert [v for (v,) in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()] == \
            [m.version for m in migrations()]
        got = catalog(con)
        for part in expected:
            assert got[part] == expected[part], part
        # The same rows whatever version the data was written under (the rows of tables it lacked are
        # written now); the backfills filled the newer tables as the old migrations did.
        for later in range(version + 1, 13):
            _seed(con, later)
        data = contents(con)
        assert data == upgraded_from_v12["contents"]
        assert upgraded_from_v12["catalog"] == expected
    finally:
        con.close()


def test_the_upgraded_data_is_what_the_kept_tables_say(upgraded_from_v12):
    data = upgraded_from_v12["contents"]
    # unique_bytes: each blob a snapshot reaches once (1: a; 2: a, b and idx), NULL for the failed one.
    assert sorted((r[0], r[-1]) for r in data["snapshots"]) == [(1, 612), (2, 1512), (3, None)]
    assert len(data["repository_links"]) == 4                     # app: a, b, idx; lib: a
    assert {r[2] for r in data["latest_images"]} == {_d("a"), _d("b"), _d("idx")}
    assert data["blob_refs"] and data["manifest_sole_bytes"] and data["counted_manifests"]
    assert [r[-1] for r in data["deployed_images"]] == [1]       # the pod, its digest found by image ID


def test_views_are_created_again_when_views_sql_changes(tmp_path):
    path = tmp_path / "db.duckdb"
    con = connect(path)
    con.execute("CREATE OR REPLACE VIEW images AS SELECT 1 AS tampered")
    con.close()
    con = connect(path)  # the same views.sql: nothing is recreated, not even a view changed by hand
    assert [d[0] for d in con.execute("SELECT * FROM images").description] == ["tampered"]
    con.execute("UPDATE schema_views SET sha256 = 'from another views.sql'")
    con.close()
    con = connect(path, read_only=True)  # stale views: upgraded once through a writable open, then read
    assert "tampered" not in [d[0] for d in con.execute("SELECT * FROM images").description]
    assert con.execute("SELECT sha256 FROM schema_views").fetchall() == [(views_sha256(),)]
    con.close()


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.duckdb"
    build_old_database(path, 8, _seed)

    def broken(con):
        raise duckdb.ConversionException("simulated")

    from repoaudit.store import database

    monkeypatch.setitem(database._AFTER_MIGRATION, 11, broken)
    with pytest.raises(StoreError, match=r"migration 11 \(latest images and sole bytes kept at commit\) failed"):
        connect(path)
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 8
    assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'repository_links'"
                           ).fetchone()[0]
    con.close()
