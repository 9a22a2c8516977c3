"""The report's pull-history section (registry events, docs/events.md): shown once events are ingested."""

from __future__ import annotations

from repoaudit.model.formatting import human_bytes

__all__ = ["events_section"]

WINDOW_DAYS = 30


def events_section(audit):
    """``None`` when no registry event is stored (the section would only say so)."""
    from repoaudit.analysis.report import (
        Section,  # report.py lists this section: imported when it runs
    )

    coverage = audit.sql("SELECT * FROM event_coverage ORDER BY registry")
    if coverage.empty:
        return None
    images = audit.query("unpulled_images", days=WINDOW_DAYS)
    by_class = audit.sql("SELECT client_class, sum(pulls)::BIGINT AS pulls, sum(checks)::BIGINT AS checks "
                         "FROM pulls_by_day WHERE day >= current_date - $days GROUP BY 1 ORDER BY 2 DESC",
                         {"days": WINDOW_DAYS})
    sec = Section("events", "Pull history",
                       "From the registries' own notifications, webhooks and logs: who pulls what, and which images "
                       f"no container runtime pulled in the last {WINDOW_DAYS} days (scanners, replication, CI "
                       "tools and people do not count). Only where events cover the window is \"not pulled\" "
                       "known; each registry's events are complete from the time given.")
    unpulled = images[images["known"] & ~images["pulled_recently"]]
    sec.headline = (f"{len(unpulled)} images not pulled by a runtime in {WINDOW_DAYS} days "
                    f"({human_bytes(unpulled['size'].sum())}); events complete since "
                    + ", ".join(f"{r.registry}: {r.events_since:%Y-%m-%d}" for r in coverage.itertuples()))
    sec.tables.append(("Event coverage per registry", coverage))
    sec.tables.append((f"Manifest pulls in the last {WINDOW_DAYS} days by client class", by_class))
    sec.tables.append((f"Images not pulled by a runtime in {WINDOW_DAYS} days", unpulled[[
        "registry", "repository", "tags", "size", "pushed_at", "pushed_source", "last_pulled_at"]]))
    return sec
