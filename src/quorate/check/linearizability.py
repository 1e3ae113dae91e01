"""Linearizability of register histories: the Wing & Gong search with Lowe's memo.

Theory of operation. A history is linearizable when every operation can be
given one instant between its call and its return such that, in that order,
the operations are those of a single atomic register (Herlihy & Wing, 1990).
The search is WGL: Wing & Gong's backtracking (1993) over a doubly linked list
of call and return entries, with Lowe's improvement (2017) of remembering each
(set of linearized operations, register state) configuration already explored
so no configuration is explored twice.

- The search walks the entry list from its head. At a call entry it tries to
  linearize that operation now: if the register model allows it and the
  resulting configuration is new, the operation's entries are lifted out of the
  list and the walk restarts from the head. At a return entry, the operation
  returned without being linearized, so the last choice is undone (the entries
  are put back, dancing-links style) and the walk continues after it.
- P-compositionality (Herlihy & Wing, locality): a history is linearizable iff
  each key's sub-history is, so keys are checked one by one; small keys first.
- ``fail`` operations did not take effect and are left out. ``info`` operations
  have no return entry: they may be linearized at any point after their call,
  and the search succeeds once every ``ok`` operation is linearized, so they may
  also never happen. An ``info`` read constrains nothing and is left out.
- The register starts at ``null``. read(v) needs state ``v``; write(v) sets it;
  cas(e, n) needs state ``e`` and sets ``n``. "Same value" is the typed rule of
  ``quorate.check.values`` (``true`` is not ``1``, ``1`` is ``1.0``), which the
  frozen values' ``==`` and ``hash`` implement; values are interned to small
  ints through a dict keyed by them, so the memo inherits the rule.
- The linearized set is a Python int bitset; the memo is a set of
  ``(bitset, state)`` pairs; operation data lives in flat lists.

Time is measured with a clock passed in (this package reads no clock itself);
past ``timeout_s`` the verdict is ``unknown``. On a violation the operations of
the failing key are shrunk to a small set that still cannot be ordered: first
the operations called before the furthest return the search could not get
past, then ddmin-style removal of chunks and single operations while the rest
stays non-linearizable. Removing a write also removes every read or cas that
needs the value it writes: a sub-history closed that way is linearizable
whenever the whole one is, so the explanation is a true witness (and a stale
read never turns into a trivial "read of a value never written").
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from quorate.check.history import INF, Operation, describe, load_history
from quorate.check.values import show, thaw
from quorate.errors import ConfigError

Verdict = Literal["linearizable", "not_linearizable", "unknown"]
Clock = Callable[[], float]

_READ: Final = 0
_WRITE: Final = 1
_CAS: Final = 2

CLOCK_CHECK_INTERVAL_STEPS: Final = 4096
"""Search steps between two clock readings: a reading costs more than a step."""

SHRINK_MAX_CANDIDATES: Final = 2000
"""Sub-histories tried while shrinking an explanation, at most."""

SHRINK_CANDIDATE_MAX_STEPS: Final = 200_000
"""Search steps allowed for one shrinking candidate before it counts as undecided."""


class _GaveUp(Exception):
    """The search ran out of time or steps before reaching a verdict."""


@dataclass(slots=True)
class _Budget:
    """When a search must stop: an absolute deadline on ``clock``, and/or a step cap."""

    clock: Clock | None
    deadline: float | None
    max_steps: int | None = None

    def expired(self) -> bool:
        return self.clock is not None and self.deadline is not None and self.clock() > self.deadline


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a history is not linearizable: a small set of one key's operations
    that admits no order, and a true witness: any history containing it, with
    every write its reads and cases depend on, is not linearizable either.
    ``stuck_at`` is the operation whose return the search could not get past;
    ``minimal`` is true when shrinking finished: removing any one operation
    (with the operations that need the value it writes) leaves an orderable set.
    """

    key: Hashable
    operations: tuple[Operation, ...]
    stuck_at: Operation | None
    minimal: bool

    def render(self) -> str:
        """The explanation as text a person can follow."""
        key = "the register" if self.key is None else f"key {show(self.key)}"
        count = len(self.operations)
        lines = [
            f"{key}: this operation cannot be linearized:"
            if count == 1
            else f"{key}: these {count} operations cannot be linearized:"
        ]
        lines += [f"  {describe(op, with_key=False)}" for op in self.operations]
        needed = _needs(self.operations[0]) if count == 1 else _NOTHING
        if needed is not _NOTHING and needed is not None and isinstance(needed, Hashable):
            # A lone read or cas is only left when nothing writes what it needs.
            lines.append(f"  (no operation writes {show(needed)} to {key})")
        elif self.stuck_at is not None:
            lines.append(
                f"  (no order reaches the return of: {describe(self.stuck_at, with_key=False)})"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "key": thaw(self.key),
            "minimal": self.minimal,
            "operations": [_operation_json(op) for op in self.operations],
            "stuck_at": None if self.stuck_at is None else _operation_json(self.stuck_at),
            "text": self.render(),
        }


