"""Joint consensus (Raft thesis §4.3, etcd's ConfChangeV2): several voters at
once, entered and left automatically or explicitly, with the safety monitor
watching every step."""

from __future__ import annotations

import pytest
from tests.unit.raft.network import DEFAULT_CONFIG, Network, encode_state

from quorate.core.protocol import Accepted, Refused
from quorate.errors import InvariantViolation
from quorate.ids import NodeId
from quorate.raft import (
    ConfChange,
    ConfChangeKind,
    ConfChangeTransition,
    ConfiguredSnapshot,
    InstallConfiguredSnapshot,
    RaftConfig,
    Role,
)
from quorate.raft import confchange as confchange_module

N = NodeId
STICKY = RaftConfig(pre_vote=True, check_quorum=True)
ADD = ConfChangeKind.ADD_VOTER
REMOVE = ConfChangeKind.REMOVE_NODE
LEARNER = ConfChangeKind.ADD_LEARNER
EXPLICIT = ConfChangeTransition.JOINT_EXPLICIT
JOINT = ConfChangeTransition.JOINT_IMPLICIT


def _v2(net: Network, changes: list[tuple[ConfChangeKind, int]], **kwargs: object) -> object:
    leader = net.leader()
    assert leader is not None
    outcome = leader.propose_conf_change_v2(
        [ConfChange(kind, N(node)) for kind, node in changes], net.now, **kwargs  # type: ignore[arg-type]
    )
    net.collect(leader.id)
    return outcome


def _cluster(voters: list[int], spare: list[int], config: RaftConfig = STICKY) -> Network:
    net = Network(voters, config=config)
    for node in spare:
        net.add_node(node, voters=voters)
    net.elect(voters[0])
    net.propose(voters[0], b"before")
    net.deliver()
    return net


def test_two_voters_move_at_once_through_the_joint_configuration() -> None:
    net = _cluster([1, 2, 3], [4, 5])
    outcome = _v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 2), (REMOVE, 3)])
    assert isinstance(outcome, Accepted)
    leader = net.node(1)
    assert leader.joint and leader.voters == {1, 2, 3, 4, 5}
    assert leader.configuration.outgoing == {1, 2, 3} and leader.configuration.voters == {1, 4, 5}
    net.deliver()
    # The joint entry committed, the leader left it by itself (auto leave).
    for nid in (1, 4, 5):
        node = net.node(nid)
        assert not node.joint and node.voters == {1, 4, 5}, nid
    assert net.node(1).commit_index == net.node(1).last_index
    net.propose(1, b"after")
    net.deliver()
    for nid in (1, 4, 5):
        assert net.applied[N(nid)] == [b"before", b"after"]
    # Reference: Raft thesis §4.3


def test_while_joint_a_commit_needs_a_quorum_of_each_half() -> None:
    for cut_off in ([2, 3], [4, 5]):
        net = _cluster([1, 2, 3], [4, 5])
        for nid in cut_off:
            net.isolate(nid)
        assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 2), (REMOVE, 3)], transition=EXPLICIT), Accepted)
        net.propose(1, b"needs-both")
        net.deliver()
        leader = net.node(1)
        # 1 alone is no majority of {1, 2, 3} nor of {1, 4, 5}.
        assert leader.joint and leader.commit_index < leader.last_index, cut_off
        net.heal()
        net.advance(0.5)
        assert leader.commit_index == leader.last_index
    # Reference: Raft thesis §4.3 ("agreement requires separate majorities")


def test_while_joint_an_election_needs_a_quorum_of_each_half() -> None:
    net = _cluster([1, 2, 3], [4, 5], config=DEFAULT_CONFIG)  # no stickiness: votes on demand
    assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 2), (REMOVE, 3)], transition=EXPLICIT), Accepted)
    net.deliver()
    assert all(net.node(n).joint for n in (1, 2, 3, 4, 5))
    # Node 4 can reach 5 (a majority of {1, 4, 5}) but nobody of {1, 2, 3}.
    net.crash(1)
    net.cut(4, 2)
    net.cut(4, 3)
    net.cut(5, 2)
    net.cut(5, 3)
    net.campaign(4)
    net.deliver()
    assert net.node(4).role is not Role.LEADER
    # With 2 and 3 reachable it can hold a majority of both halves: it wins.
    net.heal()
    net.campaign(4)
    net.deliver()
    assert net.node(4).role is Role.LEADER
    # Reference: Raft thesis §4.3


