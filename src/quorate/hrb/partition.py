"""Partitions: detection, degraded mode and reconciliation (``docs/hrb.md`` section 12).

Theory of operation. A network partition is not a fault HRB can prevent,
only one it must survive without lying. This module gives every node a view
of the part of the network it can reach, and turns that view into the
decisions of *degraded mode*; the protocols underneath (watched Raft, the
core's BFT ordering and its certified decisions) stay the judges of safety.
A wrong view costs availability, never consistency.

- **Detection** (``ReachabilityDetector``, ``PartitionWatch``). Two
  sources: heartbeat timeouts and SWIM's reachability reports
  (``quorate.swim``, reused as it is). Every node hosts a watch as one more
  group: a ``SwimNode``, plus a ``WatchHeartbeat`` every
  ``heartbeat_interval_s`` to the peers whose quorum it judges (its shard's
  members and the core's; a peer that does not watch back answers). A
  watched peer is reachable iff heard within ``heartbeat_timeout_s``; any
  other peer iff heard lately or held Alive by SWIM (reached directly or
  through its indirect probes; a Suspect, Dead or lost member is not). SWIM
  alone, on a small side, needs a whole probe round to suspect everyone
  across a cut; the heartbeats see a cut of the shard or the core within
  one timeout. It is sans-IO like every core; its times are the log times
  the runtime hands in.
- **Degraded mode** (pure functions, one table each). A shard side holding
  the shard's own quorum (``quorum_needed``: 2f + 1 of 3f + 1 in
  ``byzantine`` mode, the leader plus a majority of the others in
  ``majority`` mode) keeps serving: its members propose agents' transactions as
  usual. A member whose side holds no quorum serves no writes and no
  linearizable reads: it answers an agent at once with ``ShardUnavailable``
  instead of forwarding into silence (the agent's other copies reach the
  majority side's members), and it may answer a ``StaleRead`` with the value
  it applied, marked stale with its staleness (``now`` minus the last time
  it saw its shard's quorum), when that is within the read's bound and
  ``stale_read_bound_s``. A cross-shard transaction whose involved shards or
  core quorum are out of reach is still proposed (the core orders it once
  it can) and its agent is told ``TxnWaiting`` with the reason; it never
  half-applies, because its outcome is one certified core decision, and it
  aborts after the core's ``txn_timeout_s`` of core time
  (``quorate.hrb.core``), which already existed: this module adds only the
  status.
- **Reconciliation on heal.** Stale members catch up through Raft's log
  suffix (AppendEntries from the leader); waiting
  transactions finish or abort through the core's timeout; evidence
  gathered while the core was out of reach (a ``RemovalProposal`` sent into
  a partition is lost: the shard sends it once) is held by an
  ``EvidenceHold`` and sent again when the core is back (``PartitionMember``);
  a duplicate is harmless, the core judges every proposal against its state.
  A decision certified while a shard was cut off never reaches it by
  itself (the shard's repeated vote is refused as already decided), so a
  member that holds a transaction prepared and undecided for
  ``certificate_ask_after_s`` asks the core for its certificates
  (``CertificateRequest``, which the core already answered). Under dynamic
  sharding the same holds for a map change (``quorate.hrb.reshard``): a
  member asks for the changes it may have missed when the core comes back
  and while one is in flight in its log (``Reconciliation``).

Invariants: a node always counts itself reachable; ``quorum_needed`` never
asks for more members than there are; degraded mode only ever *withholds*
service (it refuses to propose, it never commits or applies anything).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quorate.core.protocol import ProposeOutcome, Refused
from quorate.core.ready import Ready
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError
from quorate.hrb.core.commands import CertificateRequest
from quorate.hrb.desk import AgentDesk
from quorate.hrb.messages import CORE_GROUP_BASE, RemovalProposal, Transaction
from quorate.hrb.reshard import reshard_certificate_key
from quorate.hrb.shard.proofs import FollowerMajorityQuorum
from quorate.hrb.system import ShardMember, route_to_core
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId
from quorate.raft.hooks import ByzantineQuorum
from quorate.swim.config import SwimConfig
from quorate.swim.membership import MemberState, ReachabilityReport
from quorate.swim.node import SwimNode

__all__ = [
    "PARTITION_GROUP",
    "Decision",
    "EvidenceHold",
    "PartitionConfig",
    "PartitionDesk",
    "PartitionMember",
    "PartitionWatch",
    "ReachabilityDetector",
    "Reconciliation",
    "Reconciling",
    "ShardUnavailable",
    "ShardView",
    "Side",
    "StaleRead",
    "StaleValue",
    "TxnWaiting",
    "WatchHeartbeat",
    "core_side",
    "cross_shard_decision",
    "quorum_needed",
    "read_decision",
    "shard_side",
    "write_decision",
]

PARTITION_GROUP = CORE_GROUP_BASE - 1
"""The group id of every node's partition watch: above any shard id, below the core's groups."""
VIEW_REFRESH_S = 0.05
"""A watch recomputes its view at most this often (SWIM's report walks its history)."""
RECONCILE_CHECK_S = 0.1
"""A shard member looks at the core's reachability and its undecided transactions at most this often."""
MAX_HELD_EVIDENCE = 64
"""Removal proposals an ``EvidenceHold`` keeps at most (the oldest go first)."""


@dataclass(frozen=True, slots=True)
class PartitionConfig:
    """Detection and degraded-mode settings (validated once, at the edge)."""

    heartbeat_interval_s: float = 0.25
    """A watch sends a heartbeat to each peer it watches this often."""
    heartbeat_timeout_s: float = 1.0
    """A peer not heard directly for this long is not known reachable by direct contact."""
    stale_read_bound_s: float = 10.0
    """The stalest read a member serves, whatever the request allows."""
    swim_window_s: float = 5.0
    """The window of SWIM's reachability report (who was lost or regained lately)."""
    certificate_ask_after_s: float = 3.0
    """A transaction prepared and undecided this long: ask the core for its certificates (and again each period)."""
    swim: SwimConfig = field(
        default_factory=lambda: SwimConfig(
            protocol_period_s=0.5,
            probe_timeout_s=0.25,
            suspicion_alpha=2.0,
            suspicion_beta=3.0,
            reconnect_interval_s=1.0,
            anti_entropy_interval_s=5.0,
            lifeguard=False,
        )
    )
    """Faster than SWIM's defaults: a cut must be seen within a few seconds. Lifeguard
    is off: on each side of a cut every member's probes fail, so every member would
    judge itself the slow one and slow its probing down just when it matters."""

    def validate(self) -> PartitionConfig:
        if not 0 < self.heartbeat_interval_s < self.heartbeat_timeout_s:
            raise ConfigError(
                f"heartbeat_interval_s must be > 0 and below heartbeat_timeout_s ({self.heartbeat_timeout_s}), "
                f"got {self.heartbeat_interval_s}"
            )
        for name in ("heartbeat_timeout_s", "stale_read_bound_s", "swim_window_s", "certificate_ask_after_s"):
            value = getattr(self, name)
            if not 0 < value < float("inf"):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
        self.swim.validate()
        return self


# ---------------------------------------------------------------- detection
class ReachabilityDetector:
    """What one node can reach, from direct contact and SWIM (module docstring).

    Peers this node *watches* (the members of its shard and of the core, to
    which its watch sends heartbeats and which send theirs) are judged by
    heartbeat timeout alone: reachable iff heard within
    ``heartbeat_timeout_s``. Every other peer is reachable when heard within
    that time or when SWIM holds it Alive."""

    def __init__(self, node: int, config: PartitionConfig, now: float) -> None:
        self.node = int(node)
        self.config = config
        self._heard: dict[int, float] = {}
        self._swim_up: frozenset[int] = frozenset()
        self._watched: frozenset[int] = frozenset()
        self._now = now

    def watch(self, peers: Iterable[int], now: float) -> None:
        """Judge ``peers`` by heartbeats; a newly watched peer gets one timeout of credit."""
        peers = frozenset(int(p) for p in peers) - {self.node}
        for p in peers - self._watched:
            self._heard.setdefault(p, now)
        self._watched = peers

    @property
    def watched(self) -> frozenset[int]:
        return self._watched

    def heard(self, peer: int, now: float) -> None:
        """A message from ``peer`` arrived at ``now``: it can reach us."""
        self._now = max(self._now, now)
        self._heard[int(peer)] = max(now, self._heard.get(int(peer), now))

    def swim_report(self, report: ReachabilityReport, suspected: Iterable[int], now: float) -> None:
        """SWIM's view: its report's reachable members, less those it suspects or lost."""
        self._now = max(self._now, now)
        down = {int(n) for n in suspected} | {int(n) for n in report.lost}
        self._swim_up = frozenset(int(n) for n in report.reachable if int(n) not in down)

    def reachable(self, now: float) -> frozenset[int]:
        """Every node this one can reach at ``now`` (itself included)."""
        limit = now - self.config.heartbeat_timeout_s
        direct = {p for p, at in self._heard.items() if at >= limit}
        return frozenset(direct | (self._swim_up - self._watched) | {self.node})


# ---------------------------------------------------------------- degraded mode: the decisions
def quorum_needed(members: int, mode: str) -> int:
    """Members a shard side must hold to serve: what the shard's own Raft
    rule needs to elect a leader *and* to commit (``hrb/shard``'s quorum
    classes, not a re-derivation). In ``byzantine`` mode that is
    ceil((n + f + 1) / 2), 2f + 1 of 3f + 1; in ``majority`` mode the leader
    plus a majority of the other voters, which for an odd n is one more than
    a bare majority."""
    if members < 1:
        raise ConfigError(f"a shard has at least one member, got {members}")
    if mode == "byzantine":
        rule: Any = ByzantineQuorum()
    elif mode == "majority":
        rule = FollowerMajorityQuorum()
    else:
        raise ConfigError(f"quorum mode must be majority or byzantine, got {mode!r}")
    return int(max(rule.commit_quorum(members), rule.election_quorum(members)))


@dataclass(frozen=True, slots=True)
class Side:
    """How much of a group one node's side of the network holds."""

    reached: int
    members: int
    needed: int

    @property
    def has_quorum(self) -> bool:
        return self.reached >= self.needed


def shard_side(reachable: Iterable[int], members: Sequence[int], mode: str) -> Side:
    """This side of a shard of ``members`` under the shard's quorum ``mode``."""
    here = set(reachable)
    return Side(sum(1 for m in members if m in here), len(members), quorum_needed(len(members), mode))


def core_side(reachable: Iterable[int], members: Sequence[int]) -> Side:
    """This side of the core: its BFT ordering needs 2f + 1 of its members."""
    return shard_side(reachable, members, "byzantine")


@dataclass(frozen=True, slots=True)
class Decision:
    """What degraded mode says about one request."""

    serve: bool
    status: str
    """``serve``, ``stale``, ``minority``, ``too-stale`` or ``waiting``."""
    reason: str = ""
    staleness_s: float | None = None


def write_decision(side: Side) -> Decision:
    """A write (or any transaction through the log) on a member whose side is ``side``."""
    if side.has_quorum:
        return Decision(True, "serve")
    return Decision(
        False, "minority", f"partitioned: this side reaches {side.reached} of {side.members} shard members, {side.needed} needed"
    )


def read_decision(
    side: Side, *, linearizable: bool, staleness_s: float, max_staleness_s: float, bound_s: float
) -> Decision:
    """A read. Linearizable reads go through the log (``write_decision``);
    a read marked stale is served from the member's applied state when its
    staleness is within both the request's bound and the member's."""
    if linearizable:
        return write_decision(side)
    limit = min(max_staleness_s, bound_s)
    if side.has_quorum:
        return Decision(True, "stale", staleness_s=0.0)
    if staleness_s <= limit:
        return Decision(True, "stale", staleness_s=staleness_s)
    return Decision(
        False, "too-stale", f"the last state this member saw its shard's quorum in is {staleness_s:.3f} s old, bound {limit:g} s",
        staleness_s,
    )


def cross_shard_decision(
    reachable: Iterable[int], involved: Mapping[int, Sequence[int]], core_members: Sequence[int], mode: str
) -> Decision:
    """A cross-shard transaction: ``serve`` when the core and every involved
    shard hold a quorum on this side, else ``waiting`` with the first reason
    (it is still proposed; the core decides or aborts it, never half)."""
    here = frozenset(reachable)
    core = core_side(here, core_members)
    if not core.has_quorum:
        return Decision(True, "waiting", f"core quorum unreachable ({core.reached} of {core.members}, {core.needed} needed)")
    for shard, members in sorted(involved.items()):
        side = shard_side(here, members, mode)
        if not side.has_quorum:
            return Decision(
                True, "waiting", f"shard {shard} unreachable ({side.reached} of {side.members}, {side.needed} needed)"
            )
    return Decision(True, "serve")


# ---------------------------------------------------------------- reconciliation: evidence
class EvidenceHold:
    """Removal proposals sent around an outage of the core, to send again.

    A proposal sent while the core was unreachable, or up to
    ``heartbeat_timeout_s`` before an outage was seen (the cut may already
    have swallowed it), is sent again once the core is reachable; one sent
    while the core stayed reachable for that long is forgotten."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._held: list[tuple[float, RemovalProposal]] = []
        self._outage_since: float | None = None
        self._last_outage_at: float | None = None
        self.resent = 0

    def sent(self, proposal: RemovalProposal, now: float) -> None:
        if any(p == proposal for _, p in self._held):
            return
        self._held.append((now, proposal))
        del self._held[:-MAX_HELD_EVIDENCE]

    def update(self, core_reachable: bool, now: float) -> list[RemovalProposal]:
        """Tell the hold whether the core is reachable now; returns what to send again."""
        if not core_reachable:
            if self._outage_since is None:
                self._outage_since = now
            self._last_outage_at = now
            return []
        outage, self._outage_since = self._outage_since, None
        if outage is not None:
            again = [p for at, p in self._held if at >= outage - self.grace_s]
            self._held = []
            self.resent += len(again)
            return again
        self._held = [(at, p) for at, p in self._held if at >= now - self.grace_s]
        return []


# ---------------------------------------------------------------- wire messages
class WatchHeartbeat(WireMessage, tag="hrb.WatchHeartbeat", frozen=True):
    """A partition watch's heartbeat to a peer it watches (direct contact,
    nothing else); a peer that does not watch the sender back answers with
    ``reply`` set, so watching needs no symmetry (every node watches the core)."""

    seq: int
    reply: bool = False


class ShardUnavailable(WireMessage, tag="hrb.ShardUnavailable", frozen=True):
    """To an agent: this member is on a minority side and will not serve the request."""

    request: bytes
    """The transaction id, or a ``StaleRead``'s request id."""
    shard: int
    status: str
    reason: str


