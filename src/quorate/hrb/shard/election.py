"""Who leads a shard: the gate in front of Raft, proofs of election and lazy
voting (``docs/hrb.md`` section 2, "Deposition" and "Lazy voters").

Theory of operation
-------------------
Plain Raft trusts every node's word about terms; a shard cannot. Proofs of
election and lazy voters are Tangaroa's (Copeland & Zhong 2014); the lock
check on votes is ours (see ``quorate.hrb.shard``). Every Raft message
passes ``_gate`` before ``RaftNode`` sees it:

- **Leaders prove their election.** A granted vote leaves as a signed
  ``SignedVote`` (the gate turns it back into Raft's ``RequestVoteResponse``
  after checking the signature), and a new leader sends its votes as a
  ``LeaderProof``. A member follows a sender's leader traffic for a term
  only if it already follows that sender in that term or holds its verified
  proof; otherwise the message is dropped and counted. Without this, one
  Byzantine member's heartbeat with a higher term would take over the shard.
- **Terms only rise with a proof.** A response (acknowledgement, heartbeat
  response, refused vote) that carries a higher term is dropped: in Raft it
  would make a leader step down on a follower's say-so. A stale leader still
  steps down, through check-quorum, or follows the new leader's proof.
- **Lazy voters.** Raft's stickiness already makes a follower ignore
  (pre-)vote requests while it heard from its leader less than an election
  timeout ago. The gate keeps that promise honest: a ``RequestVote``'s
  ``transfer`` flag, which waives stickiness, is cleared (any member could
  set it; shards do not transfer leadership), and a member drops its
  stickiness (``forget_leader``) only when it itself suspects its leader, so
  a vote is granted only when the voter suspects the leader or has not heard
  from it for an election timeout. A Byzantine member alone can then start
  as many elections as it likes: nobody votes.
- **Votes respect locks.** A candidate sends its lock certificate first
  (``Candidacy``); a vote request from a candidate locked below this member
  is dropped (``quorate.hrb.shard.commit`` says why this keeps every applied
  entry in every later leader's log). A member that holds the entry a
  candidacy's certificate names, and is locked lower, locks on it: a
  certificate proves the same whoever shows it. Without this a leader
  deposed by suspicion (which its voters then refuse) whose last
  announcement reached nobody is locked above every other member, refuses
  them all, and with f members refused too, no candidate is left.
- **What a convicted leader wrote does not count against a candidate.**
  Raft's vote rule refuses a candidate whose log is less up to date than the
  voter's whole log. A member an equivocator lied to can hold a *longer*
  log than the members it did not lie to, but a lower lock (it got no
  certificate): it refuses them as less up to date while they refuse it as
  locked lower, and with the offender refused no quorum is left (an election
  never ends). The entries above a voter's lock that a convicted leader's
  terms wrote are covered by no certificate this member holds and may be
  replaced by the next leader (``RaftHooks.replace_entry``); applied entries
  are protected by the lock rule above, not by them. So for a candidate
  that passed the lock check, the gate compares its log with this member's
  log without that suffix, and presents a candidate that is up to date with
  the rest as up to date (its request's last index and term are raised to
  ours before Raft sees it). A term whose leader this member deposed by
  suspicion (itself included) is discounted the same way: the deposed
  leader holds the longest log of its term, and refusing every candidate
  with a shorter one while they refuse it leaves nobody to elect. Elections
  without a convicted or deposed leader are unchanged.
- **Commit indices come from certificates.** The gate lowers the commit
  index of every AppendEntries and heartbeat to this member's lock, so
  Raft's own commit index never runs ahead of what a certificate covers
  (``quorate.hrb.shard.commit``).
- **Snapshots** are not sent in shards (a snapshot carries no digest, which
  would break the chain): ``InstallSnapshot`` is refused.

The functions taking ``self: ShardReplica`` are ``ShardReplica`` methods,
attached in ``quorate.hrb.shard.replica``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from quorate.core.evidence import Evidence, SignedStatement
from quorate.hrb.shard.chain import statement_kind
from quorate.hrb.shard.messages import Candidacy, LeaderProof, SignedVote
from quorate.hrb.shard.proofs import verify_commit_certificate, verify_leader_votes, vote_statement
from quorate.ids import NodeId
from quorate.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    PreVote,
    PreVoteResponse,
    QuiesceHeartbeat,
    RequestVote,
    RequestVoteResponse,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
    TimeoutNow,
)
from quorate.raft.roles import CANDIDATE

if TYPE_CHECKING:
    from quorate.hrb.shard.replica import ShardReplica

LEADER_TRAFFIC = frozenset(
    (AppendEntries, SignedAppendEntries, Heartbeat, QuiesceHeartbeat, InstallSnapshot, TimeoutNow)
)
RESPONSES = frozenset(
    (AppendEntriesResponse, SignedAppendEntriesResponse, HeartbeatResponse, RequestVoteResponse)
)
_WITH_COMMIT = frozenset((AppendEntries, SignedAppendEntries, Heartbeat, QuiesceHeartbeat))
PROOF_TERMS_KEPT = 4
"""Verified proofs of election remembered (the most recent terms)."""


def _gate(self: ShardReplica, sender: NodeId, m: Any) -> Any | None:
    """The message Raft may see (maybe rewritten), or ``None`` (dropped and counted)."""
    raft = self._raft
    cls = type(m)
    term = m.term
    if cls in LEADER_TRAFFIC:
        if cls is InstallSnapshot:
            self._reject(sender, m, "shards do not install snapshots")
            return None
        following = term == raft.term and raft.leader_id == sender
        if term >= raft.term and not following and self._proofs.get(term) != sender:
            self._reject(sender, m, f"no proof that node {sender} leads term {term}")
            return None
        if cls in _WITH_COMMIT and m.leader_commit > self._lock:
            m = msgspec.structs.replace(m, leader_commit=self._lock)
        return m
    if cls is RequestVote or cls is PreVote:
        if self._candidacies.get(sender, (0, 0)) < self._lock_rank():
            self._reject(sender, m, "the candidate is locked below this member")
            return None
        if cls is RequestVote and m.transfer:
            m = msgspec.structs.replace(m, transfer=False)
        if self._discounted_terms:
            m = self._discount_convicted_suffix(m)
        if term > raft.term and self._suspects_leader():
            raft.forget_leader(self._now)
        return m
    if cls in RESPONSES:
        if term > raft.term:
            self._reject(sender, m, f"a response with the higher term {term} and no proof of election")
            return None
        if cls is RequestVoteResponse and m.granted:
            self._reject(sender, m, "a granted vote must be signed")
            return None
        return m
    if cls is PreVoteResponse and term > raft.term and not (m.granted and term == raft.term + 1):
        self._reject(sender, m, f"a pre-vote response with the term {term}")
        return None
    return m


def _discount_convicted_suffix(self: ShardReplica, m: Any) -> Any:
    """``m`` (a (pre-)vote request whose candidate is locked at least as high
    as this member) as Raft must judge it once the entries above our lock
    written in convicted leaders' terms are left out (module docstring)."""
    raft = self._raft
    last = raft.last_index
    trusted = last
    while trusted > self._lock and raft.term_at(trusted) in self._discounted_terms:
        trusted -= 1
    if trusted == last:
        return m
    trusted_term = raft.term_at(trusted) or 0
    if (m.last_log_term, m.last_log_index) < (trusted_term, trusted):
        return m  # less up to date than what we trust: Raft refuses it
    self._count("votes_past_a_convicted_suffix")
    return msgspec.structs.replace(m, last_log_index=last, last_log_term=raft.term_at(last) or 0)


