"""Quiescence: an idle group arms no timer and sends nothing, and wakes on each
of its triggers (``quorate.raft.quiescence``; CockroachDB's quiesced ranges)."""

from __future__ import annotations

from tests.unit.raft.network import Network

from quorate.core.protocol import Accepted, Redirect
from quorate.ids import NodeId
from quorate.raft import ConfChange, ConfChangeKind, QuiesceHeartbeat, RaftConfig, Role

N = NodeId
QUIET = RaftConfig(pre_vote=True, check_quorum=True, quiesce_after_s=0.5)


def _quiet_group(config: RaftConfig = QUIET) -> Network:
    net = Network([1, 2, 3], config=config)
    net.elect(1)
    net.propose(1, b"x")
    net.advance(1.5)
    for node in net.nodes.values():
        assert node.quiesced, node
        assert node.wake_at() is None
    return net


def test_an_idle_group_goes_quiet_and_costs_nothing() -> None:
    net = _quiet_group()
    assert any(isinstance(m, QuiesceHeartbeat) for _, _, m in net.sent)
    sent = len(net.sent)
    net.advance(60.0)
    assert len(net.sent) == sent
    leader = net.node(1)
    assert leader.is_leader and all(n.leader_id == 1 for n in net.nodes.values())


def test_quiescence_is_off_by_default() -> None:
    net = Network([1, 2, 3], config=RaftConfig(pre_vote=True, check_quorum=True))
    net.elect(1)
    net.advance(2.0)
    sent = len(net.sent)
    net.advance(2.0)
    assert len(net.sent) > sent and not any(n.quiesced for n in net.nodes.values())


def test_no_quiescence_while_a_follower_lags_or_a_read_waits() -> None:
    net = Network([1, 2, 3], config=QUIET)
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.advance(3.0)
    assert not net.node(1).quiesced and net.node(1).wake_at() is not None
    net.heal()
    net.advance(2.0)
    assert net.node(1).quiesced


def test_a_proposal_wakes_the_group_and_it_goes_quiet_again() -> None:
    net = _quiet_group()
    outcome = net.propose(1, b"y")
    assert isinstance(outcome, Accepted)
    assert not net.node(1).quiesced
    net.deliver()
    assert all(not n.quiesced for n in net.nodes.values())
    assert all(n.commit_index == outcome.index for n in net.nodes.values())
    net.advance(1.5)
    assert all(n.quiesced for n in net.nodes.values())


def test_a_read_wakes_the_leader_and_no_lease_read_is_served_while_quiet() -> None:
    net = _quiet_group(RaftConfig(pre_vote=True, check_quorum=True, read_mode="lease", quiesce_after_s=0.5))
    leader = net.node(1)
    assert not leader.lease_valid(net.now)
    outcome = leader.read_index(b"r1", net.now)
    assert isinstance(outcome, Accepted) and not leader.quiesced
    net.collect(N(1))
    assert net.reads[N(1)] == []  # waits for a heartbeat round sent after waking
    net.deliver()
    assert [r.context for r in net.reads[N(1)]] == [b"r1"]
    assert leader.lease_valid(net.now)


def test_a_message_from_the_leader_wakes_a_follower() -> None:
    net = _quiet_group()
    net.node(1).unquiesce(net.now)
    net.collect(N(1))
    net.deliver()
    assert not any(n.quiesced for n in net.nodes.values())
    assert all(n.wake_at() is not None for n in net.nodes.values())


def test_a_quiet_follower_campaigns_after_unquiesce_when_the_leader_is_gone() -> None:
    net = _quiet_group()
    net.crash(1)
    net.advance(20.0)
    assert net.node(2).role is Role.FOLLOWER and net.node(2).leader_id == 1  # nobody noticed
    term = net.node(2).term
    for follower in (2, 3):
        net.node(follower).unquiesce(net.now)
        net.collect(N(follower))
    net.advance(0.9)  # less than the minimum election timeout
    assert net.leader() is None and net.node(2).term == term
    net.advance(3.0)
    leader = net.leader()
    assert leader is not None and leader.id in (2, 3) and leader.term > term


def test_a_proposal_at_a_quiet_follower_wakes_it() -> None:
    net = _quiet_group()
    outcome = net.propose(2, b"z")
    assert outcome == Redirect(N(1))
    follower = net.node(2)
    assert not follower.quiesced and follower.wake_at() is not None


def test_check_quorum_does_not_depose_a_leader_that_wakes_after_a_long_quiet() -> None:
    net = _quiet_group()
    term = net.node(1).term
    net.advance(30.0)
    net.propose(1, b"y")
    net.advance(2.5)  # more than one check-quorum window
    leader = net.node(1)
    assert leader.is_leader and leader.term == term


def test_a_restarted_follower_wakes_the_leader_and_follows_it() -> None:
    net = _quiet_group()
    term = net.node(1).term
    net.crash(3)
    net.restart(3)
    net.advance(5.0)
    assert net.node(1).is_leader and net.node(1).term == term
    assert net.node(3).leader_id == 1
    net.advance(2.0)
    assert all(n.quiesced for n in net.nodes.values())


def test_a_leader_restarted_while_quiet_is_replaced_or_re_elected() -> None:
    net = _quiet_group()
    net.crash(1)
    net.restart(1)  # comes back a follower; its followers are quiet and loyal to it
    net.advance(10.0)
    leader = net.leader()
    assert leader is not None
    outcome = net.propose(leader.id, b"after")
    net.advance(0.5)
    assert isinstance(outcome, Accepted)
    assert all(n.commit_index >= outcome.index for n in net.nodes.values())


def test_a_transfer_or_a_membership_change_wakes_the_leader() -> None:
    net = _quiet_group()
    leader = net.node(1)
    outcome = leader.transfer_leadership(N(2), net.now)
    assert isinstance(outcome, Accepted) and not leader.quiesced
    net.collect(N(1))
    net.advance(1.0)
    assert net.node(2).is_leader
    net.advance(2.0)
    assert all(n.quiesced for n in net.nodes.values())
    change = ConfChange(ConfChangeKind.ADD_LEARNER, N(4))
    assert isinstance(net.node(2).propose_conf_change(change, net.now), Accepted)
    assert not net.node(2).quiesced


def test_forget_leader_wakes_a_quiet_follower() -> None:
    net = _quiet_group()
    follower = net.node(3)
    follower.forget_leader(net.now)
    assert not follower.quiesced and follower.leader_id is None
    assert follower.wake_at() is not None
