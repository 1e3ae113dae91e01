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
line); the first non-blank character decides. Every field read is checked,
and an event that breaks a rule is bad input (``HistoryError``), never a
guess:

- ``process``: an integer, or ``"nemesis"``; required.
- ``type`` and ``f``: strings, one of ``invoke ok fail info`` and of
  ``read write cas``; required. EDN-style keywords (``":read"``) are accepted.
- ``key``: any JSON value; absent means every operation acts on one register.
- ``value``: any JSON value; required on a write's invoke and a read's ``ok``.
  ``cas`` carries ``[expected, new]``; ``null`` is the initial (absent) value.
- ``time``: optional, a finite number when present (the search uses event
  order, not time). Other extra fields (``index``) are ignored.

Keys and values are compared under the typed rule of ``quorate.check.values``:
``true`` is not ``1``; ``1`` and ``1.0`` are the same number; arrays and
objects compare item by item.

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
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from quorate.check.values import NotJsonError, freeze, kind_of, quote, show
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

    ``key`` and ``value`` are JSON values in the checker's typed form
    (``quorate.check.values.freeze``: ``true`` is not ``1``; arrays are
    tuples, objects frozensets). ``value`` is what the operation is about: for
    a read, the value it returned (``None`` if it never returned a value); for
    a write, the value written; for a cas, the pair ``(expected, new)``.
    """

    process: int
    f: OpName
    key: Hashable
    value: Hashable
    call_index: int
    return_index: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class _Located:
    """An event with the place it came from, for error messages."""

    location: str
    position: int
    event: object


def load_history_text(text: str) -> list[Operation]:
    """Pair the events of a JSON array or JSON Lines document (see ``load_history``)."""
    return _pair(_parse_text(text))


_decode_line = json.JSONDecoder().decode


def _parse_text(text: str) -> list[_Located]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        start_line = text[: len(text) - len(stripped)].count("\n") + 1
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from None
        except (ValueError, RecursionError) as exc:
            # The parser's other refusals (an integer literal of thousands of
            # digits, nesting beyond the stack) carry no position.
            raise HistoryError(f"the array at line {start_line}", _unparsable(exc)) from None
        if not isinstance(document, list):
            raise HistoryError(f"line {start_line}", "expected a JSON array of events")
        return [_Located(f"element {i}", i, e) for i, e in enumerate(document)]
    located: list[_Located] = []
    # Split on "\n" only: JSON strings may hold other line separators (U+2028).
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            event = _decode_line(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"line {number}", f"invalid JSON: {exc.msg}") from None
        except (ValueError, RecursionError) as exc:
            raise HistoryError(f"line {number}", _unparsable(exc)) from None
        located.append(_Located(f"line {number}", len(located), event))
    return located


def _unparsable(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "invalid JSON: arrays or objects nested too deeply"
    return f"invalid JSON: {exc}"


def _read_source(source: Sequence[Mapping[str, object]] | str | Path) -> list[_Located]:
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise HistoryError(str(path), f"cannot read the history: {reason}") from None
        return _parse_text(text)
    return [_Located(f"event {i}", i, e) for i, e in enumerate(source)]


def _keyword(raw: str) -> str:
    """Jepsen's EDN keywords arrive as ``":read"``; the colon carries no meaning here."""
    return raw[1:] if raw.startswith(":") else raw


def _choice(
    event: Mapping[str, object], field: str, allowed: frozenset[str], expected: str, where: str
) -> str:
    """A field that names one of ``allowed`` (``type``, ``f``)."""
    raw = event.get(field)
    if type(raw) is str and raw in allowed:
        return raw  # the common case
    if field not in event:
        raise HistoryError(where, f"missing field '{field}'")
    if not isinstance(raw, str):
        raise HistoryError(
            where, f"'{field}' must be a string ({expected}), got the {kind_of(raw)} {quote(raw)}"
        )
    name = _keyword(raw)
    if name not in allowed:
        raise HistoryError(where, f"unknown {field} {raw!r} (expected {expected})")
    return name


def _check_time(raw: object, where: str) -> None:
    """``time`` is not used by the search, but a history whose times are not
    numbers was not written by a client that measured them: refuse it."""
    if type(raw) is int:
        return
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise HistoryError(where, f"'time' must be a finite number, got {quote(raw)}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise HistoryError(where, f"'time' must be a finite number, got {quote(raw)}")


def _frozen(event: Mapping[str, object], field: str, where: str) -> Hashable:
    """``key`` or ``value`` (``null`` when absent) in the typed form of ``freeze``."""
    raw = event.get(field)
    if raw is None or type(raw) is int or type(raw) is str:
        return raw  # the common case, already in its frozen form
    try:
        return freeze(raw)
    except NotJsonError as exc:
        raise HistoryError(where, f"'{field}': {exc}") from None


def _as_event(located: _Located) -> Mapping[str, object]:
    event = located.event
    if not isinstance(event, dict):
        raise HistoryError(located.location, f"expected a JSON object, got {kind_of(event)}")
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
            raise HistoryError(where, f"'process' must be an integer, got {quote(process)}")
        kind = _choice(event, "type", _EVENT_TYPES, "invoke, ok, fail or info", where)
        f = _choice(event, "f", _OP_NAMES, "read, write or cas", where)
        op_name: OpName = "read" if f == "read" else "write" if f == "write" else "cas"
        if "time" in event:
            _check_time(event["time"], where)
        key = _frozen(event, "key", where)
        value = _frozen(event, "value", where)
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
                    where, f"a cas value must be a pair [expected, new], got {quote(event.get('value'))}"
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
                where, f"completion key {show(key)} differs from the invoke's {show(pending.key)}"
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


def describe(op: Operation, with_key: bool = True) -> str:
    """One readable line: ``process 3 write 5 key "x" [call 10, return 14] ok``."""
    if op.f == "cas" and isinstance(op.value, tuple):
        what = f"cas {show(op.value[0])} -> {show(op.value[1])}"
    elif op.f == "read":
        what = f"read {show(op.value)}" if op.outcome == "ok" else "read ?"
    else:
        what = f"write {show(op.value)}"
    ret = "never" if op.return_index == INF else str(op.return_index)
    key = "" if op.key is None or not with_key else f" key {show(op.key)}"
    return f"process {op.process} {what}{key} [call {op.call_index}, return {ret}] {op.outcome}"
