"""Lying followers acknowledge what they do not store. Within what the mode
tolerates (byzantine mode, f of 3f + 1) the shard stays safe; beyond it the
safety checks report the violation instead of hiding it: the checks can fail.

The liars here collude: they acknowledge the leader's entries (claiming to be
locked on them) while the honest followers are cut off, then the leader
crashes and the shard elects a leader that never held what was applied.
"""

from __future__ import annotations

import pytest
from tests.unit.hrb.shard_net import ShardNet, txn

from quorate.errors import InvariantViolation
from quorate.hrb.messages import TxnOp

NEVER_S = float("inf")


def _collude(liars: tuple[int, ...]) -> ShardNet:
    """Leader 1 commits "X" with the liars only; then it crashes."""
    net = ShardNet((1, 2, 3, 4), quorum="byzantine", byzantine=dict.fromkeys(liars, "lying-follower"))
    for liar in liars:
        net.nodes[liar]._next_churn_at = NEVER_S  # quiet liars: they want an election to succeed
    net.elect(1)
    net.advance(0.5)
    for follower in (2, 3, 4):
        if follower not in liars:
            net.cut(1, follower)
    net.submit(1, txn("x", TxnOp("a-x", "put", value="X")))
    net.advance(0.5)
    net.crash(1)
    net.heal()
    return net


def _run_on(net: ShardNet) -> None:
    for k in range(6):
        net.advance(2.0)
        leader = net.leader()
        if leader is not None:
            net.submit(leader.id, txn(f"y{k}", TxnOp("a-x", "put", value=f"Y{k}")))


def test_within_tolerance_the_liar_cannot_make_the_leader_commit_alone() -> None:
    net = _collude((4,))
    assert net.replica(1).applied_index == 1, "one liar and the leader are not a commit quorum of 4"
    _run_on(net)  # the shard monitors stay silent while it makes progress
    values = {r.store.get("a-x") for r in net.honest()}
    assert len(values) == 1 and values != {None}


def test_beyond_tolerance_the_checks_report_the_violation() -> None:
    net = _collude((3, 4))
    assert net.replica(1).store.get("a-x") == "X", "two liars and the leader make a quorum of 4"
    with pytest.raises(InvariantViolation):
        _run_on(net)


# ------------------------------------------------------------ majority mode is not Byzantine-safe
SIDE_WITH_X = (2, 3, 4)
OTHER_SIDE = (5, 6, 7, 8)
COLLUDERS = (9, 10)


def _split_brain(quorum: str, *, raft_monitor: bool = True) -> ShardNet:
    """A shard of ten, two colluding liars (9, 10: within byzantine mode's
    f = 3). Leader 1 and members 2-4 are cut off from members 5-8; only the
    liars talk to both sides, acknowledging whatever each side's leader
    sends. Leader 1 commits "X"; then it crashes, and the other side elects
    a leader of its own, which never held "X", and commits over it."""
    net = ShardNet(range(1, 11), quorum=quorum, byzantine=dict.fromkeys(COLLUDERS, "lying-follower"))
    if not raft_monitor:
        net.raft_monitor = None
    for liar in COLLUDERS:
        net.nodes[liar]._next_churn_at = NEVER_S  # quiet: they want each side's election to succeed
    net.elect(1)
    net.advance(0.5)
    for a in (1, *SIDE_WITH_X):
        for b in OTHER_SIDE:
            net.cut(a, b)
    net.submit(1, txn("x", TxnOp("a-x", "put", value="X")))
    net.advance(1.0)
    net.crash(1)
    for k in range(4):
        net.advance(2.0)
        leader = net.leader()
        if leader is not None and leader.id in OTHER_SIDE:
            net.submit(leader.id, txn(f"y{k}", TxnOp("a-y", "put", value=f"Y{k}")))
    return net


def test_majority_mode_loses_a_committed_entry_to_colluding_followers() -> None:
    """The same two liars that byzantine mode tolerates split a majority-mode
    shard: 1 + 5 of 9 commits on either side (each side's four honest
    members and the liars), so two honest members apply different entries
    at one index. The shard's safety monitor reports it: majority mode
    assumes crash-only followers and is not Byzantine-safe."""
    # Raft's own monitor sees the other side's leader lack the committed entry...
    with pytest.raises(InvariantViolation, match="leader completeness"):
        _split_brain("majority")
    # ...and the shard's sees two honest members apply different entries at one index.
    with pytest.raises(InvariantViolation, match="certified agreement: member 8 applied another entry"):
        _split_brain("majority", raft_monitor=False)


def test_byzantine_mode_keeps_the_same_split_safe() -> None:
    """Byzantine mode needs 2f + 1 = 7 signed acknowledgements of 10: each
    side (four honest members and two liars) has six, so neither commits
    over the other; once the partition heals the shard goes on, one history."""
    net = _split_brain("byzantine")  # both monitors watch every step
    assert all(r.store.get("a-x") is None or r.store.get("a-x") == "X" for r in net.honest())
    assert all(r.store.get("a-y") is None for r in net.honest()), "the other side committed without a quorum"
    net.heal()
    net.restart(1)
    t = txn("after", TxnOp("a-z", "put", value="Z"))
    for _ in range(6):
        net.advance(2.0)
        leader = net.leader()
        if leader is not None:
            net.submit(leader.id, t)
        if all(r.store.get("a-z") == "Z" for r in net.honest()):
            break
    assert all(r.store.get("a-z") == "Z" for r in net.honest())
    assert len({r.store.fingerprint() for r in net.honest()}) == 1
