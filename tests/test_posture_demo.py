"""The demo shows posture, a moved release tag and remediation with real rows (issue 20's "done when")."""

from __future__ import annotations

import repoaudit
from repoaudit.analysis.report import build_report, render_html
from repoaudit.demo.estate import EPOCHS
from repoaudit.demo.posture import REPOSITORY, posture_lines


def test_demo_posture_rows_come_from_the_layout(demo_db):
    with repoaudit.open(demo_db, read_only=True) as audit:
        rows = audit.sql("SELECT * FROM registry_posture ORDER BY snapshot_id")
        snapshots = audit.sql("SELECT snapshot_id, started_at FROM snapshots ORDER BY snapshot_id")
        latest = audit.posture()
    # One probe per snapshot, dated like its snapshot, of a layout: no HTTP, no TLS.
    assert rows["snapshot_id"].tolist() == snapshots["snapshot_id"].tolist() and len(rows) == EPOCHS
    assert rows["probed_at"].tolist() == snapshots["started_at"].tolist()
    assert set(rows["auth_scheme"]) == {"filesystem"} and not rows["plain_http"].any()
    assert rows["tls_version"].isna().all() and rows["cert_trust"].isna().all()
    assert len(latest) == 1 and latest["changes"].iloc[0] == ""  # the same modes every epoch


def test_demo_release_tag_moved_away_and_back(demo_db):
    with repoaudit.open(demo_db, read_only=True) as audit:
        moves = audit.query("mutable_release_tags", include_floating=False)
        floating = audit.query("mutable_release_tags")
    assert moves["repository"].tolist() == [REPOSITORY, REPOSITORY] and moves["tag"].nunique() == 1
    away, back = moves.sort_values("moved_before").itertuples()
    assert (away.from_digest, away.to_digest) == (back.to_digest, back.from_digest)
    assert not moves["rollback"].any()  # same config: the demo's one rollback stays payments/ledger:stable
    assert set(floating.loc[floating["kind"] == "floating", "tag"]) >= {"latest", "stable"}


def test_demo_remediation_and_report_sections(demo_db):
    with repoaudit.open(demo_db, read_only=True) as audit:
        as_of = audit.sql("SELECT max(started_at) AS at FROM latest_snapshot")["at"].iloc[0]
        life = audit.query("vulnerability_lifecycle", as_of=as_of)
        breaches = audit.query("sla_breaches", as_of=as_of)
        lines = posture_lines(audit)
        text = render_html(build_report(audit))
    fixed = life[life["status"] == "fixed"]
    assert len(fixed) > 0 and (fixed["fixed_at"] > fixed["first_seen"]).all()
    assert (fixed["days_open"] >= 0).all() and len(breaches) > 0
    assert (breaches["days_since_fix"] > breaches["sla_days"]).all()
    for title in ("Registry posture", "Tags that moved", "Remediation"):
        assert f"<h2>{title}</h2>" in text
    section = text.split("<h2>Tags that moved</h2>", 1)[1].split("<h2>Remediation</h2>", 1)[0]
    assert f"<td>{REPOSITORY}</td>" in section
    assert any(line.startswith("release tags that moved: 2") for line in lines)
