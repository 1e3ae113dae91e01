"""Histories of client operations: reading, validating, pairing into operations.

Theory of operation. A history is what clients saw: each operation is an
``invoke`` event followed, on the same process, by one completion event —
``ok`` (it took effect and returned), ``fail`` (it certainly did not take
effect) or ``info`` (unknown: it may take effect at any time after its invoke,
or never). The format is Jepsen's, so Jepsen histories converted from EDN to
JSON can be checked as they are::

    {"process": 0, "type": "invoke", "f": "write", "key": "x", "value": 3}
    {"process": 0, "type": "ok",     "f": "write", "key": "x", "value": 3}

A file is either a JSON array of such objects or JSON Lines (one object per
line); the first non-blank character decides. Keywords written the EDN way
(``":read"``, ``":ok"``) are accepted. Extra fields (``time``, ``index``) are
ignored. ``key`` may be absent: then every operation acts on one register.
``cas`` carries ``[expected, new]``. A read's completion carries the value
read; ``null`` is the initial (absent) value.

Pairing rules (invariants of the output):
- a process has at most one outstanding operation; its next completion event
  completes it, and a completion with no outstanding invoke is an error;
- an operation that ended ``info`` never returns (``return_index == INF``);
  Jepsen then retires the process, but a reused process is tolerated: the info
  operation simply stays pending forever while the process goes on;
- an invoke still outstanding when the history ends is treated as ``info``;
- events of the ``nemesis`` process (fault injection, not client operations)
  are skipped.

Positions (``call_index``, ``return_index``) count events from 0 in history
order, skipped nemesis events included, so they point back into the file.
Every error is a ``HistoryError`` whose message names the line (JSON Lines),
the array element, or the list position, and says what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from quorate.errors import QuorateError

INF: Final[int] = 2**63 - 1
"""``return_index`` of an operation that never returned (``info`` or cut off)."""

OpName = Literal["read", "write", "cas"]
Outcome = Literal["ok", "fail", "info"]

_EVENT_TYPES: Final = frozenset({"invoke", "ok", "fail", "info"})
_OP_NAMES: Final = frozenset({"read", "write", "cas"})
_NEMESIS: Final = frozenset({"nemesis", ":nemesis"})


class HistoryError(QuorateError, ValueError):
    """A history that cannot be read; the message names the place and the problem."""

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"{location}: {problem}")
        self.location = location
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation: its invoke paired with its completion.

    ``value`` is what the operation is about, made hashable (JSON arrays become
    tuples, objects frozensets): for a read, the value it returned (``None``
    if it never returned a value); for a write, the value written; for a cas,
    the pair ``(expected, new)``.
    """

    process: int
    f: OpName
    key: Hashable
    value: Hashable
    call_index: int
    return_index: int
    outcome: Outcome


def freeze(value: object) -> Hashable:
    """A JSON value made hashable so it can be a register's state or a key."""
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    if isinstance(value, dict):
        return frozenset((str(k), freeze(v)) for k, v in value.items())
    if isinstance(value, Hashable):
        return value
    raise TypeError(f"not a JSON value: {value!r}")


def thaw(value: Hashable) -> object:
    """The JSON value ``freeze`` made hashable, for display."""
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    if isinstance(value, frozenset):
        return {k: thaw(v) for k, v in sorted(value, key=lambda kv: str(kv[0]))}
    return value


@dataclass(frozen=True, slots=True)
class _Located:
    """An event with the place it came from, for error messages."""

    location: str
    position: int
    event: object


def load_history_text(text: str) -> list[Operation]:
    """Pair the events of a JSON array or JSON Lines document (see ``load_history``)."""
    return _pair(_parse_text(text))


def _parse_text(text: str) -> list[_Located]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from None
        if not isinstance(document, list):
            raise HistoryError("line 1", "expected a JSON array of events")
        return [_Located(f"element {i}", i, e) for i, e in enumerate(document)]
    located: list[_Located] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"line {number}", f"invalid JSON: {exc.msg}") from None
        located.append(_Located(f"line {number}", len(located), event))
    return located


def _read_source(source: Sequence[Mapping[str, object]] | str | Path) -> list[_Located]:
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise HistoryError(str(path), f"cannot read the history: {reason}") from None
        return _parse_text(text)
    return [_Located(f"event {i}", i, e) for i, e in enumerate(source)]


def _keyword(raw: object) -> object:
    """Jepsen's EDN keywords arrive as ``":read"``; the colon carries no meaning here."""
    if isinstance(raw, str) and raw.startswith(":"):
        return raw[1:]
    return raw


