"""The seams of the Raft core: handler tables bound per instance, replication
hooks (hash chain, signatures, what was verified), the quorum rule,
``forget_leader`` and ``refuse_leader``, and constructor errors."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from tests.unit.raft.network import Network

from quorate.core.protocol import Accepted
from quorate.core.ready import ChainedEntry, Entry
from quorate.errors import ConfigError, LocalProtocolError
from quorate.ids import NodeId
from quorate.raft import (
    AppendEntries,
    AppendEntriesResponse,
    ByzantineQuorum,
    EntryKind,
    Heartbeat,
    PreVote,
    PreVoteResponse,
    RaftConfig,
    RaftHooks,
    RaftNode,
    RequestVote,
    RequestVoteResponse,
    Role,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
)
from quorate.raft.hooks import unsigned

N = NodeId
_encode = msgspec.msgpack.Encoder().encode


# ------------------------------------------------------------------ dispatch
class CountingNode(RaftNode):
    __slots__ = ("heartbeats",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.heartbeats = 0
        super().__init__(*args, **kwargs)

    def _on_heartbeat(self, sender: NodeId, m: Heartbeat) -> None:
        self.heartbeats += 1
        super()._on_heartbeat(sender, m)


def test_a_subclass_handler_is_the_one_called() -> None:
    node = CountingNode(N(2), [N(1), N(2), N(3)], config=RaftConfig(), rng=random.Random(0), now=0.0)
    node.step(N(1), Heartbeat(1, 0, 1), 0.1)
    assert node.heartbeats == 1 and node.leader_id == 1
    # A candidate that hears from a leader follows it, through the same table.
    node.campaign(5.0)
    assert node.role is Role.PRE_CANDIDATE
    node.step(N(3), Heartbeat(2, 0, 1), 5.1)
    assert node.heartbeats == 2 and node.leader_id == 3 and node.role is Role.FOLLOWER


# ------------------------------------------------------------------ hooks
class ChainHooks(RaftHooks):
    """A test hash chain and keyed-hash "signatures" (each node's key is its id)."""

    def __init__(self, me: NodeId) -> None:
        self.me = me
        self.seen: list[tuple[NodeId, Any]] = []

    @staticmethod
    def _key(node: NodeId) -> bytes:
        return b"key-%d" % node

    def entry_digest(self, previous_digest: bytes, entry: Entry) -> bytes:
        body = _encode(Entry(entry.term, entry.index, entry.kind, entry.data))
        return hashlib.sha256(previous_digest + body).digest()

    def check_chain(self, previous_digest: bytes, entries: Sequence[Entry]) -> str | None:
        digest = previous_digest
        for entry in entries:
            digest = self.entry_digest(digest, entry)
            if entry.digest != digest:
                return f"entry {entry.index} breaks the hash chain"
        return None

    def _sign(self, node: NodeId, message: Any) -> bytes:
        return hashlib.sha256(self._key(node) + _encode(message)).digest()

    def sign_append(self, message: AppendEntries) -> bytes:
        return self._sign(self.me, message)

    def sign_append_response(self, message: AppendEntriesResponse) -> bytes:
        return self._sign(self.me, message)

    def verify_append(self, sender: NodeId, message: AppendEntries) -> str | None:
        if message.signature != self._sign(sender, unsigned(message)):
            return "bad signature"
        return None

    def verify_append_response(self, sender: NodeId, message: AppendEntriesResponse) -> str | None:
        if message.signature != self._sign(sender, unsigned(message)):
            return "bad signature"
        return None

    def verified(self, sender: NodeId, message: Any) -> None:
        self.seen.append((sender, message))


def _watched(voters: int = 3, **kwargs: Any) -> tuple[Network, dict[NodeId, ChainHooks]]:
    hooks: dict[NodeId, ChainHooks] = {}

    def options(node: NodeId) -> dict[str, Any]:
        hooks[node] = ChainHooks(node)
        return {"hooks": hooks[node], **kwargs}

    return Network(range(1, voters + 1), node_options=options), hooks


def test_the_leader_chains_and_signs_and_followers_verify() -> None:
    net, hooks = _watched()
    leader = net.elect(1)
    for i in range(5):
        net.propose(1, b"cmd-%d" % i)
    net.deliver()
    assert leader.commit_index == 6  # the no-op and five commands
    previous = b""
    for index in range(1, 7):
        entry = leader.entry_at(index)
        assert isinstance(entry, ChainedEntry)
        assert entry.digest == hooks[N(1)].entry_digest(previous, entry)
        previous = entry.digest
        for follower in (2, 3):
            assert net.node(follower).entry_at(index) == entry  # digests replicated
    sent = [m for src, _, m in net.sent if src == 1 and isinstance(m, AppendEntries)]
    assert sent and all(type(m) is SignedAppendEntries for m in sent)
    acks = [m for src, _, m in net.sent if src != 1 and isinstance(m, AppendEntriesResponse)]
    assert acks and all(type(m) is SignedAppendEntriesResponse for m in acks)
    # Both sides report what they verified.
    assert any(type(m) is SignedAppendEntries for _, m in hooks[N(2)].seen)
    assert any(type(m) is SignedAppendEntriesResponse for _, m in hooks[N(1)].seen)
    assert not net.rejected


def _signed_append(signer: ChainHooks, prev: int, prev_term: int, entries: list[ChainedEntry], term: int) -> SignedAppendEntries:
    plain = AppendEntries(term, prev, prev_term, list(entries), 0)
    return SignedAppendEntries(term, prev, prev_term, list(entries), 0, signer.sign_append(plain))


def _chained(hooks: ChainHooks, previous: bytes, term: int, index: int, data: bytes) -> ChainedEntry:
    entry = Entry(term, index, EntryKind.NORMAL, data)
    return ChainedEntry(term, index, EntryKind.NORMAL, data, hooks.entry_digest(previous, entry))


def _follower_with_hooks() -> tuple[RaftNode, ChainHooks, ChainHooks]:
    mine = ChainHooks(N(2))
    leader = ChainHooks(N(1))
    node = RaftNode(N(2), [N(1), N(2), N(3)], config=RaftConfig(), rng=random.Random(0), now=0.0, hooks=mine)
    return node, mine, leader


def test_a_batch_that_breaks_the_chain_is_refused() -> None:
    node, _, leader = _follower_with_hooks()
    first = _chained(leader, b"", 1, 1, b"a")
    node.step(N(1), _signed_append(leader, 0, 0, [first], 1), 0.1)
    assert node.last_index == 1 and not node.ready().rejected
    # Entry 3 claims to follow a different entry 2: refused, nothing stored, no ack.
    second = _chained(leader, first.digest, 1, 2, b"b")
    forged = _chained(leader, b"another history", 1, 3, b"c")
    node.step(N(1), _signed_append(leader, 1, 1, [second, forged], 1), 0.2)
    ready = node.ready()
    assert node.last_index == 1
    assert [r.reason for r in ready.rejected] == ["entry 3 breaks the hash chain"]
    assert not any(isinstance(m, AppendEntriesResponse) for _, m in ready.messages + ready.early_messages)
    # The same entries chained correctly are accepted.
    third = _chained(leader, second.digest, 1, 3, b"c")
    node.step(N(1), _signed_append(leader, 1, 1, [second, third], 1), 0.3)
    assert node.last_index == 3 and not node.ready().rejected


def test_a_first_entry_that_does_not_chain_from_ours_is_a_log_mismatch() -> None:
    # Our entry 1 has the leader's term but another digest (a leader of that
    # term equivocated): the logs do not match at prev, whatever the terms
    # say. The follower answers as for a term mismatch, hinting its commit
    # index, so the leader backs up instead of retrying forever.
    node, _, leader = _follower_with_hooks()
    first = _chained(leader, b"", 1, 1, b"a")
    node.step(N(1), _signed_append(leader, 0, 0, [first], 1), 0.1)
    node.ready()
    other_first = _chained(leader, b"", 1, 1, b"a'")
    follows_other = _chained(leader, other_first.digest, 1, 2, b"b")
    node.step(N(1), _signed_append(leader, 1, 1, [follows_other], 1), 0.2)
    ready = node.ready()
    assert node.last_index == 1 and not ready.rejected
    nacks = [m for _, m in ready.messages if isinstance(m, AppendEntriesResponse)]
    assert [(m.success, m.index, m.hint_index) for m in nacks] == [(False, 1, 0)]


class ReplacingHooks(ChainHooks):
    """Hooks that let a later history replace entries of term 1."""

    def replace_entry(self, held: Entry, entry: Entry) -> bool:
        return held.term == 1


def test_replace_entry_lets_another_history_replace_a_same_term_entry() -> None:
    mine = ReplacingHooks(N(2))
    leader = ChainHooks(N(1))
    node = RaftNode(N(2), [N(1), N(2), N(3)], config=RaftConfig(), rng=random.Random(0), now=0.0, hooks=mine)
    one = _chained(leader, b"", 1, 1, b"a")
    two = _chained(leader, one.digest, 1, 2, b"b")
    node.step(N(1), _signed_append(leader, 0, 0, [one, two], 1), 0.1)
    node.ready()
    # A leader of term 2 carries another entry 2 of term 1 (the term-1 leader
    # equivocated): the hooks allow it, the follower stores it and acknowledges.
    other = _chained(leader, one.digest, 1, 2, b"b'")
    node.step(N(3), _signed_append(ChainHooks(N(3)), 1, 1, [other], 2), 0.2)
    ready = node.ready()
    assert node.entry_at(2) == other and not ready.rejected
    assert any(isinstance(m, AppendEntriesResponse) and m.success for _, m in ready.messages)
    assert [e.index for e in ready.entries] == [2]  # persisted, replacing the stored entry 2


class KeepingHooks(ChainHooks):
    """Hooks that keep only ``keep`` entries when this node wins an election."""

    def __init__(self, me: NodeId, keep: int) -> None:
        super().__init__(me)
        self.keep = keep

    def kept_on_leading(self, last_index: int) -> int:
        return self.keep


@pytest.mark.parametrize(("keep", "kept"), [(2, 2), (0, 1)])
def test_kept_on_leading_drops_an_uncommitted_suffix_before_the_new_term_starts(keep: int, kept: int) -> None:
    """Entries 1..4 of term 1, entry 1 committed: the hooks keep ``keep``
    entries (never fewer than the committed one) when the node wins term 2,
    and the term's no-op follows them, persisted as a rewrite from there."""
    mine = KeepingHooks(N(2), keep)
    leader = ChainHooks(N(1))
    node = RaftNode(N(2), [N(1), N(2), N(3)], config=RaftConfig(pre_vote=False), rng=random.Random(0), now=0.0, hooks=mine)
    entries, digest = [], b""
    for index in range(1, 5):
        entries.append(_chained(leader, digest, 1, index, b"e%d" % index))
        digest = entries[-1].digest
    plain = AppendEntries(1, 0, 0, list(entries), 1)
    node.step(N(1), SignedAppendEntries(1, 0, 0, list(entries), 1, leader.sign_append(plain)), 0.1)
    node.ready()
    assert node.last_index == 4 and node.commit_index == 1
    node.campaign(5.0)
    node.step(N(3), RequestVoteResponse(node.term, True), 5.1)
    assert node.role is Role.LEADER
    ready = node.ready()
    assert node.last_index == kept + 1 and node.entry_at(kept + 1).term == 2  # type: ignore[union-attr]
    assert [e.index for e in ready.entries] == [kept + 1]
    assert node.entry_at(kept + 1).digest == mine.entry_digest(node.entry_at(kept).digest, node.entry_at(kept + 1))  # type: ignore[union-attr]


def test_two_digests_for_one_term_and_index_are_refused_and_both_reported() -> None:
    node, mine, leader = _follower_with_hooks()
    one = _chained(leader, b"", 1, 1, b"a")
    other = _chained(leader, b"", 1, 1, b"b")  # same (term, index), another command
    node.step(N(1), _signed_append(leader, 0, 0, [one], 1), 0.1)
    node.step(N(1), _signed_append(leader, 0, 0, [other], 1), 0.2)
    ready = node.ready()
    assert node.entry_at(1) == one
    assert any("equivocated" in r.reason for r in ready.rejected)
    # The caller saw both signed statements: that is the evidence.
    digests = {m.entries[0].digest for _, m in mine.seen if isinstance(m, AppendEntries)}
    assert digests == {one.digest, other.digest}


def test_a_bad_signature_is_refused_both_ways() -> None:
    node, mine, leader = _follower_with_hooks()
    entry = _chained(leader, b"", 1, 1, b"a")
    good = _signed_append(leader, 0, 0, [entry], 1)
    tampered = msgspec.structs.replace(good, signature=bytes(32))
    node.step(N(1), tampered, 0.1)
    assert node.last_index == 0 and [r.reason for r in node.ready().rejected] == ["bad signature"]
    assert mine.seen == []  # nothing verified, nothing reported
    # An unsigned AppendEntries is refused by these hooks too.
    node.step(N(1), AppendEntries(1, 0, 0, [entry], 0), 0.2)
    assert node.last_index == 0 and node.ready().rejected
    # A leader refuses an acknowledgement whose signature does not verify.
    net, _ = _watched()
    net.elect(1)
    net.propose(1, b"x")
    leader_node = net.node(1)
    before = leader_node.progress(N(2))
    assert before is not None
    match = before.match
    forged_ack = SignedAppendEntriesResponse(leader_node.term, leader_node.last_index, True, 0, 0, b"forged")
    net.step(2, 1, forged_ack)
    assert before.match == match
    assert any(r.reason == "bad signature" for _, r in net.rejected)


# ------------------------------------------------------------------ quorum rule
def test_byzantine_quorum_commits_only_with_2f_plus_1_acks() -> None:
    # n = 7, f = 2: a majority is 4, a Byzantine quorum 5.
    net = Network(range(1, 8), node_options=lambda node: {"quorum": ByzantineQuorum()})
    leader = net.elect(1)
    assert leader.is_leader and leader.commit_quorum == 5 and leader.election_quorum == 5
    committed = leader.commit_index
    for silent in (5, 6, 7):
        net.isolate(silent)
    outcome = net.propose(1, b"x")
    assert isinstance(outcome, Accepted)
    net.deliver()
    assert leader.commit_index == committed  # leader + 3 acks = 4 < 5
    net.heal()
    net.blocked.update({(N(1), N(6)), (N(6), N(1)), (N(1), N(7)), (N(7), N(1))})
    net.advance(0.3)
    assert leader.commit_index == outcome.index  # leader + 4 acks = 5


def test_the_majority_rule_commits_with_a_majority_where_byzantine_does_not() -> None:
    net = Network(range(1, 8))
    leader = net.elect(1)
    for silent in (5, 6, 7):
        net.isolate(silent)
    outcome = net.propose(1, b"x")
    net.deliver()
    assert isinstance(outcome, Accepted) and leader.commit_index == outcome.index


def test_a_byzantine_election_needs_2f_plus_1_votes() -> None:
    net = Network(range(1, 8), node_options=lambda node: {"quorum": ByzantineQuorum()})
    for silent in (5, 6, 7):
        net.isolate(silent)
    net.campaign(1)
    net.deliver()
    assert not net.node(1).is_leader  # 4 votes of 7
    net.heal()
    net.isolate(7)
    net.advance(5.0)
    assert net.leader() is not None


class NonIntersecting:
    def commit_quorum(self, voters: int) -> int:
        return 1

    def election_quorum(self, voters: int) -> int:
        return 1


def test_a_quorum_rule_whose_quorums_do_not_intersect_is_refused() -> None:
    with pytest.raises(ConfigError, match="intersect"):
        RaftNode(N(1), [N(1), N(2), N(3)], config=RaftConfig(), rng=random.Random(0), now=0.0, quorum=NonIntersecting())


# ------------------------------------------------------------------ forget / refuse
def _sticky_follower(read_mode: str = "read_index") -> RaftNode:
    node = RaftNode(
        N(2), [N(1), N(2), N(3)], config=RaftConfig(read_mode=read_mode), rng=random.Random(0), now=0.0
    )
    node.step(N(1), Heartbeat(1, 0, 1), 0.1)
    node.ready()
    return node


def _pre_vote_granted(node: RaftNode, now: float) -> bool:
    node.step(N(3), PreVote(2, 0, 0), now)
    return any(isinstance(m, PreVoteResponse) and m.granted for _, m in node.ready().messages)


def test_forget_leader_lets_a_follower_vote_against_its_leader() -> None:
    node = _sticky_follower()
    assert not _pre_vote_granted(node, 0.2)  # leader stickiness
    node.forget_leader(0.3)
    assert node.leader_id is None
    assert _pre_vote_granted(node, 0.4)
    # Reference: etcd-io/raft ForgetLeader; Raft thesis §4.2.3 (stickiness)


def test_forget_leader_keeps_the_lease_promise() -> None:
    node = _sticky_follower(read_mode="lease")
    node.forget_leader(0.3)
    assert node.leader_id is None and not _pre_vote_granted(node, 0.4)
    assert _pre_vote_granted(node, 1.2)  # T after the last heartbeat


def test_refuse_leader_refuses_votes_and_leadership() -> None:
    node = _sticky_follower()
    node.refuse_leader(N(1), 0.2)
    assert node.leader_id is None and node.refused_leaders == {N(1)}
    node.step(N(1), Heartbeat(1, 0, 2), 0.3)
    node.step(N(1), RequestVote(2, 5, 1), 0.4)
    ready = node.ready()
    assert node.leader_id is None and node.term == 1 and not ready.messages
    assert [r.reason for r in ready.rejected] == ["this node refuses the sender as leader"] * 2
    assert _pre_vote_granted(node, 0.5)  # another candidate gets the vote
    node.allow_leader(N(1))
    node.step(N(1), Heartbeat(1, 0, 3), 0.6)
    assert node.leader_id == 1
    with pytest.raises(LocalProtocolError):
        node.refuse_leader(N(2), 0.7)


def test_a_deposed_leader_is_replaced() -> None:
    net = Network([1, 2, 3], config=RaftConfig(pre_vote=True, check_quorum=True))
    net.elect(1)
    net.advance(0.5)
    for follower in (2, 3):
        net.node(follower).refuse_leader(N(1), net.now)
    net.advance(4.0)
    leader = net.leader()
    assert leader is not None and leader.id != 1
    assert net.node(1).role is Role.FOLLOWER  # it heard of the new term


# ------------------------------------------------------------------ constructor
def test_bad_constructor_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="both voters and learners"):
        RaftNode(N(1), [N(1), N(2)], config=RaftConfig(), rng=random.Random(0), now=0.0, learners=[N(2)])

    class NotCallable(RaftHooks):
        sign_append = 5  # type: ignore[assignment]

    with pytest.raises(ConfigError, match="sign_append"):
        RaftNode(N(1), [N(1)], config=RaftConfig(), rng=random.Random(0), now=0.0, hooks=NotCallable())
