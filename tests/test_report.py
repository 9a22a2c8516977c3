"""The audit report: content from the named queries, self-contained, and rendered by a real browser."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

import repoaudit
from repoaudit.errors import ConfigError
from repoaudit.model.formatting import human_bytes
from repoaudit.retention.whatif import default_policies_dir
from repoaudit.analysis.report import build_report, parse_since, render_html, render_markdown, write_report

# Records failed loads and, after load, every image's size into the DOM that --dump-dom prints.
PROBE = """<script>window.__errors=[];
addEventListener('error',e=>__errors.push(String(e.message||(e.target&&(e.target.src||'').slice(0,60)))),true);
addEventListener('load',()=>document.body.setAttribute('data-probe',JSON.stringify({
  imgs:[...document.images].map(i=>[i.complete,i.naturalWidth,i.naturalHeight]),errors:__errors,
  page:[document.documentElement.scrollWidth,innerWidth],
  wide:[...document.querySelectorAll('table')].filter(t=>t.scrollWidth>t.parentElement.clientWidth+1)
        .map(t=>t.previousElementSibling&&t.previousElementSibling.textContent),
  actions:[...document.querySelectorAll('#actions li')].map(li=>li.textContent)})));</script>"""


POLICIES = sorted(default_policies_dir().iterdir())


@pytest.fixture(scope="module")
def report_html(demo_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    with repoaudit.open(demo_db, read_only=True) as audit:
        write_report(audit, out, policies=POLICIES)
    return out


def test_headlines_match_the_queries(demo_db, report_html):
    text = html.unescape(report_html.read_text())
    with repoaudit.open(demo_db, read_only=True) as audit:
        latest, previous = audit.query("snapshots").iloc[0], audit.query("snapshots").iloc[1]
        diff = audit.query("snapshot_diff")
    # Each headline figure with its change since the previous snapshot.
    assert (f"{latest['repository_count']:,} repositories "
            f"(+{latest['repository_count'] - previous['repository_count']:,}), {latest['tag_count']:,} tags "
            f"(+{latest['tag_count'] - previous['tag_count']:,}), {human_bytes(latest['unique_bytes'])} unique "
            f"(+{human_bytes(latest['unique_bytes'] - previous['unique_bytes'])})") in text
    moved = int((diff["change"] == "tag moved").sum())
    assert moved > 1 and f"{moved} tags moved" in text
    with repoaudit.open(demo_db, read_only=True) as audit:
        summary = audit.retention(*POLICIES, blobs=False).summary
        namespaces = audit.query("stale_namespaces")
        exposure = audit.query("risk_exposure", include_unscanned=False)
    best = summary.sort_values("reclaimable_bytes").iloc[-1]
    assert f"{best['policy']} frees {human_bytes(best['reclaimable_bytes'])}" in text
    assert f"{int(namespaces['stale_images'].sum()):,} stale images" in text
    assert f"{len(exposure)} running images scanned" in text
    for section in ("Inventory", "Stale images", "Retention what-if", "Vulnerability exposure", "What changed"):
        assert f"<h2>{section}</h2>" in text


def test_self_contained(report_html):
    text = report_html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "no network resources"
    assert "<link" not in text and "@import" not in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) >= 2


def test_renders_in_headless_chromium(report_html, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (Debian: apt-get install chromium)"
    probed = tmp_path / "probed.html"
    probed.write_text(report_html.read_text().replace("<head>", "<head>" + PROBE, 1))
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120)
    m = re.search(r'data-probe="([^"]*)"', result.stdout)
    assert m, result.stderr[-2000:]
    probe = json.loads(html.unescape(m.group(1)))
    assert probe["errors"] == []
    assert probe["imgs"] and all(done and w > 0 and h > 0 for done, w, h in probe["imgs"]), probe["imgs"]
    # Read on a laptop without sideways scrolling: the page and every table fit 1280 pixels.
    assert probe["page"][0] <= probe["page"][1], probe["page"]
    assert probe["wide"] == [], probe["wide"]
    assert probe["actions"] and any(a.startswith("Patch ") for a in probe["actions"]), probe["actions"]
    console = [l for l in result.stderr.splitlines() if ":CONSOLE" in l]
    assert console == []


def test_markdown_and_since(demo_db, tmp_path):
    with repoaudit.open(demo_db, read_only=True) as audit:
        md = render_markdown(build_report(audit, since="1", policies=POLICIES))
        # Short enough for a chat channel: the headline numbers and what to do.
        assert md.startswith("**Registry audit**") and len(md.splitlines()) <= 15, md
        assert "**Action items**" in md and "\n1. Patch " in md
        assert re.search(r"repositories \(\+\d+\), [\d,]+ tags \([+-][\d,]+\)", md), md
        week = build_report(audit, since="7d")
        since_first = build_report(audit, since="1")
        changes = {s.key: s.headline for s in since_first.sections}["changes"]
        assert changes != {s.key: s.headline for s in week.sections}["changes"]
        assert "<img" in render_html(week)


@pytest.mark.parametrize("value", ["yesterday", "7 days", "-1d"])
def test_bad_since(value):
    with pytest.raises(ConfigError, match="--since wants a snapshot id or a duration"):
        parse_since(value)


def test_since_a_snapshot_the_database_lacks(demo_db, tmp_path):
    """Compared with nothing, every repository would be 'added': an unknown id is an error, and no file."""
    out = tmp_path / "r.html"
    with repoaudit.open(demo_db, read_only=True) as audit:
        with pytest.raises(ConfigError, match=r"--since 99: no such snapshot \(this database holds snapshots 1\.\.3"):
            write_report(audit, out, since="99")
    assert not out.exists()


def test_demo_snapshots_last_as_long_as_they_took(demo_db):
    """The demo dates its epochs in the past; their durations are still the real ones, not weeks."""
    with repoaudit.open(demo_db, read_only=True) as audit:
        seconds = audit.query("snapshots")["seconds"]
    assert len(seconds) == 3 and (seconds >= 0).all() and (seconds < 600).all(), list(seconds)
