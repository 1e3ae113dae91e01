"""``RaftConfig.lazy_commit``: followers learn a new commit index from the next
AppendEntries or heartbeat instead of an empty AppendEntries sent at once."""

from __future__ import annotations

from tests.unit.raft.network import Network

from quorate.ids import NodeId
from quorate.raft import AppendEntries, AppendEntriesResponse, RaftConfig

LAZY = RaftConfig(pre_vote=True, check_quorum=True, lazy_commit=True)
EAGER = RaftConfig(pre_vote=True, check_quorum=True)


def _one_write(config: RaftConfig) -> tuple[Network, list[tuple[NodeId, NodeId, object]]]:
    net = Network([1, 2, 3], config=config)
    net.elect(1)
    net.deliver()
    before = len(net.sent)
    net.propose(1, b"x")
    net.deliver()
    return net, net.sent[before:]


def _appends(sent: list[tuple[NodeId, NodeId, object]]) -> int:
    return sum(1 for _, _, m in sent if isinstance(m, AppendEntries))


def test_a_write_costs_one_append_and_one_answer_per_follower() -> None:
    net, sent = _one_write(LAZY)
    assert net.node(1).commit_index == net.node(1).last_index
    assert _appends(sent) == 2
    assert sum(1 for _, _, m in sent if isinstance(m, AppendEntriesResponse)) == 2
    _, eager = _one_write(EAGER)
    # etcd's way: each follower is told the new commit index by an empty
    # AppendEntries, and answers it.
    assert _appends(eager) == 4 and len(eager) == 8


def test_followers_learn_the_commit_index_from_the_next_heartbeat() -> None:
    net, _ = _one_write(LAZY)
    leader = net.node(1)
    committed = leader.commit_index
    assert all(net.node(n).commit_index < committed for n in (2, 3))
    net.advance(LAZY.heartbeat_interval_s * 1.5)
    assert all(net.node(n).commit_index == committed for n in (2, 3))
    assert net.applied[NodeId(2)] == net.applied[NodeId(1)]


def test_followers_learn_the_commit_index_from_the_next_append() -> None:
    net, _ = _one_write(LAZY)
    first = net.node(1).commit_index
    net.propose(1, b"y")
    net.deliver()
    # The AppendEntries carrying "y" carried the commit index of "x".
    assert all(net.node(n).commit_index >= first for n in (2, 3))
    assert b"x" in net.applied[NodeId(3)]


def test_lazy_commit_is_off_by_default() -> None:
    assert RaftConfig().lazy_commit is False
