"""``SwimNode``: SWIM membership with Lifeguard, rumours and anti-entropy.

Theory of operation. One sans-IO core owns everything one member knows:

- **Failure detection** (SWIM, Das, Gupta, Motivala 2002, §3–4). Every protocol
  period the node pings the next member of a randomized round-robin order (the
  list is shuffled at the end of each round; a new member is inserted at a
  random position, §4.3), so every member is probed within a bounded time. No
  ``Ack`` within the probe timeout: ``PingReq`` through k random helpers. No
  ``Ack`` by the end of the period: the target becomes Suspect. A suspicion
  left unrefuted for the suspicion timeout becomes Dead. A member that hears it
  is suspected raises its incarnation and says it is Alive (§4.2); which news
  wins is ``membership.supersedes``.
- **Lifeguard** (Dadgar et al. 2018, arXiv 1707.00788). The Local Health
  Multiplier (§IV-A) counts evidence that *this* node is the slow one — failed
  probes, helpers' ``Nack``s that never came, having to refute a suspicion of
  itself — and falls by one per successful probe; probe interval and timeout
  are scaled by ``lhm + 1``. Suspicion timeouts are dynamic (§IV-B,
  ``suspicion.suspicion_timeout``): they start at the maximum and shrink with
  independent confirmations; a confirmation from a new accuser is gossiped on
  so others count it too. Buddy system (§IV-C): a ping to a member we suspect
  carries that suspicion first, so the member can refute at once.
  ``SwimConfig.lifeguard=False`` turns all of this off (fixed minimum timeout).
- **Dissemination** (§4.1): membership updates and rumours are piggybacked on
  every Ping/Ack/PingReq and pushed in ``Gossip`` messages, least-transmitted
  first, at most ceil(λ·log10(n+1)) times each (``dissemination``). Application
  payloads (``broadcast``) travel by push, pull or push-pull
  (``SwimConfig.gossip_mode``), to ``fanout`` peers per gossip round.
- **Join, leave, anti-entropy.** A joiner sends ``Sync`` (its own Alive) to its
  seeds and retries until one answers with its member list. Every
  anti-entropy interval a random peer gets a membership ``Sync`` and a Merkle
  comparison of the key→(version, value) keyspace (``merkle``). In a snapshot,
  a Dead member we believe up is taken as Suspect (as memberlist does), so a
  stale snapshot cannot kill a live member without giving it time to refute.
  Every reconnect interval a random Dead member is offered a ``Sync``: this is
  how the sides of a healed partition find each other again. ``leave`` announces
  Left with a higher incarnation and stops probing.
- **Peer sampling and adaptation.** Gossip, pull and anti-entropy partners come
  from a Cyclon partial view (``peer_sampling``). When the ratio of missed
  direct Acks over the last probes is high, fanout and the retransmit
  multiplier grow (up to ``MAX_ADAPT_FACTOR`` times); fanout is never below
  log10(n + 1).

Outputs besides ``Ready``: ``take_events()`` (membership changes seen here),
``take_delivered()`` (rumours), ``take_state_updates()`` (keys changed by a
peer), ``reachable()``/``reachability_report()`` and ``counters()``.

``propose(command)`` broadcasts ``command`` as a rumour and returns
``Accepted(index=rumour seq, term=incarnation)``: SWIM orders nothing, it only
spreads; an oversize command or a node that left gets ``Refused``.

Cost: per message the work is O(piggybacked items + k), not O(n), so that a
1,000-member group simulates in reasonable time: the up peers (id order, for
random choices), the Dead members and each member's snapshot entry are kept as
indexes updated on every state change; the earliest suspicion deadline is
cached until a suspicion, its accusers or the group size change; a snapshot
merge skips the entries that are no news before the full merge.

Invariants: this node's own entry is never Suspect or Dead in its own table
(it refutes instead); its incarnation only grows; the LHM stays in
``[0, lhm_max]``.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from quorate.core.protocol import Accepted, ProposeOutcome, Refused
from quorate.core.ready import Ready, Rejection
from quorate.core.wire import WireMessage
from quorate.errors import LocalProtocolError, invariant
from quorate.ids import NodeId
from quorate.swim.config import GossipMode, SwimConfig
from quorate.swim.dissemination import RumourLog, TransmitQueue, retransmit_limit
from quorate.swim.membership import (
    Member,
    MembershipEvent,
    MemberState,
    ReachabilityReport,
    supersedes,
)
from quorate.swim.merkle import HASH_BYTES, MerkleTree
from quorate.swim.messages import (
    SWIM_MESSAGE_TYPES,
    Ack,
    Gossip,
    MerkleEntries,
    MerkleLevel,
    Nack,
    Ping,
    PingReq,
    PullReply,
    PullRequest,
    Rumour,
    Shuffle,
    ShuffleReply,
    StateEntry,
    Sync,
    SyncReply,
    Update,
)
from quorate.swim.peer_sampling import Locality, PartialView
from quorate.swim.suspicion import Suspicion, suspicion_bounds, suspicion_timeout

ENVELOPE_BYTES = 48
"""Room kept in a message budget for the envelope and the message's own fields."""
NACK_FRACTION = 0.8
"""Lifeguard §IV-A: a helper Nacks when no Ack came within 80% of the timeout."""
LOSS_WINDOW_PROBES = 32
"""Direct probes over which the missed-Ack ratio is measured."""
LOSS_MIN_SAMPLES = 8
"""Fewer probes than this say nothing about loss yet."""
ADAPT_GAIN = 4.0
"""Fanout/retransmit factor gained per unit of missed-Ack ratio (25% → ×2)."""
MAX_ADAPT_FACTOR = 3.0
HISTORY_EVENTS = 4096
"""Membership events remembered for ``reachability_report``."""
MAX_INCARNATION = (1 << 63) - 1
MAX_VERSION = (1 << 63) - 1
JOIN_RETRY_PERIODS = 2.0
"""A joiner asks its seeds again after this many protocol periods of silence."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """An application rumour delivered at this node."""

    origin: NodeId
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """A key that anti-entropy changed here (the write came from a peer)."""

    key: str
    version: int
    value: bytes


@dataclass(slots=True)
class _Probe:
    target: NodeId
    seq: int
    acked: bool = False
    helpers: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    """A ping we send for a helper's requester (``PingReq``)."""

    requester: NodeId
    requester_seq: int
    nack_at: float | None
    expires_at: float


