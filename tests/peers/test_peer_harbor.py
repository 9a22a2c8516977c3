"""Harbor's own retention tests, ported: evaluators, the doublestar selector, validation, push time.

Upstream: goharbor/harbor at c50c7ddd6ea4e335a480b49c618281882ab7eec9. Every case names its file and
test. Candidates become real images in a real registry (peerestate.py), collected, then planned with
the Harbor policy JSON a user would import: Harbor's "retained" is what the plan does not delete.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from peerestate import NOW, Candidate, build

import repoaudit
from repoaudit.errors import PolicyError
from repoaudit.retention.formats import load_policy

H = "goharbor/harbor src/pkg/retention/policy"
DAY = timedelta(days=1)


def days_ago(n: int, offset: timedelta = timedelta(0)) -> timedelta:
    """rule/daysps/evaluator_test.go daysAgo(now, n, offset): n days back, then offset forward."""
    return n * DAY - offset


# Each data set is one case (one repository) of the estate; several tables reuse it with other parameters.
CASES = {
    # rule/latestps/evaluator_test.go TestProcess: PushedTime 0..4 (older is smaller).
    "latestps": [Candidate(f"p{i}", (f"t{i}",), age=(5 - i) * DAY) for i in range(5)],
    # rule/daysps/evaluator_test.go TestProcess: daysAgo(now, d, time.Hour).
    "daysps": [Candidate(f"d{d}", (f"t{d}",), age=days_ago(d, timedelta(hours=1))) for d in (1, 2, 3, 4, 5, 10, 20, 30)],
    # rule/lastx/evaluator_test.go TestProcess: now - d*24h. The upstream test takes "now" before the
    # evaluator does, so the 1-day candidate sits just outside a 1-day window; here it is exactly on it.
    "lastx": [Candidate(f"x{d}", (f"t{d}",), age=d * DAY) for d in (1, 2, 3, 4, 5, 99)],
    # rule/always/evaluator_test.go TestProcess: four candidates, all retained.
    "always": [Candidate(f"a{i}", (f"t{i}",), age=(i + 1) * DAY) for i in range(4)],
    # lib/selector/selectors/doublestar/selector_test.go SetupSuite: library/harbor:latest, retention/redis:4.0
    # and 4.1, library/special untagged.
    "sel": [Candidate("harbor:latest", ("latest",), repository="library/harbor"),
            Candidate("redis:4.0", ("4.0",), repository="retention/redis"),
            Candidate("redis:4.1", ("4.1",), repository="retention/redis"),
            Candidate("special", (), repository="library/special")],
    # alg/or/processor_test.go SetupSuite: library/harbor:latest and library/harbor:dev.
    "or": [Candidate("latest", ("latest",), repository="library/harbor"),
           Candidate("dev", ("dev",), repository="library/harbor")],
    # pkg/retention/dep/client.go GetCandidates: PushedTime is the later of the artifact's push and its
    # tags' pushes. "old" was pushed 30 days ago and tagged "prod" now (seen first by the second snapshot).
    "retag": [Candidate("old", ("v1",), age=30 * DAY, retag=("prod",)),
              Candidate("older", ("v0",), age=40 * DAY)],
}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    return build(tmp_path_factory.mktemp("harbor"), CASES)


@pytest.fixture
def audit(estate):
    with repoaudit.open(estate.db, read_only=True) as a:
        yield a


def harbor(template: str, params: dict | None = None, *, tag: dict | None = None, repo: dict | None = None) -> dict:
    rule = {"action": "retain", "template": template, "params": params if params is not None else {},
            "tag_selectors": [tag or {"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
            "scope_selectors": {"repository": [repo or {"kind": "doublestar", "decoration": "repoMatches",
                                                        "pattern": "**"}]}}
    return {"algorithm": "or", "rules": [rule], "scope": {"level": "project", "ref": 1}}


def retained(audit, estate, case: str, policy: dict) -> set[str]:
    plan = audit.retention(policy, include=estate.include(case))
    return estate.everything(case) - estate.names(plan, case)


def newest(case: str, k: int) -> set[str]:
    return {c.name for c in sorted(CASES[case], key=lambda c: c.age)[:k]}


# -- evaluators ----------------------------------------------------------------------------------

@pytest.mark.parametrize("k, expected", [(0, 0), (1, 1), (3, 3), (5, 5), (6, 5)])
def test_latestps_process(audit, estate, k, expected):
    """rule/latestps/evaluator_test.go TestProcess: the K most recently pushed."""
    kept = retained(audit, estate, "latestps", harbor("latestPushedK", {"latestPushedK": k}))
    assert len(kept) == expected and kept == newest("latestps", k)


@pytest.mark.parametrize("n, expected", [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (15, 6), (90, 8)])
def test_daysps_process(audit, estate, n, expected):
    """rule/daysps/evaluator_test.go TestProcess: pushed within the last N days (>=)."""
    kept = retained(audit, estate, "daysps", harbor("nDaysSinceLastPush", {"nDaysSinceLastPush": n}))
    assert len(kept) == expected and kept == newest("daysps", expected)


@pytest.mark.parametrize("days, expected", [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, 5)])
def test_lastx_process(audit, estate, days, expected):
    """rule/lastx/evaluator_test.go TestProcess: pushed strictly after now - X days."""
    kept = retained(audit, estate, "lastx", harbor("lastXDays", {"lastXDays": days}))
    assert len(kept) == expected and kept == newest("lastx", expected)


def test_always_process(audit, estate):
    """rule/always/evaluator_test.go TestProcess: every candidate is retained."""
    assert retained(audit, estate, "always", harbor("always")) == estate.everything("always")


@pytest.mark.parametrize("path, test", [
    ("rule/latestk/evaluator_test.go", "TestProcess"),
    ("rule/latestpl/evaluator_test.go", "TestProcess"),
    ("rule/dayspl/evaluator_test.go", "TestProcess"),
])
def test_pull_time_templates(path, test):
    pytest.skip(f"{H}/{path} {test}: ranks by pull time, which a registry's API does not expose; repoaudit "
                "evaluates latestPulledN and nDaysSinceLastPull from registry notifications instead, on a real "
                "registry in tests/test_events_registry.py, and refuses latestActiveK")


def test_pull_templates_without_pull_data(audit, estate):
    """latestActiveK is refused; the pull templates parse, and a plan refuses them while no registry events
    cover the period, rather than evaluating them without pull data."""
    with pytest.raises(PolicyError, match="ranks by the later of push and pull"):
        load_policy(harbor("latestActiveK", {"latestActiveK": 3}))
    for template in ("latestPulledN", "nDaysSinceLastPull"):
        policy = load_policy(harbor(template, {template: 3}))
        with pytest.raises(PolicyError, match="event"):
            audit.retention(policy, include=estate.include("always"))


def test_or_processor_process2(audit, estate):
    """alg/or/processor_test.go TestProcess2: always, tag matches "latest" (and a label selector with no
    labels, which selects everything): one result, the deletion of "dev"."""
    policy = harbor("always", tag={"kind": "doublestar", "decoration": "matches", "pattern": "latest"})
    plan = audit.retention(policy, include=estate.include("or"))
    assert estate.names(plan, "or") == {"dev"}


def test_or_processor_process():
    pytest.skip(f"{H}/alg/or/processor_test.go TestProcess: selects by labels (label.With \"L1,L2\"), which a "
                "registry does not expose; repoaudit refuses label selectors")


# -- New() defaults and Valid() ------------------------------------------------------------------

@pytest.mark.parametrize("template, default", [("latestPushedK", 10), ("nDaysSinceLastPush", 30), ("lastXDays", 10)])
def test_new_default_if_not_set(template, default):
    """rule/{latestps,daysps,lastx}/evaluator_test.go TestNew "Default If Not Set": Valid lets a missing
    parameter through and New uses the template's default."""
    policy = load_policy(harbor(template, {}))
    cond = policy.rules[0].conditions[0]
    assert (cond.count if cond.kind == "most_recent" else cond.seconds / 86400) == default
    assert any(f"default {default}" in note for note in policy.notes)


