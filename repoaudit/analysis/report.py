"""The audit report: one self-contained HTML page (or Markdown) answering the three questions.

Every number comes from a named query, so the report, notebooks and CSV exports
agree. Charts are matplotlib PNGs embedded as data URIs: the file opens offline,
from a mail attachment or a CI artifact, with no network resource at all.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from repoaudit._version import __version__
from repoaudit.analysis.events import events_section
from repoaudit.errors import ConfigError
from repoaudit.model.formatting import human_bytes

MAX_ROWS = 15


@dataclass
class Section:
    key: str
    title: str
    intro: str
    headline: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    charts: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG bytes)


@dataclass
class Report:
    generated_at: datetime
    database: str
    headlines: list[tuple[str, str]]
    sections: list[Section]
    since: str
    actions: list[str] = field(default_factory=list)  # what to do this week, most pressing first


def parse_since(value: str | None) -> tuple[str, Any]:
    """``--since``: a snapshot id (``12``) or a look-back (``7d``, ``24h``, ``2w``)."""
    if value is None or value == "":
        return ("previous", None)
    if value.isdigit():
        return ("snapshot", int(value))
    m = re.fullmatch(r"(\d+)\s*([hdw])", value.strip())
    if not m:
        raise ConfigError(f"--since wants a snapshot id or a duration like 7d, 24h, 2w; got {value!r}")
    n, unit = int(m.group(1)), m.group(2)
    return ("duration", timedelta(hours=n) if unit == "h" else timedelta(days=n * (7 if unit == "w" else 1)))


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(width=8.0, height=3.5):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _overlay_bars(labels, back, front, *, colors: tuple[str, str], legend: tuple[str, str], title: str) -> bytes:
    """Horizontal bars, one pale bar (the logical size) behind a dark one (what is unique or freed)."""
    fig, ax = _figure(8, 0.4 * len(labels) + 1.2)
    ax.barh(labels, back / 2**30, color=colors[0], label=legend[0])
    ax.barh(labels, front / 2**30, color=colors[1], label=legend[1])
    ax.set_xlabel("GiB")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def _bytes_cols(frame: pd.DataFrame) -> pd.DataFrame:
    """Render *_bytes and size columns for people; the CSV exports keep raw integers."""
    out = frame.copy()
    for col in out.columns:
        if col.endswith("bytes") or col in ("total_size", "size"):
            out[col] = out[col].map(lambda v: human_bytes(v) if pd.notna(v) else "-")
    return out


# -- sections ------------------------------------------------------------------------


def inventory_section(audit) -> Section:
    snaps = audit.query("snapshots", limit=1000)
    repos = audit.query("repository_summary")
    ok = snaps[snaps["status"] != "failed"].sort_values("started_at")
    sec = Section("inventory", "Inventory",
                  "Registries, repositories and the bytes they hold. Unique bytes count each blob once; "
                  "logical bytes sum every image whole, as a registry UI would.")
    latest = ok.groupby("registry").tail(1)
    sec.tables.append(("Latest snapshot per registry", latest[[
        "registry", "snapshot_id", "started_at", "status", "repository_count", "tag_count", "manifest_count",
        "unique_bytes", "error_count"]]))
    if len(ok):
        fig, ax = _figure()
        for reg, part in ok.groupby("registry"):
            ax.plot(part["started_at"], part["unique_bytes"] / 2**30, marker="o", label=reg)
        ax.set_ylabel("unique GiB")
        ax.set_title("Registry size by snapshot")
        ax.legend(fontsize="small")
        fig.autofmt_xdate()
        sec.charts.append(("Unique bytes reachable from each snapshot's tags", _png(fig)))
    if len(repos):
        top = repos.head(MAX_ROWS).iloc[::-1]
        sec.charts.append(("Largest repositories by unique bytes", _overlay_bars(
            top["repository"], top["logical_bytes"], top["unique_bytes"], colors=("#c6dbef", "#2171b5"),
            legend=("logical", "unique"), title="Largest repositories")))
        sec.tables.append(("Largest repositories", repos.head(MAX_ROWS)))
    if len(latest):
        # Each figure with its change since each registry's snapshot before the latest.
        before = ok.groupby("registry").nth(-2) if ok.groupby("registry").size().max() > 1 else ok.iloc[0:0]
        now = {c: latest[c].sum() for c in ("repository_count", "tag_count", "unique_bytes")}
        then = {c: before[c].sum() if len(before) else None for c in now}
        sec.headline = (f"{now['repository_count']:,.0f} repositories{_delta(now, then, 'repository_count')}, "
                        f"{now['tag_count']:,.0f} tags{_delta(now, then, 'tag_count')}, "
                        f"{human_bytes(now['unique_bytes'])} unique{_delta(now, then, 'unique_bytes', human_bytes)}")
    else:
        sec.headline = "no snapshots yet"
    return sec


def _delta(now: dict, then: dict, key: str, fmt=lambda v: f"{v:,.0f}") -> str:
    if then.get(key) is None or pd.isna(then[key]):
        return ""
    change = now[key] - then[key]
    return f" ({'+' if change >= 0 else '-'}{fmt(abs(change))})"


def changes_section(audit, since: str | None) -> Section:
    kind, value = parse_since(since)
    sec = Section("changes", "What changed",
                  "Repositories and tags added or removed, and tags moved to other content, between each "
                  "registry's latest snapshot and the comparison point. A moved release tag is a "
                  "supply-chain signal worth a look.")
    params: dict[str, Any] = {}
    if kind == "snapshot":
        params["from_snapshot"] = value
    elif kind == "duration":
        params["older_than_hours"] = _hours(value)
    diff = audit.query("snapshot_diff", **params)
    counts = diff["change"].value_counts() if len(diff) else pd.Series(dtype=int)
    sec.headline = ", ".join(_counted(n, c) for c, n in counts.items()) or "no changes"
    if len(diff):
        sec.tables.append(("Moved tags", diff.loc[diff["change"] == "tag moved", [
            "registry", "repository", "tag", "from_digest", "to_digest", "from_snapshot", "to_snapshot"]]))
        sec.tables.append(("Repositories added or removed", diff.loc[diff["change"].str.startswith("repository"), [
            "registry", "repository", "change", "from_snapshot", "to_snapshot"]]))
        sec.tables.append(("Counts", counts.rename_axis("change").reset_index(name="count")))
    return sec


def _counted(n: int, change: str) -> str:
    """``2 tags moved``, ``1 repository added``: the change's noun agrees with its count."""
    noun, _, verb = change.partition(" ")
    if n != 1:
        noun = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n:,} {noun} {verb}"


