"""Registry events into ``registry_events``: spool files of ``repoaudit events serve`` and
Distribution's JSON log lines, in one transaction.

* every file is read and validated before anything is written: a bad spool line fails the
  ingest naming ``FILE:LINE`` and the database is unchanged;
* an event is stored once by its id (Distribution keeps an event's id when it retries, so a
  receiver that spooled an event twice, or a spool ingested twice, adds nothing);
* spool files are moved into ``ingested/`` beside them only after the transaction commits: a
  crash before that leaves them in place, and the next ingest skips what is already stored;
* pulls are classified (:mod:`repoaudit.events.classify`) as they are stored;
  :func:`reclassify` applies new rules to everything stored.

Log files are recognised by their lines (``{"msg": ..., "http.request.method": ...}``): lines
that are not JSON (Distribution's combined-format access lines share the stream) or not a
``response completed`` line for a manifest are skipped, and log files are never moved.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import duckdb
import pyarrow as pa

from repoaudit.errors import EventError, IngestError, StoreError, first_line
from repoaudit.events.classify import DEFAULT_RULES, Classifier
from repoaudit.events.envelope import Event, log_line_event, spool_record_events
from repoaudit.events.spool import PART_SUFFIX, SPOOL_SUFFIX
from repoaudit.model.timestamps import utcnow
from repoaudit.store.sql import statements

__all__ = ["EventIngestResult", "ingest_events", "reclassify"]

SQL = statements(__package__, "events.sql")
INGESTED_DIR = "ingested"
MAX_LINE = 1 << 20

_COLUMNS: dict[str, pa.DataType] = {
    "event_id": pa.string(), "occurred_at": pa.timestamp("us"), "action": pa.string(), "kind": pa.string(), "method": pa.string(),
    "registry": pa.string(), "repository": pa.string(), "digest": pa.string(), "tag": pa.string(),
    "media_type": pa.string(), "size": pa.int64(), "actor": pa.string(), "user_agent": pa.string(),
    "source_addr": pa.string(), "request_id": pa.string(), "origin": pa.string(), "client_class": pa.string(),
    "client_rule": pa.string(), "source_file": pa.string(), "ingested_at": pa.timestamp("us"),
}


@dataclass
class EventIngestResult:
    """What one event ingest did."""

    files: list[str]
    read: int = 0
    new: int = 0
    moved: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    pulls_by_class: dict[str, int] = field(default_factory=dict)
    reclassified: int | None = None

    @property
    def duplicates(self) -> int:
        return self.read - self.new

    def summary(self) -> str:
        actions = ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items())) or "none"
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.pulls_by_class.items())) or "none"
        text = (f"events: {len(self.files)} file(s), {self.read} event(s) read, {self.new} new, "
                f"{self.duplicates} already stored; new by action: {actions}; new manifest pulls by client: "
                f"{classes}")
        if self.moved:
            text += f"; {len(self.moved)} spool file(s) moved to {INGESTED_DIR}/"
        if self.reclassified is not None:
            text += f"; {self.reclassified} stored event(s) reclassified"
        if self.skipped_lines:
            text += f"; {self.skipped_lines} log line(s) that record no manifest request skipped"
        return text


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            # Closed spool files only: a .part is still being written, ingested/ was done before.
            found.extend(sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SPOOL_SUFFIX)))
        elif path.name.endswith(PART_SUFFIX):
            raise IngestError(f"{path}: a spool file still being written (the receiver renames it to "
                              f"{SPOOL_SUFFIX} when it closes it)")
        elif path.is_file():
            found.append(path)
        else:
            raise IngestError(f"{path}: no such file or directory")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _read_file(path: Path, registry: str | None) -> tuple[str, list[Event], int]:
    """``(kind, events, skipped lines)``: kind is ``spool`` or ``log``, decided by the first JSON line."""
    kind: str | None = None
    events: list[Event] = []
    skipped = 0
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            if len(raw) > MAX_LINE:
                raise IngestError(f"{path}:{number}: line longer than {MAX_LINE} bytes")
            line = raw.strip()
            if not line:
                continue
            try:
                doc = json.loads(line)
            except ValueError as exc:
                if kind == "spool" or (kind is None and path.name.endswith(SPOOL_SUFFIX)):
                    raise IngestError(f"{path}:{number}: not JSON ({first_line(exc)})") from None
                skipped += 1  # a registry log interleaves text lines (combined-format access lines)
                continue
            if kind is None:
                if isinstance(doc, dict) and "v" in doc and "origin" in doc:
                    kind = "spool"
                elif isinstance(doc, dict) and "msg" in doc:
                    kind = "log"
                else:
                    raise IngestError(f"{path}:{number}: neither a repoaudit spool record nor a Distribution "
                                      "JSON log line")
            try:
                if kind == "spool":
                    events.extend(spool_record_events(doc))
                else:
                    event = log_line_event(doc, registry) if isinstance(doc, dict) else None
                    if event is None:
                        skipped += 1
                    else:
                        events.append(event)
            except EventError as exc:
                raise IngestError(f"{path}:{number}: {exc}") from None
    if kind is None:
        raise IngestError(f"{path}: no JSON line (empty, or a registry log written with log.formatter text; "
                          "ingest needs log.formatter: json)")
    return kind, events, skipped


def ingest_events(con: duckdb.DuckDBPyConnection, paths: Iterable[str | Path] | str | Path, *,
                  registry: str | None = None, classifier: Classifier | None = None) -> EventIngestResult:
    """Load spool files and JSON log files (files, or directories of closed spool files).

    ``registry`` names the registry every event of these files belongs to, as repoaudit
    collected it (default: the host the client addressed, from each event's URL).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    # An empty spool directory is a quiet registry, not an error: a scheduled ingest runs anyway.
    files = _expand(paths)
    classifier = classifier or Classifier(DEFAULT_RULES)
    result = EventIngestResult(files=[str(p) for p in files])
    rows: list[dict] = []
    if not files:
        return result
    spools: list[Path] = []
    now = utcnow()
    for path in files:
        kind, events, skipped = _read_file(path, registry)
        result.skipped_lines += skipped
        if kind == "spool":
            spools.append(path)
        for event in events:
            row = event.row()
            if registry:
                row["registry"] = registry
            row["client_class"], row["client_rule"] = classifier.classify(event.user_agent, event.actor,
                                                                          event.source_addr)
            row["source_file"] = path.name
            row["ingested_at"] = now
            rows.append(row)
    result.read = len({row["event_id"] for row in rows})
    batch = pa.Table.from_arrays([pa.array([r[c] for r in rows], type=t) for c, t in _COLUMNS.items()],
                                 names=list(_COLUMNS))
    con.execute("BEGIN TRANSACTION")
    try:
        before = con.execute(SQL["count"]).fetchall()[0][0]
        con.register("_ev_batch", batch)
        try:
            con.execute(SQL["insert_new"]).fetchall()
        finally:
            con.unregister("_ev_batch")
        result.new = con.execute(SQL["count"]).fetchall()[0][0] - before
        counts = con.execute(SQL["new_counts"], {"now": now}).fetchall()
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise StoreError(f"ingest events: {first_line(exc)}") from None
    except BaseException:
        con.execute("ROLLBACK")
        raise
    actions: Counter = Counter()
    classes: Counter = Counter()
    for action, kind, client_class, n in counts:
        actions[action] += n
        if action == "pull" and kind == "manifest":
            classes[client_class] += n
    result.actions, result.pulls_by_class = dict(actions), dict(classes)
    # Only now: a crash before this line leaves the files to be ingested again, which adds nothing.
    for path in spools:
        target_dir = path.parent / INGESTED_DIR
        target_dir.mkdir(exist_ok=True)
        os.replace(path, target_dir / path.name)
        result.moved.append(str(target_dir / path.name))
    return result


def reclassify(con: duckdb.DuckDBPyConnection, classifier: Classifier) -> int:
    """Apply ``classifier`` to every stored event; the number of events whose class or rule changed."""
    clients = con.execute(SQL["clients"]).fetchall()
    classes = [(ua, actor, addr, *classifier.classify(ua, actor, addr)) for ua, actor, addr in clients]
    frame = pa.Table.from_arrays([pa.array([c[i] for c in classes], type=pa.string()) for i in range(5)],
                                 names=["user_agent", "actor", "source_addr", "client_class", "client_rule"])
    con.register("_ev_classes", frame)
    try:
        changed = con.execute(SQL["reclassify"]).fetchone()
    finally:
        con.unregister("_ev_classes")
    return int(changed[0]) if changed else 0
