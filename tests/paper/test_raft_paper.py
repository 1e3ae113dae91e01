"""Raft behaviour checked section by section against the paper (Ongaro &
Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014) and
the Raft thesis (Ongaro 2014). Each test names the section it follows."""

from __future__ import annotations

import random

from tests.unit.raft.network import Network, encode_state

from quorate.core.protocol import Accepted, Redirect
from quorate.core.ready import Entry
from quorate.ids import NodeId
from quorate.raft import (
    AppendEntries,
    AppendEntriesResponse,
    ByzantineQuorum,
    ConfChange,
    ConfChangeKind,
    EntryKind,
    HardState,
    RaftConfig,
    RaftNode,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from quorate.storage import Recovered

N = NodeId


def _follower(terms: list[int], term: int, commit: int = 0) -> RaftNode:
    entries = [Entry(t, i + 1, EntryKind.NORMAL, b"%d" % i) for i, t in enumerate(terms)]
    return RaftNode(
        N(2),
        [N(1), N(2), N(3)],
        config=RaftConfig(pre_vote=False, check_quorum=False),
        rng=random.Random(2),
        now=0.0,
        recovered=Recovered(HardState(term, None, commit), None, entries),
    )


def test_a_higher_term_turns_any_node_into_a_follower() -> None:
    for role_setup in ("leader", "candidate", "follower"):
        net = Network([1, 2, 3])
        if role_setup == "leader":
            net.elect(1)
        elif role_setup == "candidate":
            net.campaign(1)
            net.queue.clear()
        net.step(3, 1, AppendEntries(7, 0, 0, [], 0))
        node = net.node(1)
        assert node.role is Role.FOLLOWER and node.term == 7 and node.leader_id == 3
    # Reference: Raft paper §5.1


def test_requests_with_a_stale_term_are_refused() -> None:
    follower = _follower([1, 2], term=2)
    follower.step(N(1), AppendEntries(1, 0, 0, [Entry(1, 1, 0, b"old")], 0), 0.0)
    assert follower.entry_at(1).term == 1 and follower.entry_at(2).term == 2  # type: ignore[union-attr]
    ((_, response),) = follower.ready().messages
    assert response == AppendEntriesResponse(2, 0, False)
    # Reference: Raft paper §5.1


def test_followers_start_an_election_after_an_election_timeout() -> None:
    net = Network([1, 2, 3])
    net.advance(2.0, deliver=False)
    assert any(n.role is Role.CANDIDATE for n in net.nodes.values())
    candidate = next(n for n in net.nodes.values() if n.role is Role.CANDIDATE)
    assert candidate.term == 1 and candidate.vote == candidate.id
    # Reference: Raft paper §5.2


def test_a_candidate_wins_with_votes_from_a_majority() -> None:
    for size, grants, wins in ((3, 1, True), (5, 1, False), (5, 2, True)):
        # The votes below reach the candidate without the voters casting them,
        # which the safety monitor rightly reports: leave it out.
        net = Network(range(1, size + 1), monitor=False)
        net.campaign(1)
        net.queue.clear()
        for voter in range(2, 2 + grants):
            net.step(voter, 1, RequestVoteResponse(1, True))
        assert (net.node(1).role is Role.LEADER) is wins
    # Reference: Raft paper §5.2


def test_each_node_votes_for_at_most_one_candidate_per_term() -> None:
    follower = _follower([], term=0)
    follower.step(N(1), RequestVote(1, 0, 0), 0.0)
    follower.step(N(3), RequestVote(1, 0, 0), 0.0)
    granted = [m.granted for _, m in follower.ready().messages]
    assert granted == [True, False]
    # Reference: Raft paper §5.2


def test_split_votes_are_resolved_by_randomized_timeouts() -> None:
    for seed in range(20):
        net = Network([1, 2, 3, 4, 5], seed=seed)
        net.advance(6.0)
        assert net.leader() is not None, f"no leader with seed {seed}"
    # Reference: Raft paper §5.2


def test_leader_appends_replicates_and_commits_on_a_majority() -> None:
    net = Network([1, 2, 3, 4, 5])
    net.elect(1)
    net.isolate(4)
    net.isolate(5)
    outcome = net.propose(1, b"x")
    assert isinstance(outcome, Accepted)
    net.deliver()
    assert net.node(1).commit_index == outcome.index
    assert net.applied[N(1)] == [b"x"]
    # Reference: Raft paper §5.3


def test_follower_rejects_entries_when_the_previous_entry_does_not_match() -> None:
    follower = _follower([1, 1, 1], term=1)
    follower.step(N(1), AppendEntries(2, 3, 2, [Entry(2, 4, 0, b"")], 0), 0.0)
    ((_, response),) = follower.ready().messages
    assert not response.success and follower.last_index == 3
    # Reference: Raft paper §5.3


def test_follower_deletes_a_conflicting_entry_and_all_that_follow() -> None:
    follower = _follower([1, 1, 2, 2], term=2)
    follower.step(N(1), AppendEntries(3, 2, 1, [Entry(3, 3, 0, b"new")], 0), 0.0)
    assert follower.last_index == 3 and follower.term_at(3) == 3
    # Reference: Raft paper §5.3


def test_leader_brings_inconsistent_followers_in_line() -> None:
    # Figure 7: followers missing entries, with extra entries, or both.
    leader_terms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    follower_logs = [
        [1, 1, 1, 4, 4, 5, 5, 6, 6],
        [1, 1, 1, 4],
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        [1, 1, 1, 4, 4, 4, 4],
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ]
    for terms in follower_logs:
        net = Network([1, 2, 3])
        for nid, log in ((1, leader_terms), (2, terms), (3, leader_terms)):
            entries = [
                Entry(t, i + 1, EntryKind.NORMAL, b"%d-%d" % (i, t)) for i, t in enumerate(log)
            ]
            recovered = Recovered(HardState(7, None, 0), None, entries)
            node = RaftNode(
                N(nid),
                [N(1), N(2), N(3)],
                config=net.config,
                rng=random.Random(nid),
                now=0.0,
                recovered=recovered,
            )
            net.put(node, recovered)
        net.elect(1)
        assert net.node(1).role is Role.LEADER
        net.advance(0.5)
        leader, follower = net.node(1), net.node(2)
        assert [follower.term_at(i) for i in range(1, leader.last_index + 1)] == [
            leader.term_at(i) for i in range(1, leader.last_index + 1)
        ]
        assert follower.last_index == leader.last_index
    # Reference: Raft paper §5.3 (figure 7)


def test_voters_refuse_candidates_with_less_up_to_date_logs() -> None:
    follower = _follower([1, 2], term=2)
    follower.step(N(1), RequestVote(3, 5, 1), 0.0)  # longer but older last term
    follower.step(N(3), RequestVote(3, 1, 2), 0.0)  # same last term, shorter
    follower.step(N(3), RequestVote(4, 2, 2), 0.0)  # as up to date
    granted = [m.granted for _, m in follower.ready().messages]
    assert granted == [False, False, True]
    # Reference: Raft paper §5.4.1


def test_entries_from_previous_terms_commit_only_with_one_of_the_current_term() -> None:
    entries = [Entry(1, 1, 0, b"a"), Entry(2, 2, 0, b"b")]
    leader = RaftNode(
        N(1),
        [N(1), N(2), N(3)],
        config=RaftConfig(pre_vote=False, check_quorum=False),
        rng=random.Random(1),
        now=0.0,
        recovered=Recovered(HardState(2, None, 1), None, entries),
    )
    leader.campaign(0.0)
    leader.step(N(2), RequestVoteResponse(3, True), 0.0)
    leader.ready()
    leader.step(N(3), AppendEntriesResponse(3, 2, True), 0.0)
    assert leader.commit_index == 1  # entry 2 is on a majority but from term 2
    leader.step(N(3), AppendEntriesResponse(3, 3, True), 0.0)
    assert leader.commit_index == 3
    # Reference: Raft paper §5.4.2 (figure 8)


def test_with_a_byzantine_quorum_too_only_current_term_entries_commit_by_counting() -> None:
    # Four voters, f = 1: a quorum is 2f + 1 = 3, for votes and for commitment.
    entries = [Entry(1, 1, 0, b"a"), Entry(2, 2, 0, b"b")]
    leader = RaftNode(
        N(1),
        [N(1), N(2), N(3), N(4)],
        config=RaftConfig(pre_vote=False, check_quorum=False),
        rng=random.Random(1),
        now=0.0,
        recovered=Recovered(HardState(2, None, 1), None, entries),
        quorum=ByzantineQuorum(),
    )
    leader.campaign(0.0)
    leader.step(N(2), RequestVoteResponse(3, True), 0.0)
    assert leader.role is Role.CANDIDATE  # two votes of four: a majority would not do either
    leader.step(N(3), RequestVoteResponse(3, True), 0.0)
    assert leader.role is Role.LEADER
    leader.ready()
    leader.step(N(2), AppendEntriesResponse(3, 2, True), 0.0)
    leader.step(N(3), AppendEntriesResponse(3, 2, True), 0.0)
    assert leader.commit_index == 1  # entry 2 is on a quorum but from term 2
    leader.step(N(2), AppendEntriesResponse(3, 3, True), 0.0)
    assert leader.commit_index == 1  # the no-op of term 3 on 2 of the 3 needed
    leader.step(N(3), AppendEntriesResponse(3, 3, True), 0.0)
    assert leader.commit_index == 3
    # Reference: Raft paper §5.4.2 (figure 8); a quorum of 2f+1 of 3f+1 (Castro & Liskov 1999)


def test_clients_are_redirected_to_the_leader() -> None:
    net = Network([1, 2, 3])
    net.elect(2)
    assert net.propose(1, b"x") == Redirect(N(2))
    # Reference: Raft paper §8


def test_new_leader_commits_a_noop_at_the_start_of_its_term() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    entry = net.node(1).entry_at(1)
    assert entry is not None and entry.kind == EntryKind.NOOP and net.node(1).commit_index == 1
    # Reference: Raft paper §8


def test_snapshot_replaces_the_committed_prefix_and_catches_up_followers() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"%d" % i)
    net.deliver()
    leader = net.node(1)
    leader.compact(leader.applied_index, encode_state(net.applied[N(1)]))
    net.heal()
    net.advance(0.5)
    assert net.installed[N(3)] and net.applied[N(3)] == net.applied[N(1)]
    # Reference: Raft paper §7


