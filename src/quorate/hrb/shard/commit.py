"""Locks, commits, applying them, and the shard's side of 2PC
(``docs/hrb.md`` sections 2 and 4).

Theory of operation
-------------------
Tangaroa (Copeland & Zhong 2014) has every member broadcast its
acknowledgements, so all see the same quorum; here the leader collects them
and shows a certificate (linear, not quadratic), and that choice is why a
certificate alone must not let a member apply an entry. If one member
applied what a Byzantine leader certified and sent to it alone, the holders
of that entry would not know it mattered, and after the leader's deposition
a new leader with another history (an equivocator's other half) could be
elected and overwrite it everywhere else. So commitment takes two steps, as
in PBFT's prepared/committed or HotStuff's locked/committed:

- **Lock.** A member that holds a valid certificate for index c (and the
  entry it names) is locked on c. Its Raft commit index follows its lock
  (the gate lowers every ``leader_commit`` to it), so Raft itself never
  truncates a locked entry, and the lock is made durable before any
  acknowledgement that reports it leaves (``Ready.must_sync``).
- **Commit.** Acknowledgements report the sender's lock in the current term
  (``ack`` statements, ``quorate.hrb.shard.chain``). The leader's next
  certificate therefore proves that ``commit_quorum`` members are locked on
  ``committed_index``; members apply up to that index, never beyond.
- **Elections respect locks.** A campaigning member sends its lock
  certificate (``Candidacy``); a voter refuses a candidate locked lower than
  itself (by term, then index). If an entry was applied anywhere, a commit
  quorum is locked on it; every election quorum shares an honest member
  with it (byzantine mode: 2f + 1 and 2f + 1 of 3f + 1; majority mode: the
  followers are honest), so every later leader holds it. Entries above a
  member's lock, from a term older than its current leader's and not
  acknowledged in the current term, may be replaced by the current
  leader's history (``RaftHooks.replace_entry``): that is how the two halves
  of an equivocator's shard converge after its deposition.
- **A convicted leader's uncertified entries die with it.** A member that
  wins an election first drops the entries above its lock that terms of
  leaders it convicted wrote (``RaftHooks.kept_on_leading``), so it does
  not commit them in its own term. They are what the offender made up (an
  equivocator's altered transactions: a client request with another
  ``seq`` would end that client's session, every later request of it
  refused as older than one applied), no certificate covers them, and the
  lock rule above keeps every applied entry at or below the new leader's
  lock; clients send what was dropped again. Raft keeps its newest
  configuration entry (membership is not rolled back).

The leader builds its certificate in ``ready()`` whenever Raft's commit
index or the quorum's locks moved: the acknowledgements at or above c with
the highest locks, its own acknowledgement (locked on c), and the chain
links from c + 1 to the largest acknowledged index; it signs an
announcement over it and sends it ahead of Raft's messages in the same
Ready (with the early messages when Raft sends those early: the same rule
makes both safe, see ``RaftNode.ready``). A follower verifies an
announcement of its leader; a certificate that does not verify is
``forged_commit`` evidence if it is forged for every configuration of the
shard (``certificate_forgery``: one merely short of this member's voters may
count a configuration change still on its way here, so it is refused, not
reported); a valid one waits until the member holds the
certified index, then locks and raises its commit bound. A certified digest
this member does not hold where its log is attested by the same leader is a
suspicion. A restarted member keeps its lock (its recovered commit index)
and applies nothing until an announcement proves a commit again.

**2PC.** A prepare record the store produced becomes a vote: in majority
mode the leader signs it and sends the ``ShardVote``; in byzantine mode
every member signs the outcome it computed (``PrepareAck``) and the leader
sends the vote once ``bft_quorum(n)`` signatures agree with its own. A member
re-sends its acknowledgements to each new leader; a new leader re-sends the
votes of every prepared-undecided transaction and the requests of every
undecided cross-shard transaction of its home shard, and every leader
repeats them each ``vote_resend_s`` until the decision is applied (the core
deduplicates by transaction id).

The functions taking ``self: ShardReplica`` are ``ShardReplica`` methods,
attached in ``quorate.hrb.shard.replica``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quorate.core.quorum import bft_quorum
from quorate.core.ready import Entry
from quorate.errors import invariant
from quorate.hrb.messages import ShardProof, ShardVote, TxnRequest, txn_request_bytes
from quorate.hrb.shard.chain import ack_lock, link_of
from quorate.hrb.shard.evidence import forged_commit_evidence
from quorate.hrb.shard.messages import CommitAnnouncement, PrepareAck
from quorate.hrb.shard.proofs import (
    CommitCertificate,
    ack_statement,
    certificate_forgery,
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

ACK_LOCK_BYTES = 8
"""The lock in front of a signed acknowledgement's signature."""
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
    self._answered_at[sender] = self._now
    lock = ack_lock(m)
    assert lock is not None  # the hooks verified the signature's layout
    held = self._acks.get(sender)
    if held is None or m.index > held[0] or (m.index == held[0] and lock > held[1]):
        self._acks[sender] = (m.index, lock, m.signature[ACK_LOCK_BYTES:])
        if lock > self._announced[1]:
            self._announce_due = True


