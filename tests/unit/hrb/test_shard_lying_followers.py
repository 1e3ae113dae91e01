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
