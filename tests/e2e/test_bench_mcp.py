"""``quorate bench mcp --json``: a real run, small, whose report is
consistent with itself (the figures it compares are the ones it prints)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow  # an embedded 3-node cluster and an MCP server: ~25 s on a loaded machine
def test_a_small_run_reports_both_sides_and_the_ratio_of_what_it_measured(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "quorate", "bench", "mcp", "--calls", "5", "--tasks", "3", "--json", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["replicas"] == 3 and report["calls"] == 5 and report["tasks"] == 3
    for side in ("mcp_store_ms", "mcp_retrieve_ms", "sqlite_insert_fsync_ms", "mcp_noop_tool_ms"):
        figures = report[side]
        assert 0 < figures["p50"] <= figures["p99"] <= figures["max"], (side, figures)
    ratio = report["store_p50_over_sqlite_p50"]
    assert ratio == round(report["mcp_store_ms"]["p50"] / report["sqlite_insert_fsync_ms"]["p50"], 2)
    assert report["target_met"] == (ratio <= report["target_ratio"] == 3.0)
    floor = report["noop_p50_over_sqlite_p50"]
    assert floor == round(report["mcp_noop_tool_ms"]["p50"] / report["sqlite_insert_fsync_ms"]["p50"], 2)
    assert report["target_reachable"] == (floor + 1 <= 3.0)
    assert report["store_over_floor_ms"] == round(report["mcp_store_ms"]["p50"] - report["mcp_noop_tool_ms"]["p50"], 3)
    assert report["tasks_claimed_completed_per_s"] > 0
    assert list(tmp_path.iterdir()) == []  # type: ignore[attr-defined]  # the scratch cluster is gone


@pytest.mark.parametrize("args", [["--calls", "0"], ["--tasks", "-1"], ["--value-size", "0"], ["--dir", "/no/such/dir"]])
def test_bad_options_are_one_line_and_exit_2(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "quorate", "bench", "mcp", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
