"""Engine SQL in ``.sql`` files beside the code that runs it, aiosql style.

A file holds named statements, each starting with a ``-- name:`` line; comment lines after it
document the statement::

    -- name: fold_links
    -- Links of one snapshot: a tagged image, an index child or an untagged revision.
    INSERT INTO repository_links SELECT ...

Load a file once per module and run statements by name::

    SQL = statements(__package__, "kept.sql")
    con.execute(SQL["fold_links"], [snapshot_id])

Parameters are DuckDB's own (``?`` or ``$name``), always bound, never pasted. The named
analysis queries users run live in the top-level ``queries/`` instead (``analysis.queries``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.M)


class Statements(dict):
    """Statement text by name; a missing name is a KeyError naming the file."""

    def __init__(self, source: str, items: dict[str, str]):
        super().__init__(items)
        self.source = source

    def __missing__(self, name: str) -> str:
        raise KeyError(f"{self.source} has no statement named {name!r}")


def parse_statements(text: str, source: str = "<sql>") -> Statements:
    """Split a file's text into its named statements (comments kept: DuckDB ignores them)."""
    marks = list(_NAME.finditer(text))
    items: dict[str, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        name = mark.group(1)
        if name in items:
            raise ValueError(f"{source}: statement {name!r} is defined twice")
        items[name] = text[mark.end():end].strip().rstrip(";").strip()
    return Statements(source, items)


@lru_cache(maxsize=None)
def statements(package: str, filename: str) -> Statements:
    """The named statements of ``filename`` in ``package`` (pass ``__package__``)."""
    text = resources.files(package).joinpath(filename).read_text()
    return parse_statements(text, f"{package.replace('.', '/')}/{filename}")
