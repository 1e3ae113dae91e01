"""``CoreReplica``: one member of one epoch's core group, a ``ProtocolCore``
composed from an existing BFT core (docs/hrb.md sections 3 and 4).

Theory of operation. Epoch e's core is the group ``CORE_GROUP_BASE + e``; a
node that is a member hosts one ``CoreReplica`` for it. The replica composes,
and never copies:

- an **ordering core**: any BFT ``ProtocolCore`` built by a binding's
  builder (``quorate.core.binding.CoreBuilder``). The default is chained
  HotStuff (``quorate.hotstuff``): its votes go to one collector (the next
  leader) and its quorum certificates can be BLS aggregates, so ordering is
  linear in C like certification below; PBFT works the same way (its
  prepare and commit phases are all-to-all, C² messages per batch). The
  ordering core's messages, hard state and committed entries pass through
  unchanged; the replica only reads the committed commands;
- a ``CoreState`` (the state machine, ``quorate.hrb.core.state``), fed the
  committed commands in ``ready()``, in order; after a restart the ordering
  core hands every committed entry again and the state is rebuilt from the
  epoch's starting snapshot (``CoreStart``, persisted as this group's
  storage snapshot in the first ``Ready``);
- a ``Certifier`` (``quorate.hrb.core.certify``): a partial signature per
  decision to the collector, certificates out;
- while the epoch has not started for this node, a ``Joiner``
  (``quorate.hrb.core.joining``): the next members' key generation through
  the old core's log, and the handover.

Choices the design left open, and why these:

- *HotStuff or PBFT for ordering.* HotStuff by default: its votes go to
  one collector, like certification, so a decision costs O(C) messages
  end to end; PBFT is kept as a builder option because it commits in fewer
  message delays on a healthy network (its C² messages at C ≤ 11 are
  small). The replica reads only the committed entries, so either works
  unchanged (tests run both).
- *A fresh group per epoch, not reconfiguration in place.* Neither BFT core
  supports changing members; a new group id per epoch makes the change a
  handover of one snapshot, and a late message of the old epoch can never
  be mistaken for one of the new epoch.

Inputs from outside the core (``TxnRequest``, ``ShardVote``,
``RemovalProposal``, ``ReputationReport`` from shards; ``DkgSubmission``,
``DkgTimeout``, ``DkgOutcome`` from next members) are **checked before they
are ordered** (``CoreState.precheck``: signatures, membership, bounds, the
evidence of a removal) and proposed to the ordering core as encoded
commands; each member checks them again when it applies them. While the
state waits for time (open transactions, an epoch change), the replica
proposes a signed ``Tick`` every ``tick_interval_s``.

Messages for other groups — certificates to shard members (shard group k),
relays and handovers to next members (group e + 1), submissions from a
joining member to the old core (group e − 1), answers to a shard node's
``CertificateRequest`` (its shard group) — cannot travel in this group's
``Ready``: the replica queues them as ``(to, group, message)`` and the host
takes them with ``take_outbound()`` after each ``ready()`` (``has_ready``
is true while any are queued). A message to this node itself must be
delivered locally.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from typing import Any

import msgspec

from quorate.core.binding import CoreBuilder
from quorate.core.protocol import ProposeOutcome, ProtocolCore, Refused
from quorate.core.ready import Entry, Ready, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.errors import ConfigError, invariant
from quorate.hrb.core.certify import Certifier
from quorate.hrb.core.commands import (
    CertificateRequest,
    CoreHandover,
    DecisionPartial,
    DkgOutcome,
    DkgRelay,
    DkgSubmission,
    DkgTimeout,
    JoinRequest,
    ReputationReport,
    Tick,
    decode_command,
    encode_command,
    tick_bytes,
)
from quorate.hrb.core.config import CoreConfig
from quorate.hrb.core.evidence import SignedMessageChecker
from quorate.hrb.core.joining import Joiner
from quorate.hrb.core.snapshot import CoreStart, decode_snapshot
from quorate.hrb.core.state import CoreState, Decided, DkgItemOrdered, EpochClosed
from quorate.hrb.core.state import Refused as StateRefused
from quorate.hrb.core.threshold import EpochKey, ThresholdSuite
from quorate.hrb.core.verified import RememberingVerifier
from quorate.hrb.messages import (
    CORE_GROUP_BASE,
    CoreCertificate,
    RemovalProposal,
    ShardVote,
    TxnRequest,
)
from quorate.hrb.reshard import HandoffReport, ReshardRequest
from quorate.ids import NodeId

__all__ = ["CoreReplica", "GroupMessage", "ReplicaPhase"]

GroupMessage = tuple[NodeId, int, Any]
"""``(to, group, message)``: a message for another group than this replica's."""