def supply_section(audit) -> Section:
    """Issue 17: signature and SBOM coverage, running images without a valid signature, dangling referrers."""
    sec = Section("supply", "Supply chain",
                  "Cosign signatures verified offline against the keys given to collect (--verify-key), SBOMs "
                  "and attestations attached to images, and signatures whose image is gone. Keyless signatures "
                  "are not verified offline (see docs/supply-chain.md).")
    signatures = audit.query("signature_coverage")
    sboms = audit.query("sbom_coverage")
    unsigned = audit.query("unsigned_deployed_images")
    dangling = audit.query("dangling_referrers")
    if len(signatures):
        sec.headline = (f"{int(signatures['verified'].sum())} of {int(signatures['images'].sum())} images carry a valid "
                        f"signature, {int(sboms['with_sbom'].sum())} an SBOM; {len(unsigned)} running images without "
                        f"a valid signature")
    sec.tables.append(("Running images without a valid signature", unsigned[[
        "namespace", "registry", "repository", "digest", "running_pods", "signature_status", "invalid_reasons"]]))
    sec.tables.append(("Signature coverage by team namespace", signatures[[
        "registry", "namespace", "images", "signed", "verified", "invalid", "verified_pct"]]))
    sec.tables.append(("SBOM coverage by team namespace", sboms[[
        "registry", "namespace", "images", "with_sbom", "with_provenance", "sbom_pct"]]))
    sec.tables.append(("Dangling signatures and attestations", dangling[[
        "registry", "repository", "subject_digest", "referrer_digest", "category", "bytes"]]))
    return sec


def stale_section(audit) -> Section:
    namespaces = audit.query("stale_namespaces")
    images = audit.query("stale_images")
    repos = audit.query("stale_repositories")
    sec = Section("stale", "Stale images",
                  "Images older than 90 days by both config created and push time, outside the newest 3 of "
                  "their repository, not running and without a protected tag (latest, stable, prod, …). "
                  "Reclaimable bytes count only blobs nothing else in the registry holds.")
    if len(namespaces):
        sec.headline = (f"{int(namespaces['stale_images'].sum()):,} stale images in "
                        f"{int(namespaces['stale_repositories'].sum()):,} stale repositories; deleting them frees at least "
                        f"{human_bytes(namespaces['stale_reclaimable_bytes'].sum())}")
        ns = namespaces.sort_values("stale_reclaimable_bytes")
        sec.charts.append(("Stale bytes per namespace: what the images weigh, and what deleting them frees",
                           _overlay_bars(ns["namespace"], ns["stale_logical_bytes"], ns["stale_reclaimable_bytes"],
                                         colors=("#fdd0a2", "#d94801"), legend=("stale, logical", "stale, reclaimable"),
                                         title="Stale images by team namespace")))
    sec.tables.append(("By team namespace", namespaces[[
        "registry", "namespace", "repositories", "stale_repositories", "images", "stale_images",
        "stale_logical_bytes", "stale_reclaimable_bytes"]]))
    sec.tables.append(("Largest stale images", images.sort_values("unique_bytes", ascending=False)[[
        "repository", "tags", "kind", "created", "pushed_days", "size", "unique_bytes"]]))
    sec.tables.append(("Repositories without a push in 180 days", repos))
    return sec


