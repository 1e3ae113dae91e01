"""Piggyback queue and rumour log (SWIM §4.1)."""

from __future__ import annotations

import pytest

from quorate.swim import Rumour, RumourLog, TransmitQueue, retransmit_limit


@pytest.mark.parametrize(
    ("n", "mult", "expected"),
    [(1, 4.0, 2), (9, 4.0, 4), (99, 4.0, 8), (200, 4.0, 10), (999, 3.0, 9), (1, 0.1, 1)],
)
def test_retransmit_limit_table(n: int, mult: float, expected: int) -> None:
    assert retransmit_limit(n, mult) == expected


def test_least_transmitted_first_newest_first_among_equals() -> None:
    q: TransmitQueue[str] = TransmitQueue()
    q.push("a", "a", 10)
    q.push("b", "b", 10)
    taken, used = q.take(10, limit=5)
    assert taken == ["b"] and used == 10  # newest first
    taken, _ = q.take(10, limit=5)
    assert taken == ["a"]  # now the least transmitted
    taken, _ = q.take(100, limit=5)
    assert taken == ["b", "a"]  # equal counts again: newest first


def test_items_leave_after_the_limit_and_news_replaces_old() -> None:
    q: TransmitQueue[str] = TransmitQueue()
    q.push("m1", "suspect", 5)
    for _ in range(3):
        assert q.take(100, limit=3)[0] == ["suspect"]
    assert len(q) == 0
    q.push("m1", "suspect", 5)
    q.take(100, limit=3)
    q.push("m1", "alive", 5)  # replaces, count starts again
    assert [q.take(100, limit=3)[0] for _ in range(4)] == [["alive"], ["alive"], ["alive"], []]


def test_budget_is_respected_and_small_items_fill_the_gap() -> None:
    q: TransmitQueue[str] = TransmitQueue()
    q.push("big", "big", 80)
    q.push("small", "small", 15)
    q.push("mid", "mid", 30)
    taken, used = q.take(100, limit=9)
    assert used <= 100
    assert set(taken) == {"mid", "small"} or set(taken) == {"big", "small"}
    assert q.take(0, limit=9) == ([], 0)


def test_rumour_log_delivers_once_and_summarises_without_gaps() -> None:
    log = RumourLog(retention=10)
    assert log.add(Rumour(1, 1, b"a"))
    assert not log.add(Rumour(1, 1, b"a"))
    assert log.add(Rumour(1, 3, b"c"))
    assert log.summary() == ((1, 1),)
    assert log.add(Rumour(1, 2, b"b"))
    assert log.summary() == ((1, 3),)
    assert not log.add(Rumour(1, 2, b"b"))
    missing = log.missing_for({1: 1}, 1000, lambda r: len(r.payload) + 8)
    assert [r.seq for r in missing] == [3, 2]
    assert log.missing_for({1: 3}, 1000, lambda r: 9) == []
    # The budget cuts the reply.
    assert len(log.missing_for({}, 20, lambda r: 9)) == 2


def test_rumour_log_forgets_the_oldest_beyond_retention() -> None:
    log = RumourLog(retention=2)
    for seq in (1, 2, 3):
        log.add(Rumour(7, seq, b"x"))
    assert [r.seq for r in log.missing_for({}, 1000, lambda r: 1)] == [2, 3]
    assert log.seen(7, 1)  # forgotten for pulls, still not delivered twice
