"""Doublestar globs, one syntax for every repository and tag pattern: Harbor's selectors
(bmatcuk/doublestar), the native policy format, and every ``--repo``/``--include``/``--exclude`` option.

``*`` and ``?`` stop at ``/``; ``**`` crosses it. The translation is a regular expression both Python's
``re`` and RE2 read the same way.
"""

from __future__ import annotations

import re
from functools import lru_cache


def escape_char(char: str) -> str:
    # Escape punctuation only: RE2 and Python agree on "\<punct>", not on every escape re.escape emits.
    return char if char.isalnum() or char == "_" or ord(char) > 127 else "\\" + char


def glob_to_regex(pattern: str) -> str:
    """Translate a doublestar glob into an anchored regular expression.

    ``*`` and ``?`` stop at ``/``; ``**`` crosses it (``a/**/b`` also matches
    ``a/b``); ``[abc]``, ``[!abc]`` and ``{a,b}`` alternatives; ``\\`` escapes.
    This is the syntax of Harbor's selectors (bmatcuk/doublestar) and of the native
    format's repository and tag globs. Raises ``ValueError`` on unbalanced brackets.
    """
    return "^" + _glob_body(pattern, 0, len(pattern), top=True)[0] + "$"


def _glob_body(p: str, i: int, end: int, *, top: bool, in_brace: bool = False) -> tuple[str, int]:
    out: list[str] = []
    alternatives: list[str] = []
    while i < end:
        c = p[i]
        if c == "\\":
            if i + 1 >= end:
                raise ValueError(f"pattern {p!r} ends with a lone backslash")
            out.append(escape_char(p[i + 1]))
            i += 2
        elif c == "*":
            if p.startswith("**", i):
                i += 2
                if i < end and p[i] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
                i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            close = p.find("]", i + 2 if p[i + 1:i + 2] in ("!", "^") else i + 1)
            if close == -1:
                raise ValueError(f"pattern {p!r} has an unclosed '['")
            body = p[i + 1:close]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            chars = "".join("\\" + ch if ch in "\\]^[" else ch for ch in body)
            out.append(f"[{'^/' if negate else ''}{chars}]")
            i = close + 1
        elif c == "{":
            inner, i = _glob_body(p, i + 1, end, top=False, in_brace=True)
            out.append(inner)
        elif c == "}" and in_brace:
            alternatives.append("".join(out))
            return "(?:" + "|".join(alternatives) + ")", i + 1
        elif c == "," and in_brace:
            alternatives.append("".join(out))
            out = []
            i += 1
        else:
            out.append(escape_char(c))
            i += 1
    if in_brace:
        raise ValueError(f"pattern {p!r} has an unclosed '{{'")
    return "".join(out), i


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The compiled :func:`glob_to_regex` of ``pattern`` (``ValueError`` when it is malformed)."""
    return re.compile(glob_to_regex(pattern))


def glob_matches(pattern: str, name: str) -> bool:
    return compile_glob(pattern).match(name) is not None
