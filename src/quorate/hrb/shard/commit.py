"""Certified commits, applying them, and the shard's side of 2PC
(``docs/hrb.md`` sections 2 and 4).

Theory of operation
-------------------
- **Leader.** Raft counts only acknowledgements whose signatures verified
  (``ChainHooks``), and the replica keeps each follower's latest signed
  acknowledgement of the term (``_acks``). When Raft's commit index moves to
  c, the next ``ready()`` builds the commit certificate from the
  acknowledgements at or above c (the smallest indices first, so the links
  stay short), signs an announcement over it, and sends it ahead of Raft's
  messages in the same Ready (with the early messages when Raft sends those
  early: the same rule makes both safe, see ``RaftNode.ready``).
- **Follower.** An announcement from its leader is verified; a certificate
  that does not verify is ``forged_commit`` evidence. A valid one waits
  until the member holds the certified index; if the digest there matches,
  the index is certified. A certified digest this member does not hold,
  where its log is attested by the same leader, is a suspicion.
- **Applying.** Every role applies entries up to its certified index, in
  order, to the ``ShardStore``, and hands them to the runtime as
  ``Ready.committed``; the leader's certified index is its commit index. A
  restarted member takes its recovered commit index as certified: the gate
  never lets it exceed what a certificate covered (a leader's is
  quorum-acknowledged).
- **2PC.** A prepare record the store produced becomes a vote: in majority
  mode the leader signs it and sends the ``ShardVote``; in byzantine mode
  every member signs the outcome it computed (``PrepareAck``) and the leader
  sends the vote once ``bft_quorum(n)`` signatures agree with its own. A
  member re-sends its acknowledgements to each new leader; a new leader
  re-sends the votes of every prepared-undecided transaction and the
  requests of every undecided cross-shard transaction of its home shard,
  and every leader repeats them each ``vote_resend_s`` until the decision is
  applied (the core deduplicates by transaction id).

The functions taking ``self: ShardReplica`` are ``ShardReplica`` methods,
attached in ``quorate.hrb.shard.replica``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from quorate.core.quorum import bft_quorum
from quorate.core.ready import Entry
from quorate.errors import invariant
from quorate.hrb.messages import ShardProof, ShardVote, TxnRequest
from quorate.hrb.shard.chain import link_of
from quorate.hrb.shard.evidence import forged_commit_evidence
from quorate.hrb.shard.messages import CommitAnnouncement, PrepareAck
from quorate.hrb.shard.proofs import (
    CommitCertificate,
    ack_statement,
    commit_statement,
    shard_vote_bytes,
    verify_commit_certificate,
)
from quorate.hrb.shard.state import (
    CrossShardRequest,
    EpochLearned,
    NodeEvicted,
    PrepareRecord,
    Refusal,
    TxnOutcome,
    Violation,
)
from quorate.ids import NodeId
from quorate.raft.messages import AppendEntriesResponse, SignedAppendEntriesResponse

if TYPE_CHECKING:
    from quorate.hrb.shard.replica import ShardReplica

_encode = msgspec.msgpack.Encoder().encode
MAX_EARLY_ACKS = 1024
"""Prepare acknowledgements a leader keeps for transactions it has not applied yet."""


# ---------------------------------------------------------------- leader
def _record_ack(self: ShardReplica, sender: NodeId, m: AppendEntriesResponse) -> None:
    if type(m) is not SignedAppendEntriesResponse or not m.success:
        return
    raft = self._raft
    if not raft.is_leader or m.term != raft.term:
        return
    self._proof_answered.add(sender)
    held = self._acks.get(sender)
    if held is None or m.index > held[0]:
        self._acks[sender] = (m.index, m.signature)


def _certify_commit(self: ShardReplica) -> None:
    """Leader: certify Raft's new commit index and announce it."""
    raft = self._raft
    commit = raft.commit_index
    if not raft.is_leader or commit <= self._certified:
        return
    term = raft.term
    entry = raft.entry_at(commit)
    invariant(entry is not None and entry.term == term, f"the leader commits {commit}, not an entry of its term")
    assert entry is not None
    voters = raft.voters
    need = raft.commit_quorum - (1 if self.id in voters else 0)
    candidates = sorted(
        (index, int(member), signature)
        for member, (index, signature) in self._acks.items()
        if index >= commit and member in voters
    )
    invariant(
        len(candidates) >= need,
        f"Raft committed {commit} with {len(candidates)} signed acknowledgements, {need} needed",
    )
    chosen = candidates[:need]
    acks = [(member, index, signature) for index, member, signature in chosen]
    if self.id in voters:
        own = self._signer.sign(ack_statement(self._shard, term, commit, entry.digest))
        acks.append((int(self.id), commit, own))
    top = max((index for index, _, _ in chosen), default=commit)
    links = []
    for index in range(commit + 1, top + 1):
        later = raft.entry_at(index)
        assert later is not None
        links.append(link_of(later))
    certificate = CommitCertificate(term, commit, entry.digest, tuple(sorted(acks)), tuple(links))
    announcement = CommitAnnouncement(term, certificate, self._signer.sign(commit_statement(self._shard, certificate)))
    self._certified = commit
    self._announcement = announcement
    for member in self._others():
        self._front.append((member, announcement))


