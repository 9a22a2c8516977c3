"""Named SQL queries: one ``.sql`` file each in ``queries/``, aiosql style.

A file starts with a header of comment lines::

    -- name: stale_images
    -- description: Images older than N days that no rule protects.
    -- param: older_than_days INTEGER = 90 | age threshold in days
    -- param: registry VARCHAR = NULL | limit to one registry

then the SQL, which refers to parameters as ``$older_than_days``. Values are
always bound by DuckDB, never pasted into the text. Further comment lines after
the ``description`` line continue it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from repoaudit.errors import QueryError

_HEADER = re.compile(r"^--\s*(name|description|param):\s*(.*)$")
_PARAM = re.compile(r"^(\w+)\s+(\w+)\s*(?:=\s*(.*?))?\s*(?:\|\s*(.*))?$")
_TYPES = ("INTEGER", "BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN", "DATE", "TIMESTAMP")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any
    description: str

    def convert(self, value: Any, query: str) -> Any:
        """Turn a CLI string (or a Python value) into this parameter's type."""
        if value is None:
            return None
        try:
            if self.type in ("INTEGER", "BIGINT"):
                if isinstance(value, bool):
                    raise ValueError(value)
                return int(value)
            if self.type == "DOUBLE":
                return float(value)
            if self.type == "BOOLEAN":
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in ("true", "1", "yes", "on"):
                    return True
                if text in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            if self.type == "DATE":
                return value if isinstance(value, date) else date.fromisoformat(str(value))
            if self.type == "TIMESTAMP":
                return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            return str(value)
        except (TypeError, ValueError):
            raise QueryError(f"query {query}: parameter {self.name} wants {self.type}, got {value!r}") from None


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str
    path: Path

    def bind(self, values: dict[str, Any]) -> dict[str, Any]:
        known = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise QueryError(f"query {self.name} has no parameter {', '.join(unknown)} (valid: {valid})")
        bound = {}
        for p in self.params:
            if p.name in values:
                bound[p.name] = p.convert(values[p.name], self.name)
            else:
                bound[p.name] = p.default
        # DuckDB rejects named parameters the SQL does not use; pass only the used ones.
        return {k: v for k, v in bound.items() if re.search(rf"\${k}\b", self.sql)}


def _parse_default(text: str | None, param_type: str, where: str) -> Any:
    if text is None or text.upper() == "NULL" or text == "":
        return None
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return Param("default", param_type, None, "").convert(text, where)


def parse_query_file(path: Path) -> NamedQuery:
    name = None
    description: list[str] = []
    params: list[Param] = []
    body_lines: list[str] = []
    in_header = True
    last = None
    for line in path.read_text().splitlines():
        m = _HEADER.match(line.strip()) if in_header else None
        if m:
            key, value = m.group(1), m.group(2).strip()
            last = key
            if key == "name":
                name = value
            elif key == "description":
                description.append(value)
            else:
                pm = _PARAM.match(value)
                if not pm or pm.group(2).upper() not in _TYPES:
                    raise QueryError(f"{path}: bad param line {value!r} (want 'name TYPE = default | text', "
                                     f"TYPE one of {', '.join(_TYPES)})")
                ptype = pm.group(2).upper()
                params.append(Param(pm.group(1), ptype, _parse_default(pm.group(3), ptype, str(path)),
                                    (pm.group(4) or "").strip()))
            continue
        if in_header and line.startswith("--") and last == "description":
            description.append(line.lstrip("-").strip())
            continue
        if in_header and not line.strip():
            continue
        in_header = False
        body_lines.append(line)
    if not name:
        raise QueryError(f"{path}: missing '-- name:' header")
    if name != path.stem:
        raise QueryError(f"{path}: query name {name!r} differs from the file name")
    return NamedQuery(name, " ".join(d for d in description if d), tuple(params),
                      "\n".join(body_lines).strip().rstrip(";"), path)


def queries_dir() -> Path:
    """``queries/`` beside the package in a checkout, or packaged inside it by the wheel."""
    packaged = Path(str(resources.files("repoaudit"))) / "queries"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "queries"


@lru_cache(maxsize=None)
def _load(directory: str) -> dict[str, NamedQuery]:
    found = {}
    for path in sorted(Path(directory).glob("*.sql")):
        q = parse_query_file(path)
        found[q.name] = q
    return found


def load_queries(directory: Path | None = None) -> dict[str, NamedQuery]:
    return _load(str(directory or queries_dir()))


def get_query(name: str, directory: Path | None = None) -> NamedQuery:
    queries = load_queries(directory)
    if name not in queries:
        raise QueryError(f"unknown query {name!r} (valid: {', '.join(sorted(queries)) or 'none'})")
    return queries[name]
