"""``quorate bench quorum``: the measuring helpers on a made-up history, and
(slow) the whole benchmark's relations on one seed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from quorate.bench import quorum
from quorate.cli.main import _register, app

_register()


def _history(ops: list[tuple[int, float, float, str]]) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for process, start, end, kind in ops:
        events.append({"process": process, "type": "invoke", "time": start})
        events.append({"process": process, "type": kind, "time": end})
    return sorted(events, key=lambda e: float(e["time"]))  # type: ignore[arg-type]


def test_window_latency_counts_answers_in_the_window_only() -> None:
    history = _history([(1, 0.0, 0.010, "ok"), (2, 0.5, 0.520, "fail"), (3, 1.0, 1.5, "info"), (4, 2.0, 2.1, "ok")])
    window = quorum.window_latency_ms(history, 0.0, 1.9)
    assert window["ops"] == 2  # the timeout and the late answer are out
    assert window["p50_ms"] == pytest.approx(20.0)


def test_availability_is_the_share_of_slots_with_a_success() -> None:
    history = _history([(1, 0.0, 0.1, "ok"), (2, 0.2, 0.7, "ok"), (3, 1.0, 1.2, "info")])
    assert quorum.availability(history, 0.0, 2.0) == pytest.approx(0.5)  # slots [0, .5) and [.5, 1)


def test_bad_seeds_exit_2() -> None:
    result = CliRunner().invoke(app, ["bench", "quorum", "--seeds", "one"])
    assert result.exit_code == 2 and "--seeds" in result.stderr


@pytest.mark.slow
def test_the_benchmark_shows_what_each_strategy_buys() -> None:
    result = CliRunner().invoke(app, ["bench", "quorum", "--seeds", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    latency = report["latency"]
    assert latency["network"]["p50_ms"] < latency["static"]["p50_ms"] / 10
    outage = report["region_outage"]
    assert outage["fault_tolerance"]["availability"] > outage["static"]["availability"]
    degradation = report["degradation"]
    assert degradation["converged_after_s"] is not None
    assert degradation["p50_after_ms"] < degradation["p50_degraded_ms"]
    for section in ("latency", "region_outage"):
        for runs in report[section]["runs"].values():
            assert all(run["safety_violations"] == 0 for run in runs)
