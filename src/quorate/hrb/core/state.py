"""``CoreState``: the core's deterministic state machine (docs/hrb.md sections 3–5).

Theory of operation. The core's BFT group (HotStuff or PBFT, see
``quorate.hrb.core.replica``) orders opaque commands; every member applies
the committed ones, in order, to its ``CoreState`` and gets the same
**decisions** — ``TxnBegin``, ``TxnDecision``, ``Evict``, ``EpochChange`` —
numbered 1, 2, ... within the epoch (the index a decision's certificate
names). Everything that affects the state machine lives in this file and in
the pure helpers it calls (``quorate.hrb.txn``, ``quorate.hrb.reputation``,
``quorate.hrb.core.evidence``); its data is one ``CoreSnapshot``.

Every command is checked again here, by every member, with public keys only
(a Byzantine member may order anything): a command that fails is **refused**
with a reason, counted (``refusals``), and, when its signature proves who
sent it, recorded against the signer as a reputation fact.

- ``TxnRequest``: the leader's signature (``txn_request_bytes``); the shard
  exists and is the transaction's home shard; the signer is one of its
  current members; the transaction is well formed and within bounds (size,
  operations, key length). **How the core knows a shard's leader**: from the
  requests themselves, like a Raft follower — each request names the
  leader's term, and the core keeps the highest (term, leader) it accepted
  per shard. Under ``shard_quorum = "majority"`` followers are crash-only by
  assumption, so only an elected leader ever claims a term: a request from
  an older term (a deposed leader) or from a second claimant of the known
  term is refused. Under ``"byzantine"`` a follower may lie about being
  leader, and a lie about a higher term would lock the real leader out, so
  the core does not let an unproven claim raise the bar: it accepts a request
  from any current member of the home shard (what a transaction does is
  proven anyway by the involved shards' certified votes) and only records
  the claim. Either way, evicted nodes are never heard again.
- ``ShardVote``: the proof's signatures over ``shard_vote_bytes`` — the
  leader's, and under ``"byzantine"`` 2f + 1 distinct current members'
  (f of the shard's current size); then ``TxnTable.vote`` (the first vote per
  shard counts; abort at a ``no``; commit when every involved shard said yes).
- ``RemovalProposal``: judged by ``quorate.hrb.core.evidence.judge``; a
  conviction is an ``Evict``: the node leaves its shard, is marked evicted
  (never in a core again), and if it is a core member the epoch changes now.
- ``ReputationReport``: a shard leader's challenge statistics, signed,
  newer than the shard's last report, capped per node.
- ``Tick``: a core member's signed count of tick periods. The **log clock**
  is the (f + 1)-th largest count over the members: at least one honest
  member has counted that far, so Byzantine members cannot run it ahead.
  Transactions time out, and epoch changes start over, on this clock.
- ``DkgSubmission`` / ``DkgTimeout`` / ``DkgOutcome``: the epoch change.
  When ``epoch_length`` decisions are made (or a core member is evicted),
  the next members are chosen by reputation (``select_core``, ties by a
  beacon hashed from the decision chain) and their key generation runs
  through this log: every ordered message becomes a numbered ``DkgItem``
  that old members relay to the next ones, f + 1 of whom (any phase) may
  order its close. When 2f' + 1 next members report the same key, the core
  decides ``EpochChange(e + 1, members, threshold, group key)`` — its last
  decision — and the successor snapshot (``successor``) is what the next
  core starts from; undecided transactions are carried in it, their
  deadlines moved to the new clock. f' + 1 failures, or the attempt's
  deadline, start a new attempt (members who sat it out are penalised).

Choices the design left open, and why these:

- *Who times a transaction out.* A core member's clock cannot be trusted
  and the BFT leader's timestamps can be skewed by a Byzantine leader, so
  time is itself ordered: signed tick counts, the (f + 1)-th largest wins.
  A timeout then happens at the same log position at every member, which
  keeps "decided exactly once" a property of the log alone.
- *Check at admission or at apply.* Both: ``precheck`` keeps junk out of
  the log (cheap for honest members), and ``apply`` checks again because a
  Byzantine member can put anything into the log. Only the apply-time check
  is relied on for safety; a refusal is itself deterministic, so refusal
  counts and reputation facts agree across members.
- *When the epoch changes.* After ``epoch_length`` decisions rather than
  after a span of time: decisions are what the log agrees on, so every
  member starts the change at the same index, with no extra agreement on
  "now". An eviction of a core member forces it early (the core should not
  keep a convicted member's key share in use).
- *Re-keying.* A fresh threshold key per epoch from a key generation run by
  the next members (no dealer, no resharing of the old key): a member that
  leaves holds no share of the new key (its shares are encrypted to the
  next members), so a departed or evicted member cannot sign for the new
  core, and the
  old key certifies the change, so a shard follows the chain of keys with
  one signature check per epoch.

Effects of ``apply`` (``Decided``, ``Refused``, ``DkgItemOrdered``,
``EpochClosed``) are what the replica acts on: certify, report, relay,
hand over.

Invariants (``check``): the transaction table's own; every decided index is
contiguous; nothing is decided after the epoch closed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from quorate.core.signing import Verifier
from quorate.errors import invariant
from quorate.hrb.core.commands import (
    DkgItem,
    DkgOutcome,
    DkgSubmission,
    DkgTimeout,
    ReputationReport,
    Tick,
    decode_command,
    dkg_outcome_bytes,
    dkg_submission_bytes,
    dkg_timeout_bytes,
    report_bytes,
    tick_bytes,
)
from quorate.hrb.core.evidence import NoSignedMessageChecker, SignedMessageChecker, Verdict, judge
from quorate.hrb.core.snapshot import (
    CoreSnapshot,
    DynamicCoreSnapshot,
    NodeRecord,
    ShardRecord,
    Transition,
    encode_snapshot,
    reshard_state,
)
from quorate.hrb.core.threshold import PHASES
from quorate.hrb.messages import (
    ACTIONS,
    TXN_ID_BYTES,
    Decision,
    EpochChange,
    Evict,
    MappedTxnBegin,
    RemovalProposal,
    ShardVote,
    TxnDecision,
    TxnRequest,
    encode_decision,
    shard_vote_bytes,
    txn_request_bytes,
)
from quorate.hrb.reputation import NodeFacts, record, select_core
from quorate.hrb.reshard import (
    HandoffReport,
    ReshardRequest,
    ReshardState,
    ReshardTable,
    handoff_bytes,
    reshard_request_bytes,
)
from quorate.hrb.txn import CoreTxn, TxnTable, VoteOutcome, involved_shards
from quorate.ids import NodeId

__all__ = [
    "Check",
    "CoreState",
    "Decided",
    "DkgItemOrdered",
    "EpochClosed",
    "Refused",
    "bft_threshold",
]

_encoder = msgspec.msgpack.Encoder()


def bft_threshold(n: int) -> int:
    """t = 2f + 1 with f = ⌊(n − 1)/3⌋: partials a certificate needs."""
    return 2 * ((n - 1) // 3) + 1


@dataclass(frozen=True, slots=True)
class Check:
    """Why a command is refused; ``blamed`` is its proven signer (None when
    the signature does not prove who sent it), ``invalid`` whether that
    counts against the signer (a duplicate or a stale retry does not)."""

    reason: str
    blamed: int | None = None
    invalid: bool = True


@dataclass(frozen=True, slots=True)
class Decided:
    """The ``index``-th decision of the epoch; ``shards`` are the shards whose
    members get its certificate, ``next_members`` the next core's members
    (an ``EpochChange``'s)."""

    index: int
    decision: Decision
    encoded: bytes
    shards: tuple[int, ...]
    next_members: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """A command refused by every member alike."""

    command: str
    reason: str
    blamed: int | None


@dataclass(frozen=True, slots=True)
class DkgItemOrdered:
    """Item ``seq`` of epoch ``epoch``'s key generation, to relay to ``to``."""

    epoch: int
    seq: int
    item: DkgItem
    to: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EpochClosed:
    """The epoch change is decided; ``state`` (an encoded ``CoreSnapshot``)
    is what epoch ``epoch``'s core starts from, handed to ``members``."""

    epoch: int
    members: tuple[int, ...]
    threshold: int
    commitments: tuple[bytes, ...]
    state: bytes


Effect = Decided | Refused | DkgItemOrdered | EpochClosed


class CoreState:
    """The core's state machine (see the module docstring)."""

    __slots__ = ("_effects", "_evicted", "checker", "reshard", "s", "txns", "verifier")

    def __init__(
        self,
        snapshot: CoreSnapshot,
        *,
        verifier: Verifier,
        checker: SignedMessageChecker | None = None,
    ) -> None:
        self.s = snapshot
        self.verifier = verifier
        self.checker: SignedMessageChecker = checker or NoSignedMessageChecker()
        self.txns = TxnTable(snapshot.txns, decided_kept=snapshot.rules.decided_kept)
        self._evicted = {n for n, f in snapshot.facts.items() if f.evicted}
        self._effects: list[Effect] = []
        rs = reshard_state(snapshot)
        self.reshard = None if rs is None else ReshardTable(rs)
        """The shard map and the change in flight, under dynamic sharding."""

    # -- views -----------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.s.epoch

    @property
    def members(self) -> tuple[int, ...]:
        return self.s.members

    @property
    def closed(self) -> bool:
        return self.s.closed

    @property
    def evicted(self) -> frozenset[int]:
        return frozenset(self._evicted)

    @property
    def f(self) -> int:
        return (len(self.s.members) - 1) // 3

    def shard_members(self, shard: int) -> tuple[int, ...]:
        record = self.s.shards.get(shard)
        return () if record is None else record.members

    def needs_clock(self) -> bool:
        """Something waits for log time (the replica proposes ticks only then)."""
        return not self.s.closed and (
            bool(self.s.txns.open)
            or self.s.transition is not None
            or (self.reshard is not None and self.reshard.pending is not None)
        )

    def snapshot_bytes(self) -> bytes:
        return encode_snapshot(self.s)

    def digest(self) -> bytes:
        return hashlib.sha256(self.snapshot_bytes()).digest()

    # -- applying the log ---------------------------------------------------------------
    def apply(self, data: bytes) -> list[Effect]:
        """Apply one committed command; returns what it caused."""
        self._effects = []
        try:
            command = decode_command(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._refuse("bytes", "malformed command", None)
            return self._take()
        kind = type(command).__name__
        if self.s.closed:
            if not isinstance(command, Tick | DkgSubmission | DkgTimeout | DkgOutcome):
                # Ordered after the epoch change: the sender must send it to the next core.
                self._refuse(kind, f"epoch {self.s.epoch} is over", None, invalid=False)
            return self._take()
        handler = _HANDLERS[type(command)]
        handler(self, command)
        self._maybe_start_transition()
        return self._take()

    def precheck(self, command: Any) -> Check | None:
        """What a member checks before it proposes ``command`` to the log (the
        same checks ``apply`` makes, without changing anything): None to
        order it. A removal proposal whose refusal counts against its
        accuser is ordered anyway, so the failed accusation is recorded."""
        if self.s.closed:
            return Check(f"epoch {self.s.epoch} is over", None, invalid=False)
        if isinstance(command, TxnRequest):
            return self._check_request(command)
        if isinstance(command, ShardVote):
            return self._check_vote(command)[0]
        if isinstance(command, RemovalProposal):
            verdict = self.judge(command)
            if verdict.offender is None and not verdict.blame_accuser:
                return Check(verdict.reason, verdict.accuser, invalid=False)
            return None
        if isinstance(command, ReputationReport):
            return self._check_report(command)
        if isinstance(command, DkgSubmission | DkgTimeout | DkgOutcome):
            return self._check_dkg(command)
        if isinstance(command, ReshardRequest):
            return self._check_reshard_request(command)
        if isinstance(command, HandoffReport):
            return self._check_handoff(command)
        return Check(f"{type(command).__name__} is not accepted from outside the core")

    def _take(self) -> list[Effect]:
        out, self._effects = self._effects, []
        return out

    def _refuse(self, command: str, reason: str, blamed: int | None, *, invalid: bool = True) -> None:
        """Refuse a command; ``blamed`` (its proven signer) gets an ``invalid``
        fact unless ``invalid`` is False (a harmless duplicate, a stale retry)."""
        refusals = self.s.refusals
        refusals[reason] = refusals.get(reason, 0) + 1
        if blamed is not None and invalid:
            record(self.s.facts, blamed, "invalid")
        self._effects.append(Refused(command, reason, blamed))

    def _decide(self, decision: Decision, shards: tuple[int, ...], next_members: tuple[int, ...] = ()) -> None:
        invariant(not self.s.closed, "a decision after the epoch closed")
        encoded = encode_decision(decision)
        self.s.decisions += 1
        self.s.chain = hashlib.sha256(self.s.chain + encoded).digest()
        self._effects.append(Decided(self.s.decisions, decision, encoded, shards, next_members))

    def _known(self, node: object) -> bool:
        return isinstance(node, int) and node in self.s.nodes and node not in self._evicted

    # -- transactions ---------------------------------------------------------------------
    def _check_request(self, r: TxnRequest) -> Check | None:
        """What is wrong with a request, by the state as it is (None: nothing)."""
        if not self._known(r.leader):
            return Check("sender is not a node of the deployment or is evicted")
        if not self.verifier.verify(NodeId(r.leader), txn_request_bytes(r.shard, r.leader, r.term, r.txn), r.signature):
            return Check("bad signature")
        leader = r.leader
        shard = self.s.shards.get(r.shard)
        if shard is None:
            return Check(f"unknown shard {r.shard}", leader)
        if r.txn.home_shard != r.shard:
            return Check(f"home shard {r.txn.home_shard} is not the requesting shard {r.shard}", leader)
        if leader not in shard.members:
            return Check(f"node {leader} is not a member of shard {r.shard}", leader)
        problem = self._txn_problem(r)
        if problem is not None:
            return Check(problem, leader)
        if self.s.rules.shard_quorum == "majority":
            if r.term < shard.term:
                return Check(f"stale leader: term {r.term} < {shard.term}", leader, invalid=False)
            if r.term == shard.term and shard.leader not in (0, leader):
                return Check(f"node {shard.leader} leads term {r.term}", leader)
        if self.txns.is_known(r.txn.txn_id):
            return Check("duplicate transaction", leader, invalid=False)
        if self.reshard is not None:
            moving = next((op.key for op in r.txn.ops if self.reshard.in_transit(op.key)), None)
            if moving is not None:
                return Check(f"busy: key {moving!r} is moving between shards", leader, invalid=False)
        if len(self.txns.open) >= self.s.rules.max_open_txns:
            return Check("busy: too many open transactions", leader, invalid=False)
        return None

    def _on_request(self, r: TxnRequest) -> None:
        problem = self._check_request(r)
        if problem is not None:
            self._refuse("TxnRequest", problem.reason, problem.blamed, invalid=problem.invalid)
            return
        leader = r.leader
        shard = self.s.shards[r.shard]
        if r.term >= shard.term:
            shard.term, shard.leader = r.term, leader
        record(self.s.facts, leader, "requests")
        if self.reshard is None:
            shards = involved_shards(r.txn, len(self.s.shards))
            begin = self.txns.begin(r.txn, shards, self.s.clock + self.s.rules.txn_timeout_ticks)
            self._decide(begin, shards)
            return
        current = self.reshard.current
        shards = tuple(sorted({current.owner(op.key) for op in r.txn.ops}))
        begin = self.txns.begin(r.txn, shards, self.s.clock + self.s.rules.txn_timeout_ticks)
        self._decide(MappedTxnBegin(begin.txn, begin.shards, current.version), shards)

    def _txn_problem(self, r: TxnRequest) -> str | None:
        rules = self.s.rules
        txn = r.txn
        size = len(_encoder.encode(txn))
        if size > rules.max_txn_bytes:
            return f"oversize transaction: {size} bytes > {rules.max_txn_bytes}"
        if len(txn.txn_id) != TXN_ID_BYTES:
            return f"a transaction id is {TXN_ID_BYTES} bytes, got {len(txn.txn_id)}"
        if not txn.ops:
            return "a transaction has no operation"
        if len(txn.ops) > rules.max_txn_ops:
            return f"too many operations: {len(txn.ops)} > {rules.max_txn_ops}"
        for op in txn.ops:
            if op.action not in ACTIONS:
                return f"unknown action {op.action!r}"
            if not op.key or len(op.key.encode()) > rules.max_key_bytes:
                return f"a key must be 1..{rules.max_key_bytes} bytes"
        return None

    def _check_vote(self, v: ShardVote) -> tuple[Check | None, list[int]]:
        """What is wrong with a vote's proof (None: nothing) and the members
        whose acknowledgement verified."""
        shard = self.s.shards.get(v.shard)
        proof = v.proof
        if shard is None:
            return Check(f"unknown shard {v.shard}"), []
        if proof.leader not in shard.members or not self._known(proof.leader):
            return Check(f"proof signer {proof.leader} is not a member of shard {v.shard}"), []
        data = shard_vote_bytes(v.txn_id, v.shard, v.vote, v.reason, proof.term, proof.index, proof.digest)
        if not self.verifier.verify(NodeId(proof.leader), data, proof.leader_signature):
            return Check("bad leader signature on the vote"), []
        leader = proof.leader
        if len(v.reason.encode()) > self.s.rules.max_reason_bytes:
            return Check("oversize vote reason", leader), []
        ackers: list[int] = []
        if self.s.rules.shard_quorum == "byzantine":
            members = shard.members
            ackers = [
                m
                for m, sig in sorted(proof.acks.items())
                if m in members and m not in self._evicted and self.verifier.verify(NodeId(m), data, sig)
            ]
            needed = bft_threshold(len(members))
            if len(ackers) < needed:
                return Check(f"vote proof has {len(ackers)} valid member acks, {needed} needed", leader), []
        if self.txns.outcome(v.txn_id) is not None:
            return Check(VoteOutcome.ALREADY_DECIDED.value, leader, invalid=False), []
        return None, ackers

    def _on_vote(self, v: ShardVote) -> None:
        kind = "ShardVote"
        problem, ackers = self._check_vote(v)
        if problem is not None:
            self._refuse(kind, problem.reason, problem.blamed, invalid=problem.invalid)
            return
        leader = v.proof.leader
        outcome, decision = self.txns.vote(v.txn_id, v.shard, v.vote, v.reason)
        if outcome is VoteOutcome.RECORDED:
            record(self.s.facts, leader, "requests")
            for m in ackers:
                record(self.s.facts, m, "acks")
            if decision is not None:
                self._decide_txn(decision)
            return
        harmless = outcome in (VoteOutcome.DUPLICATE, VoteOutcome.ALREADY_DECIDED)
        self._refuse(kind, outcome.value, leader, invalid=not harmless)

    def _decide_txn(self, decided: tuple[TxnDecision, CoreTxn]) -> None:
        decision, txn = decided
        # The involved shards apply it; the home shard answers its agent.
        shards = tuple(sorted(set(txn.shards) | {txn.txn.home_shard}))
        self._decide(decision, shards)

    # -- time -------------------------------------------------------------------------------
    def _on_tick(self, t: Tick) -> None:
        kind = "Tick"
        s = self.s
        if t.epoch != s.epoch or t.member not in s.members or t.member in self._evicted:
            self._refuse(kind, "tick from outside this epoch's core", None)
            return
        if not self.verifier.verify(NodeId(t.member), tick_bytes(t.epoch, t.member, t.count), t.signature):
            self._refuse(kind, "bad signature", None)
            return
        if t.count <= s.ticks.get(t.member, 0):
            return  # a repeat (a restarted member, a duplicate): nothing new
        s.ticks[t.member] = t.count
        counts = sorted((s.ticks.get(m, 0) for m in s.members if m not in self._evicted), reverse=True)
        f = self.f
        clock = counts[f] if len(counts) > f else 0
        if clock <= s.clock:
            return
        s.clock = clock
        for decision in self.txns.expire(clock):
            self._decide_txn(decision)
        if self.reshard is not None:
            abort = self.reshard.expire(clock)
            if abort is not None:
                self._decide(abort, tuple(sorted(s.shards)))
        transition = s.transition
        if transition is not None and clock >= transition.deadline:
            self._restart_transition("the attempt timed out")

    # -- splits, merges and agent moves (quorate.hrb.reshard) ------------------------------
    def _check_reshard_request(self, r: ReshardRequest) -> Check | None:
        if self.reshard is None:
            return Check("dynamic sharding is off in this deployment", None, invalid=False)
        if r.proposer not in self.s.members or r.proposer in self._evicted:
            return Check(f"node {r.proposer} is not a member of this epoch's core")
        if not self.verifier.verify(NodeId(r.proposer), reshard_request_bytes(r), r.signature):
            return Check("bad signature")
        return None

    def _on_reshard_request(self, r: ReshardRequest) -> None:
        problem = self._check_reshard_request(r)
        if problem is not None:
            self._refuse("ReshardRequest", problem.reason, problem.blamed, invalid=problem.invalid)
            return
        table = self.reshard
        assert table is not None
        begin = table.request(r, self.s.clock, self.s.shards.keys())
        if isinstance(begin, str):
            # Counted by the table and the core alike; a stale or busy proposal is no offence.
            self._refuse("ReshardRequest", f"reshard refused: {begin}", r.proposer, invalid=False)
            return
        for txn_id, open_txn in list(self.txns.open.items()):
            moving = next((op.key for op in open_txn.txn.ops if table.in_transit(op.key)), None)
            if moving is not None:
                self._decide_txn(self.txns.abort(txn_id, f"key {moving!r} moves between shards"))
        self._decide(begin, tuple(sorted(self.s.shards)))

    def _check_handoff(self, h: HandoffReport) -> Check | None:
        if self.reshard is None:
            return Check("dynamic sharding is off in this deployment", None, invalid=False)
        if not self._known(h.member):
            return Check("sender is not a node of the deployment or is evicted")
        if not self.verifier.verify(NodeId(h.member), handoff_bytes(h), h.signature):
            return Check("bad signature")
        pending = self.reshard.pending
        if pending is None or pending.begin.seq != h.seq:
            return Check("hand-off report for no change in flight", h.member, invalid=False)
        return None

    def _on_handoff(self, h: HandoffReport) -> None:
        problem = self._check_handoff(h)
        if problem is not None:
            self._refuse("HandoffReport", problem.reason, problem.blamed, invalid=problem.invalid)
            return
        table = self.reshard
        assert table is not None
        members = self.shard_members(h.source)
        outcome, commit = table.report(h, members, (len(members) - 1) // 3 + 1)
        if commit is not None:
            self._decide(commit, tuple(sorted(self.s.shards)))
        elif outcome.value not in ("recorded", "duplicate report"):
            self._refuse("HandoffReport", outcome.value, h.member)

    # -- reputation -------------------------------------------------------------------------
    def _check_report(self, r: ReputationReport) -> Check | None:
        if not self._known(r.leader):
            return Check("sender is not a node of the deployment or is evicted")
        if not self.verifier.verify(NodeId(r.leader), report_bytes(r), r.signature):
            return Check("bad signature")
        shard = self.s.shards.get(r.shard)
        if shard is None or r.leader not in shard.members:
            return Check(f"node {r.leader} is not a member of shard {r.shard}", r.leader)
        if self.s.rules.shard_quorum == "majority" and (
            r.term < shard.term or (r.term == shard.term and shard.leader not in (0, r.leader))
        ):
            return Check("report from a node that is not the shard's leader", r.leader, invalid=False)
        if r.period <= shard.report_period:
            return Check("stale report", r.leader, invalid=False)
        return None

    def _on_report(self, r: ReputationReport) -> None:
        problem = self._check_report(r)
        if problem is not None:
            self._refuse("ReputationReport", problem.reason, problem.blamed, invalid=problem.invalid)
            return
        shard = self.s.shards[r.shard]
        shard.report_period = r.period
        cap = self.s.rules.report_cap
        for fact, counts in (("answered", r.answered), ("missed", r.missed)):
            for node, count in sorted(counts.items()):
                if node in shard.members and node != r.leader and isinstance(count, int) and count > 0:
                    record(self.s.facts, node, fact, min(count, cap))

    # -- eviction ---------------------------------------------------------------------------
    def judge(self, p: RemovalProposal) -> Verdict:
        """The verdict every member reaches on ``p`` by the state as it is."""
        s = self.s
        failed = {n: f.failed_accusations for n, f in s.facts.items() if f.failed_accusations}
        return judge(
            p,
            known=s.nodes,
            evicted=self._evicted,
            failed_accusations=failed,
            max_failed_accusations=s.rules.max_failed_accusations,
            shard_members={k: r.members for k, r in s.shards.items()},
            former_shard={n: r.shard for n, r in s.nodes.items()},
            shard_quorum=s.rules.shard_quorum,
            evidence_kinds=s.rules.evidence_kinds,
            verifier=self.verifier,
            checker=self.checker,
        )

    def _on_removal(self, p: RemovalProposal) -> None:
        verdict = self.judge(p)
        if verdict.offender is None:
            if verdict.blame_accuser and verdict.accuser is not None:
                record(self.s.facts, verdict.accuser, "failed_accusations")
            self._refuse("RemovalProposal", verdict.reason, verdict.accuser, invalid=False)
            return
        self._evict(verdict.offender, verdict.digest)

    def _evict(self, node: int, digest: bytes) -> None:
        s = self.s
        record(s.facts, node, "evicted")
        self._evicted.add(node)
        home = s.nodes[node].shard
        shard = s.shards.get(home)
        if shard is not None:
            shard.members = tuple(m for m in shard.members if m != node)
            if shard.leader == node:
                shard.leader = 0
        self._decide(Evict(node, digest), (home,))
        if node in s.members:
            s.epoch_change_wanted = True
        transition = s.transition
        if transition is not None and node in transition.members:
            self._restart_transition(f"next member {node} was evicted")

    # -- epoch change -------------------------------------------------------------------------
    def _maybe_start_transition(self) -> None:
        s = self.s
        if s.closed or s.transition is not None:
            return
        if s.epoch_change_wanted or s.decisions >= s.rules.epoch_length:
            self._start_transition(attempt=0, items=[])

    def _restart_transition(self, reason: str) -> None:
        s = self.s
        transition = s.transition
        assert transition is not None
        for node in transition.members:
            if node not in transition.submitted and node not in self._evicted:
                record(s.facts, node, "missed")
        refusals = s.refusals
        key = f"epoch change attempt failed: {reason}"
        refusals[key] = refusals.get(key, 0) + 1
        self._start_transition(transition.attempt + 1, transition.items, previous=transition.members)

    def _start_transition(self, attempt: int, items: list[DkgItem], previous: tuple[int, ...] = ()) -> None:
        s = self.s
        epoch = s.epoch + 1
        beacon = hashlib.sha256(
            b"quorate/hrb/epoch-beacon/v1" + s.beacon + epoch.to_bytes(8, "big") + attempt.to_bytes(4, "big") + s.chain
        ).digest()
        candidates = [n for n in s.nodes if n not in self._evicted]
        shard_of = {n: r.shard for n, r in s.nodes.items()}
        members = select_core(
            candidates, s.facts, shard_of, s.rules.core_size, max(1, len(s.shards)), beacon, s.rules.weights
        )
        threshold = bft_threshold(len(members))
        session = hashlib.sha256(
            b"quorate/hrb/dkg-session/v1" + epoch.to_bytes(8, "big") + attempt.to_bytes(4, "big")
            + beacon + b"".join(int(m).to_bytes(8, "big") for m in members)
        ).digest()
        s.transition = Transition(
            epoch=epoch,
            attempt=attempt,
            session=session,
            members=members,
            threshold=threshold,
            deadline=s.clock + s.rules.epoch_change_timeout_ticks,
            items=items,
        )
        start = DkgItem(
            kind="start",
            session=session,
            members=members,
            threshold=threshold,
            encryption_keys=tuple(s.nodes[m].encryption_key for m in members),
            previous_group_key=s.commitments[0],
        )
        self._order_item(start, extra=previous)

    def _order_item(self, item: DkgItem, extra: tuple[int, ...] = ()) -> None:
        transition = self.s.transition
        assert transition is not None
        transition.items.append(item)
        to = tuple(sorted(set(transition.members) | set(extra)))
        self._effects.append(DkgItemOrdered(transition.epoch, len(transition.items) - 1, item, to))

    def _check_dkg(self, command: DkgSubmission | DkgTimeout | DkgOutcome) -> Check | None:
        transition = self.s.transition
        if transition is None or command.epoch != transition.epoch or command.session != transition.session:
            return Check("no such key generation in progress", None, invalid=False)
        if command.sender not in transition.members:
            return Check(f"node {command.sender} is not a next member")
        if isinstance(command, DkgSubmission):
            data = dkg_submission_bytes(command.epoch, command.session, command.sender, command.message)
        elif isinstance(command, DkgTimeout):
            data = dkg_timeout_bytes(command.epoch, command.session, command.sender, command.phase)
        else:
            data = dkg_outcome_bytes(command)
        if not self.verifier.verify(NodeId(command.sender), data, command.signature):
            return Check("bad signature")
        return None

    def _on_dkg_submission(self, d: DkgSubmission) -> None:
        kind = "DkgSubmission"
        problem = self._check_dkg(d)
        if problem is not None:
            self._refuse(kind, problem.reason, problem.blamed, invalid=problem.invalid)
            return
        transition = self.s.transition
        assert transition is not None
        digest = hashlib.sha256(d.message).digest()
        mine = transition.submitted.setdefault(d.sender, [])
        if digest in mine:
            return  # the same message again (relayed through several members)
        if len(mine) >= len(PHASES):
            self._refuse(kind, "more key generation messages than phases", d.sender)
            return
        mine.append(digest)
        self._order_item(DkgItem(kind="message", session=d.session, sender=d.sender, message=d.message))

    def _on_dkg_timeout(self, d: DkgTimeout) -> None:
        kind = "DkgTimeout"
        problem = self._check_dkg(d)
        if problem is not None:
            self._refuse(kind, problem.reason, problem.blamed, invalid=problem.invalid)
            return
        transition = self.s.transition
        assert transition is not None
        if d.phase not in PHASES:
            self._refuse(kind, f"unknown phase {d.phase!r}", d.sender)
            return
        if d.phase in transition.closed:
            return
        voters = transition.timeouts.setdefault(d.phase, [])
        if d.sender in voters:
            return
        voters.append(d.sender)
        if len(voters) > (len(transition.members) - 1) // 3:
            transition.closed.append(d.phase)
            self._order_item(DkgItem(kind="close", session=d.session, phase=d.phase))

    def _on_dkg_outcome(self, o: DkgOutcome) -> None:
        kind = "DkgOutcome"
        problem = self._check_dkg(o)
        if problem is not None:
            self._refuse(kind, problem.reason, problem.blamed, invalid=problem.invalid)
            return
        transition = self.s.transition
        assert transition is not None
        if o.sender in transition.outcomes:
            return
        n = len(transition.members)
        f_next = (n - 1) // 3
        if not o.ok:
            transition.outcomes[o.sender] = b""
            failures = sum(1 for d in transition.outcomes.values() if not d)
            if failures > f_next:
                self._restart_transition(f"key generation failed at {failures} next members: {o.reason}")
            return
        if len(o.commitments) != transition.threshold or any(len(c) != 48 for c in o.commitments):
            self._refuse(kind, "malformed key in outcome", o.sender)
            return
        digest = hashlib.sha256(_encoder.encode((o.commitments, o.qualified))).digest()
        transition.outcomes[o.sender] = digest
        transition.keys.setdefault(digest, (o.commitments, o.qualified))
        agreeing = sum(1 for d in transition.outcomes.values() if d == digest)
        if agreeing >= transition.threshold:
            self._close_epoch(transition, transition.keys[digest][0])

    def _close_epoch(self, transition: Transition, commitments: tuple[bytes, ...]) -> None:
        s = self.s
        for member in s.members:
            if member not in self._evicted:
                record(s.facts, member, "served")
        change = EpochChange(transition.epoch, transition.members, transition.threshold, commitments[0])
        self._decide(change, tuple(sorted(s.shards)), transition.members)
        s.closed = True
        successor = self.successor(transition, commitments)
        self._effects.append(
            EpochClosed(transition.epoch, transition.members, transition.threshold, commitments, encode_snapshot(successor))
        )

    def successor(self, transition: Transition, commitments: tuple[bytes, ...]) -> CoreSnapshot:
        """The state epoch ``transition.epoch`` starts from: this one, with the
        new core and key, a fresh clock (deadlines moved back by the old
        clock), no decision made yet."""
        s = self.s
        txns = msgspec.msgpack.decode(_encoder.encode(s.txns), type=type(s.txns))
        table = TxnTable(txns, decided_kept=s.rules.decided_kept)
        table.rebase(s.clock)
        kind = CoreSnapshot
        extra: dict[str, Any] = {}
        if self.reshard is not None:
            kind = DynamicCoreSnapshot
            state = self.reshard.state
            extra["reshard"] = msgspec.msgpack.decode(_encoder.encode(state), type=ReshardState)
        return kind(
            **extra,
            epoch=transition.epoch,
            members=transition.members,
            threshold=transition.threshold,
            commitments=commitments,
            rules=s.rules,
            beacon=s.beacon,
            nodes=dict(s.nodes),
            shards={k: ShardRecord(r.members, r.term, r.leader, r.report_period) for k, r in s.shards.items()},
            facts={n: NodeFacts(**{f: getattr(v, f) for f in NodeFacts.__struct_fields__}) for n, v in s.facts.items()},
            txns=txns,
            ticks={},
            clock=0,
            decisions=0,
            chain=s.chain,
            transition=None,
            epoch_change_wanted=False,
            closed=False,
            refusals=dict(s.refusals),
        )

    # -- checks ----------------------------------------------------------------------------------
    def check(self) -> None:
        self.txns.check()
        if self.reshard is not None:
            self.reshard.check()
        invariant(
            self._evicted == {n for n, f in self.s.facts.items() if f.evicted},
            "the evicted set differs from the facts",
        )

    def known_nodes(self) -> Mapping[int, NodeRecord]:
        return self.s.nodes


_HANDLERS: dict[type, Any] = {
    TxnRequest: CoreState._on_request,
    ShardVote: CoreState._on_vote,
    RemovalProposal: CoreState._on_removal,
    ReputationReport: CoreState._on_report,
    Tick: CoreState._on_tick,
    DkgSubmission: CoreState._on_dkg_submission,
    DkgTimeout: CoreState._on_dkg_timeout,
    DkgOutcome: CoreState._on_dkg_outcome,
    ReshardRequest: CoreState._on_reshard_request,
    HandoffReport: CoreState._on_handoff,
}
