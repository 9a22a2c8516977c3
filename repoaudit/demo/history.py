"""Each demo repository's history: when it pushed, what it tagged, what was deleted or moved.

A repository's full history is a list of :class:`Event` derived from the seed and
``as_of`` alone; :func:`replay` plays it up to a moment (an epoch's snapshot
time) to get what the registry held then.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from repoaudit.demo.images import (
    Artifact,
    Build,
    Context,
    build_artifact,
    signature_artifact,
)
from repoaudit.demo.tables import EPOCHS, PROFILES, REPO_SPECS, RepoSpec


@dataclass(frozen=True)
class Event:
    """At ``time``, point ``tags`` at ``artifact``, or delete them if it is None."""

    time: datetime
    seq: int
    artifact: Artifact | None
    tags: tuple[str, ...]
    primary: str | None = None  # the build's own version tag
    release: bool = False  # not a release candidate


def _uniform_times(rng: random.Random, start: datetime, end: datetime, n: int) -> list[datetime]:
    span = max(1, int((end - start).total_seconds()))
    return [start + timedelta(seconds=rng.randrange(span)) for _ in range(n)]


def _push_times(ctx: Context, spec: RepoSpec, rng: random.Random) -> list[datetime]:
    now, days, hour = ctx.now, timedelta(days=1), timedelta(hours=1)
    n = spec.builds
    if spec.activity == "active":
        # Active repositories push in every window between snapshots, and the
        # last push lands 6+ hours before the final snapshot (room for retags).
        windows = [(ctx.times[e - 1] + hour, ctx.times[e] - (6 * hour if e == EPOCHS - 1 else hour))
                   for e in range(1, EPOCHS)]
        per_window = max(1, min(3, n // 15))
        start = now - rng.randint(240, 720) * days
        times = _uniform_times(rng, start, ctx.times[0] - hour, n - per_window * len(windows))
        for lo, hi in windows:
            times += _uniform_times(rng, lo, hi, per_window)
    elif spec.activity == "slow":
        end = now - rng.randint(21, 150) * days
        times = _uniform_times(rng, now - rng.randint(300, 720) * days, end, n)
    elif spec.activity == "stale":
        end = now - rng.randint(400, 640) * days
        times = _uniform_times(rng, max(now - 729 * days, end - rng.randint(30, 300) * days), end, n)
    elif spec.activity == "new":
        times = _uniform_times(rng, ctx.times[-2] + hour, now - 6 * hour, n)
    else:
        raise ValueError(f"unknown activity {spec.activity!r} for {spec.path}")
    return sorted(times)


class _Tagger:
    """Tag names for successive builds of one repository.

    Schemes: ``semver`` (1.4.2), ``vsemver`` (v1.4.2), ``semver-float``
    (1.4.2 plus moving 1.4 and 1), ``date`` (2025.03.14, -2 on a second push
    that day), ``ci`` (main-<n> plus git-<sha7>), ``sha40`` (the commit sha),
    ``sha7`` (git-<sha7>), ``latest`` (only latest, every push overwrites it).
    """

    def __init__(self, spec: RepoSpec, rng: random.Random):
        self.spec, self.rng = spec, rng
        self.version = (rng.randint(0, 3), rng.randint(0, 12), rng.randint(0, 5))
        self.build_number = rng.randint(100, 3000)
        self.candidate: tuple[int, int, int] | None = None
        self.rc_number = 0
        self.releases = 0
        self.dates: dict[str, int] = {}

    def _bump(self) -> tuple[int, int, int]:
        major, minor, patch = self.version
        roll = self.rng.random()
        if roll < 0.04:
            return (major + 1, 0, 0)
        if roll < 0.24:
            return (major, minor + 1, 0)
        return (major, minor, patch + 1)

    def _semver(self) -> tuple[tuple[int, int, int], int | None]:
        """Next version, and its rc number if this build is a release candidate."""
        if self.candidate is not None:
            if self.rng.random() < 0.5:
                self.rc_number += 1
                return self.candidate, self.rc_number
            version, self.candidate = self.candidate, None
            return version, None
        version = self._bump()
        if "rc" in self.spec.flags and version[2] == 0 and self.rng.random() < 0.7:
            self.candidate, self.rc_number = version, 1
            return version, 1
        return version, None

    def next(self, when: datetime, revision: str) -> tuple[str, list[str], bool]:
        """(primary tag, all tags, is a release) for the next build."""
        scheme, extra = self.spec.scheme, []
        release = True
        if scheme in ("semver", "vsemver", "semver-float"):
            version, rc = self._semver()
            text = ".".join(map(str, version))
            primary = ("v" if scheme == "vsemver" else "") + text + (f"-rc.{rc}" if rc else "")
            release = rc is None
            if release:
                self.version = version
                if scheme == "semver-float":
                    extra = [f"{version[0]}.{version[1]}", f"{version[0]}"]
        elif scheme == "date":
            day = when.strftime("%Y.%m.%d")
            self.dates[day] = self.dates.get(day, 0) + 1
            primary = day if self.dates[day] == 1 else f"{day}-{self.dates[day]}"
        elif scheme == "ci":
            self.build_number += self.rng.randint(1, 5)  # not every pipeline run pushes
            primary, extra = f"main-{self.build_number}", [f"git-{revision[:7]}"]
        elif scheme == "sha40":
            primary = revision
        elif scheme == "sha7":
            primary = f"git-{revision[:7]}"
        elif scheme == "latest":
            return "latest", ["latest"], True
        else:
            raise ValueError(f"unknown tag scheme {scheme!r} for {self.spec.path}")
        tags = [primary, *extra]
        if release:
            self.releases += 1
            if "nolatest" not in self.spec.flags:
                tags.append("latest")
            if "stable" in self.spec.flags and self.releases % 3 == 1:
                tags.append("stable")
        return primary, tags, release


class _History:
    """Accumulates one repository's events in the order they were decided."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, when: datetime, artifact: Artifact | None, tags, primary=None, release=False) -> None:
        self.events.append(Event(when, len(self.events), artifact, tuple(tags), primary, release))

    def sorted(self) -> list[Event]:
        return sorted(self.events, key=lambda e: (e.time, e.seq))


