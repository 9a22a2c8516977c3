"""Named queries: headers parse, every query runs on seeded data, parameters are bound and checked."""

from __future__ import annotations

import pandas as pd
import pytest

import repoaudit
from pusher import layer_bytes
from repoaudit.errors import QueryError
from repoaudit.analysis.queries import load_queries, parse_query_file


def test_every_query_file_has_a_valid_header():
    queries = load_queries()
    assert len(queries) >= 4
    for name, q in queries.items():
        assert q.path.stem == name
        assert q.description, name
        for p in q.params:
            assert f"${p.name}" in q.sql, f"{name}: parameter {p.name} is declared but unused"


@pytest.mark.parametrize("name", sorted(load_queries()))
def test_every_query_runs_on_the_demo_database(demo_db, name):
    with repoaudit.open(demo_db, read_only=True) as audit:
        frame = audit.query(name)
        assert list(frame.columns), name


def test_header_errors(tmp_path):
    bad = tmp_path / "thing.sql"
    bad.write_text("-- name: other\n-- description: x\nSELECT 1")
    with pytest.raises(QueryError, match="differs from the file name"):
        parse_query_file(bad)
    bad.write_text("-- name: thing\n-- param: n NUMBERISH = 3\nSELECT $n")
    with pytest.raises(QueryError, match="bad param line"):
        parse_query_file(bad)
    bad.write_text("SELECT 1")
    with pytest.raises(QueryError, match="missing '-- name:' header"):
        parse_query_file(bad)


def test_parameters_are_typed_and_bound(demo_db):
    with repoaudit.open(demo_db, read_only=True) as audit:
        assert len(audit.query("snapshots", limit="2")) == 2
        assert audit.query("snapshots", registry="'; DROP TABLE tags; --").empty  # bound, not pasted
        assert audit.sql("SELECT count(*) FROM tags").iloc[0, 0] > 0
        with pytest.raises(QueryError, match="valid: registry, limit"):
            audit.query("snapshots", nope=1)
        with pytest.raises(QueryError, match="wants INTEGER"):
            audit.query("snapshots", limit=True)
        with pytest.raises(QueryError, match="unknown query 'nope'"):
            audit.query("nope")


def test_snapshot_diff_on_the_real_registry(registry, pusher, tmp_path):
    a = pusher.push_image("team/app", ["1", "latest", "old"], layers=[layer_bytes("a", 100)])
    pusher.push_image("team/gone", ["1"], layers=[layer_bytes("g", 100)])
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        first = audit.collect(registry.url, progress=False)
        b = pusher.push_image("team/app", ["2"], layers=[layer_bytes("b", 100)])
        pusher.tag("team/app", "latest", b)
        pusher.push_image("team/new", ["1"], layers=[layer_bytes("n", 100)])
        # Deleting the manifest removes every tag pointing at it: 1 and old, but latest was moved away first.
        pusher.delete_manifest("team/app", a.digest)
        second = audit.collect(registry.url, progress=False)
        diff = audit.query("snapshot_diff")
        got = sorted((r.change, r.repository, r.tag if isinstance(r.tag, str) else None,
                      r.from_digest if isinstance(r.from_digest, str) else None,
                      r.to_digest if isinstance(r.to_digest, str) else None) for r in diff.itertuples())
        assert got == sorted([
            ("repository added", "team/new", None, None, None),
            ("tag added", "team/app", "2", None, b.digest),
            ("tag moved", "team/app", "latest", a.digest, b.digest),
            ("tag removed", "team/app", "1", a.digest, None),
            ("tag removed", "team/app", "old", a.digest, None),
        ])
        assert set(diff["from_snapshot"]) == {first.snapshot_id} and set(diff["to_snapshot"]) == {second.snapshot_id}


def test_a_from_snapshot_compares_only_its_own_registry(registry, pusher, tmp_path):
    """One database, two registries (the same server under two names): a snapshot id names one of them."""
    pusher.push_image("team/app", ["1"], layers=[layer_bytes("a", 100)])
    other = registry.url.replace("127.0.0.1", "localhost")
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        first = audit.collect(registry.url, progress=False)
        audit.collect(other, progress=False)
        pusher.push_image("team/app", ["2"], layers=[layer_bytes("b", 100)])
        audit.collect(registry.url, progress=False)
        audit.collect(other, progress=False)
        both = audit.query("snapshot_diff")
        assert sorted(both["registry"]) == sorted([first.registry, first.registry.replace("127.0.0.1", "localhost")])
        since_first = audit.query("snapshot_diff", from_snapshot=first.snapshot_id)
        assert since_first[["registry", "change", "tag"]].values.tolist() == [[first.registry, "tag added", "2"]]


def test_new_critical_findings_depends_on_the_cutoff(demo_db):
    with repoaudit.open(demo_db, read_only=True) as audit:
        everything = audit.query("new_critical_findings", since="1970-01-01T00:00:00")
        critical_now = audit.sql("""
            SELECT count(*) FROM (SELECT DISTINCT i.registry, i.repository, i.digest FROM images i
                                  WHERE i.artifact_type IS NULL) i
            JOIN latest_image_scan l ON l.digest = i.digest
            JOIN vulnerabilities v ON v.scan_id = l.scan_id AND v.severity = 'CRITICAL'""").iloc[0, 0]
        assert len(everything) == critical_now > 0
        assert audit.query("new_critical_findings", since="2999-01-01T00:00:00").empty
        default = audit.query("new_critical_findings")
        assert 0 < len(default) < len(everything)


def test_comparison_points_by_snapshot_and_look_back(demo_db):
    """The parameters the report's --since becomes pick the same cut-off as spelling it out."""
    with repoaudit.open(demo_db, read_only=True) as audit:
        snaps = audit.query("snapshots").sort_values("snapshot_id")  # three, a week apart
        first, second, third = snaps.itertuples()
        week = audit.query("snapshot_diff", older_than_hours=7 * 24)
        assert set(week["from_snapshot"]) == {second.snapshot_id} and set(week["to_snapshot"]) == {third.snapshot_id}
        fortnight = audit.query("snapshot_diff", older_than_hours=10 * 24)
        assert fortnight.equals(audit.query("snapshot_diff", from_snapshot=first.snapshot_id))
        assert audit.query("snapshot_diff", older_than_hours=30 * 24).empty  # nothing that old: left out
        for by_snapshot, by_time in [({"since_snapshot": first.snapshot_id}, first.started_at),
                                     ({"since_hours": 24}, third.started_at - pd.Timedelta(hours=24))]:
            assert audit.query("new_critical_findings", **by_snapshot).equals(
                audit.query("new_critical_findings", since=by_time.to_pydatetime()))
        assert audit.query("new_critical_findings", since_snapshot=10**9).equals(
            audit.query("new_critical_findings"))  # an unknown snapshot falls back to the default
        counts = [len(audit.query("new_critical_findings", since_hours=h)) for h in (1, 24, 300 * 24)]
        assert counts[0] < counts[1] < counts[2]  # a longer look-back finds more that is new
