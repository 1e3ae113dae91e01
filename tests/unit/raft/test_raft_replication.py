"""Log replication: consistency check, truncation rules, fast backtracking,
commitment (§5.4.2), batching, pipelining with flow control, catch-up."""

from __future__ import annotations

import random

from tests.unit.raft.network import DEFAULT_CONFIG, Network

from quorate.core.ready import Entry
from quorate.ids import NodeId
from quorate.raft import (
    AppendEntries,
    AppendEntriesResponse,
    EntryKind,
    HardState,
    RaftConfig,
    RaftNode,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from quorate.raft.progress import ProgressState
from quorate.storage import Recovered

N = NodeId


def _entries(terms: list[int], start: int = 1) -> list[Entry]:
    return [
        Entry(t, start + i, EntryKind.NORMAL, b"e%d-%d" % (start + i, t))
        for i, t in enumerate(terms)
    ]


def _recovered(terms: list[int], hard_term: int, commit: int = 0) -> Recovered:
    return Recovered(HardState(hard_term, None, commit), None, _entries(terms))


def _node(
    nid: int, terms: list[int], hard_term: int, config: RaftConfig = DEFAULT_CONFIG, commit: int = 0
) -> RaftNode:
    return RaftNode(
        N(nid),
        [N(1), N(2), N(3)],
        config=config,
        rng=random.Random(nid),
        now=0.0,
        recovered=_recovered(terms, hard_term, commit),
    )


def test_proposals_replicate_and_commit_on_every_node() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    for i in range(5):
        net.propose(1, b"c%d" % i)
    net.deliver()
    for nid in (1, 2, 3):
        assert net.applied[N(nid)] == [b"c%d" % i for i in range(5)]
        assert net.node(nid).commit_index == 6


def test_follower_redirects_proposals_to_the_leader() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    outcome = net.propose(2, b"x")
    assert outcome.leader == 1  # type: ignore[union-attr]


def test_overlapping_but_not_conflicting_append_does_not_truncate() -> None:
    # The follower holds 1..5 of term 1, committed only through 1.
    follower = _node(2, [1, 1, 1, 1, 1], hard_term=1, commit=1)
    follower.ready()
    before = [follower.entry_at(i) for i in range(1, 6)]
    rewrites = follower.log_rewrites
    # A delayed, reordered AppendEntries carrying entries 2..3 again.
    stale = AppendEntries(1, 1, 1, [before[1], before[2]], 1)  # type: ignore[list-item]
    follower.step(N(1), stale, 1.0)
    assert follower.last_index == 5
    assert [follower.entry_at(i) for i in range(1, 6)] == before
    assert follower.log_rewrites == rewrites
    ready = follower.ready()
    assert ready.entries == []  # nothing to rewrite on disk either
    assert ready.messages == [(1, AppendEntriesResponse(1, 3, True))]


def test_append_below_the_commit_index_is_acknowledged_up_to_it() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    for i in range(4):
        net.propose(1, b"c%d" % i)
    net.deliver()
    follower = net.node(2)
    stale = AppendEntries(1, 1, 1, [follower.entry_at(2), follower.entry_at(3)], 1)  # type: ignore[list-item]
    net.step(1, 2, stale)
    assert follower.last_index == 5
    assert net.take(src=2)[-1][2] == AppendEntriesResponse(1, 5, True)


def test_conflicting_suffix_is_truncated_and_replaced() -> None:
    follower = _node(2, [1, 1, 2, 2, 2], hard_term=2, commit=2)
    new = Entry(3, 3, EntryKind.NORMAL, b"new")
    follower.step(N(1), AppendEntries(3, 2, 1, [new], 2), 1.0)
    assert follower.last_index == 3
    assert follower.entry_at(3) == new
    ready = follower.ready()
    assert ready.entries == [new]  # the runtime overwrites from index 3


def test_append_with_mismatching_previous_entry_is_rejected_with_a_hint() -> None:
    follower = _node(2, [1, 1, 2, 2, 2, 2], hard_term=2)
    follower.step(N(1), AppendEntries(4, 6, 3, [], 0), 1.0)
    ((_, response),) = follower.ready().messages
    # Largest index <= 6 whose term <= 3 is 6 (term 2): the leader can skip
    # every index after it without more round trips.
    assert response == AppendEntriesResponse(4, 6, False, 6, 2)
    follower.step(N(1), AppendEntries(4, 9, 4, [], 0), 1.0)
    ((_, response),) = follower.ready().messages
    assert (response.hint_index, response.hint_term) == (6, 2)  # shorter log: hint its end


def test_fast_backtracking_skips_a_divergent_term_per_round_trip() -> None:
    # Leader-to-be 1: terms 1,1,1 then 4 x 5.  Follower 2: terms 1,1,1 then 2 x 40, 3 x 40.
    logs = {1: [1, 1, 1] + [4] * 5, 2: [1, 1, 1] + [2] * 40 + [3] * 40, 3: [1, 1, 1]}
    net = Network([1, 2, 3])
    for nid, terms in logs.items():
        net.put(_node(nid, terms, hard_term=4), _recovered(terms, hard_term=4))
    leader, follower = net.node(1), net.node(2)
    net.elect(1)
    assert leader.role is Role.LEADER
    rejections = [
        m
        for src, _, m in net.sent
        if src == 2 and isinstance(m, AppendEntriesResponse) and not m.success
    ]
    assert 1 <= len(rejections) <= 3, rejections
    assert [follower.term_at(i) for i in range(1, 10)] == [leader.term_at(i) for i in range(1, 10)]
    assert follower.last_index == leader.last_index


def test_leader_commits_only_entries_of_its_own_term_by_counting() -> None:
    # Figure 8: entry 2 (term 2) sits on a majority, but the leader of term 3
    # must not commit it until an entry of term 3 is on a majority too.
    leader = _node(1, [1, 2], hard_term=2, commit=1)
    leader.campaign(0.0)
    leader.ready()
    leader.step(N(2), RequestVoteResponse(3, True), 0.0)
    assert leader.role is Role.LEADER and leader.term == 3
    leader.ready()
    leader.step(N(2), AppendEntriesResponse(3, 2, True), 0.0)
    assert leader.commit_index == 1
    leader.step(N(2), AppendEntriesResponse(3, 3, True), 0.0)
    assert leader.commit_index == 3


def test_commit_index_on_followers_never_passes_their_last_matching_entry() -> None:
    follower = _node(2, [1, 1], hard_term=1)
    follower.step(N(1), AppendEntries(1, 2, 1, [], 10), 0.0)
    assert follower.commit_index == 2


def test_batches_respect_max_entries_and_max_bytes() -> None:
    config = RaftConfig(
        pre_vote=False, check_quorum=False, max_batch_entries=3, max_batch_bytes=100
    )
    net = Network([1, 2, 3], config=config)
    net.elect(1)
    net.isolate(3)
    for i in range(12):
        net.propose(1, b"%02d" % i)
    net.propose(1, b"x" * 300)  # oversize entries still travel, alone
    net.deliver()
    net.heal()
    net.sent.clear()
    net.advance(1.0)
    appends = [
        m for _, dst, m in net.sent if dst == 3 and isinstance(m, AppendEntries) and m.entries
    ]
    assert appends and all(len(m.entries) <= 3 for m in appends)
    assert any(len(m.entries) == 1 and len(m.entries[0].data) == 300 for m in appends)
    assert net.node(3).commit_index == net.node(1).commit_index == 14
    big = Network(
        [1, 2], config=RaftConfig(pre_vote=False, check_quorum=False, max_batch_bytes=100)
    )
    big.elect(1)
    big.isolate(2)
    for _ in range(6):
        big.propose(1, b"y" * 40)
    big.deliver()  # lost: 2 is isolated
    big.heal()
    big.sent.clear()
    big.advance(1.0)
    sizes = [len(m.entries) for _, _, m in big.sent if isinstance(m, AppendEntries) and m.entries]
    assert sizes and max(sizes) == 1  # two 40-byte entries plus overhead exceed 100 bytes


def test_replicate_state_pipelines_up_to_max_inflight() -> None:
    config = RaftConfig(pre_vote=False, check_quorum=False, max_inflight=4)
    net = Network([1, 2], config=config)
    net.elect(1)
    leader = net.node(1)
    assert leader.progress(N(2)).state is ProgressState.REPLICATE  # type: ignore[union-attr]
    for i in range(10):
        net.propose(1, b"c%d" % i)  # no delivery in between
    appends = [m for _, dst, m in net.queue if dst == 2 and isinstance(m, AppendEntries)]
    assert len(appends) == 4  # sent optimistically, then paused
    net.deliver()
    assert net.node(2).commit_index == leader.last_index == 11


def test_probe_state_sends_one_append_at_a_time() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"c%d" % i)
    net.deliver()
    net.elect(2)  # a new leader starts every follower in PROBE
    leader = net.node(2)
    assert leader.role is Role.LEADER
    pr = leader.progress(N(3))
    assert pr is not None and pr.state is ProgressState.PROBE and pr.probe_sent
    net.heal()
    for i in range(3):
        net.propose(2, b"more%d" % i)
    # The probe to 3 is unanswered (it was lost): nothing more goes to 3 ...
    assert not [m for _, dst, m in net.queue if dst == 3 and isinstance(m, AppendEntries)]
    net.deliver()
    # ... until a heartbeat response unpauses it; then 3 catches up.
    net.advance(0.5)
    assert net.node(3).last_index == leader.last_index
    assert pr.state is ProgressState.REPLICATE


