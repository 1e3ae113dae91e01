"""A PBFT replica as a sans-IO state machine (Castro & Liskov, OSDI '99 and
TOCS 2002 §4).

Theory of operation. This module holds the replica's state, the normal
case, execution, the view change and durability; three concerns live beside
it as ``PbftReplica`` methods defined in their own modules and attached to
the class below: ``quorate.pbft.checkpoints`` (stable checkpoints, garbage
collection), ``quorate.pbft.state_transfer`` (fetching the entries below a
stable checkpoint) and ``quorate.pbft.retransmission`` (re-sending, status
messages, answering peers that lag). ``quorate.pbft.view_change`` is the
new primary's decision procedure in MAC mode, as pure functions.

- **Views and the primary** (§4.1): replicas are numbered by their position in
  ``replicas``; the primary of view v is ``replicas[v % n]``. With
  f = (n - 1) // 3 and quorum q = ``bft_quorum(n)`` (2f + 1 when n = 3f + 1),
  any two quorums share an honest replica.
- **Normal case** (§4.2): any replica takes a client command (``propose``); a
  backup forwards it to the primary. The primary batches commands (up to
  ``batch_max``, waiting at most ``batch_timeout_s``) and sends a signed (or
  MAC'd, see below) ``PrePrepare`` assigning the next sequence number n, with h < n <= h + L.
  A backup accepts at most one pre-prepare per (v, n) and answers with a
  ``Prepare``. *prepared(m, v, n)*: the pre-prepare plus q - 1 matching
  prepares from distinct backups; the replica then sends ``Commit``.
  *committed-local*: prepared plus q matching commits. Batches execute in
  sequence order; each command executes once (deduplicated by digest) and
  comes out as one ``Entry(term=origin view, index=next global index)``.
- **Checkpoints and garbage collection** (§4.3): after executing n with
  n mod K = 0 a replica signs a ``Checkpoint`` on the running hash of its
  committed entries. q matching checkpoints are a proof; the checkpoint is
  then stable, h moves to n and everything about sequence numbers <= h is
  dropped. A replica that learns a stable checkpoint above what it executed
  fetches the missing entries (``FetchState``) and checks them against the
  proof's hash (§5.3.2), so a single reply from any replica is enough.
- **View change** (§4.4, §4.5.2): a backup that waits for a command longer
  than T sends a signed ``ViewChange`` for v + 1 with its stable checkpoint
  proof and its prepared certificates P, and stops taking normal-case
  messages. It also suspects a *slow* primary (after Prime's turnaround
  bound and Aardvark's expectations of the primary): a backup times each
  request it forwards to the primary until a pre-prepare assigns it, and
  each batch it accepts until it prepares (a round among the backups that
  the primary cannot slow down); once the median of its last
  ``ORDER_SAMPLES`` orderings in the view exceeds ``slow_primary_factor``
  times the median preparing time plus ``batch_timeout_s``, and
  ``slow_primary_min_delay_s``, it asks for the next view. A primary that
  holds every pre-prepare until just before T would otherwise keep its
  view at a fraction of a percent of the throughput. One faulty backup
  cannot depose a primary this way: a view change needs f + 1 to spread.
  Once q view changes for v + 1 are in, it waits T·2^k for the new
  view (k counts successive failed view changes) before moving on. f + 1 view
  changes for higher views pull a replica along. Every valid view change for
  a view not yet installed is kept by view and author, so the quorum for v
  counts the view change of a replica that has since timed out and moved on;
  asked by a replica still waiting in v, such a replica relays the view
  changes it holds for v (their authors signed them, so anyone may relay
  them). Otherwise replicas split between v and v + 1, neither side with q
  and the side ahead short of f + 1, would wait forever. The new primary
  picks q view changes V and computes O: from the highest stable checkpoint min-s in V to
  the highest prepared sequence number max-s, the batch of the highest-view
  certificate, or a null batch. Backups recompute O from V and accept the
  ``NewView`` only if it matches. Safety: a batch committed at n in view v was
  prepared at q replicas, so any q view changes include a certificate for it
  and no certificate for another batch at n in a later view can exist.
  (With MACs the view change works from claims instead; see below.)
- **Equivocation** (``quorate.core.evidence``): every signed pre-prepare,
  prepare, commit and checkpoint is a statement recorded in an
  ``EvidencePool``. Two conflicting ones by one replica (seen directly, inside
  certificates, or through ``Prepare.primary_signature``) are evidence: it is
  broadcast, every honest replica verifies it, excludes the offender and drops
  its messages. A proven-faulty primary is suspected at once.
- **Durability**: ``Ready.hard_state`` (``PbftHardState``) holds the view, own
  statements above the stable checkpoint (signed or MAC'd), P (and Q with
  MACs) and the stable proof, so a restarted replica never makes a
  conflicting statement nor forgets what it prepared; committed entries go to
  ``Ready.entries``. After a restart the replica re-emits every recovered
  entry once, in its first ``Ready``.
- **Retransmission and catching up** (after the BFT library's status
  messages): a replica with unfinished work that made no progress for
  ``retransmit_interval_s`` re-sends its own latest messages and a ``Status``
  (view, executed sequence number). Peers answer what it lacks, at most once
  per peer and thing per period: commit certificates (``CommittedBatch``:
  pre-prepare + q commits, which any replica may execute, even during a view
  change; with MACs, a MAC'd word per replica instead, see below), their
  stable checkpoint proof, or the ``NewView`` of a view it missed (signed by
  that view's primary, so any replica may relay it).

Authentication (§3.2, MAC authenticators): by default every message is
signed through the injected ``Signer``. With ``authentication="macs"`` the
normal case is authenticated with MACs and only the view change and
checkpoints are signed:

- Pre-prepares, prepares and commits carry an authenticator from the
  injected ``MacAuthenticator`` (one MAC per receiver over the bytes a
  signature would cover); each receiver checks its own entry, about a
  microsecond instead of a signature verification. A retransmission reuses
  the vector, which covers every receiver.
- The view change is the one TOCS 2002 gives for MACs
  (``quorate.pbft.view_change`` has the decision procedure and why it is
  safe): a replica keeps, per sequence number above its stable checkpoint,
  P (the digest it prepared in the highest view) and Q (the highest view in
  which it pre-prepared each digest, a bounded set), durably. Its signed
  ``ViewChange`` carries these claims and their batches instead of
  certificates. The new primary runs the decision procedure over every
  valid view change it holds for the view and sends the ``NewView`` once no
  sequence number is left undecided (re-running it as more arrive); backups
  verify each view change in the ``NewView``, re-run the procedure on that
  set and accept only its exact O. The pre-prepares of O need no
  authenticator: the primary's signature on the new-view covers them.
- Checkpoints, view changes and new-views stay signed: they are what a third
  party must be able to check (stable-checkpoint proofs, a view change's
  claims, the new view), so no view-change acknowledgements are needed.
- Catching up without certificates: commit certificates made of MAC'd
  commits convince nobody but their receivers, so they are not relayed.
  Instead a replica answers a lagging peer's ``Status`` with its own word,
  MAC'd for that peer, that it executed each batch the peer lacks
  (``CommittedBatch`` without commits). f + 1 distinct replicas vouching
  for one batch at one sequence number include an honest one, which
  executed only a committed batch, so the peer executes it. This is how a
  replica that an equivocating primary fed a different batch (and that can
  never prepare the committed one in that view) catches up before the next
  stable checkpoint; checkpoints and state transfer remain the fallback.
- What MACs give up: only signed messages — checkpoints, view changes,
  new-views — can convict an equivocator. Conflicting MAC'd pre-prepares,
  prepares or commits prove nothing to a third party; they can cost a view
  change or a round of catching up, never agreement. The durable record of
  this replica's own statements still keeps it from ever sending two
  different pre-prepares, prepares or commits for one (view, seq), MAC'd or
  signed.
"""