def _suspects_leader(self: ShardReplica) -> bool:
    """This member itself suspects the leader it follows in the current term."""
    leader = self._raft.leader_id
    return leader is not None and (self._raft.term, leader) in self._my_suspicions


def _on_signed_vote(self: ShardReplica, sender: NodeId, m: SignedVote) -> None:
    raft = self._raft
    if m.term != raft.term or raft.role is not CANDIDATE:
        return  # late or for another campaign: changes nothing
    if not self._verifier.verify(sender, vote_statement(self._shard, m.term, int(self.id)), m.signature):
        self._reject(sender, m, "bad vote signature")
        return
    self._votes.setdefault(m.term, {})[int(sender)] = m.signature
    raft.step(sender, RequestVoteResponse(m.term, True), self._now)


def _sign_vote(self: ShardReplica, to: NodeId, response: RequestVoteResponse) -> SignedVote:
    return SignedVote(response.term, self._signer.sign(vote_statement(self._shard, response.term, int(to))))


def _on_leader_proof(self: ShardReplica, sender: NodeId, m: LeaderProof) -> None:
    raft = self._raft
    if m.term < raft.term:
        return
    known = self._proofs.get(m.term)
    if known == sender:
        return
    reason = verify_leader_votes(
        m.votes,
        shard=self._shard,
        term=m.term,
        leader=sender,
        voters=raft.voters,
        quorum=raft.election_quorum,
        verifier=self._verifier,
    )
    if reason is not None:
        self._reject(sender, m, reason)
        return
    if known is not None:
        # Two proven leaders of one term: a voter in both quorums voted twice.
        self._convict_double_vote(m, known, sender)
        return
    self._proofs[m.term] = sender
    self._proof_votes[m.term] = dict(m.votes)
    deposed_in = self._deposed.get(sender)
    if deposed_in is not None and m.term > deposed_in and sender not in self._convicted:
        # Deposed by suspicion in an earlier term, elected again since by a
        # proven quorum: refusing it now would leave this member behind.
        del self._deposed[sender]
        raft.allow_leader(sender)
    for old in sorted(self._proofs)[:-PROOF_TERMS_KEPT]:
        del self._proofs[old]
        self._proof_votes.pop(old, None)


