"""``ShardReplica``: one member of a watched-Raft shard, as a sans-IO core
(``docs/hrb.md`` sections 2 and 4).

Theory of operation
-------------------
A shard replica composes a ``quorate.raft.RaftNode`` (never a copy of it)
with ``ChainHooks`` (hash chain and signatures), a watcher, and the shard's
state machine (``ShardStore``), and keeps the ``ProtocolCore`` contract:
``step`` / ``tick`` / ``propose`` / ``ready`` / ``advance``. Each concern lives
in its own module, whose functions are attached below as methods (the
idiom of ``raft/node.py``):

- ``election``: the gate in front of Raft (proofs of election, lazy voting,
  commit indices lowered to the certified one), signed votes;
- ``commit``: commit certificates, applying certified entries, 2PC votes
  and requests;
- ``watcher``: statements, challenges, censorship, invalid entries,
  suspicion, evidence and deposition.

Here: construction, dispatch of each message type to its handler, the
proposal path, leader changes, and the ``Ready``.

Inputs and outputs
------------------
- ``step(sender, message, now)``: Raft's messages, the shard's own
  (``quorate.hrb.shard.messages``) and ``CoreCertificate`` (a core decision,
  from any sender: its threshold signature is what counts). A message from a
  non-member (other than a certificate) or an evicted node is dropped and
  counted, as is anything malformed.
- ``propose(command, now)``: an encoded ``ClientTxn``. The leader appends it
  (``IntraTxn`` when every key is the shard's, ``TxnRequested`` otherwise)
  and answers ``Accepted``; a follower forwards it to its leader, watches
  for it, and answers ``Queued``; a refused transaction gets ``Refused`` with
  the reason (counted in ``metrics["refused_proposals"]``).
- ``ready()``: Raft's Ready, with the watcher's messages added, granted votes
  signed, certificates and proofs ahead of Raft's messages, and
  ``committed`` = the certified entries applied in this turn.
- ``take_core_messages()``: what the shard sends the core (``TxnRequest``,
  ``ShardVote``, ``RemovalProposal``), to be taken by the host after each
  turn and sent on the core's group. ``take_results()``: transaction
  outcomes for clients of this shard (``TxnOutcome``).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from quorate.core.evidence import SignedStatement
from quorate.core.protocol import Accepted, ProposeOutcome, Queued, Redirect, Refused
from quorate.core.ready import ChainedEntry, Entry, Ready, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.errors import ConfigError, LocalProtocolError
from quorate.hrb.messages import (
    CoreCertificate,
    EpochChange,
    RemovalProposal,
    ShardVote,
    TxnRequest,
)
from quorate.hrb.shard import commit, election, watcher
from quorate.hrb.shard.chain import ChainHooks, entry_digest
from quorate.hrb.shard.config import ShardConfig
from quorate.hrb.shard.messages import (
    Candidacy,
    CommitAnnouncement,
    EvidenceNotice,
    ForwardedRequest,
    HeadAnswer,
    HeadChallenge,
    HeadRelay,
    LeaderProof,
    PrepareAck,
    SignedVote,
    Suspicion,
)
from quorate.hrb.shard.proofs import CommitCertificate, FollowerMajorityQuorum
from quorate.hrb.shard.state import (
    CertificateCheck,
    CertifiedDecision,
    ClientTxn,
    EntryRules,
    IntraTxn,
    KeyShard,
    ShardStore,
    TxnOutcome,
    TxnRequested,
    Violation,
    decode_command,
    encode_command,
)
from quorate.ids import NodeId
from quorate.raft.hooks import ByzantineQuorum
from quorate.raft.messages import (
    RAFT_MESSAGE_TYPES,
    AppendEntriesResponse,
    ConfChange,
    ConfChangeKind,
    RequestVoteResponse,
    SignedAppendEntriesResponse,
)
from quorate.raft.node import RaftNode, RecoveredState

__all__ = ["CoreMessage", "ShardReplica"]

CoreMessage = TxnRequest | ShardVote | RemovalProposal
"""What a shard sends to the core."""
MAX_PROPOSED = 4096
"""Requests a leader remembers proposing in its term (duplicates are not re-appended)."""
MAX_FUTURE_CERTIFICATES = 256
"""Certificates of an epoch not known yet, held until its ``EpochChange`` applies."""
_ACCEPTED = (Accepted, Queued)
_APPEND_RESPONSES = (AppendEntriesResponse, SignedAppendEntriesResponse)

Handler = Callable[["ShardReplica", NodeId, Any], None]


class _CertificateCache:
    """The store's certificate check, remembering what verified (a member
    checks a certificate on receipt and again when applying it)."""

    __slots__ = ("_check", "_verified")

    def __init__(self, check: CertificateCheck) -> None:
        self._check = check
        self._verified: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()

    def __call__(self, key: bytes, message: bytes, signature: bytes) -> bool:
        item = (key, message, signature)
        if item in self._verified:
            return True
        if not self._check(key, message, signature):
            return False
        self._verified[item] = None
        if len(self._verified) > MAX_FUTURE_CERTIFICATES:
            self._verified.popitem(last=False)
        return True


class ShardReplica:
    """One member of a watched-Raft shard (see the module docstring).

    ``key_shard`` maps a key to its shard; ``check_certificate(group public
    key, signed bytes, signature)`` verifies a core threshold signature;
    ``genesis`` is the first epoch's core (its members and group key).
    Bad constructor input raises ``ConfigError``."""

    # ---------------------------------------------------------- election.py
    _gate = election._gate
    _suspects_leader = election._suspects_leader
    _discount_convicted_suffix = election._discount_convicted_suffix
    _on_signed_vote = election._on_signed_vote
    _sign_vote = election._sign_vote
    _on_leader_proof = election._on_leader_proof
    _on_candidacy = election._on_candidacy
    _announce_candidacy = election._announce_candidacy
    _convict_double_vote = election._convict_double_vote
    _become_leader = election._become_leader
    _resend_proof = election._resend_proof
    # ------------------------------------------------------------ commit.py
    _record_ack = commit._record_ack
    _certify_commit = commit._certify_commit
    _announcement_due = commit._announcement_due
    _on_announcement = commit._on_announcement
    _try_certify = commit._try_certify
    _lock_rank = commit._lock_rank
    _lock_in = commit._lock_in
    _may_replace = commit._may_replace
    _kept_on_leading = commit._kept_on_leading
    _apply_certified = commit._apply_certified
    _on_effect = commit._on_effect
    _on_prepared = commit._on_prepared
    _on_prepare_ack = commit._on_prepare_ack
    _maybe_vote = commit._maybe_vote
    _send_txn_request = commit._send_txn_request
    _resend_undecided = commit._resend_undecided
    _resend_prepare_acks = commit._resend_prepare_acks
    # ----------------------------------------------------------- watcher.py
    _on_verified = watcher._on_verified
    _observe_head = watcher._observe_head
    _check_against_log = watcher._check_against_log
    _update_attested = watcher._update_attested
    _challenge_tick = watcher._challenge_tick
    _on_head_challenge = watcher._on_head_challenge
    _on_head_answer = watcher._on_head_answer
    _on_head_relay = watcher._on_head_relay
    _watch = watcher._watch
    _seen_in_log = watcher._seen_in_log
    _censorship_tick = watcher._censorship_tick
    _reforward_watched = watcher._reforward_watched
    _validate_batch = watcher._validate_batch
    _entry_check = watcher._entry_check
    _invalid_entry = watcher._invalid_entry
    entry_refusal_with_certificates = watcher.entry_refusal_with_certificates
    _suspect = watcher._suspect
    _on_suspicion = watcher._on_suspicion
    _witness = watcher._witness
    deposition_threshold = watcher.deposition_threshold
    _check_deposition = watcher._check_deposition
    _lift_depositions = watcher._lift_depositions
    _on_evidence_notice = watcher._on_evidence_notice
    verify_evidence = watcher.verify_evidence
    _convict = watcher._convict

    def __init__(
        self,
        id: NodeId,
        members: Iterable[NodeId],
        *,
        config: ShardConfig,
        signer: Signer,
        verifier: Verifier,
        rng: random.Random,
        now: float,
        key_shard: KeyShard,
        check_certificate: CertificateCheck,
        genesis: EpochChange,
        learners: Iterable[NodeId] = (),
        recovered: RecoveredState | None = None,
    ) -> None:
        self._config = config.validate()
        if signer.node != id:
            raise LocalProtocolError(f"node {id} was given node {signer.node}'s signer")
        self._shard = config.shard
        self._signer = signer
        self._verifier = verifier
        self._rng = rng
        self._now = now
        self._rules = EntryRules(
            config.shard, config.shards, key_shard, config.max_txn_ops, config.max_txn_bytes,
            dynamic=bool(getattr(key_shard, "dynamic", False)),
        )
        self._store = ShardStore(self._rules, _CertificateCache(check_certificate), genesis)
        self._hooks = ChainHooks(
            config.shard,
            signer,
            verifier,
            on_verified=self._on_verified,
            validate=self._validate_batch,
            lock=self._lock_in,
            replace=self._may_replace,
            keep=self._kept_on_leading,
        )
        self._raft = RaftNode(
            id,
            members,
            config=config.raft,
            rng=rng,
            now=now,
            learners=learners,
            recovered=None if recovered is None else _rechained(recovered),
            hooks=self._hooks,
            quorum=ByzantineQuorum() if config.byzantine else FollowerMajorityQuorum(),
        )
        self._hooks.node = self._raft
        # Output of the current turn.
        self._msgs: list[tuple[NodeId, Any]] = []
        self._front: list[tuple[NodeId, Any]] = []
        self._rejected: list[Rejection] = []
        self._committed: list[Entry] = []
        self._core_out: list[CoreMessage] = []
        self._results: list[TxnOutcome] = []
        self._raft_ready: Ready | None = None
        # Commitment (commit.py).
        self._lock = self._raft.commit_index
        self._lock_certificate: CommitCertificate | None = None
        self._commit_bound = 0
        self._pending_certificate: CommitCertificate | None = None
        self._announcement: CommitAnnouncement | None = None
        self._announced = (0, 0)
        self._announce_due = False
        self._acks: dict[NodeId, tuple[int, int, bytes]] = {}
        self._prepare_acks: dict[bytes, dict[int, tuple[bytes, bytes]]] = {}
        self._my_prepare_acks: dict[bytes, PrepareAck] = {}
        self._own_votes: dict[bytes, tuple[int, bytes, bytes]] = {}
        self._vote_sent_at: dict[bytes, float] = {}
        self._sent_votes: dict[bytes, ShardVote] = {}
        """Leader: the vote sent on each undecided transaction (resent as it was)."""
        self._request_sent_at: dict[bytes, float] = {}
        # Leadership (election.py).
        self._votes: dict[int, dict[int, bytes]] = {}
        self._proofs: dict[int, NodeId] = {}
        self._proof_votes: dict[int, dict[int, bytes]] = {}
        self._candidacies: dict[NodeId, tuple[int, int]] = {}
        self._proof: LeaderProof | None = None
        self._proof_answered: set[NodeId] = set()
        self._answered_at: dict[NodeId, float] = {}
        """Leader: when each member last answered in this term (``proof_refresh_s``)."""
        self._next_proof_at = now
        self._leading_term = -1
        self._seen_leader: tuple[int, NodeId | None] = (self._raft.term, None)
        self._proposed: OrderedDict[Any, None] = OrderedDict()
        self._future_certificates: list[CoreCertificate] = []
        self._to_remove: set[NodeId] = set()
        # Watching (watcher.py).
        self._last_append: tuple[NodeId, Any] | None = None
        self._attested: SignedStatement | None = None
        self._heads: dict[tuple[int, int, int], SignedStatement] = {}
        self._vouched: dict[NodeId, tuple[tuple[int, int], float]] = {}
        self._head_cache: SignedStatement | None = None
        self._challenge: tuple[int, float, int, NodeId] | None = None
        self._next_challenge_at = now + config.challenge_interval_s * rng.random()
        self._watched: dict[Any, tuple[float, bytes, bool]] = {}
        self._log_keys: OrderedDict[Any, None] = OrderedDict()
        self._suspicions: dict[tuple[int, NodeId], dict[NodeId, str]] = {}
        self._my_suspicions: dict[tuple[int, NodeId], Suspicion] = {}
        self._suspicion_resend_at = now
        self._deposed: dict[NodeId, int] = {}
        self._convicted: set[NodeId] = set()
        self._discounted_terms: set[int] = set()
        """Terms whose proven leader this member convicted or deposed by suspicion
        (election.py discounts what it wrote above this member's lock)."""
        self._convicted_terms: set[int] = set()
        """Terms whose proven leader this member convicted (commit.py drops what
        they wrote above its lock when it wins an election)."""
        # What happened, for reports and tests.
        self.detections: list[tuple[NodeId, str, float, bool]] = []
        """(offender, evidence kind, time, found by this member)."""
        self.depositions: list[tuple[NodeId, int, float, str]] = []
        """(leader, term, time, why) deposed by suspicion."""
        self.violations: list[Violation] = []
        self.metrics: dict[str, int] = {}
        # Checkpoints (``quorate.hrb.checkpoint.keeper``; off unless a host sets them).
        self.checkpoint_every = 0
        """Cut a checkpoint at every multiple of this applied index (0: never)."""
        self.checkpoint_cut: Callable[[ShardStore, Entry], None] | None = None
        """Called with the store right after it applied a multiple of ``checkpoint_every``."""
        self.apply_held = False
        """While True nothing is applied: the store is about to be rebuilt from a checkpoint."""
        self.rejoin_lost_logs = False
        """Leader: a member whose log ends below what it acknowledged (it
        lost its disk) is sent its log again from where it ends; real nodes
        set it."""
        self.proof_refresh_s = 0.0
        """Leader: re-send the proof of election to a member silent this long
        (0: never). A member that lost its disk lost the proof with it, and
        drops the leader's traffic until it sees it again; real nodes set it."""
        self._after_input()

    # ================================================================ properties
    @property
    def id(self) -> NodeId:
        return self._raft.id

    @property
    def raft(self) -> RaftNode:
        """The Raft core underneath (read it; drive the replica, not it)."""
        return self._raft

    @property
    def hooks(self) -> ChainHooks:
        return self._hooks

    @property
    def store(self) -> ShardStore:
        return self._store

    @property
    def config(self) -> ShardConfig:
        return self._config

    @property
    def shard(self) -> int:
        return self._shard

    @property
    def signer(self) -> Signer:
        return self._signer

    @property
    def lock_index(self) -> int:
        """Highest index this member holds a certificate for (and the entry)."""
        return self._lock

    @property
    def committed_index(self) -> int:
        """Highest index a commit quorum is proven locked on: what it applies."""
        return self._commit_bound

    @property
    def applied_index(self) -> int:
        return self._store.applied_index

    @property
    def convicted(self) -> frozenset[NodeId]:
        """Members this one holds verified evidence against."""
        return frozenset(self._convicted)

    @property
    def deposed(self) -> frozenset[NodeId]:
        """Leaders deposed by suspicion and not yet allowed back."""
        return frozenset(self._deposed)

    @property
    def is_leader(self) -> bool:
        return self._raft.is_leader

    @property
    def leader_id(self) -> NodeId | None:
        return self._raft.leader_id

    @property
    def term(self) -> int:
        return self._raft.term

    # ================================================================ inputs
    def step(self, sender: NodeId, message: Any, now: float) -> None:
        """Handle a peer's message; bad input is dropped into ``Ready.rejected``."""
        self._now = now
        handler = _HANDLERS.get(type(message))
        if handler is None:
            self._reject(sender, message, "not a shard message")
            return
        if sender == self.id and type(message) is not CoreCertificate:
            # A certificate may come from this node itself: its core member, delivered locally.
            self._reject(sender, message, "message claims to come from this node")
            return
        if int(sender) in self._store.evicted:
            self._reject(sender, message, f"node {sender} was evicted")
            return
        if type(message) is not CoreCertificate and sender not in self._raft.members:
            self._reject(sender, message, f"node {sender} is not a member of shard {self._shard}")
            return
        handler(self, sender, message)
        self._after_input()

    def tick(self, now: float) -> None:
        """Fire due deadlines: Raft's, challenges, inclusion bounds, re-sends."""
        self._now = now
        raft = self._raft
        raft.tick(now)
        if raft.is_leader:
            self._resend_proof(now)
            self._resend_undecided(now)
            self._retry_removals()
        else:
            self._challenge_tick(now)
            self._censorship_tick(now)
        self._after_input()

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        """Submit an encoded ``ClientTxn`` (see the module docstring)."""
        self._now = now
        try:
            request = decode_command(command)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._refuse_proposal(f"not a shard transaction: {exc}")
        if not isinstance(request, ClientTxn):
            return self._refuse_proposal("clients propose ClientTxn commands only")
        if len(command) > self._config.max_txn_bytes:
            return self._refuse_proposal(
                f"a transaction of {len(command)} bytes exceeds max_txn_bytes ({self._config.max_txn_bytes})"
            )
        reason = self._rules.txn_refusal(request.txn)
        if reason is not None:
            return self._refuse_proposal(reason)
        outcome = self._order_txn(request, command)
        self._after_input()
        return outcome

    def _refuse_proposal(self, reason: str) -> Refused:
        self._count("refused_proposals")
        return Refused(reason)

    def _order_txn(self, request: ClientTxn, encoded: bytes) -> ProposeOutcome:
        txn = request.txn
        raft = self._raft
        if raft.is_leader:
            entry = IntraTxn(txn) if self._rules.is_local(txn) else TxnRequested(txn)
            return self._append_once(txn.txn_id, encode_command(entry))
        leader = raft.leader_id
        if leader is None:
            return Redirect(None)
        self._msgs.append((leader, ForwardedRequest(encoded)))
        self._watch(txn.txn_id, encoded, False)
        return Queued(raft.term)

    def _append_once(self, key: Any, data: bytes) -> ProposeOutcome:
        """Leader: append ``data`` unless this term already appended ``key``."""
        raft = self._raft
        if key in self._proposed:
            return Queued(raft.term)
        outcome = raft.propose(data, self._now)
        if isinstance(outcome, _ACCEPTED):
            self._proposed[key] = None
            if len(self._proposed) > MAX_PROPOSED:
                self._proposed.popitem(last=False)
        return outcome

    # ================================================================ handlers
    def _on_raft(self, sender: NodeId, message: Any) -> None:
        gated = self._gate(sender, message)
        if gated is None:
            return
        raft = self._raft
        if raft.is_leader and type(gated) in election.RESPONSES and gated.term == raft.term:
            self._proof_answered.add(sender)
            self._answered_at[sender] = self._now
            if self.rejoin_lost_logs and type(gated) in _APPEND_RESPONSES and not gated.success:
                self._relearn_lost_log(sender, gated)
        raft.step(sender, gated, self._now)
        self._update_attested()
        self._try_certify()

    def _relearn_lost_log(self, sender: NodeId, m: Any) -> None:
        """Leader: a member rejects an append at or above what it acknowledged,
        and its log now ends below that: it lost its disk (Raft assumes it
        never does, and would take the rejection for a stale one). Start its
        progress over from where its log ends."""
        progress = self._raft.progress(sender)
        if progress is not None and m.hint_index < progress.match <= m.index:
            progress.match = m.hint_index
            self._count("members_relearned")

    def _on_forwarded(self, sender: NodeId, m: ForwardedRequest) -> None:

        if not self._raft.is_leader:
            return  # the sender thought we lead; its own watch covers the request
        if m.certificate:
            try:
                cert = msgspec.msgpack.decode(m.command, type=CoreCertificate)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self._reject(sender, m, "a forwarded certificate that does not decode")
                return
            self._on_core_certificate(sender, cert)
            return
        try:
            request = decode_command(m.command)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._reject(sender, m, "a forwarded request that does not decode")
            return
        if not isinstance(request, ClientTxn) or len(m.command) > self._config.max_txn_bytes:
            self._reject(sender, m, "a forwarded request that is not a client transaction")
            return
        reason = self._rules.txn_refusal(request.txn)
        if reason is not None:
            self._reject(sender, m, reason)
            return
        self._order_txn(request, m.command)

    def _on_core_certificate(self, sender: NodeId, cert: CoreCertificate) -> None:
        store = self._store
        if store.knows_decision(cert):
            return
        if not store.knows_epoch(cert.epoch):
            if cert.epoch > store.epoch and len(self._future_certificates) < MAX_FUTURE_CERTIFICATES:
                self._future_certificates.append(cert)
            return
        reason = store.certificate_refusal(cert)
        if reason is not None:
            self._reject(sender, cert, reason)
            return
        key = watcher.certificate_key(cert)
        raft = self._raft
        if raft.is_leader:
            self._append_once(key, encode_command(CertifiedDecision(cert)))
            return
        leader = raft.leader_id
        encoded = msgspec.msgpack.encode(cert)
        if leader is not None and leader != sender:
            self._msgs.append((leader, ForwardedRequest(encoded, certificate=True)))
        self._watch(key, encoded, True)

    def _retry_future_certificates(self) -> None:
        held, self._future_certificates = self._future_certificates, []
        for cert in held:
            self._on_core_certificate(self.id, cert)

    def _on_evicted(self, node: NodeId) -> None:
        if node != self.id:
            self._raft.refuse_leader(node, self._now)
            self._to_remove.add(node)
            self._retry_removals()

    def _retry_removals(self) -> None:
        """Leader: take evicted nodes out of the Raft configuration, one at a time."""
        raft = self._raft
        if not raft.is_leader:
            return
        self._to_remove &= set(raft.members)
        for node in sorted(self._to_remove):
            outcome = raft.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_NODE, node), self._now)
            if isinstance(outcome, Accepted):
                self._to_remove.discard(node)
            return

    # ================================================================ leader changes
    def _after_input(self) -> None:
        raft = self._raft
        seen = (raft.term, raft.leader_id)
        if seen != self._seen_leader:
            self._seen_leader = seen
            self._on_leader_change()
        if raft.is_leader and self._leading_term != raft.term:
            self._become_leader()

    def _on_leader_change(self) -> None:
        raft = self._raft
        self._challenge = None
        self._head_cache = None
        self._next_challenge_at = self._now + self._config.challenge_interval_s * self._rng.random()
        if raft.term > self._leading_term:
            self._proof = None
        leader = raft.leader_id
        if leader is None or leader == self.id:
            return
        self._lift_depositions()
        self._resend_prepare_acks(leader)
        self._reforward_watched(leader)

    # ================================================================ ready
    def has_ready(self) -> bool:
        raft = self._raft
        return (
            raft.has_ready()
            or bool(self._msgs or self._front or self._rejected)
            or (self._commit_bound > self._store.applied_index and not self.apply_held)
            or self._announcement_due()
        )

    def ready(self) -> Ready:
        """Raft's Ready plus the shard's work (see the module docstring)."""
        self._certify_commit()
        inner = self._raft.ready()
        self._raft_ready = inner
        self._announce_candidacy(inner.messages)
        messages = [
            (to, self._sign_vote(to, m)) if type(m) is RequestVoteResponse and m.granted else (to, m)
            for to, m in inner.messages
        ]
        early = inner.early_messages
        if self._front:
            if early:
                early = self._front + early
            else:
                messages = self._front + messages
            self._front = []
        self._apply_certified()
        messages += self._msgs
        ready = Ready(
            messages,
            inner.hard_state,
            inner.entries,
            inner.snapshot,
            self._committed,
            inner.reads,
            self._wake_at(),
            inner.rejected + self._rejected if self._rejected else inner.rejected,
            # A follower's lock rides on Raft's commit index: durable before it is reported.
            inner.must_sync or (inner.hard_state is not None and not self._raft.is_leader),
            early,
        )
        self._msgs = []
        self._rejected = []
        self._committed = []
        return ready

    def advance(self, ready: Ready) -> None:
        """The runtime persisted, sent and applied ``ready``."""
        inner = self._raft_ready
        if inner is not None:
            self._raft_ready = None
            self._raft.advance(inner)

    def wake_at(self) -> float | None:
        """The next deadline, as ``Ready.wake_at`` would report it."""
        return self._wake_at()

    def _wake_at(self) -> float | None:
        raft = self._raft
        times = []
        wake = raft.wake_at()
        if wake is not None:
            times.append(wake)
        if raft.is_leader:
            if self._proof is not None and len(self._proof_answered) < len(raft.members) - 1:
                times.append(self._next_proof_at)
            period = self._config.vote_resend_s
            times.extend(sent + period for sent in self._vote_sent_at.values())
            times.extend(sent + period for sent in self._request_sent_at.values())
        elif raft.leader_id is not None and raft.leader_id != self.id:
            times.append(self._next_challenge_at)
            if self._challenge is not None:
                times.append(self._challenge[1] + self._config.challenge_interval_s)
            if self._watched:
                times.append(min(deadline for deadline, _, _ in self._watched.values()))
        return min(times) if times else None

    def take_core_messages(self) -> list[CoreMessage]:
        """What this member sends the core (take after each turn)."""
        out, self._core_out = self._core_out, []
        return out

    def take_results(self) -> list[TxnOutcome]:
        """Transaction outcomes applied in this shard since the last call."""
        out, self._results = self._results, []
        return out

    # ================================================================ plumbing
    def _others(self) -> list[NodeId]:
        me = self.id
        return [m for m in sorted(self._raft.members) if m != me]

    def _broadcast(self, message: Any) -> None:
        self._msgs.extend((member, message) for member in self._others())

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self._rejected.append(Rejection(sender, type(message).__name__, reason))

    def _count(self, name: str) -> None:
        self.metrics[name] = self.metrics.get(name, 0) + 1

    def __repr__(self) -> str:
        raft = self._raft
        return (
            f"ShardReplica(shard={self._shard}, id={raft.id}, role={raft.role.value}, term={raft.term}, "
            f"leader={raft.leader_id}, lock={self._lock}, committed={self._commit_bound}, "
            f"applied={self._store.applied_index})"
        )


