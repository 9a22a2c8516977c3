"""Write the notebooks in notebooks/ from the cell lists below, without outputs.

Notebooks are committed as .ipynb (users open them in Jupyter); this script is
where they are edited, so a diff of a notebook change stays readable. Run it after
editing and commit both: ``python tools/make_notebooks.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "notebooks"

SETUP = """\
import os
import matplotlib.pyplot as plt
import pandas as pd
import repoaudit
from repoaudit import human_bytes

audit = repoaudit.open(db, read_only=True)
pd.set_option("display.max_colwidth", 80)"""

PARAMS_HEAD = """\
# Parameters (papermill: this cell is tagged "parameters").
# The database defaults to $REPOAUDIT_DB, else the demo database built by `repoaudit demo`.
import os
db = os.environ.get("REPOAUDIT_DB", "../data/demo/repoaudit-demo.duckdb")"""


def params(extra: str = "") -> nbformat.NotebookNode:
    cell = new_code_cell(PARAMS_HEAD + ("\n" + extra if extra else ""))
    cell.metadata["tags"] = ["parameters"]
    return cell


NOTEBOOKS: dict[str, list] = {}

NOTEBOOKS["01_inventory.ipynb"] = [
    new_markdown_cell("""\
# Registry inventory

What the registries hold: repositories, tags and images per registry, how many bytes they occupy
once shared layers are counted once (**unique bytes**) against the sum of every image's size
(**logical bytes**), and how that grew across snapshots.

Every table below comes from a named query in `queries/` (`audit.query(name, …)`), so the same
numbers appear in `repoaudit query`, the report and CSV exports."""),
    params('registry = None  # None: every registry in the database\ntop_n = 15'),
    new_code_cell(SETUP),
    new_markdown_cell("## Snapshots\n\nEach collection run. `status` is `complete`, `partial` (some repositories "
                      "failed: see `collection_errors`) or `failed`; `mode` says whether the run was incremental."),
    new_code_cell('snaps = audit.query("snapshots", registry=registry)\nsnaps'),
    new_markdown_cell("## Growth\n\nUnique bytes reachable from the tags of each snapshot. A step up is new "
                      "content; a step down is tags deleted (the registry only frees the space after garbage "
                      "collection)."),
    new_code_cell("""\
ok = snaps[snaps["status"] != "failed"].sort_values("started_at")
fig, ax = plt.subplots(figsize=(8, 3.5))
for reg, part in ok.groupby("registry"):
    ax.plot(part["started_at"], part["unique_bytes"] / 2**30, marker="o", label=reg)
ax.set_ylabel("unique GiB")
ax.set_title("Registry size by snapshot")
ax.legend(loc="best", fontsize="small")
fig.autofmt_xdate()
plt.show()"""),
    new_markdown_cell("## Repositories\n\n`unique_bytes` counts each blob once within the repository; "
                      "`logical_bytes` sums every distinct image whole. The gap is layer sharing inside "
                      "the repository."),
    new_code_cell('repos = audit.query("repository_summary", registry=registry)\nrepos.head(top_n)'),
    new_code_cell("""\
top = repos.head(top_n).iloc[::-1]
fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1))
ax.barh(top["repository"], top["logical_bytes"] / 2**30, color="#c6dbef", label="logical")
ax.barh(top["repository"], top["unique_bytes"] / 2**30, color="#2171b5", label="unique")
ax.set_xlabel("GiB")
ax.set_title(f"Top {len(top)} repositories by unique bytes")
ax.legend()
plt.show()"""),
    new_markdown_cell("## By team namespace\n\nThe first path component of a repository name (`payments/ledger` "
                      "→ `payments`) is taken as the owning team."),
    new_code_cell("""\
repos["namespace"] = repos["repository"].str.split("/").str[0]
by_team = (repos.groupby("namespace")[["tags", "images", "unique_bytes", "logical_bytes"]].sum()
           .sort_values("unique_bytes", ascending=False))
by_team.assign(unique=by_team["unique_bytes"].map(human_bytes))"""),
    new_markdown_cell("## Layers shared across repositories\n\nBase layers pushed once and mounted into many "
                      "repositories. `bytes_saved` is what the registry would store again if every repository "
                      "had its own copy; these layers are also why deleting one repository's images frees less "
                      "than their summed size."),
    new_code_cell("""\
shared = audit.query("shared_layers", registry=registry)
print(f"{len(shared)} shared layers save {human_bytes(shared['bytes_saved'].sum())}")
shared.head(top_n)"""),
    new_markdown_cell("## Media types and artifacts\n\nImages, indexes, schema 1 manifests and non-image "
                      "artifacts (cosign signatures, SBOMs, Helm charts) in the latest snapshots."),
    new_code_cell('audit.query("artifact_inventory", registry=registry)'),
]


NOTEBOOKS["02_stale_and_retention.ipynb"] = [
    new_markdown_cell("""\
