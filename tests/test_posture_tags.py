"""Tag tampering (mutable_release_tags) on a real registry collected twice.

Between the snapshots 1.2.0 is re-pointed at another image (tampering: one row), latest and the
minor tag 1.2 follow it (floating: expected movers), 1.1.0 and the untouched build-417 stay put.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from pusher import layer_bytes

import repoaudit
from repoaudit.errors import QueryError

T0, T1 = datetime(2025, 5, 1), datetime(2025, 5, 8)


@pytest.fixture
def moved(registry, pusher, tmp_path):
    old = pusher.push_image("team/app", ["1.1.0"], layers=[layer_bytes("old", 700)], created="2025-04-01T00:00:00Z")
    first = pusher.push_image("team/app", ["1.2.0", "1.2", "latest", "build-417"], layers=[layer_bytes("a", 800)],
                              created="2025-04-20T00:00:00Z")
    db = tmp_path / "t.duckdb"
    with repoaudit.open(db) as audit:
        audit.collect(registry.url, started_at=T0, progress=False, posture=False)
        second = pusher.push_image("team/app", ["1.2.0", "1.2", "latest"], layers=[layer_bytes("b", 800)],
                                   created="2025-05-05T00:00:00Z")
        audit.collect(registry.url, started_at=T1, progress=False, posture=False)
    return db, old, first, second


def test_release_tag_repointed_is_one_tampering_row_and_latest_floats(moved):
    db, _, first, second = moved
    with repoaudit.open(db, read_only=True) as audit:
        rows = audit.query("mutable_release_tags")
    tampering = rows[rows["kind"] == "tampering"]
    assert tampering[["repository", "tag", "from_digest", "to_digest", "moved_after", "moved_before", "digests"]
                     ].values.tolist() == [["team/app", "1.2.0", first.digest, second.digest, T0, T1, 2]]
    floating = rows[rows["kind"] == "floating"]
    assert sorted(floating["tag"]) == ["1.2", "latest"]
    assert list(rows["kind"]) == ["tampering", "floating", "floating"]  # tampering first


def test_patterns_are_parameters(moved):
    db, _, _, _ = moved
    with repoaudit.open(db, read_only=True) as audit:
        only_tampering = audit.query("mutable_release_tags", include_floating=False)
        assert list(only_tampering["tag"]) == ["1.2.0"]
        # A team whose releases are major.minor: 1.2 is a release, and latest still floats.
        custom = audit.query("mutable_release_tags", release_pattern=r"[0-9]+\.[0-9]+(\.[0-9]+)?")
        assert sorted(custom.loc[custom["kind"] == "tampering", "tag"]) == ["1.2", "1.2.0"]
        assert list(custom.loc[custom["kind"] == "floating", "tag"]) == ["latest"]
        # Nothing floats when the floating pattern matches nothing.
        none = audit.query("mutable_release_tags", floating_pattern="no-tag-is-called-this")
        assert list(none["kind"]) == ["tampering"]
        with pytest.raises(QueryError):
            audit.query("mutable_release_tags", release_pattern="([unclosed")
