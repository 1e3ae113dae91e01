"""JSON values as the checker compares them: typed, hashable, structural.

Theory of operation. A register's state, a read's result, a written value and
a key are JSON values. The checker needs to know when two of them are *the
same value*, and it asks Python's ``==`` and ``hash`` (in dicts, sets and the
search's memo). Python's own answer is wrong for JSON: ``True == 1`` and
``hash(True) == hash(1)``, so a history that writes ``true`` and reads ``1``
would pass. ``freeze`` turns a parsed JSON value into a form whose ``==`` and
``hash`` follow this rule, the checker's only notion of equality:

- ``null``, booleans, numbers, strings, arrays and objects are six kinds; values
  of different kinds are never equal. In particular ``true`` is not ``1`` and
  ``false`` is not ``0`` (as in Jepsen's Knossos and Porcupine).
- Numbers are equal when their values are: ``1``, ``1.0`` and ``1e0`` are the
  same number, as JSON has one number type and most tools parse all three
  alike. Numbers must be finite (``NaN`` and ``Infinity`` are not JSON, and a
  literal beyond a double's range such as ``1e400`` is refused rather than
  silently equal to every other overflowing literal). Integers compare exactly;
  a literal with a fraction or exponent is read as an IEEE double first.
- Strings are equal when their characters are.
- Arrays are equal when they have the same length and equal items in order;
  objects when they have the same member names with equal values (member order
  does not matter). Both apply this rule recursively.

Representation: ``null`` is ``None``, a boolean is ``JsonBool.TRUE`` /
``JsonBool.FALSE`` (never a Python ``bool``, which would equal ``1``), numbers
are ``int`` / ``float`` (Python compares them by value with matching hashes),
strings are ``str``, arrays are tuples and objects frozensets of
``(name, value)`` pairs. ``thaw`` gives back plain JSON data for display.
Nesting is limited to ``MAX_NESTING_DEPTH`` levels so no frozen value can
exhaust Python's stack when compared, hashed or printed.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Hashable
from typing import Final

MAX_NESTING_DEPTH: Final = 100
"""Arrays and objects nested deeper than this (levels) are refused as bad input."""

SHOW_MAX_CHARS: Final = 60
"""Longest rendering of a value quoted in an error message, in characters."""


class JsonBool(enum.Enum):
    """A JSON boolean: equal only to itself, unlike Python's ``True == 1``."""

    FALSE = False
    TRUE = True

    def __repr__(self) -> str:
        return "true" if self is JsonBool.TRUE else "false"


class NotJsonError(ValueError):
    """A value that is not JSON (or not one the checker accepts); the message says why."""


def freeze(value: object) -> Hashable:
    """``value`` (as ``json.loads`` returns it) in the typed, hashable form above.

    Tuples are taken as arrays, and a ``JsonBool`` as the boolean it is.
    Raises ``NotJsonError`` for anything else: non-finite numbers, object member
    names that are not strings, other Python types, nesting deeper than
    ``MAX_NESTING_DEPTH``.
    """
    kind = type(value)
    if value is None or kind is str or kind is int:
        return value  # the common case, already in its frozen form
    return _freeze(value, 0)


def _freeze(value: object, depth: int) -> Hashable:
    kind = type(value)
    if value is None or kind is str or kind is int:
        return value
    if isinstance(value, bool):
        return JsonBool.TRUE if value else JsonBool.FALSE
    if isinstance(value, JsonBool):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJsonError(
                f"{value!r} is not a JSON number (numbers must be finite and within a double's range)"
            )
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple | dict) and depth >= MAX_NESTING_DEPTH:
        raise NotJsonError(f"arrays and objects nested more than {MAX_NESTING_DEPTH} levels deep")
    if isinstance(value, list | tuple):
        return tuple([_freeze(item, depth + 1) for item in value])
    if isinstance(value, dict):
        members = []
        for name, item in value.items():
            if not isinstance(name, str):
                raise NotJsonError(f"object member names must be strings, got {name!r}")
            members.append((str(name), _freeze(item, depth + 1)))
        return frozenset(members)
    raise NotJsonError(f"a {type(value).__name__} is not a JSON value")


def thaw(value: Hashable) -> object:
    """The plain JSON data (``json.dumps`` can print it) of a frozen value."""
    if isinstance(value, JsonBool):
        return value is JsonBool.TRUE
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    if isinstance(value, frozenset):
        return {name: thaw(item) for name, item in sorted(value, key=lambda member: str(member[0]))}
    return value


def show(value: Hashable) -> str:
    """A frozen value as compact JSON text, for messages and explanations."""
    return json.dumps(thaw(value))


def kind_of(raw: object) -> str:
    """The JSON kind of a parsed value, for messages: ``array``, ``object``, ``boolean``..."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "boolean"
    if isinstance(raw, int | float):
        return "number"
    if isinstance(raw, str):
        return "string"
    if isinstance(raw, list | tuple):
        return "array"
    if isinstance(raw, dict):
        return "object"
    return type(raw).__name__


def quote(raw: object) -> str:
    """A raw (unfrozen) value for an error message, cut to ``SHOW_MAX_CHARS``."""
    try:
        text = json.dumps(raw)
    except (TypeError, ValueError, RecursionError):
        text = f"a {kind_of(raw)}"
    if len(text) > SHOW_MAX_CHARS:
        text = text[: SHOW_MAX_CHARS - 3] + "..."
    return text
