"""Checks every policy parser shares: typed fields, globs and RE2 regexes, one-line errors."""

from __future__ import annotations

import re
from typing import Any

import duckdb

from repoaudit.errors import PolicyError, first_line
from repoaudit.retention.policy import Pattern

__all__ = ["Where", "glob_pattern", "integer", "mapping", "regex_pattern", "str_list", "unknown_keys"]


class Where:
    """Builds one-line errors: ``FILE: rule NAME: FIELD: problem``."""

    def __init__(self, source: str):
        self.source = source

    def error(self, problem: str, *, rule: str | None = None, field: str | None = None) -> PolicyError:
        parts = [self.source]
        if rule is not None:
            parts.append(f"rule {rule}")
        if field is not None:
            parts.append(field)
        return PolicyError(": ".join(parts) + ": " + problem)


def regex_pattern(text: str, where: Where, rule: str, field: str) -> Pattern:
    if not isinstance(text, str) or not text:
        raise where.error(f"must be a non-empty regular expression, got {text!r}", rule=rule, field=field)
    try:
        re.compile(text)
    except re.error as exc:
        raise where.error(f"invalid regular expression {text!r}: {exc}", rule=rule, field=field) from None
    # The engine matches in DuckDB (RE2), which has no lookaround or backreferences.
    try:
        duckdb.connect().execute("SELECT regexp_matches('', ?)", [text]).fetchone()
    except duckdb.Error as exc:
        reason = first_line(exc)
        raise where.error(f"regular expression {text!r} is not RE2 syntax ({reason})", rule=rule,
                          field=field) from None
    return Pattern.re(text)


def glob_pattern(text: Any, where: Where, rule: str | None, field: str) -> Pattern:
    if not isinstance(text, str) or not text:
        raise where.error(f"must be a non-empty glob, got {text!r}", rule=rule, field=field)
    try:
        return Pattern.glob(text)
    except ValueError as exc:
        raise where.error(str(exc), rule=rule, field=field) from None


def str_list(value: Any, where: Where, rule: str | None, field: str, *, allow_scalar: bool = True) -> list[str]:
    if isinstance(value, str) and allow_scalar:
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise where.error(f"must be a non-empty list of strings, got {value!r}", rule=rule, field=field)
    return value


def integer(value: Any, where: Where, rule: str | None, field: str, *, minimum: int,
            maximum: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.error(f"must be an integer >= {minimum}, got {value!r}", rule=rule, field=field)
    if maximum is not None and value > maximum:
        raise where.error(f"must be at most {maximum}, got {value!r}", rule=rule, field=field)
    return value


def mapping(value: Any, where: Where, rule: str | None, field: str) -> dict:
    if not isinstance(value, dict):
        raise where.error(f"must be a mapping, got {type(value).__name__}", rule=rule, field=field)
    return value


def unknown_keys(doc: dict, known: set[str], where: Where, rule: str | None, field: str | None) -> None:
    unknown = sorted(set(doc) - known)
    if unknown:
        prefix = f"{field}." if field else ""
        raise where.error(f"unknown field (valid: {', '.join(sorted(known))})", rule=rule,
                          field=prefix + str(unknown[0]))
