"""What only the core knows, in its Ready: ``must_sync`` (etcd's MustSync) and
``early_messages`` (a leader's sends before its own fsync, thesis §10.2.1)."""

from __future__ import annotations

import random

from tests.unit.raft.network import Network

from quorate.core.protocol import Accepted
from quorate.core.ready import Entry, Ready
from quorate.ids import NodeId
from quorate.raft import (
    AppendEntries,
    ConfChange,
    ConfChangeKind,
    Heartbeat,
    RaftConfig,
    RaftNode,
)

N = NodeId


def _follower() -> RaftNode:
    node = RaftNode(N(2), [N(1), N(2), N(3)], config=RaftConfig(), rng=random.Random(0), now=0.0)
    node.ready()
    return node


def test_a_follower_syncs_entries_and_votes_but_not_a_commit_index_alone() -> None:
    node = _follower()
    node.step(N(1), AppendEntries(1, 0, 0, [Entry(1, 1, 0, b"a")], 0), 0.1)
    ready = node.ready()
    assert ready.entries and ready.must_sync  # new term and an entry
    assert not ready.early_messages and ready.messages  # the ack waits for the fsync
    node.step(N(1), Heartbeat(1, 1, 1), 0.2)
    ready = node.ready()
    assert ready.hard_state is not None and ready.hard_state.commit == 1
    assert not ready.entries and not ready.must_sync  # only the commit index changed
    assert not ready.early_messages
    # Reference: etcd-io/raft MustSync; Raft paper figure 2 (commitIndex is volatile)


def test_nothing_to_persist_needs_no_sync() -> None:
    node = _follower()
    node.step(N(1), Heartbeat(0, 0, 1), 0.1)
    ready = node.ready()
    assert ready.hard_state is None and not ready.entries and not ready.must_sync


def test_a_candidate_syncs_its_vote_before_asking() -> None:
    node = _follower()
    node.tick(5.0)  # pre-vote first: nothing durable changes
    ready = node.ready()
    assert ready.messages and not ready.must_sync and not ready.early_messages
    node.step(N(1), _granted_pre_vote(node.term + 1), 5.1)
    ready = node.ready()
    assert ready.hard_state is not None and ready.hard_state.vote == 2
    assert ready.must_sync and not ready.early_messages and ready.messages


def _granted_pre_vote(term: int) -> object:
    from quorate.raft import PreVoteResponse

    return PreVoteResponse(term, True)


def _readies(net: Network, node_id: int) -> list[Ready]:
    """Collect a node's Readies by hand (the network would drain them)."""
    node = net.node(node_id)
    out = []
    while node.has_ready():
        ready = node.ready()
        out.append(ready)
        for to, message in (*ready.early_messages, *ready.messages):
            net.queue.append((N(node_id), to, message))
        net.storage[N(node_id)].persist(ready.hard_state, ready.entries, ready.snapshot)
        node.advance(ready)
    return out


def test_a_leader_sends_its_appends_before_its_own_fsync() -> None:
    net = Network([1, 2, 3])
    leader = net.elect(1)
    net.advance(0.2)
    leader.propose(b"x", net.now)
    (ready,) = _readies(net, 1)
    assert ready.entries and ready.must_sync
    assert ready.early_messages and not ready.messages
    assert all(isinstance(m, AppendEntries) for _, m in ready.early_messages)
    # The acknowledgements move the commit index: a commit-only Ready, sent early.
    appends, net.queue = net.queue, []
    for src, dst, message in appends:
        net.step(src, dst, message)  # the followers store and acknowledge
    acks, net.queue = net.queue, []
    for src, _, message in acks:
        leader.step(src, message, net.now)
    (ready,) = _readies(net, 1)
    assert ready.hard_state is not None and ready.hard_state.commit == leader.last_index
    assert not ready.entries and not ready.must_sync
    assert ready.early_messages and not ready.messages
    # Reference: Raft thesis §10.2.1


def test_a_leader_whose_commit_counts_unwritten_entries_sends_after_the_write() -> None:
    # A sole voter with a learner commits what it appends at once: the commit
    # index in its AppendEntries would count an entry not yet durable anywhere.
    net = Network([1], learners=[2])
    leader = net.elect(1)
    net.deliver()
    leader.propose(b"x", net.now)
    (ready,) = _readies(net, 1)
    assert ready.entries and ready.must_sync
    assert ready.hard_state is not None and ready.hard_state.commit == ready.entries[-1].index
    assert ready.messages and not ready.early_messages


def test_a_new_leader_sends_after_its_term_is_durable() -> None:
    net = Network([1])  # a sole voter wins in the same input it campaigns
    node = net.node(1)
    node.campaign(net.now)
    ready = node.ready()
    assert ready.hard_state is not None and ready.must_sync
    assert not ready.early_messages


def test_a_removal_that_shrinks_the_quorum_keeps_its_messages_until_the_write() -> None:
    net = Network([1, 2], learners=[3])
    leader = net.elect(1)
    net.advance(0.2)
    outcome = leader.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_NODE, N(2)), net.now)
    (ready,) = _readies(net, 1)
    # Removing voter 2 leaves voter 1 alone: the configuration entry commits on
    # append, so the AppendEntries carrying that commit index wait for the write.
    assert isinstance(outcome, Accepted) and ready.entries[-1].index == outcome.index
    assert ready.hard_state is not None and ready.hard_state.commit == outcome.index
    assert ready.messages and not ready.early_messages