class TxnWaiting(WireMessage, tag="hrb.TxnWaiting", frozen=True):
    """To an agent: its cross-shard transaction is proposed but waits for part of the network."""

    txn_id: bytes
    shard: int
    reason: str


class StaleRead(WireMessage, tag="hrb.StaleRead", frozen=True):
    """From an agent: a read of ``key`` that accepts a value up to ``max_staleness_s`` old."""

    request: bytes
    key: str
    max_staleness_s: float


class StaleValue(WireMessage, tag="hrb.StaleValue", frozen=True):
    """The answer to a ``StaleRead``: explicitly stale, with its staleness bound."""

    request: bytes
    key: str
    value: str | None
    applied_index: int
    staleness_s: float


# ---------------------------------------------------------------- the watch: a group on every node
class PartitionWatch:
    """A ``SwimNode`` hosted as group ``PARTITION_GROUP``, feeding a
    ``ReachabilityDetector``: every message a peer's watch sends is direct
    contact, SWIM's report is the other source, and the watch sends a
    ``WatchHeartbeat`` every ``heartbeat_interval_s`` to the peers it watches
    (``watched()``: its shard's and the core's members, so a cut of the
    groups whose quorum it judges is seen within ``heartbeat_timeout_s``,
    while SWIM covers everyone else at its own pace). Everything SWIM does
    is unchanged."""

    def __init__(
        self,
        node: NodeId,
        nodes: Sequence[int],
        *,
        config: PartitionConfig,
        rng: random.Random,
        now: float,
        watched: Callable[[], Iterable[int]] = tuple,
    ) -> None:
        self.config = config.validate()
        self.swim = SwimNode(
            node, [NodeId(n) for n in nodes if n != int(node)], config=config.swim, rng=rng, now=now
        )
        self.detector = ReachabilityDetector(int(node), config, now)
        self._watched = watched
        self.detector.watch(watched(), now)
        self._now = now
        self._beat_at = now
        self._beats: list[tuple[NodeId, Any]] = []
        self._seq = 0
        self._view: frozenset[int] = frozenset({int(node)})
        self._view_at: float | None = None
        self._quorum_seen_at: dict[int, float] = {}
        """Shard -> the last time this node saw a quorum of it (for stale reads)."""

    @property
    def id(self) -> NodeId:
        return self.swim.id

    @property
    def now(self) -> float:
        """The latest time this watch was handed."""
        return self._now

    @property
    def informed(self) -> bool:
        """SWIM has joined: before that the view says nothing and degraded mode does not judge."""
        return self.swim.joined

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self._now = max(self._now, now)
        self.detector.heard(int(sender), now)
        if type(message) is WatchHeartbeat:
            if not message.reply and int(sender) not in self.detector.watched:
                self._beats.append((sender, WatchHeartbeat(message.seq, reply=True)))
            return
        self.swim.step(sender, message, now)

    def tick(self, now: float) -> None:
        self._now = max(self._now, now)
        self.swim.tick(now)
        if now >= self._beat_at:
            self._beat_at = now + self.config.heartbeat_interval_s
            self.detector.watch(self._watched(), now)
            self._seq += 1
            beat = WatchHeartbeat(self._seq)
            self._beats.extend((NodeId(p), beat) for p in sorted(self.detector.watched))

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        return Refused("the partition watch orders nothing")

    def has_ready(self) -> bool:
        return bool(self._beats) or self.swim.has_ready()

    def ready(self) -> Ready:
        ready = self.swim.ready()
        if self._beats:
            ready.messages = [*ready.messages, *self._beats]
            self._beats = []
        ready.wake_at = self.wake_at()
        return ready

    def advance(self, ready: Ready) -> None:
        self.swim.advance(ready)

    def wake_at(self) -> float | None:
        swim = self.swim.wake_at()
        return self._beat_at if swim is None else min(swim, self._beat_at)

    # -- the view ---------------------------------------------------------------------------
    def reachable(self, now: float) -> frozenset[int]:
        """The detector's view at ``now`` (recomputed at most every ``VIEW_REFRESH_S``)."""
        now = max(self._now, now)
        if self._view_at is not None and now < self._view_at + VIEW_REFRESH_S:
            return self._view
        suspected = [n for n, (state, _) in self.swim.members().items() if state != MemberState.ALIVE]
        self.detector.swim_report(self.swim.reachability_report(now, self.config.swim_window_s), suspected, now)
        self._view, self._view_at = self.detector.reachable(now), now
        return self._view

    def shard_side(self, shard: int, members: Sequence[int], mode: str, now: float) -> Side:
        side = shard_side(self.reachable(now), members, mode)
        if side.has_quorum:
            self._quorum_seen_at[shard] = now
        return side

    def staleness_s(self, shard: int, now: float) -> float:
        """Time since this node last saw a quorum of ``shard`` (infinite: never)."""
        seen = self._quorum_seen_at.get(shard)
        return float("inf") if seen is None else max(0.0, now - seen)


