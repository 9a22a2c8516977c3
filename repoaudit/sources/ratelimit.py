"""A registry's rate-limit budget, as its response headers tell it.

Registries say it in several dialects; all are read, the most restrictive remaining wins:

* Docker Hub: ``ratelimit-limit: 100;w=21600`` and ``ratelimit-remaining: 76;w=21600`` (pulls per
  window of ``w`` seconds), with ``docker-ratelimit-source``. Only manifest GETs are pulls: a HEAD is
  free, which is why the collector resolves tags with HEAD once it knows it spends pulls.
* The IETF draft's separate fields, ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset``
  (drafts up to -06: the same names as Docker Hub's; HTTP header names ignore case).
* ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` (GitHub, GitLab, Quay, most API gateways).
* The IETF draft's combined field: ``RateLimit: limit=100, remaining=50, reset=30`` (drafts -05/-06)
  or ``RateLimit: "default";r=50;t=30`` with ``RateLimit-Policy: "default";q=100;w=60`` (-07 on).

A value is a list (``10, 10;w=1, 1000;w=3600`` names several windows): the smallest number counts.
Anything unreadable is ignored, as if the header were not sent: a budget is advice, never a reason
to fail a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

# Recorded in snapshots.rate_limit as sent (lower-cased names), so a run's last word is kept.
RECORDED = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-ratelimit-limit",
            "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit", "ratelimit-policy",
            "docker-ratelimit-source")

_LEADING_INT = re.compile(r"\s*\"?(\d{1,12})\b")
_PARAM = re.compile(r"(?:^|[;,\s])(limit|remaining|r|q)\s*=\s*(\d{1,12})\b", re.IGNORECASE)


@dataclass(frozen=True)
class RateLimit:
    """What one response said about the budget: ``remaining`` requests (or pulls) of ``limit``."""

    remaining: int | None
    limit: int | None
    pulls_only: bool  # Docker Hub's kind: only manifest GETs spend it

    def spends(self, method: str, what: str) -> bool:
        """Whether a request of this kind counts against the budget."""
        return not self.pulls_only or (method == "GET" and what == "manifest")


def _smallest(value: str | None) -> int | None:
    """The smallest leading integer of a list value: ``"76;w=21600"`` → 76, ``"10, 5;w=1"`` → 5."""
    if not value:
        return None
    numbers = []
    for item in value.split(","):
        match = _LEADING_INT.match(item)
        if match:
            numbers.append(int(match.group(1)))
    return min(numbers) if numbers else None


def _param(value: str | None, *names: str) -> int | None:
    if not value:
        return None
    found = [int(v) for k, v in _PARAM.findall(value) if k.lower() in names]
    return min(found) if found else None


def _least(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def read_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """The budget ``headers`` announce, or None when they announce none (``headers`` match names
    without regard to case, as ``httpx.Headers`` does)."""
    combined = headers.get("ratelimit")
    remaining = _least(_smallest(headers.get("ratelimit-remaining")),
                       _smallest(headers.get("x-ratelimit-remaining")),
                       _param(combined, "remaining", "r"))
    if remaining is None:
        return None
    limit = _least(_smallest(headers.get("ratelimit-limit")), _smallest(headers.get("x-ratelimit-limit")),
                   _param(combined, "limit"), _param(headers.get("ratelimit-policy"), "q"))
    # Docker Hub's windows are written as ";w=" parameters of the unprefixed fields, and it names its source.
    pulls_only = ("docker-ratelimit-source" in headers
                  or ";w=" in (headers.get("ratelimit-remaining") or "").replace(" ", ""))
    return RateLimit(remaining, limit, pulls_only)
