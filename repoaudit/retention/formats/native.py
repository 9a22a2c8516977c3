"""repoaudit's own YAML policy format."""

from __future__ import annotations

from typing import Any

from repoaudit.retention.formats.fields import (
    Where,
    glob_pattern,
    integer,
    mapping,
    regex_pattern,
    str_list,
    unknown_keys,
)
from repoaudit.retention.policy import (
    Condition,
    Pattern,
    Policy,
    RepoSelector,
    Rule,
    TagSelector,
    parse_duration,
)

# last_push: the image's push raised to its tags' pushes, as Harbor dates an artifact.
_NATIVE_BY = {"created": "created", "pushed": "pushed", "first_seen": "pushed", "first-seen": "pushed",
              "last_push": "last_push", "last-push": "last_push"}


def _native_repos(value: Any, where: Where, rule: str | None, field: str) -> RepoSelector:
    if isinstance(value, (str, list)):
        value = {"include": value}
    doc = mapping(value, where, rule, field)
    unknown_keys(doc, {"include", "exclude"}, where, rule, field)
    include = tuple(glob_pattern(g, where, rule, f"{field}.include")
                    for g in str_list(doc["include"], where, rule, f"{field}.include")) if "include" in doc else ()
    exclude = tuple(glob_pattern(g, where, rule, f"{field}.exclude")
                    for g in str_list(doc["exclude"], where, rule, f"{field}.exclude")) if "exclude" in doc else ()
    return RepoSelector(include, exclude)


def _native_tags(value: Any, where: Where, rule: str) -> TagSelector:
    if isinstance(value, (str, list)):
        value = {"glob": value}
    doc = mapping(value, where, rule, "tags")
    unknown_keys(doc, {"status", "glob", "regex"}, where, rule, "tags")
    patterns: list[Pattern] = []
    if "glob" in doc:
        patterns += [glob_pattern(g, where, rule, "tags.glob") for g in str_list(doc["glob"], where, rule, "tags.glob")]
    if "regex" in doc:
        patterns += [regex_pattern(r, where, rule, "tags.regex")
                     for r in str_list(doc["regex"], where, rule, "tags.regex")]
    status = doc.get("status", "tagged" if patterns else "any")
    if status not in ("tagged", "untagged", "any"):
        raise where.error(f"must be tagged, untagged or any, got {status!r}", rule=rule, field="tags.status")
    if status == "untagged" and patterns:
        raise where.error("untagged images have no tags to match; drop glob/regex or use status any",
                          rule=rule, field="tags.status")
    return TagSelector(tagged=status != "untagged", untagged=status != "tagged", patterns=tuple(patterns))


def _native_keep(value: Any, where: Where, rule: str) -> Condition:
    if value == "always" or value is True:
        return Condition("always")
    doc = mapping(value, where, rule, "keep")
    conditions = {"always", "most_recent", "newer_than", "tags", "deployed", "pulled_within"}
    unknown_keys(doc, conditions | {"by"}, where, rule, "keep")
    given = [k for k in doc if k in conditions]
    if len(given) != 1:
        raise where.error(f"needs exactly one of {', '.join(sorted(conditions))} (got {', '.join(given) or 'none'}); "
                          "write one rule per condition", rule=rule, field="keep")
    kind = given[0]
    by_raw = doc.get("by", "created")
    if "by" in doc and kind not in ("most_recent", "newer_than"):
        raise where.error(f"only applies to most_recent and newer_than, not {kind}", rule=rule, field="keep.by")
    if by_raw not in _NATIVE_BY:
        raise where.error(f"must be created, first_seen or last_push, got {by_raw!r}", rule=rule, field="keep.by")
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
    if kind == "pulled_within":
        # Pulled by a container runtime (registry events: docs/events.md) at or after as_of - the duration.
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise where.error(str(exc), rule=rule, field="keep.pulled_within") from None
        return Condition("newer_than", seconds=seconds, by="pulled", inclusive=True)
    if kind == "most_recent":
        return Condition("most_recent", count=integer(value, where, rule, "keep.most_recent", minimum=0), by=by)
    if kind == "newer_than":
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise where.error(str(exc), rule=rule, field="keep.newer_than") from None
        return Condition("newer_than", seconds=seconds, by=by)
    globs = str_list(value, where, rule, "keep.tags")
    return Condition("tags", patterns=tuple(glob_pattern(g, where, rule, "keep.tags") for g in globs))


def parse_native(doc: Any, source: str = "<policy>") -> Policy:
    """repoaudit's own YAML: ordered ``rules`` that each keep something; the rest of ``scope`` goes."""
    where = Where(source)
    doc = mapping(doc, where, None, "policy")
    unknown_keys(doc, {"name", "description", "format", "scope", "rules"}, where, None, None)
    scope = (_native_repos(doc["scope"], where, None, "scope"),) if "scope" in doc else ()
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise where.error("must be a non-empty list of rules", field="rules")
    rules = []
    for index, rdoc in enumerate(rules_doc, 1):
        label = str(index)
        rdoc = mapping(rdoc, where, label, "rule")
        if "name" in rdoc:
            if not isinstance(rdoc["name"], str) or not rdoc["name"]:
                raise where.error(f"must be a non-empty string, got {rdoc['name']!r}", rule=label, field="name")
            label = f"{index} ({rdoc['name']})"
        unknown_keys(rdoc, {"name", "repositories", "tags", "keep"}, where, label, None)
        if "keep" not in rdoc:
            raise where.error("missing (always, most_recent, newer_than, tags, deployed or pulled_within)", rule=label, field="keep")
        repos = (_native_repos(rdoc["repositories"], where, label, "repositories"),) if "repositories" in rdoc else ()
        tags = (_native_tags(rdoc["tags"], where, label),) if "tags" in rdoc else ()
        keep = _native_keep(rdoc["keep"], where, label)
        rules.append(Rule(rdoc.get("name") or f"rule {index}", "keep", repos, tags, (keep,)))
    return Policy(name=doc.get("name") or "native", format="native", mode="retain", rules=tuple(rules),
                  scope=(scope,) if scope else (), description=doc.get("description"))