@pytest.mark.parametrize("template, value, message", [
    # rule/latestps/evaluator_test.go TestValid "Negative", "Big"; TestNew "Default If Wrong Type".
    ("latestPushedK", -1, "must be an integer >= 0"),
    ("latestPushedK", 40000, "must be at most 32766"),
    ("latestPushedK", "foo", "latestPushedK type error"),
    # rule/daysps/evaluator_test.go TestValid "Negative", "Big"; TestNew "Default If Wrong Type".
    ("nDaysSinceLastPush", -1, "must be an integer >= 0"),
    ("nDaysSinceLastPush", 21000000, "must be at most 20190904"),
    ("nDaysSinceLastPush", "foo", "nDaysSinceLastPush type error"),
    # models_test.go TestParamValid: latestPushedK -10.
    ("latestPushedK", -10, "must be an integer >= 0"),
])
def test_valid_refuses(template, value, message):
    """Harbor's API runs Valid before New, so a value New would replace by its default never gets there:
    "Default If Negative" / "Default If Wrong Type" are refused, as Valid refuses them."""
    with pytest.raises(PolicyError, match=message):
        load_policy(harbor(template, {template: value}))


@pytest.mark.parametrize("template, value", [("latestPushedK", 5), ("nDaysSinceLastPush", 5), ("lastXDays", 3),
                                              ("latestPushedK", 5.0)])
def test_new_valid(template, value):
    """rule/*/evaluator_test.go TestNew "Valid" (JSON numbers arrive as float64)."""
    cond = load_policy(harbor(template, {template: value})).rules[0].conditions[0]
    assert (cond.count if cond.kind == "most_recent" else cond.seconds / 86400) == int(value)


def test_models_bad_algorithm_and_kind():
    """models_test.go TestAlgorithm ("bad") and TestRule (tag selector kind "badkind")."""
    with pytest.raises(PolicyError, match="algorithm"):
        load_policy({**harbor("always"), "algorithm": "bad"})
    with pytest.raises(PolicyError, match="kind"):
        load_policy(harbor("latestPushedK", {"latestPushedK": 10},
                           tag={"kind": "badkind", "decoration": "matches", "pattern": "release-*"}))


