"""The watcher: how a shard's members check their leader, suspect it, prove
it lied, and depose it (``docs/hrb.md`` section 2).

Theory of operation
-------------------
Tangaroa (Copeland & Zhong 2014) lets clients notice a leader that ignores
them and call an election; here the followers do the watching, on behalf of
agents that may be far away (see ``quorate.hrb.shard``).

- **Statements seen.** Every verified ``chain`` statement (an AppendEntries'
  signature, a challenge's answer, a relayed head) is checked two ways:
  against the statements seen for the same (signer, term, index) slot (a
  different digest is core ``Evidence``), and against this member's own log
  where the leader already vouched for it. ``_attested`` is the leader's
  latest statement this member's log matches: its log through that index is
  the leader's, so a statement of the same leader and term naming another
  digest at an index the member holds is proven by a ``ChainProof`` from the
  member's own entries (``quorate.hrb.shard.evidence``).
- **Challenges.** Every ``challenge_interval_s`` (with jitter from the
  injected random source) a follower sends its leader a ``HeadChallenge``
  with a fresh nonce. The leader answers with its signed head. An answer
  later than ``response_bound_s`` makes the follower suspect the leader
  (``slow``); no answer before the next challenge, likewise (``unanswered``).
  A verified answer is relayed to the other members (``relay_fanout``, or
  all), who compare it with their own chains: conflicting heads are how the
  halves of an equivocating leader's shard find each other. A member whose
  log does not reach a relayed head's index answers the relayer with its own
  attested head (``_vouch``), so a member held back on another history is
  checked by those further along.
- **Censorship.** A request a follower forwarded (a client's transaction, a
  core certificate) must appear in its log within ``inclusion_bound_s``;
  otherwise it suspects the leader (``censorship``), and its ``Suspicion``
  carries the request, so every member that receives it forwards the request
  and watches it too: a censored request turns every honest member into a
  witness, not only the one the client reached.
- **Invalid entries.** ``_validate_batch`` runs on every batch that
  continues the chain, before Raft stores it: an entry the shard's rules
  refuse (``EntryRules``, plus a core certificate that does not verify under
  a known epoch key) yields ``invalid_entry`` evidence from the batch's own
  signature; an entry that would overwrite one already applied is refused.
- **Deposition.** Evidence (verified by every member itself, from an
  ``EvidenceNotice``) deposes at once: ``refuse_leader`` (Raft then forgets
  it and refuses its leadership for good), the notice to every member, and a
  ``RemovalProposal`` to the core from the member that found it. Suspicions
  alone depose only when ``f + 1`` members (byzantine mode: at least one
  honest) or a majority (majority mode) signed one for the same leader and
  term, members this one convicted not counted (a conviction lifts the
  depositions the offender's suspicion carried); the leader is then refused until the shard follows a newly proven
  leader of a later term (or it proves its own election to a later term).
  A member re-sends its own suspicions of the current term every challenge
  interval, also once it stopped following the suspect, so a lost message
  does not split the shard into members that deposed and members that did
  not.

The functions taking ``self: ShardReplica`` are ``ShardReplica`` methods,
attached in ``quorate.hrb.shard.replica``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from quorate.core.evidence import Evidence, SignedStatement, statement_bytes, verify_statement
from quorate.core.quorum import majority
from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.hrb.messages import (
    CoreCertificate,
    RemovalProposal,
    SignedMessageEvidence,
    removal_bytes,
)
from quorate.hrb.shard.chain import chain_kind, link_of, statement_kind
from quorate.hrb.shard.evidence import (
    ChainProof,
    chain_equivocation,
    evidence_offender,
    invalid_entry_evidence,
    verify_shard_evidence,
)
from quorate.hrb.shard.messages import (
    EvidenceNotice,
    ForwardedRequest,
    HeadAnswer,
    HeadChallenge,
    HeadRelay,
    Suspicion,
)
from quorate.hrb.shard.state import (
    CertifiedDecision,
    ClientTxn,
    IntraTxn,
    TxnRequested,
    decode_command,
)
from quorate.ids import NodeId
from quorate.raft.messages import AppendEntries, AppendEntriesResponse, SignedAppendEntries
from quorate.raft.roles import FOLLOWER

if TYPE_CHECKING:
    from quorate.hrb.shard.replica import ShardReplica

_encode = msgspec.msgpack.Encoder().encode
MAX_HEADS = 4096
"""Signed heads remembered for slot comparisons (older terms go first)."""
MAX_LOG_KEYS = 8192
"""Requests remembered as seen in the log (so a late watch finds them)."""


def certificate_key(certificate: CoreCertificate) -> tuple[int, int]:
    """What names a core decision in a shard's watch lists: (epoch, core index)."""
    return (certificate.epoch, certificate.index)