from __future__ import annotations

import random
import statistics
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from quorate.core.evidence import (
    Evidence,
    SignedStatement,
    sign_statement,
    verify_statement,
)
from quorate.core.protocol import ProposeOutcome, Queued, Refused
from quorate.core.quorum import bft_quorum, max_faulty
from quorate.core.ready import ENTRY_NORMAL, Entry, Ready, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.errors import ConfigError, invariant
from quorate.ids import NodeId
from quorate.pbft import checkpoints, retransmission, state_transfer
from quorate.pbft.checkpoints import chain_digest
from quorate.pbft.config import AUTH_MACS, PbftConfig
from quorate.pbft.messages import (
    DIGEST_BYTES,
    KIND_COMMIT,
    KIND_PRE_PREPARE,
    KIND_PREPARE,
    Checkpoint,
    ClaimedBatch,
    Commit,
    CommittedBatch,
    FetchState,
    Macs,
    NewView,
    PbftHardState,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    SlotClaim,
    StateTransfer,
    Status,
    ViewChange,
    batch_digest,
    command_digest,
)
from quorate.pbft.retransmission import HELP_NEW_VIEW, HELP_VIEW_CHANGES
from quorate.pbft.view_change import NewViewDecision, decide_new_view, pre_prepared_claims_per_seq
from quorate.pbft.vote_pool import VotePool


class MacAuthenticator(Protocol):
    """MAC authenticators for the normal case (``authentication="macs"``):
    this replica's session keys with its peers. ``quorate.crypto.mac.SessionKeys``
    does the work; the runtime adapts it (protocol cores do not import crypto)."""

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]:
        """One MAC of ``data`` per receiver, keyed by receiver id."""
        ...

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool:
        """True iff ``macs`` holds a valid MAC from ``sender`` for this replica."""
        ...


class RecoveredState(Protocol):
    """What a restarted replica finds on disk: ``quorate.storage.Recovered``
    (named structurally, since protocol cores do not import storage)."""

    hard_state: Any
    entries: list[Entry]


GENESIS_STATE_DIGEST = bytes(DIGEST_BYTES)
"""The running hash of the empty history."""
VIEW_CHANGES_KEPT_PER_REPLICA = 4
"""View changes kept per author for views not yet installed: enough for a
replica that moved on a few views while others still gather the older ones,
bounded against a replica signing one for every view."""


ORDER_SAMPLES = 8
"""Orderings (forward to pre-prepare) a backup judges the primary's speed on."""
PREPARE_SAMPLES = 32
"""Preparing times (pre-prepare to prepared) a backup keeps as its yardstick."""


class _Slot:
    """What a replica knows about one sequence number in the current view."""

    __slots__ = ("accepted_at", "commits", "committed", "digest", "my_commit", "my_prepare",
                 "pre_prepare", "prepared", "prepares", "votes")

    def __init__(self) -> None:
        self.accepted_at: float | None = None
        self.pre_prepare: PrePrepare | None = None
        self.digest = b""
        self.prepares: dict[int, Prepare] = {}
        self.votes: dict[bytes, list[Prepare]] = {}
        self.commits: dict[bytes, dict[int, Commit]] = {}
        self.prepared = False
        self.committed = False
        self.my_prepare: Prepare | None = None
        self.my_commit: Commit | None = None


