"""Retention policies in one normalized model, whatever format they were written in.

Every format (:mod:`repoaudit.retention.formats`) is parsed into a :class:`Policy`, which
:mod:`repoaudit.retention.engine` evaluates against a snapshot. The model is small on purpose:

* a :class:`Rule` has an action (``keep`` or ``delete``), repository selectors,
  tag selectors and conditions; selectors and conditions within a rule are
  ANDed;
* the policy's ``mode`` says how rules combine, because the products disagree:

  ``retain`` (repoaudit's native YAML, Harbor tag retention)
      everything in scope that no rule keeps is a candidate (keep wins);
  ``first_match`` (AWS ECR lifecycle policies)
      rules are tried in ``rulePriority`` order; the first rule whose tag
      selection matches an image decides whether it expires, and a later rule can
      never expire it; counts are taken over each rule's whole selection;
  ``keep_wins`` (Google Artifact Registry cleanup policies)
      candidates are what some DELETE policy matches and no KEEP policy matches.

The unit a policy decides about is an *image*: one manifest digest in one
repository with all the tags that point at it there (Harbor, ECR and GAR all
delete by digest, and so does ``DELETE /v2/<name>/manifests/<digest>``). A rule
selects an image when one of its tags matches, so keeping one tag keeps them all.

Patterns are kept as regular expressions with search semantics (globs and
prefixes are anchored when translated), so the engine matches every format with
one SQL function (DuckDB's RE2 ``regexp_matches``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from repoaudit.model.glob import escape_char, glob_to_regex

__all__ = ["DAY", "FORMATS", "Condition", "Pattern", "Policy", "RepoSelector", "Rule", "TagSelector",
           "glob_to_regex", "parse_duration"]

FORMATS = ("native", "harbor", "ecr", "gar")
DAY = 86400.0


# -- patterns ---------------------------------------------------------------------------


def _wildcard_to_regex(pattern: str) -> str:
    """ECR's tagPatternList: ``*`` matches any characters, everything else is literal."""
    return "^" + ".*".join("".join(escape_char(c) for c in part) for part in pattern.split("*")) + "$"


@dataclass(frozen=True)
class Pattern:
    """One name pattern, kept as written (``text``) and as a search regex (``regex``)."""

    kind: str  # glob | regex | prefix | wildcard
    text: str
    regex: str

    @classmethod
    def glob(cls, text: str) -> "Pattern":
        return cls("glob", text, glob_to_regex(text))

    @classmethod
    def prefix(cls, text: str) -> "Pattern":
        return cls("prefix", text, "^" + "".join(escape_char(c) for c in text))

    @classmethod
    def wildcard(cls, text: str) -> "Pattern":
        return cls("wildcard", text, _wildcard_to_regex(text))

    @classmethod
    def re(cls, text: str) -> "Pattern":
        return cls("regex", text, text)

    def matches(self, value: str) -> bool:
        return re.search(self.regex, value) is not None

    def __str__(self) -> str:
        return self.text if self.kind in ("glob", "wildcard") else f"{self.kind}:{self.text}"


@dataclass(frozen=True)
class RepoSelector:
    """Which repositories a rule (or the policy) covers.

    ``include`` patterns: at least one must match (none given: every repository);
    ``exclude`` patterns: none may match. ``relative`` matches the repository name
    without its first path component (Harbor patterns are relative to the project),
    and ``namespaces`` then limits the first component.
    """

    include: tuple[Pattern, ...] = ()
    exclude: tuple[Pattern, ...] = ()
    relative: bool = False
    namespaces: tuple[str, ...] = ()

    def matches(self, repository: str) -> bool:
        name = repository
        if self.relative or self.namespaces:
            namespace, sep, rest = repository.partition("/")
            if self.namespaces and (not sep or namespace not in self.namespaces):
                return False
            if self.relative and sep:
                name = rest
        if self.include and not any(p.matches(name) for p in self.include):
            return False
        return not any(p.matches(name) for p in self.exclude)


@dataclass(frozen=True)
class TagSelector:
    """Which images a rule looks at, by their tags.

    An image with tags is selected when ``tagged`` and its tags satisfy the
    patterns: ``combine="any"``: some pattern matches some tag; ``"all"``: every
    pattern matches some tag (ECR). ``negate`` (Harbor "excludes") selects an image
    when some tag matches none of the patterns. No patterns: every tagged image.
    An image without tags is selected when ``untagged``.
    """

    tagged: bool = True
    untagged: bool = True
    patterns: tuple[Pattern, ...] = ()
    combine: str = "any"
    negate: bool = False


