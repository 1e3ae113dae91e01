"""Quorum maths against a naive reference over many random cases
(after etcd-io/raft's quorum tests)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.core.quorum import bft_quorum, commit_index, joint_commit_index, majority, max_faulty
from quorate.ids import NodeId

CASES = 20_000


def naive_commit_index(match: list[int]) -> int:
    """The largest i such that more than half of the voters have match >= i."""
    n = len(match)
    best = 0
    for i in sorted(set(match) | {0}):
        if sum(1 for m in match if m >= i) * 2 > n:
            best = max(best, i)
    return best


def test_commit_index_matches_reference_over_random_cases() -> None:
    rng = random.Random(20140101)
    for _ in range(CASES):
        n = rng.randint(1, 9)
        match = [rng.randint(0, 12) for _ in range(n)]
        assert commit_index(match) == naive_commit_index(match), match


def test_joint_commit_index_matches_reference_over_random_cases() -> None:
    rng = random.Random(43)
    for _ in range(CASES // 4):
        nodes = [NodeId(i) for i in range(1, rng.randint(2, 10))]
        match = {v: rng.randint(0, 10) for v in nodes}
        old = rng.sample(nodes, rng.randint(1, len(nodes)))
        new = rng.sample(nodes, rng.randint(0, len(nodes)))
        expected = naive_commit_index([match[v] for v in old])
        if new:
            expected = min(expected, naive_commit_index([match[v] for v in new]))
        assert joint_commit_index(match, old, new) == expected


@given(st.integers(min_value=1, max_value=10_000))
@settings(max_examples=2000)
def test_bft_quorums_intersect_in_an_honest_node(n: int) -> None:
    f = max_faulty(n)
    q = bft_quorum(n)
    assert 3 * f + 1 <= n < 3 * (f + 1) + 1
    # Two quorums share at least 2q - n nodes; more than f of them, so one is honest.
    assert 2 * q - n >= f + 1
    # A quorum is reachable with f nodes silent.
    assert q <= n - f
    if n == 3 * f + 1:
        assert q == 2 * f + 1


@given(st.integers(min_value=0, max_value=10_000))
def test_majorities_intersect(n: int) -> None:
    q = majority(n)
    if n:
        assert 2 * q > n and q <= n
    else:
        assert q == 0


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        majority(-1)
    with pytest.raises(ValueError):
        max_faulty(0)


def test_commit_index_counts_missing_voters_as_zero() -> None:
    assert commit_index([5, 5], voters=5) == 0
    assert commit_index([5, 5, 5], voters=5) == 5
    assert commit_index([]) == 0
    assert joint_commit_index({}, []) == 0
