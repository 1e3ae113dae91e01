"""Log compaction and InstallSnapshot (§7)."""

from __future__ import annotations

import random

import pytest
from tests.unit.raft.network import Network, encode_state

from quorate.errors import LocalProtocolError
from quorate.ids import NodeId
from quorate.raft import InstallSnapshot, RaftNode, Snapshot

N = NodeId


def _compact(net: Network, nid: int) -> None:
    node = net.node(nid)
    node.compact(node.applied_index, encode_state(net.applied[N(nid)]))
    net.storage[N(nid)].persist(None, [], node.snapshot)


def test_compact_drops_the_log_prefix() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    for i in range(10):
        net.propose(1, b"c%d" % i)
    net.deliver()
    _compact(net, 1)
    leader = net.node(1)
    assert leader.snapshot_index == 11 and leader.first_index == 12
    assert leader.entry_at(11) is None and leader.term_at(11) == 1
    assert leader.snapshot == Snapshot(11, 1, (1, 2, 3), (), encode_state(net.applied[N(1)]))


def test_compacting_entries_not_yet_applied_is_refused() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    with pytest.raises(LocalProtocolError):
        net.node(1).compact(5, b"")


def test_lagging_follower_gets_a_snapshot_and_restores_its_state_machine() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for i in range(20):
        net.propose(1, b"c%d" % i)
    net.deliver()
    _compact(net, 1)
    net.heal()
    net.advance(0.5)
    assert [s.index for s in net.installed[N(3)]] == [21]
    assert net.applied[N(3)] == net.applied[N(1)]
    assert net.node(3).snapshot_index == 21
    # Replication continues normally after the snapshot.
    net.propose(1, b"after")
    net.deliver()
    assert net.applied[N(3)][-1] == b"after"
    assert sum(isinstance(m, InstallSnapshot) for _, _, m in net.sent) == 1


def test_lost_snapshot_is_sent_again() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"c%d" % i)
    net.deliver()
    _compact(net, 1)
    net.heal()
    net.drop_types(InstallSnapshot)
    net.advance(0.5)
    assert not net.installed[N(3)]
    net.heal()
    net.advance(2.0)
    assert net.applied[N(3)] == net.applied[N(1)]


def test_snapshot_the_follower_already_covers_only_moves_its_commit() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    for i in range(5):
        net.propose(1, b"c%d" % i)
    net.deliver()
    follower = net.node(2)
    snap = Snapshot(3, 1, (1, 2, 3), (), b"")
    net.step(1, 2, InstallSnapshot(1, snap))
    assert not net.installed[N(2)]
    assert follower.last_index == 6


def test_restart_from_a_snapshot_and_log() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    for i in range(8):
        net.propose(1, b"c%d" % i)
    net.deliver()
    _compact(net, 2)
    net.propose(1, b"tail")
    net.deliver()
    net.crash(2)
    node = net.restart(2)
    assert node.snapshot_index == 9 and node.last_index == 10 and node.commit_index == 10
    assert net.applied[N(2)] == net.applied[N(1)]


def test_recovering_with_a_gap_in_the_log_is_bad_constructor_input() -> None:
    from quorate.core.ready import Entry
    from quorate.errors import ConfigError
    from quorate.raft import HardState, RaftConfig
    from quorate.storage import Recovered

    with pytest.raises(ConfigError, match="gap"):
        RaftNode(
            N(1),
            [N(1)],
            config=RaftConfig(),
            rng=random.Random(0),
            now=0.0,
            recovered=Recovered(HardState(1, None, 0), None, [Entry(1, 2, 0, b"")]),
        )