# Stale images and what a retention policy would really free

Two questions: which images nobody needs any more, and how many bytes a cleanup policy would give
back. Registries answer the second with counts or with the summed size of the images deleted
(**logical bytes**). The registry's garbage collector frees far less, because base layers, configs and
even whole manifests are shared between images and repositories: a blob is freed only when *every*
manifest holding it, in any repository, is deleted. repoaudit computes those **reclaimable bytes**
exactly, from the same reference graph the collector stored."""),
    params('older_than_days = 90   # stale: older than this by created and by push time\n'
           'keep_newest = 3         # ... and not among the newest K of its repository\n'
           'policies_dir = None     # None: the example policies shipped with repoaudit'),
    new_code_cell(SETUP + """
from pathlib import Path
from repoaudit import default_policies_dir

policies = sorted(Path(policies_dir or default_policies_dir()).iterdir())
[p.name for p in policies]"""),
    new_markdown_cell("## Stale images by team\n\n`stale_logical_bytes` is what the stale images weigh; "
                      "`stale_reclaimable_bytes` is what deleting exactly them would free."),
    new_code_cell("""\
teams = audit.query("stale_namespaces", older_than_days=older_than_days, keep_newest=keep_newest)
teams[["namespace", "repositories", "stale_repositories", "images", "stale_images",
       "stale_logical_bytes", "stale_reclaimable_bytes"]]"""),
    new_code_cell("""\
t = teams.sort_values("stale_reclaimable_bytes")
fig, ax = plt.subplots(figsize=(8, 0.45 * len(t) + 1))
ax.barh(t["namespace"], t["stale_logical_bytes"] / 2**30, color="#fdd0a2", label="stale, logical")
ax.barh(t["namespace"], t["stale_reclaimable_bytes"] / 2**30, color="#d94801", label="stale, reclaimable")
ax.set_xlabel("GiB")
ax.legend()
ax.set_title("Stale images by team namespace")
plt.show()"""),
    new_markdown_cell("## The stalest images\n\n`unique_bytes` is what deleting that image alone frees."),
    new_code_cell("""\
stale = audit.query("stale_images", older_than_days=older_than_days, keep_newest=keep_newest)
stale.sort_values("unique_bytes", ascending=False).head(15)[
    ["repository", "tags", "kind", "created", "pushed_days", "pushed_source", "size", "unique_bytes"]]"""),
    new_markdown_cell("## Repositories nobody pushes to"),
    new_code_cell('audit.query("stale_repositories").head(15)'),
    new_markdown_cell("## Retention what-if\n\nEvery policy evaluated on the latest snapshot. Read the gap between "
                      "the two bars as the part of a dashboard's \"space saved\" that never comes back."),
    new_code_cell("""\
plan = audit.retention(*policies, blobs=False)
plan.whatif()"""),
    new_code_cell("""\
summary = plan.summary.sort_values("reclaimable_bytes")
fig, ax = plt.subplots(figsize=(8, 0.6 * len(summary) + 1.2))
ax.barh(summary["policy"], summary["logical_bytes"] / 2**30, color="#c7e9c0", label="logical (sum of images)")
ax.barh(summary["policy"], summary["reclaimable_bytes"] / 2**30, color="#238b45", label="reclaimable (GC frees)")
ax.set_xlabel("GiB")
ax.legend()
ax.set_title("Logical vs really reclaimable bytes per policy")
plt.show()"""),
    new_markdown_cell("## Where the bytes come from\n\nPer namespace and policy. `reclaimable_alone_bytes` is what "
                      "the namespace's candidates would free if only they were deleted."),
    new_code_cell("""\
by_ns = plan.by_namespace.pivot_table(index="namespace", columns="policy", values="reclaimable_bytes",
                                      aggfunc="sum").fillna(0)
(by_ns / 2**30).plot.bar(figsize=(8, 3.5)).set_ylabel("reclaimable GiB")
plt.show()
by_ns.map(human_bytes)"""),
    new_markdown_cell("## Which images, and why\n\nEach candidate names the rule that expired it, where its push "
                      "time came from (`first-seen` snapshot or config `created`), and whether it is deployed "
                      "(a policy that ignores deployments, such as ECR's, can expire running images)."),
    new_code_cell("""\
cands = plan.candidates
cands[cands["deployed"]].head(10) if cands["deployed"].any() else cands.head(10)"""),
]

NOTEBOOKS["03_risk_exposure.ipynb"] = [
    new_markdown_cell("""\
