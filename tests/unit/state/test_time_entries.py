"""Time entries: TTL keys expire in real time on an idle group, by the log.

- The store publishes its earliest deadline; the replica service wakes at it
  and (crash faults) the leader proposes a ``Tick`` stamped with its clock;
  followers propose nothing; a store with no TTL key asks for nothing.
- Log time never goes backwards, even when a new leader's clock is behind.
- Byzantine groups: rounds of 2f + 1 signed readings; a round's time lies
  between honest readings whatever f liars claim; a TTL put waits for a round
  that began after it; forged readings are rejected by every replica alike.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from quorate.core import Accepted, Entry, Queued, Ready, Redirect
from quorate.core.protocol import ProposeOutcome
from quorate.ids import NodeId
from quorate.state.kv import (
    NO_SESSION,
    Command,
    Delete,
    Get,
    KVStore,
    Put,
    Tick,
    decode_command,
    encode_command,
    encode_op,
)
from quorate.state.replica_time import ReplicaClock, TimeRounds, tick_signed_bytes
from quorate.state.service import BftService, ClientRequest, ReplicaService

pytest.importorskip("nacl")

from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_cluster_keys


def run(kv: KVStore, *commands: Command) -> None:
    for command in commands:
        kv.apply(kv.applied_index + 1, encode_command(command))


class LogCore:
    """A stand-in core: proposals are appended to ``log``; the test commits."""

    def __init__(self, node: int = 1, leader: bool = True, bft: bool = False) -> None:
        self.node = NodeId(node)
        self.is_leader = leader
        self.bft = bft
        self.log: list[Entry] = []

    @property
    def id(self) -> NodeId:
        return self.node

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        if not self.bft and not self.is_leader:
            return Redirect(NodeId(2))
        self.log.append(Entry(1, len(self.log) + 1, 0, command))
        return Queued(0) if self.bft else Accepted(len(self.log), 1)

    def read_index(self, context: bytes, now: float) -> ProposeOutcome:
        return Redirect(None)

    def step(self, sender: NodeId, message: Any, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def has_ready(self) -> bool:
        return False

    def ready(self) -> Ready:
        return Ready()

    def advance(self, ready: Ready) -> None: ...


def put(service: ReplicaService, seq: int, key: str, ttl_s: float | None, now: float) -> None:
    service.on_client_request(NodeId(100), ClientRequest(9, seq, encode_op(Put(key, "v", ttl_s=ttl_s))), now)


def commit_all(core: LogCore, *services: ReplicaService, start: int = 0) -> None:
    """Apply ``core.log[start:]`` on every service, in order."""
    for entry in core.log[start:]:
        for service in services:
            service.apply(entry)


# -- the store ------------------------------------------------------------------
def test_the_store_publishes_its_earliest_live_deadline() -> None:
    kv = KVStore()
    assert kv.next_deadline_s is None
    run(kv, Command(1, 1, Put("a", "1", ttl_s=5.0), time_s=10.0), Command(1, 2, Put("b", "1", ttl_s=2.0), time_s=10.0))
    assert kv.next_deadline_s == 12.0
    run(kv, Command(1, 3, Delete("b"), time_s=10.5))
    assert kv.next_deadline_s == 15.0  # b's deadline is void
    run(kv, Command(1, 4, Put("a", "forever"), time_s=11.0))
    assert kv.next_deadline_s is None  # an overwrite without TTL cancels a's


def test_a_tick_moves_log_time_and_expires_what_is_due() -> None:
    kv = KVStore()
    run(kv, Command(1, 1, Put("k", "v", ttl_s=3.0), time_s=100.0))
    version = kv.time_version
    run(kv, Command(NO_SESSION, 0, Tick(1, 102.9), time_s=102.9))
    assert kv.get("k") == "v"
    run(kv, Command(NO_SESSION, 0, Tick(1, 103.0), time_s=103.0))
    assert kv.get("k") is None and kv.next_deadline_s is None and kv.time_version > version
    # A tick stamped earlier (a leader whose clock is behind) does not move time back.
    run(kv, Command(NO_SESSION, 0, Tick(2, 50.0), time_s=50.0))
    assert kv.now_s == 103.0


def test_clients_cannot_send_a_tick() -> None:
    from quorate.state.kv import decode_op

    with pytest.raises(msgspec.ValidationError):
        decode_op(msgspec.msgpack.encode(Tick(1, 1e12)))


# -- the service, crash faults ---------------------------------------------------------
def test_the_leader_proposes_one_time_entry_when_the_deadline_is_due() -> None:
    core, follower_core = LogCore(), LogCore(node=2, leader=False)
    leader, follower = ReplicaService(core, KVStore()), ReplicaService(follower_core, KVStore())
    assert leader.tick_at is None  # no TTL key: nothing to wake for
    put(leader, 1, "k", 3.0, now=10.0)
    commit_all(core, leader, follower)
    assert leader.tick_at == follower.tick_at == 13.0  # the simulator's clock is the stamp clock
    leader.tick(12.5)  # early: nothing
    assert len(core.log) == 1
    leader.tick(13.0)
    follower.tick(13.0)
    assert follower_core.log == []  # followers never propose time
    [tick_entry] = core.log[1:]
    command = decode_command(tick_entry.data)
    assert command.op == Tick(1, 13.0) and command.time_s == 13.0 and command.client == NO_SESSION
    assert leader.tick_at == 13.0 + leader.time_entry_retry_s  # until the entry applies
    commit_all(core, leader, follower, start=1)
    for service in (leader, follower):
        assert service.kv.get("k") is None and service.tick_at is None
    assert leader.time_entries == 1


def test_a_lost_time_entry_is_proposed_again_after_the_retry_interval() -> None:
    core = LogCore()
    service = ReplicaService(core, KVStore(), time_entry_retry_s=0.5)
    put(service, 1, "k", 1.0, now=0.0)
    commit_all(core, service)
    service.tick(1.0)
    assert len(core.log) == 2
    core.log.pop()  # the leader lost it (say, it crashed before replicating)
    service.tick(1.2)
    assert len(core.log) == 1
    service.tick(1.5)
    assert len(core.log) == 2 and decode_command(core.log[1].data).time_s == 1.5


def test_no_time_entries_without_ttl_keys_or_after_the_key_is_deleted() -> None:
    core = LogCore()
    service = ReplicaService(core, KVStore())
    for seq in range(1, 5):
        put(service, seq, f"k{seq}", None, now=float(seq))
    commit_all(core, service)
    assert service.tick_at is None
    put(service, 5, "short", 2.0, now=5.0)
    service.on_client_request(NodeId(100), ClientRequest(9, 6, encode_op(Delete("short"))), 5.5)
    commit_all(core, service, start=4)
    assert service.tick_at is None
    for t in range(6, 60):
        service.tick(float(t))
    assert len(core.log) == 6  # nothing but the client's commands


def test_a_real_node_converts_the_deadline_to_its_own_clock() -> None:
    """Real nodes stamp with the wall clock and wake on the monotonic one."""
    wall, monotonic = [1_700_000_000.0], [50.0]
    core = LogCore()
    service = ReplicaService(core, KVStore(), stamp_clock=lambda: wall[0], local_clock=lambda: monotonic[0])
    put(service, 1, "k", 3.0, now=monotonic[0])
    commit_all(core, service)
    assert service.tick_at == pytest.approx(53.0)
    wall[0] += 3.0
    monotonic[0] += 3.0
    service.tick(monotonic[0])
    assert decode_command(core.log[1].data).time_s == 1_700_000_003.0


def test_stamp_and_local_clocks_go_together() -> None:
    with pytest.raises(ValueError, match="together"):
        ReplicaService(LogCore(), KVStore(), stamp_clock=lambda: 0.0)


# -- rounds of readings (Byzantine faults) ----------------------------------------------
def test_a_round_closes_at_2f_plus_1_readings_with_the_f_plus_1_th_largest() -> None:
    rounds = TimeRounds(replicas=4)  # f = 1
    assert rounds.observe(0, 1, 10.0) is None
    assert rounds.observe(0, 1, 99.0) is None  # a second reading for the round: ignored
    assert rounds.observe(1, 1, 12.0) is None
    closed = rounds.observe(2, 1, 11.0)
    assert closed == (11.0, []) and rounds.rounds == 1 and not rounds.readings
    assert rounds.observe(3, 1, 50.0) is None and not rounds.readings  # late: cannot open a round


@pytest.mark.parametrize("replicas", [1, 4, 7, 10])
def test_f_liars_cannot_move_a_round_outside_the_honest_readings(replicas: int) -> None:
    rng = random.Random(replicas)
    f = (replicas - 1) // 3
    for _ in range(500):
        rounds = TimeRounds(replicas)
        honest = {r: rng.uniform(100.0, 101.0) for r in range(f, replicas)}
        liars = {r: rng.choice([0.0, 1e12, rng.uniform(0, 1e6)]) for r in range(f)}
        readings = list({**honest, **liars}.items())
        rng.shuffle(readings)
        closed = None
        for replica, value in readings:
            closed = closed or rounds.observe(replica, 1, value)
        assert closed is not None
        counted = set(dict(readings[: rounds.round_size]))
        counted_honest = [v for r, v in honest.items() if r in counted]
        assert min(counted_honest) <= closed[0] <= max(counted_honest)


def test_a_ttl_put_waits_for_a_round_that_began_after_it() -> None:
    kv = KVStore(replicas=4)
    run(kv, Command(1, 1, Put("k", "v", ttl_s=3.0)))
    assert kv.time_wanted and kv.next_deadline_s is None and kv.get("k") == "v"
    run(kv, Command(NO_SESSION, 0, Tick(0, 1000.0, 1)))  # round 1 is now being collected
    run(kv, Command(1, 2, Put("late", "v", ttl_s=3.0)))  # needs round 2: round 1 may predate it
    run(kv, Command(NO_SESSION, 0, Tick(1, 1001.0, 1)), Command(NO_SESSION, 0, Tick(2, 1002.0, 1)))
    assert kv.now_s == 1001.0 and kv.next_deadline_s == 1004.0  # k started at round 1's time
    assert kv.time_wanted  # "late" still waits
    run(kv, *(Command(NO_SESSION, 0, Tick(r, 1003.0 + r, 2)) for r in (1, 2, 3)))
    assert kv.time_rounds is not None and kv.time_rounds.rounds == 2 and not kv.time_wanted
    assert kv.get("k") is None  # round 2's time 1005 passed k's deadline 1004
    assert kv.next_deadline_s == 1005.0 + 3.0
    # Stamps mean nothing in a Byzantine group.
    run(kv, Command(1, 3, Get("late"), time_s=1e12))
    assert kv.get("late") == "v"


def test_time_rounds_survive_a_snapshot_and_old_snapshots_still_load() -> None:
    kv = KVStore(replicas=4)
    run(kv, Command(1, 1, Put("k", "v", ttl_s=3.0)), Command(NO_SESSION, 0, Tick(0, 7.0, 1)))
    copy = KVStore(replicas=4)
    copy.restore(kv.snapshot())
    assert copy.time_rounds is not None and copy.time_rounds.readings == {0: 7.0} and copy.time_wanted
    run(copy, Command(NO_SESSION, 0, Tick(1, 8.0, 1)), Command(NO_SESSION, 0, Tick(2, 9.0, 1)))
    assert copy.next_deadline_s == 11.0
    # A version-1 snapshot (before time rounds) has five fields; a store
    # without rounds still writes exactly that, which earlier releases read.
    old = msgspec.msgpack.encode([1, 5.0, {"": {"a": "b"}}, [[9.0, "", "a"]], {}])
    crash = KVStore()
    crash.restore(old)
    assert crash.get("a") == "b" and crash.next_deadline_s == 9.0
    assert crash.snapshot() == old
    # A store that has made changes keeps their revision and history: version 3.
    assert msgspec.msgpack.decode(kv.snapshot())[0] == 3
    assert msgspec.msgpack.decode(KVStore(replicas=4).snapshot())[0] == 2


# -- the service, Byzantine faults ------------------------------------------------------
def bft_group(n: int = 4) -> tuple[list[LogCore], list[BftService]]:
    voters = [NodeId(i) for i in range(n)]
    pairs = ed25519_cluster_keys(b"time-entries", voters)
    verifier = Ed25519Verifier({v: p.public_key for v, p in pairs.items()})
    cores = [LogCore(node=v, bft=True) for v in voters]
    services = [
        BftService(core, KVStore(replicas=n), clock=ReplicaClock(Ed25519Signer(core.id, pairs[core.id].signing_key), verifier))
        for core in cores
    ]
    return cores, services


def order(cores: list[LogCore], services: list[BftService]) -> None:
    """Order every proposal once (a stand-in for PBFT's agreement), in core
    order, and apply the new entries on every replica."""
    entries = [e for core in cores for e in core.log]
    for core in cores:
        core.log.clear()
    for service in services:
        for entry in entries:
            service.apply(Entry(1, service.applied + 1, 0, entry.data))


def test_a_bft_group_expires_a_ttl_key_from_signed_readings() -> None:
    cores, services = bft_group()
    services[0].on_client_request(NodeId(100), ClientRequest(9, 1, encode_op(Put("k", "v", ttl_s=3.0))), 0.0)
    order(cores, services)
    assert all(s.kv.time_wanted and s.tick_at == float("-inf") for s in services)
    for s in services:
        s.tick(100.0)  # each replica's clock reads 100: they open and fill round 1
    order(cores, services)
    assert {s.kv.now_s for s in services} == {100.0} and {s.kv.next_deadline_s for s in services} == {103.0}
    assert all(s.tick_at == 103.0 for s in services)
    for s in services[:3]:  # one replica is silent; 2f + 1 = 3 readings suffice
        s.tick(103.0)
    order(cores, services)
    assert all(s.kv.get("k") is None for s in services)
    assert all(s.kv.now_s == 103.0 for s in services)


def test_a_forged_reading_is_rejected_by_every_replica() -> None:
    cores, services = bft_group()
    forged = Tick(1, 1e12, 1, b"\x00" * 64)  # replica 1 never signed this
    also_forged = Tick(2, 1e12, 1, services[0].clock.sign(1, 1e12))  # type: ignore[union-attr]  # 0's signature, 2's name
    for tick in (forged, also_forged):
        cores[0].log.append(Entry(1, 1, 0, encode_command(Command(NO_SESSION, 0, tick))))
    order(cores, services)
    assert all(s.rejected_ticks == 2 and s.kv.time_rounds is not None and not s.kv.time_rounds.readings for s in services)
    assert tick_signed_bytes(1, 1, 1.0) != tick_signed_bytes(2, 1, 1.0)


def test_a_bft_replica_without_clock_keys_never_moves_time() -> None:
    core = LogCore(bft=True)
    service = BftService(core, KVStore(replicas=4))
    service.on_client_request(NodeId(100), ClientRequest(9, 1, encode_op(Put("k", "v", ttl_s=1.0))), 0.0)
    order([core], [service])
    service.tick(10.0)
    assert len(core.log) == 0 and service.kv.get("k") == "v"
    with pytest.raises(ValueError, match="group size"):
        BftService(LogCore(bft=True), KVStore())
