"""The WGL search against a brute-force reference, on generated histories.

- Histories from clients of a real atomic register (random linearization
  points) are always linearizable; changing one read to a value never written
  makes them not linearizable.
- On small random histories, linearizable or not, the search agrees with an
  exhaustive search over every order (no memo, no pruning).
Reference: Lowe 2017, "Testing for linearizability", section 3 (WGL + memo).
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.check import (
    INF,
    Operation,
    check_history,
    check_operations,
    load_history,
    simulate_register_history,
)
from quorate.check.linearizability import _remove

NEVER_WRITTEN = "never-written"


@settings(max_examples=150, deadline=None)
@given(
    rng=st.randoms(use_true_random=False),
    operations=st.integers(0, 120),
    keys=st.integers(1, 4),
    processes=st.integers(1, 8),
    values=st.integers(1, 4),
    fail_rate=st.sampled_from([0.0, 0.1]),
    info_rate=st.sampled_from([0.0, 0.05, 0.2]),
)
def test_atomic_register_histories_are_linearizable_and_a_bad_read_is_caught(
    rng: random.Random,
    operations: int,
    keys: int,
    processes: int,
    values: int,
    fail_rate: float,
    info_rate: float,
) -> None:
    events = simulate_register_history(
        rng, operations, keys, processes, values, fail_rate=fail_rate, info_rate=info_rate
    )
    assert check_history(events).verdict == "linearizable"
    reads = [i for i, e in enumerate(events) if e["f"] == "read" and e["type"] == "ok"]
    if not reads:
        return
    victim = reads[rng.randrange(len(reads))]
    events[victim] = {**events[victim], "value": NEVER_WRITTEN}
    result = check_history(events)
    assert result.verdict == "not_linearizable"
    assert result.explanation is not None
    assert result.explanation.key == events[victim]["key"]
    assert [op.value for op in result.explanation.operations] == [NEVER_WRITTEN]


def _applies(op: Operation, state: Hashable) -> tuple[bool, Hashable]:
    if op.f == "read":
        return state == op.value, state
    if op.f == "write":
        return True, op.value
    assert isinstance(op.value, tuple)
    return state == op.value[0], op.value[1]


def brute_force_linearizable(ops: Sequence[Operation]) -> bool:
    """Try every order of every subset that includes all ok operations."""
    live = [op for op in ops if op.outcome != "fail" and not (op.f == "read" and op.outcome != "ok")]
    by_key: dict[Hashable, list[Operation]] = {}
    for op in live:
        by_key.setdefault(op.key, []).append(op)

    def search(remaining: tuple[Operation, ...], state: Hashable) -> bool:
        if all(op.outcome != "ok" for op in remaining):
            return True
        for op in remaining:
            # op may go next only if no remaining op returned before op was called.
            if any(o.return_index < op.call_index for o in remaining if o is not op):
                continue
            ok, new_state = _applies(op, state)
            rest = tuple(o for o in remaining if o is not op)
            if ok and search(rest, new_state):
                return True
        return False

    return all(search(tuple(key_ops), None) for key_ops in by_key.values())


@st.composite
def random_histories(draw: st.DrawFn) -> list[dict[str, object]]:
    """Arbitrary small histories: mostly not linearizable, some linearizable."""
    processes = draw(st.integers(1, 4))
    value = st.sampled_from([None, 0, 1, 2])
    events: list[dict[str, object]] = []
    busy: dict[int, tuple[str, object]] = {}
    fresh = count(processes)
    slots = list(range(processes))
    for _ in range(draw(st.integers(0, 14))):
        slot = draw(st.integers(0, processes - 1))
        process = slots[slot]
        if process not in busy:
            f = draw(st.sampled_from(["read", "write", "cas"]))
            v: object = (
                None if f == "read" else draw(value) if f == "write" else [draw(value), draw(value)]
            )
            busy[process] = (f, v)
            events.append({"process": process, "type": "invoke", "f": f, "value": v})
        else:
            f, v = busy.pop(process)
            kind = draw(st.sampled_from(["ok", "ok", "ok", "fail", "info"]))
            if f == "read" and kind == "ok":
                v = draw(value)
            events.append({"process": process, "type": kind, "f": f, "value": v})
            if kind == "info":
                slots[slot] = next(fresh)
    return events


@settings(max_examples=600, deadline=None)
@given(random_histories())
def test_search_agrees_with_brute_force(events: list[dict[str, object]]) -> None:
    ops = load_history(events)
    expected = brute_force_linearizable(ops)
    result = check_operations(ops)
    assert result.linearizable is expected
    if not expected:
        assert result.explanation is not None
        shrunk = list(result.explanation.operations)
        assert shrunk
        assert not brute_force_linearizable(shrunk)
        if result.explanation.minimal:
            for op in shrunk:
                assert brute_force_linearizable(_remove(shrunk, [op]))


def test_brute_force_reference_can_say_no() -> None:
    ops = [
        Operation(0, "write", None, 1, 0, 1, "ok"),
        Operation(1, "read", None, None, 2, 3, "ok"),
    ]
    assert not brute_force_linearizable(ops)
    assert brute_force_linearizable([*ops[:1], Operation(1, "read", None, 1, 2, 3, "ok")])
    assert brute_force_linearizable([Operation(0, "write", None, 1, 0, INF, "info")])


class SteppingClock:
    """A clock that moves one second every time it is read."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        self.now_s += 1.0
        return self.now_s


def test_timeout_gives_unknown() -> None:
    events = simulate_register_history(random.Random(7), 3000, keys=1, processes=10)
    result = check_history(events, timeout_s=0.5, clock=SteppingClock())
    assert result.verdict == "unknown"
    assert result.linearizable is None
    assert result.keys_checked == 0
    assert result.elapsed_s > 0.5
    assert check_history(events, timeout_s=1e9, clock=SteppingClock()).verdict == "linearizable"


def test_ten_thousand_operations_over_a_hundred_keys() -> None:
    events = simulate_register_history(random.Random(1), 10_000, keys=100, processes=20)
    result = check_history(events)
    assert (result.verdict, result.keys, result.operations) == ("linearizable", 100, 10_000)
