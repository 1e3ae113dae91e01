"""Lifeguard's dynamic suspicion timeout as a table (Dadgar et al. 2018, §IV-B)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorate.swim import suspicion_bounds, suspicion_timeout

# (n_members, confirmations, k, min_s, max_s, elapsed_s) -> seconds left
TABLE = [
    # No confirmation yet: the maximum.
    (100, 0, 3, 10.0, 60.0, 0.0, 60.0),
    # log(2)/log(4) = 0.5 of the way down.
    (100, 1, 3, 10.0, 60.0, 0.0, 35.0),
    (100, 2, 3, 10.0, 60.0, 0.0, 60.0 - 50.0 * math.log(3) / math.log(4)),
    # K confirmations: the minimum.
    (100, 3, 3, 10.0, 60.0, 0.0, 10.0),
    # More than K counts as K.
    (100, 9, 3, 10.0, 60.0, 0.0, 10.0),
    # Elapsed time is subtracted, never below zero.
    (100, 0, 3, 10.0, 60.0, 15.0, 45.0),
    (100, 3, 3, 10.0, 60.0, 15.0, 0.0),
    # K = 0: no confirmations expected, the minimum at once.
    (100, 0, 0, 10.0, 60.0, 0.0, 10.0),
    # Three members: only one other can confirm, so K is capped at 1.
    (3, 1, 3, 10.0, 60.0, 0.0, 10.0),
    (3, 0, 3, 10.0, 60.0, 0.0, 60.0),
    # Two members: nobody can confirm.
    (2, 0, 3, 10.0, 60.0, 0.0, 10.0),
    # Negative confirmations are treated as none.
    (100, -1, 3, 10.0, 60.0, 0.0, 60.0),
]


@pytest.mark.parametrize(("n", "c", "k", "min_s", "max_s", "elapsed", "expected"), TABLE)
def test_suspicion_timeout_table(
    n: int, c: int, k: int, min_s: float, max_s: float, elapsed: float, expected: float
) -> None:
    assert suspicion_timeout(n, c, k, min_s, max_s, elapsed) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("n", "alpha", "beta", "period", "expected"),
    [
        (10, 5.0, 6.0, 1.0, (5.0, 30.0)),
        (100, 5.0, 6.0, 1.0, (10.0, 60.0)),
        (1000, 4.0, 6.0, 0.5, (6.0, 36.0)),
        # log10 of small groups is below 1: the minimum uses 1.
        (2, 5.0, 6.0, 1.0, (5.0, 30.0)),
        (1, 5.0, 6.0, 1.0, (5.0, 30.0)),
    ],
)
def test_suspicion_bounds_table(
    n: int, alpha: float, beta: float, period: float, expected: tuple[float, float]
) -> None:
    assert suspicion_bounds(n, alpha, beta, period) == pytest.approx(expected)


@given(
    n=st.integers(1, 5000),
    k=st.integers(0, 10),
    c=st.integers(0, 12),
    min_s=st.floats(0.1, 100.0),
    ratio=st.floats(1.0, 10.0),
)
def test_more_confirmations_never_lengthen_the_timeout(
    n: int, k: int, c: int, min_s: float, ratio: float
) -> None:
    max_s = min_s * ratio
    now = suspicion_timeout(n, c, k, min_s, max_s)
    later = suspicion_timeout(n, c + 1, k, min_s, max_s)
    assert later <= now + 1e-9
    assert min_s - 1e-9 <= later <= max_s + 1e-9
