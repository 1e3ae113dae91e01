"""``quorate bench crdt-trace``: both published trace formats, the forked
concurrent benchmark, pycrdt on concurrent traces, and one-line errors for bad
files."""

from __future__ import annotations

import gzip
import importlib.util
import json
import pathlib
import random
from typing import Any

import pytest
from tests.unit.crdt.concurrent_traces import (
    concurrent_trace,
    random_concurrent_trace,
    random_sequential_trace,
)
from typer.testing import CliRunner

from quorate.bench.crdt_trace import (
    Trace,
    load_trace,
    parse_trace,
    replay_concurrent,
    replay_pycrdt_concurrent,
    replay_sequential,
)
from quorate.bench.trace_fork import ForkSettings, fork_trace
from quorate.cli.main import _register, app
from quorate.errors import ConfigError

AUTOMERGE_PAPER = pathlib.Path("/work/shared/data/editing-traces/automerge-paper.json.gz")

# The example of the editing-traces collection's concurrent README (its JSON
# made valid): agent 0 types and rewrites, agent 1 continues.
README_EXAMPLE = concurrent_trace(
    "yoooo ho ho\n",
    2,
    [
        {"parents": [], "agent": 0, "patches": [[0, 0, "hi there\n"]]},
        {"parents": [0], "agent": 0, "patches": [[0, 8, ""], [0, 0, "yoooo"]]},
        {"parents": [1], "agent": 1, "patches": [[5, 0, " ho ho"]]},
    ],
)

# Three agents branch from one text (each with a second transaction, one of two
# patches); the last transaction merges all three branches.
THREE_WAY = concurrent_trace(
    "Dear Anna,\nthe plan: meet at noon, bring maps.\nBest, Bo\n",
    3,
    [
        {"parents": [], "agent": 0, "patches": [[0, 0, "Dear Ann,\nthe plan.\nBo\n"]]},
        {"parents": [0], "agent": 1, "patches": [[18, 0, ": meet at 9"]]},
        {"parents": [0], "agent": 2, "patches": [[20, 0, "Best, "]]},
        {"parents": [0], "agent": 0, "patches": [[8, 0, "a"]]},
        {"parents": [1], "agent": 1, "patches": [[28, 1, ""], [28, 0, "noon"]]},
        {"parents": [2], "agent": 2, "patches": [[0, 4, "Dear"]]},
        {"parents": [3, 4, 5], "agent": 0, "patches": [[33, 0, ", bring maps"]]},
    ],
)


def _cli(*args: str) -> Any:
    _register()
    return CliRunner().invoke(app, ["bench", "crdt-trace", *args])


def _write(tmp_path: pathlib.Path, raw: Any, name: str = "trace.json.gz") -> pathlib.Path:
    path = tmp_path / name
    data = json.dumps(raw).encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


@pytest.fixture(scope="module")
def automerge_paper() -> Trace:
    if not AUTOMERGE_PAPER.exists():
        pytest.skip(f"editing trace not found at {AUTOMERGE_PAPER}")
    return load_trace(AUTOMERGE_PAPER)


def test_automerge_paper_trace_replays_to_its_end_content(automerge_paper: Trace) -> None:
    trace = automerge_paper
    assert trace.edits == 259_778 and not trace.concurrent
    assert str(replay_sequential(trace)) == trace.end


@pytest.mark.parametrize("raw", [README_EXAMPLE, THREE_WAY], ids=["readme", "three-way"])
def test_published_concurrent_format_replays_to_end_content(raw: dict[str, Any]) -> None:
    trace = parse_trace(json.loads(json.dumps(raw)))
    assert trace.concurrent and trace.start == ""
    doc, _ = replay_concurrent(trace)
    assert str(doc) == raw["endContent"]
    pytest.importorskip("pycrdt")
    _, ytext = replay_pycrdt_concurrent(trace)
    assert str(ytext) == raw["endContent"]


