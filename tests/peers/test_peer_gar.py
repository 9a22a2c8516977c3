"""Artifact Registry's documented cleanup-policy examples, with the outcomes the pages state.

Sources: https://cloud.google.com/artifact-registry/docs/repositories/cleanup-policy-overview ("Policy
application order": images A, B, C; "A keep policy only exempts matching artifacts from deletion";
"Maximum number of cleanup policies per repository": 10) and
https://cloud.google.com/artifact-registry/docs/repositories/cleanup-policy (the policy file example:
delete-prerelease, keep-tagged-release, keep-minimum-versions; that page says what each policy does but
gives no repository, so the one here is made up and its outcome follows those statements).
For a Docker repository a version is a manifest digest and a package is an image (repository path), so a
page's "version 2.0.6" becomes a digest prefix here.

Each example's repository becomes real images pushed to a real registry (peerestate.py), collected and
planned with the policy file a user would pass to ``gcloud artifacts repositories set-cleanup-policies``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from peerestate import Candidate, build

import repoaudit
from repoaudit.errors import PolicyError
from repoaudit.retention.formats import load_policy

DAY = timedelta(days=1)


def delete(name: str, **condition) -> dict:
    return {"name": name, "action": {"type": "Delete"}, "condition": condition}


def keep(name: str, **condition) -> dict:
    return {"name": name, "action": {"type": "Keep"}, "condition": condition}


CASES = {
    # cleanup-policy-overview, "Policy application order": A 120 days [default] 2.0.1, B 150 days [default]
    # 2.0.6, C 20 days [patch] 1.9.2. "Image A is deleted and image C is kept. Image B is kept ..."
    # A Docker tag names one version of a package, so A and B (both tagged default) are two packages here.
    "order": [Candidate("A", ("default",), age=120 * DAY, repository="a"),
              Candidate("B", ("default",), age=150 * DAY, repository="b"),
              Candidate("C", ("patch",), age=20 * DAY, repository="c")],
    # cleanup-policy, the policy file example: delete-prerelease (tagged alpha/v0 older than 30 days),
    # keep-tagged-release (release* in webapp/mobile), keep-minimum-versions (5 newest of webapp, mobile,
    # sandbox). webapp has 7 versions, sandbox 2 old prereleases, other 1.
    "file": [Candidate(f"w{i}", (f"alpha-{i}",), age=(40 + i) * DAY, repository="webapp") for i in range(6)]
    + [Candidate("wrel", ("release-1",), age=90 * DAY, repository="webapp")]
    + [Candidate(f"s{i}", (f"v0.{i}",), age=(60 + i) * DAY, repository="sandbox") for i in range(2)]
    + [Candidate("o1", ("alpha-9",), age=45 * DAY, repository="other"),
       Candidate("o2", ("v0.1",), age=10 * DAY, repository="other")],
}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    # Package names are whole repository paths: the policy file's webapp, mobile, sandbox.
    return build(tmp_path_factory.mktemp("gar"), CASES, plain=("file",))


def plan_names(estate, case: str, policy) -> set[str]:
    with repoaudit.open(estate.db, read_only=True) as audit:
        plan = audit.retention(policy, include=estate.include(case))
    return estate.names(plan, case)


def test_policy_application_order(estate):
    b_version = estate.digests[("order", "B")][:20]  # "version prefix 2.0.6": B's version name
    policy = [delete("delete-old", olderThan="100d"),
              keep("keep-version", versionNamePrefixes=[b_version]),
              delete("delete-default", tagState="tagged", tagPrefixes=["default"])]
    assert plan_names(estate, "order", policy) == {"A"}


def test_policy_file_example(estate):
    policy = [
        delete("delete-prerelease", tagState="tagged", tagPrefixes=["alpha", "v0"], olderThan="30d"),
        {"name": "keep-tagged-release", "action": {"type": "Keep"},
         "condition": {"tagState": "tagged", "tagPrefixes": ["release"],
                       "packageNamePrefixes": ["webapp", "mobile"]}},
        {"name": "keep-minimum-versions", "action": {"type": "Keep"},
         "mostRecentVersions": {"packageNamePrefixes": ["webapp", "mobile", "sandbox"], "keepCount": 5}},
    ]
    # webapp: w0..w5 are prereleases older than 30 days; the 5 newest versions (w0..w4) are kept, wrel is a
    # release: w5 goes. sandbox: both prereleases are among its 5 newest. other: o1 (45 days) goes, o2 is young.
    assert plan_names(estate, "file", policy) == {"w5", "o1"}


def test_keep_policies_alone_delete_nothing(estate):
    """cleanup-policy-overview: "A keep policy only exempts matching artifacts from deletion" - with no
    delete policy nothing is deleted."""
    policy = [keep("keep-patch", tagState="tagged", tagPrefixes=["patch"])]
    assert plan_names(estate, "order", policy) == set()
    assert any("deletes nothing" in note for note in load_policy(policy).notes)


def test_at_most_ten_policies():
    """cleanup-policy-overview, "Maximum number of cleanup policies per repository": 10."""
    load_policy([delete(f"p{i}", olderThan="30d") for i in range(10)])
    with pytest.raises(PolicyError, match="at most 10"):
        load_policy([delete(f"p{i}", olderThan="30d") for i in range(11)])