# ---------------------------------------------------------------- statements
def _on_verified(self: ShardReplica, sender: NodeId, m: AppendEntries | AppendEntriesResponse) -> None:
    if isinstance(m, AppendEntriesResponse):
        self._record_ack(sender, m)
        return
    self._last_append = (sender, m)
    if m.entries:
        last = m.entries[-1]
        head = SignedStatement(int(sender), chain_kind(self._shard), last.index, m.term, last.digest, m.signature)
        self._observe_head(head)


def _observe_head(self: ShardReplica, head: SignedStatement) -> None:
    """A verified ``chain`` statement: compare it with what this member knows."""
    slot = (head.signer, head.round, head.height)
    known = self._heads.get(slot)
    if known is None:
        if len(self._heads) >= MAX_HEADS:
            oldest = min(self._heads, key=lambda s: (s[1], s[2]))
            del self._heads[oldest]
        self._heads[slot] = head
    elif known.payload != head.payload:
        self._convict(Evidence(known, head), detector=True)
        return
    self._check_against_log(head)


def _check_against_log(self: ShardReplica, head: SignedStatement) -> None:
    attested = self._attested
    if attested is None or attested.signer != head.signer or attested.round != head.round:
        return
    index = head.height
    if index > attested.height:
        return  # beyond what this member can vouch for: the relayer checks ours (_vouch)
    mine = self._raft.entry_at(index)
    digest = b"" if index == 0 else (mine.digest if mine is not None else None)
    if digest is None or digest == head.payload:
        return
    links = []
    for i in range(index + 1, attested.height + 1):
        entry = self._raft.entry_at(i)
        if entry is None:
            return
        links.append(link_of(entry))
    theirs = ChainProof(head, index, head.payload, ())
    ours = ChainProof(attested, index, digest, tuple(links))
    self._convict(chain_equivocation(theirs, ours, self._shard), detector=True)


def _update_attested(self: ShardReplica) -> None:
    """After Raft handled an AppendEntries: does our log now carry its head?"""
    last = self._last_append
    self._last_append = None
    raft = self._raft
    attested = self._attested
    if attested is not None:
        held = raft.entry_at(attested.height)
        if held is None or held.digest != attested.payload or attested.round != raft.term:
            self._attested = attested = None
    if last is None:
        return
    sender, m = last
    if not m.entries or m.term != raft.term or raft.leader_id != sender:
        return
    tip = m.entries[-1]
    held = raft.entry_at(tip.index)
    if held is None or held.digest != tip.digest:
        return
    if attested is None or tip.index > attested.height:
        self._attested = SignedStatement(int(sender), chain_kind(self._shard), tip.index, m.term, tip.digest, m.signature)


# ---------------------------------------------------------------- challenges
def _challenge_tick(self: ShardReplica, now: float) -> None:
    raft = self._raft
    leader = raft.leader_id
    _resend_suspicions(self, now)
    if raft.role is not FOLLOWER or leader is None or leader == self.id:
        self._challenge = None
        return
    interval = self._config.challenge_interval_s
    challenge = self._challenge
    if challenge is not None and now >= challenge[1] + interval:
        _, _, term, challenged = challenge
        self._challenge = challenge = None
        self._suspect(term, challenged, "unanswered challenge")
    if now >= self._next_challenge_at:
        self._next_challenge_at = now + interval * (0.75 + 0.5 * self._rng.random())
        nonce = self._rng.getrandbits(62)
        self._challenge = (nonce, now, raft.term, leader)
        self._msgs.append((leader, HeadChallenge(raft.term, nonce, self._commit_bound)))


def _resend_suspicions(self: ShardReplica, now: float) -> None:
    """Re-send this member's suspicions of the current term each challenge
    interval, also after it stopped following the suspect (a lost suspicion
    would otherwise leave the members that deposed and those that did not
    split for good: the first refuse the leader, the others stay with it)."""
    if now < self._suspicion_resend_at:
        return
    term = self._raft.term
    for key in [k for k in self._my_suspicions if k[0] < term]:
        del self._my_suspicions[key]  # a later term: they can depose nobody now
    current = [s for (t, _), s in self._my_suspicions.items() if t == term]
    if not current:
        return
    self._suspicion_resend_at = now + self._config.challenge_interval_s
    for suspicion in current:
        self._broadcast(suspicion)