def test_explicit_joint_configuration_stays_until_an_empty_change_leaves_it() -> None:
    net = _cluster([1, 2, 3], [4])
    assert isinstance(_v2(net, [(ADD, 4), (REMOVE, 3)], transition=EXPLICIT), Accepted)
    net.deliver()
    net.advance(1.0)
    leader = net.node(1)
    assert leader.joint
    # Nothing else is accepted while joint, neither one server nor several.
    assert isinstance(_v2(net, [(REMOVE, 2)]), Refused)
    refused = leader.propose_conf_change(ConfChange(REMOVE, N(2)), net.now)
    assert isinstance(refused, Refused) and "joint" in refused.reason
    assert isinstance(_v2(net, []), Accepted)
    net.deliver()
    assert not leader.joint and leader.voters == {1, 2, 4}


def test_a_removed_leader_manages_the_change_then_steps_down() -> None:
    net = _cluster([1, 2, 3], [4, 5])
    assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 1), (REMOVE, 2)]), Accepted)
    net.deliver()
    assert net.node(1).role is Role.FOLLOWER and net.node(1).wake_at() is None
    net.advance(5.0)
    leader = net.leader()
    assert leader is not None and leader.id in (3, 4, 5) and leader.voters == {3, 4, 5}
    net.propose(leader.id, b"new")
    net.deliver()
    assert net.applied[N(5)] == [b"before", b"new"]
    # Reference: Raft thesis §4.2.2


def test_a_demoted_voter_keeps_the_log_as_a_learner() -> None:
    net = _cluster([1, 2, 3], [4, 5])
    assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (LEARNER, 2), (LEARNER, 3)]), Accepted)
    leader = net.node(1)
    assert leader.configuration.learners_next == {2, 3}
    net.deliver()
    assert leader.voters == {1, 4, 5} and leader.learners == {2, 3}
    assert net.node(2).role is Role.LEARNER and net.node(2).wake_at() is None
    net.propose(1, b"x")
    net.deliver()
    assert net.applied[N(3)] == [b"before", b"x"]


def test_auto_transition_takes_one_step_when_one_voter_changes() -> None:
    net = _cluster([1, 2, 3], [4, 5])
    # Swapping one of three voters: {1, 2} and {3, 4} would be majorities of
    # {1, 2, 3} and {1, 2, 4} with nobody in common, so AUTO goes joint.
    assert isinstance(_v2(net, [(ADD, 4), (REMOVE, 3)]), Accepted)
    assert net.node(1).joint
    net.deliver()
    assert net.node(1).voters == {1, 2, 4} and not net.node(1).joint
    # Adding one voter keeps majorities intersecting: one step.
    assert isinstance(_v2(net, [(ADD, 5)]), Accepted)
    assert not net.node(1).joint and net.node(1).voters == {1, 2, 4, 5}
    net.deliver()
    # Swapping one of four voters is one step too (any 3 of {1, 2, 4, 5} and
    # any 3 of {1, 2, 3, 4} share a voter).
    assert isinstance(_v2(net, [(ADD, 3), (REMOVE, 5)]), Accepted)
    assert not net.node(1).joint and net.node(1).voters == {1, 2, 3, 4}
    net.deliver()
    # An implicit joint transition goes joint even for one voter.
    assert isinstance(_v2(net, [(REMOVE, 4)], transition=JOINT), Accepted)
    assert net.node(1).joint
    net.deliver()
    assert net.node(1).voters == {1, 2, 3} and not net.node(1).joint


