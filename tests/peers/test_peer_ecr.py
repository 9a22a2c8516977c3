"""Every example of AWS's "Examples of lifecycle policies" page, with the outcome the page states.

Sources: https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_examples.html (the live
page: its image-age example with tagPatternList) and its published source, awsdocs/amazon-ecr-user-guide
doc_source/lifecycle_policy_examples.md at 1e12072b39a943e2007115537d34b0c09b783a0b (every other example,
with its repository contents and "Result:"). The page's JSON misses commas between some fields and
rules; the policies below are those documents made valid, nothing else changed.

Each example's repository becomes real images pushed to a real registry (peerestate.py), collected, and
planned with the ECR policy JSON as a user would import it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from peerestate import Candidate, build

import repoaudit

PAGE = "AWS ECR 'Examples of lifecycle policies'"
DAY = timedelta(days=1)


def expire(priority: int, **selection) -> dict:
    return {"rulePriority": priority, "description": f"Rule {priority}", "selection": selection,
            "action": {"type": "expire"}}


MULTI = [Candidate("A", ("beta-1", "prod-1"), age=10 * DAY), Candidate("B", ("beta-2", "prod-2"), age=9 * DAY),
         Candidate("C", ("beta-3",), age=8 * DAY)]

EXAMPLES = {
    # "Filtering on image age" (live page): tagged prod* older than 14 days expire.
    "age-pattern": (
        [Candidate("prod-old", ("prod-1",), age=20 * DAY), Candidate("prod-new", ("prod-2",), age=3 * DAY),
         Candidate("dev-old", ("dev-1",), age=20 * DAY)],
        {"rules": [expire(1, tagStatus="tagged", tagPatternList=["prod*"], countType="sinceImagePushed",
                          countUnit="days", countNumber=14)]},
        {"prod-old"}),
    # "Filtering on Image Age" (published source): untagged images older than 14 days expire.
    "age-untagged": (
        [Candidate("u-old", (), age=20 * DAY), Candidate("u-new", (), age=3 * DAY),
         Candidate("t-old", ("v1",), age=30 * DAY)],
        {"rules": [expire(1, tagStatus="untagged", countType="sinceImagePushed", countUnit="days", countNumber=14)]},
        {"u-old"}),
    # "Filtering on Image Count": keep only one untagged image, expire all others.
    "count-untagged": (
        [Candidate("u1", (), age=10 * DAY), Candidate("u2", (), age=5 * DAY), Candidate("u3", (), age=2 * DAY),
         Candidate("t", ("v1",), age=30 * DAY)],
        {"rules": [expire(1, tagStatus="untagged", countType="imageCountMoreThan", countNumber=1)]},
        {"u1", "u2"}),
    # "Filtering on Multiple Rules", Example A. "Result: Image A is expired."
    "multi-a": (
        MULTI,
        {"rules": [expire(1, tagStatus="tagged", tagPrefixList=["prod"], countType="imageCountMoreThan",
                          countNumber=1),
                   expire(2, tagStatus="tagged", tagPrefixList=["beta"], countType="imageCountMoreThan",
                          countNumber=1)]},
        {"A"}),
    # "Filtering on Multiple Rules", Example B (priorities swapped). "Result: Images A and B are expired."
    "multi-b": (
        MULTI,
        {"rules": [expire(1, tagStatus="tagged", tagPrefixList=["beta"], countType="imageCountMoreThan",
                          countNumber=1),
                   expire(2, tagStatus="tagged", tagPrefixList=["prod"], countType="imageCountMoreThan",
                          countNumber=1)]},
        {"A", "B"}),
    # "Filtering on Multiple Tags in a Single Rule", Example A. "Result: Image C is expired."
    "tags-a": (
        [Candidate("A", ("alpha-1",), age=12 * DAY), Candidate("B", ("beta-1",), age=11 * DAY),
         Candidate("C", ("alpha-2", "beta-2"), age=10 * DAY), Candidate("D", ("alpha-3",), age=4 * DAY),
         Candidate("E", ("beta-3",), age=3 * DAY), Candidate("F", ("alpha-4", "beta-4"), age=2 * DAY)],
        {"rules": [expire(1, tagStatus="tagged", tagPrefixList=["alpha", "beta"], countType="sinceImagePushed",
                          countNumber=5, countUnit="days")]},
        {"C"}),
    # "Filtering on Multiple Tags in a Single Rule", Example B. "Result: Images A and B are expired."
    "tags-b": (
        [Candidate("A", ("alpha-1", "beta-1", "gamma-1"), age=10 * DAY),
         Candidate("B", ("alpha-2", "beta-2"), age=9 * DAY),
         Candidate("C", ("alpha-3", "beta-3", "gamma-2"), age=8 * DAY)],
        {"rules": [expire(1, tagStatus="tagged", tagPrefixList=["alpha", "beta"], countType="imageCountMoreThan",
                          countNumber=1)]},
        {"A", "B"}),
    # Push time: ECR's imagePushedAt is the image's push; a tag pushed onto an existing digest leaves it
    # ("the only timestamp ... is for when the image was initially pushed", aws/containers-roadmap#214;
    # re-tagging does not reset lifecycle age, aws/containers-roadmap#2746). "old" was tagged prod today.
    "retag": (
        [Candidate("old", ("v1",), age=30 * DAY, retag=("prod",)), Candidate("new", ("v2",), age=2 * DAY)],
        {"rules": [expire(1, tagStatus="any", countType="sinceImagePushed", countUnit="days", countNumber=7)]},
        {"old"}),
}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    return build(tmp_path_factory.mktemp("ecr"), {case: images for case, (images, _, _) in EXAMPLES.items()})


@pytest.mark.parametrize("case", list(EXAMPLES))
def test_example(estate, case):
    _, policy, expired = EXAMPLES[case]
    with repoaudit.open(estate.db, read_only=True) as audit:
        plan = audit.retention(policy, include=estate.include(case))
    assert estate.names(plan, case) == expired, f"{PAGE}: {case}"
    if case == "retag":
        row = plan.candidates.iloc[0]
        assert row["pushed_source"] == "created" and sorted(row["tags"]) == ["prod", "v1"]
