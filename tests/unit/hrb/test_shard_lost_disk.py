"""A shard member that lost its disk, on the shard replica itself: with the
real nodes' settings (``proof_refresh_s``, ``rejoin_lost_logs``) the leader
re-sends its proof of election and re-learns where the member's log ends,
so the member catches up; without them (the simulator's default) it stays
behind, as Raft assumes a disk is never lost. And the replica's checkpoint
hook: a cut at every multiple of ``checkpoint_every``, nothing applied while
``apply_held``."""

from __future__ import annotations

import pytest
from tests.unit.hrb.shard_net import ShardNet, txn

from quorate.hrb.messages import TxnOp
from quorate.storage import MemoryStorage


def writes(net: ShardNet, label: str, count: int) -> None:
    for i in range(count):
        net.submit(1, txn(f"{label}-{i}", TxnOp(f"a-{label}-{i}", "put", value=str(i))))
        net.deliver()
    net.advance(0.5)


@pytest.mark.parametrize("quorum", ["majority", "byzantine"])
@pytest.mark.parametrize("real_node_settings", [True, False])
def test_a_member_whose_disk_is_wiped_catches_up_only_with_the_real_node_settings(quorum: str, real_node_settings: bool) -> None:
    net = ShardNet((1, 2, 3, 4), quorum=quorum, monitor=False)
    for node in net.members:
        net.replica(node).proof_refresh_s = 1.0 if real_node_settings else 0.0
        net.replica(node).rejoin_lost_logs = real_node_settings
    leader = net.elect(1)
    writes(net, "before", 6)
    assert net.replica(4).applied_index == leader.applied_index > 0
    net.crash(4)
    net.storage[4] = MemoryStorage()  # the data directory is gone
    fresh = net.restart(4)
    writes(net, "after", 4)
    net.advance(3.0)
    if real_node_settings:
        assert fresh.applied_index == leader.applied_index
        assert fresh.store.fingerprint() == leader.store.fingerprint()
        assert leader.metrics.get("members_relearned", 0) >= 1
    else:
        assert fresh.applied_index == 0
        assert net.rejections("no proof that node 1 leads")


def test_the_checkpoint_hook_cuts_at_every_multiple_and_a_hold_stops_applying() -> None:
    net = ShardNet((1, 2, 3, 4), monitor=False)
    cuts: list[tuple[int, int]] = []
    replica = net.replica(2)
    replica.checkpoint_every = 2
    replica.checkpoint_cut = lambda store, entry: cuts.append((store.applied_index, entry.index))
    net.elect(1)
    writes(net, "x", 5)
    applied = replica.applied_index
    assert applied >= 5 and cuts == [(i, i) for i in range(2, applied + 1, 2)]
    replica.apply_held = True
    writes(net, "y", 3)
    assert replica.applied_index == applied and replica.committed_index > applied
    replica.apply_held = False
    net.advance(0.5)
    assert replica.applied_index == net.replica(1).applied_index > applied
