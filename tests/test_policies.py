"""Policy parsing: the four formats into one model, and one-line errors naming the rule and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from repoaudit.errors import PolicyError
from repoaudit.retention.formats import detect_format, load_policy, parse_policy
from repoaudit.retention.policy import Condition, Pattern, RepoSelector, glob_to_regex, parse_duration

POLICIES = Path(__file__).resolve().parents[1] / "data" / "policies"


@pytest.mark.parametrize("glob, matching, not_matching", [
    ("v*", ["v1", "v1.2.3", "v"], ["av1", "x/v1"]),
    ("team/*", ["team/api"], ["team/api/x", "team"]),
    ("team/**", ["team/api", "team/api/x"], ["teams/api"]),
    ("**/base-*", ["base-os", "platform/base-os", "a/b/base-x"], ["platform/base/os"]),
    ("{latest,stable}", ["latest", "stable"], ["latest2", "prod"]),
    ("v{1,2}.?", ["v1.0", "v2.9"], ["v3.0", "v1.10"]),
    ("[!a-c]x", ["dx"], ["ax", "cx", "/x"]),
    ("a.b+c", ["a.b+c"], ["axb+c", "a.bbc"]),
    (r"lit\*", ["lit*"], ["litx"]),
])
def test_glob_translation(glob, matching, not_matching):
    rx = glob_to_regex(glob)
    assert all(re.search(rx, s) for s in matching), rx
    assert not any(re.search(rx, s) for s in not_matching), rx


def test_glob_errors():
    for bad in ("v[", "{a,b", "x\\"):
        with pytest.raises(ValueError):
            glob_to_regex(bad)


def test_ecr_wildcards_and_prefixes():
    assert Pattern.wildcard("prod*-v*").matches("prod-eu-v2")
    assert not Pattern.wildcard("prod*").matches("preprod")
    assert Pattern.prefix("v1.").matches("v1.2") and not Pattern.prefix("v1.").matches("v10")


def test_durations():
    assert parse_duration("90d") == 90 * 86400
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("2592000s") == 2592000
    assert parse_duration(30) == 30 * 86400  # a bare number is days in the native format
    with pytest.raises(ValueError, match="needs a unit"):
        parse_duration("30", bare_unit=None)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("1 month")


def test_example_policies_parse_and_detect():
    files = sorted(p.name for p in POLICIES.iterdir())
    assert files == ["ecr-lifecycle.json", "gar-cleanup.json", "harbor-retention.json", "native-keep-releases.yaml"]
    formats = {p.name: load_policy(p).format for p in POLICIES.iterdir()}
    assert formats == {"ecr-lifecycle.json": "ecr", "gar-cleanup.json": "gar", "harbor-retention.json": "harbor",
                       "native-keep-releases.yaml": "native"}
    native = load_policy(POLICIES / "native-keep-releases.yaml")
    assert native.name == "native-keep-releases" and native.mode == "retain"
    assert not native.in_scope("platform/base-node") and native.in_scope("platform/ci-runner")
    assert load_policy(POLICIES / "ecr-lifecycle.json").name == "ecr-lifecycle"  # named after the file


def test_native_model():
    policy = parse_policy({"rules": [
        {"name": "rel", "repositories": {"include": ["team/**"], "exclude": ["team/tmp-*"]},
         "tags": {"regex": r"^v\d"}, "keep": {"most_recent": 3, "by": "first_seen"}},
        {"tags": {"status": "untagged"}, "keep": {"newer_than": "2w"}},
        {"keep": "always"},
    ]})
    rel, untagged, always = policy.rules
    assert rel.covers("team/api") and not rel.covers("team/tmp-1") and not rel.covers("ops/api")
    assert rel.conditions == (Condition("most_recent", count=3, by="pushed"),)
    assert rel.tags[0].tagged and not rel.tags[0].untagged
    assert untagged.tags[0].untagged and not untagged.tags[0].tagged
    assert untagged.conditions[0].seconds == 14 * 86400 and untagged.conditions[0].by == "created"
    assert policy.push_time == "pushed"
    assert always.name == "rule 3" and always.conditions == (Condition("always"),)


def test_native_last_push_dates_images_as_harbor_does():
    """by: last_push: the image's push raised to its tags' pushes; the plan reports that time for the policy."""
    policy = parse_policy({"rules": [{"keep": {"newer_than": "7d", "by": "last_push"}}]})
    assert policy.rules[0].conditions[0].by == "last_push" and policy.push_time == "last_push"


@pytest.mark.parametrize("rules, message", [
    ([{"keep": {"most_recent": 3, "newer_than": "3d"}}],
     "n.yaml: rule 1: keep: needs exactly one of always, deployed, most_recent, newer_than, pulled_within, tags "
     "(got most_recent, newer_than); write one rule per condition"),
    ([{"name": "x", "keep": {"most_recent": -1}}], "n.yaml: rule 1 (x): keep.most_recent: must be an integer >= 0"),
    ([{"name": "x", "keep": {"newer_than": "soon"}}], "n.yaml: rule 1 (x): keep.newer_than: not a duration"),
    ([{"name": "x", "keep": {"tags": ["a"], "by": "created"}}], "n.yaml: rule 1 (x): keep.by: only applies"),
    ([{"keep": "always"}, {"name": "y", "keep": {"most_recent": 1, "by": "pulled"}}],
     "n.yaml: rule 2 (y): keep.by: must be created, first_seen or last_push"),
    ([{"name": "x", "tag": "v*", "keep": "always"}], "n.yaml: rule 1 (x): tag: unknown field"),
    ([{"name": "x"}], "n.yaml: rule 1 (x): keep: missing"),
    ([{"name": "x", "tags": {"regex": "(?=v)"}, "keep": "always"}], "n.yaml: rule 1 (x): tags.regex: regular "
                                                                    "expression '(?=v)' is not RE2 syntax"),
    ([{"name": "x", "tags": {"status": "untagged", "glob": "v*"}, "keep": "always"}],
     "n.yaml: rule 1 (x): tags.status: untagged images have no tags"),
    ([{"name": "x", "repositories": {"include": ["a["]}, "keep": "always"}],
     "n.yaml: rule 1 (x): repositories.include: pattern 'a[' has an unclosed '['"),
    ([{"name": "x", "keep": {"deployed": False}}], "n.yaml: rule 1 (x): keep.deployed: must be true"),
    ([], "n.yaml: rules: must be a non-empty list"),
])
def test_native_errors(rules, message):
    with pytest.raises(PolicyError) as info:
        parse_policy({"rules": rules}, format="native", source="n.yaml")
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def harbor_rule(**overrides):
    rule = {"disabled": False, "action": "retain", "template": "latestPushedK", "params": {"latestPushedK": 3},
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                "pattern": "**"}]}}
    rule.update(overrides)
    return rule


def test_harbor_bounds_accept_the_largest_valid_values():
    policy = parse_policy({"rules": [harbor_rule(params={"latestPushedK": 32766}),
                                     harbor_rule(template="nDaysSinceLastPush",
                                                 params={"nDaysSinceLastPush": 20190904})]})
    assert [c.count or c.seconds for r in policy.rules for c in r.conditions] == [32766, 20190904 * 86400]


def test_harbor_model():
    policy = parse_policy({"rules": [
        harbor_rule(),
        harbor_rule(template="nDaysSinceLastPush", params={"nDaysSinceLastPush": 7},
                    tag_selectors=[{"kind": "doublestar", "decoration": "excludes", "pattern": "dev-*",
                                    "extras": "{\"untagged\":true}"}],
                    scope_selectors={"repository": [{"kind": "doublestar", "decoration": "repoExcludes",
                                                     "pattern": "tmp-*"}]}),
    ], "scope": {"level": "project", "ref": "team"}})
    first, second = policy.rules
    assert policy.mode == "retain" and first.conditions == (Condition("most_recent", count=3, by="last_push"),)
    assert first.tags[0].untagged  # "matches" takes untagged artifacts unless extras say otherwise
    assert second.tags[0].negate and not second.tags[0].untagged  # "excludes" with untagged:true leaves them out
    # Patterns see the repository without its project, and scope.ref (a name) limits the project.
    assert second.covers("team/api") and not second.covers("team/tmp-1") and not second.covers("ops/api")
    assert policy.in_scope("team/tmp-1") and not policy.in_scope("ops/api")
    assert not policy.notes


@pytest.mark.parametrize("rule, message", [
    # Pull-based templates parse; the plan refuses them where registry events do not cover the period
    # (tests/test_events_registry.py).
    (harbor_rule(template="latestPulledN", params={"latestPulledN": -1}),
     "h.json: rule 1 (latestPulledN): params.latestPulledN: must be"),
    (harbor_rule(template="nDaysSinceLastPull", params={"nDaysSinceLastPull": "7"}),
     "h.json: rule 1 (nDaysSinceLastPull): params.nDaysSinceLastPull: nDaysSinceLastPull type error"),
    (harbor_rule(template="latestK"), "h.json: rule 1: template: unknown template 'latestK'"),
    (harbor_rule(template="latestActiveK", params={"latestActiveK": 3}),
     "h.json: rule 1 (latestActiveK): template: ranks by the later of push and pull"),
    # rule/latestps/evaluator.go Valid: a value that is not a JSON number is a "type error" (a missing one
    # is allowed and New uses DefaultK: tests/peers/test_peer_harbor.py).
    (harbor_rule(params={"latestPushedK": "5"}),
     "h.json: rule 1 (latestPushedK): params.latestPushedK: latestPushedK type error"),
    (harbor_rule(tag_selectors=[{"kind": "label", "decoration": "withLabels", "pattern": "x"}]),
     "h.json: rule 1 (latestPushedK): tag_selectors[1].kind: only doublestar"),
    (harbor_rule(scope_selectors={"repository": [{"kind": "doublestar", "decoration": "matches", "pattern": "x"}]}),
     "h.json: rule 1 (latestPushedK): scope_selectors.repository[1].decoration: must be repoMatches"),
    (harbor_rule(action="delete"), "h.json: rule 1 (latestPushedK): action: Harbor rules only retain"),
    # Harbor's Valid bounds: rule/latestps/evaluator.go (K >= math.MaxInt16 is "too large"),
    # rule/daysps/evaluator.go (N > 20190904 is "too large").
    (harbor_rule(params={"latestPushedK": 32767}),
     "h.json: rule 1 (latestPushedK): params.latestPushedK: must be at most 32766"),
    (harbor_rule(template="nDaysSinceLastPush", params={"nDaysSinceLastPush": 20190905}),
     "h.json: rule 1 (nDaysSinceLastPush): params.nDaysSinceLastPush: must be at most 20190904"),
])
def test_harbor_errors(rule, message):
    with pytest.raises(PolicyError) as info:
        parse_policy({"algorithm": "or", "rules": [rule]}, source="h.json")
    assert str(info.value).startswith(message), str(info.value)


def ecr_rule(priority=1, action="expire", **selection):
    sel = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5}
    sel.update(selection)
    return {"rulePriority": priority, "selection": sel, "action": {"type": action}}


def test_ecr_model_orders_by_priority():
    policy = parse_policy({"rules": [
        ecr_rule(9),
        ecr_rule(2, tagStatus="tagged", tagPatternList=["v*", "*-prod"], countNumber=3),
        ecr_rule(1, tagStatus="untagged", countType="sinceImagePushed", countUnit="days", countNumber=14),
    ]})
    assert policy.mode == "first_match" and [r.name for r in policy.rules] == ["rule 1", "rule 2", "rule 9"]
    assert policy.rules[0].conditions == (Condition("older_than", seconds=14 * 86400, by="pushed"),)
    assert policy.rules[1].tags[0].combine == "all"  # every pattern must match some tag of the image
    assert policy.rules[2].conditions == (Condition("most_recent", count=5, by="pushed", negate=True),)


@pytest.mark.parametrize("rules, message", [
    ([ecr_rule(1), ecr_rule(1)], "e.json: rule 2 (rulePriority 1): rulePriority: duplicates rule 1's priority"),
    ([ecr_rule(1), ecr_rule(2, tagStatus="tagged", tagPrefixList=["v"])],
     "e.json: rule 1 (rulePriority 1): rulePriority: a tagStatus any rule must have the highest rulePriority"),
    ([ecr_rule(1, tagStatus="untagged"), ecr_rule(2, tagStatus="untagged")],
     "e.json: rule 2 (rulePriority 2): selection.tagStatus: only one rule may select untagged images"),
    ([ecr_rule(1, tagStatus="tagged")], "e.json: rule 1 (rulePriority 1): selection.tagStatus: tagStatus tagged "
                                        "needs tagPrefixList or tagPatternList"),
    ([ecr_rule(1, tagStatus="tagged", tagPrefixList=["a"], tagPatternList=["b"])],
     "e.json: rule 1 (rulePriority 1): selection.tagPatternList: use tagPrefixList or tagPatternList, not both"),
    ([ecr_rule(1, tagPrefixList=["a"])], "e.json: rule 1 (rulePriority 1): selection.tagPrefixList: tag lists need"),
    ([ecr_rule(1, countUnit="days")], "e.json: rule 1 (rulePriority 1): selection.countUnit: only applies"),
    ([ecr_rule(1, countType="sinceImagePushed")],
     "e.json: rule 1 (rulePriority 1): selection.countUnit: must be 'days'"),
    ([ecr_rule(1, countType="sinceImagePulled", countUnit="days")],
     "e.json: rule 1 (rulePriority 1): selection.countType: sinceImagePulled needs pull"),
    ([ecr_rule(1, countNumber=0)], "e.json: rule 1 (rulePriority 1): selection.countNumber: must be an integer >= 1"),
    ([ecr_rule(1, action="delete")], "e.json: rule 1 (rulePriority 1): action.type: must be 'expire'"),
    ([ecr_rule(1, tagStatus="tagged", tagPatternList=["a*b*c*d*e*f"])],
     "e.json: rule 1 (rulePriority 1): selection.tagPatternList: 'a*b*c*d*e*f' has more than 4 wildcards"),
    ([{"rulePriority": 0}], "e.json: rule 1: rulePriority: must be an integer >= 1"),
    ([{**ecr_rule(1), "priority": 2}], "e.json: rule 1: priority: unknown field"),
])
def test_ecr_errors(rules, message):
    with pytest.raises(PolicyError) as info:
        parse_policy({"rules": rules}, format="ecr", source="e.json")
    assert str(info.value).startswith(message), str(info.value)


def test_gar_list_and_rest_forms_agree():
    listed = [
        {"name": "old", "action": {"type": "Delete"}, "condition": {"tagState": "any", "olderThan": "30d",
                                                                     "packageNamePrefixes": ["team/"]}},
        {"name": "recent", "action": {"type": "Keep"}, "mostRecentVersions": {"keepCount": 5}},
    ]
    rest = {"cleanupPolicies": {
        "old": {"id": "old", "action": "DELETE", "condition": {"tagState": "ANY", "olderThan": "2592000s",
                                                               "packageNamePrefixes": ["team/"]}},
        "recent": {"id": "recent", "action": "KEEP", "mostRecentVersions": {"keepCount": 5}},
    }}
    a, b = parse_policy(listed), parse_policy(rest)
    assert a.format == b.format == "gar" and a.mode == "keep_wins"
    assert a.rules == b.rules
    assert a.rules[0].covers("team/api") and not a.rules[0].covers("ops/api")


@pytest.mark.parametrize("policies, message", [
    ([{"name": "x", "action": {"type": "Remove"}, "condition": {}}], "g.json: rule x: action.type: must be Delete or"),
    ([{"name": "x", "action": {"type": "Delete"}, "condition": {}, "mostRecentVersions": {"keepCount": 1}}],
     "g.json: rule x: condition: needs exactly one of condition and mostRecentVersions"),
    ([{"name": "x", "action": {"type": "Delete"}, "mostRecentVersions": {"keepCount": 1}}],
     "g.json: rule x: mostRecentVersions: only applies to Keep policies"),
    ([{"name": "x", "action": {"type": "Delete"}, "condition": {"tagPrefixes": ["v"]}}],
     "g.json: rule x: condition.tagPrefixes: tagPrefixes needs tagState tagged"),
    ([{"name": "x", "action": {"type": "Delete"}, "condition": {"olderThan": 30}}],
     "g.json: rule x: condition.olderThan: duration 30 needs a unit"),
    ([{"name": "x", "action": {"type": "Delete"}, "condition": {"olderThen": "3d"}}],
     "g.json: rule x: condition.olderThen: unknown field"),
    ([{"name": f"p{i}", "action": {"type": "Delete"}, "condition": {"olderThan": "30d"}} for i in range(11)],
     "g.json: policies: has 11 cleanup policies; Artifact Registry allows at most 10"),
])
def test_gar_errors(policies, message):
    with pytest.raises(PolicyError) as info:
        parse_policy(policies, source="g.json")
    assert str(info.value).startswith(message), str(info.value)


def test_gar_keep_policies_alone_delete_nothing():
    """Artifact Registry accepts keep policies alone; they only exempt versions, so nothing is deleted
    (cleanup policy overview: "A keep policy only exempts matching artifacts from deletion")."""
    policy = parse_policy([{"name": "x", "action": {"type": "Keep"}, "condition": {"tagState": "tagged"}}],
                          source="g.json")
    assert [r.action for r in policy.rules] == ["keep"] and "deletes nothing" in policy.notes[0]
    ten = parse_policy([{"name": f"p{i}", "action": {"type": "Delete"}, "condition": {"olderThan": "30d"}}
                        for i in range(10)])
    assert len(ten.rules) == 10


def test_format_detection_and_files(tmp_path):
    assert detect_format({"rules": [{"rulePriority": 1}]}) == "ecr"
    assert detect_format({"rules": [{"template": "always"}]}) == "harbor"
    assert detect_format({"rules": [{"keep": "always"}]}) == "native"
    assert detect_format([{"action": {"type": "Delete"}}]) == "gar"
    assert detect_format({"something": 1}) is None
    with pytest.raises(PolicyError, match="cannot tell the format"):
        parse_policy({"something": 1}, source="x.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [')
    with pytest.raises(PolicyError, match=r"bad.json:1:\d+: truncated JSON"):
        load_policy(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("rules:\n  - keep: [\n")
    with pytest.raises(PolicyError, match=r"bad.yaml:\d+:\d+: invalid YAML: "):
        load_policy(bad_yaml)
    with pytest.raises(PolicyError, match="missing.yaml: cannot read policy"):
        load_policy(tmp_path / "missing.yaml")
    named = tmp_path / "weekly.json"
    named.write_text(json.dumps({"rules": [ecr_rule(1)]}))
    policy = load_policy(named)
    assert policy.name == "weekly" and policy.source == str(named) and len(policy.sha256) == 64


def test_repo_selector_relative_names():
    selector = RepoSelector(include=(Pattern.glob("api*"),), relative=True)
    assert selector.matches("team/api") and selector.matches("ops/api-v2") and not selector.matches("team/x/api")
    assert RepoSelector(relative=True, namespaces=("team",)).matches("team/x")
    assert not RepoSelector(relative=True, namespaces=("team",)).matches("team")