def test_single_server_changes_take_effect_when_appended() -> None:
    net = Network([1, 2, 3], learners=[4])
    net.elect(1)
    net.deliver()
    leader = net.node(1)
    leader.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE_LEARNER, N(4)), net.now)
    assert leader.voters == {1, 2, 3, 4} and leader.commit_index < leader.last_index
    # Reference: thesis §4.1


def test_prevote_prevents_disruption_by_a_partitioned_server() -> None:
    net = Network([1, 2, 3], config=RaftConfig(pre_vote=True, check_quorum=True))
    net.elect(1)
    net.isolate(3)
    net.advance(5.0)
    net.heal()
    net.advance(1.0)
    assert net.node(1).role is Role.LEADER and net.node(1).term == 1
    # Reference: thesis §9.6


def test_leadership_transfer_hands_over_without_waiting_for_a_timeout() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.node(1).transfer_leadership(N(3), net.now)
    net.collect(N(1))
    net.deliver()
    assert net.node(3).role is Role.LEADER
    # Reference: thesis §3.10


def test_read_index_serves_reads_after_a_quorum_confirms_leadership() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.node(1).read_index(b"ctx", net.now)
    net.collect(N(1))
    assert net.reads[N(1)] == []
    net.deliver()
    assert [r.context for r in net.reads[N(1)]] == [b"ctx"]
    # Reference: thesis §6.4