def _on_head_challenge(self: ShardReplica, sender: NodeId, m: HeadChallenge) -> None:
    raft = self._raft
    if not raft.is_leader or m.term != raft.term:
        return
    head = self._head_cache
    last = raft.last_index
    if head is None or head.round != raft.term or head.height != last:
        digest = b"" if last == 0 else raft.entry_at(last).digest  # type: ignore[union-attr]
        head = self._head_cache = self._hooks.chain_statement(raft.term, last, digest)
    self._msgs.append((sender, HeadAnswer(m.nonce, head, raft.commit_index)))
    if m.certified < self._commit_bound and self._announcement is not None:
        self._msgs.append((sender, self._announcement))


def _on_head_answer(self: ShardReplica, sender: NodeId, m: HeadAnswer) -> None:
    challenge = self._challenge
    if challenge is None or challenge[0] != m.nonce or challenge[3] != sender:
        self._reject(sender, m, "an answer to no challenge of ours")
        return
    _, sent_at, term, leader = challenge
    head = m.head
    if head.kind != chain_kind(self._shard) or head.signer != int(sender) or head.round != term:
        self._reject(sender, m, "the answer is not the leader's head for the challenged term")
        return
    if not verify_statement(head, self._verifier):
        self._reject(sender, m, "bad head signature")
        return
    self._challenge = None
    if self._now - sent_at > self._config.response_bound_s:
        self._suspect(term, leader, "slow")
    self._observe_head(head)
    relay = HeadRelay(head)
    others = [p for p in self._others() if p != sender]
    fanout = self._config.relay_fanout
    if fanout and fanout < len(others):
        others = self._rng.sample(others, fanout)
    for member in others:
        self._msgs.append((member, relay))


def _on_head_relay(self: ShardReplica, sender: NodeId, m: HeadRelay) -> None:
    head = m.head
    if head.kind != chain_kind(self._shard) or NodeId(head.signer) not in self._raft.members:
        self._reject(sender, m, "a relayed head that is not a member's chain statement")
        return
    if not verify_statement(head, self._verifier):
        self._reject(sender, m, "bad relayed head signature")
        return
    self._observe_head(head)
    _vouch(self, sender, head)


def _vouch(self: ShardReplica, sender: NodeId, head: SignedStatement) -> None:
    """A relayed head of our leader's term beyond the index our log vouches
    for: send the relayer our attested head, which it checks against its own
    log where that holds the index. Without this, a follower held back
    on another history (a leader equivocating to it, then refusing its
    acknowledgements) never shows that history to anyone: it cannot check
    the heads it is relayed, and its own challenge answers name indices it
    does not hold. The reply is always at a lower index than what prompted
    it, so two members cannot ping-pong; the same head goes to the same
    relayer at most once a challenge interval (often enough to survive a
    lost message, seldom enough to cost little)."""
    attested = self._attested
    if attested is None or attested.signer != head.signer or attested.round != head.round:
        return
    if head.height <= attested.height or sender == self.id or NodeId(attested.signer) == sender:
        return
    slot = (attested.round, attested.height)
    sent = self._vouched.get(sender)
    if sent is not None and sent[0] == slot and self._now < sent[1] + self._config.challenge_interval_s:
        return
    self._vouched[sender] = (slot, self._now)
    self._msgs.append((sender, HeadRelay(attested)))


# ---------------------------------------------------------------- censorship
def _watch(self: ShardReplica, key: Any, request: bytes, certificate: bool) -> None:
    """Expect ``request`` (named ``key``) in the log within the inclusion bound."""
    if key in self._log_keys or key in self._watched:
        return
    if len(self._watched) >= self._config.max_watched:
        del self._watched[next(iter(self._watched))]
    self._watched[key] = (self._now + self._config.inclusion_bound_s, request, certificate)


def _seen_in_log(self: ShardReplica, key: Any) -> None:
    self._watched.pop(key, None)
    keys = self._log_keys
    keys[key] = None
    if len(keys) > MAX_LOG_KEYS:
        del keys[next(iter(keys))]


def _censorship_tick(self: ShardReplica, now: float) -> None:
    raft = self._raft
    leader = raft.leader_id
    if not self._watched or leader is None or leader == self.id:
        return
    due = [key for key, (deadline, _, _) in self._watched.items() if deadline <= now]
    for key in due:
        _, request, certificate = self._watched.pop(key)
        self._suspect(raft.term, leader, "censorship", request, certificate)


