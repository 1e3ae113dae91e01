"""``RaftConfig.elide_heartbeats``: a follower that acknowledged an
AppendEntries within the last few heartbeat rounds gets no periodic heartbeat; idle followers, rounds that reads wait for and lease mode keep every
heartbeat, and check-quorum still sees a silent quorum."""

from __future__ import annotations

from tests.unit.raft.network import Network

from quorate.ids import NodeId
from quorate.raft import Heartbeat, RaftConfig, Role
from quorate.raft.read_only import ELIDED_ROUNDS

ELIDE = RaftConfig(pre_vote=True, check_quorum=True, lazy_commit=True, elide_heartbeats=True)
HEARTBEAT_S = ELIDE.heartbeat_interval_s


def _heartbeats(net: Network, since: int) -> list[tuple[NodeId, NodeId, object]]:
    return [s for s in net.sent[since:] if type(s[2]) is Heartbeat]


def _busy(net: Network, seconds: float) -> None:
    """A write every half heartbeat interval for ``seconds``."""
    steps = round(seconds / (HEARTBEAT_S / 2))
    for i in range(steps):
        net.propose(1, b"w%d" % i)
        net.advance(HEARTBEAT_S / 2)


def test_a_busy_group_sends_no_heartbeats() -> None:
    net = Network([1, 2, 3], config=ELIDE)
    net.elect(1)
    net.deliver()
    _busy(net, HEARTBEAT_S)  # the first round after the election may still go out
    before = len(net.sent)
    _busy(net, 2 * ELIDE.election_timeout_s)
    assert _heartbeats(net, before) == []
    # Check-quorum counted the acknowledgements: nobody stepped down or campaigned.
    assert net.node(1).role is Role.LEADER
    assert all(net.node(n).role is Role.FOLLOWER for n in (2, 3))
    assert net.node(1).term == net.node(2).term == net.node(3).term


def test_an_idle_group_heartbeats_and_followers_learn_the_commit_index() -> None:
    net = Network([1, 2, 3], config=ELIDE)
    net.elect(1)
    net.deliver()
    _busy(net, HEARTBEAT_S)
    committed = net.node(1).commit_index
    before = len(net.sent)
    net.advance((ELIDED_ROUNDS + 2) * HEARTBEAT_S)
    assert {to for _, to, _ in _heartbeats(net, before)} == {2, 3}
    assert all(net.node(n).commit_index == committed for n in (2, 3))


def test_a_silent_follower_still_gets_its_heartbeat() -> None:
    net = Network([1, 2, 3], config=ELIDE)
    net.elect(1)
    net.deliver()
    net.drop(3, 1)  # node 3's acknowledgements are lost from now on
    _busy(net, ELIDED_ROUNDS * HEARTBEAT_S)
    before = len(net.sent)
    _busy(net, 3 * HEARTBEAT_S)
    assert {to for _, to, _ in _heartbeats(net, before)} == {3}


def test_a_partitioned_leader_steps_down_under_check_quorum() -> None:
    net = Network([1, 2, 3], config=ELIDE)
    net.elect(1)
    net.deliver()
    net.isolate(1)
    _busy(net, 2 * ELIDE.election_timeout_s + HEARTBEAT_S)
    assert net.node(1).role is Role.FOLLOWER
    net.heal()
    net.advance(4 * ELIDE.election_timeout_s)
    assert net.leader() is not None


def test_a_round_that_reads_wait_for_goes_to_every_follower() -> None:
    net = Network([1, 2, 3], config=ELIDE)
    net.elect(1)
    net.deliver()
    _busy(net, HEARTBEAT_S)
    net.propose(1, b"x")
    net.deliver()
    before = len(net.sent)
    net.node(1).read_index(b"r", net.now)
    net.collect(NodeId(1))
    net.deliver()
    assert {to for _, to, _ in _heartbeats(net, before)} == {2, 3}
    assert [r.context for r in net.reads[NodeId(1)]] == [b"r"]


def test_lease_mode_never_elides() -> None:
    lease = RaftConfig(pre_vote=True, check_quorum=True, read_mode="lease", elide_heartbeats=True)
    net = Network([1, 2, 3], config=lease)
    net.elect(1)
    net.deliver()
    before = len(net.sent)
    for i in range(6):
        net.propose(1, b"w%d" % i)
        net.advance(HEARTBEAT_S / 2)
    assert {to for _, to, _ in _heartbeats(net, before)} == {2, 3}
    assert net.node(1).lease_valid(net.now)


def test_a_write_every_few_intervals_still_elides_them() -> None:
    net = Network([1, 2, 3], config=ELIDE)
    net.elect(1)
    net.deliver()
    _busy(net, HEARTBEAT_S)
    before = len(net.sent)
    for i in range(8):
        net.propose(1, b"s%d" % i)
        net.advance(ELIDED_ROUNDS * HEARTBEAT_S)
    assert _heartbeats(net, before) == []


def test_no_elision_when_an_interval_is_a_large_part_of_the_election_timeout() -> None:
    slow = RaftConfig(
        pre_vote=True, check_quorum=True, election_timeout_s=1.0, heartbeat_interval_s=0.4, elide_heartbeats=True
    )
    net = Network([1, 2, 3], config=slow)
    net.elect(1)
    net.deliver()
    before = len(net.sent)
    for i in range(6):
        net.propose(1, b"w%d" % i)
        net.advance(0.2)
    assert {to for _, to, _ in _heartbeats(net, before)} == {2, 3}


def test_elided_heartbeats_are_off_by_default() -> None:
    assert RaftConfig().elide_heartbeats is False
