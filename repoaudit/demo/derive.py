"""Deterministic stand-ins for the demo's scans and pods: random streams, hashes, UUIDs, times.

Everything is derived from a key, so the same estate always gives the same files.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timezone


def rng(*key: object) -> random.Random:
    # A string seed is hashed with sha512, so streams are stable across runs and processes.
    return random.Random("demo-scans/" + "/".join(map(str, key)))


def hexdigest(*key: object) -> str:
    return hashlib.sha256("demo-scans/".encode() + "/".join(map(str, key)).encode()).hexdigest()


def uuid(*key: object) -> str:
    h = hexdigest("uuid", *key)
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def rfc3339(moment: datetime, *, nanos: int | None = None) -> str:
    moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if nanos is None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"