def test_lagging_follower_catches_up() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for i in range(50):
        net.propose(1, b"c%d" % i)
    net.deliver()
    assert net.node(3).last_index == 1
    net.heal()
    net.advance(0.5)
    assert net.applied[N(3)] == net.applied[N(1)]
    assert len(net.applied[N(3)]) == 50


def test_rejected_vote_from_unknown_node_does_not_break_a_leader() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.step(9, 1, RequestVote(1, 0, 0))
    assert net.node(1).role is Role.LEADER


def test_malformed_messages_are_rejected_not_raised() -> None:
    node = _node(2, [1, 1], hard_term=1)
    bad = [
        AppendEntries(1, 0, 0, [Entry(1, 3, 0, b"gap")], 0),
        AppendEntries(1, 0, 0, [Entry(5, 1, 0, b"future term")], 0),
        AppendEntries(1, 0, 0, [Entry(1, 1, 99, b"kind")], 0),
        AppendEntries(1, 0, 0, [Entry(1, 1, EntryKind.CONFIG, b"\xff\xfe")], 0),
        AppendEntries(1, -1, 0, [], 0),
        AppendEntries(-1, 0, 0, [], 0),
        "not a message",
    ]
    for message in bad:
        node.step(N(1), message, 0.0)
    rejected = node.ready().rejected
    assert len(rejected) == len(bad)
    assert node.last_index == 2
    node.step(N(2), AppendEntries(1, 0, 0, [], 0), 0.0)
    assert node.ready().rejected[0].reason == "message claims to come from this node"
