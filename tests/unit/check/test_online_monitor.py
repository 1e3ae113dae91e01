"""The online lost-write rule (``quorate.check.online``): table tests of what
it flags and what it must let pass, and agreement with the full checker."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.check import check_history
from quorate.check.online import LostWriteMonitor
from quorate.errors import InvariantViolation


def ev(process: int, kind: str, f: str, value: Any, time: float, key: str = "k") -> dict[str, Any]:
    return {"process": process, "type": kind, "f": f, "key": key, "value": value, "time": time}


def feed(events: list[dict[str, Any]]) -> LostWriteMonitor:
    monitor = LostWriteMonitor()
    for event in events:
        monitor.observe(event)
    return monitor


LOST = [
    # The shape of the HotStuff restart bug: an acknowledged write, then a
    # fresh process reads the key as absent.
    [ev(7, "invoke", "write", 1430, 2.038), ev(7, "ok", "write", 1430, 2.048),
     ev(105, "invoke", "read", None, 12.071), ev(105, "ok", "read", None, 13.009)],
    # A read of an older value after a later write was acknowledged.
    [ev(1, "invoke", "write", 1, 0.0), ev(1, "ok", "write", 1, 1.0),
     ev(1, "invoke", "write", 2, 2.0), ev(1, "ok", "write", 2, 3.0),
     ev(2, "invoke", "read", None, 4.0), ev(2, "ok", "read", 1, 5.0)],
    # A successful cas overwrote the value.
    [ev(1, "invoke", "write", 1, 0.0), ev(1, "ok", "write", 1, 1.0),
     ev(1, "invoke", "cas", [1, 2], 2.0), ev(1, "ok", "cas", [1, 2], 3.0),
     ev(2, "invoke", "read", None, 4.0), ev(2, "ok", "read", 1, 5.0)],
    # A value nothing wrote.
    [ev(2, "invoke", "read", None, 4.0), ev(2, "ok", "read", 99, 5.0)],
    # true is not 1.
    [ev(1, "invoke", "write", True, 0.0), ev(1, "ok", "write", True, 1.0),
     ev(2, "invoke", "read", None, 2.0), ev(2, "ok", "read", 1, 3.0)],
]

FINE = [
    # The read overlaps the write: either order is possible.
    [ev(1, "invoke", "write", 1, 0.0), ev(2, "invoke", "read", None, 0.5),
     ev(1, "ok", "write", 1, 1.0), ev(2, "ok", "read", None, 1.5)],
    # A timed-out write of the old value may still take effect later.
    [ev(1, "invoke", "write", 1, 0.0), ev(1, "info", "write", 1, 1.0),
     ev(3, "invoke", "write", 2, 2.0), ev(3, "ok", "write", 2, 3.0),
     ev(2, "invoke", "read", None, 4.0), ev(2, "ok", "read", 1, 5.0)],
    # A write of the read value still outstanding.
    [ev(3, "invoke", "write", 2, 0.0), ev(3, "ok", "write", 2, 1.0),
     ev(1, "invoke", "write", 1, 1.5),
     ev(2, "invoke", "read", None, 2.0), ev(2, "ok", "read", 1, 3.0)],
    # A failed cas changed nothing; a delete makes absent legal again.
    [ev(1, "invoke", "write", 1, 0.0), ev(1, "ok", "write", 1, 1.0),
     ev(1, "invoke", "cas", [5, 2], 2.0), ev(1, "fail", "cas", [5, 2], 3.0),
     ev(2, "invoke", "read", None, 4.0), ev(2, "ok", "read", 1, 5.0),
     ev(1, "invoke", "delete", None, 6.0), ev(1, "ok", "delete", None, 7.0),
     ev(2, "invoke", "read", None, 8.0), ev(2, "ok", "read", None, 9.0)],
    # Keys are independent.
    [ev(1, "invoke", "write", 1, 0.0, key="a"), ev(1, "ok", "write", 1, 1.0, key="a"),
     ev(2, "invoke", "read", None, 2.0, key="b"), ev(2, "ok", "read", None, 3.0, key="b")],
]


@pytest.mark.parametrize("events", LOST)
def test_lost_writes_are_flagged(events: list[dict[str, Any]]) -> None:
    with pytest.raises(InvariantViolation):
        feed(events)


@pytest.mark.parametrize("events", FINE)
def test_possible_reads_pass(events: list[dict[str, Any]]) -> None:
    assert feed(events).reads_checked >= 1


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Small random register histories (one key, three processes)."""
    events: list[dict[str, Any]] = []
    open_ops: dict[int, dict[str, Any]] = {}
    next_value = 0
    for step in range(draw(st.integers(2, 24))):
        time = float(step)
        process = draw(st.integers(0, 2))
        if process in open_ops:
            op = open_ops.pop(process)
            kind = draw(st.sampled_from(["ok", "ok", "info", "fail"]))
            value = op["value"]
            if op["f"] == "read":
                kind = "ok" if kind != "info" else "info"
                value = draw(st.sampled_from([None, *range(1, next_value + 1)])) if kind == "ok" else None
            events.append(ev(process, kind, op["f"], value, time))
        else:
            f = draw(st.sampled_from(["write", "read"]))
            value = None
            if f == "write":
                next_value += 1
                value = next_value
            open_ops[process] = {"f": f, "value": value}
            events.append(ev(process, "invoke", f, value, time))
    return events


@settings(max_examples=300, deadline=None)
@given(histories())
def test_flags_only_histories_the_full_checker_rejects(events: list[dict[str, Any]]) -> None:
    # Soundness: whenever the online rule fires, the history is not linearizable.
    try:
        feed(events)
    except InvariantViolation:
        assert str(check_history(events).verdict) == "not_linearizable"
