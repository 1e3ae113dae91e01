"""Delta synchronisation (Enes et al., ICDE 2019): convergence over a lossy
ring, no back-propagation, removal of redundant state, malformed input."""

from __future__ import annotations

import random

from quorate.crdt import DeltaAck, DeltaGroup, DeltaSync, ORSet
from quorate.ids import NodeId


def make_ring(n: int) -> list[DeltaSync[ORSet]]:
    nodes = []
    for i in range(n):
        neighbours = [NodeId((i - 1) % n), NodeId((i + 1) % n)]
        nodes.append(
            DeltaSync(
                NodeId(i),
                ORSet(i),
                neighbours,
                bottom=lambda i=i: ORSet(i),
                decode=lambda b, i=i: ORSet.decode(b, i),
            )
        )
    return nodes


def deliver(nodes, rng: random.Random, loss: float) -> int:
    sent = 0
    outbox = [(node.replica, to, msg) for node in nodes for to, msg in node.sync()]
    while outbox:
        sender, to, msg = outbox.pop(rng.randrange(len(outbox)))
        sent += 1
        if rng.random() < loss:
            continue
        for back, reply in nodes[to].receive(sender, msg):
            outbox.append((to, back, reply))
    return sent


def test_ring_converges_despite_loss_and_reordering() -> None:
    rng = random.Random(3)
    nodes = make_ring(5)
    for step in range(60):
        node = rng.choice(nodes)
        element = rng.randrange(10)
        state = node.state
        node.local(state.add(element) if rng.random() < 0.7 else state.remove(element))
        if step % 5 == 0:
            deliver(nodes, rng, loss=0.3)
    for _ in range(20):
        deliver(nodes, rng, loss=0.0)
    first = nodes[0].state
    assert all(n.state.store == first.store and n.state.context == first.context for n in nodes)
    assert all(not n.buffer.entries for n in nodes)  # everything acknowledged and collected


def test_a_delta_is_not_sent_back_to_the_neighbour_it_came_from() -> None:
    a, b = make_ring(2)
    a.local(a.state.add("x"))
    ((_, group),) = a.sync()
    replies = b.receive(NodeId(0), group)
    assert replies == [(NodeId(0), DeltaAck(group.sequence))]
    assert b.sync() == []  # the only new delta came from a
    a.receive(NodeId(1), replies[0][1])
    assert a.sync() == []


def test_redundant_state_is_not_buffered_again() -> None:
    a, b = make_ring(2)
    a.local(a.state.add("x"))
    ((_, group),) = a.sync()
    b.receive(NodeId(0), group)
    b.receive(NodeId(0), group)  # a duplicate
    assert b.redundant_received == 1 and len(b.buffer.entries) == 1


def test_malformed_messages_are_dropped_and_recorded() -> None:
    a, _ = make_ring(2)
    assert a.receive(NodeId(1), DeltaGroup(1, b"\x01\x05junk")) == []
    assert a.receive(NodeId(7), DeltaAck(1)) == []
    assert a.receive(NodeId(1), "hello") == []
    assert [r.reason.split(":")[0] for r in a.rejected] == [
        "undecodable delta",
        "not a neighbour",
        "unknown message type",
    ]