@dataclass(slots=True)
class _Recovered:
    hard_state: Any
    snapshot: Any
    entries: list[Entry]


def _rechained(recovered: RecoveredState) -> _Recovered:
    """``recovered`` with every entry's digest: storage engines keep an entry's
    fields, not its digest, which is a function of the log before it."""
    if recovered.snapshot is not None:
        raise ConfigError("a shard's log is never compacted: a recovered snapshot cannot continue its hash chain")
    entries: list[Entry] = []
    digest = b""
    for entry in recovered.entries:
        digest = entry_digest(digest, entry.term, entry.index, entry.kind, entry.data)
        if entry.digest and entry.digest != digest:
            raise ConfigError(f"recovered entry {entry.index} breaks the hash chain")
        entries.append(ChainedEntry(entry.term, entry.index, entry.kind, entry.data, digest))
    return _Recovered(recovered.hard_state, None, entries)


def _handlers() -> dict[type, Handler]:
    table: dict[type, Handler] = dict.fromkeys(RAFT_MESSAGE_TYPES, ShardReplica._on_raft)
    table.update(
        {
            SignedVote: ShardReplica._on_signed_vote,
            LeaderProof: ShardReplica._on_leader_proof,
            CommitAnnouncement: ShardReplica._on_announcement,
            Candidacy: ShardReplica._on_candidacy,
            ForwardedRequest: ShardReplica._on_forwarded,
            HeadChallenge: ShardReplica._on_head_challenge,
            HeadAnswer: ShardReplica._on_head_answer,
            HeadRelay: ShardReplica._on_head_relay,
            Suspicion: ShardReplica._on_suspicion,
            EvidenceNotice: ShardReplica._on_evidence_notice,
            PrepareAck: ShardReplica._on_prepare_ack,
            CoreCertificate: ShardReplica._on_core_certificate,
        }
    )
    return table


_HANDLERS = _handlers()
