"""Leadership transfer (thesis §3.10)."""

from __future__ import annotations

from tests.unit.raft.network import Network

from quorate.core.protocol import Accepted, Redirect, Refused
from quorate.ids import NodeId
from quorate.raft import RaftConfig, Role, TimeoutNow

N = NodeId
STICKY = RaftConfig(pre_vote=True, check_quorum=True)


def test_transfer_to_an_up_to_date_follower() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.advance(0.3)
    outcome = net.node(1).transfer_leadership(N(2), net.now)
    assert isinstance(outcome, Accepted)
    net.collect(N(1))
    assert any(isinstance(m, TimeoutNow) for _, _, m in net.queue)
    net.deliver()
    assert net.node(2).role is Role.LEADER and net.node(2).term == 2
    assert net.node(1).role is Role.FOLLOWER and net.node(1).leader_id == 2


def test_transfer_catches_a_lagging_target_up_first() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.isolate(3)
    for i in range(10):
        net.propose(1, b"c%d" % i)
    net.deliver()
    net.heal()
    net.node(1).transfer_leadership(N(3), net.now)
    net.collect(N(1))
    assert not any(isinstance(m, TimeoutNow) for _, _, m in net.queue)
    assert isinstance(net.propose(1, b"refused"), Refused)
    net.deliver()
    assert net.node(3).role is Role.LEADER
    assert net.applied[N(3)] == [b"c%d" % i for i in range(10)]


def test_transfer_aborts_after_an_election_timeout() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.deliver()
    net.node(1).transfer_leadership(N(3), net.now)
    net.collect(N(1))
    assert net.node(1).transfer_target == 3
    net.advance(1.2)
    leader = net.node(1)
    assert leader.role is Role.LEADER and leader.transfer_target is None
    assert isinstance(net.propose(1, b"y"), Accepted)


def test_transfer_is_refused_by_followers_and_for_non_voters() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    assert net.node(2).transfer_leadership(N(3), net.now) == Redirect(N(1))
    assert isinstance(net.node(1).transfer_leadership(N(9), net.now), Refused)
    assert isinstance(net.node(1).transfer_leadership(N(1), net.now), Refused)
