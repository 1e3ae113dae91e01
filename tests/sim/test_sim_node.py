"""A simulated replica: CPU queueing, crashes, clocks and timers as deadlines."""

from __future__ import annotations

import pytest
from tests.sim.toy import Ping, Pong, World

from quorate.ids import NodeId
from quorate.runtime.sim.node import CostModel

COST_S = 0.010  # 10 ms of CPU per message, so queueing is easy to see


def _pongs(world: World) -> list[tuple[float, int]]:
    return [(t, m.n) for t, _, _, m, _ in world.inbox if type(m) is Pong]


def test_a_busy_node_queues_inputs_fifo() -> None:
    world = World(1, latency_s=[[0.0]], bandwidth_bps=1e15, cost=CostModel(base_s=COST_S, per_byte_s=0.0, tick_s=0.0))
    world.start()
    for i in range(3):  # all arrive at t=0
        world.network.send(world.probe, 0, Ping(i), 0.0)
    world.loop.run(1.0)
    pongs = _pongs(world)
    assert [n for _, n in pongs] == [0, 1, 2]
    assert [t for t, _ in pongs] == pytest.approx([COST_S, 2 * COST_S, 3 * COST_S])
    assert world.nodes[0].work_s == pytest.approx(3 * COST_S)


def test_per_byte_cost_and_slow_nodes() -> None:
    cost = CostModel(base_s=0.0, per_byte_s=1e-6, tick_s=0.0)
    world = World(1, latency_s=[[0.0]], bandwidth_bps=1e15, cost=cost)
    world.start()
    world.nodes[0].cpu_factor = 3.0
    ping = Ping(1, b"x" * 1000)
    size = world.network.size_of(ping)
    world.network.send(world.probe, 0, ping, 0.0)
    world.loop.run(1.0)
    assert _pongs(world)[0][0] == pytest.approx(3.0 * size * 1e-6)


def test_cost_by_message_type() -> None:
    cost = CostModel(base_s=1.0, per_byte_s=0.0, base_by_type_s={"Ping": 0.25})
    assert cost.cost_s(Ping(1), 100) == 0.25
    assert cost.cost_s(Pong(1), 100) == 1.0


class _CostedVerifier:
    def __init__(self) -> None:
        self.spent_s = 0.0


def test_verifier_spent_time_is_charged_and_reset() -> None:
    world = World(1, latency_s=[[0.0]], bandwidth_bps=1e15)
    verifier = _CostedVerifier()
    world.nodes[0].verifier = verifier
    world.start()
    verifier.spent_s = 0.004  # as if the step had verified signatures
    world.network.send(world.probe, 0, Ping(1), 0.0)
    world.loop.run(1.0)
    assert _pongs(world)[0][0] == pytest.approx(0.004)
    assert verifier.spent_s == 0.0


def test_crash_keeps_durable_state_only() -> None:
    world = World(1, latency_s=[[0.001]])
    world.start()
    for i in range(3):
        world.network.send(world.probe, 0, Ping(i), 0.0)
    world.loop.run(1.0)
    before = world.core(0)
    assert len(before.seen) == 3 and before.durable == [b"0", b"1", b"2"]
    node = world.nodes[0]
    node.crash()
    assert node.core is None
    world.network.send(world.probe, 0, Ping(9), world.loop.now)  # lost: node is down
    world.loop.run(2.0)
    node.start(world.loop.now)
    after = world.core(0)
    assert after is not before
    assert after.seen == []  # volatile state is gone
    assert after.durable == [b"0", b"1", b"2"]  # the log survived
    assert after.recovered is not None


def test_clock_drift_maps_local_deadlines_to_sim_time() -> None:
    world = World(1, period_s=1.0)
    node = world.nodes[0]
    node.set_clock(0.0, offset_jump_s=100.0, rate=2.0)  # local = 100 + 2 t
    world.start()
    world.loop.run(2.05)
    core = world.core(0)
    # deadlines every local second = every half simulated second
    assert core.ticks == 4
    assert core.tick_times == pytest.approx([101.0, 102.0, 103.0, 104.0])
    assert node.local_time(2.05) == pytest.approx(104.1)


def test_local_clock_never_runs_backwards() -> None:
    world = World(1)
    node = world.nodes[0]
    assert node.local_time(1.0) == 1.0
    node.set_clock(1.0, offset_jump_s=-0.5)
    assert node.local_time(1.2) == 1.0  # held until real time catches up
    assert node.local_time(2.0) == pytest.approx(1.5)


def test_sim_time_of_rounds_up_so_the_deadline_has_passed() -> None:
    world = World(1)
    node = world.nodes[0]
    node.set_clock(0.0, offset_jump_s=0.1, rate=1.0 + 1e-7)
    for deadline in (0.3, 1.7, 12345.678):
        t = node.sim_time_of(deadline)
        assert node.clock_offset_s + node.clock_rate * t >= deadline


def test_idle_nodes_cost_no_events() -> None:
    world = World(1000)
    world.start()
    world.loop.run(3600.0)
    assert world.loop.events == 0
    assert world.loop.pending() == 0


def test_timers_fire_as_deadlines_not_polls() -> None:
    world = World(10, period_s=0.5)
    world.start()
    world.loop.run(10.0)
    # each node: one wake per deadline, nothing else
    assert world.loop.events == 10 * 20
    assert all(world.core(i).ticks == 20 for i in range(10))


def test_superseded_timers_are_skipped() -> None:
    world = World(1, period_s=1.0)
    world.start()
    node = world.nodes[0]
    node.set_clock(0.0, offset_jump_s=0.0, rate=1.0)  # re-arms: the first wake is now stale
    world.loop.run(1.5)
    assert world.core(0).ticks == 1
    assert node.stale_wakes == 1


def test_client_senders_go_to_the_replica() -> None:
    world = World(1, latency_s=[[0.0]], probes_are_clients=True)
    world.start()
    world.network.send(world.probe, 0, Ping(1), 0.0)
    world.network.send(world.probe, 0, Ping(2), 0.0)
    world.loop.run(1.0)
    # the probe's id is >= first_client_id: requests reach the replica, not the core
    assert world.core(0).seen == []
    replica = world.nodes[0].replica
    assert replica is not None
    assert [m.n for _, m, _ in replica.requests] == [1, 2]  # type: ignore[attr-defined]
    assert NodeId(world.probe) == replica.requests[0][0]  # type: ignore[attr-defined]


def test_a_deadline_pushed_later_costs_one_event_per_period_not_per_push() -> None:
    world = World(1, period_s=1.0, reset_on_ping=True, latency_s=[[0.0]])
    world.start()
    heartbeats = 100
    for i in range(heartbeats):  # a "heartbeat" every 0.1 s for 10 s
        world.network.send(world.probe, 0, Ping(i), i * 0.1)
    world.loop.run(10.0)
    assert world.core(0).ticks == 0  # never timed out
    wake_events = world.loop.events - 2 * heartbeats  # minus pings and their pongs
    assert wake_events <= 11  # about one per period, not one per heartbeat
    world.loop.run(12.0)
    assert world.core(0).ticks >= 1  # once the pings stop, the timer fires
    assert world.core(0).tick_times[0] == pytest.approx(9.9 + 1.0)
