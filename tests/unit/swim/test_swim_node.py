"""One SwimNode driven by hand: input checking, the buddy system, config,
the wire types and the ``ProtocolCore`` shape."""

from __future__ import annotations

import random

import pytest

from quorate.codec import WireCodec
from quorate.core import ProtocolCore, Refused
from quorate.errors import ConfigError, LocalProtocolError
from quorate.ids import NodeId
from quorate.swim import (
    SWIM_MESSAGE_TYPES,
    Ack,
    GossipMode,
    MemberState,
    MerkleEntries,
    MerkleLevel,
    Ping,
    PingReq,
    StateEntry,
    SwimConfig,
    SwimNode,
    Sync,
    SyncReply,
    Update,
)


def _node(config: SwimConfig | None = None, me: int = 0) -> SwimNode:
    return SwimNode(NodeId(me), [], config=config or SwimConfig(), rng=random.Random(1), now=0.0)


def _with_members(node: SwimNode, *members: int) -> None:
    node.step(NodeId(members[0]), Sync(tuple(Update(m, 0, 0, m) for m in members)), 0.0)
    node.ready()


def test_is_a_protocol_core() -> None:
    assert isinstance(_node(), ProtocolCore)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("protocol_period_s", 0.0),
        ("probe_timeout_s", 1.0),
        ("indirect_probes", -1),
        ("suspicion_beta", 0.5),
        ("fanout", 0),
        ("gossip_mode", "push"),
        ("merkle_depth", 9),
        ("max_message_bytes", 100),
        ("shuffle_length", 99),
        ("max_rumour_bytes", 1390),
        ("anti_entropy_interval_s", -1.0),
    ],
)
def test_bad_settings_fail_at_start(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        SwimConfig(**{field: value}).validate()  # type: ignore[arg-type]


def test_every_message_type_round_trips_through_the_codec() -> None:
    codec = WireCodec(SWIM_MESSAGE_TYPES)
    u = (Update(1, 1, 2, 3),)
    samples = [
        Ping(1, u),
        Ack(2, u),
        PingReq(3, 4, u),
        Sync(u, join=True),
        MerkleLevel(1, (0, 1), (bytes(16), bytes(16))),
        MerkleEntries((3,), (StateEntry("k", 1, b"v"),), True),
    ]
    for message in samples:
        assert codec.decode(codec.encode(NodeId(9), message)) == (9, message)
    assert len(SWIM_MESSAGE_TYPES) == len({t.__struct_config__.tag for t in SWIM_MESSAGE_TYPES})


@pytest.mark.parametrize(
    "message",
    [
        Ping(1, (Update(1, 7, 0, 1),)),  # no such state
        Ping(1, (Update(-1, 0, 0, 1),)),  # negative id
        MerkleLevel(5, (0,), (bytes(16),)),  # deeper than the tree
        MerkleLevel(1, (16,), (bytes(16),)),  # outside the level
        MerkleLevel(0, (0,), (b"short",)),
        MerkleLevel(0, (0, 1), (bytes(16),)),
        MerkleEntries((0,), (StateEntry("k", -1, b""),), True),
        "not a message",
    ],
)
def test_malformed_input_is_dropped_and_counted(message: object) -> None:
    node = _node()
    node.step(NodeId(3), message, 1.0)
    ready = node.ready()
    assert ready.messages == []
    assert len(ready.rejected) == 1 and ready.rejected[0].sender == 3


def test_entries_outside_the_synced_buckets_are_rejected() -> None:
    node = _node()
    key = "some-key"
    wrong = (node._state.bucket_of(key) + 1) % node._state.n_buckets
    node.step(NodeId(3), MerkleEntries((wrong,), (StateEntry(key, 1, b"v"),), False), 1.0)
    assert node.ready().rejected
    assert node.state_get(key) is None


def test_a_suspicion_of_self_is_refuted_with_a_higher_incarnation() -> None:
    node = _node()
    _with_members(node, 1, 2)
    node.step(NodeId(1), Ping(5, (Update(0, int(MemberState.SUSPECT), 0, 1),)), 1.0)
    ready = node.ready()
    assert node.incarnation == 1
    assert node.member(NodeId(0)) == (MemberState.ALIVE, 1)
    ((to, ack),) = ready.messages
    assert to == 1 and isinstance(ack, Ack) and ack.seq == 5
    assert Update(0, int(MemberState.ALIVE), 1, 0) in ack.updates
    assert node.local_health == 1  # Lifeguard §IV-A: refuting counts against us
    # Old news about an older incarnation changes nothing.
    node.step(NodeId(2), Ping(6, (Update(0, int(MemberState.DEAD), 0, 2),)), 1.5)
    assert node.incarnation == 1


def test_buddy_system_tells_a_suspect_it_is_suspected() -> None:
    node = _node()
    _with_members(node, 1)
    node.step(NodeId(2), Ping(1, (Update(1, int(MemberState.SUSPECT), 0, 2),)), 0.1)
    node.ready()
    # Let the piggyback queue run dry so only the buddy rule could carry it.
    for _ in range(20):
        node._updates.take(10_000, 1)
    node.tick(5.0)
    pings = [m for to, m in node.ready().messages if to == 1 and isinstance(m, Ping)]
    assert pings and pings[0].updates[0] == Update(1, int(MemberState.SUSPECT), 0, 0)

    plain = _node(SwimConfig(lifeguard=False))
    _with_members(plain, 1)
    plain.step(NodeId(2), Ping(1, (Update(1, int(MemberState.SUSPECT), 0, 2),)), 0.1)
    plain.ready()
    for _ in range(20):
        plain._updates.take(10_000, 1)
    plain.tick(5.0)
    pings = [m for to, m in plain.ready().messages if to == 1 and isinstance(m, Ping)]
    assert pings and pings[0].updates == ()


def test_ping_req_pings_the_target_and_forwards_its_ack() -> None:
    node = _node()
    _with_members(node, 1, 2)
    node.step(NodeId(1), PingReq(77, 2), 1.0)
    ((to, ping),) = node.ready().messages
    assert to == 2 and isinstance(ping, Ping)
    node.step(NodeId(2), Ack(ping.seq), 1.1)
    forwarded = [(to, m) for to, m in node.ready().messages if isinstance(m, Ack)]
    assert forwarded and forwarded[0][0] == 1 and forwarded[0][1].seq == 77


def test_a_helper_nacks_when_the_target_is_silent() -> None:
    node = _node()
    _with_members(node, 1, 2)
    node.step(NodeId(1), PingReq(77, 2), 1.0)
    node.ready()
    node.tick(1.0 + 0.8 * node.config.probe_timeout_s)
    nacks = [(to, m) for to, m in node.ready().messages if type(m).__name__ == "Nack"]
    assert nacks == [(1, nacks[0][1])] and nacks[0][1].seq == 77


def test_leave_then_misuse() -> None:
    node = _node()
    _with_members(node, 1, 2)
    node.leave(2.0)
    assert node.member(NodeId(0)) == (MemberState.LEFT, 1)
    assert node.propose(b"x", 2.0) == Refused("this member has left the group")
    with pytest.raises(LocalProtocolError):
        node.leave(3.0)
    with pytest.raises(LocalProtocolError):
        node.broadcast(b"x", 3.0)
    node.ready()
    node.step(NodeId(1), Ping(9), 3.0)
    ((_, ack),) = node.ready().messages
    assert ack.updates == (Update(0, int(MemberState.LEFT), 1, 0),)


def test_pull_mode_never_piggybacks_rumours() -> None:
    node = _node(SwimConfig(gossip_mode=GossipMode.PULL))
    _with_members(node, 1)
    node.broadcast(b"hello", 0.0)
    node.step(NodeId(1), Ping(1), 0.1)
    ((_, ack),) = node.ready().messages
    assert ack.rumours == ()


def test_a_joiner_asks_its_seeds_until_one_answers() -> None:
    node = SwimNode(NodeId(5), [NodeId(1), NodeId(2), NodeId(5)], rng=random.Random(2), now=0.0)
    first = node.ready().messages
    assert sorted(to for to, _ in first) == [1, 2]
    assert all(isinstance(m, Sync) and m.join for _, m in first)
    assert not node.joined
    node.tick(10.0)
    assert sum(isinstance(m, Sync) for _, m in node.ready().messages) == 2
    node.step(NodeId(1), SyncReply((Update(1, 0, 0, 1), Update(2, 0, 3, 1))), 10.1)
    assert node.joined
    assert node.member(NodeId(1)) == (MemberState.ALIVE, 0)
    assert node.member(NodeId(2)) == (MemberState.ALIVE, 3)
    node.ready()
    node.tick(20.0)
    assert not any(isinstance(m, Sync) and m.join for _, m in node.ready().messages)
