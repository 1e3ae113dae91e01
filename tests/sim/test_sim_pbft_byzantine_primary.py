"""PBFT held to HotStuff's bar with a Byzantine primary: replica 1, the primary
of view 0, is among the f Byzantine replicas and stays silent, holds its
pre-prepares (``slow``) or sends conflicting ones (``equivocate``), every PBFT
setting at its default.

- Throughput: once the backups have replaced the faulty primary, committed
  operations stay at (n - f) / n x 0.8 of the fault-free run of the same seed
  at least. Before slow-primary suspicion a slow primary kept its view and cut
  PBFT to 0.6 % of that run. The figure over whole runs and several seeds is
  ``quorate bench bft --byzantine``.
- Recovery: after a chaos phase heals, the cluster commits again within 5 s,
  over 200 seeds per size in the slow suite (one per size by default).
"""

from __future__ import annotations

from typing import Any

import pytest

from quorate.bench.bft import primary_seeds
from quorate.check import check_history
from quorate.cli.sim import command_line
from quorate.runtime.sim import SimConfig, run

BEHAVIOURS = ("silent", "slow", "equivocate")
TARGET_FRACTION = 0.8
"""Committed ops >= (n - f) / n x this x the fault-free ops of the same seed."""
RECOVERY_BOUND_S = 5.0
"""From the heal to the first operation completed."""
STEADY_WINDOW_S = (2.5, 4.0)
"""Operations completed in this window are compared: the view change away from
a silent or slow primary is over by 2.5 s (a view-change timeout of 1 s, or
the slow primary's orderings sampled, then the new view; with 4 closed-loop
clients, sampling takes about a second)."""
SWEEP_SEEDS = 200


def _ok_between(history: list[dict[str, Any]], start_s: float, end_s: float) -> int:
    return sum(1 for e in history if e["type"] == "ok" and start_s <= e["time"] < end_s)


def _where(config: SimConfig) -> str:
    return f"reproduce with: {command_line(config)}"


@pytest.mark.parametrize("nodes", [4, pytest.param(7, marks=pytest.mark.slow), pytest.param(10, marks=pytest.mark.slow)])
def test_a_byzantine_primary_costs_no_more_than_the_target(nodes: int) -> None:
    f = (nodes - 1) // 3
    seed = primary_seeds(nodes, 1)[0]
    base = {"protocol": "pbft", "nodes": nodes, "clients": 4, "duration_s": STEADY_WINDOW_S[1], "seed": seed}
    healthy = run(SimConfig(**base))
    expected = _ok_between(healthy.history, *STEADY_WINDOW_S)
    assert expected > 0
    for behaviour in BEHAVIOURS:
        config = SimConfig(**base, byzantine=f"{f}:{behaviour}")
        faulty = run(config)
        assert "1" in {str(r) for r in faulty.byzantine}, faulty.byzantine
        assert faulty.safety_violations == [], _where(config)
        ratio = _ok_between(faulty.history, *STEADY_WINDOW_S) / expected
        assert ratio >= (nodes - f) / nodes * TARGET_FRACTION, f"{behaviour}: ratio {ratio:.3f}; {_where(config)}"


def chaos_config(nodes: int, index: int) -> SimConfig:
    """The ``index``-th seed whose f Byzantine replicas include the primary of
    view 0 (a behaviour per seed), chaos until 6 s, then healed; PBFT's settings
    all at their defaults."""
    f = (nodes - 1) // 3
    return SimConfig(
        protocol="pbft",
        nodes=nodes,
        clients=4,
        rate_ops=40.0,
        duration_s=12.0,
        op_timeout_s=1.5,
        faults="chaos",
        heal_at_s=6.0,
        byzantine=f"{f}:{BEHAVIOURS[index % len(BEHAVIOURS)]}",
        liveness_bound_s=RECOVERY_BOUND_S,
        seed=primary_seeds(nodes, index + 1)[-1],
    )


def check_chaos_run(config: SimConfig) -> Any:
    result = run(config)
    where = _where(config)
    assert result.safety_violations == [], f"{result.safety_violations[0]['message']}; {where}"
    verdict = check_history(result.history, timeout_s=60.0)
    assert str(verdict.verdict) == "linearizable", f"history {verdict.verdict}; {where}"
    assert result.liveness_ok is True, f"recovered after {result.recovered_after_s} s; {where}"
    return result


@pytest.mark.parametrize("nodes", [4, 7, 10])
def test_chaos_with_a_byzantine_primary_and_default_settings_quick(nodes: int) -> None:
    check_chaos_run(chaos_config(nodes, 0))


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [4, 7, 10])
def test_chaos_with_a_byzantine_primary_and_default_settings_200_seeds(nodes: int) -> None:
    for index in range(SWEEP_SEEDS):
        check_chaos_run(chaos_config(nodes, index))