# Vulnerability exposure

Scanner findings only matter where the image runs. This notebook joins the newest scan of each
image (Trivy, Grype or CycloneDX reports ingested with `repoaudit ingest`) with the pods that run
it (`repoaudit ingest pods`), and ranks images by **exposure = risk score × running pods**, where the
risk score is Dependency-Track's inherited risk score:
critical×10 + high×5 + medium×3 + low×1 + unassigned×5."""),
    params('cluster = None  # None: every cluster\nnamespace = None\ntop_n = 15'),
    new_code_cell(SETUP),
    new_markdown_cell("## Most exposed running images\n\nOne row per running image. `matched_by` says how its "
                      "scan was found: by manifest digest, by image ID (config digest), or through its index."),
    new_code_cell("""\
exposure = audit.query("risk_exposure", cluster=cluster, namespace=namespace)
scanned = exposure[exposure["scan_id"].notna()]
scanned.head(top_n)[["repository", "image_refs", "critical", "high", "medium", "low", "fixable",
                     "max_cvss", "risk_score", "running_pods", "namespaces", "exposure"]]"""),
    new_code_cell("""\
top = scanned.head(top_n).iloc[::-1]
labels = top["repository"] + "@" + top["digest"].str[7:19]
fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1))
ax.barh(labels, top["exposure"], color="#cb181d")
ax.set_xlabel("exposure = risk score × running pods")
ax.set_title("Most exposed running images")
plt.show()"""),
    new_markdown_cell("## Severity mix by namespace\n\nDistinct vulnerabilities of the images each namespace "
                      "runs. A team with few images but many criticals is where a base-image bump pays off first."),
    new_code_cell("""\
by_ns = audit.query("vulnerability_summary", by="namespace", scope="deployed").set_index("group_name")
sev = by_ns[["critical", "high", "medium", "low"]]
ax = sev.plot.bar(stacked=True, figsize=(8, 3.5), color=["#67000d", "#cb181d", "#fb6a4a", "#fcbba1"])
ax.set_ylabel("distinct vulnerabilities")
ax.set_title("Vulnerabilities of running images by namespace")
plt.show()
by_ns"""),
    new_markdown_cell("## Fix now\n\nCritical and high findings with a fixed version in running images, how long "
                      "the advisory has been public, and a newer tag of the same repository whose scan no longer "
                      "has the finding (the upgrade path), when there is one."),
    new_code_cell("""\
fix = audit.query("fixable_critical_deployed")
fix.head(top_n)[["repository", "image_refs", "vulnerability_id", "severity", "pkg_name", "installed_version",
                 "fixed_version", "days_since_published", "newer_tag"]]"""),
    new_markdown_cell("## Blind spots\n\nRunning images with no scan (or only an old one), workloads that "
                      "follow a mutable tag rather than a digest, and workloads pulling straight from public "
                      "registries."),
    new_code_cell("""\
unscanned = audit.query("unscanned_images")
unscanned[unscanned["deployed"].fillna(False).astype(bool)]"""),
    new_code_cell('audit.query("mutable_tag_deployments").head(top_n)'),
    new_code_cell('audit.query("public_registry_workloads")'),
]


NOTEBOOKS["04_tag_history.ipynb"] = [
    new_markdown_cell("""\
# Tag history

A registry only knows what its tags point at *now*. Snapshots remember what they pointed at
before, which answers two questions no registry UI does:

* **Which tags moved?** A release tag re-pointed to other content is a supply-chain signal (tags
  are meant to name one build), and a move to an *older* image is a rollback someone should know
  about.
