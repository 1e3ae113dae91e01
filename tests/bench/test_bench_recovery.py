"""``quorate bench recovery`` at a small size: every path rebuilds the same
state, the delta sync is correct and never costs more than a full copy plus
its request, the figures hang together, member processes are gone after the
run, and bad input is one line with exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quorate.cli.main import _register, app
from quorate.crypto.erasure import available_codecs

_register()
runner = CliRunner()
pytestmark = pytest.mark.skipif(not available_codecs(), reason="no Reed-Solomon codec installed")

def child_processes() -> int:
    """Live child processes of this one (Linux /proc; zombies not counted)."""
    me = str(os.getpid())
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            count += 1
    return count


SMALL = ["--checkpoint-mb", "0.5", "--stale", "1,5", "--write-rate", "100", "--log-since-checkpoint", "1"]


def test_small_run_reports_consistent_figures() -> None:
    before = child_processes()
    result = runner.invoke(app, ["bench", "recovery", *SMALL, "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert child_processes() == before  # the member processes were stopped

    state = report["state"]
    assert state["state_bytes"] > 400_000
    assert set(report["codecs"]) == set(available_codecs())

    sim = report["recovery_sim"]
    ck, full = sim["checkpoint"], sim["full_state"]
    assert ck["log_suffix_entries"] == 100
    assert 0 < ck["fragments_fetch_s"] < full["fetch_s"]  # k senders in parallel, each 1/k
    assert ck["total_s"] > ck["fragments_fetch_s"]
    assert full["bytes"] >= state["state_bytes"]

    real = report["recovery_real"]
    assert real["member_processes"] == report["settings"]["k"] + 1
    assert real["checkpoint_total_s"] > 0 and real["full_total_s"] > 0

    rows = report["delta"]
    assert [r["stale_s"] for r in rows] == [1.0, 5.0]
    for row in rows:
        assert row["correct"] and row["refusal"] is None
        offered = [row["merkle_bytes"], row["full_image_reply_bytes"]] + ([row["log_bytes"]] if row["log_bytes"] else [])
        assert row["delta_bytes"] == min(offered)
        assert row["delta_bytes"] <= row["full_bytes"] + row["request_bytes"] + 64

    storage = report["storage"]
    k = report["settings"]["k"]
    assert storage["members"] == k + report["settings"]["m"]
    assert storage["per_node_bytes_erasure"] * k >= storage["state_bytes"]
    assert 0.5 < storage["saving"] < 1 - 1 / k + 0.01

    claims = {row["what"]: row for row in report["comparison"]}
    assert claims["storage saving per node"]["paper"] == 0.60
    assert any("loopback" in what for what in claims)


def test_table_output_names_the_claims() -> None:
    result = runner.invoke(app, ["bench", "recovery", *SMALL, "--no-real"])
    assert result.exit_code == 0, result.stderr
    assert "the paper's claims beside ours" in result.stdout
    assert "delta sync vs full transfer" in result.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--checkpoint-mb", "0"], "--checkpoint-mb must be in"),
        (["--stale", "1,x"], "--stale takes seconds"),
        (["--codec", "rot13"], "unknown erasure codec"),
        (["-k", "30", "-m", "5"], "k + m <= 32"),
        (["--zipf", "-1"], "--zipf must be in"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(flags: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "recovery", *flags, "--no-real"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
