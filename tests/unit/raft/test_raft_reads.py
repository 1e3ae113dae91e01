"""Linearizable reads: ReadIndex and leases (thesis §6.4)."""

from __future__ import annotations

from tests.unit.raft.network import Network

from quorate.core.protocol import Accepted, Redirect
from quorate.core.ready import ReadState
from quorate.ids import NodeId
from quorate.raft import Heartbeat, RaftConfig

N = NodeId
LEASE = RaftConfig(pre_vote=True, check_quorum=True, read_mode="lease", max_clock_drift=0.01)


def test_read_index_waits_for_a_quorum_heartbeat_round() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.deliver()
    leader = net.node(1)
    assert leader.read_index(b"r1", net.now) == Accepted(2, 1)
    assert leader.read_index(b"r2", net.now) == Accepted(2, 1)
    net.collect(N(1))
    assert net.reads[N(1)] == []
    rounds = {m.round for _, _, m in net.queue if isinstance(m, Heartbeat)}
    assert len(rounds) == 1  # both reads share one round
    net.deliver_one()  # heartbeat to 2
    net.deliver_one()  # heartbeat to 3
    assert net.reads[N(1)] == []
    net.deliver_one()  # 2 acknowledges: with the leader, a quorum
    assert net.reads[N(1)] == [ReadState(2, b"r1"), ReadState(2, b"r2")]


def test_partitioned_leader_never_answers_a_read() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    net.node(1).read_index(b"r", net.now)
    net.collect(N(1))
    net.advance(3.0)
    assert net.reads[N(1)] == []


def test_new_leader_answers_reads_only_after_committing_in_its_term() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.deliver()
    net.campaign(2)
    net.deliver_one()  # RequestVote to 1
    net.deliver_one()  # RequestVote to 3
    net.deliver_one()  # a vote: 2 leads term 2, its no-op is not committed yet
    leader = net.node(2)
    assert leader.term == 2 and leader.commit_index < leader.last_index
    leader.read_index(b"r", net.now)
    net.collect(N(2))
    assert net.reads[N(2)] == []
    net.deliver()
    assert net.reads[N(2)] == [ReadState(3, b"r")]


def test_followers_redirect_reads() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    assert net.node(2).read_index(b"r", net.now) == Redirect(N(1))


def test_lease_read_is_answered_without_a_round_while_the_lease_holds() -> None:
    net = Network([1, 2, 3], config=LEASE)
    net.elect(1)
    net.advance(0.25)  # heartbeats acknowledged: the lease runs
    leader = net.node(1)
    sent_before = len(net.sent)
    leader.read_index(b"fast", net.now)
    net.collect(N(1))
    assert net.reads[N(1)] == [ReadState(1, b"fast")]
    assert len(net.sent) == sent_before  # no heartbeat round needed
    assert leader.lease_valid(net.now)


def test_lease_expires_from_the_send_time_of_the_last_acknowledged_round() -> None:
    net = Network([1, 2, 3], config=LEASE)
    net.elect(1)
    net.advance(0.25)
    leader = net.node(1)
    net.isolate(1)
    last_sent = max(t for t in [net.now - k * 0.05 for k in range(10)] if leader.lease_valid(t))
    net.advance(1.0, deliver=True)
    # The lease (0.99 s) counted from a send time <= 0.25 s has expired by 1.25 s.
    assert not leader.lease_valid(net.now)
    assert last_sent <= 0.25
    leader.read_index(b"slow", net.now)
    net.collect(N(1))
    assert net.reads[N(1)] == []  # falls back to a (failing) heartbeat round


def test_lease_is_forfeited_once_a_transfer_starts() -> None:
    net = Network([1, 2, 3], config=LEASE)
    net.elect(1)
    net.advance(0.25)
    leader = net.node(1)
    assert leader.lease_valid(net.now)
    net.isolate(2)
    leader.transfer_leadership(N(2), net.now)
    assert not leader.lease_valid(net.now)


def test_lease_duration_accounts_for_clock_drift() -> None:
    config = RaftConfig(
        election_timeout_s=2.0,
        check_quorum=True,
        read_mode="lease",
        max_clock_drift=0.05,
        lease_margin_s=0.1,
    )
    assert abs(config.lease_duration_s - (2.0 * 0.95 - 0.1)) < 1e-12
