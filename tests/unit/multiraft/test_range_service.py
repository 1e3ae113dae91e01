"""A range group's store and service, driven by hand: bounds, wrong-range
answers, and a whole split with the meta group's answer (no simulator)."""

from __future__ import annotations

import random
from typing import Any

from quorate.core.ready import Entry, ReadState, Rejection
from quorate.core.service_message import ServiceMessage
from quorate.ids import NodeId
from quorate.multiraft import RangeDescriptor, RangeService, RangeStore, RangeTable, bootstrap_state
from quorate.multiraft.messages import STATUS_WRONG_RANGE, WRONG_RANGE, MetaAnswer, MetaCall, Retire
from quorate.multiraft.range import initial_image
from quorate.multiraft.table import decode_meta_op, decode_meta_result, encode_meta_result
from quorate.raft.config import RaftConfig
from quorate.raft.node import RaftNode
from quorate.runtime.driver import drive
from quorate.state.kv import Command, Put, encode_command, encode_op
from quorate.state.service import STATUS_OK, ClientReply, ClientRequest
from quorate.storage.base import Recovered

ME = NodeId(1)
CLIENT = NodeId(100)


class _Host:
    def __init__(self, service: RangeService) -> None:
        self.service = service

    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None: ...

    def send(self, to: NodeId, message: Any) -> None: ...

    def restore(self, snapshot: Any) -> None:
        self.service.restore(snapshot)

    def apply(self, entry: Entry) -> None:
        self.service.apply(entry)

    def read_ready(self, read: ReadState) -> None:
        self.service.read_ready(read)

    def rejected(self, rejection: Rejection) -> None: ...


def one_replica_range(split_at_ops: int = 0) -> tuple[RangeService, list[Any], list[int]]:
    """A one-voter range [\"\", end) on node 1 that has elected itself."""
    descriptor = RangeDescriptor(1, "", None, (1,))
    hard, snap = bootstrap_state(descriptor, initial_image(descriptor))
    core = RaftNode(ME, (), config=RaftConfig(join=True), rng=random.Random(1), now=0.0, recovered=Recovered(hard, snap, []))
    spawned: list[Any] = []
    retired: list[int] = []
    service = RangeService(
        core,
        RangeStore(),
        meta_replicas=(1,),
        split_at_ops=split_at_ops,
        spawn=lambda d, h, s: spawned.append((d, h, s)),
        retire=retired.append,
    )
    service.restore(snap)
    core.tick(5.0)  # campaigns; a single voter wins at once
    run(service, 5.0)
    assert core.is_leader
    return service, spawned, retired


def run(service: RangeService, now: float) -> None:
    drive(service.core, _Host(service))
    while service.tick_at is not None and service.tick_at <= now:
        service.tick(now)
        drive(service.core, _Host(service))


def put(service: RangeService, seq: int, key: str, now: float, client: int = 7) -> None:
    service.on_client_request(CLIENT, ClientRequest(client, seq, encode_op(Put(key, f"v{seq}"))), now)
    run(service, now)


def test_the_store_refuses_keys_outside_its_bounds() -> None:
    store = RangeStore(RangeDescriptor(3, "b", "d", (1,)))
    assert store.apply(1, encode_command(Command(1, 1, Put("c", "x")))).ok
    refused = store.apply(2, encode_command(Command(1, 2, Put("d", "x"))))
    assert refused.error == WRONG_RANGE and store.get("d") is None


def test_a_split_moves_the_right_keys_with_the_sessions() -> None:
    store = RangeStore(RangeDescriptor(3, "", None, (1, 2)))
    for seq, key in enumerate(["a", "c", "x", "y"], start=1):
        store.apply(seq, encode_command(Command(9, seq, Put(key, key))))
    left = RangeDescriptor(3, "", "m", (1, 2), 2)
    right = RangeDescriptor(4, "m", None, (1, 2), 1)
    image = store.split(left, right, None)
    assert store.get("x") is None and store.get("a") == "a"
    other = RangeStore()
    other.restore(image)
    assert other.descriptor == right and other.get("y") == "y" and other.get("a") is None
    # A retry of the last command the left side applied is answered, not applied again.
    assert other.apply(5, encode_command(Command(9, 4, Put("y", "again")))).ok
    assert other.get("y") == "y"


def test_a_request_for_a_key_outside_is_answered_wrong_range() -> None:
    service, _, _ = one_replica_range()
    service.store.descriptor = RangeDescriptor(1, "", "m", (1,), 2)
    put(service, 1, "q", 6.0)
    [(to, reply)] = service.take_replies()
    assert to == CLIENT and isinstance(reply, ClientReply) and reply.status == STATUS_WRONG_RANGE
    assert decode_meta_result(reply.result).ranges == [service.store.descriptor]


def test_a_split_runs_through_the_meta_group_and_spawns_the_right_hand_group() -> None:
    service, spawned, _ = one_replica_range(split_at_ops=3)
    for seq, key in enumerate(["a", "b", "x", "y"], start=1):
        put(service, seq, key, 6.0)
    # The leader recorded its intent and called the meta group.
    assert service.store.intent is not None
    replies: list[tuple[NodeId, Any]] = list(service.take_replies())
    [envelope] = [m for _, m in replies if isinstance(m, ServiceMessage)]
    assert envelope.group == 0
    call: MetaCall = envelope.message
    assert call.reply_group == 1
    meta = RangeTable([RangeDescriptor(1, "", None, (1,))])
    result = meta.apply(1, call.request.op)
    assert result.ok, decode_meta_op(call.request.op)
    answer = ClientReply(call.request.client, call.request.seq, STATUS_OK, encode_meta_result(result))
    service.on_service_message(NodeId(1), MetaAnswer(answer), 6.1)
    run(service, 6.1)
    left, right = result.ranges
    assert service.store.descriptor == left
    [(descriptor, hard_state, snapshot)] = spawned
    assert descriptor == right and snapshot.index == hard_state.commit
    image = RangeStore()
    image.restore(snapshot.data)
    assert sorted(k for k, _ in image.list_prefix("")) == [k for k in ("a", "b", "x", "y") if k >= right.start]
    # Writes to the right-hand keys are now refused here.
    put(service, 9, "z" if right.start <= "z" else "a", 6.2)
    assert service.take_replies()[-1][1].status == STATUS_WRONG_RANGE


def test_a_command_applied_after_the_trigger_is_refused_on_every_replica() -> None:
    service, _, _ = one_replica_range()
    service.store.descriptor = RangeDescriptor(1, "", "m", (1,), 2)
    results: list[Any] = []
    service.on_result = lambda entry, result: results.append(result)
    service.apply(Entry(50, 1, 0, encode_command(Command(7, 1, Put("q", "late")))))
    assert [r.error for r in results] == [WRONG_RANGE]
    assert service.store.get("q") is None


def test_retire_is_heeded_only_by_a_replica_that_was_moved_away() -> None:
    service, _, retired = one_replica_range()
    service.on_service_message(NodeId(3), Retire(1, (1, 2, 3)), 7.0)
    assert retired == []
    service.on_service_message(NodeId(3), Retire(1, (2, 3, 4)), 7.0)
    assert retired == [1]