def test_models_trigger_cron():
    pytest.skip(f"{H}/models_test.go TestValidateRetentionPolicy: the trigger's cron schedules Harbor's runs; "
                "a what-if has no schedule")


# -- the doublestar selector ---------------------------------------------------------------------

SEL = "goharbor/harbor src/lib/selector/selectors/doublestar/selector_test.go"


def tag_selector(decoration: str, pattern: str, untagged: bool | None) -> dict:
    """``untagged`` None is New(decoration, pattern, "") (no extras); True/False are the test's struct literals,
    which a policy spells as extras."""
    sel = {"kind": "doublestar", "decoration": decoration, "pattern": pattern}
    if untagged is not None:
        sel["extras"] = f'{{"untagged":{str(untagged).lower()}}}'
    return sel


@pytest.mark.parametrize("test, decoration, pattern, untagged, selected", [
    ("TestTagMatches tagMatches", "matches", "{latest,4.*}", False, {"harbor:latest", "redis:4.0", "redis:4.1"}),
    ("TestTagMatches tagMatches2", "matches", "4.*", False, {"redis:4.0", "redis:4.1"}),
    ("TestTagMatches tagMatches3", "matches", "4.*", None, {"redis:4.0", "redis:4.1", "special"}),
    ("TestTagExcludes tagExcludes", "excludes", "{latest,4.*}", True, set()),
    ("TestTagExcludes tagExcludes1", "excludes", "{latest,4.*}", None, {"special"}),
    ("TestTagExcludes tagExcludes2", "excludes", "4.*", True, {"harbor:latest"}),
])
def test_tag_selector(audit, estate, test, decoration, pattern, untagged, selected):
    """What the selector picks, "always" retains; everything else in scope is deleted."""
    policy = harbor("always", tag=tag_selector(decoration, pattern, untagged))
    assert retained(audit, estate, "sel", policy) == selected, f"{SEL} {test}"


@pytest.mark.parametrize("test, decoration, pattern, selected", [
    ("TestRepoMatches repoMatches", "repoMatches", "{redis}", {"redis:4.0", "redis:4.1"}),
    ("TestRepoMatches repoMatches2", "repoMatches", "har*", {"harbor:latest"}),
    ("TestRepoExcludes repoExcludes", "repoExcludes", "{redis}", {"harbor:latest", "special"}),
    ("TestRepoExcludes repoExcludes2", "repoExcludes", "har*", {"redis:4.0", "redis:4.1", "special"}),
    ("TestNSMatches repoMatches2", "repoMatches", "re*", {"redis:4.0", "redis:4.1"}),
])
def test_repository_selector(audit, estate, test, decoration, pattern, selected):
    """A repository selector decides which repositories a rule (and so the policy) touches: with
    latestPushedK 0 every artifact of a selected repository is deleted, the others are left alone."""
    policy = harbor("latestPushedK", {"latestPushedK": 0},
                    repo={"kind": "doublestar", "decoration": decoration, "pattern": pattern})
    plan = audit.retention(policy, include=estate.include("sel"))
    assert estate.names(plan, "sel") == selected, f"{SEL} {test}"


@pytest.mark.parametrize("test", ["TestNSMatches repoMatches", "TestNSExcludes repoExcludes",
                                  "TestNSExcludes repoExcludes2"])
def test_namespace_selector(test):
    pytest.skip(f"{SEL} {test}: nsMatches/nsExcludes are not rule scope selectors in a retention policy "
                "(only 'repository'); the policy's project is scope.ref")


# -- push time -----------------------------------------------------------------------------------

def test_push_time_is_the_later_of_artifact_and_tag_push(audit, estate):
    """pkg/retention/dep/client.go GetCandidates: lastPushedTime = max(art.PushTime, tags' PushTime).
    "old" (pushed 30 days ago, tagged prod now) is recent to Harbor; "older" is not."""
    policy = harbor("nDaysSinceLastPush", {"nDaysSinceLastPush": 7})
    plan = audit.retention(policy, include=estate.include("retag"))
    assert estate.names(plan, "retag") == {"older"}
    assert retained(audit, estate, "retag", harbor("latestPushedK", {"latestPushedK": 1})) == {"old"}
    # The plan says which evidence dated the candidates (here: the config created of an image older than
    # the first look), and the tag that raised "old" shows when "old" is a candidate.
    plan = audit.retention(harbor("latestPushedK", {"latestPushedK": 0}), include=estate.include("retag"))
    rows = plan.candidates.set_index("digest")
    old = rows.loc[estate.digests[("retag", "old")]]
    assert (old["pushed_at"], old["pushed_source"]) == (NOW, "tag_first_seen")
    assert rows.loc[estate.digests[("retag", "older")], "pushed_source"] == "created"
    assert int(plan.summary["pushed_from_tag"].iloc[0]) == 1