def _on_candidacy(self: ShardReplica, sender: NodeId, m: Candidacy) -> None:
    cert = m.certificate
    if cert is None:
        self._candidacies[sender] = (0, 0)
        return
    raft = self._raft
    reason = verify_commit_certificate(
        cert, shard=self._shard, voters=raft.voters, quorum=raft.commit_quorum, verifier=self._verifier
    )
    if reason is not None:
        self._reject(sender, m, f"a candidacy with an invalid lock: {reason}")
        return
    self._candidacies[sender] = (cert.term, cert.index)
    held = raft.entry_at(cert.index)
    if (cert.term, cert.index) > self._lock_rank() and held is not None and held.digest == cert.digest:
        # A certificate proves the same wherever it comes from: lock on it, or
        # a deposed leader locked above every other member leaves nobody that
        # all of them can elect (module docstring).
        self._count("locks_from_candidacies")
        self._lock = cert.index
        self._lock_certificate = cert
        self._commit_bound = max(self._commit_bound, cert.committed_index(raft.commit_quorum))


def _announce_candidacy(self: ShardReplica, messages: list[tuple[NodeId, Any]]) -> None:
    """Every (pre-)vote request Raft sends is preceded by our lock: a voter
    that missed it would refuse us for as long as it lasts (a pre-vote
    campaign keeps its term, so "once per campaign" is not enough)."""
    targets = sorted({to for to, m in messages if type(m) is PreVote or type(m) is RequestVote})
    if targets:
        candidacy = Candidacy(self._lock_certificate)
        self._front.extend((to, candidacy) for to in targets)


def _convict_double_vote(self: ShardReplica, m: LeaderProof, first: NodeId, second: NodeId) -> None:
    earlier = self._proof_votes.get(m.term, {})
    kind = statement_kind(self._shard, "vote")
    encode = msgspec.msgpack.encode
    for voter, signature in m.votes:
        other = earlier.get(voter)
        if other is None:
            continue
        a = SignedStatement(voter, kind, m.term, 0, encode(int(first)), other)
        b = SignedStatement(voter, kind, m.term, 0, encode(int(second)), signature)
        self._convict(Evidence(a, b), detector=True)


def _become_leader(self: ShardReplica) -> None:
    """Raft just made this member leader of a new term: prove it."""
    raft = self._raft
    term = raft.term
    self._leading_term = term
    self._acks = {}
    self._announced = (0, 0)
    self._announce_due = False
    self._proposed.clear()
    votes = dict(self._votes.pop(term, {}))
    votes[int(self.id)] = self._signer.sign(vote_statement(self._shard, term, int(self.id)))
    proof = LeaderProof(term, tuple(sorted(votes.items())))
    self._proof = proof
    self._proof_answered = set()
    self._answered_at.clear()
    self._proofs[term] = self.id
    for member in self._others():
        self._front.append((member, proof))
    self._next_proof_at = self._now + self._config.raft.heartbeat_interval_s
    self._votes.clear()
    # Whatever the previous leader left undecided, this one finishes.
    self._vote_sent_at.clear()
    self._sent_votes.clear()
    self._request_sent_at.clear()
    for txn_id in list(self._store.prepared):
        self._maybe_vote(txn_id)
    for txn_id in list(self._store.requested):
        self._send_txn_request(txn_id)


def _resend_proof(self: ShardReplica, now: float) -> None:
    """Members that have not answered this leader yet may have missed its proof."""
    proof = self._proof
    if proof is None or now < self._next_proof_at:
        return
    self._next_proof_at = now + self._config.raft.heartbeat_interval_s
    refresh = self.proof_refresh_s
    for member in self._others():
        if member not in self._proof_answered:
            self._msgs.append((member, proof))
        elif refresh and now - self._answered_at.get(member, now) >= refresh:
            self._answered_at[member] = now  # once per period while it stays silent
            self._msgs.append((member, proof))
