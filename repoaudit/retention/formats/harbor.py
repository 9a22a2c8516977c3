"""Harbor tag retention policies (``GET /api/v2.0/retentions/{id}``)."""

from __future__ import annotations

from typing import Any

from repoaudit import loader
from repoaudit.errors import PolicyError
from repoaudit.retention.formats.fields import (
    Where,
    glob_pattern,
    integer,
    mapping,
)
from repoaudit.retention.policy import (
    DAY,
    Condition,
    Pattern,
    Policy,
    RepoSelector,
    Rule,
    TagSelector,
)

_HARBOR_TEMPLATES = ("always", "latestPushedK", "nDaysSinceLastPush", "lastXDays", "latestPulledN",
                     "nDaysSinceLastPull", "latestActiveK")


def _harbor_extras_untagged(value: Any, default: bool, where: Where, rule: str, field: str) -> bool:
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


# Each template's DefaultK/DefaultX/DefaultN (rule/*/evaluator.go): New() falls back to it when the
# parameter is missing, and Valid() lets a missing parameter through.
_HARBOR_DEFAULTS = {"latestPushedK": 10, "lastXDays": 10, "nDaysSinceLastPush": 30,  # their evaluators' DefaultK/X/N
                    "latestPulledN": 10, "nDaysSinceLastPull": 30}


def _harbor_int(params: dict, name: str, where: Where, rule: str, notes: list[str], *, maximum: int) -> int:
    """A template parameter as Harbor's Valid and New read it (utils.ParseJSONInt): a JSON number,
    truncated to an integer as Go's int() does; missing: the template's default."""
    if name not in params:
        notes.append(f"rule {rule}: params.{name} is not set: Harbor's default {_HARBOR_DEFAULTS[name]} is used")
        return _HARBOR_DEFAULTS[name]
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(f"{name} type error: must be a number, got {value!r}", rule=rule, field=f"params.{name}")
    return integer(int(value), where, rule, f"params.{name}", minimum=0, maximum=maximum)


def _selector(value: Any, decorations: tuple[str, str], where: Where, rule: str, field: str) -> tuple[dict, str]:
    """A tag or repository selector: a doublestar one, and its decoration (the first of ``decorations``
    by default)."""
    sel = mapping(value, where, rule, field)
    if sel.get("kind", "doublestar") != "doublestar":
        raise where.error(f"only doublestar selectors can be evaluated, got {sel.get('kind')!r}",
                          rule=rule, field=f"{field}.kind")
    decoration = sel.get("decoration", decorations[0])
    if decoration not in decorations:
        raise where.error(f"must be {' or '.join(decorations)}, got {decoration!r}", rule=rule,
                          field=f"{field}.decoration")
    return sel, decoration


def parse_harbor(doc: Any, source: str = "<policy>") -> Policy:
    """Harbor's retention policy JSON (``GET /api/v2.0/retentions/{id}``), evaluated as Harbor does.

    Rules are ORed retain rules; repositories that no enabled rule's scope selectors
    match are left alone; repository patterns see the name without its project.
    """
    where = Where(source)
    doc = mapping(doc, where, None, "policy")
    algorithm = doc.get("algorithm", "or")
    if algorithm != "or":
        raise where.error(f"only 'or' is defined by Harbor, got {algorithm!r}", field="algorithm")
    notes: list[str] = []
    namespaces: tuple[str, ...] = ()
    scope = doc.get("scope")
    if scope is not None:
        scope = mapping(scope, where, None, "scope")
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
        rdoc = mapping(rdoc, where, label, "rule")
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
        # latestActiveK ranks by the later of push and pull (rule/latestk/evaluator.go: activeTime).
        if template == "latestActiveK":
            raise where.error("ranks by the later of push and pull time, which repoaudit does not evaluate; use "
                              "latestPulledN or nDaysSinceLastPull (from registry events) or latestPushedK",
                              rule=label, field="template")
        params = rdoc.get("params") or {}
        params = mapping(params, where, label, "params")
        if template == "always":
            condition = Condition("always")
        elif template == "latestPushedK":
            # Harbor's Valid (rule/latestps/evaluator.go): 0 <= K < math.MaxInt16.
            k = _harbor_int(params, "latestPushedK", where, label, notes, maximum=32766)
            condition = Condition("most_recent", count=k, by="last_push")
        elif template == "latestPulledN":
            # rule/latestpl/evaluator.go: the N most recently pulled; pull times come from registry events, and the
            # plan refuses unless they cover the images' whole life (engine: pull coverage).
            n = _harbor_int(params, "latestPulledN", where, label, notes, maximum=32766)
            condition = Condition("most_recent", count=n, by="pulled")
        elif template == "nDaysSinceLastPull":
            # rule/dayspl/evaluator.go: retains what was pulled at or after now - N days.
            n = _harbor_int(params, "nDaysSinceLastPull", where, label, notes, maximum=20190904)
            condition = Condition("newer_than", seconds=n * DAY, by="pulled", inclusive=True)
        elif template == "lastXDays":
            # rule/lastx/evaluator.go: retains what was pushed strictly after now - X days (After, not >=).
            x = _harbor_int(params, "lastXDays", where, label, notes, maximum=2**31 - 1)
            condition = Condition("newer_than", seconds=x * DAY, by="last_push")
        else:
            # Harbor's Valid (rule/dayspl, rule/daysps): 0 <= N <= 20190904; its Process retains an artifact
            # pushed at or after now - N days (>=), so one exactly N days old is kept.
            n = _harbor_int(params, "nDaysSinceLastPush", where, label, notes, maximum=20190904)
            condition = Condition("newer_than", seconds=n * DAY, by="last_push", inclusive=True)

        tag_selectors = []
        for j, sel in enumerate(rdoc.get("tag_selectors") or [], 1):
            field = f"tag_selectors[{j}]"
            sel, decoration = _selector(sel, ("matches", "excludes"), where, label, field)
            pattern = sel.get("pattern", "")
            if not isinstance(pattern, str):
                raise where.error(f"must be a string, got {pattern!r}", rule=label, field=f"{field}.pattern")
            # Harbor's selector: untagged artifacts count for "matches" unless extras say otherwise.
            untagged = _harbor_extras_untagged(sel.get("extras"), decoration == "matches", where, label,
                                               f"{field}.extras")
            if decoration == "excludes":
                untagged = not untagged  # Harbor: an excludes selector picks untagged artifacts when untagged=false
            patterns = (glob_pattern(pattern, where, label, f"{field}.pattern"),) if pattern else ()
            if decoration == "excludes" and not patterns:
                tag_selectors.append(TagSelector(tagged=False, untagged=untagged))
            else:
                tag_selectors.append(TagSelector(tagged=True, untagged=untagged, patterns=patterns,
                                                 negate=decoration == "excludes"))
        repo_selectors = []
        scope_sel = rdoc.get("scope_selectors") or {}
        scope_sel = mapping(scope_sel, where, label, "scope_selectors")
        for key in scope_sel:
            if key != "repository":
                raise where.error("only repository selectors can be evaluated", rule=label,
                                  field=f"scope_selectors.{key}")
        for j, sel in enumerate(scope_sel.get("repository") or [], 1):
            field = f"scope_selectors.repository[{j}]"
            sel, decoration = _selector(sel, ("repoMatches", "repoExcludes"), where, label, field)
            pattern = glob_pattern(sel.get("pattern") or "**", where, label, f"{field}.pattern")
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