# ---------------------------------------------------------------- follower
def _on_announcement(self: ShardReplica, sender: NodeId, m: CommitAnnouncement) -> None:
    raft = self._raft
    if m.term != raft.term or (raft.leader_id != sender and self._proofs.get(m.term) != sender):
        self._reject(sender, m, f"a commit announcement from node {sender}, not the leader of term {raft.term}")
        return
    cert = m.certificate
    if not self._verifier.verify(sender, commit_statement(self._shard, cert), m.signature):
        self._reject(sender, m, "bad announcement signature")
        return
    if cert.term != m.term:
        self._reject(sender, m, "the certificate is of another term")
        return
    if cert.index <= self._certified:
        return
    reason = verify_commit_certificate(
        cert, shard=self._shard, voters=raft.voters, quorum=raft.commit_quorum, verifier=self._verifier
    )
    if reason is not None:
        self._reject(sender, m, f"forged commit: {reason}")
        self._convict(forged_commit_evidence(m, sender, self._shard), detector=True)
        return
    pending = self._pending_certificate
    if pending is None or cert.index > pending.index:
        self._pending_certificate = cert
    self._try_certify()


def _try_certify(self: ShardReplica) -> None:
    cert = self._pending_certificate
    if cert is None:
        return
    raft = self._raft
    held = raft.entry_at(cert.index)
    if held is None:
        return  # the entries are on their way
    if held.digest == cert.digest:
        self._certified = max(self._certified, cert.index)
        self._pending_certificate = None
        return
    attested = self._attested
    if attested is not None and attested.round == cert.term and attested.height >= cert.index:
        self._pending_certificate = None
        leader = raft.leader_id
        if leader is not None:
            self._suspect(cert.term, leader, "certified a digest this member does not hold")


# ---------------------------------------------------------------- applying
def _apply_certified(self: ShardReplica) -> None:
    """Apply every certified entry not yet applied; act on what they caused."""
    store = self._store
    raft = self._raft
    while store.applied_index < self._certified:
        entry = raft.entry_at(store.applied_index + 1)
        invariant(entry is not None, f"certified entry {store.applied_index + 1} is missing")
        assert entry is not None
        self._committed.append(entry)
        for effect in store.apply(entry):
            self._on_effect(effect, entry)


def _on_effect(self: ShardReplica, effect: object, entry: Entry) -> None:
    if isinstance(effect, TxnOutcome):
        self._results.append(effect)
    elif isinstance(effect, PrepareRecord):
        self._on_prepared(effect)
    elif isinstance(effect, CrossShardRequest):
        if self._raft.is_leader:
            self._send_txn_request(effect.txn.txn_id)
    elif isinstance(effect, NodeEvicted):
        self._on_evicted(NodeId(effect.node))
    elif isinstance(effect, EpochLearned):
        self._retry_future_certificates()
    elif isinstance(effect, Refusal):
        self._count("refused_entries")
    elif isinstance(effect, Violation):
        self.violations.append(effect)


