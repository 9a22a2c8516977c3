"""Report sections for registry posture, tags that moved, and remediation (docs/posture.md).

Each section reads named queries only (``registry_posture``, ``mutable_release_tags``,
``sla_breaches``, ``remediation_mttr``), so the report, notebooks and ``repoaudit posture`` agree.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from repoaudit.analysis.report import MAX_ROWS, Section, _figure, _png


def report_as_of(audit) -> datetime:
    """The moment the remediation sections count days up to: the newest snapshot, as the other sections do
    (a report of last week's database says what was overdue then); now for a database without snapshots."""
    frame = audit.sql("SELECT max(started_at) AS at FROM latest_snapshot")
    at = frame["at"].iloc[0] if len(frame) else None
    return at.to_pydatetime() if at is not None and not pd.isna(at) else datetime.now()


def posture_section(audit) -> Section:
    posture = audit.query("registry_posture")
    sec = Section("posture", "Registry posture",
                  "What a client without credentials can do, probed at each collection without the collection's "
                  "credentials: read a repository's tags or manifests, list the catalog, start an upload "
                  "(with --probe-push); and what the endpoint offers: plain HTTP, the certificate's trust and days "
                  "left, TLS 1.0/1.1. For an OCI layout the anonymous client is any other local user, read from "
                  "the permission bits. Changes compare with the registry's previous probe.")
    if len(posture):
        flagged = posture[posture["findings"].map(len) > 0]
        sec.headline = (f"{len(flagged)} of {len(posture)} registries with findings: "
                        + "; ".join(f"{r.registry}: {', '.join(r.findings)}" for r in flagged.itertuples())
                        if len(flagged) else f"no findings on {len(posture)} registries")
    else:
        sec.headline = "no posture probed yet (repoaudit collect probes it)"
    sec.tables.append(("Posture per registry", posture[[
        "registry", "auth_scheme", "anonymous_read", "anonymous_catalog", "anonymous_push", "plain_http",
        "cert_trust", "cert_days_left", "weak_tls", "findings", "changes"]]))
    return sec


def moved_tags_section(audit) -> Section:
    moves = audit.query("mutable_release_tags")
    tampering = moves[moves["kind"] == "tampering"]
    floating = moves[moves["kind"] == "floating"]
    sec = Section("moved-tags", "Tags that moved",
                  "Release-looking tags (full semantic versions, dates, build numbers) re-pointed at other content "
                  "between snapshots: a release should name one build, so each move is worth a look (tampering, or "
                  "a rebuild published under an old name). Floating tags (latest, stable, a bare major or "
                  "major.minor version) are expected to move and are counted apart.")
    sec.headline = (f"{len(tampering)} moves of release tags ({tampering['tag'].nunique()} tags), "
                    f"{len(floating)} moves of floating tags")
    columns = ["registry", "repository", "tag", "from_digest", "to_digest", "moved_after", "moved_before", "digests",
               "rollback"]
    sec.tables.append(("Release tags that moved", tampering[columns]))
    if len(floating):
        counts = (floating.groupby("tag").agg(moves=("repository", "size"), repositories=("repository", "nunique"))
                  .reset_index().sort_values(["moves", "tag"], ascending=[False, True]))
        sec.tables.append(("Floating tags that moved (expected)", counts))
    return sec


def remediation_section(audit) -> Section:
    as_of = report_as_of(audit)
    breaches = audit.query("sla_breaches", as_of=as_of)
    trend = audit.query("remediation_mttr", as_of=as_of)
    overall = audit.query("remediation_mttr", as_of=as_of, by_month=False)
    sec = Section("remediation", "Remediation",
                  "How fast fixes ship. A finding is fixed when a newer image of its repository (by push time) no "
                  "longer carries it; MTTR is the mean days from first seen to that push. A running image breaches "
                  "its target when a fix has been available longer than 15 days (critical), 30 (high) or 90 "
                  f"(medium). Days are counted to {as_of:%Y-%m-%d %H:%M} (the newest snapshot).")
    fixed, still_open = int(overall["fixed"].sum()) if len(overall) else 0, int(overall["open"].sum()) if len(
        overall) else 0
    sec.headline = (f"{len(breaches)} SLA breaches in running images ({breaches['vulnerability_id'].nunique()} "
                    f"vulnerabilities); {fixed} findings fixed, {still_open} open")
    if len(trend):
        monthly = (trend.assign(days=trend["mttr_days"] * trend["fixed"])
                   .groupby(["severity", "month"]).agg(days=("days", "sum"), fixed=("fixed", "sum")).reset_index())
        monthly["mttr_days"] = monthly["days"] / monthly["fixed"]
        fig, ax = _figure()
        for severity in ("CRITICAL", "HIGH", "MEDIUM", "LOW"):
            part = monthly[monthly["severity"] == severity].sort_values("month")
            if len(part):
                ax.plot(pd.to_datetime(part["month"]), part["mttr_days"], marker="o", label=severity.lower())
        ax.set_ylabel("mean days open")
        ax.set_title("Mean time to remediate, by month of fix")
        ax.legend(fontsize="small")
        fig.autofmt_xdate()
        sec.charts.append(("MTTR trend: mean days from first seen to the fixed image's push", _png(fig)))
    sec.tables.append(("SLA breaches in running images", breaches[[
        "repository", "vulnerability_id", "severity", "pkg_name", "installed_version", "fixed_version",
        "fix_available_at", "days_since_fix", "sla_days", "days_over", "running_pods", "namespaces"]].head(MAX_ROWS)))
    sec.tables.append(("MTTR per severity and namespace", overall[[
        "severity", "namespace", "fixed", "mttr_days", "mttr_from_fix_days", "max_days_open", "open"]]))
    return sec