def _as_event(located: _Located) -> Mapping[str, object]:
    event = located.event
    if not isinstance(event, dict):
        raise HistoryError(located.location, f"expected a JSON object, got {type(event).__name__}")
    return event


@dataclass(slots=True)
class _Pending:
    """An invoke waiting for its completion."""

    location: str
    position: int
    f: OpName
    key: Hashable
    value: Hashable


def load_history(source: Sequence[Mapping[str, object]] | str | Path) -> list[Operation]:
    """Read a history and pair its events into operations, in invoke order.

    ``source`` is a path (``str`` or ``Path``) to a JSON array or JSON Lines
    file, or the events themselves as a list of dicts. Raises ``HistoryError``.
    """
    return _pair(_read_source(source))


def _pair(events: Iterable[_Located]) -> list[Operation]:
    """Pair invoke and completion events per process (see the module rules)."""
    outstanding: dict[int, _Pending] = {}
    done: list[tuple[int, Operation]] = []
    for located in events:
        event = _as_event(located)
        where = located.location
        if "process" not in event:
            raise HistoryError(where, "missing field 'process'")
        process = event["process"]
        if isinstance(process, str) and process in _NEMESIS:
            continue
        if not isinstance(process, int) or isinstance(process, bool):
            raise HistoryError(where, f"'process' must be an integer, got {process!r}")
        for name in ("type", "f"):
            if name not in event:
                raise HistoryError(where, f"missing field '{name}'")
        kind = _keyword(event["type"])
        if kind not in _EVENT_TYPES:
            raise HistoryError(
                where, f"unknown type {event['type']!r} (expected invoke, ok, fail or info)"
            )
        f = _keyword(event["f"])
        if f not in _OP_NAMES:
            raise HistoryError(where, f"unknown f {event['f']!r} (expected read, write or cas)")
        op_name: OpName = "read" if f == "read" else "write" if f == "write" else "cas"
        try:
            key = freeze(event.get("key"))
            value = freeze(event.get("value"))
        except TypeError as exc:
            raise HistoryError(where, str(exc)) from None
        if kind == "invoke":
            if process in outstanding:
                earlier = outstanding[process]
                raise HistoryError(
                    where,
                    f"process {process} invokes {op_name} while its {earlier.f} invoked at "
                    f"{earlier.location} has not completed",
                )
            if op_name == "write" and "value" not in event:
                raise HistoryError(where, "missing field 'value' (the value a write writes)")
            if op_name == "cas" and not (isinstance(value, tuple) and len(value) == 2):
                raise HistoryError(
                    where, f"a cas value must be a pair [expected, new], got {event.get('value')!r}"
                )
            outstanding[process] = _Pending(where, located.position, op_name, key, value)
            continue
        pending = outstanding.pop(process, None)
        if pending is None:
            raise HistoryError(where, f"{kind} for process {process} without a pending invoke")
        if pending.f != op_name:
            raise HistoryError(
                where,
                f"{kind} {op_name} for process {process} completes a {pending.f} "
                f"invoked at {pending.location}",
            )
        if "key" in event and key != pending.key:
            raise HistoryError(
                where, f"completion key {thaw(key)!r} differs from the invoke's {thaw(pending.key)!r}"
            )
        if op_name == "read":
            if kind == "ok" and "value" not in event:
                raise HistoryError(where, "missing field 'value' (the value the read returned)")
            op_value = value if kind == "ok" else None
        else:
            op_value = pending.value
        outcome: Outcome = "ok" if kind == "ok" else "fail" if kind == "fail" else "info"
        return_index = INF if outcome == "info" else located.position
        done.append(
            (
                pending.position,
                Operation(process, op_name, pending.key, op_value, pending.position, return_index, outcome),
            )
        )
    for process, pending in outstanding.items():
        done.append(
            (
                pending.position,
                Operation(process, pending.f, pending.key, None if pending.f == "read" else pending.value,
                          pending.position, INF, "info"),
            )
        )
    done.sort(key=lambda item: item[0])
    return [op for _, op in done]


def describe(op: Operation) -> str:
    """One readable line: ``process 3 write 5 [call 10, return 14] ok``."""
    if op.f == "cas" and isinstance(op.value, tuple):
        what = f"cas {json.dumps(thaw(op.value[0]))} -> {json.dumps(thaw(op.value[1]))}"
    elif op.f == "read":
        what = f"read {json.dumps(thaw(op.value))}" if op.outcome == "ok" else "read ?"
    else:
        what = f"write {json.dumps(thaw(op.value))}"
    ret = "never" if op.return_index == INF else str(op.return_index)
    key = "" if op.key is None else f" key {json.dumps(thaw(op.key))}"
    return f"process {op.process} {what}{key} [call {op.call_index}, return {ret}] {op.outcome}"
