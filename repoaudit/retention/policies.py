"""Retention policies: four input formats, one normalized model.

Every format is parsed into a :class:`Policy`, which :mod:`repoaudit.retention.engine`
evaluates against a snapshot. The model is small on purpose:

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

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from repoaudit import loader
from repoaudit.errors import PolicyError, first_line

__all__ = ["Condition", "FORMATS", "Pattern", "Policy", "RepoSelector", "Rule", "TagSelector", "glob_to_regex",
           "load_policy", "parse_duration", "parse_policy"]

FORMATS = ("native", "harbor", "ecr", "gar")
DAY = 86400.0


# -- patterns ---------------------------------------------------------------------------


def _escape(char: str) -> str:
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
            out.append(_escape(p[i + 1]))
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
            out.append(_escape(c))
            i += 1
    if in_brace:
        raise ValueError(f"pattern {p!r} has an unclosed '{{'")
    return "".join(out), i


def _wildcard_to_regex(pattern: str) -> str:
    """ECR's tagPatternList: ``*`` matches any characters, everything else is literal."""
    return "^" + ".*".join("".join(_escape(c) for c in part) for part in pattern.split("*")) + "$"


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
        return cls("prefix", text, "^" + "".join(_escape(c) for c in text))

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
    by: str = "pushed"  # created | pushed
    patterns: tuple[Pattern, ...] = ()
    negate: bool = False

    def describe(self) -> str:
        by = f" by {self.by}" if self.kind in ("most_recent", "newer_than", "older_than") else ""
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

    @property
    def uses_deployed(self) -> bool:
        return any(c.kind == "deployed" for r in self.rules for c in r.conditions)


# -- helpers shared by the parsers --------------------------------------------------------


class _Where:
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


def _check_regex(text: str, where: _Where, rule: str, field: str) -> Pattern:
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


def _glob(text: Any, where: _Where, rule: str | None, field: str) -> Pattern:
    if not isinstance(text, str) or not text:
        raise where.error(f"must be a non-empty glob, got {text!r}", rule=rule, field=field)
    try:
        return Pattern.glob(text)
    except ValueError as exc:
        raise where.error(str(exc), rule=rule, field=field) from None


def _str_list(value: Any, where: _Where, rule: str | None, field: str, *, allow_scalar: bool = True) -> list[str]:
    if isinstance(value, str) and allow_scalar:
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise where.error(f"must be a non-empty list of strings, got {value!r}", rule=rule, field=field)
    return value


