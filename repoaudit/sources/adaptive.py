"""How many requests a registry client keeps in flight: adaptive, between 1 and ``--max-concurrency``.

A far registry hides its round trip only behind many requests in flight (at 54 ms, 16 in
flight cap any client at 296 requests/s); a near or busy one answers no faster for more,
only later, and an overloaded one refuses (429, 503). So the limit starts at
``--concurrency`` and moves with what the registry's answers say, by these rules:

- **Windows.** Answers are judged a window at a time: as many answers as the limit, all
  sent under the current limit (about one round trip's worth). A window's latency is its
  median, from the request taking its slot to its body read.
- **Grow while latency stays flat.** A window whose median is within ``FLAT`` of the lowest
  window median seen (the latency with nothing queued), in which every slot was in use and
  nothing was refused, raises the limit: by half until the first back-off (a quick climb to a
  far registry's bound), by one after it (probing near a limit already met once). Never above
  the maximum.
- **Back off on rising latency.** A window whose median is ``RISE`` times the lowest or more
  means requests queue somewhere (the registry's CPU, a proxy): the limit drops to
  ``LATENCY_CUT`` of itself, but not below the starting concurrency, which is what the user
  asked for and what a registry on loopback (whose latency always grows with load) runs at.
- **Back off on refusals.** A 429 or 503 halves the limit, down to 1; answers to requests sent
  before that cut do not cut again (one cut per overload, not one per refused request).
- **Honour ``Retry-After``.** A refusal that names a wait holds back every new request until
  it has passed (the refused request itself waits in the retry policy).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

from repoaudit.model.retry import parse_retry_after

FLAT = 1.25
RISE = 1.6
LATENCY_CUT = 0.75
REFUSAL_CUT = 0.5
MIN_WINDOW = 8
# A Retry-After longer than this holds new requests only this long: the retry policy caps its own waits too.
MAX_HOLD = 120.0


class AdaptiveLimit:
    """A semaphore whose size follows the registry's answers (the rules are in the module docstring).

    ``acquire`` returns a ticket to hand back to ``release`` with what the answer was.
    """

    def __init__(self, start: int, maximum: int | None = None, *, clock: Callable[[], float] = time.monotonic):
        if start < 1:
            raise ValueError(f"concurrency must be at least 1, got {start}")
        self.start = start
        self.maximum = max(start, maximum or start)
        self.limit = start
        self.in_flight = 0
        self._clock = clock
        self._waiters: deque[asyncio.Future] = deque()
        self._hold_until = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._generation = 0  # bumped on every change of the limit: a window holds one generation's answers
        self._window: list[float] = []
        self._saturated = False  # every slot was in use at some point of this window
        self._floor: float | None = None  # the lowest window median: the latency with nothing queued
        self._backed_off = False
        # What happened, for the run's log, tests and benchmarks.
        self.peak = start
        self.low = start
        self.refusals = 0
        self.cuts = 0
        self.changes: list[tuple[str, int]] = []  # (why, new limit), the first 1,000
        # Seconds requests held their slots, summed, and how many: over a stretch of wall time, held / wall
        # is the requests kept in flight on average (Little's law), held / answers the latency they saw.
        self.held = 0.0
        self.answers = 0

    # -- slots -----------------------------------------------------------------------------------
    async def acquire(self) -> tuple[float, int]:
        if self.in_flight < self.limit and not self._waiters and self._clock() >= self._hold_until:
            self.in_flight += 1
        else:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            self._wake()
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():  # given a slot as it was cancelled: pass it on
                    self.in_flight -= 1
                    self._wake()
                else:
                    try:
                        self._waiters.remove(future)
                    except ValueError:
                        pass
                raise
        if self.in_flight >= self.limit:
            self._saturated = True
        return self._clock(), self._generation

    def release(self, ticket: tuple[float, int], *, status: int | None = None, retry_after: str | None = None
                ) -> None:
        """Give the slot back; ``status`` is the answer's (None when there was none: a transport error)."""
        started, generation = ticket
        self.in_flight -= 1
        now = self._clock()
        self.held += now - started
        self.answers += 1
        if status in (429, 503):
            self._refused(now, generation, retry_after)
        elif status is not None and generation == self._generation:
            self._window.append(now - started)
            if len(self._window) >= max(MIN_WINDOW, self.limit):
                self._judge()
        self._wake()

    def _wake(self) -> None:
        now = self._clock()
        if now < self._hold_until:
            if self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._hold_until - now, self._held)
            return
        waiters = self._waiters
        while waiters and self.in_flight < self.limit:
            future = waiters.popleft()
            if future.done():  # cancelled while waiting
                continue
            self.in_flight += 1
            future.set_result(None)

    def _held(self) -> None:
        self._timer = None
        self._wake()

    # -- rules -----------------------------------------------------------------------------------
    def _refused(self, now: float, generation: int, retry_after: str | None) -> None:
        self.refusals += 1
        hold = parse_retry_after(retry_after)
        if hold:
            self._hold_until = max(self._hold_until, now + min(hold, MAX_HOLD))
        if generation != self._generation:
            return  # sent before the last cut: that overload has been answered already
        self._backed_off = True
        self._set(max(1, int(self.limit * REFUSAL_CUT)), "refused")

    def _judge(self) -> None:
        window = sorted(self._window)
        median = window[len(window) // 2]
        saturated = self._saturated
        self._window = []
        self._saturated = self.in_flight >= self.limit
        floor = self._floor = median if self._floor is None else min(self._floor, median)
        if median >= floor * RISE and self.limit > self.start:
            self._backed_off = True
            self._set(max(self.start, int(self.limit * LATENCY_CUT)), "latency rose")
        elif median <= floor * FLAT and saturated and self.limit < self.maximum:
            step = 1 if self._backed_off else max(1, self.limit // 2)
            self._set(min(self.maximum, self.limit + step), "latency flat")

    def _set(self, limit: int, why: str) -> None:
        if limit == self.limit:
            return
        if limit < self.limit:
            self.cuts += 1
        self.limit = limit
        self.peak = max(self.peak, limit)
        self.low = min(self.low, limit)
        self._generation += 1
        self._window = []
        self._saturated = False
        if len(self.changes) < 1000:
            self.changes.append((why, limit))
