"""Which repositories a run collects: include/exclude globs and shards (``--shard I/N``, by a stable hash
of the name, so shards partition the catalog the same way on every machine)."""

from __future__ import annotations

import hashlib
import logging

from repoaudit.model.glob import glob_matches

log = logging.getLogger(__name__)


def select_repositories(names: list[str], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    """Doublestar globs on repository names, as retention's ``--repo`` and Harbor's selectors read them:
    ``team/*`` stops at ``/``, ``team/**`` crosses it; exclude wins. A glob that matches nothing is
    said (as a warning): a typo should not pass for an empty registry."""
    for option, globs in (("--repo", include), ("--exclude-repo", exclude)):
        for glob in globs:
            if not any(glob_matches(glob, n) for n in names):
                log.warning("%s %r matches no repository of %d", option, glob, len(names))
    picked = [n for n in names if not include or any(glob_matches(g, n) for g in include)]
    return [n for n in picked if not any(glob_matches(g, n) for g in exclude)]


def shard_of(name: str, count: int) -> int:
    """The shard (0 to count-1) a repository belongs to: sha256 of its name, so every machine agrees."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count


def select_shard(names: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Only the repositories of shard ``(i, n)``; all of them when ``shard`` is None."""
    if shard is None:
        return names
    i, n = shard
    return [name for name in names if shard_of(name, n) == i]

