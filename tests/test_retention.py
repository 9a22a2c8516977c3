"""Each policy format selects what its product would, on a small hand-built estate.

The estate is pushed to a real registry and collected three times, a month apart, so
push times come from the snapshot history: images already there at the first look are
dated by their config ``created``, later ones by the snapshot that first saw them.
Every expected candidate list below was worked out by hand from the table in
``estate()``; the comments next to each list say why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import repoaudit
from pusher import Pusher, layer_bytes
from registry import RegistryServer
from repoaudit.errors import ConfigError, PolicyError

T0, T1, T2 = datetime(2025, 1, 1), datetime(2025, 2, 1), datetime(2025, 3, 1)


@dataclass
class Estate:
    db: Path
    host: str
    digests: dict[str, str]  # image name -> digest
    images: dict  # image name -> PushedImage / PushedIndex

    def blob_bytes(self, *names: str) -> int:
        """Manifest, config and layer bytes of images that share nothing (every layer here is unique)."""
        return sum(len(self.images[n].manifest) + sum(b.size for b in self.images[n].blobs) for n in names)

    def names(self, plan, policy: str | None = None) -> set[tuple[str, str]]:
        frame = plan.candidates if policy is None else plan.candidates[plan.candidates["policy"] == policy]
        by_digest = {d: n for n, d in self.digests.items()}
        return {(r, by_digest[d]) for r, d in zip(frame["repository"], frame["digest"])}


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> Estate:
    """Push times (= created for images present at T0, else the first snapshot that saw them):

    team/api     a1 [v1.0.0] 2024-01-10 · a2 [v1.1.0] 2024-06-10 · a3 [stable, v1.2.0] 2024-11-10
                 a4 [dev-abc] 2024-12-20 (had 'latest' until T2) · a5 [v1.3.0-rc1] T1 (created 2025-01-15)
                 d2 [dev] T1 (created 2025-01-20) · a6 [latest, v1.3.0] T2 (created 2025-02-20)
                 d1: untagged since T1 ('dev' moved to d2), created 2024-10-01
    team/web     w1 [1.0] 2023-05-01 · w2 [2.0] 2024-11-25
    ops/tools    x1 [2024.1] index of amd + arm, 2024-03-01 · t2 [2025.1] T2 (created 2025-02-10)
    sandbox/exp  e1 [x] 2022-01-01
    ecr/example  A [beta-1, prod-1] 2024-05-01 · B [beta-2, prod-2] 2024-05-02 · C [beta-3] 2024-05-03
    Deployed (pods): a1, and amd (so its index x1).
    """
    work = tmp_path_factory.mktemp("retention")
    db = work / "audit.duckdb"
    d: dict[str, str] = {}
    images: dict = {}
    with RegistryServer(work / "registry") as server, Pusher(server.url) as pusher, repoaudit.open(db) as audit:
        def push(name, repo, tags, created, **kw):
            image = pusher.push_image(repo, tags, layers=[layer_bytes(name, 2_000)], created=f"{created}T00:00:00Z",
                                      **kw)
            d[name] = image.digest
            images[name] = image
            return image

        push("a1", "team/api", ["v1.0.0"], "2024-01-10")
        push("a2", "team/api", ["v1.1.0"], "2024-06-10")
        push("a3", "team/api", ["v1.2.0", "stable"], "2024-11-10")
        push("a4", "team/api", ["dev-abc", "latest"], "2024-12-20")
        push("d1", "team/api", ["dev"], "2024-10-01")
        push("w1", "team/web", ["1.0"], "2023-05-01")
        push("w2", "team/web", ["2.0"], "2024-11-25")
        amd = push("amd", "ops/tools", [], "2024-03-01", architecture="amd64")
        arm = push("arm", "ops/tools", [], "2024-03-01", architecture="arm64")
        images["x1"] = pusher.push_index("ops/tools", ["2024.1"], [amd, arm])
        d["x1"] = images["x1"].digest
        push("e1", "sandbox/exp", ["x"], "2022-01-01")
        push("A", "ecr/example", ["beta-1", "prod-1"], "2024-05-01")
        push("B", "ecr/example", ["beta-2", "prod-2"], "2024-05-02")
        push("C", "ecr/example", ["beta-3"], "2024-05-03")
        audit.collect(server.url, progress=False, started_at=T0)

        push("a5", "team/api", ["v1.3.0-rc1"], "2025-01-15")
        push("d2", "team/api", ["dev"], "2025-01-20")
        audit.collect(server.url, progress=False, started_at=T1)

        a6 = push("a6", "team/api", ["v1.3.0"], "2025-02-20")
        pusher.tag("team/api", "latest", a6)
        push("t2", "ops/tools", ["2025.1"], "2025-02-10")
        audit.collect(server.url, progress=False, started_at=T2)

        pods = {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "prod", "uid": name},
             "spec": {"containers": [{"name": "c", "image": f"{server.host}/{repo}@{d[image]}"}]},
             "status": {"phase": "Running"}}
            for name, repo, image in [("api-0", "team/api", "a1"), ("tools-0", "ops/tools", "amd")]]}
        (work / "pods.json").write_text(json.dumps(pods))
        audit.ingest("pods", work / "pods.json", cluster="prod")
        host = server.host
    return Estate(db, host, d, images)


@pytest.fixture
def audit(estate):
    with repoaudit.open(estate.db, read_only=True) as a:
        yield a


NATIVE = {
    "name": "native",
    "scope": {"exclude": ["sandbox/**"]},
    "rules": [
        {"name": "releases", "tags": {"regex": r"^v\d+\.\d+\.\d+$"}, "keep": {"most_recent": 2, "by": "created"}},
        {"name": "named", "keep": {"tags": ["latest", "stable"]}},
        {"name": "fresh", "keep": {"newer_than": "60d", "by": "first_seen"}},
        {"name": "ops", "repositories": {"include": ["ops/*"]}, "keep": "always"},
    ],
}


def test_native(audit, estate):
    plan = audit.retention(NATIVE)
    # team/api: releases keep a6, a3 (newest v-x.y.z by created; a5's rc tag does not match); named keeps a3, a6;
    #   fresh (pushed after 2024-12-31) keeps a5, d2, a6. Left: a1, a2, a4 (2024-12-20), d1 (untagged).
    # team/web: nothing keeps w1, w2. ops/tools: kept always. sandbox: out of scope. ecr/example: nothing keeps.
    assert estate.names(plan) == {("team/api", "a1"), ("team/api", "a2"), ("team/api", "a4"), ("team/api", "d1"),
                                  ("team/web", "w1"), ("team/web", "w2"), ("ecr/example", "A"),
                                  ("ecr/example", "B"), ("ecr/example", "C")}
    assert set(plan.candidates["rule"]) == {"not kept by any rule"}


HARBOR = {
    "algorithm": "or",
    "rules": [
        {"disabled": False, "action": "retain", "template": "latestPushedK", "params": {"latestPushedK": 2},
         "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v*",
                            "extras": "{\"untagged\":false}"}],
         "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "api"}]}},
        {"disabled": False, "action": "retain", "template": "always", "params": {},
         "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "{latest,stable,dev}"}],
         "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}},
        {"disabled": False, "action": "retain", "template": "nDaysSinceLastPush", "params": {"nDaysSinceLastPush": 30},
         "tag_selectors": [{"kind": "doublestar", "decoration": "excludes", "pattern": "dev*"}],
         "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoExcludes", "pattern": "exp"}]}},
        {"disabled": True, "action": "retain", "template": "always", "params": {},
         "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
         "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}},
    ],
    "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
    "scope": {"level": "project", "ref": 1},
}


def test_harbor(audit, estate):
    plan = audit.retention(HARBOR)
    # Repository patterns see names without the project (team/api -> api).
    # team/api: rule 1 (tagged v*) keeps a6, a5 by push time; rule 2 keeps a3 (stable), a6 (latest), d2 (dev)
    #   and d1: a "matches" selector without extras takes untagged artifacts too (Harbor's default);
    #   rule 3 (any tag not dev*, pushed within 30 days of T2) keeps a5, a6. Left: a1, a2, a4.
    # team/web: no rule keeps w1, w2. ops/tools: rule 3 keeps t2, not x1. sandbox/exp: in scope through rule 2,
    #   rule 3 excludes it: e1 goes. ecr/example: pushed in 2024, nothing keeps them.
    # The disabled rule would keep everything; Harbor skips it.
    assert estate.names(plan) == {("team/api", "a1"), ("team/api", "a2"), ("team/api", "a4"), ("team/web", "w1"),
                                  ("team/web", "w2"), ("ops/tools", "x1"), ("sandbox/exp", "e1"),
                                  ("ecr/example", "A"), ("ecr/example", "B"), ("ecr/example", "C")}
    assert any("project id" in w for w in plan.warnings)
    assert any("disabled" in w for w in plan.warnings)


ECR = {"rules": [
    {"rulePriority": 1, "description": "releases",
     "selection": {"tagStatus": "tagged", "tagPatternList": ["v*.*.*"], "countType": "imageCountMoreThan",
                   "countNumber": 2}, "action": {"type": "expire"}},
    {"rulePriority": 3, "description": "dev builds",
     "selection": {"tagStatus": "tagged", "tagPrefixList": ["dev"], "countType": "sinceImagePushed",
                   "countUnit": "days", "countNumber": 14}, "action": {"type": "expire"}},
    {"rulePriority": 2, "description": "untagged",
     "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                   "countNumber": 30}, "action": {"type": "expire"}},
    {"rulePriority": 9, "description": "the rest",
     "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3},
     "action": {"type": "expire"}},
]}


def test_ecr(audit, estate):
    plan = audit.retention(ECR)
    # team/api: priority 1 selects every image with a v*.*.* tag (a1 a2 a3 a5 a6; * also spans '-rc1'), keeps
    #   the 2 pushed last (a6, a5) and expires a3 a2 a1: a3's 'stable' does not save it. Priority 2 expires d1
    #   (untagged, pushed 2024-10-01). Priority 3 expires a4 (2024-12-20) and d2 (T1 = 2025-02-01), both
    #   pushed more than 14 days before T2. Priority 9 finds nothing unclaimed.
    # Other repositories hold at most 3 images, so only priority 9 applies and keeps them.
    assert estate.names(plan) == {("team/api", n) for n in ("a1", "a2", "a3", "a4", "d1", "d2")}
    rules = plan.candidates.set_index("digest")["rule"]
    assert rules[estate.digests["a3"]].startswith("rule 1 (releases)")
    assert rules[estate.digests["d1"]].startswith("rule 2 (untagged)")
    assert rules[estate.digests["d2"]].startswith("rule 3 (dev builds)")
    # a1 runs in a pod: ECR would delete it anyway, and the plan says so.
    assert plan.summary.iloc[0]["deployed_candidates"] == 1


def test_ecr_documented_example(audit, estate):
    """ECR's "filtering on multiple rules" example: only image A is expired.

    Rule 1 (prod, keep 1) expires A. Rule 2 (beta, keep 1) counts A, B, C as if none had expired and
    marks B and A, but B matched rule 1's selection, so a lower priority rule cannot expire it.
    """
    policy = {"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"],
                                          "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["beta"],
                                          "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}}]}
    plan = audit.retention(policy, include=["ecr/**"])
    assert estate.names(plan) == {("ecr/example", "A")}


GAR = [
    {"name": "delete-old", "action": {"type": "Delete"}, "condition": {"tagState": "any", "olderThan": "90d"}},
    {"name": "delete-dev", "action": {"type": "Delete"},
     "condition": {"tagState": "tagged", "tagPrefixes": ["dev"], "olderThan": "7d"}},
    {"name": "keep-releases", "action": {"type": "Keep"},
     "condition": {"tagState": "tagged", "tagPrefixes": ["v1.2", "stable"]}},
    {"name": "keep-recent", "action": {"type": "Keep"},
     "mostRecentVersions": {"packageNamePrefixes": ["team/"], "keepCount": 2}},
    {"name": "keep-ops", "action": {"type": "Keep"}, "condition": {"packageNamePrefixes": ["ops/"]}},
]


def test_gar(audit, estate):
    plan = audit.retention(GAR)
    # 90 days before T2 is 2024-12-01; 7 days before is 2025-02-22.
    # team/api: delete-old matches a1 a2 a3 d1; delete-dev matches a4, d2. keep-releases keeps a3; keep-recent
    #   keeps the 2 newest versions: a6, then d2 (pushed at T1 like a5, but created later). Left: a1 a2 a4 d1.
    # team/web: w1, w2 are old, but they are its 2 newest versions. ops/tools: kept by keep-ops.
    # sandbox/exp and ecr/example: old, nothing keeps them.
    assert estate.names(plan) == {("team/api", "a1"), ("team/api", "a2"), ("team/api", "a4"), ("team/api", "d1"),
                                  ("sandbox/exp", "e1"), ("ecr/example", "A"), ("ecr/example", "B"),
                                  ("ecr/example", "C")}
    rules = plan.candidates.set_index("digest")["rule"]
    assert rules[estate.digests["a4"]].startswith("delete-dev")
    assert rules[estate.digests["a1"]].startswith("delete-old")


def test_gar_keep_policies_alone_plan_nothing(audit, estate, tmp_path):
    path = tmp_path / "keep-only.json"
    path.write_text(json.dumps([{"name": "keep-tagged", "action": {"type": "Keep"},
                                 "condition": {"tagState": "tagged"}}]))
    plan = audit.retention(path)
    assert estate.names(plan) == set() and int(plan.summary["candidate_images"].iloc[0]) == 0


def test_deployed_keeps_what_runs(audit, estate):
    plan = audit.retention({"rules": [{"keep": {"deployed": True}}]}, include=["team/api", "ops/tools"])
    # a1 runs by digest; amd runs, so its index x1 is deployed too.
    assert estate.names(plan) == {("team/api", n) for n in ("a2", "a3", "a4", "a5", "a6", "d1", "d2")} | {
        ("ops/tools", "t2")}


def test_push_time_and_its_source(audit, estate):
    plan = audit.retention({"rules": [{"keep": {"tags": ["no-such-tag"]}}]}, include=["team/api"])
    rows = plan.candidates.set_index("digest")
    d = estate.digests
    expected = {"a1": (datetime(2024, 1, 10), "created"), "d1": (datetime(2024, 10, 1), "created"),
                "a5": (T1, "first_seen"), "d2": (T1, "first_seen"), "a6": (T2, "first_seen")}
    for name, (when, source) in expected.items():
        assert (rows.loc[d[name], "pushed_at"], rows.loc[d[name], "pushed_source"]) == (pd.Timestamp(when), source)
    assert rows.loc[d["d1"], "untagged"] and list(rows.loc[d["d1"], "tags"]) == []
    assert list(rows.loc[d["a3"], "tags"]) == ["stable", "v1.2.0"]


def test_several_policies_side_by_side(audit, estate):
    plan = audit.retention(NATIVE, HARBOR, ECR, GAR)
    assert list(plan.summary["policy"]) == ["native", "harbor", "ecr", "gar"]
    whatif = plan.whatif()
    assert list(whatif.columns) == ["native", "harbor", "ecr", "gar"]
    assert whatif.loc["candidate_images"].tolist() == [9, 10, 6, 8]
    # Each policy is evaluated alone: the same answer as planning it by itself.
    alone = audit.retention(ECR)
    assert alone.summary.iloc[0]["reclaimable_bytes"] == plan.summary.iloc[2]["reclaimable_bytes"]
    ns = plan.by_namespace[plan.by_namespace["policy"] == "ecr"]
    assert ns["namespace"].tolist() == ["team"]
    assert ns["reclaimable_bytes"].sum() == plan.summary.iloc[2]["reclaimable_bytes"]


def test_as_of_moves_the_reference_time(audit, estate):
    later = audit.retention(NATIVE, as_of=datetime(2025, 6, 1))
    # 60 days before June 1st is April 2nd: 'fresh' keeps nothing any more, so a5 and d2 go too.
    assert estate.names(later) >= {("team/api", "a5"), ("team/api", "d2")}
    assert ("team/api", "a6") not in estate.names(later)  # still kept as a release and as latest


def test_policy_errors_surface_from_the_plan(audit):
    with pytest.raises(PolicyError, match=r"rule 1 \(rulePriority 1\): selection.countNumber"):
        audit.retention({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType":
                                                                     "imageCountMoreThan", "countNumber": 0},
                                    "action": {"type": "expire"}}]})
    with pytest.raises(ConfigError, match="two policies are named 'native'"):
        audit.retention(NATIVE, NATIVE)
    with pytest.raises(ConfigError, match="no complete or partial snapshot of registry 'nope'"):
        audit.retention(NATIVE, registry="nope")


def test_stale_images_query(audit, estate):
    names = {v: k for k, v in estate.digests.items()}

    def stale(**params):
        params.setdefault("protect_tags", "latest,stable")
        frame = audit.query("stale_images", **params)
        return {(r, names[d]) for r, d in zip(frame["repository"], frame["digest"])}

    # Newest by created in team/api: a6, d2, a5, a4, a3, a2, a1. Older than 90 days at T2 (by created and push):
    # a1 (deployed), a2, a3 (stable). ecr/example: A is 3rd newest and 304 days old. Index x1 runs (via amd).
    assert stale(keep_newest=2) == {("team/api", "a2"), ("ecr/example", "A")}
    assert stale(keep_newest=0) == {("team/api", "a2"), ("team/web", "w1"), ("team/web", "w2"),
                                    ("sandbox/exp", "e1"), ("ecr/example", "A"), ("ecr/example", "B"),
                                    ("ecr/example", "C")}
    assert stale(keep_newest=0, namespace="team") == {("team/api", "a2"), ("team/web", "w1"), ("team/web", "w2")}
    assert stale(keep_newest=0, older_than_days=97) == stale(keep_newest=0) - {("team/web", "w2")}  # 96 days old
    assert stale(keep_newest=0, protect_tags=None) == stale(keep_newest=0) | {("team/api", "a3")}
    assert stale(keep_newest=0, protect_regex=r"^v1\.1") == stale(keep_newest=0) - {("team/api", "a2")}
    row = audit.query("stale_images", keep_newest=0, namespace="sandbox").iloc[0]
    assert row["unique_bytes"] == estate.blob_bytes("e1") and row["pushed_source"] == "created"


def test_stale_repositories_and_namespaces_queries(audit, estate):
    repos = audit.query("stale_repositories", older_than_days=180).set_index("repository")
    # Newest push: team/api and ops/tools at T2, team/web 2024-11-25 (96 days), sandbox/exp 2022, ecr/example
    # 2024-05-03 (302 days).
    assert sorted(repos.index) == ["ecr/example", "sandbox/exp"]
    assert repos.loc["sandbox/exp", "exclusive_bytes"] == estate.blob_bytes("e1")
    assert repos.loc["ecr/example", "exclusive_bytes"] == estate.blob_bytes("A", "B", "C")
    assert repos.loc["ecr/example", "days_since_push"] == 302

    ns = audit.query("stale_namespaces", keep_newest=0, protect_tags="latest,stable").set_index("namespace")
    assert ns.loc["team", "stale_images"] == 3 and ns.loc["team", "repositories"] == 2
    assert ns.loc["team", "stale_reclaimable_bytes"] == estate.blob_bytes("a2", "w1", "w2")
    assert ns.loc["ecr", "stale_reclaimable_bytes"] == estate.blob_bytes("A", "B", "C")
    assert ns.loc["ops", "stale_images"] == 0 and ns.loc["ops", "stale_reclaimable_bytes"] == 0
    assert ns["stale_repositories"].to_dict() == {"team": 0, "ops": 0, "sandbox": 1, "ecr": 1}


def test_demo_whatif_of_the_example_policies(demo_db):
    from repoaudit.retention.whatif import demo_whatif, whatif_table

    with repoaudit.open(demo_db, read_only=True) as audit:
        frame = demo_whatif(audit)
    assert frame["policy"].tolist() == ["ecr-lifecycle", "gar-cleanup", "harbor-retention", "native-keep-releases"]
    assert (frame["candidate_images"] > 0).all()
    # Shared layers: every policy frees far less than the sum of the images it deletes.
    assert (frame["reclaimable_bytes"] < frame["logical_bytes"] / 2).all()
    assert frame["reclaimable_bytes"].nunique() == 4
    text = whatif_table(frame)
    assert "reclaimable bytes" in text and "native-keep-releases" in text


@pytest.mark.parametrize("count, kept", [(0, set()), (1, {"B"}), (2, {"B", "C"}), (3, {"B", "C", "A"}),
                                         (4, {"B", "C", "A", "E"}), (9, {"A", "B", "C", "D", "E"})])
def test_most_recent_breaks_ties_by_created_then_digest(count, kept):
    """"Most recent N" ranks by the rule's time, then created (none: last), then the greater digest.

    B is newest by created-or-pushed (no created: pushed). A, C and E share a created-or-pushed time:
    A and C also share created, so C's greater digest wins; E has no created and comes after both.
    """
    from repoaudit.retention.formats import load_policy
    from repoaudit.retention.compiler import Params, policy_sql

    con = duckdb.connect()
    con.execute("""
        CREATE TEMP TABLE _ra_images AS
        SELECT * REPLACE (coalesce(created, pushed_at) AS created_or_pushed) FROM (VALUES
            (1, 'A', 'sha256:aa', TIMESTAMP '2024-01-03', TIMESTAMP '2024-02-01'),
            (2, 'B', 'sha256:bb', NULL, TIMESTAMP '2024-03-01'),
            (3, 'C', 'sha256:cc', TIMESTAMP '2024-01-03', TIMESTAMP '2024-02-01'),
            (4, 'D', 'sha256:dd', TIMESTAMP '2024-01-02', TIMESTAMP '2024-02-01'),
            (5, 'E', 'sha256:ee', NULL, TIMESTAMP '2024-01-03')
        ) t(link_id, name, digest, created, pushed_at),
        LATERAL (SELECT 7 AS rkey, link_id AS mkey, ['t'] AS tags, true AS tagged, NULL::TIMESTAMP AS created_or_pushed,
                        TIMESTAMP '2024-06-01' AS as_of, false AS deployed, true AS eligible,
                        t.pushed_at AS last_pushed_at)""")
    con.execute("CREATE TEMP TABLE _ra_repos AS SELECT 7 AS rkey, true AS in_plan, true AS in_scope, true AS r0")
    policy = load_policy({"name": "recent", "rules": [{"name": "r", "keep": {"most_recent": count, "by": "created"}}]})
    params = Params()
    sql = policy_sql(policy, params)
    candidates = {r[0] for r in con.execute(f"SELECT i.name FROM ({sql}) c JOIN _ra_images i USING (link_id)",
                                            params.values).fetchall()}
    assert candidates == {"A", "B", "C", "D", "E"} - kept


@pytest.mark.parametrize("template, age, kept", [
    ("nDaysSinceLastPush", timedelta(days=6), True),
    ("nDaysSinceLastPush", timedelta(days=7), True),  # exactly N days: PushedTime >= now - N days
    ("nDaysSinceLastPush", timedelta(days=7, seconds=1), False),
    ("lastXDays", timedelta(days=6), True),
    ("lastXDays", timedelta(days=7), False),  # lastx: PushedTime.After(cutoff), strictly
])
def test_harbor_day_templates_at_the_boundary(template, age, kept):
    """goharbor/harbor src/pkg/retention/policy/rule/daysps/evaluator.go keeps an artifact whose push time
    is >= now - N days; rule/lastx/evaluator.go keeps one pushed strictly after now - X days."""
    from repoaudit.retention.compiler import Params, policy_sql
    from repoaudit.retention.formats import load_policy

    as_of = datetime(2024, 6, 1)
    con = duckdb.connect()
    con.execute("""
        CREATE TEMP TABLE _ra_images AS
        SELECT 1 AS link_id, 'A' AS name, 'sha256:aa' AS digest, NULL::TIMESTAMP AS created,
               $pushed::TIMESTAMP AS pushed_at, $pushed::TIMESTAMP AS last_pushed_at,
               $pushed::TIMESTAMP AS created_or_pushed, 7 AS rkey, 1 AS mkey,
               ['v1'] AS tags, true AS tagged, $as_of::TIMESTAMP AS as_of, false AS deployed, true AS eligible
    """, {"pushed": as_of - age, "as_of": as_of})
    con.execute("CREATE TEMP TABLE _ra_repos AS SELECT 7 AS rkey, true AS in_plan, true AS in_scope, true AS r0")
    policy = load_policy({"algorithm": "or", "rules": [{
        "action": "retain", "template": template, "params": {template: 7},
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]},
    }]})
    params = Params()
    sql = policy_sql(policy, params)
    candidates = {r[0] for r in con.execute(f"SELECT i.name FROM ({sql}) c JOIN _ra_images i USING (link_id)",
                                            params.values).fetchall()}
    assert candidates == (set() if kept else {"A"})


def test_harbor_push_time_follows_the_current_stretch_of_each_tag(registry, pusher, tmp_path):
    """A tag that leaves an image and comes back (prod: O at T1, N at T2, O again at T3) was pushed onto O
    again at T3: Harbor's push time of O is then T3. A tag already there at the first look (v1) says
    nothing about when it was pushed, so O's own push stays its config created until a tag raises it."""
    times = [datetime(2025, 1, 1) + timedelta(days=7 * i) for i in range(4)]
    harbor_all = {"algorithm": "or", "rules": [{
        "action": "retain", "template": "latestPushedK", "params": {"latestPushedK": 0},
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}}]}
    with repoaudit.open(tmp_path / "audit.duckdb") as audit:
        old = pusher.push_image("team/app", ["v1"], layers=[layer_bytes("old", 500)], created="2024-06-01T00:00:00Z")
        audit.collect(registry.url, progress=False, started_at=times[0])
        pusher.tag("team/app", "prod", old)
        audit.collect(registry.url, progress=False, started_at=times[1])
        new = pusher.push_image("team/app", ["prod", "v2"], layers=[layer_bytes("new", 500)],
                                created="2025-01-10T00:00:00Z")
        audit.collect(registry.url, progress=False, started_at=times[2])
        pusher.tag("team/app", "prod", old)
        audit.collect(registry.url, progress=False, started_at=times[3])

        rows = audit.retention(harbor_all).candidates.set_index("digest")
        assert (rows.loc[old.digest, "pushed_at"], rows.loc[old.digest, "pushed_source"]) == (
            pd.Timestamp(times[3]), "tag_first_seen")
        # v2 arrived with new at T2, as new did: nothing to raise.
        assert (rows.loc[new.digest, "pushed_at"], rows.loc[new.digest, "pushed_source"]) == (
            pd.Timestamp(times[2]), "first_seen")
        # ECR dates the same images by their own push.
        ecr = audit.retention({"rules": [{"rulePriority": 1, "selection": {
            "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]})
        assert list(ecr.candidates["digest"]) == [old.digest]
        assert ecr.candidates.iloc[0]["pushed_source"] == "created"