@pytest.mark.parametrize("seed", range(10))
def test_traces_recorded_from_replicas_replay_to_their_end_content(seed: int) -> None:
    rng = random.Random(seed)
    raw = random_concurrent_trace(rng, agents=rng.randint(2, 4), transactions=60)
    trace = parse_trace(json.loads(json.dumps(raw)))
    assert str(replay_concurrent(trace)[0]) == raw["endContent"]


def test_cli_reports_speed_and_pycrdt_ratio_for_a_concurrent_trace(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("pycrdt")
    result = _cli(
        str(_write(tmp_path, THREE_WAY)), "--json", "--compare", "pycrdt", "--repeat", "2"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kind"] == "concurrent" and report["final_text_matches"] is True
    assert report["agents"] == 3 and report["max_parents"] == 3 and report["merges"] == 1
    assert report["edits"] == 8 and len(report["cpu_seconds_runs"]) == 2
    assert report["edits_per_second"] > 0 and report["load_matches"] is True
    assert report["pycrdt"]["final_text_matches"] is True
    assert report["ratio"] == pytest.approx(
        report["cpu_seconds"] / report["pycrdt"]["cpu_seconds"], rel=1e-3, abs=1e-3
    )


@pytest.mark.parametrize("seed", range(6))
def test_forked_trace_keeps_the_sequential_end_content(seed: int) -> None:
    rng = random.Random(seed)
    source = parse_trace(random_sequential_trace(rng, edits=1500))
    patches = [(p[0], p[1], p[2], None) for t in source.transactions for p in t.patches]
    settings = ForkSettings(
        agents=rng.randint(2, 5), segment_edits=40, lag_transactions=30, seed=seed
    )
    raw, shape = fork_trace(source.start, source.end, patches, settings)
    assert "startContent" not in raw and raw["kind"] == "concurrent"
    trace = parse_trace(json.loads(json.dumps(raw)))  # the published format, checked
    assert shape["merges"] > 0 and shape["multi_patch_transactions"] > 0
    assert str(replay_concurrent(trace)[0]) == source.end
    if importlib.util.find_spec("pycrdt") is not None:
        assert str(replay_pycrdt_concurrent(trace)[1]) == source.end


def test_forks_merge_three_or_more_branches() -> None:
    source = parse_trace(random_sequential_trace(random.Random(2), edits=3000))
    patches = [(p[0], p[1], p[2], None) for t in source.transactions for p in t.patches]
    raw, shape = fork_trace(
        source.start,
        source.end,
        patches,
        ForkSettings(
            agents=5, segment_edits=10, lag_transactions=100, offline_probability=0.5, seed=4
        ),
    )
    assert shape["max_parents"] >= 3
    trace = parse_trace(raw)
    assert str(replay_concurrent(trace)[0]) == source.end


def test_cli_fork_replays_both_in_one_run_and_writes_the_trace(tmp_path: pathlib.Path) -> None:
    source = _write(tmp_path, random_sequential_trace(random.Random(9), edits=800), "seq.json")
    out = tmp_path / "forked.json.gz"
    result = _cli(str(source), "--fork", "3", "--seed", "2", "--write-trace", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kind"] == "concurrent" and report["final_text_matches"] is True
    assert report["fork"]["agents"] == 3 and report["sequential"]["edits_per_second"] > 0
    assert report["concurrent_vs_sequential"] > 0
    written = load_trace(out)
    assert written.concurrent and written.agents == 3
    assert str(replay_concurrent(written)[0]) == written.end == report_end(source)


def report_end(path: pathlib.Path) -> str:
    return load_trace(path).end


def test_fork_of_the_automerge_paper_prefix(automerge_paper: Trace) -> None:
    prefix = automerge_paper.transactions[:6000]
    end = str(replay_sequential(Trace("", "", prefix)))
    patches = [(p[0], p[1], p[2], None) for t in prefix for p in t.patches]
    raw, shape = fork_trace("", end, patches, ForkSettings(agents=3, seed=1))
    assert shape["merges"] > 0
    assert str(replay_concurrent(parse_trace(raw))[0]) == end


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


def _bad(txns: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    raw = concurrent_trace("", 2, txns)
    raw.update(top)
    return raw


GOOD_FIRST = {"parents": [], "agent": 0, "patches": [[0, 0, "ab"]]}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            _bad([GOOD_FIRST, {"parents": [7], "agent": 1, "patches": []}]),
            "transaction 1: parent 7",
        ),
        (
            _bad([GOOD_FIRST, {"parents": [1], "agent": 1, "patches": []}]),
            "transaction 1: parent 1",
        ),
        (
            _bad([GOOD_FIRST, {"parents": [0], "agent": 1, "patches": [[5, 0, "x"]]}]),
            "transaction 1: patch [5, 0, 'x'] reaches past the end",
        ),
        (
            _bad([GOOD_FIRST, {"parents": [0], "agent": 1, "patches": [[1, 4, ""]]}]),
            "transaction 1: patch [1, 4, ''] reaches past the end",
        ),
        (
            _bad([GOOD_FIRST, {"parents": [0], "agent": 1, "patches": [[-1, 0, "x"]]}]),
            "transaction 1: bad patch",
        ),
        (_bad([GOOD_FIRST, {"parents": [0], "agent": 2, "patches": []}]), "transaction 1: 'agent'"),
        (
            _bad([GOOD_FIRST, {"parents": [], "agent": 0, "patches": []}]),
            "transaction 1: agent 0 works concurrently with itself",
        ),
        (_bad([{"agent": 0, "patches": []}]), "transaction 0 lacks the field 'parents'"),
        (_bad([GOOD_FIRST], numAgents="two"), "trace field 'numAgents'"),
        (_bad([GOOD_FIRST], startContent="x"), "a concurrent trace starts from the empty"),
        (_bad([GOOD_FIRST], kind="merged"), "trace field 'kind'"),
        ({"kind": "concurrent", "endContent": "", "txns": []}, "lacks the field 'numAgents'"),
        ({"startContent": "", "endContent": ""}, "trace lacks the field 'txns'"),
        ([], "a trace must be a JSON object"),
    ],
)
def test_bad_traces_exit_2_with_one_line_naming_the_problem(
    tmp_path: pathlib.Path, raw: Any, expected: str
) -> None:
    result = _cli(str(_write(tmp_path, raw)))
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and expected in result.output, result.output


def test_wrong_child_count_is_named() -> None:
    raw = concurrent_trace("ab", 1, [GOOD_FIRST])
    raw["txns"][0]["numChildren"] = 2
    with pytest.raises(ConfigError, match="transaction 0: 'numChildren' is 2 but 0"):
        parse_trace(raw)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("trace.json.gz", b'{"startContent": ""}', "is not a gzip file"),
        ("trace.json.gz", b"\x1f\x8b\x08\x00broken", "is not a valid gzip file"),
        ("trace.json", b"not json", "is not JSON"),
    ],
)
def test_unreadable_files_exit_2_with_one_line(
    tmp_path: pathlib.Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = _cli(str(path))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and expected in result.output, result.output


def test_bad_flags_are_config_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError):
        load_trace(tmp_path / "missing.json")
    assert _cli(str(tmp_path / "missing.json")).exit_code == 2
    sequential = _write(tmp_path, {"startContent": "", "endContent": "", "txns": []}, "s.json")
    concurrent = _write(tmp_path, README_EXAMPLE, "c.json")
    for args in (
        [str(sequential), "--compare", "automerge"],
        [str(sequential), "--repeat", "0"],
        [str(sequential), "--write-trace", str(tmp_path / "x.json")],
        [str(sequential), "--fork", "1"],
        [str(concurrent), "--fork", "2"],
    ):
        result = _cli(*args)
        assert result.exit_code == 2 and result.output.count("\n") == 1, (args, result.output)
