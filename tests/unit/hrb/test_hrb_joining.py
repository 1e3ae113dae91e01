"""The joining side of an epoch change (docs/hrb.md section 3, "Epochs";
``quorate.hrb.core.joining``): a next member uses a relayed key generation
item, and a handed-over state, only once f + 1 old members sent the same
bytes, so one Byzantine old member can neither inject nor reorder them; it
asks again when nothing arrives; a deadline it is woken at is always moved
(no wake-up loop at one instant)."""

from __future__ import annotations

import random

from hrb_state_kit import KEYRING, Kit

from quorate.hrb.core.commands import CoreHandover, DkgItem, DkgRelay, DkgSubmission, JoinRequest
from quorate.hrb.core.config import CoreConfig
from quorate.hrb.core.joining import Joiner
from quorate.hrb.core.snapshot import encode_snapshot
from quorate.hrb.core.threshold import CostModelSuite
from quorate.ids import NodeId

OLD = tuple(NodeId(m) for m in (2, 5, 7, 11))  # f = 1: items need 2 relays
CONFIG = CoreConfig(dkg_phase_timeout_s=0.5, join_retry_s=0.5)


def _joiner(me: int = 3, now: float = 0.0) -> Joiner:
    return Joiner(
        NodeId(me),
        1,
        OLD,
        suite=CostModelSuite(b"join"),
        signer=KEYRING.signer(NodeId(me)),
        encryption_secret=b"",
        random_bytes=random.Random(me).randbytes,
        config=CONFIG,
        now=now,
    )


def _start(members: tuple[int, ...], session: bytes = b"s" * 32) -> DkgItem:
    return DkgItem(kind="start", session=session, members=members, threshold=3, encryption_keys=(b"k" * 32,) * len(members))


def test_an_item_is_used_only_when_f_plus_one_old_members_relayed_it() -> None:
    joiner = _joiner()
    liar = DkgRelay(1, 0, _start((3, 4, 6, 8), session=b"x" * 32))
    joiner.on_relay(OLD[0], liar, 0.1)
    joiner.on_relay(OLD[0], liar, 0.1)  # the same member twice counts once
    assert joiner.next_seq == 0 and joiner.keygen is None
    honest = DkgRelay(1, 0, _start((3, 4, 6, 8)))
    joiner.on_relay(OLD[1], honest, 0.2)
    assert joiner.next_seq == 0
    joiner.on_relay(OLD[2], honest, 0.3)
    assert joiner.next_seq == 1 and joiner.selected and joiner.session == b"s" * 32
    # the participant's first broadcast went to f + 1 = 2 old members
    out = joiner.take()
    submissions = [(to, m) for to, _, m in out.outbound if isinstance(m, DkgSubmission)]
    assert len({to for to, _ in submissions}) == 2
    # a relay from outside the old core is refused
    joiner.on_relay(NodeId(9), DkgRelay(1, 1, _start((3,))), 0.4)
    assert [r.reason for r in joiner.take().rejected] == ["relay from a node outside the previous core"]


def test_the_handover_needs_f_plus_one_equal_states() -> None:
    kit = Kit()
    state = kit.state()
    successor = state.s  # any snapshot naming epoch 1 and this member will do
    successor.epoch, successor.members = 1, (3, 4, 6, 8)
    good = encode_snapshot(successor)
    successor.members = (4, 6, 8, 9)
    forged = encode_snapshot(successor)
    joiner = _joiner()
    assert joiner.on_handover(OLD[0], CoreHandover(1, forged), 0.1) is None
    assert joiner.on_handover(OLD[1], CoreHandover(1, good), 0.1) is None
    start = joiner.on_handover(OLD[2], CoreHandover(1, good), 0.2)
    assert start is not None and start.state == good and start.epoch == 1
    assert start.share_index == 0  # no key generation ran here: it joins without a share
    assert not joiner.abandoned


def test_a_state_that_leaves_this_node_out_abandons_the_join() -> None:
    kit = Kit()
    successor = kit.state().s
    successor.epoch, successor.members = 1, (4, 6, 8, 9)
    left_out = encode_snapshot(successor)
    joiner = _joiner()
    joiner.on_handover(OLD[0], CoreHandover(1, left_out), 0.1)
    assert joiner.on_handover(OLD[3], CoreHandover(1, left_out), 0.1) is None
    assert joiner.abandoned == "not a member of epoch 1's core" and joiner.wake_at() is None


def test_a_joiner_asks_again_when_nothing_arrives() -> None:
    joiner = _joiner(now=1.0)
    assert joiner.wake_at() == 1.0 + CONFIG.join_retry_s
    joiner.tick(1.2)
    assert joiner.take().outbound == []
    joiner.tick(1.5)
    asked = joiner.take().outbound
    assert sorted(to for to, _, _ in asked) == list(OLD)
    assert all(isinstance(m, JoinRequest) and m.seq == 0 for _, _, m in asked)


def test_a_deadline_the_joiner_is_woken_at_always_moves() -> None:
    # 0.6718212205620061 + 0.5 - 0.6718212205620061 < 0.5 in floating point: a
    # timer that compared differences was woken at this instant forever.
    since = 0.6718212205620061
    joiner = _joiner(now=since)
    deadline = joiner.wake_at()
    assert deadline is not None
    joiner.tick(deadline)
    assert [type(m) for _, _, m in joiner.take().outbound] == [JoinRequest] * len(OLD)
    after = joiner.wake_at()
    assert after is not None and after > deadline
    # the same with a key generation phase waiting for its timeout
    joiner = _joiner(now=0.0)
    relay = DkgRelay(1, 0, _start((3, 4, 6, 8)))
    joiner.on_relay(OLD[0], relay, since)
    joiner.on_relay(OLD[1], relay, since)
    joiner.take()
    deadline = joiner.wake_at()
    assert deadline is not None
    while deadline <= since + CONFIG.dkg_phase_timeout_s:
        joiner.tick(deadline)
        joiner.take()
        later = joiner.wake_at()
        assert later is not None and later > deadline
        deadline = later