def replay(events: list[Event], until: datetime) -> tuple[dict[str, Artifact], dict[str, Artifact]]:
    """Artifacts ever pushed (by digest, push order) and live tags at ``until``."""
    pushed: dict[str, Artifact] = {}
    tags: dict[str, Artifact] = {}
    for event in events:
        if event.time > until:
            break
        if event.artifact is None:
            for tag in event.tags:
                tags.pop(tag, None)
        else:
            pushed.setdefault(event.artifact.digest, event.artifact)
            for tag in event.tags:
                tags[tag] = event.artifact
    return pushed, tags


def _sign(ctx: Context, history: _History, spec: RepoSpec, when: datetime, artifact: Artifact) -> None:
    tag, signature = signature_artifact(ctx, spec.path, artifact)
    history.add(when + timedelta(seconds=45), signature, [tag])


def _built_events(ctx: Context, spec: RepoSpec) -> list[Event]:
    """History of a repository that builds its own images."""
    rng = ctx.rng("repo", spec.path)
    history = _History()
    tagger = _Tagger(spec, rng)
    lag = timedelta(days=rng.choice((0, 0, 7, 21, 45, 90)))  # how far behind base releases the team runs
    signing_since = ctx.now - timedelta(days=rng.randint(120, 300))
    keep = int(spec.option("keep") or 0)
    retained: deque[list[str]] = deque()
    profile = PROFILES[spec.base]
    generations = [0] * len(profile.layers)
    base_release = -1
    for number, pushed in enumerate(_push_times(ctx, spec, rng)):
        revision = hashlib.sha1(f"{ctx.seed}/{spec.path}/{number}".encode()).hexdigest()
        created = pushed - timedelta(minutes=rng.randint(2, 40))
        release = ctx.release_at(spec.base, created - lag)
        rebased = release != base_release
        base_release = release
        for i, (_lo, _hi, churn, _by) in enumerate(profile.layers):
            if rebased or churn >= 1 or rng.random() < churn:
                generations[i] += 1
        primary, tags, is_release = tagger.next(pushed, revision)
        build = Build(spec, number, created, primary, revision, release, tuple(generations))
        artifact = build_artifact(ctx, build)
        history.add(pushed, artifact, tags, primary, is_release)
        if "signed" in spec.flags and pushed >= signing_since:
            _sign(ctx, history, spec, pushed, artifact)
        if keep:
            retained.append([t for t in tags if t not in ("latest", "stable")])
            while len(retained) > keep:
                history.add(pushed + timedelta(seconds=30), None, retained.popleft())
    if "prune" in spec.flags:
        _prune(ctx, history, rng)
    if "rollback" in spec.flags:
        _rollback(ctx, history)
    return history.sorted()


