"""The network model: latency by region, serialization, loss, partitions, cuts."""

from __future__ import annotations

import pytest
from tests.sim.toy import Ping, World

from quorate.errors import ConfigError
from quorate.runtime.sim.network import FRAME_OVERHEAD_BYTES

INTRA_S = 0.001
INTER_S = 0.050
TWO_REGIONS = [[INTRA_S, INTER_S], [INTER_S, INTRA_S]]


def _arrival(world: World, src: int, message: object, depart_s: float = 0.0) -> float:
    world.inbox.clear()
    world.network.send(src, world.probe, message, depart_s)
    world.loop.run(depart_s + 10.0)
    assert len(world.inbox) == 1
    return world.inbox[0][0]


def test_latency_follows_regions() -> None:
    # node 0 in region 0, node 1 in region 1, the probe in region 0
    world = World(2, regions=[0, 1, 0], latency_s=TWO_REGIONS, bandwidth_bps=1e15)
    assert _arrival(world, 0, Ping(1)) == pytest.approx(INTRA_S)
    world2 = World(2, regions=[0, 1, 0], latency_s=TWO_REGIONS, bandwidth_bps=1e15)
    assert _arrival(world2, 1, Ping(1)) == pytest.approx(INTER_S)


def test_serialization_delay_grows_with_size() -> None:
    bandwidth_bps = 8e6  # 1 byte per microsecond
    small, large = Ping(1), Ping(2, b"x" * 10_000)
    world = World(1, latency_s=[[0.0]], bandwidth_bps=bandwidth_bps)
    t_small = _arrival(world, 0, small, depart_s=0.0)
    world = World(1, latency_s=[[0.0]], bandwidth_bps=bandwidth_bps)
    t_large = _arrival(world, 0, large, depart_s=0.0)
    size_small = world.network.size_of(small)
    size_large = world.network.size_of(large)
    assert size_large - size_small >= 10_000
    assert t_small == pytest.approx(size_small * 8 / bandwidth_bps)
    assert t_large == pytest.approx(size_large * 8 / bandwidth_bps)


def test_a_busy_link_delays_later_messages_fifo() -> None:
    bandwidth_bps = 8e6
    world = World(1, latency_s=[[0.0]], bandwidth_bps=bandwidth_bps)
    big = Ping(1, b"x" * 100_000)
    world.network.send(0, world.probe, big, 0.0)
    world.network.send(0, world.probe, Ping(2), 0.0)
    world.loop.run(10.0)
    (t1, *_), (t2, *_) = world.inbox
    size_big = world.network.size_of(big)
    assert t1 == pytest.approx(size_big * 8 / bandwidth_bps)
    assert t2 > t1  # queued behind the big one although it is tiny
    assert size_big > 100_000 + FRAME_OVERHEAD_BYTES - 1


def test_loss_drops_about_the_configured_fraction() -> None:
    world = World(1, loss=0.3, seed=3)
    for i in range(2000):
        world.network.send(0, world.probe, Ping(i), 0.0)
    world.loop.run(10.0)
    assert 1200 < len(world.inbox) < 1600
    assert world.network.dropped == 2000 - len(world.inbox)


def test_duplication_delivers_copies() -> None:
    world = World(1, duplicate=1.0)
    world.network.send(0, world.probe, Ping(1), 0.0)
    world.loop.run(1.0)
    assert len(world.inbox) == 2


def _jittered_arrival_order(reorder: float) -> list[int]:
    world = World(1, jitter_kind="uniform", jitter_s=0.01, bandwidth_bps=1e15, seed=5)
    world.network.reorder = reorder
    for i in range(200):
        world.network.send(0, world.probe, Ping(i), i * 1e-5)
    world.loop.run(1.0)
    return [m.n for _, _, _, m, _ in world.inbox]


def test_jitter_reorders_messages_when_reordering_is_allowed() -> None:
    order = _jittered_arrival_order(reorder=1.0)
    assert sorted(order) == list(range(200))
    assert order != list(range(200))


def test_links_are_fifo_by_default_despite_jitter() -> None:
    assert _jittered_arrival_order(reorder=0.0) == list(range(200))


def test_partition_blocks_between_groups_and_heal_restores() -> None:
    world = World(4)
    world.network.partition([(0, 1), (2,)], replicas=range(4))  # node 3 forms its own group
    assert world.network.connected(0, 1)
    assert not world.network.connected(0, 2)
    assert not world.network.connected(3, 0)
    assert world.network.connected(2, world.probe)  # clients reach every group
    world.network.send(0, 2, Ping(1), 0.0)
    assert world.network.dropped == 1
    world.network.heal()
    assert world.network.connected(0, 2) and world.network.connected(3, 0)


def test_one_way_cut() -> None:
    world = World(2)
    world.network.cut(0, 1)
    assert not world.network.connected(0, 1)
    assert world.network.connected(1, 0)
    world.network.heal()
    assert world.network.connected(0, 1)


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ConfigError, match="loss"):
        World(1, loss=1.5)
    with pytest.raises(ConfigError, match="jitter kind"):
        World(1, jitter_kind="gaussian")
    with pytest.raises(ConfigError, match="bandwidth"):
        World(1, bandwidth_bps=0.0)



def _faulty_world(seed: int) -> World:
    world = World(3, jitter_kind="uniform", jitter_s=0.002, bandwidth_bps=1e7, seed=seed, loss=0.2, duplicate=0.2)
    world.network.reorder = 0.3
    return world


def test_send_all_is_one_send_per_message_in_order() -> None:
    # One call for a whole outbox must draw the same random numbers in the same
    # order and occupy the link the same way as one send per message; this is
    # what keeps traces identical whichever way a node hands its messages over.
    batch = [(world_dst, Ping(i, b"p" * (i % 7) * 100)) for i, world_dst in enumerate([1, 2, 3, 1, 3] * 40)]
    one_by_one = _faulty_world(seed=9)
    for dst, message in batch:
        one_by_one.network.send(0, dst, message, 0.25)
    batched = _faulty_world(seed=9)
    batched.network.send_all(0, batch, 0.25)
    for world in (one_by_one, batched):
        world.loop.run(10.0)
    assert batched.inbox == one_by_one.inbox
    assert batched.loop.trace_sha256() == one_by_one.loop.trace_sha256()
    assert batched.network.link_free_at == one_by_one.network.link_free_at
    assert (batched.network.sent, batched.network.dropped) == (one_by_one.network.sent, one_by_one.network.dropped)
    assert 0 < batched.network.dropped < len(batch)  # the faults were exercised


def test_send_all_honours_partitions_per_destination() -> None:
    world = World(3, latency_s=[[0.0]], bandwidth_bps=1e15)
    world.network.partition([(0, 1), (2,)], replicas=range(3))
    world.network.send_all(0, [(1, Ping(1)), (2, Ping(2)), (world.probe, Ping(3))], 0.0)
    assert world.network.sent == 3
    assert world.network.dropped == 1  # only 0 -> 2 crosses the partition
    world.loop.run(1.0)
    assert [m.n for _, _, _, m, _ in world.inbox] == [3]
