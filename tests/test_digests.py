"""The collector's compact digest set: a set's answers at ~8 bytes a digest, across its merges."""

from __future__ import annotations

import hashlib
import random

from repoaudit.collect.digests import DigestSet


def digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


def test_answers_as_a_set_across_merges():
    DigestSet.MERGE_AT, saved = 64, DigestSet.MERGE_AT
    try:
        s, reference = DigestSet(), set()
        rng = random.Random(7)
        for _ in range(5_000):
            d = digest(rng.randrange(3_000))
            assert (d in s) == (d in reference)
            s.add(d)
            reference.add(d)
            assert len(s) == len(reference)
        assert all(digest(i) in s for i in range(3_000) if digest(i) in reference)
        assert not any(digest(i) in s for i in range(3_000, 4_000))
        assert len(s._sorted) > len(s._recent)  # it merged: most keys are in the sorted array
        assert list(s._sorted) == sorted(s._sorted)
    finally:
        DigestSet.MERGE_AT = saved


def test_built_from_an_iterable_and_empty_is_false():
    assert not DigestSet()
    s = DigestSet(digest(i) for i in range(10))
    assert s and len(s) == 10 and digest(3) in s and 42 not in s


def test_holds_about_eight_bytes_a_digest():
    s = DigestSet(digest(i) for i in range(200_000))
    held = s._sorted.buffer_info()[1] * s._sorted.itemsize + 100 * len(s._recent)
    assert held < 16 * 200_000