# ---------------------------------------------------------------- degraded mode on a shard member
@dataclass(frozen=True, slots=True)
class ShardView:
    """What a member needs to judge its side: its shard, the shard map and the quorum rule."""

    shard: int
    shards: Mapping[int, Sequence[int]]
    mode: str
    watch: Callable[[], PartitionWatch | None]
    """This node's current watch (a restart builds a new one)."""
    core_members: Callable[[], Sequence[int]]
    """The core epoch the member knows."""
    config: PartitionConfig


class PartitionDesk(AgentDesk):
    """``AgentDesk`` in degraded mode (module docstring): refuses what a
    minority side may not serve, tells a waiting cross-shard transaction's
    agent why, and serves reads marked stale."""

    def __init__(self, member: Any, view: ShardView) -> None:
        """``member``: a ``PartitionMember`` or a ``ReshardingPartitionMember``."""
        super().__init__(member)
        self.partition_member = member
        self.view = view
        self.refused = 0
        self.waiting_told = 0
        self.stale_served = 0

    def _members(self, shard: int) -> Sequence[int]:
        """The shard's members less those the core evicted (they vote no more)."""
        evicted = self.partition_member.store.evicted
        return [m for m in self.view.shards[shard] if m not in evicted]

    def on_client_request(self, src: NodeId, message: Any, now: float) -> None:
        v = self.view
        watch = v.watch()
        if watch is None or not watch.informed:
            if isinstance(message, StaleRead):
                self.replies.append((src, ShardUnavailable(message.request, v.shard, "unknown", "no view of the network yet")))
                return
            super().on_client_request(src, message, now)
            return
        if isinstance(message, StaleRead):
            self._stale_read(src, message, watch, now)
            return
        if not isinstance(message, Transaction):
            return
        decision = write_decision(watch.shard_side(v.shard, self._members(v.shard), v.mode, now))
        if not decision.serve:
            self.refused += 1
            self.replies.append((src, ShardUnavailable(message.txn_id, v.shard, decision.status, decision.reason)))
            return
        handoff = self.partition_member.store.handoff
        owner = handoff if handoff is not None else (lambda key: shard_of_key(key, len(v.shards)))
        shards = {owner(op.key) for op in message.ops}
        if shards != {v.shard}:
            involved = {k: self._members(k) for k in shards if k in v.shards}
            waiting = cross_shard_decision(watch.reachable(now), involved, v.core_members(), v.mode)
            if waiting.status == "waiting":
                self.waiting_told += 1
                self.replies.append((src, TxnWaiting(message.txn_id, v.shard, waiting.reason)))
        super().on_client_request(src, message, now)

    def _stale_read(self, src: NodeId, message: StaleRead, watch: PartitionWatch, now: float) -> None:
        v = self.view
        side = watch.shard_side(v.shard, self._members(v.shard), v.mode, now)
        decision = read_decision(
            side,
            linearizable=False,
            staleness_s=watch.staleness_s(v.shard, now),
            max_staleness_s=message.max_staleness_s,
            bound_s=v.config.stale_read_bound_s,
        )
        if not decision.serve:
            self.refused += 1
            self.replies.append((src, ShardUnavailable(message.request, v.shard, decision.status, decision.reason)))
            return
        store = self.partition_member.store
        self.stale_served += 1
        self.replies.append((
            src,
            StaleValue(
                message.request,
                message.key,
                store.data.get(message.key),
                store.applied_index,
                decision.staleness_s or 0.0,
            ),
        ))


