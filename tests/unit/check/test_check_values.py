"""The typed rule for JSON values: which keys and values the checker takes as the same.

``true`` is not ``1`` and ``false`` is not ``0`` (Python says they are);
``1``, ``1.0`` and ``1e0`` are one number; arrays and objects compare
structurally under the same rule; non-finite numbers and over-deep nesting
are refused. The rule must hold for ``==`` *and* ``hash``, because the search
interns values through a dict and memoises configurations by them.
"""

from __future__ import annotations

import json

import pytest

from quorate.check import check_history
from quorate.check.values import MAX_NESTING_DEPTH, JsonBool, NotJsonError, freeze, show, thaw

SAME = [
    ("1", "1.0"),
    ("1", "1e0"),
    ("0", "-0.0"),
    ("100000000000000000000", "1e20"),
    ("[1, true]", "[1.0, true]"),
    ('{"a": 1, "b": [false]}', '{"b": [false], "a": 1.0}'),
    ('"x"', '"x"'),
    ("null", "null"),
    ("true", "true"),
]

DIFFERENT = [
    ("true", "1"),
    ("false", "0"),
    ("true", "1.0"),
    ("false", "null"),
    ("0", "null"),
    ('"1"', "1"),
    ('"true"', "true"),
    ("[true]", "[1]"),
    ('{"a": true}', '{"a": 1}'),
    ("[[false]]", "[[0]]"),
    ("[1, 2]", "[2, 1]"),
    ("[]", "{}"),
    ("[1]", "1"),
    ('{"a": 1}', '{"a": 1, "b": 1}'),
    ("9007199254740993", "9007199254740992"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_same_values_are_equal_with_equal_hashes(a: str, b: str) -> None:
    x, y = freeze(json.loads(a)), freeze(json.loads(b))
    assert x == y
    assert hash(x) == hash(y)
    assert len({x, y}) == 1


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_values_are_not_equal_and_stay_apart_in_a_dict(a: str, b: str) -> None:
    x, y = freeze(json.loads(a)), freeze(json.loads(b))
    assert x != y
    assert len({x: 0, y: 1}) == 2


def test_booleans_are_not_python_bools_and_thaw_back() -> None:
    frozen = freeze(json.loads('{"on": true, "off": [false, null, 1.5, "s"]}'))
    assert thaw(frozen) == {"off": [False, None, 1.5, "s"], "on": True}
    assert thaw(freeze(True)) is True
    assert freeze(True) is JsonBool.TRUE and freeze(JsonBool.TRUE) is JsonBool.TRUE
    assert repr(freeze(False)) == "false"
    assert show(freeze([True, {"k": False}])) == '[true, {"k": false}]'


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (float("nan"), "not a JSON number"),
        (float("inf"), "not a JSON number"),
        ([1, float("-inf")], "not a JSON number"),
        ({1: "a"}, "member names must be strings"),
        ({"a": {1, 2}}, "a set is not a JSON value"),
        (b"bytes", "a bytes is not a JSON value"),
    ],
)
def test_what_is_not_json_is_refused(raw: object, problem: str) -> None:
    with pytest.raises(NotJsonError, match=problem):
        freeze(raw)


def test_nesting_is_bounded() -> None:
    deep: object = 1
    for _ in range(MAX_NESTING_DEPTH):
        deep = [deep]
    assert thaw(freeze(deep)) == deep
    with pytest.raises(NotJsonError, match="nested more than"):
        freeze([deep])


@pytest.mark.parametrize(
    ("written", "read", "verdict"),
    [
        (True, 1, "not_linearizable"),
        (1, True, "not_linearizable"),
        (False, 0, "not_linearizable"),
        (0, None, "not_linearizable"),
        (False, None, "not_linearizable"),
        (1, 1.0, "linearizable"),
        ([1, {"a": True}], [1.0, {"a": True}], "linearizable"),
        ([1, {"a": True}], [1, {"a": 1}], "not_linearizable"),
    ],
)
def test_a_read_sees_a_write_only_under_the_typed_rule(
    written: object, read: object, verdict: str
) -> None:
    events = [
        {"process": 0, "type": "invoke", "f": "write", "value": written},
        {"process": 0, "type": "ok", "f": "write", "value": written},
        {"process": 1, "type": "invoke", "f": "read"},
        {"process": 1, "type": "ok", "f": "read", "value": read},
    ]
    assert check_history(events).verdict == verdict


def test_memo_keeps_true_and_1_apart_across_a_search() -> None:
    """Two processes write ``true`` and ``1`` concurrently; reads then see both
    orders. Interning ``true`` and ``1`` as one value would let one write serve
    both reads and call the history linearizable."""
    events = [
        {"process": 0, "type": "invoke", "f": "write", "value": True},
        {"process": 1, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": True},
        {"process": 1, "type": "ok", "f": "write", "value": 1},
        {"process": 2, "type": "invoke", "f": "read"},
        {"process": 2, "type": "ok", "f": "read", "value": 1},
        {"process": 3, "type": "invoke", "f": "read"},
        {"process": 3, "type": "ok", "f": "read", "value": True},
    ]
    assert check_history(events).verdict == "not_linearizable"
    swapped = [*events[:4], *events[6:], *events[4:6]]
    assert check_history(swapped).verdict == "not_linearizable"
    # The same shape with one value written twice over is fine.
    same = [{**e, "value": 1} if e.get("value") is True else e for e in events]
    assert check_history(same).verdict == "linearizable"