def _certify_commit(self: ShardReplica) -> None:
    """Leader: certify Raft's commit index and the quorum's locks; announce."""
    raft = self._raft
    if not raft.is_leader:
        return
    self._announce_due = False
    commit = raft.commit_index
    term = raft.term
    entry = raft.entry_at(commit)
    if entry is None or entry.term != term:
        return  # nothing of this term committed yet (the term's first entry is on its way)
    voters = raft.voters
    quorum = raft.commit_quorum
    me = self.id
    need = quorum - (1 if me in voters else 0)
    candidates = sorted(
        (-lock, index, int(member), signature)
        for member, (index, lock, signature) in self._acks.items()
        if index >= commit and member in voters
    )
    if len(candidates) < need:
        # Raft counts a configuration from the moment its entry is appended:
        # an index it committed under the previous voters may lack a quorum
        # of the new ones (a removed member's acknowledgement no longer
        # counts). Wait for theirs; anything else is a bug.
        departed = [m for m, (index, _, _) in self._acks.items() if index >= commit and m not in voters]
        invariant(
            bool(departed),
            f"Raft committed {commit} with {len(candidates)} signed acknowledgements, {need} needed",
        )
        self._count("certificates_awaiting_new_voters")
        return
    chosen = candidates[:need]
    acks = [(member, index, -negative_lock, signature) for negative_lock, index, member, signature in chosen]
    if me in voters:
        own = self._signer.sign(ack_statement(self._shard, term, commit, entry.digest, commit))
        acks.append((int(me), commit, commit, own))
    top = max((index for _, index, _, _ in acks), default=commit)
    links = []
    for index in range(commit + 1, top + 1):
        later = raft.entry_at(index)
        assert later is not None
        links.append(link_of(later))
    certificate = CommitCertificate(term, commit, entry.digest, tuple(sorted(acks)), tuple(links))
    committed = certificate.committed_index(quorum)
    announced_commit, announced_lock = self._announced
    if commit <= announced_commit and committed <= announced_lock:
        return
    signature = self._signer.sign(commit_statement(self._shard, certificate))
    announcement = CommitAnnouncement(term, int(me), certificate, signature)
    self._announced = (commit, committed)
    self._lock = max(self._lock, commit)
    self._lock_certificate = certificate
    self._commit_bound = max(self._commit_bound, committed)
    self._announcement = announcement
    for member in self._others():
        self._front.append((member, announcement))


def _announcement_due(self: ShardReplica) -> bool:
    """Leader: ``_certify_commit`` has something new to announce. Only an
    entry of the leader's own term can be certified (a new leader's commit
    index stays at its predecessor's until its first entry commits)."""
    raft = self._raft
    if not raft.is_leader or raft.term_at(raft.commit_index) != raft.term:
        return False
    return self._announce_due or raft.commit_index > self._announced[0]


# ---------------------------------------------------------------- follower
def _on_announcement(self: ShardReplica, sender: NodeId, m: CommitAnnouncement) -> None:
    raft = self._raft
    if m.leader != int(sender) or m.term != raft.term or (
        raft.leader_id != sender and self._proofs.get(m.term) != sender
    ):
        self._reject(sender, m, f"a commit announcement from node {sender}, not the leader of term {raft.term}")
        return
    cert = m.certificate
    if not self._verifier.verify(sender, commit_statement(self._shard, cert), m.signature):
        self._reject(sender, m, "bad announcement signature")
        return
    if cert.term != m.term:
        self._reject(sender, m, "the certificate is of another term")
        return
    quorum = raft.commit_quorum
    if cert.index <= self._lock and cert.committed_index(quorum) <= self._commit_bound:
        return  # nothing new
    reason = verify_commit_certificate(
        cert, shard=self._shard, voters=raft.voters, quorum=quorum, verifier=self._verifier
    )
    if reason is not None:
        forgery = certificate_forgery(cert, shard=self._shard, voters=raft.voters, verifier=self._verifier)
        if forgery is None:
            # Valid for other voters, e.g. a configuration change this member
            # has not received yet: not proof, and not a lock either.
            self._reject(sender, m, f"insufficient certificate for this member's voters: {reason}")
            return
        self._reject(sender, m, f"forged commit: {forgery}")
        self._convict(forged_commit_evidence(m, sender, self._shard), detector=True)
        return
    pending = self._pending_certificate
    if pending is None or (cert.index, cert.committed_index(quorum)) >= (
        pending.index, pending.committed_index(quorum),
    ):
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
    self._pending_certificate = None
    if held.digest == cert.digest:
        if cert.index > self._lock:
            self._lock = cert.index
            self._lock_certificate = cert
        self._commit_bound = max(self._commit_bound, cert.committed_index(raft.commit_quorum))
        return
    attested = self._attested
    if attested is not None and attested.round == cert.term and attested.height >= cert.index:
        leader = raft.leader_id
        if leader is not None:
            self._suspect(cert.term, leader, "certified a digest this member does not hold")