def retention_section(audit, policies: list[Path]) -> Section:
    sec = Section("retention", "Retention what-if",
                  "What each policy would delete and how many bytes the registry's garbage collector would then "
                  "really free: a layer, config or manifest counts only when every image holding it, in any "
                  "repository, is deleted too. Logical bytes sum the deleted images whole, as registry UIs do.")
    if not policies:
        sec.headline = "no policy given (repoaudit report --policy FILE)"
        return sec
    plan = audit.retention(*policies, blobs=False)
    summary = plan.summary
    best = summary.sort_values("reclaimable_bytes").iloc[-1]
    sec.headline = (f"{best['policy']} frees {human_bytes(best['reclaimable_bytes'])} of "
                    f"{human_bytes(best['logical_bytes'])} logical ({best['reclaimable_pct']:.1f}% of stored)")
    ordered = summary.sort_values("reclaimable_bytes")
    sec.charts.append(("Per policy: bytes of the candidate images, and bytes garbage collection would free",
                       _overlay_bars(ordered["policy"], ordered["logical_bytes"], ordered["reclaimable_bytes"],
                                     colors=("#c7e9c0", "#238b45"),
                                     legend=("logical (sum of images)", "reclaimable (GC frees)"),
                                     title="Retention policies: logical vs really reclaimable bytes")))
    sec.tables.append(("Policies side by side", plan.whatif().reset_index().rename(columns={"index": "measure"})))
    sec.tables.append(("By namespace", plan.by_namespace.sort_values(["policy", "reclaimable_bytes"],
                                                                     ascending=[True, False])))
    return sec


def risk_section(audit, since: str | None) -> Section:
    exposure = audit.query("risk_exposure", include_unscanned=False)
    fixable = audit.query("fixable_critical_deployed")
    unscanned = audit.query("unscanned_images")
    unscanned_deployed = unscanned[unscanned["deployed"].fillna(False).astype(bool)]
    new_critical = audit.query("new_critical_findings", **_since_params(since))
    sec = Section("risk", "Vulnerability exposure",
                  "Findings of the newest scan of each running image, weighted by how much of it runs: "
                  "risk score = critical×10 + high×5 + medium×3 + low×1 + unassigned×5 (Dependency-Track's "
                  "inherited risk score) and exposure = risk score × running pods.")
    critical_running = int((exposure["critical"] * (exposure["running_pods"] > 0)).sum()) if len(exposure) else 0
    sec.headline = (f"{len(exposure)} running images scanned, {critical_running} critical findings in them, "
                    f"{len(fixable)} fixable critical/high findings, {len(unscanned_deployed)} running images "
                    f"unscanned, {len(new_critical)} new critical findings")
    if len(exposure):
        top = exposure.head(12).iloc[::-1]
        labels = [_image_name(r) for r in top.itertuples()]
        fig, ax = _figure(8, 0.35 * len(top) + 1)
        ax.barh(labels, top["exposure"], color="#cb181d")
        ax.set_xlabel("exposure (risk score × running pods)")
        ax.set_title("Most exposed running images")
        sec.charts.append(("Running images by exposure", _png(fig)))
        sec.tables.append(("Top risk exposure", exposure[[
            "repository", "image_refs", "critical", "high", "medium", "low", "fixable", "max_cvss", "risk_score",
            "running_pods", "namespaces", "exposure"]].head(MAX_ROWS)))
    sec.tables.append(("Fixable critical and high findings in running images", fixable[[
        "repository", "image_refs", "vulnerability_id", "severity", "pkg_name", "installed_version",
        "fixed_version", "days_since_published", "newer_tag"]].head(MAX_ROWS)))
    sec.tables.append(("Running images without a recent scan", unscanned_deployed[[
        "registry", "repository", "image_refs", "running_pods", "last_scanned_at", "reason"]].head(MAX_ROWS)))
    sec.tables.append(("New critical findings", new_critical[[
        "repository", "tags", "vulnerability_id", "pkg_name", "fixed_version", "cvss_score", "running_pods"]]))
    return sec


