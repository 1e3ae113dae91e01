"""Fuzzing the history reader and ``quorate check``: bad input is a verdict, never a crash.

Events are built with every field either valid or an arbitrary JSON value
(arrays, objects, booleans, NaN, huge numbers...), written as JSON Lines or as
a JSON array, sometimes damaged at the byte level. Whatever the input:
- ``load_history`` returns operations or raises ``HistoryError``, and the
  checker then reaches a verdict whose text and JSON can be printed;
- ``quorate check`` exits 0, 1, 2 or 3, raises nothing, and on exit 3 prints
  exactly one line on stderr and nothing on stdout.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from quorate.check import HistoryError, check_history, check_operations, load_history
from quorate.cli import check
from quorate.cli.main import app

COMMANDS = (check.check_command,)
runner = CliRunner()

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**30), 10**30)
    | st.floats()
    | st.text(max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)
SMALL_VALUES = st.sampled_from([None, 0, 1, 1.0, True, False, "x", [0, 1], [True, 1]])


def _field(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Mostly valid, sometimes any JSON value at all."""
    return st.one_of(valid, valid, valid, JSON_VALUES)


EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "process": _field(st.integers(0, 3) | st.just("nemesis")),
        "type": _field(st.sampled_from(["invoke", "invoke", "ok", "fail", "info", ":ok"])),
        "f": _field(st.sampled_from(["read", "write", "cas", ":write"])),
        "key": _field(SMALL_VALUES),
        "value": _field(SMALL_VALUES | st.lists(SMALL_VALUES, min_size=2, max_size=2)),
        "time": _field(st.floats(0, 100, allow_nan=False)),
    },
)
HISTORIES = st.lists(st.one_of(EVENTS, EVENTS, EVENTS, JSON_VALUES), max_size=12)


@settings(max_examples=400, deadline=None)
@given(events=HISTORIES)
def test_the_reader_accepts_or_refuses_and_the_checker_always_answers(
    events: list[object],
) -> None:
    try:
        operations = load_history(events)  # type: ignore[arg-type]
    except HistoryError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    result = check_operations(operations)
    assert result.verdict in ("linearizable", "not_linearizable")
    assert result.render()
    json.dumps(result.to_json())
    assert check_history(events).verdict == result.verdict  # type: ignore[arg-type]


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A history file: JSON Lines or an array of fuzzed events, maybe damaged."""
    events = draw(HISTORIES)
    if draw(st.booleans()):
        text = "\n".join(json.dumps(e) for e in events)
    else:
        text = json.dumps(events, indent=draw(st.sampled_from([None, 1])))
    data = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "cut", "insert", "replace"]))
    if damage != "none" and data:
        at = draw(st.integers(0, len(data) - 1))
        noise = draw(st.binary(min_size=1, max_size=4))
        if damage == "cut":
            data = data[:at]
        elif damage == "insert":
            data = data[:at] + noise + data[at:]
        else:
            data = data[:at] + noise + data[at + len(noise) :]
    return data


def _check_file(data: bytes, flags: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "history.json"
        path.write_bytes(data)
        result = runner.invoke(app, ["check", str(path), *flags])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1, 2, 3), result.output
    if result.exit_code == 3:
        assert result.stdout == ""
        assert result.stderr.startswith("quorate: error: ")
        assert result.stderr.count("\n") == 1
    elif "--quiet" not in flags:
        assert result.stdout.strip()
        if "--json" in flags:
            json.loads(result.stdout)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=documents(),
    flags=st.sampled_from([[], ["--json"], ["--quiet"], ["--timeout", "30"]]),
)
def test_quorate_check_exits_0_to_3_on_any_file(data: bytes, flags: list[str]) -> None:
    _check_file(data, flags)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_quorate_check_exits_0_to_3_on_arbitrary_bytes(data: bytes) -> None:
    _check_file(data, [])
