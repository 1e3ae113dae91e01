"""Byzantine shard members, for fault-injection tests and the simulator.

Theory of operation: ``ByzantineShardReplica`` wraps an honest
``ShardReplica`` and rewrites what it says (as ``pbft/byzantine.py`` does), so
each behaviour keeps the honest core's bookkeeping and misbehaves on the
wire, holding only its own signing key:

- ``equivocating-leader``: as leader, sends the second half of its followers
  another history: every client transaction it sends them is altered (its
  ``seq`` moves), the chain is recomputed from the point they diverge and
  signed, and its answers to their challenges name the altered digests. The
  halves' relayed heads disagree: the watchers' equivocation evidence.
- ``censoring-leader``: as leader, drops the client requests forwarded to it
  and appends none of the transactions proposed to it directly (answering
  ``Queued`` as if it would): the watchers' inclusion bound.
- ``forging-leader``: as leader, announces its last index as committed with
  a certificate of its own acknowledgement only, signed: ``forged_commit``
  evidence.
- ``slow-leader``: as leader, holds every AppendEntries that carries entries
  and every challenge answer for ``SLOW_FRACTION`` of an election timeout
  (heartbeats still flow, so Raft's own timeouts never fire): late answers
  and the inclusion bound.
- ``silent-leader``: as leader, stalls: it keeps sending heartbeats (so
  Raft's election timeout never fires and followers stay with it) but sends
  no entries, no commit announcements and no answers to challenges:
  unanswered challenges.
- ``lying-follower``: acknowledges every AppendEntries without storing its
  entries (a signed acknowledgement of the leader's digest, claiming to be
  locked on everything it acknowledges), keeps suspecting
  its leader, and tries to churn leaders each election timeout (a
  ``RequestVote`` for the next term that claims a leadership transfer and
  the longest log, and a heartbeat claiming that term). In majority mode,
  enough of them make the leader commit what only they and it "hold".

A wrapper never passes on evidence against itself, nor asks the core to
evict itself.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from quorate.core.evidence import sign_statement
from quorate.core.protocol import ProposeOutcome, Queued
from quorate.core.ready import ChainedEntry, Ready
from quorate.errors import ConfigError
from quorate.hrb.messages import RemovalProposal
from quorate.hrb.shard.chain import entry_digest
from quorate.hrb.shard.evidence import evidence_offender
from quorate.hrb.shard.messages import (
    CommitAnnouncement,
    EvidenceNotice,
    ForwardedRequest,
    HeadAnswer,
)
from quorate.hrb.shard.proofs import CommitCertificate, ack_statement, commit_statement
from quorate.hrb.shard.replica import CoreMessage, ShardReplica
from quorate.hrb.shard.state import (
    IntraTxn,
    TxnOutcome,
    TxnRequested,
    decode_command,
    encode_command,
)
from quorate.ids import NodeId
from quorate.raft.messages import (
    AppendEntries,
    Heartbeat,
    RequestVote,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
)

__all__ = ["BEHAVIOURS", "ByzantineShardReplica"]

BEHAVIOURS = (
    "equivocating-leader",
    "censoring-leader",
    "forging-leader",
    "slow-leader",
    "silent-leader",
    "lying-follower",
)
SLOW_FRACTION = 0.9
"""``slow-leader`` holds its entries and answers this much of an election timeout."""
SEQ_SHIFT = 1 << 40
"""How far ``equivocating-leader`` moves an altered transaction's ``seq``."""
CHURN_LOG_INDEX = 1 << 40
"""The log length a churning ``lying-follower`` claims in its vote requests."""


