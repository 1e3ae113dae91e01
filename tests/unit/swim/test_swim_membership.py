"""The precedence of membership updates (SWIM §4.2, with rejoin by incarnation)."""

from __future__ import annotations

import itertools

import pytest

from quorate.swim import MemberState, supersedes

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT

# (new state, new incarnation, old state, old incarnation) -> overrides?
TABLE = [
    # SWIM §4.2: {Alive, i} overrides {Suspect, j} and {Alive, j} when i > j.
    (A, 2, S, 1, True),
    (A, 1, S, 1, False),
    (A, 2, A, 1, True),
    (A, 1, A, 1, False),
    (A, 0, A, 1, False),
    # {Suspect, i} overrides {Suspect, j} when i > j and {Alive, j} when i >= j.
    (S, 2, S, 1, True),
    (S, 1, S, 1, False),
    (S, 1, A, 1, True),
    (S, 2, A, 1, True),
    (S, 0, A, 1, False),
    # {Dead (Confirm), i} overrides Alive and Suspect at i >= j.
    (D, 1, A, 1, True),
    (D, 1, S, 1, True),
    (D, 3, A, 1, True),
    # ... but not a member that has since come back with a higher incarnation.
    (D, 1, A, 2, False),
    # A dead member comes back only with a higher incarnation.
    (A, 2, D, 1, True),
    (A, 1, D, 1, False),
    (S, 2, D, 1, True),
    (S, 1, D, 1, False),
    # Left is final at its incarnation, even against Dead.
    (L, 1, D, 1, True),
    (L, 1, A, 1, True),
    (D, 1, L, 1, False),
    (A, 1, L, 1, False),
    (A, 2, L, 1, True),
    # An unknown member: any news is news.
    (A, 0, None, 0, True),
    (D, 4, None, 0, True),
]


@pytest.mark.parametrize(("new_state", "new_inc", "old_state", "old_inc", "expected"), TABLE)
def test_precedence_table(
    new_state: MemberState,
    new_inc: int,
    old_state: MemberState | None,
    old_inc: int,
    expected: bool,
) -> None:
    assert supersedes(new_state, new_inc, old_state, old_inc) is expected


def test_precedence_is_a_strict_order() -> None:
    """Antisymmetric and transitive, so members converge whatever the order of news."""
    points = [(s, i) for s in MemberState for i in range(3)]
    for a, b in itertools.product(points, repeat=2):
        assert not (supersedes(*a, *b) and supersedes(*b, *a))
        if a != b:
            assert supersedes(*a, *b) or supersedes(*b, *a)
    for a, b, c in itertools.product(points, repeat=3):
        if supersedes(*a, *b) and supersedes(*b, *c):
            assert supersedes(*a, *c)
