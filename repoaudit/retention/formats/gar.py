"""Google Artifact Registry cleanup policies (``gcloud artifacts repositories set-cleanup-policies``)."""

from __future__ import annotations

from typing import Any

from repoaudit.retention.formats.fields import (
    Where,
    integer,
    mapping,
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

_GAR_CONDITION = {"tagState", "tagPrefixes", "versionNamePrefixes", "packageNamePrefixes", "olderThan", "newerThan"}


def _gar_policies(doc: Any, where: Where) -> list[tuple[str, dict]]:
    if isinstance(doc, dict) and "cleanupPolicies" in doc:
        doc = doc["cleanupPolicies"]
    if isinstance(doc, dict):  # the REST form: a map from policy id to policy
        return [(str(k), mapping(v, where, str(k), "policy")) for k, v in doc.items()]
    if isinstance(doc, list) and doc:
        out = []
        for index, p in enumerate(doc, 1):
            p = mapping(p, where, str(index), "policy")
            out.append((str(p.get("name") or p.get("id") or index), p))
        return out
    raise where.error("must be a non-empty list of cleanup policies", field="policies")


# "You can apply up to 10 cleanup policies to a repository" (Artifact Registry, cleanup policy overview);
# gcloud's set-cleanup-policies fails when a repository would exceed it.
MAX_GAR_POLICIES = 10


def parse_gar(doc: Any, source: str = "<policy>") -> Policy:
    """Artifact Registry cleanup policies (the ``gcloud … set-cleanup-policies`` file, or the REST map)."""
    where = Where(source)
    rules = []
    policies = _gar_policies(doc, where)
    if len(policies) > MAX_GAR_POLICIES:
        raise where.error(f"has {len(policies)} cleanup policies; Artifact Registry allows at most "
                          f"{MAX_GAR_POLICIES} per repository", field="policies")
    for name, pdoc in policies:
        unknown_keys(pdoc, {"name", "id", "action", "condition", "mostRecentVersions"}, where, name, None)
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
            mrv = mapping(pdoc["mostRecentVersions"], where, name, "mostRecentVersions")
            unknown_keys(mrv, {"packageNamePrefixes", "keepCount"}, where, name, "mostRecentVersions")
            count = integer(mrv.get("keepCount"), where, name, "mostRecentVersions.keepCount", minimum=0)
            repos = ()
            if "packageNamePrefixes" in mrv:
                repos = (RepoSelector(include=tuple(Pattern.prefix(p) for p in str_list(
                    mrv["packageNamePrefixes"], where, name, "mostRecentVersions.packageNamePrefixes"))),)
            rules.append(Rule(name, "keep", repos, (TagSelector(),),
                              (Condition("most_recent", count=count, by="pushed"),)))
            continue
        cond = mapping(pdoc["condition"], where, name, "condition")
        unknown_keys(cond, _GAR_CONDITION, where, name, "condition")
        state = cond.get("tagState", "any")
        if not isinstance(state, str) or state.lower() not in ("tagged", "untagged", "any"):
            raise where.error(f"must be tagged, untagged or any, got {state!r}", rule=name, field="condition.tagState")
        state = state.lower()
        patterns: tuple[Pattern, ...] = ()
        if "tagPrefixes" in cond:
            if state != "tagged":
                raise where.error("tagPrefixes needs tagState tagged", rule=name, field="condition.tagPrefixes")
            patterns = tuple(Pattern.prefix(p) for p in
                             str_list(cond["tagPrefixes"], where, name, "condition.tagPrefixes"))
        tags = TagSelector(tagged=state != "untagged", untagged=state != "tagged", patterns=patterns)
        repos = ()
        if "packageNamePrefixes" in cond:
            repos = (RepoSelector(include=tuple(Pattern.prefix(p) for p in str_list(
                cond["packageNamePrefixes"], where, name, "condition.packageNamePrefixes"))),)
        conditions = []
        if "versionNamePrefixes" in cond:
            conditions.append(Condition("digest", patterns=tuple(Pattern.prefix(p) for p in str_list(
                cond["versionNamePrefixes"], where, name, "condition.versionNamePrefixes"))))
        for key, kind in (("olderThan", "older_than"), ("newerThan", "newer_than")):
            if key in cond:
                try:
                    seconds = parse_duration(cond[key], bare_unit=None)
                except ValueError as exc:
                    raise where.error(str(exc), rule=name, field=f"condition.{key}") from None
                conditions.append(Condition(kind, seconds=seconds, by="pushed"))
        rules.append(Rule(name, action, repos, (tags,), tuple(conditions)))
    notes = ()
    if not any(r.action == "delete" for r in rules):
        # Valid in Artifact Registry: keep policies only exempt versions from deletion, so with no Delete
        # policy nothing is deleted ("cleanup policy overview", Types of cleanup policies).
        notes = ("no Delete policy: Artifact Registry deletes nothing with keep policies alone",)
    return Policy(name="gar", format="gar", mode="keep_wins", rules=tuple(rules), notes=notes)
