"""Histories from concurrent clients of a simulated atomic register.

Theory of operation. Clients (one per process slot) invoke reads, writes and
compare-and-sets on a set of keys; each operation takes effect atomically at
one random instant between its invoke and its completion (its linearization
point), so every history produced here is linearizable by construction. That
makes it the reference input for the checker's property tests and benchmark.

- A step picks a random client slot: an idle slot invokes a new operation; a
  busy one either reaches its linearization point or, once past it, completes.
- A cas whose expected value differs from the register completes ``fail`` (it
  took no effect), as a real compare-and-set does.
- With probability ``fail_rate`` an operation completes ``fail`` before taking
  effect. With probability ``info_rate`` it completes ``info``: before taking
  effect, it may still take effect at a random later step or never; after
  taking effect, the client simply never learns the result. As in Jepsen, the
  slot then continues under a fresh process number.
- Randomness comes only from the ``random.Random`` passed in: one seed, one history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

LINGERING_EFFECT_PROBABILITY: Final = 0.05
"""Per step, chance that one unknown (info) operation still takes effect."""

CAS_EXPECTS_CURRENT_PROBABILITY: Final = 0.5
"""Chance that a cas expects the register's current value (so it may succeed)."""


@dataclass(slots=True)
class _InFlight:
    process: int
    f: str
    key: int
    value: object
    took_effect: bool = False
    result: object = None
    succeeded: bool = True


def simulate_register_history(
    rng: random.Random,
    operations: int,
    keys: int = 1,
    processes: int = 5,
    values: int = 5,
    fail_rate: float = 0.0,
    info_rate: float = 0.0,
) -> list[dict[str, object]]:
    """Events (Jepsen-style dicts) of ``operations`` operations on ``keys`` registers.

    Written values are drawn from ``range(values)``: few values make the search
    harder, as in real tests. The result is always linearizable.
    """
    if operations < 0 or keys < 1 or processes < 1 or values < 1:
        raise ValueError("operations >= 0, keys >= 1, processes >= 1 and values >= 1 are required")
    register: dict[int, object] = {}
    slots: list[_InFlight | None] = [None] * processes
    slot_process = list(range(processes))
    next_process = processes
    lingering: list[_InFlight] = []
    events: list[dict[str, object]] = []
    invoked = 0

    def emit(op: _InFlight, kind: str, value: object) -> None:
        events.append(
            {"process": op.process, "type": kind, "f": op.f, "key": op.key, "value": value,
             "index": len(events)}
        )

    def take_effect(op: _InFlight) -> None:
        current = register.get(op.key)
        if op.f == "read":
            op.result = current
        elif op.f == "write":
            register[op.key] = op.value
        else:
            pair = op.value
            assert isinstance(pair, list)
            expected, new = pair[0], pair[1]
            op.succeeded = current == expected
            if op.succeeded:
                register[op.key] = new
        op.took_effect = True

    while invoked < operations or any(slot is not None for slot in slots):
        if lingering and rng.random() < LINGERING_EFFECT_PROBABILITY:
            take_effect(lingering.pop(rng.randrange(len(lingering))))
        index = rng.randrange(processes)
        op = slots[index]
        if op is None:
            if invoked == operations:
                continue
            invoked += 1
            key = rng.randrange(keys)
            choice = rng.random()
            if choice < 0.5:
                op = _InFlight(slot_process[index], "read", key, None)
            elif choice < 0.8:
                op = _InFlight(slot_process[index], "write", key, rng.randrange(values))
            else:
                current = register.get(key)
                expected = (
                    current
                    if rng.random() < CAS_EXPECTS_CURRENT_PROBABILITY
                    else rng.randrange(values)
                )
                op = _InFlight(slot_process[index], "cas", key, [expected, rng.randrange(values)])
            slots[index] = op
            emit(op, "invoke", op.value)
            continue
        if not op.took_effect:
            draw = rng.random()
            if draw < fail_rate:
                emit(op, "fail", op.value)
                slots[index] = None
            elif draw < fail_rate + info_rate:
                emit(op, "info", op.value)
                if rng.random() < 0.5:
                    lingering.append(op)
                slots[index] = None
                slot_process[index] = next_process
                next_process += 1
            else:
                take_effect(op)
            continue
        if rng.random() < info_rate:
            emit(op, "info", op.value if op.f != "read" else None)
            slot_process[index] = next_process
            next_process += 1
        elif op.f == "read":
            emit(op, "ok", op.result)
        else:
            emit(op, "ok" if op.succeeded else "fail", op.value)
        slots[index] = None
    return events
