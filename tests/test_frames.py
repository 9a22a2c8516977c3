"""fetch_frame converts through Arrow and gives exactly the DataFrame DuckDB's own .df() gives."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from repoaudit.store.frames import fetch_frame
from repoaudit.analysis.queries import load_queries
from repoaudit.store.database import connect

# One column of every type DuckDB and Arrow convert differently, and one row of NULLs.
EVERY_TYPE = """
SELECT * FROM (VALUES
 (1, DATE '2024-01-02', INTERVAL 3 DAY, TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMP '2024-01-01',
  1.5::DECIMAL(10,2), 2::HUGEINT, 3::UBIGINT, 'a', NULL::VARCHAR, true, {'k': 1}, MAP{'a': 1}, 1.0::DOUBLE,
  2::SMALLINT, ['x'], NULL::BIGINT, NULL::BOOLEAN, 'x'::BLOB, TIME '01:02:03', 7::TINYINT, 'e'::color, [1, 2],
  1, false),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 5, false, NULL, NULL,
  NULL, NULL, NULL, 2, true)
) t(i, d, iv, tz, ts, dec, h, ub, s, sn, b, st, m, f, si, l, nb, nbo, bl, tm, ti, en, li, i, bb)"""


def _same(con: duckdb.DuckDBPyConnection, sql: str, params=None, *, ordered: bool = True) -> pd.DataFrame:
    expected = con.execute(sql, params).df() if params else con.execute(sql).df()
    got = fetch_frame(con, sql, params)
    if not ordered:  # a view without ORDER BY: rows may come in any order
        def by_row(frame):
            key = pd.Series(["|".join(map(repr, row)) for row in frame.itertuples(index=False)])
            return frame.iloc[key.argsort(kind="stable").to_numpy()].reset_index(drop=True)
        expected, got = by_row(expected), by_row(got)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    return got


@pytest.mark.parametrize("where", ["", "WHERE i = 1", "WHERE i = 2"])
def test_every_type_converts_as_duckdb_does(where):
    con = duckdb.connect()
    con.execute("CREATE TYPE color AS ENUM ('e', 'f')")
    got = _same(con, f"SELECT * FROM ({EVERY_TYPE}) {where}")
    assert list(got.columns)[-2:] == ["i_1", "bb"]  # a repeated name is numbered, as .df() numbers it


def test_empty_and_all_null_results():
    con = duckdb.connect()
    _same(con, "SELECT 1 AS x, NULL::VARCHAR AS s, NULL::INTEGER AS n, NULL::VARCHAR[] AS l WHERE false")
    got = _same(con, "SELECT NULL::VARCHAR AS s, NULL::INTEGER AS n, NULL::BOOLEAN AS b FROM range(3)")
    assert got["s"].tolist() == [None, None, None]


def test_parameters_and_an_unread_result_before():
    con = duckdb.connect()
    con.execute("SELECT * FROM range(10)").fetchone()  # left unread: DuckDB 2 refuses con.sql() until it is done
    got = fetch_frame(con, "SELECT $n::INTEGER + 1 AS x, $s AS s", {"n": 2, "s": "q"})
    assert got.to_dict("records") == [{"x": 3, "s": "q"}]


def test_every_named_query_table_and_view_of_the_demo(demo_db):
    con = connect(demo_db, read_only=True)
    try:
        for query in load_queries().values():
            _same(con, query.sql, query.bind({}))
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()]
        assert len(names) > 20
        for name in names:
            _same(con, f'SELECT * FROM "{name}"', ordered=False)
    finally:
        con.close()