* **Which manifests lost every tag?** Untagged manifests still hold their layers until they are
  deleted and garbage-collected (distribution/distribution#1844)."""),
    params('repository = None  # e.g. "payments/ledger"; None: every repository\n'
           'tag = None          # with repository: one tag\ntop_n = 15'),
    new_code_cell(SETUP),
    new_markdown_cell("## Moves between snapshots\n\n`rollback` marks a move to an image with an older "
                      "config `created`; `recreated` a tag that was deleted and pushed again."),
    new_code_cell("""\
moves = audit.query("tag_moves", repository=repository)
print(f"{len(moves)} moves, {int(moves['rollback'].sum())} of them rollbacks")
moves[moves["rollback"]].head(top_n) if moves["rollback"].any() else moves.head(top_n)"""),
    new_code_cell("""\
per_snapshot = moves.groupby(["to_snapshot", "rollback"]).size().unstack(fill_value=0)
ax = per_snapshot.plot.bar(stacked=True, figsize=(7, 3), color={False: "#6baed6", True: "#cb181d"})
ax.set_xlabel("snapshot")
ax.set_ylabel("tags moved")
ax.set_title("Tag moves per snapshot (red: rollbacks)")
plt.show()"""),
    new_markdown_cell("## Which tags move\n\nFloating tags (`latest`, `stable`) are expected to move; a "
                      "version tag that moves is not."),
    new_code_cell("""\
moves.groupby("tag").size().sort_values(ascending=False).head(top_n)"""),
    new_markdown_cell("## One tag's timeline\n\nEach stretch of the tag at one digest. Without parameters this "
                      "shows the most recent rollback's tag."),
    new_code_cell("""\
if repository and tag:
    ref = f"{repository}:{tag}"
elif moves["rollback"].any():
    first = moves[moves["rollback"]].iloc[0]
    ref = f"{first['repository']}:{first['tag']}"
else:
    ref = None
audit.history(ref) if ref else "no moves recorded yet" """),
    new_markdown_cell("## Orphaned manifests\n\nManifests that lost every tag and still hold storage. "
                      "`unique_bytes` is what deleting them and running garbage collection would free."),
    new_code_cell("""\
orphans = audit.query("orphaned_manifests", repository=repository)
print(f"{len(orphans)} orphaned manifests holding {human_bytes(orphans['unique_bytes'].sum())} only they use")
orphans.head(top_n)[["repository", "digest", "kind", "created", "last_tags", "untagged_since", "unique_bytes"]]"""),
]

NOTEBOOKS["05_posture_and_remediation.ipynb"] = [
    new_markdown_cell("""\
# Registry posture, tag tampering and remediation

Three questions beyond what is stored and what is vulnerable (docs/posture.md):

* **Who can reach the registry without credentials?** Probed at every collection, without the
  collection's credentials: anonymous read, catalog and push, plain HTTP, the certificate.
* **Have release tags been re-pointed?** A release tag should name one build.
* **How fast do fixes ship?** When each finding was first seen, when a fix was available, when a newer
  image no longer carried it, and which running images are past their remediation target."""),
    params('registry = None  # None: every registry\nas_of = None     # None: the newest snapshot\ntop_n = 15'),
    new_code_cell(SETUP + """
if as_of is None:
    as_of = audit.sql("SELECT max(started_at) AS at FROM latest_snapshot")["at"].iloc[0]"""),
    new_markdown_cell("## Access posture\n\n`findings` lists what an anonymous client can do or would see; "
                      "`changes` what differs from the registry's previous probe."),
    new_code_cell('audit.posture(registry)'),
    new_markdown_cell("## Release tags that moved\n\nOne row per move of a release-looking tag; floating tags "
                      "(`latest`, `stable`, bare major/minor versions) are counted apart."),
    new_code_cell("""\
moves = audit.query("mutable_release_tags", registry=registry)
print(moves["kind"].value_counts().to_dict())
moves[moves["kind"] == "tampering"].head(top_n)"""),
    new_markdown_cell("## Mean time to remediate\n\nMean days from a finding's first sighting to the push of "
                      "the first newer image without it, per month of fix."),
    new_code_cell("""\
trend = audit.query("remediation_mttr", as_of=as_of, registry=registry)
monthly = (trend.assign(days=trend["mttr_days"] * trend["fixed"]).groupby(["month", "severity"])
           .agg(days=("days", "sum"), fixed=("fixed", "sum")))
mttr = (monthly["days"] / monthly["fixed"]).unstack("severity")
ax = mttr.plot(marker="o", figsize=(7, 3))
ax.set_ylabel("mean days open")
ax.set_title("MTTR by month of fix")
plt.show()
audit.query("remediation_mttr", as_of=as_of, registry=registry, by_month=False)"""),
    new_markdown_cell("## SLA breaches\n\nFindings in running images whose fix has been available longer than "
                      "the target (critical 15 days, high 30, medium 90; `critical_days=` … to change)."),
    new_code_cell("""\
breaches = audit.query("sla_breaches", as_of=as_of)
print(f"{len(breaches)} breaches in {breaches['digest'].nunique()} running images")
breaches.head(top_n)"""),
    new_markdown_cell("## One repository's lifecycle\n\nThe repository with the most breaches, finding by finding."),
    new_code_cell("""\
repo = breaches["repository"].value_counts().index[0] if len(breaches) else None
audit.query("vulnerability_lifecycle", as_of=as_of, repository=repo).head(top_n) if repo else "no breaches" """),
]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        for index, cell in enumerate(cells):
            # Stable ids keep regenerated notebooks diff-free where the cells did not change.
            cell.id = hashlib.sha1(f"{name}:{index}".encode()).hexdigest()[:8]
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        })
        nbformat.validate(nb)
        nbformat.write(nb, OUT / name)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
