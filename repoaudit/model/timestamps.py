"""RFC 3339 timestamps as registries and scanners write them."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

_FRACTION_RE = re.compile(r"^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE)


def parse_timestamp(value: Any) -> datetime | None:
    """Parse an RFC 3339 timestamp into an aware UTC datetime; ``""``/None/garbage → None.

    Scanners emit nanoseconds (``.000000005Z``) and odd fraction lengths (``.13Z``),
    which ``datetime.fromisoformat`` only accepts from Python 3.11 on.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    match = _FRACTION_RE.match(value.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    text = base
    if fraction:
        text += "." + fraction[:6].ljust(6, "0")
    if zone is None or zone.upper() == "Z":
        text += "+00:00"
    else:
        text += zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc)


def utc_naive(value: Any) -> datetime | None:
    """:func:`parse_timestamp` as the naive UTC datetime the database stores."""
    return naive_utc(parse_timestamp(value))


def naive_utc(value: datetime | None) -> datetime | None:
    """A datetime as the database stores it: naive, in UTC (an aware one is converted, a naive one kept)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def utcnow() -> datetime:
    """Now, as the database stores times: naive UTC."""
    return naive_utc(datetime.now(timezone.utc))