def test_bad_changes_are_refused_and_nothing_is_appended() -> None:
    net = _cluster([1, 2, 3], [4])
    leader = net.node(1)
    last = leader.last_index
    cases = [
        ([(REMOVE, 1), (REMOVE, 2), (REMOVE, 3)], "empty voter set"),
        ([(ADD, 4), (REMOVE, 4)], "more than one change"),
        ([(ADD, 2)], "already a voter"),
        ([(REMOVE, 9)], "not a member"),
        ([(ConfChangeKind.PROMOTE_LEARNER, 4)], "not a learner"),
        ([], "changes nothing"),
    ]
    for changes, reason in cases:
        outcome = _v2(net, changes)
        assert isinstance(outcome, Refused) and reason in outcome.reason, (changes, outcome)
    assert leader.last_index == last
    # A change while another is in flight.
    net.isolate(2)
    net.isolate(3)
    assert isinstance(_v2(net, [(ADD, 4)]), Accepted)
    outcome = _v2(net, [(REMOVE, 2)])
    assert isinstance(outcome, Refused) and "still being committed" in outcome.reason


def test_a_new_leader_completes_an_automatic_leave() -> None:
    net = _cluster([1, 2, 3], [4, 5])
    assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 2), (REMOVE, 3)]), Accepted)
    old = net.node(1)
    while old.joint:
        assert net.deliver_one() is not None
    # The leader saw the joint entry commit and appended the leave, and dies
    # before sending it: the others only hold the joint configuration.
    net.crash(1)
    assert all(net.node(n).joint for n in (2, 3, 4, 5))
    net.advance(6.0)
    leader = net.leader()
    assert leader is not None and leader.id in (4, 5)
    assert not leader.joint and leader.voters == {1, 4, 5}
    assert leader.commit_index == leader.last_index
    # Reference: Raft thesis §4.3 (any leader completes the transition)


def test_a_leader_that_dies_in_the_joint_configuration_is_replaced_and_the_leave_happens() -> None:
    net = _cluster([1, 2, 3], [4, 5])
    assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 2), (REMOVE, 3)]), Accepted)
    # Deliver the joint entry but none of the acknowledgements: nobody but the
    # leader knows it committed, and the leader crashes.
    net.deliver(limit=4)
    net.crash(1)
    net.queue.clear()
    net.advance(6.0)
    leader = net.leader()
    assert leader is not None
    net.advance(1.0)
    # Whoever won (from a joint or an old view), the log converged on one
    # configuration and the survivors commit in it.
    net.propose(leader.id, b"later")
    net.deliver()
    net.advance(1.0)
    assert not leader.joint
    assert leader.commit_index == leader.last_index
    assert b"later" in net.applied[leader.id]


def test_a_snapshot_taken_while_joint_keeps_the_joint_configuration() -> None:
    net = _cluster([1, 2, 3], [4, 5])
    assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 3)], transition=EXPLICIT), Accepted)
    net.isolate(5)
    net.deliver()
    for i in range(5):
        net.propose(1, f"c{i}".encode())
    net.deliver()
    leader = net.node(1)
    assert leader.joint
    leader.compact(leader.commit_index, encode_state(net.applied[N(1)]))
    snap = leader.snapshot
    assert isinstance(snap, ConfiguredSnapshot) and set(snap.voters_outgoing) == {1, 2, 3}
    net.heal()
    net.advance(0.5)
    assert any(type(m) is InstallConfiguredSnapshot for _, to, m in net.sent if to == 5)
    follower = net.node(5)
    assert follower.joint and follower.configuration == leader.configuration
    # A restart recovers the joint configuration from the snapshot.
    net.crash(5)
    restarted = net.restart(5)
    assert restarted.joint and restarted.configuration == leader.configuration
    assert isinstance(_v2(net, []), Accepted)
    net.advance(0.5)
    assert net.node(5).voters == {1, 2, 4, 5} and not net.node(5).joint


def test_the_monitor_catches_two_voters_moved_in_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # Break the rule on purpose: let AUTO take one step for any change.
    monkeypatch.setattr(confchange_module, "one_step_safe", lambda old, new: True)
    net = _cluster([1, 2, 3], [4, 5])
    with pytest.raises(InvariantViolation, match="quorums"):
        _v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 2), (REMOVE, 3)])


