"""Databases as older repoaudits wrote them, from ``fixtures/schema-v12.sql``.

That file is repoaudit's own schema as one file of ``-- migration: N`` blocks, tables and views mixed,
as it stood before the schema became numbered migration files and ``views.sql``. Running its first N
blocks in order, one transaction each, is what the repoaudit of schema version N did to a new database;
the Python steps it ran after blocks 10 and 11 are today's (``assign_keys``, ``refill_latest``: unchanged).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import duckdb

from repoaudit.store.kept import assign_keys, refill_latest

SCHEMA_V12 = Path(__file__).resolve().parent / "fixtures" / "schema-v12.sql"
_BLOCK = re.compile(r"^-- migration: (\d+) (.*)$", re.M)
_AFTER = {10: assign_keys, 11: refill_latest}


def old_migrations() -> list[tuple[int, str, str]]:
    """(version, title, sql) of every block of the old schema file, in order."""
    text = SCHEMA_V12.read_text()
    marks = list(_BLOCK.finditer(text))
    return [(int(m.group(1)), m.group(2).strip(),
             text[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(text)])
            for i, m in enumerate(marks)]


def build_old_database(path: str | Path, version: int,
                       seed: Callable[[duckdb.DuckDBPyConnection, int], None] | None = None) -> None:
    """Write a database at schema ``version`` as that repoaudit did; ``seed(con, v)`` runs after block v,
    so rows written then go through the later blocks' own data steps, as a user's rows did."""
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        for v, title, sql in old_migrations():
            if v > version:
                break
            con.execute("BEGIN TRANSACTION")
            con.execute(sql)
            if v in _AFTER:
                _AFTER[v](con)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [v, title])
            con.execute("COMMIT")
            if seed is not None:
                seed(con, v)
    finally:
        con.close()
