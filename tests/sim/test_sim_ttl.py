"""TTL keys expire in real time on an idle simulated cluster, deterministically.

A key put with a 3 s TTL on an otherwise idle cluster is gone one commit after
its deadline by the leader's clock: the leader's replica service wakes at the
deadline and proposes a time entry stamped with exactly that time, and every
replica expires the key at the same log index. An idle cluster without TTL
keys appends nothing. A new leader whose clock is behind expires the key by
its own clock, and log time never goes backwards. A PBFT group expires it from
rounds of signed clock readings (so does a HotStuff group), and a replica
whose clock runs far ahead cannot make it expire early.
"""

from __future__ import annotations

from typing import Any

import pytest

from quorate.runtime.sim.bft import session_id
from quorate.runtime.sim.cluster import SimConfig, Simulation
from quorate.state.kv import Delete, Put, Tick, decode_command, encode_op
from quorate.state.service import ClientReply, ClientRequest

TTL_S = 3.0
HEARTBEAT_S = 0.1
"""Raft's default heartbeat: followers learn a commit index at the latest one
heartbeat after the leader."""
ONE_COMMIT_S = 0.01
"""A generous bound of one replication round trip here (0.5 ms links, CPU
costs of microseconds): what the leader needs to commit a time entry."""


class World:
    """A simulated cluster plus one client endpoint the test drives by hand."""

    def __init__(self, protocol: str = "raft", nodes: int = 3, seed: int = 5, **options: Any) -> None:
        self.sim = Simulation(
            SimConfig(protocol=protocol, nodes=nodes, clients=1, seed=seed, protocol_options=options)
        )
        self.client = nodes + 1  # endpoints: replicas 1..n, then the clients
        self.replies: list[ClientReply] = []
        kind = self.sim.loop.add_kind(lambda event: self.replies.append(event[5]))
        self.sim.network.deliver_kind_of[self.client] = kind
        for node in self.sim.nodes:
            node.start(0.0)
        self.seq = 0

    @property
    def now(self) -> float:
        return self.sim.loop.now

    def run(self, until_s: float) -> None:
        self.sim.loop.run(until_s)

    def leader(self) -> int:
        leaders = [n.id for n in self.sim.nodes if n.alive and n.core.is_leader]  # type: ignore[union-attr]
        assert len(leaders) == 1, leaders
        return int(leaders[0])

    def send(self, op: Any, to: list[int], session: int = 1) -> None:
        self.seq += 1
        request = ClientRequest(session, self.seq, encode_op(op))
        for node in to:
            self.sim.network.send(self.client, node, request, self.now)

    def stores(self) -> list[Any]:
        return [n.replica.kv for n in self.sim.nodes if n.alive]  # type: ignore[union-attr]

    def node(self, node_id: int) -> Any:
        """The simulated node with id ``node_id`` (replicas are numbered 1..n)."""
        return self.sim.nodes[node_id - 1]

    def holders(self, key: str) -> list[int]:
        return [int(n.id) for n in self.sim.nodes if n.alive and n.replica.kv.get(key) is not None]  # type: ignore[union-attr]


def _time_entries(node: Any) -> list[tuple[int, Tick, float]]:
    core = node.core
    out = []
    for index in range(1, core.last_index + 1):
        entry = core.entry_at(index)
        if entry is None or entry.kind != 0:
            continue
        command = decode_command(entry.data)
        if isinstance(command.op, Tick):
            out.append((index, command.op, command.time_s))
    return out


def _put_with_ttl(world: World) -> float:
    """Put ``k`` with ``TTL_S`` through the leader; its deadline (log time)."""
    leader = world.leader()
    world.send(Put("k", "v", ttl_s=TTL_S), [leader])
    world.run(world.now + 0.5)
    assert [r.status for r in world.replies] == ["ok"]
    deadlines = {kv.next_deadline_s for kv in world.stores()}
    assert len(deadlines) == 1
    deadline = deadlines.pop()
    assert deadline is not None
    return float(deadline)


def test_a_ttl_key_is_gone_one_commit_after_its_deadline_on_an_idle_cluster() -> None:
    world = World()
    world.run(5.0)
    leader = world.leader()
    deadline = _put_with_ttl(world)
    world.run(deadline - 1e-6)
    assert world.holders("k") == [1, 2, 3]  # never early
    world.run(deadline + ONE_COMMIT_S)
    assert leader not in world.holders("k")
    world.run(deadline + HEARTBEAT_S + ONE_COMMIT_S)
    assert world.holders("k") == []
    # One time entry, stamped with exactly the deadline, at the same index everywhere.
    entries = [_time_entries(node) for node in world.sim.nodes]
    assert entries[0] == entries[1] == entries[2]
    [(_, tick, stamp)] = entries[0]
    assert stamp == deadline and tick.time_s == deadline and tick.replica == leader
    assert all(kv.now_s == deadline for kv in world.stores())
    # Then quiet again: nothing is due, nothing is proposed.
    last = world.node(leader).core.last_index  # type: ignore[union-attr]
    world.run(world.now + 60.0)
    assert world.node(leader).core.last_index == last  # type: ignore[union-attr]


