"""A set of manifest digests that costs about 8 bytes a digest, so a run's memory does not grow with the registry.

The collector asks "is this digest stored already?" once per tag. A Python ``set`` of digest strings
costs ~150 bytes an entry: 150 MB at a million manifests, most of a collection's memory. Here each
digest is kept as a 64-bit key (blake2b of the digest) in a sorted ``array`` searched by bisection,
with the keys added since the last merge in a small ``set`` merged in when it reaches an eighth of the
array (at least ``MERGE_AT``), so merging costs O(n log n) over a run.

A 64-bit key can collide: two of n digests share one with probability about n²/2⁶⁵ (3·10⁻⁸ at a
million). A collision would make the collector take an unseen manifest for one already stored and skip
its fetch; the tag is still recorded with its digest.
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from bisect import bisect_left
from collections.abc import Iterable


def _key(digest: str) -> int:
    return int.from_bytes(hashlib.blake2b(digest.encode(), digest_size=8).digest(), "big", signed=True)


class DigestSet:
    """``digest in s``, ``s.add(digest)``, ``len(s)``: a set of strings stored as sorted 64-bit keys."""

    MERGE_AT = 65_536

    def __init__(self, digests: Iterable[str] = ()):
        self._sorted = array("q")
        self._recent: set[int] = set()
        for digest in digests:
            self.add(digest)

    def _has(self, key: int) -> bool:
        if key in self._recent:
            return True
        keys = self._sorted
        i = bisect_left(keys, key)
        return i < len(keys) and keys[i] == key

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and self._has(_key(digest))

    def add(self, digest: str) -> None:
        key = _key(digest)
        if self._has(key):
            return
        self._recent.add(key)
        if len(self._recent) >= max(self.MERGE_AT, len(self._sorted) // 8):
            self._merge()

    def _merge(self) -> None:
        # Built from an iterator, so the merge never holds the keys as a list of Python ints.
        self._sorted = array("q", heapq.merge(self._sorted, sorted(self._recent)))
        self._recent = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __bool__(self) -> bool:
        return len(self) > 0
