"""``quorate bench crdt-trace``: sequential and concurrent replays, the trace
generator and one-line errors for bad files."""

from __future__ import annotations

import gzip
import json
import pathlib
import random

import pytest
from typer.testing import CliRunner

from quorate.bench.crdt_trace import (
    generate_concurrent_trace,
    load_trace,
    parse_trace,
    replay_concurrent,
    replay_sequential,
)
from quorate.cli.main import _register, app
from quorate.errors import ConfigError

AUTOMERGE_PAPER = pathlib.Path("/work/shared/data/editing-traces/automerge-paper.json.gz")


def _cli(*args: str):
    _register()
    return CliRunner().invoke(app, ["bench", "crdt-trace", *args])


def test_automerge_paper_trace_replays_to_its_end_content() -> None:
    if not AUTOMERGE_PAPER.exists():
        pytest.skip(f"editing trace not found at {AUTOMERGE_PAPER}")
    trace = load_trace(AUTOMERGE_PAPER)
    assert trace.edits == 259_778
    doc = replay_sequential(trace)
    assert str(doc) == trace.end


@pytest.mark.parametrize("seed", range(25))
def test_generated_concurrent_traces_replay_to_their_end_content(seed: int) -> None:
    rng = random.Random(seed)
    raw = generate_concurrent_trace(rng, agents=rng.randint(2, 3), transactions=60)
    trace = parse_trace(json.loads(json.dumps(raw)))
    universe, agents = replay_concurrent(trace)
    assert str(universe) == raw["endContent"]
    for agent in agents:
        agent.merge(universe)
        assert str(agent) == raw["endContent"]


def test_cli_json_report_for_a_small_concurrent_trace(tmp_path: pathlib.Path) -> None:
    raw = generate_concurrent_trace(random.Random(5), agents=3, transactions=40)
    path = tmp_path / "trace.json.gz"
    path.write_bytes(gzip.compress(json.dumps(raw).encode()))
    result = _cli(str(path), "--json", "--no-memory")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kind"] == "concurrent" and report["final_text_matches"] is True
    assert report["agents_converged"] is True and report["load_matches"] is True


def test_cli_sequential_report_with_merge_figures(tmp_path: pathlib.Path) -> None:
    words = "the quick brown fox jumps over the lazy dog"
    txns = [{"time": "", "patches": [[i, 0, ch]]} for i, ch in enumerate(words)]
    txns.append({"time": "", "patches": [[4, 6, ""]]})
    path = tmp_path / "trace.json"
    end = words[:4] + words[10:]
    path.write_text(json.dumps({"startContent": "", "endContent": end, "txns": txns}))
    result = _cli(str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["edits"] == len(words) + 1 and report["final_text_matches"] is True
    assert report["merge"]["full_state_matches"] and report["merge"]["concurrent_halves_converged"]
    assert report["peak_memory_mb"] >= 0


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"startContent": "", "endContent": ""}',
        b'{"startContent": "", "endContent": "", "txns": [{"patches": [[-1, 0, "x"]]}]}',
    ],
)
def test_bad_trace_files_give_a_one_line_error_and_exit_2(
    tmp_path: pathlib.Path, content: bytes
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = _cli(str(path))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "error" in result.output


def test_missing_file_and_unknown_comparison_are_config_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError):
        load_trace(tmp_path / "missing.json")
    assert _cli(str(tmp_path / "missing.json")).exit_code == 2
    path = tmp_path / "t.json"
    path.write_text('{"startContent": "", "endContent": "", "txns": []}')
    assert _cli(str(path), "--compare", "automerge").exit_code == 2
