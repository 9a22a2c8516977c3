"""AWS ECR lifecycle policies (``lifecyclePolicyText``)."""

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
    DAY,
    Condition,
    Pattern,
    Policy,
    Rule,
    TagSelector,
)


def parse_ecr(doc: Any, source: str = "<policy>") -> Policy:
    """An ECR lifecycle policy (``lifecyclePolicyText``), with ECR's validation and priority semantics."""
    where = Where(source)
    doc = mapping(doc, where, None, "policy")
    unknown_keys(doc, {"rules"}, where, None, None)
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise where.error("must be a non-empty list of rules", field="rules")
    parsed: list[tuple[int, Rule, str, str]] = []
    seen: dict[int, int] = {}
    for index, rdoc in enumerate(rules_doc, 1):
        label = str(index)
        rdoc = mapping(rdoc, where, label, "rule")
        unknown_keys(rdoc, {"rulePriority", "description", "selection", "action"}, where, label, None)
        priority = integer(rdoc.get("rulePriority"), where, label, "rulePriority", minimum=1)
        label = f"{index} (rulePriority {priority})"
        if priority in seen:
            raise where.error(f"duplicates rule {seen[priority]}'s priority", rule=label, field="rulePriority")
        seen[priority] = index
        action = mapping(rdoc.get("action"), where, label, "action")
        if action.get("type") != "expire":
            raise where.error(f"must be 'expire', got {action.get('type')!r}", rule=label, field="action.type")
        sel = mapping(rdoc.get("selection"), where, label, "selection")
        unknown_keys(sel, {"tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit",
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
                                 str_list(prefixes, where, label, "selection.tagPrefixList", allow_scalar=False))
            else:
                texts = str_list(wildcards, where, label, "selection.tagPatternList", allow_scalar=False)
                for text in texts:
                    if text.count("*") > 4:
                        raise where.error(f"{text!r} has more than 4 wildcards", rule=label,
                                          field="selection.tagPatternList")
                patterns = tuple(Pattern.wildcard(t) for t in texts)
        elif status == "tagged":
            raise where.error("tagStatus tagged needs tagPrefixList or tagPatternList", rule=label,
                              field="selection.tagStatus")
        count_type = sel.get("countType")
        number = integer(sel.get("countNumber"), where, label, "selection.countNumber", minimum=1)
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
