"""Leader election: randomized timeouts, votes, pre-vote, check-quorum, stickiness."""

from __future__ import annotations

import random

from tests.unit.raft.network import Network

from quorate.ids import NodeId
from quorate.raft import (
    HardState,
    PreVote,
    RaftConfig,
    RaftNode,
    RequestVote,
    RequestVoteResponse,
    Role,
)

T = 1.0
STICKY = RaftConfig(election_timeout_s=T, pre_vote=True, check_quorum=True)


def test_single_voter_elects_itself_and_commits_alone() -> None:
    net = Network([1])
    net.advance(2 * T)
    node = net.node(1)
    assert node.role is Role.LEADER
    net.propose(1, b"x")
    assert net.applied[node.id] == [b"x"]


def test_election_timeout_is_drawn_uniformly_from_t_to_2t() -> None:
    samples = []
    for seed in range(200):
        node = RaftNode(
            NodeId(1),
            [NodeId(1), NodeId(2), NodeId(3)],
            config=RaftConfig(),
            rng=random.Random(seed),
            now=10.0,
        )
        wake = node.ready().wake_at
        assert wake is not None
        samples.append(wake - 10.0)
    assert all(T <= s < 2 * T for s in samples)
    assert max(samples) - min(samples) > 0.8 * T  # really spread, not a constant


def test_the_same_seed_gives_the_same_timeout() -> None:
    def make() -> RaftNode:
        voters = [NodeId(1), NodeId(2)]
        return RaftNode(NodeId(1), voters, config=RaftConfig(), rng=random.Random(7), now=0.0)

    assert make().wake_at() == make().wake_at()


def test_candidate_with_majority_wins_and_appends_a_noop() -> None:
    net = Network([1, 2, 3])
    leader = net.elect(1)
    assert leader.role is Role.LEADER and leader.term == 1
    assert [n.leader_id for n in net.nodes.values()] == [1, 1, 1]
    entry = leader.entry_at(1)
    assert entry is not None and entry.kind == 1 and entry.term == 1
    assert leader.commit_index == 1


def test_candidate_rejected_by_majority_returns_to_follower() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"a")
    net.deliver()
    # Node 3 misses everything from now on and falls behind.
    net.isolate(3)
    net.propose(1, b"b")
    net.deliver()
    net.heal()
    # 3 campaigns with a stale log: 1 and 2 refuse (election restriction).
    net.node(3).tick(100.0)
    net.collect(NodeId(3))
    net.deliver()
    assert net.node(3).role is not Role.LEADER
    assert net.node(2).vote != 3


def test_one_vote_per_term_and_it_is_persisted_before_the_answer() -> None:
    net = Network([1, 2, 3])
    net.step(1, 2, RequestVote(1, 0, 0))
    ready_msgs = net.take(src=2)
    assert ready_msgs[-1][2] == RequestVoteResponse(1, True)
    assert net.storage[NodeId(2)].load_state() == HardState(1, 1, 0)
    net.step(3, 2, RequestVote(1, 0, 0))
    assert net.take(src=2)[-1][2] == RequestVoteResponse(1, False)
    # the same candidate asking again (a retransmission) still gets its vote
    net.step(1, 2, RequestVote(1, 0, 0))
    assert net.take(src=2)[-1][2] == RequestVoteResponse(1, True)


def test_hard_state_is_emitted_only_when_it_changes() -> None:
    node = RaftNode(
        NodeId(1),
        [NodeId(1), NodeId(2), NodeId(3)],
        config=RaftConfig(),
        rng=random.Random(1),
        now=0.0,
    )
    first = node.ready()
    assert first.hard_state is None  # nothing changed from the zero state
    node.step(NodeId(2), RequestVote(3, 0, 0), 0.5)
    assert node.ready().hard_state == HardState(3, 2, 0)
    node.step(NodeId(2), RequestVote(3, 0, 0), 0.6)
    assert node.ready().hard_state is None


def test_prevote_keeps_a_partitioned_node_from_bumping_its_term() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.isolate(3)
    net.advance(10 * T)
    assert net.node(3).term == 1  # pre-votes failed, the term never moved
    assert net.node(3).role is Role.PRE_CANDIDATE
    net.heal()
    net.advance(T)
    assert net.node(1).role is Role.LEADER and net.node(1).term == 1
    assert net.node(3).leader_id == 1


def test_without_prevote_a_returning_node_disrupts_the_leader() -> None:
    net = Network([1, 2, 3], config=RaftConfig(pre_vote=False, check_quorum=False))
    net.elect(1)
    net.isolate(3)
    net.advance(10 * T)
    assert net.node(3).term > 3
    net.heal()
    net.advance(5 * T)
    assert net.leader() is not None
    assert net.leader().term >= net.node(3).term - 1  # type: ignore[union-attr]
    assert net.node(1).term > 1  # the old term was abandoned


def test_check_quorum_makes_an_isolated_leader_step_down() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.isolate(1)
    net.advance(2.5 * T)
    assert net.node(1).role is Role.FOLLOWER
    assert net.node(1).leader_id is None


def test_without_check_quorum_an_isolated_leader_stays_leader() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    net.advance(5 * T)
    assert net.node(1).role is Role.LEADER


def test_sticky_follower_ignores_votes_while_it_hears_from_a_leader() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.advance(0.3)
    for vote in (RequestVote(5, 100, 5), PreVote(5, 100, 5)):
        net.step(3, 2, vote)
        assert not net.take(src=2, dst=3)
    assert net.node(2).term == 1
    # An election started by TimeoutNow waives stickiness.
    net.step(3, 2, RequestVote(5, 100, 5, transfer=True))
    assert net.take(src=2, dst=3)[-1][2] == RequestVoteResponse(5, True)


def test_restarted_node_is_sticky_for_one_election_timeout() -> None:
    net = Network([1, 2, 3], config=STICKY)
    net.elect(1)
    net.crash(2)
    net.restart(2)
    net.step(3, 2, RequestVote(5, 100, 5))
    assert not net.take(src=2, dst=3)
    net.now += T
    net.step(3, 2, RequestVote(5, 100, 5))
    assert net.take(src=2, dst=3)[-1][2] == RequestVoteResponse(5, True)


def test_stale_leader_learns_the_new_term_and_steps_down() -> None:
    # Pre-vote without check-quorum: the old leader never steps down by itself.
    net = Network([1, 2, 3], config=RaftConfig(pre_vote=True, check_quorum=False))
    net.elect(1)
    net.isolate(1)
    net.advance(3 * T)
    assert net.node(1).role is Role.LEADER and net.node(1).term == 1
    new = net.leader()
    assert new is not None and new.id != 1
    net.heal()
    net.advance(T)
    assert net.node(1).role is Role.FOLLOWER and net.node(1).leader_id == new.id