def _on_prepared(self: ShardReplica, record: PrepareRecord) -> None:
    if record.txn_id not in self._store.prepared:
        return  # decided already (see ShardStore): nothing to vote
    if self._config.byzantine and not self._raft.is_leader:
        data = shard_vote_bytes(
            self._shard, record.txn_id, record.vote, record.reason, record.term, record.index, record.digest
        )
        ack = PrepareAck(
            record.txn_id, record.vote, record.reason, record.term, record.index, record.digest,
            self._signer.sign(data),
        )
        self._my_prepare_acks[record.txn_id] = ack
        leader = self._raft.leader_id
        if leader is not None and leader != self.id:
            self._msgs.append((leader, ack))
    if self._raft.is_leader:
        self._maybe_vote(record.txn_id)


def _on_prepare_ack(self: ShardReplica, sender: NodeId, m: PrepareAck) -> None:
    if not self._config.byzantine:
        self._reject(sender, m, "prepare acknowledgements are for byzantine mode")
        return
    data = shard_vote_bytes(self._shard, m.txn_id, m.vote, m.reason, m.term, m.index, m.digest)
    if not self._verifier.verify(sender, data, m.signature):
        self._reject(sender, m, "bad prepare acknowledgement signature")
        return
    record = self._store.prepared.get(m.txn_id)
    if record is not None and (record.vote, record.reason, record.term, record.index, record.digest) != (
        m.vote, m.reason, m.term, m.index, m.digest,
    ):
        self._reject(sender, m, "the acknowledged outcome is not this shard's")
        return
    if record is None and m.txn_id not in self._prepare_acks and len(self._prepare_acks) >= MAX_EARLY_ACKS:
        return
    self._prepare_acks.setdefault(m.txn_id, {})[int(sender)] = (data, m.signature)
    if self._raft.is_leader:
        self._maybe_vote(m.txn_id)


def _maybe_vote(self: ShardReplica, txn_id: bytes) -> None:
    """Leader: send the core this shard's vote on ``txn_id`` if its proof is complete."""
    record = self._store.prepared.get(txn_id)
    if record is None or not self._raft.is_leader:
        return
    signed = self._own_votes.get(txn_id)
    if signed is None or signed[0] != record.index:
        data = shard_vote_bytes(
            self._shard, txn_id, record.vote, record.reason, record.term, record.index, record.digest
        )
        signed = self._own_votes[txn_id] = (record.index, data, self._signer.sign(data))
    _, data, own = signed
    acks: dict[int, bytes] = {}
    if self._config.byzantine:
        acks = {m: sig for m, (signed, sig) in self._prepare_acks.get(txn_id, {}).items() if signed == data}
        acks[int(self.id)] = own
        if len(acks) < bft_quorum(len(self._raft.voters)):
            return
    proof = ShardProof(record.term, record.index, record.digest, int(self.id), own, acks)
    self._core_out.append(ShardVote(txn_id, self._shard, record.vote, record.reason, proof))
    self._vote_sent_at[txn_id] = self._now


def _send_txn_request(self: ShardReplica, txn_id: bytes) -> None:
    txn = self._store.requested.get(txn_id)
    if txn is None or not self._raft.is_leader:
        return
    signature = self._signer.sign(_encode(txn))
    self._core_out.append(TxnRequest(self._shard, int(self.id), self._raft.term, txn, signature))
    self._request_sent_at[txn_id] = self._now


def _resend_undecided(self: ShardReplica, now: float) -> None:
    """Leader: repeat votes and requests the core has not decided yet."""
    period = self._config.vote_resend_s
    store = self._store
    for txn_id, sent in list(self._vote_sent_at.items()):
        if txn_id not in store.prepared:
            del self._vote_sent_at[txn_id]
            self._prepare_acks.pop(txn_id, None)
            self._own_votes.pop(txn_id, None)
        elif now >= sent + period:
            self._maybe_vote(txn_id)
    for txn_id, sent in list(self._request_sent_at.items()):
        if txn_id not in store.requested:
            del self._request_sent_at[txn_id]
        elif now >= sent + period:
            self._send_txn_request(txn_id)


def _resend_prepare_acks(self: ShardReplica, leader: NodeId) -> None:
    """Follower: a new leader needs this member's signatures on undecided votes."""
    prepared = self._store.prepared
    for txn_id, ack in list(self._my_prepare_acks.items()):
        if txn_id not in prepared:
            del self._my_prepare_acks[txn_id]
        else:
            self._msgs.append((leader, ack))
