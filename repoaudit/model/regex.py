"""Regular expressions as Go reads them, for the patterns Flux and Go registries define.

Flux compiles an ``ImageRepository``'s ``exclusionList`` with Go's ``regexp`` (RE2 syntax): a
lookahead such as ``^(?!v)`` fails the scan there, and ``\\.sig\\z`` works. Python's ``re`` reads
both the other way round, so tag exclusions (Flux's and ``--exclude-tag``) go through RE2 (the
``google-re2`` bindings) and accept and reject what Flux does. Matching is unanchored, as Go's
``MatchString``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would also print each refusal to stderr; the caller says it in one line


@functools.lru_cache(maxsize=1024)
def compile_go(pattern: str):
    """The compiled pattern; :class:`ValueError` with RE2's reason when Go would refuse it too."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        raise ValueError(reason.decode() if isinstance(reason, bytes) else str(reason)) from None


def matches_any(text: str, patterns: Iterable[str]) -> bool:
    """True when any pattern matches anywhere in ``text``."""
    return any(compile_go(pattern).search(text) is not None for pattern in patterns)
