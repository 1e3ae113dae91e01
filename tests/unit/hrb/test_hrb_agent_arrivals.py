"""Agents' arrivals: open-loop Poisson arrivals, a start held until the shards
have leaders, a bounded issuing period (``quorate.hrb.agents``, "Arrivals")."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("nacl")

from quorate.errors import ConfigError
from quorate.hrb.agents import READY_POLL_S, RESEND_S, AgentPool, WorkloadSettings
from quorate.hrb.shard.state import TxnOutcome

MEMBERS: dict[int, tuple[int, ...]] = {1: (1, 2, 3, 4), 2: (5, 6, 7, 8)}


def _pool(agents: int, ready: Any = None, **workload: Any) -> AgentPool:
    settings = WorkloadSettings(workload="kv", **workload)
    return AgentPool(settings, agents=agents, members=MEMBERS, replies_needed=1, seed=7, ready=ready)


def _run_until(pool: AgentPool, until: float) -> list[float]:
    """Tick the pool at every time it asks for, up to ``until``; the tick times."""
    ticks = []
    pool.tick(0.0)
    while (wake := pool.wake_at()) is not None and wake <= until:
        pool.tick(wake)
        ticks.append(wake)
    return ticks


def test_open_loop_arrivals_keep_their_rate_and_count_those_that_find_every_agent_busy() -> None:
    pool = _pool(5, arrival_rate_ops=200.0)
    _run_until(pool, 1.0)
    sends = pool.take_sends()
    seen = {txn.txn_id for _, _, _, txn in sends}
    issued = len(seen)
    assert issued == 5  # nobody answers: each agent takes one arrival, then stays busy
    assert all(a.pending is not None for a in pool.agents)
    arrivals = issued + pool.not_started
    assert 140 <= arrivals <= 260  # about 200 in one second, whatever the cluster does
    # An answer frees its agent: the next arrival is taken, not counted as not started.
    agent = pool.agents[2]
    assert agent.pending is not None
    txn = agent.pending.txn
    pool.receive(2, MEMBERS[agent.home][0], TxnOutcome(txn.txn_id, txn.client, txn.seq, True), 1.0)
    assert agent.pending is None
    before = pool.not_started
    _run_until(pool, 1.1)
    new = {t.txn_id for _, _, _, t in pool.take_sends()} - seen  # the others are resends of the busy four
    assert len(new) == 1 and pool.not_started > before


def test_closed_loop_is_the_default_and_open_loop_agents_never_issue_on_their_own() -> None:
    closed = _pool(3)
    closed.tick(0.0)
    assert len({t.txn_id for _, _, _, t in closed.take_sends()}) == 3  # every agent at time 0
    assert closed.started_at == 0.0
    open_loop = _pool(3, arrival_rate_ops=1.0)
    open_loop.tick(0.0)
    assert open_loop.take_sends() == []  # the first arrival comes later


def test_agents_wait_for_ready_and_the_start_time() -> None:
    led = {"now": False}
    pool = _pool(2, ready=lambda: led["now"], start_s=0.5, wait_for_leaders=True)
    pool.tick(0.0)
    assert pool.started_at is None and pool.take_sends() == []
    assert pool.wake_at() == 0.5  # not before the start time
    pool.tick(0.5)
    assert pool.started_at is None and pool.take_sends() == []
    assert pool.wake_at() == pytest.approx(0.5 + READY_POLL_S)  # then it asks again
    led["now"] = True
    pool.tick(0.55)
    assert pool.started_at == 0.55
    sends = pool.take_sends()
    assert len({t.txn_id for _, _, _, t in sends}) == 2
    assert pool.history[0]["time"] == 0.55


def test_agents_issue_for_the_period_asked_then_stop() -> None:
    pool = _pool(50, arrival_rate_ops=100.0, issue_for_s=0.5)
    ticks = _run_until(pool, 5.0)
    assert pool.stopped
    assert max(ticks) <= 0.5 + RESEND_S * 5  # only resends after the period, none far beyond the timeout
    invoked = [e["time"] for e in pool.history if e["type"] == "invoke"]
    assert invoked and max(invoked) < 0.5


@pytest.mark.parametrize(
    "field", [{"arrival_rate_ops": -1.0}, {"start_s": float("inf")}, {"issue_for_s": 0.0}, {"keys_per_shard": 0}]
)
def test_bad_arrival_settings_are_refused(field: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        WorkloadSettings(**field).validate()


def _small_run(wait: bool) -> Any:
    import dataclasses

    from quorate.bench.hrb_sim import HrbRunConfig
    from quorate.hrb.simulation import HrbSystem
    from quorate.runtime.sim.composed import SystemSimulation

    config = HrbRunConfig(nodes=8, shard_size=4, core=4, workload="kv", agents=4, duration_s=3.0, drain_s=1.0, seed=1)
    settings = config.settings()
    settings = dataclasses.replace(settings, workload=dataclasses.replace(settings.workload, wait_for_leaders=wait))
    model = HrbSystem(settings)
    SystemSimulation(config.sim_config(), model, drain_s=config.drain_s, name="hrb").run()
    return model


def test_agents_that_wait_for_the_shards_leaders_are_never_resent_to_a_leaderless_shard() -> None:
    # The tail of `bench paper`'s HRB cells: a transaction sent at time 0 reaches
    # shards with no leader yet (every member answers Redirect(None) and drops
    # it) and is resent every RESEND_S until one is elected, so it took about
    # k * RESEND_S + 0.3 s. Waiting for the leaders removes exactly those.
    eager = _small_run(wait=False)
    first = [c.latency_s for c in eager.pool.completed if c.invoked_at == 0.0 and c.outcome == "ok"]
    assert first and min(first) >= RESEND_S  # each was resent at least once
    waiting = _small_run(wait=True)
    assert waiting.pool.started_at is not None and waiting.pool.started_at > 0.0
    assert waiting.shards_led()
    intra = [c.latency_s for c in waiting.pool.completed if c.outcome == "ok" and not c.cross]
    assert intra and max(intra) < RESEND_S


def test_an_open_loop_step_drains_longer_than_an_agent_waits() -> None:
    # With a shorter drain the slowest cross-shard transactions (a core round,
    # 2-3.5 s at p99) counted as not answered, and a step failed the 95 % rule
    # with every intra-shard transaction answered (n = 256, 1,385 txn/s: 40 of
    # 103 cross-shard ones with a 3 s drain, 2 of 101 with 6 s).
    pytest.importorskip("hdrh")  # the bench extra
    from quorate.bench.hrb_load import OPEN_LOOP_DRAIN_S

    assert WorkloadSettings().op_timeout_s < OPEN_LOOP_DRAIN_S
