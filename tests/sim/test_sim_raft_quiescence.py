"""Raft quiescence in the simulator: an idle quiet cluster costs no events, and
chaos runs with quiescence on stay safe, linearizable and live.

The chaos runs use a light open-loop load (a few operations per second) so
the group goes quiet between operations and crashes, partitions and restarts
hit quiet leaders and followers. At one operation per second the liveness
bound fails with or without quiescence (the first operation after the heal
may come late), so the loads here start at four per second."""

from __future__ import annotations

from typing import Any

import pytest

from quorate.check import check_history
from quorate.cli.sim import command_line
from quorate.runtime.sim import SimConfig, run

QUIET_RUNS = (
    # (quiesce_after_s, open-loop ops/s, more Raft options)
    (0.2, 4.0, {}),
    (0.05, 10.0, {}),
    (0.2, 4.0, {"read_mode": "lease", "max_clock_drift": 0.02}),
)


def _config(seed: int, quiesce_after_s: float, rate_ops: float, extra: dict[str, Any]) -> SimConfig:
    return SimConfig(
        protocol="raft",
        nodes=5,
        clients=4,
        rate_ops=rate_ops,
        duration_s=12.0,
        op_timeout_s=1.5,
        faults="chaos",
        heal_at_s=6.0,
        liveness_bound_s=4.0,
        seed=seed,
        protocol_options={"quiesce_after_s": quiesce_after_s, **extra},
    )


def _failures(seeds: range) -> list[str]:
    failures = []
    for quiesce_after_s, rate_ops, extra in QUIET_RUNS:
        for seed in seeds:
            config = _config(seed, quiesce_after_s, rate_ops, extra)
            result = run(config)
            verdict = check_history(result.history, timeout_s=60.0).verdict
            if result.safety_violations or not result.liveness_ok or str(verdict) != "linearizable":
                failures.append(
                    f"{result.safety_violations[:1]} liveness={result.liveness_ok} "
                    f"history={verdict}: {command_line(config)}"
                )
    return failures


def test_an_idle_quiet_cluster_costs_no_events() -> None:
    def events(duration_s: float, quiesce_after_s: float) -> int:
        options = {"quiesce_after_s": quiesce_after_s} if quiesce_after_s else {}
        config = SimConfig(protocol="raft", nodes=5, clients=0, duration_s=duration_s, seed=1, protocol_options=options)
        return run(config).events

    quiet_30, quiet_60 = events(30.0, 0.5), events(60.0, 0.5)
    assert quiet_60 == quiet_30  # the second half minute cost nothing
    assert events(60.0, 0.0) > 20 * quiet_60


def test_quiet_chaos_runs_are_safe_and_live() -> None:
    failures = _failures(range(3))
    assert not failures, "reproduce with:\n" + "\n".join(failures)


def test_quiescence_makes_a_light_load_cheaper() -> None:
    quiet = run(_config(0, 0.2, 4.0, {}))
    loud = run(_config(0, 0.0, 4.0, {}))
    assert quiet.events < loud.events and quiet.committed_ops > 0


@pytest.mark.slow
def test_quiet_chaos_runs_over_100_seeds_are_safe_and_live() -> None:
    failures = _failures(range(100))
    assert not failures, "reproduce with:\n" + "\n".join(failures)