def _operation_json(op: Operation) -> dict[str, object]:
    return {
        "process": op.process,
        "f": op.f,
        "value": thaw(op.value),
        "call": op.call_index,
        "return": None if op.return_index == INF else op.return_index,
        "outcome": op.outcome,
    }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on a history, with what was checked and, on a violation, why."""

    verdict: Verdict
    keys_checked: int
    keys: int
    operations: int
    elapsed_s: float
    explanation: Explanation | None = None

    @property
    def linearizable(self) -> bool | None:
        """True or False, or None when the checker gave up (``unknown``)."""
        if self.verdict == "unknown":
            return None
        return self.verdict == "linearizable"

    def render(self) -> str:
        """The verdict as lines a person reads (``to_json`` is for programs)."""
        counts = f"{self.operations} operations on {self.keys} {'key' if self.keys == 1 else 'keys'}"
        if self.elapsed_s > 0:
            counts += f", {self.elapsed_s:.3f} s"
        if self.verdict == "linearizable":
            return f"linearizable ({counts})"
        if self.verdict == "unknown":
            return (
                f"unknown: gave up within the time limit after {self.keys_checked} of "
                f"{self.keys} keys ({counts})"
            )
        lines = [f"NOT linearizable ({counts})"]
        if self.explanation is not None:
            lines.append(self.explanation.render())
            if not self.explanation.minimal:
                lines.append("  (shrinking stopped early: some of these may not be needed)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "verdict": self.verdict,
            "linearizable": self.linearizable,
            "keys_checked": self.keys_checked,
            "keys": self.keys,
            "operations": self.operations,
            "elapsed_s": round(self.elapsed_s, 6),
        }
        if self.explanation is not None:
            out["explanation"] = self.explanation.to_json()
        return out


def check_history(
    events: Sequence[Mapping[str, object]] | str | Path,
    timeout_s: float = 60.0,
    clock: Clock | None = None,
) -> CheckResult:
    """Check a history (events, or a path to a JSON array / JSON Lines file).

    ``clock`` is a monotonic clock in seconds (e.g. ``time.monotonic``); without
    one no time limit is enforced and ``elapsed_s`` is 0. Raises ``HistoryError``
    for malformed input and ``ConfigError`` for a non-positive ``timeout_s``.
    """
    budget, start = _budget(timeout_s, clock)
    return _check(load_history(events), budget, start)


def check_operations(
    operations: Sequence[Operation],
    timeout_s: float = 60.0,
    clock: Clock | None = None,
) -> CheckResult:
    """Check operations already paired by ``load_history`` (see ``check_history``).

    Keys and values must be in the typed form ``load_history`` gives them
    (``quorate.check.values.freeze``); a raw Python ``True`` would equal ``1``.
    """
    budget, start = _budget(timeout_s, clock)
    return _check(operations, budget, start)


def _budget(timeout_s: float, clock: Clock | None) -> tuple[_Budget, float]:
    if not timeout_s > 0:
        raise ConfigError(f"timeout_s must be positive, got {timeout_s!r}")
    if clock is None:
        return _Budget(None, None), 0.0
    start = clock()
    return _Budget(clock, start + timeout_s), start


def _check(operations: Sequence[Operation], budget: _Budget, start: float) -> CheckResult:
    """Check operations key by key, small keys first, within ``budget``."""
    by_key: dict[Hashable, list[Operation]] = {}
    for op in operations:
        by_key.setdefault(op.key, []).append(op)
    keys_checked = 0

    def result(verdict: Verdict, explanation: Explanation | None = None) -> CheckResult:
        elapsed_s = budget.clock() - start if budget.clock is not None else 0.0
        return CheckResult(
            verdict, keys_checked, len(by_key), len(operations), elapsed_s, explanation
        )

    for key, ops in sorted(by_key.items(), key=lambda item: len(item[1])):
        relevant = _relevant(ops)
        try:
            linearizable, stuck_position = _search(relevant, budget)
        except _GaveUp:
            return result("unknown")
        keys_checked += 1
        if not linearizable:
            return result("not_linearizable", _explain(key, relevant, stuck_position, budget))
    return result("linearizable")


def _relevant(ops: Sequence[Operation]) -> list[Operation]:
    """The operations that constrain the register: not failed, not unknown reads."""
    return [
        op
        for op in ops
        if op.outcome != "fail" and not (op.f == "read" and op.outcome == "info")
    ]


def _search(ops: Sequence[Operation], budget: _Budget) -> tuple[bool, int]:
    """WGL over one key's operations: (linearizable?, furthest stuck return position).

    Raises ``_GaveUp`` when ``budget`` runs out.
    """
    values: dict[Hashable, int] = {None: 0}
    kind: list[int] = []
    arg_a: list[int] = []
    arg_b: list[int] = []
    is_ok: list[bool] = []
    entries: list[tuple[int, int, int]] = []  # (position, 0 call / 1 return, op)
    for i, operation in enumerate(ops):
        if operation.f == "read":
            kind.append(_READ)
            arg_a.append(values.setdefault(operation.value, len(values)))
            arg_b.append(0)
        elif operation.f == "write":
            kind.append(_WRITE)
            arg_a.append(values.setdefault(operation.value, len(values)))
            arg_b.append(0)
        else:
            expected, new = operation.value if isinstance(operation.value, tuple) else (None, None)
            kind.append(_CAS)
            arg_a.append(values.setdefault(expected, len(values)))
            arg_b.append(values.setdefault(new, len(values)))
        is_ok.append(operation.outcome == "ok")
        entries.append((operation.call_index, 0, i))
        if operation.return_index != INF:
            entries.append((operation.return_index, 1, i))
    entries.sort()

    # Node 0 is the head sentinel, node len(entries)+1 the tail sentinel.
    count = len(entries)
    tail = count + 1
    nxt = [*range(1, count + 2), tail]
    prv = [0, *range(0, count + 1)]
    node_op = [-1] * (count + 2)
    node_is_call = [False] * (count + 2)
    node_position = [0] * (count + 2)
    return_node = [-1] * len(ops)
    call_node = [-1] * len(ops)
    for node, (position, is_return, op_index) in enumerate(entries, start=1):
        node_op[node] = op_index
        node_is_call[node] = not is_return
        node_position[node] = position
        if is_return:
            return_node[op_index] = node
        else:
            call_node[op_index] = node

    # An ok read or cas that needs a value nothing writes can never take
    # effect: no search needed (``null`` is the initial value, always there).
    written = {arg_a[i] if kind[i] == _WRITE else arg_b[i] for i in range(len(ops)) if kind[i] != _READ}
    for i in range(len(ops)):
        if is_ok[i] and kind[i] != _WRITE and arg_a[i] != 0 and arg_a[i] not in written:
            return False, ops[i].return_index
    # needed_by[v]: the ops that need the register to hold value v. An info op
    # whose new value no unlinearized op needs is pointless to linearize: any
    # order using it still works without it (what follows it either ignores
    # the state or comes after another write).
    needed_by = [0] * len(values)
    for i in range(len(ops)):
        if kind[i] != _WRITE:
            needed_by[arg_a[i]] |= 1 << i
    remaining_ok = sum(is_ok)
    info_mask = sum(1 << i for i, ok in enumerate(is_ok) if not ok)
    state = 0
    linearized = 0
    # Memo: (linearized ok ops, state) -> the sets of linearized info ops seen
    # with it. A configuration is dominated by a seen one with fewer info ops
    # linearized: that one could still do everything this one can.
    seen: dict[tuple[int, int], list[int]] = {}
    stack: list[tuple[int, int]] = []  # (call node, state before it)
    stuck_position = -1
    steps = 0
    max_steps = budget.max_steps
    timed = budget.clock is not None and budget.deadline is not None
    # Each level first tries ok ops (pass 1), then info ops (pass 2), so the
    # configurations using fewer unknown ops are explored, and memoised, first.
    info_pass = False
    entry = nxt[0]
    while remaining_ok:
        steps += 1
        if steps % CLOCK_CHECK_INTERVAL_STEPS == 0 and timed and budget.expired():
            raise _GaveUp
        if max_steps is not None and steps > max_steps:
            raise _GaveUp
        if entry != tail and node_is_call[entry]:
            op = node_op[entry]
            if is_ok[op] == info_pass:
                entry = nxt[entry]
                continue
            k = kind[op]
            if info_pass and not needed_by[arg_a[op] if k == _WRITE else arg_b[op]] & ~linearized:
                entry = nxt[entry]
                continue
            if k == _WRITE:
                new_state = arg_a[op]
            elif state == arg_a[op]:
                new_state = state if k == _READ else arg_b[op]
            else:
                entry = nxt[entry]
                continue
            candidate = linearized | (1 << op)
            memo_key = (candidate & ~info_mask, new_state)
            infos = candidate & info_mask
            known = seen.get(memo_key)
            if known is None:
                seen[memo_key] = [infos]
                dominated = False
            else:
                dominated = any(earlier & ~infos == 0 for earlier in known)
                if not dominated:
                    known.append(infos)
            if not dominated:
                stack.append((entry, state))
                state = new_state
                linearized = candidate
                remaining_ok -= is_ok[op]
                # Lift the call entry and, if any, the return entry.
                nxt[prv[entry]] = nxt[entry]
                prv[nxt[entry]] = prv[entry]
                ret = return_node[op]
                if ret >= 0:
                    nxt[prv[ret]] = nxt[ret]
                    prv[nxt[ret]] = prv[ret]
                info_pass = False
                entry = nxt[0]
                continue
            if k != _READ:
                entry = nxt[entry]
                continue
            # A read that fits the state now can be moved to now in any order
            # that works from here (every unlinearized op returns after its
            # call, and a read leaves the state alone). Its configuration was
            # explored and failed, so this one fails too: backtrack.
        else:
            if entry != tail and node_position[entry] > stuck_position:
                stuck_position = node_position[entry]
            if not info_pass and info_mask:
                info_pass = True
                entry = nxt[0]
                continue
        # Backtrack: a return entry (or the end) came before every ok op was
        # linearized, or this configuration is known to fail. Popping a read
        # pops further, by the same argument as above.
        while True:
            if not stack:
                return False, stuck_position
            entry, state = stack.pop()
            op = node_op[entry]
            linearized &= ~(1 << op)
            remaining_ok += is_ok[op]
            # Put the entries back in the reverse order of lifting.
            ret = return_node[op]
            if ret >= 0:
                nxt[prv[ret]] = ret
                prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            if kind[op] != _READ:
                break
        # Resume the popped level in the pass that chose the popped op.
        info_pass = not is_ok[op]
        entry = nxt[entry]
    return True, stuck_position


_NOTHING: Final = object()
"""Marks "no value" where ``None`` is a real value (the initial, absent state)."""


def _needs(op: Operation) -> object:
    """The value the register must hold for ``op`` to take effect, or ``_NOTHING``."""
    if op.f == "read":
        return op.value if op.outcome == "ok" else _NOTHING
    if op.f == "cas" and isinstance(op.value, tuple):
        expected: Hashable = op.value[0]
        return expected
    return _NOTHING


def _writes(op: Operation) -> object:
    """The value ``op`` may leave in the register, or ``_NOTHING``."""
    if op.f == "write":
        return op.value
    if op.f == "cas" and isinstance(op.value, tuple):
        new: Hashable = op.value[1]
        return new
    return _NOTHING


def _remove(current: Sequence[Operation], chosen: Sequence[Operation]) -> list[Operation]:
    """``current`` without ``chosen`` and without every op that needs a value a
    removed op writes (transitively).

    Why: if a history is linearizable, so is every sub-history closed this
    way — in a linearization, the write a read or cas depends on stays, and
    nothing removed sat between them — so a closed sub-history that cannot be
    ordered is a true witness against the whole history. Dropping a write but
    keeping its reader would invent a violation.
    """
    removed = {id(op) for op in chosen}
    lost = {_writes(op) for op in chosen} - {_NOTHING}
    changed = bool(lost)
    while changed:
        changed = False
        for op in current:
            if id(op) not in removed and _needs(op) in lost:
                removed.add(id(op))
                written = _writes(op)
                if written is not _NOTHING and written not in lost:
                    lost.add(written)
                changed = True
    return [op for op in current if id(op) not in removed]


def _explain(
    key: Hashable, ops: Sequence[Operation], stuck_position: int, budget: _Budget
) -> Explanation:
    """Shrink a non-linearizable key history to a small set that still cannot be ordered.

    Candidates are closed sub-histories (see ``_remove``): first the ops called
    up to the furthest return the search could not get past, then ddmin-style
    removal of chunks, down to single ops, until no removal keeps a violation.
    """
    stuck_at = next((op for op in ops if op.return_index == stuck_position), None)
    checks = 0

    def still_fails(candidate: Sequence[Operation]) -> bool:
        nonlocal checks
        if checks >= SHRINK_MAX_CANDIDATES or budget.expired():
            raise _GaveUp
        checks += 1
        trial = _Budget(budget.clock, budget.deadline, SHRINK_CANDIDATE_MAX_STEPS)
        try:
            return not _search(candidate, trial)[0]
        except _GaveUp:
            return False

    current = list(ops)
    minimal = False
    try:
        prefix = _remove(current, [op for op in current if op.call_index > stuck_position])
        if prefix and len(prefix) < len(current) and still_fails(prefix):
            current = prefix
        # Large chunks first, then single operations until none can go.
        chunk = max(1, len(current) // 2)
        while True:
            removed_any = False
            i = 0
            while i < len(current):
                candidate = _remove(current, current[i : i + chunk])
                if candidate and still_fails(candidate):
                    current = candidate
                    removed_any = True
                else:
                    i += chunk
            if chunk == 1 and not removed_any:
                break
            chunk = max(1, chunk // 2)
        minimal = True
    except _GaveUp:
        pass
    if stuck_at is not None and stuck_at not in current:
        stuck_at = None
    return Explanation(key, tuple(current), stuck_at, minimal)