class PbftReplica:
    """One PBFT replica. See the module docstring for the protocol."""

    # -------------------------------------------------------- checkpoints.py
    _make_checkpoint = checkpoints._make_checkpoint
    _on_checkpoint = checkpoints._on_checkpoint
    _record_checkpoint = checkpoints._record_checkpoint
    _valid_checkpoint_proof = checkpoints._valid_checkpoint_proof
    _stabilize = checkpoints._stabilize
    # ----------------------------------------------------- state_transfer.py
    _request_state = state_transfer._request_state
    _on_fetch_state = state_transfer._on_fetch_state
    _on_state_transfer = state_transfer._on_state_transfer
    # ----------------------------------------------------- retransmission.py
    _retransmit = retransmission._retransmit
    _on_status = retransmission._on_status
    _vouch = retransmission._vouch
    _on_committed_batch = retransmission._on_committed_batch
    _on_vouch = retransmission._on_vouch
    _may_help = retransmission._may_help
    _help = retransmission._help
    _own_pre_prepare = retransmission._own_pre_prepare
    _help_stale = retransmission._help_stale

    def __init__(
        self,
        id: NodeId,
        replicas: Sequence[NodeId],
        *,
        config: PbftConfig,
        signer: Signer,
        verifier: Verifier,
        rng: random.Random,
        now: float,
        recovered: RecoveredState | None = None,
        authenticator: MacAuthenticator | None = None,
    ) -> None:
        self.replicas: tuple[NodeId, ...] = tuple(NodeId(int(r)) for r in replicas)
        if len(set(self.replicas)) != len(self.replicas):
            raise ConfigError(f"replica ids must be distinct, got {list(self.replicas)}")
        if id not in self.replicas:
            raise ConfigError(f"replica {id} is not in the group {list(self.replicas)}")
        if signer.node != id:
            raise ConfigError(f"the signer holds the key of {signer.node}, not of replica {id}")
        self.config = config.validate(len(self.replicas))
        self._macs = config.authentication == AUTH_MACS
        if self._macs and authenticator is None:
            raise ConfigError('authentication="macs" needs a MacAuthenticator (the replica\'s session keys)')
        self._authenticator: MacAuthenticator | None = authenticator if self._macs else None
        self._id = id
        self.n = len(self.replicas)
        self.f = max_faulty(self.n)
        self.quorum = bft_quorum(self.n)
        self._members = frozenset(int(r) for r in self.replicas)
        self._others = tuple(r for r in self.replicas if r != id)
        self._signer = signer
        self._verifier = verifier
        self._rng = rng
        self._now = now
        self._k = config.checkpoint_interval
        self._window = config.window

        self.pool = VotePool(verifier)
        self.excluded_dropped = 0
        """Messages dropped because their sender was proven faulty."""
        self.view_changes_started = 0

        # view state
        self.view = 0
        self.view_active = True
        self._slots: dict[int, _Slot] = {}
        self._next_seq = 1
        self._new_view_msg: NewView | None = None
        self._my_vc: ViewChange | None = None
        self._vc_latest: dict[int, ViewChange] = {}
        """Each replica's view change for the highest view (the f + 1 rule)."""
        self._vc_by_view: dict[int, dict[int, ViewChange]] = {}
        """View -> author -> its view change, for views above the installed
        one: the quorum for a view counts every valid view change for it,
        including those of replicas that have since moved further on."""
        self._vc_valid: set[bytes] = set()
        self._vc_attempts = 0

        # checkpoints and execution
        self.stable_seq = 0
        self._stable_proof: tuple[Checkpoint, ...] = ()
        self._stable_entry_index = 0
        self.executed_seq = 0
        self.entry_index = 0
        self.state_digest = GENESIS_STATE_DIGEST
        self._executed: set[bytes] = set()
        self._own_checkpoints: dict[int, Checkpoint] = {}
        self._cp_by_replica: dict[int, dict[int, Checkpoint]] = {}
        self._cp_votes: dict[tuple[int, bytes], dict[int, Checkpoint]] = {}
        self._prepared_certs: dict[int, PreparedCertificate] = {}
        self._commit_certs: dict[int, CommittedBatch] = {}
        # MAC mode: what the view change claims instead of certificates
        self._p_claims: dict[int, SlotClaim] = {}
        """P: seq -> the digest prepared in the highest view."""
        self._q_claims: dict[int, dict[bytes, int]] = {}
        """Q: seq -> digest -> the highest view it was pre-prepared in."""
        self._claim_batches: dict[bytes, ClaimedBatch] = {}
        """The batches P and Q name, by digest."""
        self._q_bound = pre_prepared_claims_per_seq(self.n)
        self._vouches: dict[int, dict[int, tuple[bytes, PrePrepare]]] = {}
        """MAC mode: seq -> replica -> the batch it says it executed there."""
        self._announce = False
        self._signed: dict[tuple[str, int, int], bytes] = {}
        self._log: list[Entry] = []
        self._log_first = 1
        self._helped: set[tuple[int, int]] = set()
        self._helped_since = now

        # client commands waiting to be ordered
        self._pending: dict[bytes, bytes] = {}
        self._pending_from: dict[bytes, int] = {}
        self._pending_per_peer: dict[int, int] = {}
        self._unassigned: dict[bytes, None] = {}
        self._assigned: set[bytes] = set()
        # how fast the primary orders (see "slow primary" above)
        self._forwarded_at: dict[bytes, float] = {}
        """Digest -> when we last sent the command to this view's primary."""
        self._order_delays: deque[float] = deque(maxlen=ORDER_SAMPLES)
        self._prepare_delays: deque[float] = deque(maxlen=PREPARE_SAMPLES)

        # timers (absolute deadlines on the local clock)
        self._batch_deadline: float | None = None
        self._request_deadline: float | None = None
        self._vc_deadline: float | None = None
        self._retransmit_deadline: float | None = None
        self._progress_mark: tuple[int, bool, int, int, bool] = (-1, True, -1, -1, False)
        self._fresh_period = False
        """The retransmission period running is the first after an idle spell (see ``_mark``)."""

        # work for the runtime
        self._out: list[tuple[NodeId, Any]] = []
        self._committed: list[Entry] = []
        self._to_persist: list[Entry] = []
        self._rejected: list[Rejection] = []
        self._hard_dirty = False

        self._handlers: dict[type, Callable[[NodeId, Any], None]] = {
            Request: self._on_request,
            PrePrepare: self._on_pre_prepare,
            Prepare: self._on_prepare,
            Commit: self._on_commit,
            Checkpoint: self._on_checkpoint,
            ViewChange: self._on_view_change,
            NewView: self._on_new_view,
            FetchState: self._on_fetch_state,
            StateTransfer: self._on_state_transfer,
            Status: self._on_status,
            CommittedBatch: self._on_committed_batch,
            Evidence: self._on_evidence,
        }
        if recovered is not None and recovered.hard_state is not None:
            self._recover(recovered)
        self._arm_retransmit()

    # ------------------------------------------------------------------ API

    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def primary(self) -> NodeId:
        """The primary of the current view (the one being changed to, in a view change)."""
        return self.primary_of(self.view)

    def primary_of(self, view: int) -> NodeId:
        return self.replicas[view % self.n]

    @property
    def is_primary(self) -> bool:
        """True while this replica leads an installed view."""
        return self.view_active and self.primary == self._id

    @property
    def detections(self) -> list[tuple[NodeId, str, int, int]]:
        """Equivocations proven so far: (offender, kind, height, round)."""
        return [(ev.offender, ev.first.kind, ev.first.height, ev.first.round) for ev in self.pool.detections]

    @property
    def excluded(self) -> frozenset[NodeId]:
        return frozenset(self.pool.excluded)

    @property
    def authenticator(self) -> MacAuthenticator | None:
        """The session keys that authenticate the normal case with
        ``authentication="macs"``; ``None`` when every message is signed."""
        return self._authenticator

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self._now = now
        name = type(message).__name__
        if int(sender) not in self._members or sender == self._id:
            self._reject(sender, name, "sender is not another replica of this group")
            return
        if self.pool.is_excluded(sender) and not isinstance(message, Evidence):
            self.excluded_dropped += 1
            self._reject(sender, name, "excluded")
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            self._reject(sender, name, "unknown message type")
            return
        try:
            handler(sender, message)
        except (TypeError, ValueError, AttributeError, IndexError, KeyError, OverflowError) as exc:
            # Fields of the wrong shape from an in-process peer; a decoded
            # message cannot get here (the codec checks types).
            self._reject(sender, name, f"malformed: {type(exc).__name__}")
        self._arm_retransmit()

    def tick(self, now: float) -> None:
        self._now = now
        if self._batch_deadline is not None and now >= self._batch_deadline:
            self._batch_deadline = None
            self._maybe_flush(force=True)
        if self._request_deadline is not None and now >= self._request_deadline:
            self._request_deadline = None
            if self.view_active and self._pending:
                self._start_view_change(self.view + 1)
        if self._vc_deadline is not None and now >= self._vc_deadline:
            self._vc_deadline = None
            if not self.view_active:
                self._vc_attempts += 1
                self._start_view_change(self.view + 1)
        if self._retransmit_deadline is not None and now >= self._retransmit_deadline:
            self._retransmit_deadline = None
            mark = self._mark()
            if mark == self._progress_mark:
                self._retransmit()
            self._fresh_period = False
            self._progress_mark = self._mark()
            self._arm_retransmit(fresh=False)
        self._arm_retransmit()

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        self._now = now
        if len(command) > self.config.max_command_bytes:
            return Refused(f"command of {len(command)} bytes exceeds max_command_bytes")
        d = command_digest(command)
        if d in self._executed:
            return Refused("duplicate: already executed")
        if d in self._pending:
            return Refused("duplicate: already pending")
        if len(self._pending) >= self.config.max_pending:
            return Refused("busy: too many pending commands")
        self._add_pending(d, command, None)
        if self.view_active:
            if self.primary == self._id:
                self._enqueue(d)
                self._maybe_flush()
            else:
                self._forward(d, command)
                if self._request_deadline is None:
                    self._request_deadline = now + self.config.view_change_timeout_s
        self._arm_retransmit()
        return Queued(self.view)

    def has_ready(self) -> bool:
        return bool(self._out or self._committed or self._to_persist or self._rejected or self._hard_dirty)

    def wake_at(self) -> float | None:
        """``quorate.runtime.driver.DeadlineProbe``: while ``has_ready()`` is
        False, ``ready()`` holds nothing but this deadline and ``advance`` does
        nothing, so a driver may skip building it."""
        return self._wake_at()

    def ready(self) -> Ready:
        ready = Ready(
            messages=self._out,
            hard_state=self._hard_state() if self._hard_dirty else None,
            entries=self._to_persist,
            committed=self._committed,
            rejected=self._rejected,
            wake_at=self._wake_at(),
        )
        self._out, self._to_persist, self._committed, self._rejected = [], [], [], []
        self._hard_dirty = False
        return ready

    def advance(self, ready: Ready) -> None:
        """Nothing to release: ``ready()`` already handed its work over."""

    # ------------------------------------------------------------ plumbing

    def _send(self, to: NodeId, message: Any) -> None:
        self._out.append((to, message))

    def _broadcast(self, message: Any) -> None:
        out = self._out
        for r in self._others:
            out.append((r, message))

    def _reject(self, sender: NodeId, name: str, reason: str) -> None:
        self._rejected.append(Rejection(sender, name, reason))

    def _wake_at(self) -> float | None:
        best: float | None = None
        for t in (self._batch_deadline, self._request_deadline, self._vc_deadline, self._retransmit_deadline):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def _mark(self) -> tuple[int, bool, int, int, bool]:
        """Where this replica stands; retransmission happens when it has not
        moved for a whole period. The last part, whether the next batch to
        execute has its pre-prepare, counts only in the first period after
        the replica had nothing to do (``_fresh_period``): that period starts
        with a command, and the batch holding it leaves the primary only
        ``batch_timeout_s`` later, so with long batches or distant regions it
        can end before the round could finish; counting only executions,
        every replica would then re-send everything to every peer (n^2
        messages, more than the round itself). Later periods are judged on
        execution alone, so a stuck batch is re-sent as promptly as before."""
        slot = self._slots.get(self.executed_seq + 1)
        pre_prepared = self._fresh_period and slot is not None and slot.pre_prepare is not None
        return (self.view, self.view_active, self.executed_seq, self.stable_seq, pre_prepared)

    def _unfinished(self) -> bool:
        return bool(
            self._pending
            or not self.view_active
            or self.executed_seq < self.stable_seq
            or self._own_checkpoints
            or self._next_seq - 1 > self.executed_seq
            or self._announce
        )

    def _arm_retransmit(self, fresh: bool = True) -> None:
        if self._retransmit_deadline is None and self._unfinished():
            self._retransmit_deadline = self._now + self.config.retransmit_interval_s
            self._fresh_period = fresh
            self._progress_mark = self._mark()

    def _sign(self, kind: str, seq: int, view: int, payload: bytes) -> bytes:
        """Sign a once-per-slot statement, never two different ones (the
        record is durable, so this holds across restarts)."""
        self._record_statement(kind, seq, view, payload)
        return sign_statement(self._signer, kind, seq, view, payload).signature

    def _record_statement(self, kind: str, seq: int, view: int, payload: bytes) -> None:
        """Record (durably) that this replica stated ``payload`` for the slot."""
        key = (kind, view, seq)
        previous = self._signed.get(key)
        invariant(previous is None or previous == payload, f"replica {self._id} would equivocate on {key}")
        self._signed[key] = payload
        self._hard_dirty = True

    def _may_sign(self, kind: str, seq: int, view: int, payload: bytes) -> bool:
        previous = self._signed.get((kind, view, seq))
        return previous is None or previous == payload

    def _authenticate(self, kind: str, seq: int, view: int, payload: bytes, data: bytes) -> Macs:
        """MAC mode: the authenticator of a once-per-slot statement for every
        other replica, recorded (durably) like a signature would be."""
        assert self._authenticator is not None, "MAC mode has an authenticator"
        self._record_statement(kind, seq, view, payload)
        return tuple(sorted(self._authenticator.macs(data, self._others).items()))

    def _authentic(self, sender: NodeId, data: bytes, macs: Macs) -> bool:
        """MAC mode: ``macs`` holds a valid MAC from ``sender`` for this replica."""
        assert self._authenticator is not None
        # Only this replica's entry is checked. An authenticator is sorted by
        # receiver with one entry each (``_authenticate``): find ours by
        # bisection instead of building an n-entry dict per message. Anything
        # else (unsorted, repeated ids) takes the dict as before.
        me = int(self._id)
        at = bisect_left(macs, (me,))
        if (
            at < len(macs)
            and macs[at][0] == me
            and (at + 1 == len(macs) or macs[at + 1][0] > me)
            and (at == 0 or macs[at - 1][0] < me)
        ):
            return self._authenticator.check(sender, data, {me: macs[at][1]})
        return self._authenticator.check(sender, data, dict(macs))

    def _observe(self, statement: Any) -> bool:
        """Record a verified statement; on equivocation broadcast the evidence
        and react. True when the statement's signer was just convicted."""
        return self._react(self.pool.observe(statement))

    def _observe_vote(self, kind: str, vote: Prepare | Commit) -> bool:
        """``_observe(vote.statement())``, keeping the vote itself
        (``quorate.pbft.vote_pool``)."""
        return self._react(self.pool.observe_vote(kind, vote))

    def _react(self, evidence: Evidence | None) -> bool:
        if evidence is None:
            return False
        self._broadcast(evidence)
        self._on_conviction(evidence.offender)
        return True

    def _on_conviction(self, offender: NodeId) -> None:
        if offender == self.primary and self.view_active and offender != self._id:
            self._start_view_change(self.view + 1)

    def _in_window(self, seq: int) -> bool:
        return self.stable_seq < seq <= self.stable_seq + self._window

    def _slot(self, seq: int) -> _Slot:
        slot = self._slots.get(seq)
        if slot is None:
            slot = self._slots[seq] = _Slot()
        return slot

    # ------------------------------------------------------ client commands

    def _add_pending(self, d: bytes, command: bytes, origin: int | None) -> None:
        self._pending[d] = command
        if origin is not None:
            self._pending_from[d] = origin
            self._pending_per_peer[origin] = self._pending_per_peer.get(origin, 0) + 1

    def _drop_pending(self, d: bytes) -> None:
        if self._pending.pop(d, None) is None:
            return
        self._unassigned.pop(d, None)
        origin = self._pending_from.pop(d, None)
        if origin is not None:
            left = self._pending_per_peer[origin] - 1
            if left:
                self._pending_per_peer[origin] = left
            else:
                del self._pending_per_peer[origin]

    def _on_request(self, sender: NodeId, m: Request) -> None:
        """At the primary: order it. At a backup (a replica that lost track
        of the view asks everyone, as a client would, §4.4): keep it and
        suspect the primary if it is not executed in time."""
        command = m.command
        if not isinstance(command, bytes) or len(command) > self.config.max_command_bytes:
            self._reject(sender, "Request", "oversize or malformed command")
            return
        d = command_digest(command)
        if d in self._executed or d in self._pending:
            return  # a retransmission: benign
        if (
            len(self._pending) >= self.config.max_pending
            or self._pending_per_peer.get(int(sender), 0) >= self.config.max_pending_per_peer
        ):
            self._reject(sender, "Request", "flow control: too many pending commands")
            return
        self._add_pending(d, command, int(sender))
        if not self.view_active:
            return
        if self.primary == self._id:
            self._enqueue(d)
            self._maybe_flush()
        else:
            # §4.4: a backup hands the command on to the primary and watches it.
            self._forward(d, command)
            if self._request_deadline is None:
                self._request_deadline = self._now + self.config.view_change_timeout_s

    def _forward(self, d: bytes, command: bytes) -> None:
        """A backup hands a command to the primary and times its ordering."""
        self._send(self.primary, Request(command))
        self._forwarded_at[d] = self._now

    def _time_ordering(self, batch: tuple[bytes, ...]) -> None:
        """A pre-prepare came: time the commands we forwarded, and suspect a
        primary that keeps taking far longer to order them than the backups
        take to prepare a batch."""
        forwarded = self._forwarded_at
        if not forwarded:
            return
        for command in batch:
            sent = forwarded.pop(command_digest(command), None)
            if sent is not None:
                self._order_delays.append(self._now - sent)
        factor = self.config.slow_primary_factor
        if factor <= 0 or len(self._order_delays) < ORDER_SAMPLES or not self._prepare_delays:
            return
        bound = max(
            factor * statistics.median(self._prepare_delays) + self.config.batch_timeout_s,
            self.config.slow_primary_min_delay_s,
        )
        if statistics.median(self._order_delays) > bound and self.view_active:
            self._start_view_change(self.view + 1)

    def _enqueue(self, d: bytes) -> None:
        if d in self._assigned:
            return
        self._unassigned[d] = None
        if self._batch_deadline is None:
            self._batch_deadline = self._now + self.config.batch_timeout_s

    def _maybe_flush(self, force: bool = False) -> None:
        """Primary: send full batches, and a partial one when its time is up."""
        if not self.view_active or self.primary != self._id:
            self._batch_deadline = None
            return
        batch_max = self.config.batch_max
        deadline_passed = force or (self._batch_deadline is not None and self._now >= self._batch_deadline)
        while self._unassigned and self._next_seq <= self.stable_seq + self._window:
            if len(self._unassigned) < batch_max and not deadline_passed:
                break
            digests = []
            for d in self._unassigned:
                digests.append(d)
                if len(digests) == batch_max:
                    break
            for d in digests:
                del self._unassigned[d]
                self._assigned.add(d)
            self._issue_pre_prepare(tuple(self._pending[d] for d in digests))
        if not self._unassigned:
            self._batch_deadline = None
        elif self._next_seq > self.stable_seq + self._window:
            # Window full: the next stable checkpoint calls _maybe_flush again.
            self._batch_deadline = None
        elif deadline_passed or self._batch_deadline is None:
            self._batch_deadline = self._now + self.config.batch_timeout_s

    def _issue_pre_prepare(self, batch: tuple[bytes, ...]) -> None:
        seq = self._next_seq
        self._next_seq += 1
        digest = batch_digest(self.view, batch)
        if self._macs:
            unauthenticated = PrePrepare(self.view, seq, self.view, batch, b"")
            macs = self._authenticate(
                KIND_PRE_PREPARE, seq, self.view, digest, unauthenticated.authenticated_bytes(digest)
            )
            pp = PrePrepare(self.view, seq, self.view, batch, b"", macs)
            self._record_pre_prepared(seq, digest, self.view, pp)
        else:
            signature = self._sign(KIND_PRE_PREPARE, seq, self.view, digest)
            pp = PrePrepare(self.view, seq, self.view, batch, signature)
            self.pool.observe(pp.statement(self._id, digest))
        slot = self._slot(seq)
        slot.pre_prepare, slot.digest = pp, digest
        self._broadcast(pp)
        self._check_prepared(seq, slot)

    # --------------------------------------------------------- normal case

    def _normal_case_checks(self, sender: NodeId, name: str, view: int, seq: int) -> bool:
        if view != self.view:
            if view > self.view:
                self._reject(sender, name, "future view")
                self._announce = True  # we may be behind: ask at the next quiet moment
            return False
        if not self.view_active:
            self._reject(sender, name, "view change in progress")
            return False
        if not self._in_window(seq):
            if seq > self.stable_seq + self._window:
                self._reject(sender, name, "sequence number above the high water mark")
                self._announce = True
            return False
        return True

    def _on_pre_prepare(self, sender: NodeId, m: PrePrepare) -> None:
        if not self._normal_case_checks(sender, "PrePrepare", m.view, m.seq):
            return
        if sender != self.primary:
            self._reject(sender, "PrePrepare", "forged: sender is not the primary")
            return
        if m.origin_view != m.view:
            self._reject(sender, "PrePrepare", "origin view differs outside a new-view")
            return
        if len(m.batch) > self.config.batch_max or any(
            len(c) > self.config.max_command_bytes for c in m.batch
        ):
            self._reject(sender, "PrePrepare", "oversize batch")
            return
        slot = self._slot(m.seq)
        held = slot.pre_prepare
        if held is not None and (
            held.macs == m.macs and bool(m.macs) if self._macs else held.signature == m.signature
        ):
            if slot.committed:
                self._help(sender, m.seq, slot)
            return  # retransmission
        digest = m.digest()
        if self._macs:
            if not self._authentic(sender, m.authenticated_bytes(digest), m.macs):
                self._reject(sender, "PrePrepare", "bad authenticator")
                return
        elif not verify_statement(m.statement(sender, digest), self._verifier):
            self._reject(sender, "PrePrepare", "bad signature")
            return
        elif self._observe(m.statement(sender, digest)):
            return
        if slot.pre_prepare is not None:
            return
        if not self._may_sign(KIND_PREPARE, m.seq, m.view, digest):
            self._reject(sender, "PrePrepare", "conflicts with this replica's own prepare")
            return
        self._accept_pre_prepare(m.seq, slot, m, digest)
        self._time_ordering(m.batch)

    def _accept_pre_prepare(self, seq: int, slot: _Slot, pp: PrePrepare, digest: bytes) -> None:
        slot.pre_prepare, slot.digest = pp, digest
        slot.accepted_at = self._now
        if self._pending or self.primary_of(pp.view) == self._id:  # for commands still to order
            for command in pp.batch:
                self._assigned.add(command_digest(command))
        if self._macs:
            self._record_pre_prepared(seq, digest, pp.view, pp)
        else:
            # Prepares that arrived first, for another batch, may carry the
            # primary's signature on it: that proves the primary equivocated.
            for other, votes in slot.votes.items():
                if other != digest:
                    self._check_primary_signature(votes[0])
        if self.primary_of(pp.view) != self._id:
            if self._macs:
                unauthenticated = Prepare(pp.view, seq, digest, int(self._id), b"")
                macs = self._authenticate(
                    KIND_PREPARE, seq, pp.view, digest, unauthenticated.authenticated_bytes()
                )
                p = Prepare(pp.view, seq, digest, int(self._id), b"", b"", macs)
            else:
                signature = self._sign(KIND_PREPARE, seq, pp.view, digest)
                p = Prepare(pp.view, seq, digest, int(self._id), signature, pp.signature)
            slot.my_prepare = p
            slot.prepares[int(self._id)] = p
            slot.votes.setdefault(digest, []).append(p)
            self._broadcast(p)
        self._check_prepared(seq, slot)

    def _check_primary_signature(self, p: Prepare) -> None:
        if not p.primary_signature or self.pool.is_excluded(self.primary_of(p.view)):
            return
        st = SignedStatement(
            int(self.primary_of(p.view)), KIND_PRE_PREPARE, p.seq, p.view, p.digest, p.primary_signature
        )
        if verify_statement(st, self._verifier):
            self._observe(st)

    def _vote_admissible(self, sender: NodeId, name: str, m: Prepare | Commit) -> bool:
        """The checks a prepare and a commit share: the sender is the author,
        the slot is neither below our stable checkpoint (then show the peer
        the proof) nor outside the view and window."""
        if m.replica != sender:
            self._reject(sender, name, "forged: claimed author is not the sender")
            return False
        if m.view == self.view and self.view_active and m.seq <= self.stable_seq:
            self._help_stale(sender)
            return False
        return self._normal_case_checks(sender, name, m.view, m.seq)

    def _on_prepare(self, sender: NodeId, m: Prepare) -> None:
        if not self._vote_admissible(sender, "Prepare", m):
            return
        if sender == self.primary:
            self._reject(sender, "Prepare", "the primary does not prepare")
            return
        if len(m.digest) != DIGEST_BYTES:
            self._reject(sender, "Prepare", "malformed digest")
            return
        slot = self._slot(m.seq)
        previous = slot.prepares.get(int(sender))
        if previous is not None and previous.digest == m.digest:
            if slot.committed:
                self._help(sender, m.seq, slot)
            return
        if self._macs:
            if not self._authentic(sender, m.authenticated_bytes(), m.macs):
                self._reject(sender, "Prepare", "bad authenticator")
                return
            if previous is not None:
                return  # a conflicting MAC'd prepare: it proves nothing to others
        elif not verify_statement(m.statement(), self._verifier):
            self._reject(sender, "Prepare", "bad signature")
            return
        elif self._observe_vote(KIND_PREPARE, m) or previous is not None:
            return
        slot.prepares[int(sender)] = m
        slot.votes.setdefault(m.digest, []).append(m)
        if not self._macs and slot.pre_prepare is not None and m.digest != slot.digest:
            self._check_primary_signature(m)
        self._check_prepared(m.seq, slot)

    def _check_prepared(self, seq: int, slot: _Slot) -> None:
        if slot.prepared or slot.pre_prepare is None:
            return
        votes = slot.votes.get(slot.digest, ())
        if len(votes) < self.quorum - 1:
            return
        pp = slot.pre_prepare
        if not self._may_sign(KIND_COMMIT, seq, pp.view, slot.digest):
            return
        slot.prepared = True
        self._hard_dirty = True
        if slot.accepted_at is not None:
            self._prepare_delays.append(self._now - slot.accepted_at)
        if self._macs:
            self._p_claims[seq] = SlotClaim(seq, slot.digest, pp.view)
            unsigned = Commit(pp.view, seq, slot.digest, int(self._id), b"")
            macs = self._authenticate(KIND_COMMIT, seq, pp.view, slot.digest, unsigned.authenticated_bytes())
            c = Commit(pp.view, seq, slot.digest, int(self._id), b"", macs)
        else:
            self._prepared_certs[seq] = PreparedCertificate(pp, tuple(votes[: self.quorum - 1]))
            c = Commit(pp.view, seq, slot.digest, int(self._id), self._sign(KIND_COMMIT, seq, pp.view, slot.digest))
        slot.my_commit = c
        slot.commits.setdefault(slot.digest, {})[int(self._id)] = c
        self._broadcast(c)
        self._check_committed(slot)

    def _on_commit(self, sender: NodeId, m: Commit) -> None:
        if not self._vote_admissible(sender, "Commit", m):
            return
        if len(m.digest) != DIGEST_BYTES:
            self._reject(sender, "Commit", "malformed digest")
            return
        slot = self._slot(m.seq)
        voters = slot.commits.get(m.digest)
        if voters is not None and int(sender) in voters:
            if slot.committed:
                self._help(sender, m.seq, slot)
            return
        if self._macs:
            if not self._authentic(sender, m.authenticated_bytes(), m.macs):
                self._reject(sender, "Commit", "bad authenticator")
                return
        elif not verify_statement(m.statement(), self._verifier):
            self._reject(sender, "Commit", "bad signature")
            return
        elif self._observe_vote(KIND_COMMIT, m):
            return
        slot.commits.setdefault(m.digest, {})[int(sender)] = m
        self._check_committed(slot)

    def _check_committed(self, slot: _Slot) -> None:
        if slot.committed or not slot.prepared:
            return
        commits = slot.commits.get(slot.digest, {})
        if len(commits) >= self.quorum and slot.pre_prepare is not None:
            slot.committed = True
            pp = slot.pre_prepare
            self._commit_certs[pp.seq] = CommittedBatch(pp, tuple(commits.values())[: self.quorum])
            self._execute_ready()

    # ---------------------------------------------------------- execution

    def _execute_ready(self) -> None:
        progressed = False
        while True:
            cert = self._commit_certs.get(self.executed_seq + 1)
            if cert is None:
                break
            self._execute(self.executed_seq + 1, cert.pre_prepare)
            progressed = True
        if progressed:
            self._vc_attempts = 0
            self._restart_request_timer()

    def _restart_request_timer(self) -> None:
        if self._pending and self.view_active and self.primary != self._id:
            self._request_deadline = self._now + self.config.view_change_timeout_s
        else:
            self._request_deadline = None

    def _commit_entry(self, entry: Entry) -> None:
        self.state_digest = chain_digest(self.state_digest, entry)
        self.entry_index = entry.index
        self._committed.append(entry)
        self._to_persist.append(entry)
        self._log.append(entry)
        if len(self._log) > 2 * self.config.retained_entries:
            drop = len(self._log) - self.config.retained_entries
            del self._log[:drop]
            self._log_first += drop

    def _execute(self, seq: int, pp: PrePrepare) -> None:
        executed = self._executed
        for command in pp.batch:
            d = command_digest(command)
            if d in executed:
                continue  # §4.1: a command is executed at most once
            executed.add(d)
            self._drop_pending(d)
            self._commit_entry(Entry(pp.origin_view, self.entry_index + 1, ENTRY_NORMAL, command))
        self.executed_seq = seq
        self._hard_dirty = True
        self._announce = True
        if seq % self._k == 0:
            self._make_checkpoint(seq)

    # ------------------------------------------------- MAC-mode claims

    def _record_pre_prepared(self, seq: int, digest: bytes, view: int, pp: PrePrepare) -> None:
        """Q: this replica pre-prepared ``digest`` at ``seq`` in ``view``.
        Keep the latest view per digest and at most ``_q_bound`` digests,
        dropping the lowest views (see ``quorate.pbft.view_change`` for why
        that is safe)."""
        by_digest = self._q_claims.setdefault(seq, {})
        if by_digest.get(digest, -1) < view:
            by_digest[digest] = view
        self._claim_batches.setdefault(digest, ClaimedBatch(pp.origin_view, pp.batch))
        self._hard_dirty = True
        if len(by_digest) > self._q_bound:
            for dropped, _ in sorted(by_digest.items(), key=lambda dv: (dv[1], dv[0]))[
                : len(by_digest) - self._q_bound
            ]:
                del by_digest[dropped]
            self._prune_claimed_batches()

    def _prune_claimed_batches(self) -> None:
        named = {c.digest for c in self._p_claims.values()}
        for by_digest in self._q_claims.values():
            named.update(by_digest)
        self._claim_batches = {d: b for d, b in self._claim_batches.items() if d in named}

    def _claims(self) -> tuple[tuple[SlotClaim, ...], tuple[SlotClaim, ...], tuple[ClaimedBatch, ...]]:
        """P, Q and the batches they name, in a canonical order."""
        p = tuple(self._p_claims[s] for s in sorted(self._p_claims))
        q = tuple(
            SlotClaim(s, d, v)
            for s in sorted(self._q_claims)
            for d, v in sorted(self._q_claims[s].items())
        )
        named = sorted({c.digest for c in p} | {c.digest for c in q})
        batches = tuple(self._claim_batches[d] for d in named if d in self._claim_batches)
        return p, q, batches

    # -------------------------------------------------------- view change

    def _start_view_change(self, new_view: int) -> None:
        """§4.4: stop accepting normal-case messages and ask for ``new_view``."""
        invariant(new_view > self.view or (new_view == self.view and self.view_active),
                  "view changes only move forward")
        self.view = new_view
        self.view_active = False
        self.view_changes_started += 1
        self._slots = {}
        self._unassigned = {}
        self._assigned = set()
        self._forwarded_at = {}
        self._order_delays.clear()
        self._new_view_msg = None
        self._batch_deadline = None
        self._request_deadline = None
        self._vc_deadline = None
        if self._macs:
            p, q, batches = self._claims()
            vc = ViewChange(new_view, self._stable_proof, (), int(self._id), b"", p, q, batches)
        else:
            prepared = tuple(
                self._prepared_certs[s] for s in sorted(self._prepared_certs) if s > self.stable_seq
            )
            vc = ViewChange(new_view, self._stable_proof, prepared, int(self._id))
        vc = vc.signed(self._signer)
        self._my_vc = vc
        self._record_view_change(vc)
        self._vc_valid.add(vc.signature)
        self._hard_dirty = True
        self._broadcast(vc)
        self._after_view_change_vote()

    def _after_view_change_vote(self) -> None:
        latest = self._vc_latest
        # §4.5.2: f + 1 replicas ahead of us prove the view is failing.
        ahead = sorted(vc.new_view for r, vc in latest.items() if r != self._id and vc.new_view > self.view)
        if len(ahead) >= self.f + 1:
            # The (f+1)-th highest: at least one honest replica asks for it.
            self._start_view_change(ahead[-(self.f + 1)])
            return
        if self.view_active:
            return
        voters = len(self._vc_by_view.get(self.view, ()))
        if voters < self.quorum:
            return
        if self._vc_deadline is None:
            backoff = min(self._vc_attempts, self.config.max_view_change_backoff)
            self._vc_deadline = self._now + self.config.view_change_timeout_s * (2**backoff)
        if self.primary == self._id:
            self._send_new_view()

    def _valid_certificate(self, cert: PreparedCertificate, before_view: int) -> bool:
        pp = cert.pre_prepare
        if not (0 <= pp.origin_view <= pp.view < before_view):
            return False
        if len(pp.batch) > self.config.batch_max:
            return False
        primary = self.primary_of(pp.view)
        digest = pp.digest()
        if not verify_statement(pp.statement(primary, digest), self._verifier):
            return False
        seen: set[int] = set()
        for p in cert.prepares:
            if p.replica == primary or p.replica in seen or p.replica not in self._members:
                return False
            if p.view != pp.view or p.seq != pp.seq or p.digest != digest:
                return False
            if not verify_statement(p.statement(), self._verifier):
                return False
            seen.add(p.replica)
        return len(seen) >= self.quorum - 1

    def _valid_view_change(self, vc: ViewChange) -> bool:
        if vc.signature in self._vc_valid:
            return True
        if vc.replica not in self._members or not vc.signature_valid(self._verifier):
            return False
        if vc.checkpoint_proof and not self._valid_checkpoint_proof(vc.checkpoint_proof):
            return False
        if self._macs:
            if vc.prepared or not self._valid_claims(vc):
                return False
            self._vc_valid.add(vc.signature)
            return True
        if vc.has_claims:
            return False
        low = vc.stable_seq
        seqs: set[int] = set()
        for cert in vc.prepared:
            seq = cert.pre_prepare.seq
            if seq in seqs or not low < seq <= low + self._window:
                return False
            if not self._valid_certificate(cert, vc.new_view):
                return False
            seqs.add(seq)
        self._vc_valid.add(vc.signature)
        return True

    def _valid_claims(self, vc: ViewChange) -> bool:
        """MAC mode: P and Q claims inside the author's window and below the
        view it asks for, at most one P per seq and a bounded Q, and exactly
        one well-formed batch per claimed digest it carries (a claim may lack
        its batch: the decision procedure then cannot choose it)."""
        low, high = vc.stable_seq, vc.stable_seq + self._window
        claim_views: dict[bytes, int] = {}
        p_seqs: set[int] = set()
        for c in vc.prepared_claims:
            if c.seq in p_seqs:
                return False
            p_seqs.add(c.seq)
            if not (low < c.seq <= high and 0 <= c.view < vc.new_view and len(c.digest) == DIGEST_BYTES):
                return False
            claim_views[c.digest] = min(c.view, claim_views.get(c.digest, c.view))
        q_keys: set[tuple[int, bytes]] = set()
        per_seq: dict[int, int] = {}
        for c in vc.pre_prepared_claims:
            if (c.seq, c.digest) in q_keys:
                return False
            q_keys.add((c.seq, c.digest))
            per_seq[c.seq] = per_seq.get(c.seq, 0) + 1
            if per_seq[c.seq] > self._q_bound:
                return False
            if not (low < c.seq <= high and 0 <= c.view < vc.new_view and len(c.digest) == DIGEST_BYTES):
                return False
            claim_views[c.digest] = min(c.view, claim_views.get(c.digest, c.view))
        carried: set[bytes] = set()
        for b in vc.batches:
            if len(b.batch) > self.config.batch_max or any(
                not isinstance(c, bytes) or len(c) > self.config.max_command_bytes for c in b.batch
            ):
                return False
            digest = b.digest()
            first_claimed = claim_views.get(digest)
            # Only batches some claim names, once each, first ordered no
            # later than the earliest view a claim names them in.
            if digest in carried or first_claimed is None or not 0 <= b.origin_view <= first_claimed:
                return False
            carried.add(digest)
        return True

    def _on_view_change(self, sender: NodeId, m: ViewChange) -> None:
        # A view change may be relayed (to a replica still gathering the
        # quorum for an older view): its signature, not the sender, names the
        # author, and a relay without the author's valid signature is a forgery.
        relayed = m.replica != sender
        if relayed and m.replica not in self._members:
            self._reject(sender, "ViewChange", "forged: claimed author is not the sender")
            return
        if m.new_view < self.view or (m.new_view == self.view and self.view_active):
            if not relayed:
                self._help_lagging(sender, m.new_view)
            return
        if m.replica in self._vc_by_view.get(m.new_view, {}):
            return  # a repeat (one view change per author and view is kept)
        if relayed and not m.signature_valid(self._verifier):
            self._reject(sender, "ViewChange", "forged: claimed author is not the sender")
            return
        if not self._valid_view_change(m):
            self._reject(sender, "ViewChange", "invalid view change or proofs")
            return
        for cert in m.prepared:
            pp = cert.pre_prepare
            self._observe(pp.statement(self.primary_of(pp.view), pp.digest()))
            for p in cert.prepares:
                self._observe(p.statement())
        self._record_view_change(m)
        if m.stable_seq > self.stable_seq:
            self._stabilize(m.checkpoint_proof)
        self._after_view_change_vote()

    def _record_view_change(self, vc: ViewChange) -> None:
        author = vc.replica
        self._vc_by_view.setdefault(vc.new_view, {})[author] = vc
        latest = self._vc_latest.get(author)
        if latest is None or latest.new_view < vc.new_view:
            self._vc_latest[author] = vc
        views = sorted(v for v, by_author in self._vc_by_view.items() if author in by_author)
        for v in views[: max(0, len(views) - VIEW_CHANGES_KEPT_PER_REPLICA)]:
            by_author = self._vc_by_view[v]
            del by_author[author]
            if not by_author:
                del self._vc_by_view[v]

    def _help_lagging(self, sender: NodeId, view: int) -> None:
        """``sender`` is at ``view``, not past it, while this replica is
        further on. If we installed a later view, relay its new-view. If we
        are still changing views ourselves, relay the view changes we hold
        for ``view``: replicas that timed out there and moved on no longer
        repeat them, and without them ``sender`` may never see a quorum for
        ``view`` (to install it, or to time out and follow us)."""
        if self.view_active:
            self._show_new_view(sender)
            return
        held = self._vc_by_view.get(view)
        if not held or not self._may_help(sender, HELP_VIEW_CHANGES):
            return
        for author, vc in sorted(held.items()):
            if author != int(sender):
                self._send(sender, vc)

    def _compute_o(
        self, view: int, vcs: Sequence[ViewChange]
    ) -> tuple[tuple[Checkpoint, ...], list[tuple[int, int, tuple[bytes, ...]]]]:
        """§4.4: the pre-prepares (seq, origin view, batch) the new primary
        must send for ``view`` given view changes V, and the stable proof."""
        best = max(vcs, key=lambda vc: vc.stable_seq)
        min_s = best.stable_seq
        chosen: dict[int, PrePrepare] = {}
        for vc in vcs:
            for cert in vc.prepared:
                pp = cert.pre_prepare
                if pp.seq <= min_s:
                    continue
                held = chosen.get(pp.seq)
                if held is None or pp.view > held.view:
                    chosen[pp.seq] = pp
        max_s = max(chosen, default=min_s)
        o: list[tuple[int, int, tuple[bytes, ...]]] = []
        for seq in range(min_s + 1, max_s + 1):
            picked = chosen.get(seq)
            o.append((seq, picked.origin_view, picked.batch) if picked is not None else (seq, view, ()))
        return best.checkpoint_proof, o

    def _send_new_view(self) -> None:
        held = self._vc_by_view.get(self.view, {})
        own = held.get(int(self._id))
        if own is None:
            return
        vcs = [own] + [vc for r, vc in sorted(held.items()) if r != self._id]
        if self._macs:
            # Every view change held for the view: more claims can only
            # decide more sequence numbers.
            decision = self._decide(self.view, vcs)
            if not decision.complete:
                return  # wait for more view changes (or time out of the view)
            proof, o = decision.checkpoint_proof, list(decision.pre_prepares)
        else:
            vcs = vcs[: self.quorum]
            proof, o = self._compute_o(self.view, vcs)
        pps = []
        for seq, origin_view, batch in o:
            digest = batch_digest(origin_view, batch)
            if self._macs:
                # Covered by the signature on the new-view; recorded so this
                # replica never pre-prepares another batch in the slot.
                self._record_statement(KIND_PRE_PREPARE, seq, self.view, digest)
                pp = PrePrepare(self.view, seq, origin_view, batch, b"")
            else:
                signature = self._sign(KIND_PRE_PREPARE, seq, self.view, digest)
                pp = PrePrepare(self.view, seq, origin_view, batch, signature)
                self.pool.observe(pp.statement(self._id, digest))
            pps.append(pp)
        nv = NewView(self.view, tuple(vcs), tuple(pps), int(self._id)).signed(self._signer)
        self._broadcast(nv)
        self._install_new_view(nv, proof)

    def _decide(self, view: int, vcs: Sequence[ViewChange]) -> NewViewDecision:
        """MAC mode: the decision procedure of ``quorate.pbft.view_change``."""
        return decide_new_view(view, vcs, quorum=self.quorum, f=self.f, window=self._window)

    def _show_new_view(self, sender: NodeId) -> None:
        """``sender`` is behind our view: relay the new-view that started it
        (it is signed by that view's primary, so any replica may relay it)."""
        if self.view_active and self._new_view_msg is not None and self._may_help(sender, HELP_NEW_VIEW):
            self._send(sender, self._new_view_msg)

    def _on_new_view(self, sender: NodeId, m: NewView) -> None:
        if m.view < self.view or (m.view == self.view and self.view_active):
            return
        if m.replica != self.primary_of(m.view):
            self._reject(sender, "NewView", "not signed by the primary of that view")
            return
        if not m.signature_valid(self._verifier):
            self._reject(sender, "NewView", "bad signature")
            return
        voters: set[int] = set()
        for vc in m.view_changes:
            if vc.new_view != m.view or vc.replica in voters or not self._valid_view_change(vc):
                self._reject(sender, "NewView", "invalid view-change set")
                return
            voters.add(vc.replica)
        if len(voters) < self.quorum:
            self._reject(sender, "NewView", "too few view changes")
            return
        if self._macs:
            decision = self._decide(m.view, m.view_changes)
            if not decision.complete:
                self._reject(
                    sender, "NewView", f"the view changes leave sequence number {decision.undecided[0]} undecided"
                )
                return
            proof, o = decision.checkpoint_proof, list(decision.pre_prepares)
        else:
            proof, o = self._compute_o(m.view, m.view_changes)
        if len(o) != len(m.pre_prepares):
            self._reject(sender, "NewView", "pre-prepares differ from the recomputed O")
            return
        for (seq, origin_view, batch), pp in zip(o, m.pre_prepares):
            if (pp.view, pp.seq, pp.origin_view, pp.batch) != (m.view, seq, origin_view, batch):
                self._reject(sender, "NewView", "pre-prepares differ from the recomputed O")
                return
            if self._macs:
                continue  # the primary's signature on the new-view covers O
            statement = pp.statement(NodeId(m.replica), batch_digest(origin_view, batch))
            if not verify_statement(statement, self._verifier):
                self._reject(sender, "NewView", "bad pre-prepare signature")
                return
            if self._observe(statement):
                return
        for pp in m.pre_prepares:
            if pp.seq > self.stable_seq and not self._may_sign(KIND_PREPARE, pp.seq, m.view, pp.digest()):
                self._reject(sender, "NewView", "conflicts with this replica's own prepare")
                return
        self._install_new_view(m, proof)

    def _install_new_view(self, nv: NewView, proof: tuple[Checkpoint, ...]) -> None:
        self.view = nv.view
        self.view_active = True
        self._new_view_msg = nv
        self._vc_deadline = None
        self._vc_by_view = {v: held for v, held in self._vc_by_view.items() if v > nv.view}
        self._vc_valid = {vc.signature for held in self._vc_by_view.values() for vc in held.values()}
        self._slots = {}
        self._unassigned = {}
        self._assigned = set()
        self._forwarded_at = {}
        self._order_delays.clear()
        self._hard_dirty = True
        if proof and proof[0].seq > self.stable_seq:
            self._stabilize(proof)
        max_seq = self.stable_seq
        for pp in nv.pre_prepares:
            max_seq = max(max_seq, pp.seq)
            if pp.seq <= self.stable_seq:
                continue
            self._accept_pre_prepare(pp.seq, self._slot(pp.seq), pp, pp.digest())
        self._next_seq = max(max_seq, self.executed_seq) + 1
        if self.primary == self._id:
            for d in self._pending:
                self._enqueue(d)
            self._maybe_flush()
        else:
            for d, command in self._pending.items():
                if d not in self._assigned:
                    self._forward(d, command)
        self._restart_request_timer()
        if self.executed_seq < self.stable_seq:
            self._request_state()
        self._execute_ready()

    # ------------------------------------------------------------ evidence

    def _on_evidence(self, sender: NodeId, m: Evidence) -> None:
        if self.pool.is_excluded(m.offender):
            return
        if not self.pool.receive(m):
            self._reject(sender, "Evidence", "invalid evidence")
            return
        self._broadcast(m)
        self._on_conviction(m.offender)

    # ------------------------------------------------------------ durability

    def _hard_state(self) -> PbftHardState:
        return PbftHardState(
            view=self.view,
            view_active=self.view_active,
            executed_seq=self.executed_seq,
            entry_index=self.entry_index,
            checkpoint_proof=self._stable_proof,
            prepared=tuple(self._prepared_certs[s] for s in sorted(self._prepared_certs)),
            signed=tuple((k[0], k[1], k[2], v) for k, v in self._signed.items()),
            sent_view_change=None if self.view_active else self._my_vc,
            **self._claims_state(),
        )

    def _claims_state(self) -> dict[str, Any]:
        if not self._macs:
            return {}
        p, q, batches = self._claims()
        return {"prepared_claims": p, "pre_prepared_claims": q, "claimed_batches": batches}

    def _recover(self, recovered: RecoveredState) -> None:
        hs = recovered.hard_state
        invariant(isinstance(hs, PbftHardState), "PBFT hard state expected on recovery")
        self.view = hs.view
        self.view_active = hs.view_active
        self._my_vc = hs.sent_view_change
        if self._my_vc is not None:
            self._record_view_change(self._my_vc)
            self._vc_valid.add(self._my_vc.signature)
        self._signed = {(k, v, s): d for k, v, s, d in hs.signed}
        self._prepared_certs = {c.pre_prepare.seq: c for c in hs.prepared}
        self._p_claims = {c.seq: c for c in hs.prepared_claims}
        for c in hs.pre_prepared_claims:
            self._q_claims.setdefault(c.seq, {})[c.digest] = c.view
        self._claim_batches = {b.digest(): b for b in hs.claimed_batches}
        if hs.checkpoint_proof:
            self._stable_proof = hs.checkpoint_proof
            self.stable_seq = hs.checkpoint_proof[0].seq
            self._stable_entry_index = hs.checkpoint_proof[0].entry_index
        for entry in recovered.entries:
            if entry.index != self.entry_index + 1 or entry.index > hs.entry_index:
                break
            self._executed.add(command_digest(entry.data))
            self._commit_entry(entry)
        self._to_persist = []  # already on disk
        # Entries and hard state are written in one persist call; should the
        # log still fall short, re-executing from the start is safe (every
        # command already applied is skipped by digest).
        self.executed_seq = hs.executed_seq if self.entry_index == hs.entry_index else 0
        self._announce = True  # tell peers where we stand: we may have missed a lot
        own_pre_prepares = [s for (kind, v, s) in self._signed if kind == KIND_PRE_PREPARE and v == self.view]
        self._next_seq = max([self.stable_seq, self.executed_seq, *own_pre_prepares]) + 1
        if self.executed_seq < self.stable_seq:
            self._request_state()