class ByzantineShardReplica:
    """An honest shard member made to misbehave in one of ``BEHAVIOURS``."""

    def __init__(self, inner: ShardReplica, behaviour: str, *, rng: random.Random) -> None:
        if behaviour not in BEHAVIOURS:
            raise ConfigError(f"unknown shard behaviour {behaviour!r}; choose one of {', '.join(BEHAVIOURS)}")
        self.inner = inner
        self.behaviour = behaviour
        self._rng = rng
        self._now = 0.0
        self._extra: list[tuple[NodeId, Any]] = []
        self._held: list[tuple[float, NodeId, Any]] = []
        self._alt: dict[int, bytes] = {}
        self._alt_term = -1
        self._forged_through = 0
        self._claimed: dict[int, bytes] = {}
        self._next_churn_at = 0.0
        self._delay_s = SLOW_FRACTION * inner.config.raft.election_timeout_s

    @property
    def id(self) -> NodeId:
        return self.inner.id

    # ------------------------------------------------------------ inputs
    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self._now = now
        inner = self.inner
        b = self.behaviour
        if b == "censoring-leader" and inner.is_leader and type(message) is ForwardedRequest:
            if not message.certificate:
                return  # a client's request: dropped
        elif (
            b == "lying-follower"
            and type(message) is SignedAppendEntries
            and not inner.is_leader
            and self._lie_about(sender, message)
        ):
            return
        inner.step(sender, message, now)

    def tick(self, now: float) -> None:
        self._now = now
        self.inner.tick(now)
        if self.behaviour == "lying-follower":
            self._churn(now)

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        self._now = now
        if self.behaviour == "censoring-leader" and self.inner.is_leader:
            return Queued(self.inner.term)
        return self.inner.propose(command, now)

    def has_ready(self) -> bool:
        return bool(self._extra) or any(h[0] <= self._now for h in self._held) or self.inner.has_ready()

    def ready(self) -> Ready:
        inner = self.inner
        ready = inner.ready()
        ready.messages = self._rewrite_all(ready.messages)
        ready.early_messages = self._rewrite_all(ready.early_messages)
        if self.behaviour == "forging-leader" and inner.is_leader:
            self._forge()
        ready.messages.extend(self._extra)
        self._extra = []
        if self._held:
            due = [h for h in self._held if h[0] <= self._now]
            self._held = [h for h in self._held if h[0] > self._now]
            ready.messages.extend((to, m) for _, to, m in due)
        ready.wake_at = self._wake(ready.wake_at)
        return ready

    def advance(self, ready: Ready) -> None:
        self.inner.advance(ready)

    def wake_at(self) -> float | None:
        return self._wake(self.inner.wake_at())

    def take_core_messages(self) -> list[CoreMessage]:
        me = self.id
        return [
            m
            for m in self.inner.take_core_messages()
            if not (isinstance(m, RemovalProposal) and evidence_offender(m.evidence) == me)
        ]

    def take_results(self) -> list[TxnOutcome]:
        return self.inner.take_results()

    def _wake(self, wake: float | None) -> float | None:
        times = [h[0] for h in self._held]
        if self.behaviour == "lying-follower":
            times.append(self._next_churn_at)
        if wake is not None:
            times.append(wake)
        return min(times) if times else None

    # ------------------------------------------------------------ rewriting
    def _rewrite_all(self, messages: list[tuple[NodeId, Any]]) -> list[tuple[NodeId, Any]]:
        out: list[tuple[NodeId, Any]] = []
        for to, message in messages:
            out.extend(self._rewrite(to, message))
        return out

    def _rewrite(self, to: NodeId, message: Any) -> list[tuple[NodeId, Any]]:
        if type(message) is EvidenceNotice and evidence_offender(message.evidence) == self.id:
            return []
        b = self.behaviour
        inner = self.inner
        if b == "equivocating-leader" and inner.is_leader and self._second_half(to):
            return self._equivocate(to, message)
        if b == "slow-leader" and inner.is_leader and (
            (type(message) is SignedAppendEntries and message.entries) or type(message) is HeadAnswer
        ):
            self._held.append((self._now + self._delay_s, to, message))
            return []
        if b == "silent-leader" and inner.is_leader and (
            (type(message) is SignedAppendEntries and message.entries)
            or type(message) in (HeadAnswer, CommitAnnouncement)
        ):
            return []
        return [(to, message)]

    def _second_half(self, to: NodeId) -> bool:
        others = [m for m in sorted(self.inner.raft.members) if m != self.id]
        return to in others[(len(others) + 1) // 2 :]

    # ------------------------------------------------------------ equivocation
    def _alt_digest(self, index: int) -> bytes:
        if index in self._alt:
            return self._alt[index]
        if index == 0:
            return b""
        entry = self.inner.raft.entry_at(index)
        return b"" if entry is None else entry.digest

    def _equivocate(self, to: NodeId, message: Any) -> list[tuple[NodeId, Any]]:
        inner = self.inner
        term = inner.term
        if self._alt_term != term:
            self._alt = {}
            self._alt_term = term
        if type(message) is SignedAppendEntries and message.entries:
            digest = self._alt_digest(message.prev_log_index)
            entries: list[Any] = []
            for entry in message.entries:
                data = _altered(entry.data) if entry.kind == 0 else entry.data
                digest = entry_digest(digest, entry.term, entry.index, entry.kind, data)
                self._alt[entry.index] = digest
                entries.append(ChainedEntry(entry.term, entry.index, entry.kind, data, digest))
            plain = AppendEntries(message.term, message.prev_log_index, message.prev_log_term, entries, message.leader_commit)
            signature = inner.signer.sign(inner.hooks.append_statement(plain))
            forged = SignedAppendEntries(
                message.term, message.prev_log_index, message.prev_log_term, entries, message.leader_commit, signature
            )
            return [(to, forged)]
        if type(message) is HeadAnswer:
            head = message.head
            digest = self._alt_digest(head.height)
            if digest != head.payload:
                altered = sign_statement(inner.signer, head.kind, head.height, head.round, digest)
                return [(to, HeadAnswer(message.nonce, altered, message.commit))]
        if type(message) is CommitAnnouncement:
            return []  # its certificate names digests the second half does not hold
        return [(to, message)]

    # ------------------------------------------------------------ forging
    def _forge(self) -> None:
        inner = self.inner
        raft = inner.raft
        last = raft.last_index
        if last <= self._forged_through or last <= inner.lock_index:
            return
        entry = raft.entry_at(last)
        if entry is None or entry.term != raft.term:
            return
        self._forged_through = last
        own = inner.signer.sign(ack_statement(inner.shard, raft.term, last, entry.digest, last))
        cert = CommitCertificate(raft.term, last, entry.digest, ((int(self.id), last, last, own),), ())
        announcement = CommitAnnouncement(
            raft.term, int(self.id), cert, inner.signer.sign(commit_statement(inner.shard, cert))
        )
        for member in sorted(raft.members):
            if member != self.id:
                self._extra.append((member, announcement))

    # ------------------------------------------------------------ lying
    def _lie_about(self, sender: NodeId, m: SignedAppendEntries) -> bool:
        """Acknowledge ``m`` without storing it. False: let the honest core handle it."""
        if m.entries:
            for entry in m.entries:
                self._claimed[entry.index] = entry.digest
            index, digest = m.entries[-1].index, m.entries[-1].digest
        elif m.prev_log_index in self._claimed:
            index, digest = m.prev_log_index, self._claimed[m.prev_log_index]
        else:
            return False
        # It claims to be locked on all it acknowledges: the most a liar can
        # claim (a lock above the acknowledged index does not verify).
        signature = self.inner.hooks.sign_ack(m.term, index, digest, index)
        self._extra.append((sender, SignedAppendEntriesResponse(m.term, index, True, 0, 0, signature)))
        return True

    def _churn(self, now: float) -> None:
        if now < self._next_churn_at:
            return
        inner = self.inner
        timeout = inner.config.raft.election_timeout_s
        self._next_churn_at = now + timeout
        leader = inner.leader_id
        term = inner.term
        if leader is not None and leader != self.id:
            inner._suspect(term, leader, "slow")
        for member in sorted(inner.raft.members):
            if member == self.id:
                continue
            self._extra.append((member, RequestVote(term + 1, CHURN_LOG_INDEX, term, True)))
            self._extra.append((member, Heartbeat(term + 1, 0, 1)))


def _altered(data: bytes) -> bytes:
    """The same client transaction with another ``seq`` (still a valid entry)."""
    try:
        command = decode_command(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return data
    if isinstance(command, IntraTxn | TxnRequested):
        txn = msgspec.structs.replace(command.txn, seq=command.txn.seq + SEQ_SHIFT)
        return encode_command(type(command)(txn))
    return data