def _prune(ctx: Context, history: _History, rng: random.Random) -> None:
    """Between each pair of snapshots, delete a few of the oldest version tags."""
    for e in range(1, EPOCHS):
        when = _uniform_times(rng, ctx.times[e - 1], ctx.times[e], 1)[0]
        events = history.sorted()
        pushed, tags = replay(events, when)
        order = {digest: i for i, digest in enumerate(pushed)}
        versions = {event.primary for event in events if event.primary}
        floating = {tags[t].digest for t in ("latest", "stable") if t in tags}
        candidates = sorted((order[a.digest], tag) for tag, a in tags.items()
                            if tag in versions and a.digest not in floating)
        doomed = [tag for _, tag in candidates[: rng.randint(2, 4)]]
        if doomed:
            history.add(when, None, doomed)


def _rollback(ctx: Context, history: _History) -> None:
    """Just before the last snapshot, move ``stable`` back to an older digest.

    The target predates what ``stable`` showed at the previous snapshot, so
    comparing the last two snapshots exposes a tag that went backwards.
    """
    targets = [event.artifact for event in history.sorted()
               if event.time <= ctx.times[-2] and event.artifact and "stable" in event.tags]
    if len(targets) >= 2:
        history.add(ctx.now - timedelta(hours=3), targets[-2], ["stable"])


def _copied_events(ctx: Context, spec: RepoSpec, source: list[Event]) -> list[Event]:
    """History of a mirror or a promotion target: the source's bytes, re-tagged."""
    rng = ctx.rng("repo", spec.path)
    history = _History()
    mirror = spec.option("mirror") is not None
    since = ctx.now - timedelta(days=rng.randint(150, 250)) if mirror else None
    for event in source:
        if event.artifact is None or event.artifact.kind == "signature" or not event.release:
            continue
        if mirror and event.time >= since:
            when = event.time + timedelta(hours=2, minutes=rng.randint(0, 59))
            history.add(when, event.artifact, [event.primary, "latest"], event.primary, True)
        elif not mirror and "stable" in event.tags:
            when = event.time + timedelta(hours=rng.randint(4, 48))
            history.add(when, event.artifact, [event.primary, "prod"], event.primary, True)
            if "signed" in spec.flags:
                _sign(ctx, history, spec, when, event.artifact)
    return history.sorted()


def estate_events(ctx: Context) -> dict[str, list[Event]]:
    """Every repository's full history, in table order."""
    specs = {spec.path: spec for spec in REPO_SPECS}
    done: dict[str, list[Event]] = {}

    def events_of(path: str) -> list[Event]:
        if path not in done:
            spec = specs[path]
            source = spec.option("mirror") or spec.option("promote")
            done[path] = _copied_events(ctx, spec, events_of(source)) if source else _built_events(ctx, spec)
        return done[path]

    return {path: events_of(path) for path in specs}
