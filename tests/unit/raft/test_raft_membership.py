"""Single-server membership changes and learners (thesis §4.1–§4.3)."""

from __future__ import annotations

from tests.unit.raft.network import Network

from quorate.core.protocol import Accepted, Refused
from quorate.core.ready import Entry
from quorate.ids import NodeId
from quorate.raft import (
    AppendEntries,
    ConfChange,
    ConfChangeKind,
    EntryKind,
    RaftConfig,
    RequestVote,
    Role,
    encode_conf_state,
)

N = NodeId
STICKY = RaftConfig(pre_vote=True, check_quorum=True)


def _change(net: Network, kind: ConfChangeKind, node: int) -> object:
    leader = net.leader()
    assert leader is not None
    outcome = leader.propose_conf_change(ConfChange(kind, N(node)), net.now)
    net.collect(leader.id)
    return outcome


def test_learner_receives_the_log_but_does_not_vote_or_count() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.propose(1, b"before")
    net.deliver()
    net.add_node(4, voters=[1, 2, 3], learners=[])
    assert isinstance(_change(net, ConfChangeKind.ADD_LEARNER, 4), Accepted)
    net.deliver()
    learner = net.node(4)
    assert learner.role is Role.LEARNER and learner.learners == {4}
    assert net.applied[N(4)] == [b"before"]
    # Learners never campaign and their acknowledgements do not commit anything.
    assert learner.wake_at() is None
    net.cut(1, 2)
    net.cut(1, 3)
    net.propose(1, b"needs-a-voter")
    net.deliver()
    assert net.node(1).commit_index < net.node(1).last_index
    assert net.node(4).last_index == net.node(1).last_index


def test_promoted_learner_becomes_a_voter() -> None:
    net = Network([1, 2, 3], config=STICKY, learners=[4])
    net.elect(1)
    net.deliver()
    assert isinstance(_change(net, ConfChangeKind.PROMOTE_LEARNER, 4), Accepted)
    net.deliver()
    for nid in (1, 2, 3, 4):
        assert net.node(nid).voters == {1, 2, 3, 4}
    assert net.node(4).role is Role.FOLLOWER
    assert net.node(4).wake_at() is not None


def test_only_one_change_at_a_time() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.add_node(4, voters=[1, 2, 3])
    net.isolate(2)
    net.isolate(3)
    assert isinstance(_change(net, ConfChangeKind.ADD_VOTER, 4), Accepted)
    assert isinstance(_change(net, ConfChangeKind.ADD_LEARNER, 5), Refused)


def test_configuration_takes_effect_on_append_and_reverts_on_truncation() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    follower = net.node(2)
    config_entry = Entry(1, 2, EntryKind.CONFIG, encode_conf_state([1, 2, 3, 4]))
    net.step(1, 2, AppendEntries(1, 1, 1, [config_entry], 1))
    assert follower.voters == {1, 2, 3, 4}  # appended, not committed
    assert follower.commit_index == 1
    # A leader of term 2 that never had the entry overwrites it.
    net.step(3, 2, AppendEntries(2, 1, 1, [Entry(2, 2, EntryKind.NOOP, b"")], 1))
    assert follower.entry_at(2).kind == EntryKind.NOOP  # type: ignore[union-attr]
    assert follower.voters == {1, 2, 3}


def test_removed_leader_steps_down_once_the_change_commits() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    assert isinstance(_change(net, ConfChangeKind.REMOVE_NODE, 1), Accepted)
    net.deliver()
    assert net.node(1).role is Role.FOLLOWER
    assert net.node(2).voters == {2, 3}
    net.advance(5.0)
    leader = net.leader()
    assert leader is not None and leader.id in (2, 3)
    assert net.node(1).wake_at() is None  # it never campaigns again


def test_removing_a_slow_voter_lets_commitment_proceed() -> None:
    net = Network([1, 2, 3, 4])
    net.elect(1)
    net.isolate(3)
    net.isolate(4)
    net.propose(1, b"stuck")
    net.deliver()
    assert net.node(1).commit_index < net.node(1).last_index
    # Removing 4 takes effect on append: {1, 2} is a majority of {1, 2, 3}.
    assert isinstance(_change(net, ConfChangeKind.REMOVE_NODE, 4), Accepted)
    net.deliver()
    assert net.node(1).voters == {1, 2, 3}
    assert net.node(1).commit_index == net.node(1).last_index == 3


def test_conf_change_refused_before_the_leader_commits_its_noop() -> None:
    net = Network([1, 2, 3])
    net.campaign(1)
    net.deliver_one()
    net.deliver_one()
    net.deliver_one()  # a vote: 1 leads, its no-op is not committed
    assert net.node(1).role is Role.LEADER
    assert isinstance(_change(net, ConfChangeKind.ADD_LEARNER, 9), Refused)


def test_invalid_changes_are_refused() -> None:
    net = Network([1, 2, 3], learners=[4])
    net.elect(1)
    net.deliver()
    assert isinstance(_change(net, ConfChangeKind.ADD_VOTER, 2), Refused)
    assert isinstance(_change(net, ConfChangeKind.PROMOTE_LEARNER, 2), Refused)
    assert isinstance(_change(net, ConfChangeKind.ADD_LEARNER, 4), Refused)
    assert isinstance(_change(net, ConfChangeKind.REMOVE_NODE, 7), Refused)
    single = Network([1])
    single.elect(1)
    assert isinstance(_change(single, ConfChangeKind.REMOVE_NODE, 1), Refused)


def test_nodes_outside_the_configuration_do_not_campaign() -> None:
    net = Network([1, 2, 3])
    net.add_node(9, voters=[1, 2, 3])
    assert net.node(9).wake_at() is None
    net.step(1, 9, RequestVote(1, 0, 0))
    net.step(1, 9, AppendEntries(1, 0, 0, [], 0))
    assert net.node(9).role is Role.FOLLOWER