def _int(value: Any, where: _Where, rule: str | None, field: str, *, minimum: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.error(f"must be an integer >= {minimum}, got {value!r}", rule=rule, field=field)
    return value


def _mapping(value: Any, where: _Where, rule: str | None, field: str) -> dict:
    if not isinstance(value, dict):
        raise where.error(f"must be a mapping, got {type(value).__name__}", rule=rule, field=field)
    return value


def _unknown_keys(doc: dict, known: set[str], where: _Where, rule: str | None, field: str | None) -> None:
    unknown = sorted(set(doc) - known)
    if unknown:
        prefix = f"{field}." if field else ""
        raise where.error(f"unknown field (valid: {', '.join(sorted(known))})", rule=rule,
                          field=prefix + str(unknown[0]))


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


# -- native YAML ----------------------------------------------------------------------------

_NATIVE_BY = {"created": "created", "pushed": "pushed", "first_seen": "pushed", "first-seen": "pushed"}


def _native_repos(value: Any, where: _Where, rule: str | None, field: str) -> RepoSelector:
    if isinstance(value, (str, list)):
        value = {"include": value}
    doc = _mapping(value, where, rule, field)
    _unknown_keys(doc, {"include", "exclude"}, where, rule, field)
    include = tuple(_glob(g, where, rule, f"{field}.include")
                    for g in _str_list(doc["include"], where, rule, f"{field}.include")) if "include" in doc else ()
    exclude = tuple(_glob(g, where, rule, f"{field}.exclude")
                    for g in _str_list(doc["exclude"], where, rule, f"{field}.exclude")) if "exclude" in doc else ()
    return RepoSelector(include, exclude)


def _native_tags(value: Any, where: _Where, rule: str) -> TagSelector:
    if isinstance(value, (str, list)):
        value = {"glob": value}
    doc = _mapping(value, where, rule, "tags")
    _unknown_keys(doc, {"status", "glob", "regex"}, where, rule, "tags")
    patterns: list[Pattern] = []
    if "glob" in doc:
        patterns += [_glob(g, where, rule, "tags.glob") for g in _str_list(doc["glob"], where, rule, "tags.glob")]
    if "regex" in doc:
        patterns += [_check_regex(r, where, rule, "tags.regex")
                     for r in _str_list(doc["regex"], where, rule, "tags.regex")]
    status = doc.get("status", "tagged" if patterns else "any")
    if status not in ("tagged", "untagged", "any"):
        raise where.error(f"must be tagged, untagged or any, got {status!r}", rule=rule, field="tags.status")
    if status == "untagged" and patterns:
        raise where.error("untagged images have no tags to match; drop glob/regex or use status any",
                          rule=rule, field="tags.status")
    return TagSelector(tagged=status != "untagged", untagged=status != "tagged", patterns=tuple(patterns))


def _native_keep(value: Any, where: _Where, rule: str) -> Condition:
    if value == "always" or value is True:
        return Condition("always")
    doc = _mapping(value, where, rule, "keep")
    conditions = {"always", "most_recent", "newer_than", "tags", "deployed"}
    _unknown_keys(doc, conditions | {"by"}, where, rule, "keep")
    given = [k for k in doc if k in conditions]
    if len(given) != 1:
        raise where.error(f"needs exactly one of {', '.join(sorted(conditions))} (got {', '.join(given) or 'none'}); "
                          "write one rule per condition", rule=rule, field="keep")
    kind = given[0]
    by_raw = doc.get("by", "created")
    if "by" in doc and kind not in ("most_recent", "newer_than"):
        raise where.error(f"only applies to most_recent and newer_than, not {kind}", rule=rule, field="keep.by")
    if by_raw not in _NATIVE_BY:
        raise where.error(f"must be created or first_seen, got {by_raw!r}", rule=rule, field="keep.by")
    by = _NATIVE_BY[by_raw]
    value = doc[kind]
    if kind == "always":
        if value is not True:
            raise where.error(f"must be true, got {value!r}", rule=rule, field="keep.always")
        return Condition("always")
    if kind == "deployed":
        if value is not True:
            raise where.error(f"must be true, got {value!r}", rule=rule, field="keep.deployed")
        return Condition("deployed")
    if kind == "most_recent":
        return Condition("most_recent", count=_int(value, where, rule, "keep.most_recent", minimum=0), by=by)
    if kind == "newer_than":
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise where.error(str(exc), rule=rule, field="keep.newer_than") from None
        return Condition("newer_than", seconds=seconds, by=by)
    globs = _str_list(value, where, rule, "keep.tags")
    return Condition("tags", patterns=tuple(_glob(g, where, rule, "keep.tags") for g in globs))


def parse_native(doc: Any, source: str = "<policy>") -> Policy:
    """repoaudit's own YAML: ordered ``rules`` that each keep something; the rest of ``scope`` goes."""
    where = _Where(source)
    doc = _mapping(doc, where, None, "policy")
    _unknown_keys(doc, {"name", "description", "format", "scope", "rules"}, where, None, None)
    scope = (_native_repos(doc["scope"], where, None, "scope"),) if "scope" in doc else ()
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise where.error("must be a non-empty list of rules", field="rules")
    rules = []
    for index, rdoc in enumerate(rules_doc, 1):
        label = str(index)
        rdoc = _mapping(rdoc, where, label, "rule")
        if "name" in rdoc:
            if not isinstance(rdoc["name"], str) or not rdoc["name"]:
                raise where.error(f"must be a non-empty string, got {rdoc['name']!r}", rule=label, field="name")
            label = f"{index} ({rdoc['name']})"
        _unknown_keys(rdoc, {"name", "repositories", "tags", "keep"}, where, label, None)
        if "keep" not in rdoc:
            raise where.error("missing (always, most_recent, newer_than, tags or deployed)", rule=label, field="keep")
        repos = (_native_repos(rdoc["repositories"], where, label, "repositories"),) if "repositories" in rdoc else ()
        tags = (_native_tags(rdoc["tags"], where, label),) if "tags" in rdoc else ()
        keep = _native_keep(rdoc["keep"], where, label)
        rules.append(Rule(rdoc.get("name") or f"rule {index}", "keep", repos, tags, (keep,)))
    return Policy(name=doc.get("name") or "native", format="native", mode="retain", rules=tuple(rules),
                  scope=(scope,) if scope else (), description=doc.get("description"))


# -- Harbor tag retention ------------------------------------------------------------------------

_HARBOR_TEMPLATES = ("always", "latestPushedK", "nDaysSinceLastPush", "latestPulledN", "nDaysSinceLastPull")


def _harbor_extras_untagged(value: Any, default: bool, where: _Where, rule: str, field: str) -> bool:
    if value in (None, ""):
        return default
    if isinstance(value, str):
        try:
            value = loader.parse_document(value, name="extras", kind="policy", fmt="json")
        except PolicyError:
            return default  # Harbor ignores extras it cannot parse
    if isinstance(value, dict):
        untagged = value.get("untagged", False)
        if not isinstance(untagged, bool):
            raise where.error(f"untagged must be true or false, got {untagged!r}", rule=rule, field=field)
        return untagged
    raise where.error(f"must be a JSON object, got {value!r}", rule=rule, field=field)


def parse_harbor(doc: Any, source: str = "<policy>") -> Policy:
    """Harbor's retention policy JSON (``GET /api/v2.0/retentions/{id}``), evaluated as Harbor does.

    Rules are ORed retain rules; repositories that no enabled rule's scope selectors
    match are left alone; repository patterns see the name without its project.
    """
    where = _Where(source)
    doc = _mapping(doc, where, None, "policy")
    algorithm = doc.get("algorithm", "or")
    if algorithm != "or":
        raise where.error(f"only 'or' is defined by Harbor, got {algorithm!r}", field="algorithm")
    notes: list[str] = []
    namespaces: tuple[str, ...] = ()
    scope = doc.get("scope")
    if scope is not None:
        scope = _mapping(scope, where, None, "scope")
        ref = scope.get("ref")
        if scope.get("level", "project") == "project" and isinstance(ref, str) and ref:
            namespaces = (ref,)
        elif ref is not None and scope.get("level", "project") == "project":
            notes.append(f"scope.ref {ref!r} is a Harbor project id, which a registry does not expose: "
                         "the policy is evaluated in every project (first path component)")
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise where.error("must be a non-empty list of rules", field="rules")
    rules: list[Rule] = []
    scope_groups: list[tuple[RepoSelector, ...]] = []
    for index, rdoc in enumerate(rules_doc, 1):
        label = str(index)
        rdoc = _mapping(rdoc, where, label, "rule")
        template = rdoc.get("template")
        if template not in _HARBOR_TEMPLATES:
            raise where.error(f"unknown template {template!r} (valid: {', '.join(_HARBOR_TEMPLATES)})",
                              rule=label, field="template")
        label = f"{index} ({template})"
        if rdoc.get("disabled") is True:
            notes.append(f"rule {label} is disabled and was skipped")
            continue
        action = rdoc.get("action", "retain")
        if action != "retain":
            raise where.error(f"Harbor rules only retain, got {action!r}", rule=label, field="action")
        if template in ("latestPulledN", "nDaysSinceLastPull"):
            raise where.error("needs pull times, which registries do not expose to repoaudit; use latestPushedK "
                              "or nDaysSinceLastPush, or a native policy", rule=label, field="template")
        params = rdoc.get("params") or {}
        params = _mapping(params, where, label, "params")
        if template == "always":
            condition = Condition("always")
        elif template == "latestPushedK":
            k = _int(params.get("latestPushedK"), where, label, "params.latestPushedK", minimum=0)
            condition = Condition("most_recent", count=k, by="pushed")
        else:
            n = _int(params.get("nDaysSinceLastPush"), where, label, "params.nDaysSinceLastPush", minimum=0)
            condition = Condition("newer_than", seconds=n * DAY, by="pushed")

        tag_selectors = []
        for j, sel in enumerate(rdoc.get("tag_selectors") or [], 1):
            field = f"tag_selectors[{j}]"
            sel = _mapping(sel, where, label, field)
            if sel.get("kind", "doublestar") != "doublestar":
                raise where.error(f"only doublestar selectors can be evaluated, got {sel.get('kind')!r}",
                                  rule=label, field=f"{field}.kind")
            decoration = sel.get("decoration", "matches")
            if decoration not in ("matches", "excludes"):
                raise where.error(f"must be matches or excludes, got {decoration!r}", rule=label,
                                  field=f"{field}.decoration")
            pattern = sel.get("pattern", "")
            if not isinstance(pattern, str):
                raise where.error(f"must be a string, got {pattern!r}", rule=label, field=f"{field}.pattern")
            # Harbor's selector: untagged artifacts count for "matches" unless extras say otherwise.
            untagged = _harbor_extras_untagged(sel.get("extras"), decoration == "matches", where, label,
                                               f"{field}.extras")
            if decoration == "excludes":
                untagged = not untagged  # Harbor: an excludes selector picks untagged artifacts when untagged=false
            patterns = (_glob(pattern, where, label, f"{field}.pattern"),) if pattern else ()
            if decoration == "excludes" and not patterns:
                tag_selectors.append(TagSelector(tagged=False, untagged=untagged))
            else:
                tag_selectors.append(TagSelector(tagged=True, untagged=untagged, patterns=patterns,
                                                 negate=decoration == "excludes"))
        repo_selectors = []
        scope_sel = rdoc.get("scope_selectors") or {}
        scope_sel = _mapping(scope_sel, where, label, "scope_selectors")
        for key in scope_sel:
            if key != "repository":
                raise where.error("only repository selectors can be evaluated", rule=label,
                                  field=f"scope_selectors.{key}")
        for j, sel in enumerate(scope_sel.get("repository") or [], 1):
            field = f"scope_selectors.repository[{j}]"
            sel = _mapping(sel, where, label, field)
            if sel.get("kind", "doublestar") != "doublestar":
                raise where.error(f"only doublestar selectors can be evaluated, got {sel.get('kind')!r}",
                                  rule=label, field=f"{field}.kind")
            decoration = sel.get("decoration", "repoMatches")
            if decoration not in ("repoMatches", "repoExcludes"):
                raise where.error(f"must be repoMatches or repoExcludes, got {decoration!r}", rule=label,
                                  field=f"{field}.decoration")
            pattern = _glob(sel.get("pattern") or "**", where, label, f"{field}.pattern")
            if decoration == "repoMatches":
                repo_selectors.append(RepoSelector(include=(pattern,), relative=True, namespaces=namespaces))
            else:
                repo_selectors.append(RepoSelector(exclude=(pattern,), relative=True, namespaces=namespaces))
        if not repo_selectors:
            repo_selectors.append(RepoSelector(relative=True, namespaces=namespaces))
        rules.append(Rule(f"rule {label}", "keep", tuple(repo_selectors), tuple(tag_selectors), (condition,)))
        scope_groups.append(tuple(repo_selectors))
    if not rules:
        notes.append("every rule is disabled: nothing is in scope")
        scope_groups.append((RepoSelector(exclude=(Pattern.glob("**"),)),))
    return Policy(name="harbor", format="harbor", mode="retain", rules=tuple(rules), scope=tuple(scope_groups),
                  notes=tuple(notes))


# -- AWS ECR lifecycle ---------------------------------------------------------------------------


def parse_ecr(doc: Any, source: str = "<policy>") -> Policy:
    """An ECR lifecycle policy (``lifecyclePolicyText``), with ECR's validation and priority semantics."""
    where = _Where(source)
    doc = _mapping(doc, where, None, "policy")
    _unknown_keys(doc, {"rules"}, where, None, None)
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise where.error("must be a non-empty list of rules", field="rules")
    parsed: list[tuple[int, Rule, str, str]] = []
    seen: dict[int, int] = {}
    for index, rdoc in enumerate(rules_doc, 1):
        label = str(index)
        rdoc = _mapping(rdoc, where, label, "rule")
        _unknown_keys(rdoc, {"rulePriority", "description", "selection", "action"}, where, label, None)
        priority = _int(rdoc.get("rulePriority"), where, label, "rulePriority", minimum=1)
        label = f"{index} (rulePriority {priority})"
        if priority in seen:
            raise where.error(f"duplicates rule {seen[priority]}'s priority", rule=label, field="rulePriority")
        seen[priority] = index
        action = _mapping(rdoc.get("action"), where, label, "action")
        if action.get("type") != "expire":
            raise where.error(f"must be 'expire', got {action.get('type')!r}", rule=label, field="action.type")
        sel = _mapping(rdoc.get("selection"), where, label, "selection")
        _unknown_keys(sel, {"tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit",
                            "countNumber"}, where, label, "selection")
        status = sel.get("tagStatus")
        if status not in ("tagged", "untagged", "any"):
            raise where.error(f"must be tagged, untagged or any, got {status!r}", rule=label,
                              field="selection.tagStatus")
        prefixes, wildcards = sel.get("tagPrefixList"), sel.get("tagPatternList")
        if prefixes is not None and wildcards is not None:
            raise where.error("use tagPrefixList or tagPatternList, not both", rule=label,
                              field="selection.tagPatternList")
        patterns: tuple[Pattern, ...] = ()
        if prefixes is not None or wildcards is not None:
            if status != "tagged":
                raise where.error("tag lists need tagStatus tagged", rule=label,
                                  field="selection.tagPrefixList" if prefixes is not None else
                                  "selection.tagPatternList")
            if prefixes is not None:
                patterns = tuple(Pattern.prefix(p) for p in
                                 _str_list(prefixes, where, label, "selection.tagPrefixList", allow_scalar=False))
            else:
                texts = _str_list(wildcards, where, label, "selection.tagPatternList", allow_scalar=False)
                for text in texts:
                    if text.count("*") > 4:
                        raise where.error(f"{text!r} has more than 4 wildcards", rule=label,
                                          field="selection.tagPatternList")
                patterns = tuple(Pattern.wildcard(t) for t in texts)
        elif status == "tagged":
            raise where.error("tagStatus tagged needs tagPrefixList or tagPatternList", rule=label,
                              field="selection.tagStatus")
        count_type = sel.get("countType")
        number = _int(sel.get("countNumber"), where, label, "selection.countNumber", minimum=1)
        if count_type == "imageCountMoreThan":
            if "countUnit" in sel:
                raise where.error("only applies to sinceImagePushed", rule=label, field="selection.countUnit")
            condition = Condition("most_recent", count=number, by="pushed", negate=True)
        elif count_type == "sinceImagePushed":
            if sel.get("countUnit") != "days":
                raise where.error(f"must be 'days' with sinceImagePushed, got {sel.get('countUnit')!r}",
                                  rule=label, field="selection.countUnit")
            condition = Condition("older_than", seconds=number * DAY, by="pushed")
        elif count_type in ("sinceImagePulled", "sinceImageTransitioned"):
            raise where.error(f"{count_type} needs pull or archive times, which registries do not expose to "
                              "repoaudit", rule=label, field="selection.countType")
        else:
            raise where.error(f"must be imageCountMoreThan or sinceImagePushed, got {count_type!r}", rule=label,
                              field="selection.countType")
        tags = TagSelector(tagged=status != "untagged", untagged=status != "tagged", patterns=patterns,
                           combine="all")
        name = f"rule {priority}" + (f" ({rdoc['description']})" if rdoc.get("description") else "")
        parsed.append((priority, Rule(name, "delete", (), (tags,), (condition,)), status, label))
    parsed.sort(key=lambda item: item[0])
    for position, (_priority, _rule, status, label) in enumerate(parsed):
        if status == "any" and position != len(parsed) - 1:
            raise where.error("a tagStatus any rule must have the highest rulePriority", rule=label,
                              field="rulePriority")
    untagged = [label for _p, _r, s, label in parsed if s == "untagged"]
    if len(untagged) > 1:
        raise where.error("only one rule may select untagged images", rule=untagged[1], field="selection.tagStatus")
    return Policy(name="ecr", format="ecr", mode="first_match", rules=tuple(r for _p, r, _s, _l in parsed))


# -- Google Artifact Registry cleanup --------------------------------------------------------------

_GAR_CONDITION = {"tagState", "tagPrefixes", "versionNamePrefixes", "packageNamePrefixes", "olderThan", "newerThan"}


def _gar_policies(doc: Any, where: _Where) -> list[tuple[str, dict]]:
    if isinstance(doc, dict) and "cleanupPolicies" in doc:
        doc = doc["cleanupPolicies"]
    if isinstance(doc, dict):  # the REST form: a map from policy id to policy
        return [(str(k), _mapping(v, where, str(k), "policy")) for k, v in doc.items()]
    if isinstance(doc, list) and doc:
        out = []
        for index, p in enumerate(doc, 1):
            p = _mapping(p, where, str(index), "policy")
            out.append((str(p.get("name") or p.get("id") or index), p))
        return out
    raise where.error("must be a non-empty list of cleanup policies", field="policies")


def parse_gar(doc: Any, source: str = "<policy>") -> Policy:
    """Artifact Registry cleanup policies (the ``gcloud … set-cleanup-policies`` file, or the REST map)."""
    where = _Where(source)
    rules = []
    for name, pdoc in _gar_policies(doc, where):
        _unknown_keys(pdoc, {"name", "id", "action", "condition", "mostRecentVersions"}, where, name, None)
        action_doc = pdoc.get("action")
        action_type = action_doc.get("type") if isinstance(action_doc, dict) else action_doc
        if not isinstance(action_type, str) or action_type.upper() not in ("DELETE", "KEEP"):
            raise where.error(f"must be Delete or Keep, got {action_type!r}", rule=name, field="action.type")
        action = "delete" if action_type.upper() == "DELETE" else "keep"
        has_cond, has_recent = "condition" in pdoc, "mostRecentVersions" in pdoc
        if has_cond == has_recent:
            raise where.error("needs exactly one of condition and mostRecentVersions", rule=name, field="condition")
        if has_recent:
            if action != "keep":
                raise where.error("only applies to Keep policies", rule=name, field="mostRecentVersions")
            mrv = _mapping(pdoc["mostRecentVersions"], where, name, "mostRecentVersions")
            _unknown_keys(mrv, {"packageNamePrefixes", "keepCount"}, where, name, "mostRecentVersions")
            count = _int(mrv.get("keepCount"), where, name, "mostRecentVersions.keepCount", minimum=0)
            repos = ()
            if "packageNamePrefixes" in mrv:
                repos = (RepoSelector(include=tuple(Pattern.prefix(p) for p in _str_list(
                    mrv["packageNamePrefixes"], where, name, "mostRecentVersions.packageNamePrefixes"))),)
            rules.append(Rule(name, "keep", repos, (TagSelector(),),
                              (Condition("most_recent", count=count, by="pushed"),)))
            continue
        cond = _mapping(pdoc["condition"], where, name, "condition")
        _unknown_keys(cond, _GAR_CONDITION, where, name, "condition")
        state = cond.get("tagState", "any")
        if not isinstance(state, str) or state.lower() not in ("tagged", "untagged", "any"):
            raise where.error(f"must be tagged, untagged or any, got {state!r}", rule=name, field="condition.tagState")
        state = state.lower()
        patterns: tuple[Pattern, ...] = ()
        if "tagPrefixes" in cond:
            if state != "tagged":
                raise where.error("tagPrefixes needs tagState tagged", rule=name, field="condition.tagPrefixes")
            patterns = tuple(Pattern.prefix(p) for p in
                             _str_list(cond["tagPrefixes"], where, name, "condition.tagPrefixes"))
        tags = TagSelector(tagged=state != "untagged", untagged=state != "tagged", patterns=patterns)
        repos = ()
        if "packageNamePrefixes" in cond:
            repos = (RepoSelector(include=tuple(Pattern.prefix(p) for p in _str_list(
                cond["packageNamePrefixes"], where, name, "condition.packageNamePrefixes"))),)
        conditions = []
        if "versionNamePrefixes" in cond:
            conditions.append(Condition("digest", patterns=tuple(Pattern.prefix(p) for p in _str_list(
                cond["versionNamePrefixes"], where, name, "condition.versionNamePrefixes"))))
        for key, kind in (("olderThan", "older_than"), ("newerThan", "newer_than")):
            if key in cond:
                try:
                    seconds = parse_duration(cond[key], bare_unit=None)
                except ValueError as exc:
                    raise where.error(str(exc), rule=name, field=f"condition.{key}") from None
                conditions.append(Condition(kind, seconds=seconds, by="pushed"))
        rules.append(Rule(name, action, repos, (tags,), tuple(conditions)))
    if not any(r.action == "delete" for r in rules):
        raise where.error("has no Delete policy, so nothing would ever be deleted", field="policies")
    return Policy(name="gar", format="gar", mode="keep_wins", rules=tuple(rules))


# -- loading --------------------------------------------------------------------------------------

_PARSERS = {"native": parse_native, "harbor": parse_harbor, "ecr": parse_ecr, "gar": parse_gar}


def detect_format(doc: Any) -> str | None:
    """Which of the four formats a parsed document is, from its shape; None when it is none of them."""
    if isinstance(doc, list):
        return "gar"
    if not isinstance(doc, dict):
        return None
    if doc.get("format") in FORMATS:
        return doc["format"]
    if "cleanupPolicies" in doc:
        return "gar"
    rules = doc.get("rules")
    if isinstance(rules, list) and rules and isinstance(rules[0], dict):
        first = rules[0]
        if "rulePriority" in first or "selection" in first:
            return "ecr"
        if "template" in first or "tag_selectors" in first or "scope_selectors" in first:
            return "harbor"
        if "keep" in first or "repositories" in first or "tags" in first:
            return "native"
    if doc and all(isinstance(v, dict) and "action" in v for v in doc.values()):
        return "gar"
    return None


def parse_policy(doc: Any, *, format: str | None = None, source: str = "<policy>",  # noqa: A002 - the policy format
                 name: str | None = None, text: str | None = None) -> Policy:
    """Parse an already loaded document (dict/list) in one of :data:`FORMATS` (detected when not given).

    The policy is named ``name``, else a native policy's own ``name``, else the
    file's stem, else its format. ``sha256`` covers ``text`` (the file as written)
    when given, else the document.
    """
    fmt = format or detect_format(doc)
    if fmt is None:
        raise PolicyError(f"{source}: not a native, Harbor, ECR or Artifact Registry policy "
                          "(cannot tell the format from its fields; pass format=)")
    if fmt not in _PARSERS:
        raise PolicyError(f"{source}: unknown policy format {fmt!r} (valid: {', '.join(FORMATS)})")
    if isinstance(doc, dict) and doc.get("format") not in (None, fmt):
        raise PolicyError(f"{source}: format: says {doc['format']!r} but was read as {fmt}")
    policy = _PARSERS[fmt](doc, source)
    if name is None and fmt == "native" and isinstance(doc, dict) and doc.get("name"):
        name = str(doc["name"])
    if name is None:
        name = Path(source).stem if not source.startswith("<") else fmt
    if text is None:
        text = json.dumps(doc, sort_keys=True, default=str)
    return Policy(name=name, format=fmt, mode=policy.mode, rules=policy.rules, scope=policy.scope,
                  source=source, sha256=hashlib.sha256(text.encode()).hexdigest(), notes=policy.notes,
                  description=policy.description, raw=doc)


def load_policy(policy: "str | Path | dict | list | Policy", *, format: str | None = None,  # noqa: A002
                name: str | None = None) -> Policy:
    """A :class:`Policy` from a file path, a loaded document, or a Policy (returned as is).

    ``.json`` files are read as JSON, anything else as YAML (a superset). The
    format is detected from the document's fields unless ``format`` is given.
    """
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (dict, list)):
        return parse_policy(policy, format=format, name=name)
    path = Path(policy)
    text = loader.read_text(path, kind="policy", empty_ok=True)
    doc = loader.parse_document(text, name=str(path), kind="policy", empty_ok=True,
                                fmt="json" if path.suffix.lower() == ".json" else "yaml")
    return parse_policy(doc, format=format, source=str(path), name=name, text=text)