JOIN_BUFFER_MESSAGES = 4096
"""Ordering-core messages kept while joining (the others already started)."""
RELAY_BATCH = 256
"""Items resent for one ``JoinRequest``."""

_INPUT_TYPES = (
    TxnRequest, ShardVote, RemovalProposal, ReputationReport, DkgSubmission, DkgTimeout, DkgOutcome,
    ReshardRequest, HandoffReport,
)


class ReplicaPhase(enum.Enum):
    JOINING = "joining"
    """Waiting for the key generation and the handover (a next member)."""
    ACTIVE = "active"
    CLOSED = "closed"
    """The epoch change is decided: certifying the last decisions, handing over."""
    ABANDONED = "abandoned"
    """This node turned out not to be a member (a restarted epoch change)."""


class CoreReplica:
    """One member of epoch ``epoch``'s core (see the module docstring).

    Build it with ``start`` (epoch 0 from genesis, or this node's persisted
    ``CoreStart``), or with ``recovered`` whose ``snapshot`` is the persisted
    ``CoreStart`` (a restart), or with neither and ``previous_members`` (a
    next member joining: it waits for the key generation and the handover).
    """

    def __init__(
        self,
        node: NodeId,
        epoch: int,
        *,
        bft: CoreBuilder,
        suite: ThresholdSuite,
        signer: Signer,
        verifier: Verifier,
        rng: random.Random,
        now: float,
        config: CoreConfig | None = None,
        checker: SignedMessageChecker | None = None,
        start: CoreStart | None = None,
        recovered: Any = None,
        previous_members: tuple[NodeId, ...] = (),
        encryption_secret: bytes = b"",
        random_bytes: Callable[[int], bytes] | None = None,
        bft_name: str = "hotstuff",
    ) -> None:
        if signer.node != node:
            raise ConfigError(f"the signer holds node {signer.node}'s key, not node {node}'s")
        self._id = node
        self.bft_name = bft_name
        """The BFT protocol ``bft`` builds (its binding reads the inner core)."""
        self.epoch = epoch
        self.group = CORE_GROUP_BASE + epoch
        self.config = (config or CoreConfig()).validate()
        self._bft = bft
        self.suite = suite
        self.signer = signer
        self.verifier = verifier
        self.rng = rng
        self.checker = checker
        self._now = now
        self.phase = ReplicaPhase.JOINING
        self._messages: list[tuple[NodeId, Any]] = []
        self._outbound: list[GroupMessage] = []
        self._rejected: list[Rejection] = []
        self._to_persist: CoreStart | None = None
        self._inner_ready: Ready | None = None
        self._buffer: list[tuple[NodeId, Any]] = []
        self._replay_until = 0
        self._next_tick_at: float | None = None
        self._tick_count = 0
        self._handover: CoreHandover | None = None
        self.inner: ProtocolCore | None = None
        self.state: CoreState | None = None
        self.certifier: Certifier | None = None
        self.key: EpochKey | None = None
        self.start: CoreStart | None = None
        self.joiner: Joiner | None = None
        self.deliveries = 0
        """Certificate messages sent to shard members and next members."""
        persisted = getattr(recovered, "snapshot", None) if recovered is not None else None
        if isinstance(persisted, CoreStart):
            self._activate(persisted, recovered, persist=False)
        elif start is not None:
            self._activate(start, recovered, persist=True)
        else:
            if not previous_members:
                raise ConfigError("a joining core replica needs the previous epoch's members")
            self.joiner = Joiner(
                node,
                epoch,
                previous_members,
                suite=suite,
                signer=signer,
                encryption_secret=encryption_secret,
                random_bytes=random_bytes or rng.randbytes,
                config=self.config,
                now=now,
            )

    # -- activation ------------------------------------------------------------------------
    def _activate(self, start: CoreStart, recovered: Any, *, persist: bool) -> None:
        snapshot = decode_snapshot(start.state)
        if snapshot.epoch != self.epoch or start.epoch != self.epoch:
            raise ConfigError(f"a start for epoch {snapshot.epoch} given to epoch {self.epoch}'s replica")
        if self._id not in snapshot.members:
            raise ConfigError(f"node {self._id} is not a member of epoch {self.epoch}'s core")
        members = tuple(NodeId(m) for m in snapshot.members)
        self.start = start
        # Commands are checked when they arrive, when they are resent and when
        # they are applied: each valid signature is verified once (verified.py).
        self.state = CoreState(snapshot, verifier=RememberingVerifier(self.verifier), checker=self.checker)
        self.key = self.suite.epoch_key(snapshot.threshold, len(members), snapshot.commitments)
        partial_signer = (
            self.suite.partial_signer(self.key, start.share_index, start.share_secret) if start.share_index else None
        )
        state = self.state
        self.certifier = Certifier(
            self._id, self.epoch, members, self.key, partial_signer, self.config, lambda: state.evicted
        )
        self.inner = self._bft(self._id, members, self.rng, self._now, recovered)
        entries: list[Entry] = list(getattr(recovered, "entries", None) or []) if recovered is not None else []
        self._replay_until = max((e.index for e in entries), default=0)
        self._to_persist = start if persist else None
        self.phase = ReplicaPhase.ACTIVE
        buffered, self._buffer = self._buffer, []
        for sender, message in buffered:
            self.inner.step(sender, message, self._now)

    # -- the contract ------------------------------------------------------------------------
    @property
    def id(self) -> NodeId:
        return self._id

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        if now > self._now:
            self._now = now
        if self.phase is ReplicaPhase.JOINING:
            self._step_joining(sender, message, now)
            return
        if self.phase is ReplicaPhase.ABANDONED:
            self._reject(sender, message, "not a member of this epoch's core")
            return
        assert self.inner is not None and self.certifier is not None and self.state is not None
        if isinstance(message, DecisionPartial):
            self.certifier.on_partial(sender, message, now)
        elif isinstance(message, CoreCertificate):
            if message.epoch == self.epoch - 1:
                return  # the epoch change that started this core (sent to its members too)
            self.certifier.on_certificate(sender, message)
        elif isinstance(message, CertificateRequest):
            self._answer_request(sender, message)
        elif isinstance(message, JoinRequest):
            self._answer_join(sender, message)
        elif isinstance(message, _INPUT_TYPES):
            self._admit(sender, message, now)
        elif isinstance(message, DkgRelay | CoreHandover):
            return  # late copies of what started this core: nothing more to do
        else:
            self.inner.step(sender, message, now)

    def tick(self, now: float) -> None:
        if now > self._now:
            self._now = now
        if self.phase is ReplicaPhase.JOINING:
            assert self.joiner is not None
            self.joiner.tick(now)
            self._take_joiner()
            return
        if self.inner is None or self.certifier is None or self.state is None:
            return
        self.inner.tick(now)
        self.certifier.tick(now)
        if self._next_tick_at is not None and now >= self._next_tick_at:
            self._next_tick_at = None
            if self.state.needs_clock():
                self._propose_tick(now)
        self._arm_clock(now)

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        """An encoded core command from this node's own side (its shard
        leader's request, say): checked and ordered like a message."""
        if now > self._now:
            self._now = now
        if self.phase is not ReplicaPhase.ACTIVE or self.inner is None or self.state is None:
            return Refused(f"epoch {self.epoch}'s core is {self.phase.value} here")
        try:
            decoded = decode_command(command)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Refused("not an encoded core command")
        problem = self.state.precheck(decoded)
        if problem is not None:
            return Refused(problem.reason)
        return self.inner.propose(command, now)

    def has_ready(self) -> bool:
        inner_ready = self.inner.has_ready() if self.inner is not None else False
        return bool(
            inner_ready or self._messages or self._outbound or self._rejected or self._to_persist is not None
        )

    def ready(self) -> Ready:
        committed: list[Entry] = []
        inner_ready: Ready | None = None
        if self.inner is not None:
            inner_ready = self.inner.ready()
            self._inner_ready = inner_ready
            committed = inner_ready.committed
        for entry in committed:
            self._apply(entry)
        self._take_certifier()
        if self.state is not None:
            self._arm_clock(self._now)
        messages = self._messages
        rejected = self._rejected
        snapshot = self._to_persist
        self._messages, self._rejected, self._to_persist = [], [], None
        if inner_ready is None:
            return Ready(messages=messages, rejected=rejected, wake_at=self._wake_at(None))
        return Ready(
            messages=inner_ready.messages + messages,
            hard_state=inner_ready.hard_state,
            entries=inner_ready.entries,
            snapshot=snapshot,
            committed=[],
            reads=inner_ready.reads,
            wake_at=self._wake_at(inner_ready.wake_at),
            rejected=inner_ready.rejected + rejected,
            must_sync=inner_ready.must_sync or snapshot is not None,
            early_messages=inner_ready.early_messages,
        )

    def advance(self, ready: Ready) -> None:
        inner_ready, self._inner_ready = self._inner_ready, None
        if self.inner is not None and inner_ready is not None:
            self.inner.advance(inner_ready)

    def take_outbound(self) -> list[GroupMessage]:
        """Messages for other groups queued since the last call (see the module docstring)."""
        out, self._outbound = self._outbound, []
        return out

    # -- applying the log ------------------------------------------------------------------
    def _apply(self, entry: Entry) -> None:
        state, certifier = self.state, self.certifier
        assert state is not None and certifier is not None
        replay = entry.index <= self._replay_until
        for effect in state.apply(entry.data):
            if isinstance(effect, Decided):
                recipients = (effect.shards, effect.next_members)
                certifier.decided(effect.index, effect.encoded, recipients, self._now, replay=replay)
            elif isinstance(effect, StateRefused):
                self._rejected.append(Rejection(NodeId(effect.blamed or 0), effect.command, effect.reason))
            elif isinstance(effect, DkgItemOrdered):
                if not replay:
                    relay = DkgRelay(effect.epoch, effect.seq, effect.item)
                    group = CORE_GROUP_BASE + effect.epoch
                    self._outbound.extend((NodeId(m), group, relay) for m in effect.to)
            elif isinstance(effect, EpochClosed):
                self._handover = CoreHandover(effect.epoch, effect.state)
                self.phase = ReplicaPhase.CLOSED
                group = CORE_GROUP_BASE + effect.epoch
                self._outbound.extend((NodeId(m), group, self._handover) for m in effect.members)
        self._take_certifier()

    def _take_certifier(self) -> None:
        certifier, state = self.certifier, self.state
        if certifier is None or state is None:
            return
        out = certifier.take()
        self._messages.extend(out.messages)
        self._rejected.extend(out.rejected)
        for certificate, recipients in out.certified:
            shards, next_members = recipients
            for shard in shards:
                for node in state.shard_members(shard):
                    self._outbound.append((NodeId(node), shard, certificate))
                    self.deliveries += 1
            next_group = CORE_GROUP_BASE + self.epoch + 1
            for node in next_members:
                self._outbound.append((NodeId(node), next_group, certificate))
                self.deliveries += 1

    # -- inputs from outside ----------------------------------------------------------------
    def _admit(self, sender: NodeId, message: Any, now: float) -> None:
        state, inner = self.state, self.inner
        assert state is not None and inner is not None
        problem = state.precheck(message)
        if problem is not None:
            self._reject(sender, message, problem.reason)
            if state.closed:
                self._send_epoch_change(sender)
            return
        outcome = inner.propose(encode_command(message), now)
        if isinstance(outcome, Refused) and not outcome.reason.startswith("duplicate"):
            self._reject(sender, message, outcome.reason)

    def _send_epoch_change(self, node: NodeId) -> None:
        """Tell a node that talks to a closed epoch where the core went."""
        state, certifier = self.state, self.certifier
        assert state is not None and certifier is not None
        record = state.s.nodes.get(node)
        certificate = certifier.certificate(state.s.decisions)
        if record is not None and certificate is not None:
            self._outbound.append((node, record.shard, certificate))

    def _answer_request(self, sender: NodeId, request: CertificateRequest) -> None:
        state, certifier = self.state, self.certifier
        assert state is not None and certifier is not None
        record = state.s.nodes.get(sender)
        if record is None:
            self._reject(sender, request, "certificate request from a node outside the deployment")
            return
        if request.epoch != self.epoch:
            self._reject(sender, request, f"certificate request for epoch {request.epoch}")
            return
        if request.txn_id:
            found = certifier.certificates_for(request.txn_id)
        else:
            last = certifier.certificate(state.s.decisions) if state.closed else None
            found = [last] if last is not None else []
        for certificate in found:
            self._outbound.append((sender, record.shard, certificate))

    def _answer_join(self, sender: NodeId, request: JoinRequest) -> None:
        state = self.state
        assert state is not None
        transition = state.s.transition
        if transition is None or request.epoch != transition.epoch:
            return
        if sender not in transition.members and sender not in self._handover_members():
            self._reject(sender, request, "join request from a node that is not a next member")
            return
        group = CORE_GROUP_BASE + transition.epoch
        first = max(0, request.seq)
        for seq in range(first, min(len(transition.items), first + RELAY_BATCH)):
            self._outbound.append((sender, group, DkgRelay(transition.epoch, seq, transition.items[seq])))
        if self._handover is not None:
            self._outbound.append((sender, group, self._handover))

    def _handover_members(self) -> tuple[int, ...]:
        if self._handover is None:
            return ()
        return decode_snapshot(self._handover.state).members

    # -- the clock ------------------------------------------------------------------------------
    def _arm_clock(self, now: float) -> None:
        state = self.state
        if state is None or self.phase is not ReplicaPhase.ACTIVE:
            self._next_tick_at = None
            return
        if state.needs_clock():
            if self._next_tick_at is None:
                self._next_tick_at = now + state.s.rules.tick_interval_s
        else:
            self._next_tick_at = None

    def _propose_tick(self, now: float) -> None:
        state, inner = self.state, self.inner
        assert state is not None and inner is not None
        self._tick_count = max(self._tick_count, state.s.ticks.get(self._id, 0)) + 1
        data = tick_bytes(self.epoch, self._id, self._tick_count)
        tick = Tick(self.epoch, self._id, self._tick_count, self.signer.sign(data))
        inner.propose(encode_command(tick), now)

    def _wake_at(self, inner_wake: float | None) -> float | None:
        deadlines = [d for d in (inner_wake, self._next_tick_at) if d is not None]
        if self.certifier is not None:
            wake = self.certifier.wake_at()
            if wake is not None:
                deadlines.append(wake)
        if self.joiner is not None and self.phase is ReplicaPhase.JOINING:
            wake = self.joiner.wake_at()
            if wake is not None:
                deadlines.append(wake)
        return min(deadlines) if deadlines else None

    # -- joining ----------------------------------------------------------------------------------
    def _step_joining(self, sender: NodeId, message: Any, now: float) -> None:
        joiner = self.joiner
        assert joiner is not None
        if isinstance(message, DkgRelay):
            joiner.on_relay(sender, message, now)
        elif isinstance(message, CoreHandover):
            start = joiner.on_handover(sender, message, now)
            if start is not None:
                self._take_joiner()
                self._activate(start, None, persist=True)
                return
            if joiner.abandoned:
                self.phase = ReplicaPhase.ABANDONED
        elif isinstance(message, CoreCertificate):
            pass  # the epoch change's certificate: the handover is what starts the core
        elif isinstance(message, (DecisionPartial, CertificateRequest, JoinRequest, *_INPUT_TYPES)):
            self._reject(sender, message, "this node's core for the epoch has not started")
        elif len(self._buffer) < JOIN_BUFFER_MESSAGES:
            self._buffer.append((sender, message))
        else:
            self._reject(sender, message, "joining: buffer of early messages full")
        self._take_joiner()

    def _take_joiner(self) -> None:
        if self.joiner is None:
            return
        out = self.joiner.take()
        self._outbound.extend(out.outbound)
        self._rejected.extend(out.rejected)

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self._rejected.append(Rejection(sender, type(message).__name__, reason))

    # -- views -------------------------------------------------------------------------------------
    @property
    def retired(self) -> bool:
        """The epoch is closed and its last decision certified here: the
        host may drop this group once next members have joined."""
        certifier, state = self.certifier, self.state
        if self.phase is ReplicaPhase.ABANDONED:
            return True
        if self.phase is not ReplicaPhase.CLOSED or certifier is None or state is None:
            return False
        return certifier.certificate(state.s.decisions) is not None

    def check(self) -> None:
        """The state machine's invariants (tests, the simulator's monitor)."""
        if self.state is not None:
            self.state.check()
            invariant(
                self.certifier is None or self.certifier.applied == self.state.s.decisions,
                "the certifier and the state disagree on the decisions made",
            )
