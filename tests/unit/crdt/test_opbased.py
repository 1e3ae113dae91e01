"""Causal broadcast (buffering, duplicates, acknowledgement and compaction,
repair) and the operation-based counter, sets, registers and lists on it."""

from __future__ import annotations

import pytest

from quorate.crdt import (
    HLC,
    CausalBatch,
    CausalBroadcast,
    CausalMessage,
    OpReplica,
    pack_batches,
)
from quorate.errors import LocalProtocolError, RemoteProtocolError


def deliver_all(replicas: list[OpReplica], messages: list[CausalMessage]) -> None:
    for replica in replicas:
        for message in messages:
            replica.receive(message.origin, message)


def test_a_message_waits_for_its_dependencies_and_then_both_are_delivered() -> None:
    a, b, c = OpReplica(1), OpReplica(2), OpReplica(3)
    first = a.add("s", "x")
    b.receive(1, first)
    second = b.remove("s", "x")  # depends on a's add
    # c hears the remove before the add: it must wait, not apply.
    assert c.receive(2, second) == []
    assert c.broadcast.buffered == 1 and c.elements("s") == frozenset()
    delivered = c.receive(1, first)
    assert [(m.origin, m.seq) for m in delivered] == [(1, 1), (2, 1)]
    assert c.elements("s") == frozenset() and c.broadcast.buffered == 0


def test_an_origin_s_messages_are_delivered_in_sequence() -> None:
    a, b = OpReplica(1), OpReplica(2)
    m1, m2, m3 = (a.increment("n", k) for k in (1, 10, 100))
    assert b.receive(1, m3) == [] and b.receive(1, m2) == []
    assert b.counter("n") == 0
    assert [m.seq for m in b.receive(1, m1)] == [1, 2, 3]
    assert b.counter("n") == 111


def test_duplicates_are_dropped_delivered_or_buffered() -> None:
    a, b = OpReplica(1), OpReplica(2)
    m1, m2 = a.increment("n"), a.increment("n")
    b.receive(1, m2)
    b.receive(1, m2)  # buffered already
    b.receive(1, m1)
    b.receive(1, m1)  # delivered already
    assert b.counter("n") == 2 and b.broadcast.duplicates == 2


def test_add_wins_over_a_concurrent_remove() -> None:
    a, b = OpReplica(1), OpReplica(2)
    deliver_all([b], [a.add("s", "x")])
    removal = b.remove("s", "x")
    addition = a.add("s", "x")  # concurrent with the removal
    deliver_all([a], [removal])
    deliver_all([b], [addition])
    assert a.elements("s") == b.elements("s") == frozenset({"x"})
    deliver_all([b], [a.remove("s", "x")])
    assert a.elements("s") == b.elements("s") == frozenset()


def test_registers_keep_concurrent_writes_until_one_observes_them() -> None:
    a, b = OpReplica(1), OpReplica(2)
    wa, wb = a.write("r", "from a"), b.write("r", "from b")
    deliver_all([a], [wb])
    deliver_all([b], [wa])
    assert a.values("r") == b.values("r") == ["from a", "from b"]
    deliver_all([b], [a.write("r", "settled")])
    assert a.values("r") == b.values("r") == ["settled"]
    clock_a, clock_b = HLC(1), HLC(2)
    la = a.write_lww("w", 1, clock_a.now(100))
    lb = b.write_lww("w", 2, clock_b.now(100))  # same wall time: replica 2 wins the tie
    deliver_all([a], [lb])
    deliver_all([b], [la])
    assert a.value("w") == b.value("w") == 2


def test_lists_travel_as_operations() -> None:
    a, b = OpReplica(1), OpReplica(2)
    messages = [a.list_insert("todo", 0, ["write", "test"]), a.list_insert("todo", 1, [{"n": 1}])]
    messages.append(a.list_move("todo", 0, 2))
    deliver_all([b], messages)
    deliver_all([a], [b.list_delete("todo", 0)])
    assert a.sequence("todo").to_list() == b.sequence("todo").to_list() == ["test", "write"]


def test_acknowledged_messages_leave_the_history() -> None:
    a, b, c = (OpReplica(r, members=[1, 2, 3]) for r in (1, 2, 3))
    messages = [a.increment("n"), a.add("s", 1)]
    deliver_all([b, c], messages)
    assert a.broadcast.history_size == 2
    a.broadcast.acknowledge(2, b.broadcast.acknowledgement())
    assert a.broadcast.compact() == 0 and a.broadcast.history_size == 2  # c has not acknowledged
    a.broadcast.acknowledge(3, c.broadcast.acknowledgement())
    assert a.broadcast.compact() == 2 and a.broadcast.history_size == 0
    # A member taken out (e.g. failed) no longer holds compaction back.
    m = b.increment("n")
    deliver_all([a], [m])
    assert a.broadcast.history_size == 1
    a.broadcast.acknowledge(2, b.broadcast.acknowledgement())
    assert a.broadcast.set_members([1, 2]) == 1


def test_a_replica_that_missed_messages_is_repaired_from_a_history() -> None:
    a, b, c = OpReplica(1), OpReplica(2), OpReplica(3)
    messages = [a.increment("n", 5), a.add("s", "k"), a.write("r", 7)]
    deliver_all([b], messages)
    # c heard nothing; b resends what c's acknowledgement lacks, in batches.
    missing = b.broadcast.missing_for(c.broadcast.acknowledgement())
    assert len(missing) == 3
    for frame in pack_batches(missing, max_bytes=64):
        assert len(frame) <= 64
        for message in CausalBatch.decode(frame).messages:
            c.receive(2, message)
    assert c.snapshot() == a.snapshot() == b.snapshot()


def test_malformed_input_is_dropped_and_recorded() -> None:
    a = OpReplica(1)
    assert a.receive(2, "junk") == []
    assert a.receive(2, CausalMessage(2, 0, (), b"")) == []
    assert a.receive(2, CausalMessage(2, 1, ((2, 1),), b"")) == []
    assert len(a.broadcast.rejected) == 3
    # A delivered message whose operation does not decode is skipped (by everyone).
    assert len(a.receive(2, CausalMessage(2, 1, (), b"\xc1"))) == 1
    assert a.rejected and a.snapshot()["counters"] == {}
    with pytest.raises(RemoteProtocolError):
        CausalBatch.decode(b"\x01\x0bjunk")
    with pytest.raises(LocalProtocolError):
        a.add("s", object())  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        pack_batches([CausalMessage(1, 1, (), b"x" * 100)], max_bytes=50)


def test_replica_state_survives_a_restart() -> None:
    a, b = OpReplica(1, members=[1, 2]), OpReplica(2, members=[1, 2])
    deliver_all([b], [a.increment("n", 3), a.add("s", ("t", 1)), a.list_insert("l", 0, [1, 2])])
    pending = a.write("r", "late")
    restored = OpReplica.decode(b.encode())
    assert restored.snapshot() == b.snapshot()
    assert restored.broadcast.acknowledgement() == b.broadcast.acknowledgement()
    restored.receive(1, pending)
    b.receive(1, pending)
    assert restored.snapshot() == b.snapshot() == a.snapshot()
    # Its next message continues its sequence, with correct dependencies.
    nxt = restored.remove("s", ("t", 1))
    assert nxt.seq == 1 and dict(nxt.deps) == {1: 4}
    restored_broadcast = CausalBroadcast.decode(restored.broadcast.encode())
    assert restored_broadcast.delivered == restored.broadcast.delivered
