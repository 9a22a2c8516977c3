"""Push and pull history from the registry itself: notification envelopes, Harbor webhooks and
access-log lines (envelope.py), who pulled (classify.py), the receiver's fsynced spool (spool.py)
and the receiver, an ASGI app on uvicorn (server.py). Loading the spool into the database is
:mod:`repoaudit.ingest.events`."""

from repoaudit.events.classify import (
    CLASSES,
    DEFAULT_RULES,
    Classifier,
    ClientRule,
    load_rules,
)
from repoaudit.events.envelope import (
    DISTRIBUTION_MEDIA_TYPE,
    EVENT_FIELDS,
    Event,
    envelope_events,
    log_line_event,
    spool_record_events,
)
from repoaudit.events.spool import PART_SUFFIX, SPOOL_SUFFIX, Spool, spool_lines

__all__ = ["CLASSES", "DEFAULT_RULES", "DISTRIBUTION_MEDIA_TYPE", "EVENT_FIELDS", "PART_SUFFIX", "SPOOL_SUFFIX",
           "Classifier", "ClientRule", "Event", "Spool", "envelope_events", "load_rules", "log_line_event",
           "spool_lines", "spool_record_events"]