def test_the_same_seed_gives_the_same_run() -> None:
    hashes = []
    for _ in range(2):
        world = World(seed=9)
        world.run(5.0)
        _put_with_ttl(world)
        world.run(20.0)
        hashes.append(world.sim.loop.trace_sha256())
    assert hashes[0] == hashes[1]


def test_an_idle_cluster_without_ttl_keys_appends_nothing() -> None:
    world = World()
    world.run(5.0)
    leader = world.leader()
    before = world.node(leader).core.last_index  # type: ignore[union-attr]
    # A TTL key deleted before its deadline leaves nothing due either.
    world.send(Put("short", "v", ttl_s=TTL_S), [leader])
    world.send(Delete("short"), [leader])
    world.run(world.now + 120.0)
    after = [n.core.last_index for n in world.sim.nodes]  # type: ignore[union-attr]
    assert after == [before + 2] * 3  # the put and the delete, nothing else
    assert all(_time_entries(n) == [] for n in world.sim.nodes)
    assert all(n.replica.time_entries == 0 for n in world.sim.nodes)  # type: ignore[union-attr]


def test_a_new_leader_whose_clock_is_behind_expires_by_its_clock_and_time_never_goes_back() -> None:
    behind_s = 5.0
    world = World(seed=3)
    world.run(5.0)
    old = world.leader()
    deadline = _put_with_ttl(world)
    log_time = world.stores()[0].now_s
    for node in world.sim.nodes:
        if int(node.id) != old:
            node.set_clock(world.now, offset_jump_s=-behind_s)
    world.node(old).crash()
    seen = {int(n.id): n.replica.kv.now_s for n in world.sim.nodes if n.alive}  # type: ignore[union-attr]
    while world.now < deadline + behind_s + 5.0:
        world.run(world.now + 0.05)
        for node in world.sim.nodes:
            if node.alive:
                now_s = node.replica.kv.now_s  # type: ignore[union-attr]
                assert now_s >= seen[int(node.id)], "log time went backwards"
                seen[int(node.id)] = now_s
        if world.now < deadline + behind_s:
            assert len(world.holders("k")) == 2, world.now  # not before the new leader's clock says so
    assert world.holders("k") == []
    new = world.leader()
    # A put after the election is stamped with the slow clock; log time stays.
    world.send(Put("later", "v"), [new])
    world.run(world.now + 0.5)
    assert all(kv.now_s >= log_time for kv in world.stores())
    [(_, tick, stamp)] = _time_entries(world.node(new))
    assert tick.replica == new and stamp >= deadline


def _bft_world(protocol: str) -> World:
    return World(protocol=protocol, nodes=4, seed=11)


def _bft_put(world: World) -> float:
    """Put ``k`` with ``TTL_S`` by sending to every replica; when it was sent."""
    sent_at = world.now
    world.send(Put("k", "v", ttl_s=TTL_S), [1, 2, 3, 4], session=session_id(0, world.client))
    world.run(world.now + 1.0)
    assert {r.status for r in world.replies} == {"ok"} and len(world.replies) >= 2
    return sent_at


@pytest.mark.parametrize("protocol", ["pbft", "hotstuff"])
def test_a_bft_group_expires_a_ttl_key_from_rounds_of_signed_readings(protocol: str) -> None:
    world = _bft_world(protocol)
    world.run(2.0)
    sent_at = _bft_put(world)
    deadlines = {kv.next_deadline_s for kv in world.stores()}
    assert len(deadlines) == 1
    deadline = deadlines.pop()
    assert deadline is not None and sent_at + TTL_S <= deadline <= sent_at + TTL_S + 0.1
    world.run(deadline - 1e-6)
    assert world.holders("k") == [1, 2, 3, 4]
    world.run(deadline + 0.2)
    assert world.holders("k") == []
    rounds = {kv.time_rounds.rounds for kv in world.stores()}
    assert rounds == {2}  # one to start the TTL, one to expire it
    world.run(world.now + 60.0)
    assert {kv.time_rounds.rounds for kv in world.stores()} == {2}  # idle again: no rounds


@pytest.mark.parametrize("protocol", ["pbft", "hotstuff"])
def test_a_bft_replica_whose_clock_runs_ahead_cannot_expire_a_key_early(protocol: str) -> None:
    world = _bft_world(protocol)
    world.run(2.0)
    world.node(4).set_clock(world.now, offset_jump_s=100.0)
    sent_at = _bft_put(world)
    world.run(sent_at + TTL_S - 0.01)
    assert world.holders("k") == [1, 2, 3, 4]
    assert all(kv.now_s < sent_at + TTL_S for kv in world.stores())
    world.run(sent_at + TTL_S + 1.0)
    assert world.holders("k") == []
    # The fast replica's readings were valid, only outvoted.
    assert all(n.replica.rejected_ticks == 0 for n in world.sim.nodes)  # type: ignore[union-attr]