class Reconciliation:
    """What a shard member does to reconcile after a partition (module
    docstring, "Reconciliation on heal"); a ``PartitionMember`` or a
    ``quorate.hrb.reshard_member.ReshardingPartitionMember`` passes it its
    outbound messages (``outbound``) and sends what it returns.

    - Its removal proposals go again when the core comes back after an
      outage (``EvidenceHold``).
    - It asks the core for the certificates of transactions it has held
      prepared and undecided for ``certificate_ask_after_s`` (a decision
      certified while the shard was cut off never arrives otherwise: the
      core refuses a repeated vote on a decided transaction as already
      decided, and answers a ``CertificateRequest`` with the certificates
      it holds).
    - Under dynamic sharding, it asks for the certificates of the map
      changes it may have missed (``reshard_certificate_key``): the core
      sends a ``ReshardBegin``, ``ReshardCommit`` or ``ReshardAbort`` to
      every shard once, and nothing else repeats it, so a shard cut off
      from the core when it was sent would stay frozen (a source), never
      install what it was given (a target), or vote no on every
      transaction begun on the new map (any shard). See ``_ask_reshard``."""

    __slots__ = (
        "_checked_at", "_core_out", "_prepared_since", "_reshard_asked_at", "_reshard_catch_up", "_reshard_progress",
        "asked", "hold", "view",
    )

    def __init__(self, view: ShardView) -> None:
        self.view = view
        self.hold = EvidenceHold(view.config.heartbeat_timeout_s)
        self._prepared_since: dict[bytes, float] = {}
        self._checked_at = float("-inf")
        self._reshard_asked_at: float | None = None
        self._reshard_catch_up = False
        self._reshard_progress: tuple[int, int, int | None] | None = None
        self._core_out = False
        self.asked = 0
        """Certificate requests sent."""

    def outbound(self, out: list[Any], store: Any) -> list[Any]:
        """``out`` (the member's messages for other groups), plus what reconciliation sends."""
        watch = self.view.watch()
        if watch is None or not watch.informed:
            return out
        now = watch.now
        for _, _, message in out:
            if isinstance(message, RemovalProposal):
                self.hold.sent(message, now)
        if now < self._checked_at + RECONCILE_CHECK_S:
            return out
        self._checked_at = now
        core_up = core_side(watch.reachable(now), self.view.core_members()).has_quorum
        again = self.hold.update(core_up, now)
        if again:
            out = out + route_to_core(again, store)
        back = core_up and self._core_out
        self._core_out = not core_up
        return out + self._ask_certificates(store, now) + self._ask_reshard(store, now, back)

    def _ask_certificates(self, store: Any, now: float) -> list[Any]:
        since = self._prepared_since
        for txn_id in [t for t in since if t not in store.prepared]:
            del since[txn_id]
        wait = self.view.config.certificate_ask_after_s
        due = []
        for txn_id in store.prepared:
            first = since.setdefault(txn_id, now)
            if now >= first + wait:
                due.append(txn_id)
                since[txn_id] = now  # ask again after another wait
        return self._request(store, sorted(due))

    def _ask_reshard(self, store: Any, now: float, core_back: bool) -> list[Any]:
        """The certificates of the map change(s) this shard may have missed.

        When the core comes back after an outage the member asks at once
        for the change after the last it settled (and the one in flight
        here), and again each time an answer moved its map on, until an
        ask brings nothing within ``certificate_ask_after_s`` (the core had
        no later change). While a change is in flight here (its begin
        applied, a begin held for an earlier commit, or a transaction begun
        on a newer map) it asks every ``certificate_ask_after_s``."""
        handoff = store.handoff
        if handoff is None:
            return []
        waiting = handoff.begin is not None or bool(handoff.held) or handoff.newest_seen > handoff.map.version
        progress = (handoff.map.version, handoff.settled, None if handoff.begin is None else handoff.begin.seq)
        wait = self.view.config.certificate_ask_after_s
        asked_at = self._reshard_asked_at
        if core_back:
            self._reshard_catch_up = True
        elif self._reshard_catch_up and progress != self._reshard_progress:
            pass  # the last answer moved the map on: ask for the next change at once
        elif asked_at is not None and now >= asked_at + wait and (waiting or self._reshard_catch_up):
            self._reshard_catch_up = False  # nothing came for a whole wait: the core had no later change
            if not waiting:
                self._reshard_asked_at = None
                return []
        elif waiting and asked_at is None:
            self._reshard_asked_at = now  # the first ask after one wait
            return []
        else:
            if not waiting and not self._reshard_catch_up:
                self._reshard_asked_at = None
            return []
        self._reshard_asked_at = now
        self._reshard_progress = progress
        seqs = {handoff.settled + 1}
        if handoff.begin is not None:
            seqs.add(handoff.begin.seq)
        return self._request(store, [reshard_certificate_key(seq) for seq in sorted(seqs)])

    def _request(self, store: Any, keys: list[bytes]) -> list[Any]:
        if not keys:
            return []
        self.asked += len(keys)
        epoch = store.epoch
        group = CORE_GROUP_BASE + epoch
        members = store.epoch_members()
        return [(NodeId(m), group, CertificateRequest(epoch, key)) for key in keys for m in members]


class Reconciling:
    """What a shard member that reconciles after a partition adds to its
    class (``PartitionMember``, and the resharding one): its
    ``Reconciliation`` and the outbound messages that go through it. Mixed in
    before a ``ShardMember`` class, which holds ``_store``."""

    __slots__ = ()

    reconciliation: Reconciliation
    _store: Any

    @property
    def store(self) -> Any:
        return self._store

    @property
    def view(self) -> ShardView:
        return self.reconciliation.view

    @property
    def hold(self) -> EvidenceHold:
        return self.reconciliation.hold

    @property
    def asked(self) -> int:
        """Certificate requests sent."""
        return self.reconciliation.asked

    def take_outbound(self) -> list[Any]:
        return self.reconciliation.outbound(super().take_outbound(), self._store)  # type: ignore[misc]


class PartitionMember(Reconciling, ShardMember):
    """A ``ShardMember`` that reconciles after a partition (``Reconciliation``)."""

    __slots__ = ("reconciliation",)

    def __init__(self, member: Any, store: Any, view: ShardView) -> None:
        super().__init__(member, store)
        self.reconciliation = Reconciliation(view)