def test_the_binding_changes_several_members_and_the_quorum_without_naming_raft() -> None:
    from quorate.core.binding import MembershipChange
    from quorate.protocols import binding

    membership = binding("raft").membership
    assert membership is not None
    net = _cluster([1, 2, 3], [4, 5])
    leader = net.node(1)
    view = membership.configuration(leader)
    assert view.voters == (1, 2, 3) and not view.joint and view.commit_quorum == 2
    outcome = membership.change(
        leader, MembershipChange(add=(N(4), N(5)), remove=(N(2),), quorum=(3, 2)), b"book", net.now
    )
    assert isinstance(outcome, Accepted)
    view = membership.configuration(leader)
    assert view.joint and view.outgoing == (1, 2, 3) and view.voters == (1, 3, 4, 5)
    assert membership.busy(leader)  # leaving by itself
    net.collect(leader.id)
    net.deliver()
    view = membership.configuration(leader)
    assert not view.joint and (view.election_quorum, view.commit_quorum) == (3, 2) and view.explicit_quorum
    assert membership.contexts([leader.entry_at(i) for i in range(1, leader.last_index + 1)])[-2:] == [b"book", b"book"]
    bad = membership.change(leader, MembershipChange(quorum=(1, 2)), b"", net.now)
    assert isinstance(bad, Refused) and "Q1 + Q2 > n" in bad.reason
    bad = membership.change(leader, MembershipChange(add=(N(2),), transition="sideways"), b"", net.now)
    assert isinstance(bad, Refused) and "unknown transition" in bad.reason


def test_a_node_outside_an_uncommitted_configuration_still_campaigns() -> None:
    # Node 4 holds the entry demoting it to a learner; nodes 2 and 3, the
    # other voters of the new configuration, do not, and the leader that
    # appended it dies.
    net = Network([1, 2, 3, 4], config=DEFAULT_CONFIG)
    net.elect(1)
    net.deliver()
    net.cut(1, 2)
    net.cut(1, 3)
    assert isinstance(_v2(net, [(LEARNER, 4)]), Accepted)
    assert not net.node(1).joint  # one voter less: one step
    net.deliver()
    net.crash(1)
    net.heal()
    demoted = net.node(4)
    assert demoted.voters == {1, 2, 3} and demoted.commit_index < demoted.last_index
    # 2 and 3 cannot win under {1, 2, 3, 4} (4 has the longer log, 1 is
    # down); 4 campaigns, as it may be needed to commit its own demotion,
    # wins with the votes of 2 and 3 (its own does not count), commits the
    # demotion and steps down; 2 or 3 then leads.
    net.advance(10.0)
    assert demoted.commit_index == demoted.last_index and demoted.role is Role.LEARNER
    leader = net.leader()
    assert leader is not None and leader.id in (2, 3) and leader.voters == {1, 2, 3}
    # Reference: Raft thesis §4.2.2


def test_while_joint_a_read_is_confirmed_by_a_quorum_of_each_half() -> None:
    net = _cluster([1, 2, 3], [4, 5])
    assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 2), (REMOVE, 3)], transition=EXPLICIT), Accepted)
    net.deliver()
    leader = net.node(1)
    assert leader.joint
    net.isolate(4)
    net.isolate(5)
    assert isinstance(leader.read_index(b"r", net.now), Accepted)
    net.collect(leader.id)
    net.advance(0.5)
    assert net.reads[N(1)] == []  # 2 and 3 answer: the old half only
    net.heal()
    net.advance(0.5)
    assert [r.context for r in net.reads[N(1)]] == [b"r"]
    # Reference: Raft thesis §4.3, §6.4


def test_a_leader_that_committed_its_removal_hands_over_at_once() -> None:
    net = _cluster([1, 2, 3], [4, 5], config=DEFAULT_CONFIG)
    assert isinstance(_v2(net, [(ADD, 4), (ADD, 5), (REMOVE, 1), (REMOVE, 2)]), Accepted)
    net.deliver()  # no time passes: no election timeout can fire
    old = net.node(1)
    assert old.role is Role.FOLLOWER
    # It told everyone the commit index and sent TimeoutNow to a voter of
    # the new configuration holding its whole log, which won at once.
    leader = net.leader()
    assert leader is not None and leader.id in (3, 4, 5) and leader.term == old.term + 1
    assert all(net.node(n).commit_index >= old.commit_index for n in (3, 4, 5))
    # Reference: Raft thesis §3.10, §4.2.2
