"""A policy's rules as one SQL query over the engine's ``_ra_images`` table, with bound parameters.

This SQL is generated, not stored in ``engine.sql``, because its shape is the policy's: one
selection column and one firing column per rule, one top-N set per "most recent N" condition,
and a combination that depends on the policy's mode. Patterns, counts and durations are bound as
named parameters (:class:`Params`), never pasted into the text.

The query reads ``_ra_images`` (built by ``engine.sql``) and ``_ra_repos``, a frame with one row
per repository: ``in_plan``, ``in_scope`` and ``r<i>`` (rule i covers the repository), which
Python computes because repository selectors are globs with per-format semantics. It returns
``(link_id, rule_index)`` for every candidate.
"""

from __future__ import annotations

from typing import Any, Sequence

from repoaudit.errors import PolicyError
from repoaudit.retention.policy import Condition, Pattern, Policy, TagSelector

__all__ = ["Params", "policy_sql"]


class Params:
    """Named parameters for generated SQL: values are always bound, never pasted."""

    def __init__(self):
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        key = f"p{len(self.values)}"
        self.values[key] = value
        return f"${key}"



def _any_tag(patterns: Sequence[Pattern], params: Params, *, negate: bool = False) -> str:
    test = " OR ".join(f"regexp_matches(t, {params(p.regex)})" for p in patterns)
    if negate:
        test = f"NOT ({test})"
    return f"coalesce(list_bool_or(list_transform(tags, lambda t: {test})), false)"



def _tag_selector_sql(sel: TagSelector, params: Params) -> str:
    if not sel.tagged:
        tagged = "false"
    elif not sel.patterns:
        tagged = "true"
    elif sel.negate:
        tagged = _any_tag(sel.patterns, params, negate=True)
    elif sel.combine == "all":
        tagged = " AND ".join(_any_tag([p], params) for p in sel.patterns)
    else:
        tagged = _any_tag(sel.patterns, params)
    return f"(CASE WHEN tagged THEN ({tagged}) ELSE {'true' if sel.untagged else 'false'} END)"



_TIME_COLUMNS = {"created": "created_or_pushed", "pushed": "pushed_at", "last_push": "last_pushed_at"}


def _ts(by: str) -> str:
    if by == "pulled":
        # Never pulled by a runtime ranks last and is never "pulled within".
        return "coalesce(last_pulled_at, '-infinity'::TIMESTAMP)"
    return _TIME_COLUMNS[by]



def _condition_sql(cond: Condition, sel_column: str, params: Params, tops: list[str]) -> str:
    """The condition as a column expression; "most recent N" adds its top-N set to ``tops`` (CTE definitions)."""
    if cond.kind == "always":
        expr = "true"
    elif cond.kind == "most_recent":
        # The newest N of each repository among the images the rule selects, by a top-N aggregate rather than a
        # window, which would sort every image. Ties (images first seen by the same snapshot) go to the newer
        # build (no created: oldest), then to the greater digest.
        name, count = f"top{len(tops)}", params(cond.count)
        tops.append(f"""{name} AS (
    SELECT unnest(list_slice(arg_max(link_id, ({_ts(cond.by)}, coalesce(created, '-infinity'::TIMESTAMP), digest),
                                     greatest({count}, 1)), 1, {count})) AS link_id
    FROM sel WHERE {sel_column} GROUP BY rkey
)""")
        expr = f"(link_id IN (SELECT link_id FROM {name}))"
    elif cond.kind == "newer_than":
        op = ">=" if cond.inclusive else ">"
        expr = f"({_ts(cond.by)} {op} as_of - to_seconds({params(float(cond.seconds))}::DOUBLE))"
    elif cond.kind == "older_than":
        expr = f"({_ts(cond.by)} < as_of - to_seconds({params(float(cond.seconds))}::DOUBLE))"
    elif cond.kind == "tags":
        expr = _any_tag(cond.patterns, params)
    elif cond.kind == "deployed":
        expr = "deployed"
    elif cond.kind == "digest":
        expr = "(" + " OR ".join(f"regexp_matches(digest, {params(p.regex)})" for p in cond.patterns) + ")"
    else:  # pragma: no cover - the parsers only build the kinds above
        raise PolicyError(f"unknown condition {cond.kind!r}")
    return f"(NOT {expr})" if cond.negate else expr



def policy_sql(policy: Policy, params: Params) -> str:
    sel_cols, fire_cols, tops = [], [], []
    for i, rule in enumerate(policy.rules):
        parts = [f"r{i}"] + [_tag_selector_sql(s, params) for s in rule.tags]
        sel_cols.append(f"({' AND '.join(parts)}) AS s{i}")
        conds = [_condition_sql(c, f"s{i}", params, tops) for c in rule.conditions] or ["true"]
        fire_cols.append(f"(s{i} AND {' AND '.join(conds)}) AS f{i}")
    keeps = [f"f{i}" for i, r in enumerate(policy.rules) if r.action == "keep"]
    deletes = [i for i, r in enumerate(policy.rules) if r.action == "delete"]
    kept = "(" + " OR ".join(keeps) + ")" if keeps else "false"
    if policy.mode == "retain":
        candidate, rule_index = f"(in_scope AND NOT {kept})", "-1"
    elif policy.mode == "keep_wins":
        # Keep policies alone are valid in Artifact Registry and delete nothing.
        fired = " OR ".join(f"f{i}" for i in deletes) or "false"
        candidate = f"(({fired}) AND NOT {kept})"
        rule_index = ("CASE " + " ".join(f"WHEN f{i} THEN {i}" for i in deletes) + " END") if deletes else "-1"
    elif policy.mode == "first_match":
        # ECR: the first rule (by priority) whose tag selection matches decides; a later rule never expires it.
        rule_index = "CASE " + " ".join(f"WHEN s{i} THEN {i}" for i in range(len(policy.rules))) + " END"
        candidate = "CASE " + " ".join(f"WHEN s{i} THEN f{i}" for i in range(len(policy.rules))) + " ELSE false END"
    else:  # pragma: no cover
        raise PolicyError(f"policy {policy.name}: unknown mode {policy.mode!r}")
    rule_flags = ", ".join(f"rp.r{i}" for i in range(len(policy.rules)))
    pulled = ", i.last_pulled_at" if policy.pull_windows() else ""
    # Only the columns rules read (digest breaks ties in "most recent").
    return f"""
WITH base AS (
    SELECT i.link_id, i.rkey, i.mkey, i.digest, i.tags, i.tagged, i.created, i.pushed_at, i.last_pushed_at,
           i.created_or_pushed, i.as_of, i.deployed{pulled}, rp.in_scope{', ' + rule_flags if rule_flags else ''}
    FROM _ra_images i
    JOIN _ra_repos rp ON rp.rkey = i.rkey
    WHERE i.eligible AND rp.in_plan
), sel AS (
    SELECT *{''.join(', ' + c for c in sel_cols)} FROM base
){''.join(', ' + t for t in tops)}, fire AS (
    SELECT *{''.join(', ' + c for c in fire_cols)} FROM sel
)
SELECT link_id, {rule_index} AS rule_index
FROM fire
WHERE {candidate}"""
