"""An online check that no acknowledged write is lost, fed the history as it grows.

Theory of operation. The full linearizability check (``check_history``) runs
once a history is complete and may search exponentially many orders. This
monitor looks at each read the moment it completes and applies one rule that
needs no search, so a simulation can stop at the first lost write instead of
reporting a bad history at the end:

    A read ``r`` of key ``k`` that returned ``v`` is impossible if some write
    ``w`` of ``k`` was acknowledged before ``r`` was invoked, and every write
    that could have produced ``v`` completed before ``w`` was invoked.

In every linearization those writes come before ``w``, which comes before
``r``; so ``r`` must see ``w`` or something later, never ``v``. "Could have
produced ``v``" counts writes and compare-and-sets of ``v`` that succeeded or
whose outcome is unknown (a timed-out operation may take effect at any later
time, so it never completes here), and for ``v = None`` (absent) the initial
state and deletes. A write of ``v`` still outstanding when the read completes
also counts as never completing. A read of a value nothing wrote or may still
write is impossible too. Failed operations changed nothing.

The rule is sound (it flags only histories that are not linearizable) but not
complete: it misses violations that need several reads to show (a stale read
after a newer read, say), which ``check_history`` still finds.

Values are compared by the checker's typed rule (``check.values``):
``true`` and ``1`` are different values.

Per key the monitor keeps the acknowledged writes' (ok time, invoke time) in
completion order with a running maximum of invoke times, and per value the
latest completion of a write that produced it: memory linear in the writes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quorate.check.values import NotJsonError, freeze
from quorate.errors import InvariantViolation

__all__ = ["LostWriteMonitor", "typed_value_key"]



def typed_value_key(value: Any) -> Hashable:
    """A hashable key that compares by the checker's typed JSON rule
    (``check.values``: ``true`` is not ``1``); a value that is not JSON
    keys by its representation (never equal to a JSON value)."""
    try:
        return freeze(value)
    except NotJsonError:
        return ("not json", repr(value))


@dataclass(slots=True)
class _Key:
    ok_times: list[float] = field(default_factory=list)
    """Ok times of acknowledged writes, in the order they completed."""
    max_invoke: list[float] = field(default_factory=list)
    """Running maximum of those writes' invoke times."""
    produced: dict[Hashable, float] = field(default_factory=lambda: {None: -math.inf})
    """Value -> the latest completion of a write that produced it (inf: may still)."""
    outstanding: dict[Hashable, int] = field(default_factory=dict)
    """Value -> writes of it invoked and not yet completed."""


@dataclass(slots=True)
class _Invoked:
    f: str
    key: Any
    writes: tuple[Hashable] | None
    """``(value key,)`` of what this operation writes; None if it writes nothing."""
    time: float


class LostWriteMonitor:
    """Checks every completed read against the writes acknowledged before it."""

    __slots__ = ("_invoked", "_keys", "reads_checked")

    def __init__(self) -> None:
        self._keys: dict[Hashable, _Key] = {}
        self._invoked: dict[Any, _Invoked] = {}
        self.reads_checked = 0

    def observe(self, event: Mapping[str, Any]) -> None:
        """One history event (``invoke``/``ok``/``fail``/``info``), in time order;
        raises ``InvariantViolation`` when a read saw a lost write."""
        kind = event.get("type")
        process = event.get("process")
        if kind == "invoke":
            f = event.get("f")
            writes = self._written(f, event.get("value"))
            invoked = _Invoked(str(f), event.get("key"), writes, float(event["time"]))
            self._invoked[process] = invoked
            if writes is not None:
                state = self._key(invoked.key)
                state.outstanding[writes[0]] = state.outstanding.get(writes[0], 0) + 1
            return
        op = self._invoked.pop(process, None)
        if op is None:
            return
        now = float(event["time"])
        state = self._key(op.key)
        if op.writes is not None:
            written = op.writes[0]
            state.outstanding[written] -= 1
            if kind == "ok":
                state.produced[written] = max(state.produced.get(written, -math.inf), now)
                state.ok_times.append(now)
                previous = state.max_invoke[-1] if state.max_invoke else -math.inf
                state.max_invoke.append(max(previous, op.time))
            elif kind == "info":
                state.produced[written] = math.inf
        elif kind == "ok" and op.f == "read":
            self._check_read(op, state, event.get("value"), now)

    @staticmethod
    def _written(f: Any, value: Any) -> tuple[Hashable] | None:
        """``(value key,)`` of what the operation writes, or None if it writes nothing."""
        if f == "delete":
            return (None,)  # absent, as in the initial state
        if f == "cas":
            if not isinstance(value, list | tuple) or len(value) != 2:
                return None
            return (typed_value_key(value[1]),)
        if f == "write":
            return (typed_value_key(value),)
        return None

    def _key(self, key: Any) -> _Key:
        k = typed_value_key(key)
        state = self._keys.get(k)
        if state is None:
            state = self._keys[k] = _Key()
        return state

    def _check_read(self, op: _Invoked, state: _Key, value: Any, now: float) -> None:
        self.reads_checked += 1
        v = typed_value_key(value)
        produced = math.inf if state.outstanding.get(v, 0) > 0 else state.produced.get(v)
        if produced is None:
            raise InvariantViolation(
                f"read of {op.key!r} invoked at t={op.time:.6f} returned {value!r}, "
                "which no write produced or may still produce"
            )
        acked = bisect.bisect_left(state.ok_times, op.time)
        if acked == 0:
            return
        latest_invoke = state.max_invoke[acked - 1]
        if latest_invoke > produced:
            source = (
                "only the initial state held that value"
                if produced == -math.inf
                else f"every write of that value had completed by t={produced:.6f}"
            )
            raise InvariantViolation(
                f"acknowledged write lost: a read of {op.key!r} invoked at t={op.time:.6f} "
                f"(ok at t={now:.6f}) returned {value!r}, but a write of that key invoked at "
                f"t={latest_invoke:.6f} was acknowledged before the read began, and {source}"
            )