def _reforward_watched(self: ShardReplica, leader: NodeId) -> None:
    """A new leader: hand it every request still watched, with a fresh bound."""
    bound = self._now + self._config.inclusion_bound_s
    for key, (_, request, certificate) in list(self._watched.items()):
        self._watched[key] = (bound, request, certificate)
        self._msgs.append((leader, ForwardedRequest(request, certificate)))


def _validate_batch(self: ShardReplica, previous_digest: bytes, entries: Sequence[Entry]) -> str | None:
    """``ChainHooks.validate``: the batch continues the chain; may we store it?"""
    raft = self._raft
    protected = max(self._store.applied_index, self._lock)
    keys: list[Any] = []
    for entry in entries:
        if entry.index <= protected:
            held = raft.entry_at(entry.index)
            if held is not None and held.digest != entry.digest:
                return f"entry {entry.index} would overwrite an applied entry"
        reason, key = self._entry_check(entry)
        if reason is not None:
            self._invalid_entry(previous_digest, entries, entry, reason)
            return f"entry {entry.index} is invalid: {reason}"
        if key is not None:
            keys.append(key)
    for key in keys:
        self._seen_in_log(key)
    return None


def _entry_check(self: ShardReplica, entry: Entry) -> tuple[str | None, Any]:
    """(why ``entry`` is invalid or None, the watch key it satisfies or None)."""
    reason = self._rules.entry_refusal(entry.kind, entry.data)
    if reason is not None or entry.kind != ENTRY_NORMAL:
        return reason, None
    command = decode_command(entry.data)
    if isinstance(command, IntraTxn | TxnRequested):
        return None, command.txn.txn_id
    if isinstance(command, CertifiedDecision):
        cert = command.certificate
        if self._store.knows_epoch(cert.epoch):
            refusal = self._store.certificate_refusal(cert)
            if refusal is not None:
                return refusal, None
        return None, certificate_key(cert)
    return None, None


def _invalid_entry(self: ShardReplica, previous_digest: bytes, entries: Sequence[Entry], bad: Entry, reason: str) -> None:
    last = self._last_append
    if last is None:
        return
    sender, m = last
    if type(m) is not SignedAppendEntries or not m.entries or m.entries[-1].index != entries[-1].index:
        return
    tip = m.entries[-1]
    head = SignedStatement(int(sender), chain_kind(self._shard), tip.index, m.term, tip.digest, m.signature)
    proof = ChainProof(head, entries[0].index - 1, previous_digest, tuple(link_of(e) for e in entries))
    self._convict(invalid_entry_evidence(proof, bad.index, bad.kind, bad.data, self._shard), detector=True)


def entry_refusal_with_certificates(self: ShardReplica, kind: int, data: bytes) -> str | None:
    """The validation evidence is judged by: the shard's rules, and a core
    certificate must verify when its epoch is known."""
    entry = Entry(0, 0, kind, data)
    reason, _ = self._entry_check(entry)
    return reason


# ---------------------------------------------------------------- suspicion
def _suspicion_statement(shard: int, term: int, leader: int, reason: str) -> bytes:
    return statement_bytes(statement_kind(shard, "suspect"), term, 0, _encode((leader, reason)))


def _suspect(
    self: ShardReplica, term: int, leader: NodeId, reason: str, request: bytes = b"", certificate: bool = False
) -> None:
    """This member suspects ``leader`` of ``term``: sign, tell everyone, count."""
    if leader == self.id:
        return
    key = (term, leader)
    self._count(f"suspicions.{reason.split()[0]}")
    if key not in self._my_suspicions or request:
        signature = self._signer.sign(_suspicion_statement(self._shard, term, int(leader), reason))
        suspicion = Suspicion(term, int(leader), reason, signature, request, certificate)
        self._my_suspicions[key] = suspicion
        self._suspicion_resend_at = self._now + self._config.challenge_interval_s
        self._broadcast(suspicion)
        self._suspicions.setdefault(key, {})[self.id] = reason
        self._check_deposition(term, leader)


def _on_suspicion(self: ShardReplica, sender: NodeId, m: Suspicion) -> None:
    data = _suspicion_statement(self._shard, m.term, m.leader, m.reason)
    if not self._verifier.verify(sender, data, m.signature):
        self._reject(sender, m, "bad suspicion signature")
        return
    leader = NodeId(m.leader)
    if leader == sender:
        return
    self._suspicions.setdefault((m.term, leader), {})[sender] = m.reason
    if m.request and not self._raft.is_leader:
        self._witness(m.request, m.certificate)
    self._check_deposition(m.term, leader)


