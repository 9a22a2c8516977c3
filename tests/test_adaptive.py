"""Adaptive concurrency: the limit's rules on a fake clock, and a collection against a registry that refuses
above a number of requests in flight.

The registry is a threaded fake (a real docker-registry never answers 429/503 on demand): each request
takes a while, and one arriving while more than ``CAPACITY`` are being served is refused with 503. The
collection starts below that, grows past it (latency stays flat), is refused, backs off, and still reads
every tag. Nothing here is timed: the assertions are about what the limit did and what was collected.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import httpx
import pytest
from fakeregistry import FakeRegistry, FakeRegistryServer, error

import repoaudit
from repoaudit.errors import ConfigError
from repoaudit.model.options import ClientOptions
from repoaudit.model.retry import RetryPolicy
from repoaudit.sources.adaptive import AdaptiveLimit


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def window(limit: AdaptiveLimit, clock: Clock, latency: float, status: int = 200,
                 retry_after: str | None = None) -> None:
    """Every slot taken at once, answered ``latency`` later with ``status``: one full window."""
    tickets = [await limit.acquire() for _ in range(limit.limit)]
    clock.now += latency
    for ticket in tickets:
        limit.release(ticket, status=status, retry_after=retry_after)


def test_flat_latency_grows_by_half_then_a_rise_cuts_back_but_not_below_the_start():
    async def run():
        clock = Clock()
        limit = AdaptiveLimit(8, 32, clock=clock)
        grown = []
        for _ in range(5):
            await window(limit, clock, 0.050)
            grown.append(limit.limit)
        assert grown == [12, 18, 27, 32, 32]  # by half while flat, capped at the maximum
        await window(limit, clock, 0.100)  # twice the latency with nothing queued: queueing somewhere
        assert limit.limit == 24 and limit.cuts == 1
        await window(limit, clock, 0.050)
        assert limit.limit == 25  # after a back-off, growth goes one at a time
        for _ in range(6):
            await window(limit, clock, 0.200)
        assert limit.limit == 8  # the starting concurrency is the floor for latency
        assert limit.peak == 32 and limit.low == 8
    asyncio.run(run())


def test_latency_between_flat_and_rising_holds_the_limit():
    async def run():
        clock = Clock()
        limit = AdaptiveLimit(8, 64, clock=clock)
        await window(limit, clock, 0.050)
        assert limit.limit == 12
        for _ in range(3):
            await window(limit, clock, 0.070)  # 1.4x: neither flat nor risen
        assert limit.limit == 12
    asyncio.run(run())


def test_no_growth_when_the_slots_were_not_all_used():
    async def run():
        clock = Clock()
        limit = AdaptiveLimit(8, 64, clock=clock)
        for _ in range(3):  # sixteen answers, never more than four in flight: more slots would sit idle
            tickets = [await limit.acquire() for _ in range(4)]
            clock.now += 0.05
            for ticket in tickets:
                limit.release(ticket, status=200)
        assert limit.limit == 8 and not limit.changes
    asyncio.run(run())


def test_refusals_halve_once_per_overload_down_to_one():
    async def run():
        clock = Clock()
        limit = AdaptiveLimit(16, 64, clock=clock)
        await window(limit, clock, 0.05, status=429)  # sixteen refusals of one overload: one cut
        assert limit.limit == 8 and limit.refusals == 16 and limit.cuts == 1
        for expected in (4, 2, 1, 1):
            await window(limit, clock, 0.05, status=503)
            assert limit.limit == expected
    asyncio.run(run())


def test_retry_after_holds_new_requests_until_it_has_passed():
    async def run():
        limit = AdaptiveLimit(4, 4)
        ticket = await limit.acquire()
        limit.release(ticket, status=429, retry_after="1")
        waiting = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0.2)
        assert not waiting.done() and limit.in_flight == 0  # held, though slots are free
        await asyncio.wait_for(waiting, 30)
        assert limit.in_flight == 1
    asyncio.run(run())


def test_a_waiter_cancelled_gives_no_slot_away():
    async def run():
        limit = AdaptiveLimit(1, 1)
        first = await limit.acquire()
        waiting = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        limit.release(first, status=200)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert limit.in_flight == 0
        await asyncio.wait_for(limit.acquire(), 5)
        assert limit.in_flight == 1
    asyncio.run(run())


def test_max_concurrency_is_never_below_concurrency_and_is_checked():
    assert ClientOptions(concurrency=16).max_concurrency_or_default == 64
    assert ClientOptions(concurrency=100).max_concurrency_or_default == 100
    assert ClientOptions(concurrency=4, max_concurrency=4).max_concurrency_or_default == 4
    with pytest.raises(ConfigError):
        ClientOptions(max_concurrency=0)


CAPACITY = 6


class CrowdedRegistry(FakeRegistry):
    """Serves each request in ``delay`` seconds, and refuses (503) one that arrives while more than
    ``capacity`` are being served."""

    def __init__(self, capacity: int, delay: float):
        super().__init__()
        self.capacity = capacity
        self.delay = delay
        self.lock = threading.Lock()
        self.serving = 0
        self.most = 0
        self.refused = 0
        self.answered = 0
        self.refused_paths: list[str] = []

    def refused_of(self, kind: str) -> int:
        return sum(f"/{kind}/" in path for path in self.refused_paths)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.serving += 1
            self.most = max(self.most, self.serving)
            refused = self.serving > self.capacity
            if refused:
                self.serving -= 1
                self.refused += 1
                self.refused_paths.append(request.url.path)
        if refused:
            return error(503, "UNAVAILABLE", "too many requests in flight")
        try:
            time.sleep(self.delay)
            return super().handle(request)
        finally:
            with self.lock:
                self.serving -= 1
                self.answered += 1


def test_collection_grows_into_the_refusals_backs_off_and_reads_every_tag(tmp_path):
    fake = CrowdedRegistry(CAPACITY, delay=0.02)
    for r in range(3):
        for t in range(40):
            fake.add_image(f"team/svc{r}", f"v{t}", f"{r}-{t}".encode())
    retry = RetryPolicy(backoff=0.01, max_backoff=0.05, jitter=0.0)
    # A handler of its own: other tests (the CLI's) may have turned the logger's propagation off.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("repoaudit.sources.registry")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    with FakeRegistryServer(fake) as server, repoaudit.open(tmp_path / "a.duckdb") as audit:
        result = audit.collect(server.url, concurrency=2, max_concurrency=32, retry=retry, progress=False,
                               posture=False, use_credential_store=False)
    logger.removeHandler(handler)
    logger.setLevel(level)
    assert (result.status, result.tags, result.errors) == ("complete", 120, 0)
    assert result.requests["GET manifest"] == 120 + fake.refused_of("manifests")
    # It grew from 2 past what the registry serves (flat latency), was refused, and backed off.
    assert fake.most > CAPACITY and fake.refused > 0
    summary = [r.getMessage() for r in records if "requests in flight started at 2" in r.getMessage()]
    assert len(summary) == 1, [r.getMessage() for r in records]
    words = summary[0].replace(",", "").replace("(", "").split()
    low, peak = int(words[words.index("ranged") + 1]), int(words[words.index("ranged") + 3])
    cuts = int(words[words.index("back-offs") - 1])
    assert peak > CAPACITY and cuts >= 1 and low < peak
    # Refusals are the exception, not the rule: the limit stays near what the registry serves.
    assert fake.refused < fake.answered / 2
