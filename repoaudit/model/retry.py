"""Retry policy as data: which answers are retried, and how long to wait between tries.

The policy is injected into the client (tests pass :data:`NO_BACKOFF`), never read
from globals, so a run's behaviour is fixed when it starts. The budget is per
request; the run-wide circuit breaker (``Limits.breaker`` in :mod:`repoaudit.sources.registry`)
stops a run once that many requests in a row have used up their tries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

# The codes go-containerregistry retries: timeouts, rate limits and gateway trouble.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; ``Retry-After`` wins when the server sends one."""

    # Eight tries: at a 13% fault rate (10% 5xx/429, 1% resets, 2% corrupted bodies) one request in
    # 12 million exhausts them, against one in 27,000 with five; waits add up to about a minute.
    attempts: int = 8
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 120.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def delay(self, attempt: int, retry_after: str | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            return min(hinted, self.max_retry_after)
        base = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        spread = base * self.jitter
        return max(0.0, base - spread + (rng or random).random() * 2 * spread) if spread else base


NO_BACKOFF = RetryPolicy(backoff=0.0, max_backoff=0.0, jitter=0.0, max_retry_after=0.0)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