class SwimNode:
    """One SWIM member (see the module docstring)."""

    def __init__(
        self,
        id: NodeId,
        seeds: Iterable[NodeId],
        *,
        config: SwimConfig | None = None,
        rng: random.Random,
        now: float,
        locality: Locality | None = None,
    ) -> None:
        """``locality``: each peer's subnet or region, for eclipse resistance
        of the peer sampling view (``quorate.swim.peer_sampling``); None: the
        view ignores where peers are."""
        self._id = NodeId(id)
        self._config = (config or SwimConfig()).validate()
        self._rng = rng
        self._now = now
        self._encoder = msgspec.msgpack.Encoder()
        self._incarnation = 0
        self._lhm = 0
        self._left = False
        self._members: dict[NodeId, Member] = {
            self._id: Member(self._id, MemberState.ALIVE, 0, now)
        }
        self._n_up = 1
        # Up peers (this node excluded), kept in id order so that a random
        # choice is an O(k) ``rng.sample`` of a ready list, never an O(n) scan
        # per message; the set answers "is it up?" for the Cyclon view.
        self._up_sorted: list[NodeId] = []
        self._up_set: set[NodeId] = set()
        self._dead_sorted: list[NodeId] = []  # members held Dead, id order (for reconnect)
        # Each member's snapshot entry, in table order, kept up to date by
        # ``_set_state``; the snapshot tuple is cached until the next change.
        self._snapshot_entries: dict[NodeId, Update] = {
            self._id: Update(self._id, int(MemberState.ALIVE), 0, self._id)
        }
        self._snapshot_cache: tuple[Update, ...] | None = None
        self._suspicions: dict[NodeId, Suspicion] = {}
        # The earliest suspicion deadline, recomputed only when stale (a
        # suspicion, its accusers or the up count changed), not on every wake_at().
        self._suspicion_wake: float | None = None
        self._suspicion_wake_stale = False
        self._updates: TransmitQueue[Update] = TransmitQueue()
        self._rumour_queue: TransmitQueue[Rumour] = TransmitQueue()
        self._rumours = RumourLog(self._config.rumour_retention)
        self._rumour_seq = 0
        self._delivered: list[Delivered] = []
        self._state = MerkleTree(self._config.merkle_depth)
        self._state_updates: list[StateUpdate] = []
        self._locality = locality
        self._up_localities: Counter[str] = Counter()
        self._view = PartialView(
            self._id,
            self._config.view_size,
            self._config.shuffle_length,
            rng,
            locality=locality,
            max_per_locality=max(1, math.ceil(self._config.view_size * self._config.view_max_share)),
        )
        self._events: list[MembershipEvent] = []
        self._history: deque[MembershipEvent] = deque(maxlen=HISTORY_EVENTS)
        self._msgs: list[tuple[NodeId, Any]] = []
        self._rejected: list[Rejection] = []
        self._counters: dict[str, int] = {}
        self._missed_acks: deque[bool] = deque(maxlen=LOSS_WINDOW_PROBES)
        self._missed_count = 0  # how many of _missed_acks are True (read per message)
        # Probing.
        self._probe_order: list[NodeId] = []
        self._probe_index = 0
        self._seq = 0
        self._probe: _Probe | None = None
        self._probe_timeout_at: float | None = None
        self._next_probe_at = now + rng.random() * self._config.protocol_period_s
        self._relays: dict[int, _Relay] = {}
        # Other timers (spread randomly so a cluster started at once does not beat in step).
        c = self._config
        self._gossip_at = now + rng.random() * c.gossip_interval_s
        self._anti_entropy_at = now + c.anti_entropy_interval_s * (0.5 + rng.random())
        self._shuffle_at = now + c.shuffle_interval_s * (0.5 + rng.random())
        self._reconnect_at = now + c.reconnect_interval_s * (0.5 + rng.random())
        self._seeds = sorted({NodeId(s) for s in seeds} - {self._id})
        self._join_retry_at: float | None = None
        self._event(self._id, MemberState.ALIVE, 0, now)
        if self._seeds:
            self._send_join(now)

    # ================================================================ the contract
    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def config(self) -> SwimConfig:
        return self._config

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        """Handle a peer's message; malformed input is dropped and counted."""
        self._now = max(self._now, now)
        now = self._now
        sender = NodeId(sender)
        self._count("received")
        problem = self._check(message)
        if problem is not None:
            self._reject(sender, message, problem)
            return
        if self._left:
            # A member that left only answers pings, with the news that it left.
            if type(message) is Ping:
                self._send(sender, Ack(message.seq, updates=(self._self_update(),)))
            return
        handler = _HANDLERS[type(message)]
        handler(self, sender, message, now)

    def tick(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        self._now = max(self._now, now)
        now = self._now
        if self._left:
            return
        c = self._config
        if self._join_retry_at is not None and now >= self._join_retry_at:
            self._send_join(now)
        if self._probe_timeout_at is not None and now >= self._probe_timeout_at:
            self._probe_timed_out(now)
        if now >= self._next_probe_at:
            self._end_probe_period(now)
            self._start_probe(now)
        self._fire_relays(now)
        self._fire_suspicions(now)
        if now >= self._gossip_at:
            self._gossip_round(now)
            self._gossip_at = now + c.gossip_interval_s
        if now >= self._shuffle_at:
            self._shuffle(now)
            self._shuffle_at = now + c.shuffle_interval_s
        if now >= self._anti_entropy_at:
            self._anti_entropy_round(now)
            self._anti_entropy_at = now + c.anti_entropy_interval_s
        if now >= self._reconnect_at:
            self._reconnect(now)
            self._reconnect_at = now + c.reconnect_interval_s

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        """Broadcast ``command`` as a rumour (SWIM orders nothing)."""
        if self._left:
            return Refused("this member has left the group")
        if len(command) > self._config.max_rumour_bytes:
            return Refused(
                f"rumour of {len(command)} bytes exceeds max_rumour_bytes "
                f"({self._config.max_rumour_bytes})"
            )
        return Accepted(index=self.broadcast(command, now), term=self._incarnation)

    def has_ready(self) -> bool:
        return bool(self._msgs or self._rejected)

    def ready(self) -> Ready:
        ready = Ready(messages=self._msgs, wake_at=self.wake_at(), rejected=self._rejected)
        self._msgs = []
        self._rejected = []
        return ready

    def advance(self, ready: Ready) -> None:
        """Nothing to acknowledge: SWIM keeps no durable state."""

    def wake_at(self) -> float | None:
        """The next deadline, as ``Ready.wake_at`` reports it."""
        if self._left:
            return None
        c = self._config
        wake = min(self._next_probe_at, self._shuffle_at, self._anti_entropy_at, self._reconnect_at)
        if self._probe_timeout_at is not None:
            wake = min(wake, self._probe_timeout_at)
        if self._join_retry_at is not None:
            wake = min(wake, self._join_retry_at)
        if c.gossip_mode is not GossipMode.PUSH or self._updates or self._rumour_queue:
            wake = min(wake, self._gossip_at)
        for relay in self._relays.values():
            wake = min(wake, relay.expires_at if relay.nack_at is None else relay.nack_at)
        earliest = self._earliest_suspicion_deadline()
        if earliest is not None:
            wake = min(wake, earliest)
        return wake

    # ================================================================ public API
    def broadcast(self, payload: bytes, now: float) -> int:
        """Spread ``payload`` to every member; returns its sequence number.
        It is not delivered back to this node."""
        if self._left:
            raise LocalProtocolError("broadcast after leave()")
        if len(payload) > self._config.max_rumour_bytes:
            raise LocalProtocolError(
                f"payload of {len(payload)} bytes exceeds max_rumour_bytes ({self._config.max_rumour_bytes})"
            )
        self._now = max(self._now, now)
        self._rumour_seq += 1
        rumour = Rumour(self._id, self._rumour_seq, bytes(payload))
        self._rumours.add(rumour)
        self._queue_rumour(rumour)
        return self._rumour_seq

    def leave(self, now: float) -> None:
        """Leave the group gracefully: announce Left and stop probing."""
        if self._left:
            raise LocalProtocolError("leave() called twice")
        self._now = max(self._now, now)
        self._incarnation += 1
        self._set_state(self._id, MemberState.LEFT, self._incarnation, self._now)
        update = self._self_update()
        # Tell a few members directly; they gossip it on (and anyone who pings
        # us later hears it in the Ack).
        targets = self._random_up_peers(self._fanout() + self._config.indirect_probes)
        for target in targets:
            self._send(target, Gossip(updates=(update,)))
        self._left = True

    def local_state_put(self, key: str, version: int, value: bytes) -> bool:
        """Write ``key`` locally; anti-entropy carries it to the others. True
        if it won over what was stored."""
        if not 0 <= version <= MAX_VERSION:
            raise LocalProtocolError(f"version must be in 0..2**63-1, got {version}")
        return self._state.put(key, version, bytes(value))

    def state_get(self, key: str) -> tuple[int, bytes] | None:
        return self._state.get(key)

    def state_items(self) -> list[tuple[str, int, bytes]]:
        """The whole keyspace as ``(key, version, value)``, in key order."""
        return list(self._state.items())

    def state_root(self) -> bytes:
        """The Merkle root of the keyspace (equal roots: equal keyspaces)."""
        return self._state.root()

    def take_events(self) -> list[MembershipEvent]:
        """Membership changes seen here since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def take_delivered(self) -> list[Delivered]:
        """Rumours delivered here since the last call."""
        out, self._delivered = self._delivered, []
        return out

    def take_state_updates(self) -> list[StateUpdate]:
        """Keys changed by anti-entropy since the last call."""
        out, self._state_updates = self._state_updates, []
        return out

    def reachable(self) -> frozenset[NodeId]:
        """Members believed up (Alive or Suspect) from here, this node included."""
        return frozenset(m.id for m in self._members.values() if m.is_up)

    @property
    def up_count(self) -> int:
        """``len(reachable())``, without building the set."""
        return self._n_up

    def reachability_report(self, now: float, window_s: float) -> ReachabilityReport:
        """``reachable()`` plus who was lost or regained in the last ``window_s``."""
        since = now - window_s
        lost: set[NodeId] = set()
        regained: set[NodeId] = set()
        was_down: set[NodeId] = set()
        for event in self._history:
            if event.at < since:
                if event.state >= MemberState.DEAD:
                    was_down.add(event.member)
                else:
                    was_down.discard(event.member)
                continue
            if event.state >= MemberState.DEAD:
                lost.add(event.member)
                regained.discard(event.member)
            elif event.member in lost or event.member in was_down:
                lost.discard(event.member)
                regained.add(event.member)
        reachable = self.reachable()
        return ReachabilityReport(
            reachable=reachable,
            lost=frozenset(lost - reachable),
            regained=frozenset(regained & reachable),
            since=since,
        )

    def member(self, node: NodeId) -> tuple[MemberState, int] | None:
        """``(state, incarnation)`` of ``node`` as known here, or None."""
        m = self._members.get(node)
        return None if m is None else (m.state, m.incarnation)

    def members(self) -> dict[NodeId, tuple[MemberState, int]]:
        return {n: (m.state, m.incarnation) for n, m in self._members.items()}

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @property
    def local_health(self) -> int:
        """Lifeguard's Local Health Multiplier (0 = healthy)."""
        return self._lhm

    @property
    def joined(self) -> bool:
        return self._join_retry_at is None

    @property
    def has_left(self) -> bool:
        return self._left

    def view(self) -> list[NodeId]:
        """The Cyclon partial view."""
        return self._view.nodes()

    def observed_loss(self) -> float:
        """Missed direct Acks over the last probes (0 until enough probes)."""
        if len(self._missed_acks) < LOSS_MIN_SAMPLES:
            return 0.0
        return self._missed_count / len(self._missed_acks)

    def effective_fanout(self) -> int:
        return self._fanout()

    def effective_retransmit_mult(self) -> float:
        return self._config.retransmit_mult * self._adapt_factor()

    def counters(self) -> dict[str, int]:
        """Messages and bytes sent (also per type), and protocol events
        (``view_refreshes``: eclipse-resistance refreshes of the view)."""
        out = dict(self._counters)
        if self._view.capped:
            out["view_entries_capped"] = self._view.capped
        return out

    # ================================================================ checking input
    def _check(self, message: Any) -> str | None:
        """Why ``message`` cannot be handled, or None."""
        kind = type(message)
        if kind not in _HANDLERS:
            return f"not a SWIM message: {kind.__name__}"
        for updates in (getattr(message, "updates", ()), getattr(message, "members", ())):
            for update in updates:
                # The common case (all in range) inline; the reason only on failure.
                if not (
                    update.member >= 0
                    and update.origin >= 0
                    and 0 <= update.state <= _MAX_STATE
                    and 0 <= update.incarnation <= MAX_INCARNATION
                ):
                    return _check_update(update)
        for rumour in getattr(message, "rumours", ()):
            if rumour.origin < 0 or rumour.seq < 1:
                return "rumour with a negative origin or a seq below 1"
        if kind is MerkleLevel:
            depth = message.depth
            if not 0 <= depth <= self._state.depth:
                return f"Merkle depth {depth} outside this tree (depth {self._state.depth})"
            if len(message.positions) != len(message.hashes):
                return "Merkle positions and hashes differ in length"
            width = self._state.positions_at(depth)
            if any(not 0 <= p < width for p in message.positions):
                return "Merkle position outside the tree"
            if any(len(h) != HASH_BYTES for h in message.hashes):
                return "Merkle hash of the wrong size"
        if kind is MerkleEntries:
            buckets = set(message.buckets)
            if any(not 0 <= b < self._state.n_buckets for b in buckets):
                return "Merkle bucket outside the tree"
            for entry in message.entries:
                if not 0 <= entry.version <= MAX_VERSION:
                    return "state entry version out of range"
                if self._state.bucket_of(entry.key) not in buckets:
                    return "state entry outside the buckets being synced"
        if kind is PingReq and message.target < 0:
            return "PingReq for a negative node id"
        return None

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self._count("rejected")
        self._rejected.append(Rejection(sender, type(message).__name__, reason))

    # ================================================================ membership table
    def _self_update(self) -> Update:
        me = self._members[self._id]
        return Update(self._id, int(me.state), me.incarnation, self._id)

    def _snapshot(self) -> tuple[Update, ...]:
        if self._snapshot_cache is None:
            self._snapshot_cache = tuple(self._snapshot_entries.values())
        return self._snapshot_cache

    def _event(self, member: NodeId, state: MemberState, incarnation: int, now: float) -> None:
        event = MembershipEvent(member, state, incarnation, now)
        self._events.append(event)
        self._history.append(event)

    def _set_state(self, member: NodeId, state: MemberState, incarnation: int, now: float) -> None:
        old = self._members.get(member)
        was_up = old is not None and old.is_up
        was_dead = old is not None and old.state is MemberState.DEAD
        if old is None:
            old = Member(member, state, incarnation, now)
            self._members[member] = old
        else:
            changed_state = old.state is not state
            old.state, old.incarnation = state, incarnation
            if changed_state:
                old.since = now
        is_up = old.is_up
        self._n_up += int(is_up) - int(was_up)
        self._snapshot_entries[member] = Update(member, int(state), incarnation, self._id)
        self._snapshot_cache = None
        is_dead = state is MemberState.DEAD
        if is_dead and not was_dead:
            insort(self._dead_sorted, member)
        elif was_dead and not is_dead:
            del self._dead_sorted[bisect_left(self._dead_sorted, member)]
        self._suspicion_wake_stale = True  # the up count or a suspicion may change
        self._event(member, state, incarnation, now)
        if state is not MemberState.SUSPECT:
            self._suspicions.pop(member, None)
        if member == self._id:
            return
        if is_up and not was_up:
            insort(self._up_sorted, member)
            self._up_set.add(member)
            if self._locality is not None:
                self._up_localities[self._locality(member)] += 1
                self._view.diverse = len(self._up_localities) > 1
            # §4.3: a new member joins the round-robin order at a random place.
            self._probe_order.insert(self._rng.randint(0, len(self._probe_order)), member)
            self._view.add(member)
        elif was_up and not is_up:
            del self._up_sorted[bisect_left(self._up_sorted, member)]
            self._up_set.discard(member)
            if self._locality is not None:
                place = self._locality(member)
                self._up_localities[place] -= 1
                if self._up_localities[place] <= 0:
                    del self._up_localities[place]
                self._view.diverse = len(self._up_localities) > 1
            self._view.remove(member)
            if self._probe is not None and self._probe.target == member:
                self._probe.acked = True  # nothing left to decide about it

    def _apply(self, update: Update, now: float, sender: NodeId, snapshot: bool = False) -> bool:
        """Merge one update; True (and queued for gossip) when it was news."""
        member = NodeId(update.member)
        state = _STATES[update.state]
        incarnation = update.incarnation
        if member == self._id:
            self._about_self(state, incarnation, now)
            return False
        old = self._members.get(member)
        origin = NodeId(update.origin)
        if snapshot and state is MemberState.DEAD and old is not None and old.is_up:
            # memberlist's rule: a peer's snapshot only makes us suspect.
            state, origin = MemberState.SUSPECT, sender
        if not supersedes(
            state,
            incarnation,
            None if old is None else old.state,
            0 if old is None else old.incarnation,
        ):
            if (
                old is not None
                and state is MemberState.SUSPECT
                and old.state is MemberState.SUSPECT
                and incarnation == old.incarnation
            ):
                self._confirm(member, origin, update)
            return False
        self._set_state(member, state, incarnation, now)
        if state is MemberState.SUSPECT:
            self._suspicions[member] = Suspicion(member, incarnation, now, {origin})
            self._suspicion_wake_stale = True
            self._count("suspicions")
        elif state is MemberState.DEAD:
            self._count("deaths")
        if not snapshot or old is not None or member == sender:
            self._queue_update(Update(member, int(state), incarnation, origin))
        return True

    def _confirm(self, member: NodeId, accuser: NodeId, update: Update) -> None:
        """Lifeguard §IV-B: another independent accuser shortens the suspicion."""
        suspicion = self._suspicions.get(member)
        if suspicion is None or not self._config.lifeguard or accuser in suspicion.accusers:
            return
        if suspicion.confirmations >= self._config.suspicion_k:
            return
        suspicion.accusers.add(accuser)
        self._suspicion_wake_stale = True
        self._count("confirmations")
        self._queue_update(update)

    def _about_self(self, state: MemberState, incarnation: int, now: float) -> None:
        """Refute (§4.2): news about ourselves that is not "alive at our
        incarnation or older" is answered with a higher incarnation."""
        if state is MemberState.ALIVE and incarnation <= self._incarnation:
            return
        if state is not MemberState.ALIVE and incarnation < self._incarnation:
            return
        if incarnation >= MAX_INCARNATION:
            return  # cannot outbid it; a peer is lying
        self._incarnation = incarnation + 1
        self._set_state(self._id, MemberState.ALIVE, self._incarnation, now)
        self._queue_update(self._self_update())
        self._count("refutations")
        if self._config.lifeguard and state is not MemberState.ALIVE:
            self._raise_health()
        invariant(
            self._members[self._id].state is MemberState.ALIVE, "a member must never suspect itself"
        )

    def _queue_update(self, update: Update) -> None:
        self._updates.push(update.member, update, len(self._encoder.encode(update)))

    def _queue_rumour(self, rumour: Rumour) -> None:
        if self._config.gossip_mode is GossipMode.PULL:
            return  # pull mode: rumours wait to be asked for
        self._rumour_queue.push((rumour.origin, rumour.seq), rumour, self._rumour_size(rumour))

    def _rumour_size(self, rumour: Rumour) -> int:
        return len(self._encoder.encode(rumour))

    def _receive(self, sender: NodeId, message: Any, now: float) -> None:
        """Merge the piggybacked updates and rumours of ``message``."""
        for update in message.updates:
            self._apply(update, now, sender)
        for rumour in message.rumours:
            if self._rumours.add(rumour):
                self._delivered.append(Delivered(NodeId(rumour.origin), rumour.seq, rumour.payload))
                self._count("rumours_delivered")
                self._queue_rumour(rumour)

    # ================================================================ Lifeguard health
    def _raise_health(self, by: int = 1) -> None:
        if self._config.lifeguard:
            self._lhm = min(self._lhm + by, self._config.lhm_max)

    def _lower_health(self) -> None:
        self._lhm = max(self._lhm - 1, 0)

    def _scaled(self, seconds: float) -> float:
        return seconds * (self._lhm + 1)

    def _suspicion_deadline(self, suspicion: Suspicion) -> float:
        c = self._config
        min_s, max_s = suspicion_bounds(
            self._n_up, c.suspicion_alpha, c.suspicion_beta, c.protocol_period_s
        )
        if not c.lifeguard:
            return suspicion.started + min_s
        return suspicion.started + suspicion_timeout(
            self._n_up, suspicion.confirmations, c.suspicion_k, min_s, max_s
        )

    def _earliest_suspicion_deadline(self) -> float | None:
        if self._suspicion_wake_stale:
            self._suspicion_wake_stale = False
            self._suspicion_wake = min(
                (self._suspicion_deadline(s) for s in self._suspicions.values()), default=None
            )
        return self._suspicion_wake

    def _fire_suspicions(self, now: float) -> None:
        earliest = self._earliest_suspicion_deadline()
        if earliest is None or now < earliest:
            return
        due = [s for s in self._suspicions.values() if now >= self._suspicion_deadline(s)]
        for suspicion in due:
            self._apply(
                Update(suspicion.member, int(MemberState.DEAD), suspicion.incarnation, self._id),
                now,
                self._id,
            )

    # ================================================================ adaptation
    def _adapt_factor(self) -> float:
        if not self._config.adaptive:
            return 1.0
        return min(1.0 + ADAPT_GAIN * self.observed_loss(), MAX_ADAPT_FACTOR)

    def _fanout(self) -> int:
        base = self._config.fanout
        if self._config.adaptive:
            base = max(base, math.ceil(math.log10(self._n_up + 1)))
        return math.ceil(base * self._adapt_factor())

    def _limit(self) -> int:
        return retransmit_limit(self._n_up, self.effective_retransmit_mult())

    # ================================================================ sending
    def _send(self, to: NodeId, message: WireMessage) -> None:
        self._msgs.append((to, message))
        size = len(self._encoder.encode(message))
        counters = self._counters
        counters["sent"] = counters.get("sent", 0) + 1
        counters["bytes_sent"] = counters.get("bytes_sent", 0) + size
        key = "sent." + type(message).__name__
        counters[key] = counters.get(key, 0) + 1

    def _count(self, name: str, by: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + by

    def _piggyback(
        self, buddy: NodeId | None = None
    ) -> tuple[tuple[Update, ...], tuple[Rumour, ...]]:
        """Updates and rumours for one message, within the byte budget."""
        budget = self._config.max_message_bytes - ENVELOPE_BYTES
        first: list[Update] = []
        if buddy is not None and self._config.lifeguard:
            member = self._members.get(buddy)
            if member is not None and member.state is MemberState.SUSPECT:
                # Lifeguard §IV-C: tell the suspect first so it refutes now.
                news = Update(buddy, int(MemberState.SUSPECT), member.incarnation, self._id)
                first.append(news)
                budget -= len(self._encoder.encode(news))
        limit = self._limit()
        updates, used = self._updates.take(budget, limit)
        rumours: list[Rumour] = []
        if self._config.gossip_mode is not GossipMode.PULL:
            rumours, _ = self._rumour_queue.take(budget - used, limit)
        return tuple(first + updates), tuple(rumours)

    def _random_up_peers(self, count: int, exclude: Iterable[NodeId] = ()) -> list[NodeId]:
        """``count`` distinct random up peers (fewer if there are not enough),
        none of them in ``exclude``."""
        pool = self._up_sorted
        # The excluded few leave the list for the draw and go back after it:
        # the draw sees exactly the id-ordered list of the others, with no
        # copy of the whole list.
        removed: list[NodeId] = []
        for node in set(exclude):
            i = bisect_left(pool, node)
            if i < len(pool) and pool[i] == node:
                del pool[i]
                removed.append(node)
        try:
            return self._rng.sample(pool, min(count, len(pool)))
        finally:
            for node in removed:
                insort(pool, node)

    def _gossip_targets(self, count: int) -> list[NodeId]:
        """Partners drawn from the Cyclon view, topped up from the member list."""
        chosen = self._view.sample(count, self._up_set)
        if len(chosen) < count:
            chosen += self._random_up_peers(count - len(chosen), exclude=chosen)
        return chosen

    # ================================================================ join
    def _send_join(self, now: float) -> None:
        for seed in self._seeds:
            self._send(seed, Sync(members=(self._self_update(),), join=True))
        self._join_retry_at = now + JOIN_RETRY_PERIODS * self._config.protocol_period_s

    def _merge_snapshot(self, sender: NodeId, members: tuple[Update, ...], now: float) -> None:
        # Most of a snapshot is what we already know. An entry that is no news
        # (older incarnation, or the same state and incarnation) is skipped
        # here without the full merge; a suspicion at the same incarnation
        # still goes through it, as it may be a confirmation (Lifeguard §IV-B).
        known = self._members
        me = self._id
        suspect = MemberState.SUSPECT
        for update in members:
            old = known.get(NodeId(update.member))
            if old is not None and update.member != me:
                if update.incarnation < old.incarnation:
                    continue
                if (
                    update.incarnation == old.incarnation
                    and update.state == old.state
                    and old.state is not suspect
                ):
                    continue
            self._apply(update, now, sender, snapshot=True)

    def _on_sync(self, sender: NodeId, message: Sync, now: float) -> None:
        self._merge_snapshot(sender, message.members, now)
        self._send(sender, SyncReply(self._snapshot()))

    def _on_sync_reply(self, sender: NodeId, message: SyncReply, now: float) -> None:
        self._merge_snapshot(sender, message.members, now)
        if self._join_retry_at is not None:
            self._join_retry_at = None
            self._count("joined")

    # ================================================================ probing (§3, §4.3)
    def _next_target(self) -> NodeId | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                candidate = self._probe_order[self._probe_index]
                self._probe_index += 1
                member = self._members.get(candidate)
                if member is not None and member.is_up and candidate != self._id:
                    return candidate
            # End of a round: drop the departed and reshuffle.
            # A member that died and came back may be listed twice: once is enough.
            self._probe_order = [
                n for n in dict.fromkeys(self._probe_order) if self._members[n].is_up
            ]
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
            if not self._probe_order:
                return None
        return None

    def _record_direct_probe(self, *, missed: bool) -> None:
        window = self._missed_acks
        if len(window) == window.maxlen and window[0]:
            self._missed_count -= 1  # the oldest sample is about to fall out
        window.append(missed)
        self._missed_count += missed

    def _start_probe(self, now: float) -> None:
        c = self._config
        self._next_probe_at = now + self._scaled(c.protocol_period_s)
        target = self._next_target()
        if target is None:
            self._probe = None
            return
        self._seq += 1
        self._probe = _Probe(target, self._seq)
        self._probe_timeout_at = now + self._scaled(c.probe_timeout_s)
        updates, rumours = self._piggyback(buddy=target)
        self._send(target, Ping(self._seq, updates, rumours))
        self._count("probes")

    def _probe_timed_out(self, now: float) -> None:
        """No direct Ack in time: ask k helpers (§3, "indirect probing")."""
        self._probe_timeout_at = None
        probe = self._probe
        if probe is None or probe.acked:
            return
        self._record_direct_probe(missed=True)
        helpers = self._random_up_peers(self._config.indirect_probes, exclude=(probe.target,))
        for helper in helpers:
            updates, rumours = self._piggyback()
            self._send(helper, PingReq(probe.seq, probe.target, updates, rumours))
        probe.helpers = len(helpers)

    def _end_probe_period(self, now: float) -> None:
        probe = self._probe
        self._probe = None
        if self._probe_timeout_at is not None:
            self._probe_timeout_at = None
            if probe is not None and not probe.acked:
                self._probe_timed_out(now)  # period shorter than timeout after LHM changes
        if probe is None or probe.acked:
            return
        self._count("probe_failures")
        if self._config.lifeguard:
            # §IV-A: a failed probe, and each helper that did not even Nack,
            # are evidence that our own links or CPU are the problem.
            self._raise_health(1 + max(probe.helpers - probe.nacks, 0))
        member = self._members.get(probe.target)
        if member is not None and member.state is MemberState.ALIVE:
            self._apply(
                Update(probe.target, int(MemberState.SUSPECT), member.incarnation, self._id),
                now,
                self._id,
            )

    def _on_ping(self, sender: NodeId, message: Ping, now: float) -> None:
        self._receive(sender, message, now)
        updates, rumours = self._piggyback()
        self._send(sender, Ack(message.seq, updates, rumours))

    def _on_ack(self, sender: NodeId, message: Ack, now: float) -> None:
        self._receive(sender, message, now)
        probe = self._probe
        if probe is not None and message.seq == probe.seq and not probe.acked:
            probe.acked = True
            if self._probe_timeout_at is not None:
                self._probe_timeout_at = None
                self._record_direct_probe(missed=False)
            self._lower_health()
            return
        relay = self._relays.pop(message.seq, None)
        if relay is not None:
            updates, rumours = self._piggyback()
            self._send(relay.requester, Ack(relay.requester_seq, updates, rumours))

    def _on_ping_req(self, sender: NodeId, message: PingReq, now: float) -> None:
        self._receive(sender, message, now)
        c = self._config
        self._seq += 1
        timeout = self._scaled(c.probe_timeout_s)
        self._relays[self._seq] = _Relay(
            requester=sender,
            requester_seq=message.seq,
            nack_at=now + NACK_FRACTION * timeout if c.lifeguard else None,
            expires_at=now + self._scaled(c.protocol_period_s),
        )
        updates, rumours = self._piggyback(buddy=NodeId(message.target))
        self._send(NodeId(message.target), Ping(self._seq, updates, rumours))

    def _on_nack(self, sender: NodeId, message: Nack, now: float) -> None:
        probe = self._probe
        if probe is not None and message.seq == probe.seq:
            probe.nacks += 1

    def _fire_relays(self, now: float) -> None:
        for seq, relay in list(self._relays.items()):
            if relay.nack_at is not None and now >= relay.nack_at:
                relay.nack_at = None
                self._send(relay.requester, Nack(relay.requester_seq))
            if now >= relay.expires_at:
                del self._relays[seq]

    # ================================================================ gossip (§4.1)
    def _gossip_round(self, now: float) -> None:
        mode = self._config.gossip_mode
        fanout = self._fanout()
        if self._updates or self._rumour_queue:
            for target in self._gossip_targets(fanout):
                updates, rumours = self._piggyback()
                if not updates and not rumours:
                    break
                self._send(target, Gossip(updates, rumours))
        if mode is not GossipMode.PUSH:
            seen = self._rumours.summary()
            for target in self._gossip_targets(fanout):
                self._send(target, PullRequest(seen))

    def _on_gossip(self, sender: NodeId, message: Gossip, now: float) -> None:
        self._receive(sender, message, now)

    def _on_pull_request(self, sender: NodeId, message: PullRequest, now: float) -> None:
        budget = self._config.max_message_bytes - ENVELOPE_BYTES
        missing = self._rumours.missing_for(dict(message.seen), budget, self._rumour_size)
        if missing:
            self._send(sender, PullReply(tuple(missing)))

    def _on_pull_reply(self, sender: NodeId, message: PullReply, now: float) -> None:
        for rumour in message.rumours:
            if self._rumours.add(rumour):
                self._delivered.append(Delivered(NodeId(rumour.origin), rumour.seq, rumour.payload))
                self._count("rumours_delivered")
                self._queue_rumour(rumour)

    # ================================================================ peer sampling
    def _shuffle(self, now: float) -> None:
        started = self._view.start_shuffle()
        if started is None:
            for peer in self._random_up_peers(self._config.view_size):
                self._view.add(peer)
            return
        target, entries = started
        self._send(target, Shuffle(tuple(entries)))

    def _on_shuffle(self, sender: NodeId, message: Shuffle, now: float) -> None:
        reply = self._view.answer_shuffle(sender, list(message.entries))
        self._send(sender, ShuffleReply(tuple(reply)))
        self._check_view_diversity()

    def _on_shuffle_reply(self, sender: NodeId, message: ShuffleReply, now: float) -> None:
        self._view.finish_shuffle(sender, list(message.entries))
        self._check_view_diversity()

    def view_entropy_ratio(self) -> float:
        """The view's locality entropy over the up members' (1.0: as mixed as they are)."""
        return self._view.entropy_ratio(self._up_sorted)

    def _check_view_diversity(self) -> None:
        """Eclipse resistance: a view one locality dominates is refreshed
        from the trusted seeds (``quorate.swim.peer_sampling``)."""
        minimum = self._config.view_entropy_min
        if self._locality is None or minimum == 0 or len(self._view) < 2:
            return
        if self._view.entropy_ratio(self._up_sorted) >= minimum:
            return
        trusted = [seed for seed in self._seeds if seed in self._up_set]
        self._view.refresh(trusted, self._up_sorted)
        self._count("view_refreshes")

    # ================================================================ anti-entropy
    def _anti_entropy_round(self, now: float) -> None:
        targets = self._gossip_targets(1)
        if not targets:
            return
        peer = targets[0]
        self._send(peer, Sync(self._snapshot()))
        self._send(peer, MerkleLevel(0, (0,), (self._state.root(),)))
        self._count("anti_entropy_rounds")

    def _reconnect(self, now: float) -> None:
        dead = self._dead_sorted
        if dead:
            self._send(self._rng.choice(dead), Sync(self._snapshot()))
            self._count("reconnect_attempts")

    def _on_merkle_level(self, sender: NodeId, message: MerkleLevel, now: float) -> None:
        tree = self._state
        differing = tree.diff(message.depth, message.positions, message.hashes)
        if not differing:
            if message.depth == 0:
                self._count("merkle_in_sync")
            return
        if message.depth == tree.depth:
            self._send_buckets(sender, differing, reply_wanted=True, theirs=None)
            return
        children = [child for p in differing for child in tree.children(p)]
        per_message = max((self._config.max_message_bytes - ENVELOPE_BYTES) // (HASH_BYTES + 6), 1)
        depth = message.depth + 1
        for start in range(0, len(children), per_message):
            chunk = children[start : start + per_message]
            self._send(
                sender,
                MerkleLevel(depth, tuple(chunk), tuple(tree.hash_at(depth, p) for p in chunk)),
            )
            self._count("merkle_hashes_sent", len(chunk))

    def _send_buckets(
        self,
        to: NodeId,
        buckets: list[int],
        *,
        reply_wanted: bool,
        theirs: dict[str, tuple[int, bytes]] | None,
    ) -> None:
        """Ship our entries of ``buckets`` (only those beating ``theirs``, when
        answering), whole buckets per message, within the budget where possible."""
        budget = self._config.max_message_bytes - ENVELOPE_BYTES
        chunk_buckets: list[int] = []
        chunk_entries: list[StateEntry] = []
        used = 0
        for bucket in buckets:
            entries = self._state.bucket_entries(bucket)
            if theirs is not None:
                entries = [e for e in entries if _beats(e, theirs.get(e.key))]
            size = sum(len(self._encoder.encode(e)) for e in entries) + 4
            if chunk_buckets and used + size > budget:
                self._flush_buckets(to, chunk_buckets, chunk_entries, reply_wanted)
                chunk_buckets, chunk_entries, used = [], [], 0
            chunk_buckets.append(bucket)
            chunk_entries.extend(entries)
            used += size
        if chunk_buckets:
            self._flush_buckets(to, chunk_buckets, chunk_entries, reply_wanted)

    def _flush_buckets(
        self, to: NodeId, buckets: list[int], entries: list[StateEntry], reply_wanted: bool
    ) -> None:
        if not entries and not reply_wanted:
            return
        self._send(to, MerkleEntries(tuple(buckets), tuple(entries), reply_wanted))
        self._count("merkle_buckets_sent", len(buckets))
        self._count("merkle_entries_sent", len(entries))

    def _on_merkle_entries(self, sender: NodeId, message: MerkleEntries, now: float) -> None:
        theirs: dict[str, tuple[int, bytes]] = {}
        for entry in message.entries:
            theirs[entry.key] = (entry.version, entry.value)
            if self._state.put(entry.key, entry.version, entry.value):
                self._state_updates.append(StateUpdate(entry.key, entry.version, entry.value))
                self._count("state_updates")
        if message.reply_wanted:
            self._send_buckets(sender, list(message.buckets), reply_wanted=False, theirs=theirs)


def _beats(entry: StateEntry, theirs: tuple[int, bytes] | None) -> bool:
    if theirs is None:
        return True
    return entry.version > theirs[0] or (entry.version == theirs[0] and entry.value > theirs[1])


_STATES = tuple(MemberState)
"""``MemberState`` by value, without the enum's lookup on every update."""
_MAX_STATE = int(MemberState.LEFT)


def _check_update(update: Update) -> str | None:
    if update.member < 0 or update.origin < 0:
        return "membership update with a negative node id"
    if not 0 <= update.state <= MemberState.LEFT:
        return f"membership update with unknown state {update.state}"
    if not 0 <= update.incarnation <= MAX_INCARNATION:
        return "membership update with an incarnation out of range"
    return None


_HANDLERS: dict[type, Any] = {
    Ping: SwimNode._on_ping,
    Ack: SwimNode._on_ack,
    PingReq: SwimNode._on_ping_req,
    Nack: SwimNode._on_nack,
    Gossip: SwimNode._on_gossip,
    PullRequest: SwimNode._on_pull_request,
    PullReply: SwimNode._on_pull_reply,
    Sync: SwimNode._on_sync,
    SyncReply: SwimNode._on_sync_reply,
    Shuffle: SwimNode._on_shuffle,
    ShuffleReply: SwimNode._on_shuffle_reply,
    MerkleLevel: SwimNode._on_merkle_level,
    MerkleEntries: SwimNode._on_merkle_entries,
}
invariant(set(_HANDLERS) == set(SWIM_MESSAGE_TYPES), "every SWIM message type has a handler")