def _lock_rank(self: ShardReplica) -> tuple[int, int]:
    """This member's lock as (term, index): what candidates must match."""
    return (self._raft.term_at(self._lock) or 0, self._lock)


def _lock_in(self: ShardReplica, term: int) -> int:
    """The lock an acknowledgement in ``term`` reports (0 if not locked in it)."""
    raft = self._raft
    lock = min(self._lock, raft.commit_index)
    return lock if raft.term_at(lock) == term else 0


def _may_replace(self: ShardReplica, held: Entry, entry: Entry) -> bool:
    """``RaftHooks.replace_entry``: see the module docstring."""
    raft = self._raft
    if entry.term >= raft.term:
        return False  # the current leader contradicts itself: equivocation
    if held.index <= self._lock or held.index <= self._store.applied_index:
        return False
    acked_term, acked_index = self._hooks.acked
    return not (acked_term == raft.term and held.index <= acked_index)


def _kept_on_leading(self: ShardReplica, last_index: int) -> int:
    """``RaftHooks.kept_on_leading``: see the module docstring."""
    raft = self._raft
    convicted = self._convicted
    terms = self._convicted_terms | {t for t, leader in self._proofs.items() if leader in convicted}
    if not terms:
        return last_index
    keep = last_index
    while keep > self._lock and keep > self._store.applied_index:
        entry = raft.entry_at(keep)
        if entry is None or entry.term not in terms:
            break
        keep -= 1
    if keep < last_index:
        self.metrics["convicted_entries_dropped"] = self.metrics.get("convicted_entries_dropped", 0) + last_index - keep
    return keep


# ---------------------------------------------------------------- applying
def _apply_certified(self: ShardReplica) -> None:
    """Apply every certified entry not yet applied; act on what they caused."""
    store = self._store
    raft = self._raft
    if self.apply_held:
        return  # a rebuild from a checkpoint is under way (hrb/checkpoint/keeper.py)
    every = self.checkpoint_every
    while store.applied_index < self._commit_bound:
        entry = raft.entry_at(store.applied_index + 1)
        invariant(entry is not None, f"certified entry {store.applied_index + 1} is missing")
        assert entry is not None
        self._committed.append(entry)
        for effect in store.apply(entry):
            self._on_effect(effect, entry)
        if every and store.applied_index % every == 0 and self.checkpoint_cut is not None:
            # Every member cuts at the same index, so their images agree byte for byte.
            self.checkpoint_cut(store, entry)


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


def _maybe_vote(self: ShardReplica, txn_id: bytes, *, again: bool = False) -> None:
    """Leader: send the core this shard's vote on ``txn_id`` if its proof is complete.

    A vote goes out once, when its proof first reaches a quorum of
    acknowledgements: the acknowledgements that arrive after it add nothing
    the core needs, and each would make a vote of other bytes, which the
    core orders as another command only to refuse it as a duplicate (at a
    shard of 25, eight more copies of every vote in the core's log). With
    ``again`` (the resend timer) the vote sent is sent again as it was, so
    the core's log sees the same bytes and orders them once."""
    record = self._store.prepared.get(txn_id)
    if record is None or not self._raft.is_leader:
        return
    sent = self._sent_votes.get(txn_id)
    if sent is not None and (sent.vote, sent.reason, sent.proof.term, sent.proof.index, sent.proof.digest) == (
        record.vote, record.reason, record.term, record.index, record.digest,
    ):
        if again:
            self._core_out.append(sent)
            self._vote_sent_at[txn_id] = self._now
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
    vote = ShardVote(txn_id, self._shard, record.vote, record.reason, proof)
    self._sent_votes[txn_id] = vote
    self._core_out.append(vote)
    self._vote_sent_at[txn_id] = self._now


def _send_txn_request(self: ShardReplica, txn_id: bytes) -> None:
    txn = self._store.requested.get(txn_id)
    if txn is None or not self._raft.is_leader:
        return
    term = self._raft.term
    signature = self._signer.sign(txn_request_bytes(self._shard, int(self.id), term, txn))
    self._core_out.append(TxnRequest(self._shard, int(self.id), term, txn, signature))
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
            self._sent_votes.pop(txn_id, None)
        elif now >= sent + period:
            self._maybe_vote(txn_id, again=True)
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
