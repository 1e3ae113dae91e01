"""Reading histories: formats, pairing rules, and errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quorate.check import (
    INF,
    HistoryError,
    Operation,
    check_history,
    load_history,
    load_history_text,
)
from quorate.check.values import MAX_NESTING_DEPTH


def _jsonl(events: list[dict[str, object]]) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n"


WRITE_READ = [
    {"process": 0, "type": "invoke", "f": "write", "key": "k", "value": [1, {"a": 2}]},
    {"process": 0, "type": "ok", "f": "write", "key": "k", "value": [1, {"a": 2}]},
    {"process": 1, "type": "invoke", "f": "read", "key": "k"},
    {"process": 1, "type": "ok", "f": "read", "key": "k", "value": [1, {"a": 2}]},
]


def test_array_and_json_lines_give_the_same_operations() -> None:
    from_array = load_history_text(json.dumps(WRITE_READ, indent=2))
    from_lines = load_history_text(_jsonl(WRITE_READ))
    assert from_array == from_lines
    assert from_array == [
        Operation(0, "write", "k", (1, frozenset({("a", 2)})), 0, 1, "ok"),
        Operation(1, "read", "k", (1, frozenset({("a", 2)})), 2, 3, "ok"),
    ]
    assert check_history(WRITE_READ).verdict == "linearizable"


def test_info_and_fail_outcomes_and_positions() -> None:
    ops = load_history(
        [
            {"process": 0, "type": "invoke", "f": "write", "value": 1},
            {"process": 1, "type": "invoke", "f": "cas", "value": [1, 2]},
            {"process": 0, "type": "info", "f": "write", "value": 1},
            {"process": 1, "type": "fail", "f": "cas", "value": [1, 2]},
            {"process": 0, "type": "invoke", "f": "read", "value": None},
        ]
    )
    assert ops == [
        Operation(0, "write", None, 1, 0, INF, "info"),
        Operation(1, "cas", None, (1, 2), 1, 3, "fail"),
        Operation(0, "read", None, None, 4, INF, "info"),
    ]


def _error(events: list[object], *, as_file: Path | None = None, fmt: str = "jsonl") -> str:
    with pytest.raises(HistoryError) as info:
        if as_file is None:
            load_history(events)  # type: ignore[arg-type]
        else:
            text = _jsonl(events) if fmt == "jsonl" else json.dumps(events, indent=1)  # type: ignore[arg-type]
            as_file.write_text(text)
            load_history(as_file)
    assert isinstance(info.value, ValueError)
    return str(info.value)


INVOKE = {"process": 0, "type": "invoke", "f": "write", "value": 1}
DEEP: object = 0
for _ in range(MAX_NESTING_DEPTH + 1):
    DEEP = [DEEP]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"type": "invoke", "f": "read"}, "missing field 'process'"),
        ({"process": 0, "f": "read"}, "missing field 'type'"),
        ({"process": 0, "type": "invoke"}, "missing field 'f'"),
        ({"process": 0, "type": "begin", "f": "read"}, "unknown type 'begin'"),
        ({"process": 0, "type": "invoke", "f": "append"}, "unknown f 'append'"),
        ({"process": "p", "type": "invoke", "f": "read"}, "'process' must be an integer"),
        ({"process": 5, "type": "ok", "f": "read", "value": 1}, "without a pending invoke"),
        ({"process": 3, "type": "invoke", "f": "cas", "value": 1}, "must be a pair"),
        ({"process": 3, "type": "invoke", "f": "cas", "value": [1, 2, 3]}, "must be a pair"),
        ({"process": 3, "type": "invoke", "f": "write"}, "missing field 'value'"),
        ({"process": 0, "type": "ok", "f": "read", "value": 1}, "completes a write"),
        ({"process": 0, "type": "invoke", "f": "read"}, "has not completed"),
        ([1, 2], "expected a JSON object, got array"),
        ({"process": 0, "type": ["invoke"], "f": "read"}, "'type' must be a string"),
        ({"process": 0, "type": {"t": "ok"}, "f": "read"}, "got the object {\"t\": \"ok\"}"),
        ({"process": 0, "type": None, "f": "read"}, "'type' must be a string"),
        ({"process": 4, "type": "invoke", "f": ["read"]}, "'f' must be a string"),
        ({"process": 4, "type": "invoke", "f": {"read": 1}}, "got the object"),
        ({"process": 4, "type": "invoke", "f": 2}, "'f' must be a string"),
        ({"process": 1.5, "type": "invoke", "f": "read"}, "'process' must be an integer, got 1.5"),
        ({"process": True, "type": "invoke", "f": "read"}, "'process' must be an integer, got true"),
        ({"process": [0], "type": "invoke", "f": "read"}, "'process' must be an integer, got [0]"),
        ({"process": None, "type": "invoke", "f": "read"}, "'process' must be an integer, got null"),
        ({"process": 4, "type": "invoke", "f": "read", "time": "soon"}, "'time' must be a finite"),
        ({"process": 4, "type": "invoke", "f": "read", "time": True}, "'time' must be a finite"),
        ({"process": 4, "type": "invoke", "f": "read", "time": [1]}, "'time' must be a finite"),
        ({"process": 4, "type": "invoke", "f": "read", "time": float("inf")}, "'time' must be"),
        ({"process": 4, "type": "invoke", "f": "read", "key": float("nan")}, "'key': nan is not"),
        ({"process": 4, "type": "invoke", "f": "write", "value": [float("inf")]}, "'value': inf"),
        ({"process": 4, "type": "invoke", "f": "write", "value": DEEP}, "nested more than"),
        ({"process": 0, "type": "ok", "f": "write", "key": True}, "completion key true differs"),
    ],
)
def test_bad_events_name_the_line_and_the_problem(
    tmp_path: Path, bad: object, message: str
) -> None:
    events = [INVOKE, {"process": 9, "type": "invoke", "f": "read"}, bad]
    as_list = _error(events)
    assert as_list.startswith("event 2: ") and message in as_list
    as_lines = _error(events, as_file=tmp_path / "h.jsonl")
    assert as_lines.startswith("line 3: ") and message in as_lines
    as_array = _error(events, as_file=tmp_path / "h.json", fmt="json")
    assert as_array.startswith("element 2: ") and message in as_array


def test_blank_lines_do_not_shift_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(INVOKE) + "\n\n\n" + '{"process": 0, "type": "ok", "f": "read"}\n')
    with pytest.raises(HistoryError, match=r"^line 4: "):
        load_history(path)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    lines = tmp_path / "h.jsonl"
    lines.write_text(json.dumps(INVOKE) + "\n{not json\n")
    with pytest.raises(HistoryError, match=r"^line 2: invalid JSON"):
        load_history(lines)
    array = tmp_path / "h.json"
    array.write_text("[\n" + json.dumps(INVOKE) + ",\n  oops\n]")
    with pytest.raises(HistoryError, match=r"^line 3: invalid JSON"):
        load_history(array)


def test_missing_file_is_a_history_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot read the history"):
        load_history(tmp_path / "absent.jsonl")


def test_nemesis_events_are_skipped_but_keep_positions() -> None:
    ops = load_history(
        [
            {"process": "nemesis", "type": "info", "f": "start", "value": None},
            {"process": 0, "type": "invoke", "f": "read"},
            {"process": ":nemesis", "type": "info", "f": ":stop"},
            {"process": 0, "type": "ok", "f": "read", "value": None},
        ]
    )
    assert ops == [Operation(0, "read", None, None, 1, 3, "ok")]


def test_empty_history_is_linearizable() -> None:
    result = check_history([])
    assert (result.verdict, result.keys, result.operations) == ("linearizable", 0, 0)


def test_non_positive_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        check_history([], timeout_s=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"process": 0, "type": "invoke", "f": "write", "value": 1' + "1" * 5000 + "}",
         r"^line 1: invalid JSON: .*digits"),
        ("[" * 100_000 + "]" * 100_000, r"^the array at line 1: invalid JSON: .*nested too deeply"),
        ("\n\n" + "[" * 100_000 + "]" * 100_000, r"^the array at line 3: "),
        ('{"process": 0, "value": ' + "[" * 100_000 + "]" * 100_000 + "}",
         r"^line 1: invalid JSON: .*nested too deeply"),
        ('{"process": 0, "type": "invoke", "f": "write", "value": NaN}', r"^line 1: 'value': nan"),
        ('{"process": 0, "type": "invoke", "f": "write", "value": 1e400}', r"^line 1: 'value': inf"),
        ("\n" + json.dumps(INVOKE) + "\n{} {}\n", r"^line 3: invalid JSON: Extra data"),
        ('"just a string"', r"^line 1: expected a JSON object, got string"),
    ],
)
def test_text_the_json_parser_refuses_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "h.json"
    path.write_text(text)
    with pytest.raises(HistoryError, match=message):
        load_history(path)


def test_a_byte_order_mark_and_unicode_line_separators_inside_strings_are_fine(
    tmp_path: Path,
) -> None:
    events = [
        {"process": 0, "type": "invoke", "f": "write", "key": "a\u2028b\x85c", "value": "\u2029"},
        {"process": 0, "type": "ok", "f": "write", "key": "a\u2028b\x85c", "value": "\u2029"},
    ]
    path = tmp_path / "h.jsonl"
    path.write_text("\ufeff" + "\n".join(json.dumps(e, ensure_ascii=False) for e in events))
    assert [op.key for op in load_history(path)] == ["a\u2028b\x85c"]
