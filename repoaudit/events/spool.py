"""The receiver's spool: JSON-lines files, each line fsynced before the event is acknowledged.

Files are written as ``events-<UTC time>-<pid>-<n>.jsonl.part`` and renamed to ``.jsonl``
when they are closed (rotation by size or age, or shutdown); ``repoaudit ingest events``
reads only closed files from a directory, so it never races the writer. A receiver killed
mid-file leaves its ``.part`` behind: the next receiver on the same directory closes it
(renames it) at start, and a torn last line (a write cut short) is dropped then, because
it was never acknowledged.

One line per event::

    {"v": 1, "origin": "distribution", "received_at": "2026-12-01T03:00:00.123456Z", "body": {...}}

``body`` is the event exactly as the registry sent it (a Harbor webhook whole), so nothing is
lost to an interpretation made at receive time; ingest interprets it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

__all__ = ["PART_SUFFIX", "SPOOL_SUFFIX", "Spool", "spool_lines"]

SPOOL_SUFFIX = ".jsonl"
PART_SUFFIX = ".jsonl.part"


def spool_lines(origin: str, bodies: Iterable[Any], received_at: datetime | None = None) -> bytes:
    """The spool lines for ``bodies`` received together, as bytes ready to append."""
    stamp = (received_at or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return b"".join(json.dumps({"v": 1, "origin": origin, "received_at": stamp, "body": body},
                               separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for body in bodies)


class Spool:
    """Appends to the current spool file; thread-safe; :meth:`append` returns after fsync.

    ``max_bytes`` and ``max_age`` (seconds) bound a file: the write that would cross
    ``max_bytes`` goes to a new file, and :meth:`rotate_if_old` (called by the receiver's
    timer as well as on every write) closes a file older than ``max_age``.
    """

    def __init__(self, directory: str | Path, *, max_bytes: int = 64 << 20, max_age: float = 3600.0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._seq = 0
        self.recovered = self._close_leftovers()

    # -- files ---------------------------------------------------------------------------

    def _close_leftovers(self) -> list[Path]:
        """Close ``.part`` files a killed receiver left: drop a torn last line, then rename."""
        closed = []
        for part in sorted(self.directory.glob("*" + PART_SUFFIX)):
            data = part.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(part, "r+b") as handle:
                    handle.truncate(data.rfind(b"\n") + 1)
                    os.fsync(handle.fileno())
            target = part.with_name(part.name[:-len(".part")])
            os.replace(part, target)
            closed.append(target)
        if closed:
            self._sync_directory()
        return closed

    def _sync_directory(self) -> None:
        # A rename or a new file is durable only once the directory entry is.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open(self) -> None:
        self._seq += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self._path = self.directory / f"events-{stamp}-{os.getpid()}-{self._seq:06d}{PART_SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._size = 0
        self._opened = time.monotonic()
        self._sync_directory()

    def _close(self) -> Path | None:
        if self._fd is None:
            return None
        os.fsync(self._fd)
        os.close(self._fd)
        path = self._path
        target = path.with_name(path.name[:-len(".part")])
        os.replace(path, target)
        self._sync_directory()
        self._fd, self._path = None, None
        return target

    # -- API -----------------------------------------------------------------------------

    def append(self, data: bytes) -> None:
        """Write ``data`` (whole lines) and fsync it: when this returns, it survives a crash."""
        if not data:
            return
        with self._lock:
            if self._fd is not None and (self._size + len(data) > self.max_bytes
                                         or time.monotonic() - self._opened >= self.max_age) and self._size:
                self._close()
            if self._fd is None:
                self._open()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
            self._size += len(data)

    def rotate_if_old(self) -> Path | None:
        """Close the current file if it is older than ``max_age``; the closed file's path, or None."""
        with self._lock:
            if self._fd is not None and time.monotonic() - self._opened >= self.max_age:
                return self._close()
        return None

    def close(self) -> Path | None:
        """Close (and rename) the current file; the spool can be appended to again afterwards."""
        with self._lock:
            return self._close()

    @property
    def current(self) -> Path | None:
        return self._path
