"""``quorate check`` and ``quorate bench check``: output and exit codes.

Exit codes: 0 linearizable, 1 not linearizable, 2 gave up within --timeout,
3 bad input (one line on stderr naming the line, no traceback). Text for a
person by default, one JSON object with ``--json``.
"""

from __future__ import annotations

import json
import os
import pty
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quorate.check import simulate_register_history
from quorate.cli import bench_check, check
from quorate.cli.main import app

# Importing a command module registers its commands on the app.
COMMANDS = (check.check_command, bench_check.bench_check_command)

HISTORIES = Path(__file__).parent / "histories"
runner = CliRunner()


def test_linearizable_exits_0_with_one_json_object() -> None:
    result = runner.invoke(app, ["check", str(HISTORIES / "linearizable_cas.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["verdict"] == "linearizable"
    assert document["linearizable"] is True
    assert "explanation" not in document


def test_not_linearizable_exits_1_with_an_explanation() -> None:
    result = runner.invoke(
        app, ["check", str(HISTORIES / "not_linearizable_stale_read.jsonl"), "--json"]
    )
    assert result.exit_code == 1, result.output
    assert result.stdout.count("\n") == 1
    document = json.loads(result.stdout)
    assert document["verdict"] == "not_linearizable"
    assert document["explanation"]["key"] == "x"
    assert len(document["explanation"]["operations"]) == 3


def test_text_output_is_lines_a_person_reads() -> None:
    result = runner.invoke(app, ["check", str(HISTORIES / "not_linearizable_stale_read.jsonl")])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("NOT linearizable (3 operations on 1 key, ")
    assert lines[1:] == [
        'key "x": these 3 operations cannot be linearized:',
        "  process 0 write 1 [call 0, return 1] ok",
        "  process 0 write 2 [call 2, return 3] ok",
        "  process 1 read 1 [call 4, return 5] ok",
        "  (no order reaches the return of: process 1 read 1 [call 4, return 5] ok)",
    ]
    assert "\\n" not in result.stdout
    linearizable = runner.invoke(app, ["check", str(HISTORIES / "linearizable_cas.jsonl")])
    assert linearizable.exit_code == 0
    assert linearizable.stdout.startswith("linearizable (4 operations on 1 key, ")
    assert linearizable.stdout.count("\n") == 1


def test_json_output_carries_the_same_explanation() -> None:
    path = str(HISTORIES / "not_linearizable_stale_read.jsonl")
    text = runner.invoke(app, ["check", path]).stdout
    document = json.loads(runner.invoke(app, ["check", path, "--json"]).stdout)
    assert text.splitlines()[1:] == document["explanation"]["text"].splitlines()


@pytest.mark.parametrize(
    ("name", "explanation"),
    [
        ("not_linearizable_value_true_is_not_1.jsonl", "no operation writes 1 to key \"x\""),
        ("not_linearizable_key_true_is_not_key_1.jsonl", "no operation writes 5 to key 1"),
    ],
)
def test_true_is_not_1_as_a_value_or_as_a_key_exits_1(name: str, explanation: str) -> None:
    result = runner.invoke(app, ["check", str(HISTORIES / name)])
    assert result.exit_code == 1, result.output
    assert explanation in result.stdout


@pytest.mark.parametrize("field", ["type", "f"])
@pytest.mark.parametrize(("raw", "kind"), [(["invoke"], "array"), ({"f": "write"}, "object")])
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_an_array_or_object_in_type_or_f_exits_3_naming_the_line(
    tmp_path: Path, field: str, raw: object, kind: str, fmt: str
) -> None:
    events: list[dict[str, object]] = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
    ]
    events[1][field] = raw
    path = tmp_path / f"bad.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        where = "line 2"
    else:
        path.write_text(json.dumps(events))
        where = "element 1"
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.startswith(f"quorate: error: {where}: '{field}' must be a string")
    assert f"got the {kind}" in result.stderr
    assert result.stderr.count("\n") == 1


def test_gave_up_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    events = simulate_register_history(random.Random(3), 3000, keys=1, processes=10)
    path.write_text("\n".join(json.dumps(e) for e in events))
    # The clock is read every few thousand search steps, and this history
    # needs more than that, so a one-nanosecond limit has always passed.
    result = runner.invoke(app, ["check", str(path), "--timeout", "0.000000001", "--json"])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["verdict"] == "unknown"
    as_text = runner.invoke(app, ["check", str(path), "--timeout", "0.000000001"])
    assert as_text.exit_code == 2
    assert as_text.stdout.startswith("unknown: gave up within the time limit after 0 of 1 keys")
    assert runner.invoke(app, ["check", str(path), "--timeout", "600"]).exit_code == 0


def test_quiet_prints_nothing() -> None:
    result = runner.invoke(
        app, ["check", str(HISTORIES / "not_linearizable_lost_write.json"), "--quiet"]
    )
    assert result.exit_code == 1
    assert result.stdout == ""


def test_bad_input_exits_3_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"process": 0, "type": "invoke", "f": "write", "value": 1}\n'
        '{"process": 0, "type": "ok", "f": "wrte", "value": 1}\n'
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "line 2: unknown f 'wrte'" in result.stderr


def test_missing_file_and_bad_timeout_exit_3(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["check", str(tmp_path / "absent.json")])
    assert missing.exit_code == 3
    assert "cannot read the history" in missing.stderr
    for bad in ("soon", "0", "-1", "nan"):
        result = runner.invoke(
            app, ["check", str(HISTORIES / "linearizable_cas.jsonl"), "--timeout", bad]
        )
        assert result.exit_code == 3, bad
        assert "--timeout" in result.stderr


def test_the_installed_entry_point_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"process": 0, "type": "ok", "f": "read", "value": 1}]')
    completed = subprocess.run(
        [sys.executable, "-c", "from quorate.cli.main import main; main()", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 3
    assert completed.stderr.strip().count("\n") == 0
    assert "element 0: ok for process 0 without a pending invoke" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_on_a_terminal_the_explanation_is_lines_not_escapes() -> None:
    master, terminal = pty.openpty()
    try:
        completed = subprocess.run(
            [
                sys.executable,
                "-c",
                "from quorate.cli.main import main; main()",
                "check",
                str(HISTORIES / "not_linearizable_stale_read.jsonl"),
            ],
            stdout=terminal,
            stderr=subprocess.PIPE,
            check=False,
        )
    finally:
        os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # Linux reports the closed terminal as EIO
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert completed.returncode == 1, completed.stderr
    lines = shown.decode().splitlines()
    assert lines[1] == 'key "x": these 3 operations cannot be linearized:'
    assert "  process 1 read 1 [call 4, return 5] ok" in lines
    assert "\\n" not in shown.decode() and "{" not in shown.decode()


def test_bench_check_reports_json() -> None:
    result = runner.invoke(
        app, ["bench", "check", "--ops", "500", "--keys", "5", "--processes", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["ops"], report["keys"], report["verdict"]) == (500, 5, "linearizable")
    assert report["check_s"] >= 0