def _witness(self: ShardReplica, request: bytes, certificate: bool) -> None:
    """Another member says ``request`` was censored: forward it and watch it too."""
    try:
        if certificate:
            cert = msgspec.msgpack.decode(request, type=CoreCertificate)
            key: Any = certificate_key(cert)
        else:
            command = decode_command(request)
            if not isinstance(command, ClientTxn):
                return
            key = command.txn.txn_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    leader = self._raft.leader_id
    if leader is None or leader == self.id or key in self._log_keys or key in self._watched:
        return
    self._msgs.append((leader, ForwardedRequest(request, certificate)))
    self._watch(key, request, certificate)


def deposition_threshold(self: ShardReplica) -> int:
    """Suspecting members that depose a leader: f + 1 (byzantine) or a majority."""
    voters = len(self._raft.voters)
    if self._config.byzantine:
        return (voters - 1) // 3 + 1
    return majority(voters)


def _suspecters(self: ShardReplica, term: int, leader: NodeId) -> int:
    """Voters not convicted here that suspect ``leader`` of ``term``: a member
    proven Byzantine cannot help depose anyone (with f = 1 its word and one
    honest member's lost message would depose an honest leader that, locked
    highest, is the only member the others can elect)."""
    suspecters = self._suspicions.get((term, leader), {})
    voters = self._raft.voters
    convicted = self._convicted
    return sum(1 for s in suspecters if s in voters and s not in convicted)


def _check_deposition(self: ShardReplica, term: int, leader: NodeId) -> None:
    if leader in self._deposed or leader in self._convicted:
        return
    if _suspecters(self, term, leader) < self.deposition_threshold():
        return
    self._deposed[leader] = term
    self._discounted_terms.add(term)
    self.depositions.append((leader, term, self._now, "suspicion"))
    self._count("depositions.suspicion")
    if leader != self.id:
        self._raft.refuse_leader(leader, self._now)


def _lift_depositions(self: ShardReplica) -> None:
    """A newly proven leader of a later term: suspicion-deposed leaders may lead again."""
    raft = self._raft
    for node, term in list(self._deposed.items()):
        if raft.term > term and node not in self._convicted:
            del self._deposed[node]
            raft.allow_leader(node)


# ---------------------------------------------------------------- evidence
def _on_evidence_notice(self: ShardReplica, sender: NodeId, m: EvidenceNotice) -> None:
    evidence = m.evidence
    if evidence_offender(evidence) in self._convicted:
        return
    reason = self.verify_evidence(evidence)
    if reason is not None:
        self._count("false_accusations")
        self._reject(sender, m, f"evidence does not verify: {reason}")
        return
    self._convict(evidence, detector=False)


def verify_evidence(self: ShardReplica, evidence: Evidence | SignedMessageEvidence) -> str | None:
    """Why ``evidence`` does not prove misbehaviour by a member of this shard, or ``None``."""
    raft = self._raft
    return verify_shard_evidence(
        evidence,
        shard=self._shard,
        voters=raft.voters,
        commit_quorum=raft.commit_quorum,
        verifier=self._verifier,
        entry_refusal=self.entry_refusal_with_certificates,
    )


def _convict(self: ShardReplica, evidence: Evidence | SignedMessageEvidence, *, detector: bool) -> None:
    """Proven misbehaviour: depose the offender for good and tell everyone."""
    offender = evidence_offender(evidence)
    if offender in self._convicted:
        return
    self._convicted.add(offender)
    terms = {term for term, leader in self._proofs.items() if leader == offender}
    if self._raft.leader_id == offender:
        terms.add(self._raft.term)
    self._discounted_terms.update(terms)
    self._convicted_terms.update(terms)
    kind = "equivocation" if isinstance(evidence, Evidence) else evidence.kind
    self.detections.append((offender, kind, self._now, detector))
    self._count(f"detections.{kind}")
    self._deposed.pop(offender, None)
    if offender != self.id:
        self._raft.refuse_leader(offender, self._now)
    # Depositions the offender's own suspicion carried no longer stand.
    for node, term in list(self._deposed.items()):
        if _suspecters(self, term, node) < self.deposition_threshold():
            del self._deposed[node]
            if node != self.id:
                self._raft.allow_leader(node)
    self._broadcast(EvidenceNotice(evidence))
    if detector:
        accuser = int(self.id)
        signature = self._signer.sign(removal_bytes(accuser, evidence))
        self._core_out.append(RemovalProposal(accuser, evidence, signature))