def _image_name(row) -> str:
    """``repo:tag`` for people (the first tag that runs), ``repo@sha256:1234abcd…`` only when no tag names it."""
    refs = getattr(row, "image_refs", None)
    first = refs[0] if isinstance(refs, (list, tuple)) and refs else (refs.split(",")[0].strip()
                                                                       if isinstance(refs, str) and refs else None)
    if first and ":" in first.rsplit("/", 1)[-1] and "@" not in first:
        return f"{row.repository}:{first.rsplit(':', 1)[1]}"
    return f"{row.repository}@{str(row.digest)[:19]}…"


# -- what to do this week -------------------------------------------------------------

MAX_ACTIONS = 5


def action_items(audit) -> list[str]:
    """The few things to act on, most pressing first: fixable criticals in running images (with the
    version that fixes them), release tags rolled back to an older image, the namespaces with most to reclaim."""
    items: list[str] = []
    fixable = audit.query("fixable_critical_deployed", min_severity="CRITICAL")
    if len(fixable):
        by_image = fixable.groupby(["repository", "digest"], sort=False)
        ranked = sorted(by_image, key=lambda kv: (-kv[1]["running_pods"].max(), -len(kv[1])))
        for (_repo, _digest), rows in ranked[:3]:
            first = rows.iloc[0]
            fixes = ", ".join(f"{r.pkg_name} → {str(r.fixed_version).split(',')[0].strip()}"
                              for r in rows.drop_duplicates("pkg_name").head(3).itertuples())
            newer = f"; {first['newer_tag']} already fixes it" if isinstance(first["newer_tag"], str) else ""
            items.append(f"Patch {_image_name(first)} ({int(first['running_pods'])} pods in {first['namespaces']}): "
                         f"{len(rows)} fixable critical finding{'s' if len(rows) != 1 else ''} ({fixes}){newer}")
    latest = set(audit.sql("SELECT snapshot_id FROM latest_snapshot")["snapshot_id"])
    rollbacks = audit.query("tag_moves", rollbacks_only=True)
    rollbacks = rollbacks[rollbacks["to_snapshot"].isin(latest)]
    for r in rollbacks.head(2).itertuples():
        older = (r.from_created - r.to_created).days if pd.notna(r.from_created) and pd.notna(r.to_created) else None
        age = f"an image {older} days older" if older else "an older image"
        items.append(f"Check {r.repository}:{r.tag}: it was moved back to {age} ({str(r.to_digest)[:19]}…); "
                     "intended rollback, or tampering?")
    stale = audit.query("stale_namespaces")
    if len(stale):
        top = stale.sort_values("stale_reclaimable_bytes", ascending=False).head(2)
        for r in top.itertuples():
            if r.stale_reclaimable_bytes > 0:
                items.append(f"Reclaim {human_bytes(r.stale_reclaimable_bytes)} in namespace {r.namespace}: "
                             f"{int(r.stale_images)} stale images (repoaudit query stale_images "
                             f"--param namespace={r.namespace})")
    return items[:MAX_ACTIONS]


def _hours(duration: timedelta) -> int:
    return int(duration / timedelta(hours=1))


def _since_params(since: str | None) -> dict[str, Any]:
    """``--since`` as the parameters of the queries that compare by time rather than by snapshot.

    None of them means each registry's previous snapshot, the queries' default.
    """
    kind, value = parse_since(since)
    if kind == "snapshot":
        return {"since_snapshot": value}
    if kind == "duration":
        return {"since_hours": _hours(value)}
    return {}


def check_since(audit, since: str | None) -> None:
    """Refuse a ``--since`` snapshot id the database does not hold: compared with nothing, every
    repository would show as added."""
    kind, value = parse_since(since)
    if kind == "snapshot" and audit.sql("SELECT count(*) AS n FROM snapshots WHERE snapshot_id = $id",
                                        {"id": value})["n"].iloc[0] == 0:
        ids = audit.sql("SELECT min(snapshot_id) AS lo, max(snapshot_id) AS hi FROM snapshots").iloc[0]
        held = "none" if pd.isna(ids["lo"]) else f"{int(ids['lo'])}..{int(ids['hi'])}"
        raise ConfigError(f"--since {value}: no such snapshot (this database holds snapshots {held}; "
                          "'repoaudit snapshots' lists them)")


