"""Which repositories a run collects: include/exclude globs and shards (``--shard I/N``, by a stable hash
of the name, so shards partition the catalog the same way on every machine)."""

from __future__ import annotations

import fnmatch
import hashlib


def select_repositories(names: list[str], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    """Shell-style globs on repository names (``team/*``, ``*-cache``); exclude wins."""
    picked = [n for n in names if not include or any(fnmatch.fnmatchcase(n, g) for g in include)]
    return [n for n in picked if not any(fnmatch.fnmatchcase(n, g) for g in exclude)]


def shard_of(name: str, count: int) -> int:
    """The shard (0 to count-1) a repository belongs to: sha256 of its name, so every machine agrees."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count


def select_shard(names: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Only the repositories of shard ``(i, n)``; all of them when ``shard`` is None."""
    if shard is None:
        return names
    i, n = shard
    return [name for name in names if shard_of(name, n) == i]

