"""The cost warning of ``quorate sim``: estimates of time and memory before a
run that will take minutes or gigabytes (``quorate.cli.sim_cost``)."""

from __future__ import annotations

import pytest

from quorate.cli import sim_cost
from quorate.cli.sim_cost import CostWatch, format_bytes, format_duration
from quorate.runtime.sim import SimConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_run_extrapolated_past_a_minute_is_warned_about_once() -> None:
    clock = FakeClock()
    memory = iter([100 << 20, 300 << 20, 300 << 20])
    said: list[str] = []
    watch = CostWatch(SimConfig(nodes=5), clock=clock, memory=lambda: next(memory), say=said.append)
    observe = watch.progress(None)
    clock.now = 1.0
    observe(0.1, 10.0)  # 1 % after 1 s: the first slice (construction included)
    clock.now = 4.0
    observe(0.4, 10.0)  # 3 more % in 3 s: 1 % per second
    clock.now = 8.0
    observe(0.8, 10.0)  # already measured: no second warning
    [warning] = said
    assert warning.startswith("quorate: warning: this run will take about ")
    assert "min" in warning and "GB" in warning and "Ctrl-C stops it" in warning
    assert "measured over the first 4% of the simulated time" in warning


def test_a_cheap_run_is_not_warned_about() -> None:
    clock = FakeClock()
    said: list[str] = []
    watch = CostWatch(SimConfig(nodes=5), clock=clock, memory=lambda: 100 << 20, say=said.append)
    observe = watch.progress(None)
    for step in range(1, 201):
        clock.now = step * 0.05  # 10 s in all
        observe(step / 20, 10.0)
    assert said == []


def test_many_replicas_are_estimated_from_a_sample_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_cost, "WARN_WALL_S", 0.0)  # warn whatever the estimate
    said: list[str] = []
    config = SimConfig(protocol="pbft", nodes=64, clients=4, duration_s=1.0, seed=1)
    watch = CostWatch(config, say=said.append, many_nodes=64)
    estimate = watch.estimate_before()
    assert estimate is not None and estimate[0] > 0
    watch.warn_before()
    assert len(said) == 1 and "extrapolated from a 16-replica sample" in said[0]
    small = CostWatch(SimConfig(nodes=5), say=said.append)
    assert small.estimate_before() is None


def test_figures_read_like_a_person_would_say_them() -> None:
    assert format_duration(42) == "42 s"
    assert format_duration(600) == "10 min"
    assert format_duration(3 * 3600) == "3.0 h"
    assert format_bytes(3 << 30) == "3.0 GB"
    assert format_bytes(200 << 20) == "200 MB"