def build_report(audit, *, since: str | None = None, policies: list[str | Path] = ()) -> Report:
    from repoaudit.analysis.posture import (
        moved_tags_section,
        posture_section,
        remediation_section,
    )

    check_since(audit, since)
    sections = [inventory_section(audit), stale_section(audit),
                retention_section(audit, [Path(p) for p in policies]),
                risk_section(audit, since), changes_section(audit, since), supply_section(audit),
                posture_section(audit), moved_tags_section(audit), remediation_section(audit)]
    sections += [s for s in (events_section(audit),) if s is not None]
    headlines = [(s.title, s.headline) for s in sections if s.headline]
    return Report(datetime.now().astimezone(), audit.path, headlines, sections, since or "previous snapshot",
                  action_items(audit))


# -- rendering -----------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}.meta{color:#666;font-size:.9rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1.2rem 0}
.card{border:1px solid #ddd;border-radius:8px;padding:.7rem 1rem;min-width:220px;flex:1}
.card b{display:block;font-size:.8rem;color:#666;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.85rem;width:100%}
th,td{border-bottom:1px solid #eee;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0}figcaption{color:#666;font-size:.85rem}img{max-width:100%}
section{margin-top:2.2rem}
td{overflow-wrap:anywhere}
.actions{border-left:4px solid #d94801;background:#fff7ec;padding:.6rem 1rem;margin:1rem 0}
.actions h2{margin:.2rem 0 .4rem;font-size:1.1rem}.actions ol{margin:0;padding-left:1.3rem}
"""


def _text(value: Any) -> str:
    if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1:  # DuckDB lists arrive as arrays
        return ", ".join(_text(v) for v in value)
    text = str(value)
    if text.startswith("sha256:") and len(text) == 71:
        return text[:19]  # 12 hex digits identify an image to a reader, as `docker images` shows them
    return text


def _html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><em>none</em></p>"
    shown = _bytes_cols(frame.head(MAX_ROWS))
    # Column names stay the queries' own, with break opportunities after each '_' so headers wrap.
    head = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in shown.columns)
    rows = []
    for rec in shown.itertuples(index=False):
        cells = []
        for v in rec:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = _text(v)
            cells.append(f'<td class="num">{html.escape(text)}</td>' if num else f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class=meta>{len(frame) - MAX_ROWS} more rows not shown</p>" if len(frame) > MAX_ROWS else ""
    # Long cells wrap (overflow-wrap) instead of pushing the page sideways: read on a laptop, not scrolled.
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def render_html(report: Report) -> str:
    cards = "".join(f"<div class=card><b>{html.escape(t)}</b>{html.escape(h)}</div>" for t, h in report.headlines)
    body = []
    for sec in report.sections:
        parts = [f'<section id="{sec.key}"><h2>{html.escape(sec.title)}</h2><p>{html.escape(sec.intro)}</p>']
        for caption, png in sec.charts:
            data = base64.b64encode(png).decode()
            parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        for title, frame in sec.tables:
            parts.append(f"<h3>{html.escape(title)}</h3>{_html_table(frame)}")
        parts.append("</section>")
        body.append("".join(parts))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>repoaudit report</title><style>{CSS}</style></head><body>"
            f"<h1>Registry audit</h1><p class=meta>Generated {report.generated_at:%Y-%m-%d %H:%M %Z} by repoaudit "
            f"{__version__} from {html.escape(report.database)}; changes since {html.escape(report.since)}.</p>"
            f"<div class=cards>{cards}</div>{_html_actions(report.actions)}{''.join(body)}</body></html>\n")


def _html_actions(actions: list[str]) -> str:
    if not actions:
        return ""
    items = "".join(f"<li>{html.escape(a)}</li>" for a in actions)
    return f"<div class=actions id=actions><h2>Action items</h2><ol>{items}</ol></div>"


MD_HEADLINES = 8


def render_markdown(report: Report) -> str:
    """The report for a chat channel or an e-mail subject's body: at most 15 lines, the headline numbers
    and the action items; the HTML report holds the tables and charts."""
    lines = [f"**Registry audit** {report.generated_at:%Y-%m-%d} · changes since {report.since}"]
    shown = report.headlines[:MD_HEADLINES - (1 if len(report.headlines) > MD_HEADLINES else 0)]
    lines += [f"- **{t}**: {h}" for t, h in shown]
    if len(report.headlines) > len(shown):
        lines.append(f"- and {len(report.headlines) - len(shown)} more in the HTML report")
    if report.actions:
        lines.append("**Action items**")
        lines += [f"{i}. {a}" for i, a in enumerate(report.actions, 1)]
    return "\n".join(lines) + "\n"


def write_report(audit, output: str | Path, *, fmt: str = "html", since: str | None = None,
                 policies: list[str | Path] = ()) -> Path:
    report = build_report(audit, since=since, policies=policies)
    text = render_html(report) if fmt == "html" else render_markdown(report)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return output