@dataclass(frozen=True)
class Condition:
    """A test on a selected image; a rule fires when all of its conditions hold.

    ``always``; ``most_recent`` (among the images the rule selects in the
    repository, the ``count`` newest ``by`` created or push time); ``newer_than`` /
    ``older_than`` (``seconds`` before the plan's reference time); ``tags``
    (carries a tag matching ``patterns``); ``deployed`` (a current workload runs
    it); ``digest`` (digest matches a pattern). ``negate`` inverts the test (ECR
    ``imageCountMoreThan`` is "not among the N most recent").
    """

    kind: str
    count: int | None = None
    seconds: float | None = None
    # created | pushed (the image's own push) | last_push (raised to its tags' pushes: Harbor) |
    # pulled (the last pull by a runtime, from registry events)
    by: str = "pushed"
    patterns: tuple[Pattern, ...] = ()
    negate: bool = False
    inclusive: bool = False  # newer_than: an image exactly ``seconds`` old still counts (Harbor's >=)

    def describe(self) -> str:
        by = f" by {self.by}" if self.kind in ("most_recent", "newer_than", "older_than") else ""
        if self.by == "pulled" and self.kind in ("most_recent", "newer_than"):
            text = (f"{self.count} most recently pulled" if self.kind == "most_recent"
                    else f"pulled within {self.seconds / DAY:g}d")
            return f"not {text}" if self.negate else text
        if self.kind == "most_recent":
            text = f"{self.count} most recent{by}"
        elif self.kind in ("newer_than", "older_than"):
            days = self.seconds / DAY
            text = f"{self.kind.replace('_', ' ')} {days:g}d{by}"
        elif self.kind in ("tags", "digest"):
            text = f"{self.kind} {', '.join(map(str, self.patterns))}"
        else:
            text = self.kind
        return f"not {text}" if self.negate else text


@dataclass(frozen=True)
class Rule:
    name: str
    action: str  # keep | delete
    repositories: tuple[RepoSelector, ...] = ()
    tags: tuple[TagSelector, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def covers(self, repository: str) -> bool:
        return all(s.matches(repository) for s in self.repositories)

    def describe(self) -> str:
        conds = " and ".join(c.describe() for c in self.conditions) or "always"
        return f"{self.name}: {self.action} {conds}"


@dataclass(frozen=True)
class Policy:
    """A retention policy in repoaudit's normalized form (see the module docstring)."""

    name: str
    format: str
    mode: str  # retain | first_match | keep_wins
    rules: tuple[Rule, ...]
    # retain mode: a repository is in scope when every selector of some group matches; () = every repository.
    scope: tuple[tuple[RepoSelector, ...], ...] = ()
    source: str | None = None
    sha256: str | None = None
    notes: tuple[str, ...] = ()
    description: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)

    def in_scope(self, repository: str) -> bool:
        if not self.scope:
            return True
        return any(all(s.matches(repository) for s in group) for group in self.scope)

    def pull_windows(self) -> list[tuple[str, float | None]]:
        """``(rule description, seconds)`` of every condition on pull times (None: no window, a ranking)."""
        return [(rule.describe(), c.seconds if c.kind != "most_recent" else None)
                for rule in self.rules for c in rule.conditions if c.by == "pulled"]

    @property
    def push_time(self) -> str:
        """Which push time the plan reports for this policy's candidates: ``last_push`` when a condition
        dates images by their tags' pushes too (Harbor), else ``pushed``."""
        uses = {c.by for r in self.rules for c in r.conditions if c.kind in ("most_recent", "newer_than",
                                                                                "older_than")}
        return "last_push" if "last_push" in uses else "pushed"

    @property
    def uses_deployed(self) -> bool:
        return any(c.kind == "deployed" for r in self.rules for c in r.conditions)


# -- durations ------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}


def parse_duration(value: Any, *, bare_unit: str | None = "d") -> float:
    """Seconds in ``90d``, ``12w``, ``36h``, ``2592000s``; a bare number is in ``bare_unit`` (None: refused)."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if bare_unit is None:
            raise ValueError(f"duration {value!r} needs a unit (s, m, h, d or w)")
        return float(value) * _UNIT_SECONDS[bare_unit]
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (want e.g. 90d, 12w, 36h, 2592000s)")
    unit = m.group(2) or bare_unit
    if unit is None:
        raise ValueError(f"duration {value!r} needs a unit (s, m, h, d or w)")
    return float(m.group(1)) * _UNIT_SECONDS[unit]
