"""The BFT client's choice of where to send (``quorate.client.bft``): a
primary is followed only while f + 1 replicas' latest results name it."""

from __future__ import annotations

from quorate.client.bft import BftChannel
from quorate.state.service import STATUS_OK, STATUS_RETRY, ClientReply

ENDPOINTS = [f"127.0.0.1:{port}" for port in (7001, 7002, 7003, 7004)]


def reply(seq: int, leader: int | None, status: str = STATUS_OK) -> ClientReply:
    return ClientReply(client=9, seq=seq, status=status, result=b"", leader=leader)


def test_a_primary_needs_f_plus_1_replicas_naming_it() -> None:
    channel = BftChannel(ENDPOINTS, insecure=True)  # f = 1: two must agree
    honest, liar = channel.links[:3], channel.links[3]
    channel._on_reply(liar, reply(1, 4))
    assert channel.primary is None  # one replica's word
    channel._on_reply(honest[0], reply(1, 1))
    assert channel.primary is None  # two replicas, two names
    # A late answer (its call already decided) still counts as a vote.
    channel._on_reply(honest[1], reply(1, 1))
    assert channel.primary == 1
    channel._on_reply(liar, reply(2, 4))
    assert channel.primary == 1
    # Refusals say nothing about the primary.
    channel._on_reply(honest[2], reply(3, 4, STATUS_RETRY))
    assert channel.primary == 1


def test_a_view_change_moves_the_hint_once_f_plus_1_follow_it() -> None:
    channel = BftChannel(ENDPOINTS, insecure=True)
    for link in channel.links[:3]:
        channel._on_reply(link, reply(1, 1))
    assert channel.primary == 1
    channel._on_reply(channel.links[0], reply(2, 2))
    assert channel.primary == 1  # still two replicas on 1
    channel._on_reply(channel.links[1], reply(2, 2))
    assert channel.primary == 2  # two replicas moved on
    channel._on_reply(channel.links[2], reply(2, 2))
    assert channel.primary == 2
    # HotStuff replicas name no primary: back to everyone.
    for link in channel.links:
        channel._on_reply(link, reply(3, None))
    assert channel.primary is None
