"""A simulated replica: a protocol core, its durable storage, its CPU and clock.

Theory of operation.

- **Effects.** A ``SimNode`` is the driver's ``Host`` for its core: ``persist``
  writes to a ``MemoryStorage`` (which survives a simulated crash), ``send``
  collects messages that leave when the CPU work producing them is done,
  ``apply``/``read_ready``/``restore`` go to the node's ``Replica`` (the
  client-facing state machine service). A ``quorate.runtime.driver.Driver``,
  one per incarnation of the core, does persist -> send -> apply -> advance,
  as in the real runtime; it is handed the storage's and the replica's own
  methods, which exist exactly as long as that incarnation. What one input
  produced leaves in one ``Network.send_all`` call.
- **CPU.** Handling an input costs ``CostModel.cost_s`` (a base per message type
  plus a cost per byte), times the node's slowness factor, plus whatever a
  cost-model crypto verifier charged (``spent_s``). The node is busy until the
  work ends (``busy_until``); inputs arriving meanwhile wait in a FIFO inbox and
  run when the CPU frees. Messages the work produced depart at its end.
- **Timers are deadlines.** After each drive the node compares the core's
  ``wake_at`` (or the replica service's ``tick_at``, when a TTL makes it ask
  to propose time, if earlier) with the one it already has; at most one timer event per node is
  live (tagged with a generation number, so superseded ones are skipped). A
  deadline moved *earlier* schedules a new event; one moved *later* (an
  election timer reset by every heartbeat) schedules nothing: the pending
  event, when it fires, sees the later deadline and re-arms once. An idle node
  costs no events; a follower costs about one per election timeout.
- **Admission.** With a ``PeerRateLimiter`` (``security.ratelimit``), a
  peer's message meets its sender's token bucket on arrival, *before* it is
  queued, decoded or verified; a message over the limit is dropped and costs
  only ``ADMISSION_COST_S`` (a bucket look-up), charged to the next piece of
  work. That is what stops a flooding peer from buying the node's CPU.
  Client requests are not limited here (they are not peers).
- **Flooding.** ``send_copies`` > 1 sends every outgoing message that many
  times: a simulated attacker with more bandwidth than its protocol core
  asks for (used for nodes running the ``flood`` behaviour).
- **Clock.** The node's local clock is ``offset_s + rate * sim_time`` and never
  runs backwards. The core only ever sees local time; its ``wake_at`` is mapped
  back to simulated time (rounded up so the core finds its deadline passed).
- **Crash and restart.** A crash drops the core, the replica, the inbox and
  armed timers (volatile state) and keeps storage. A restart builds a new core
  from ``storage.recover()``.

The default ``CostModel`` figures are measured, not guessed: ``quorate bench
sim --json`` ("raft_cost_model", ``quorate.bench.sim.measure_raft_cost``)
times msgspec decode + ``RaftNode.step`` + driving the ``Ready`` for
AppendEntries at a follower, in process CPU time, on the project's 2-core
machine (CPython 3.11, msgspec 0.22): 4.4 us for a 95-byte message with one
entry, 24.5 us for a 16,859-byte message with 64 entries; the linear fit gives
``DEFAULT_BASE_COST_S`` and ``DEFAULT_PER_BYTE_COST_S`` below. (The reference
protocol in ``runtime.sim.primary`` costs 1.9 us + 0.64 ns/byte by the same
method; protocols with signatures add their verifier's ``spent_s``.) Speed
work on the Raft core has since brought the small AppendEntries to about
2.7 us by the same command (3.7 us for the previous core in runs alternated
with those); the defaults are deliberately left as they were,
so that simulated figures stay comparable with those already published —
re-fitting them is a change of the model, to be made on its own.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from quorate.core.protocol import ProtocolCore
from quorate.core.ready import Entry, ReadState, Rejection
from quorate.ids import NodeId
from quorate.runtime.driver import Driver
from quorate.runtime.sim.network import Network
from quorate.security.ratelimit import PeerRateLimiter
from quorate.storage.base import Recovered
from quorate.storage.memory import MemoryStorage

# `quorate bench sim --json`, "raft_cost_model": fit_base_s and fit_per_byte_s
# (median of 5 runs of 5,000 small / 625 large messages; two runs agreed to 2 %).
DEFAULT_BASE_COST_S = 4.4e-6
DEFAULT_PER_BYTE_COST_S = 1.2e-9
ADMISSION_COST_S = 0.3e-6
"""CPU seconds to look up a peer's token bucket and drop its message (a dict
look-up and a few float operations in CPython, ~0.3 us on the project's
machine); a rate-limited flood costs this per message instead of a decode,
a step and a signature check."""
DEFAULT_TICK_COST_S = DEFAULT_BASE_COST_S
"""A timer firing is charged like one small message (a heartbeat round or an
election starts with about that much work before the per-message sends)."""


@dataclass(frozen=True, slots=True)
class CostModel:
    """CPU seconds a node spends on one input."""

    base_s: float = DEFAULT_BASE_COST_S
    per_byte_s: float = DEFAULT_PER_BYTE_COST_S
    tick_s: float = DEFAULT_TICK_COST_S
    base_by_type_s: Mapping[str, float] = field(default_factory=dict)
    """Overrides of ``base_s`` by message class name (e.g. signature-heavy votes)."""

    def cost_s(self, message: Any, size: int) -> float:
        """CPU seconds to decode and handle ``message`` of ``size`` bytes."""
        by_type = self.base_by_type_s
        if by_type:
            base = by_type.get(type(message).__name__, self.base_s)
        else:
            base = self.base_s
        return base + size * self.per_byte_s


class Replica(Protocol):
    """The client-facing service a node runs on top of its core."""

    def on_client_request(self, sender: NodeId, request: Any, now: float) -> None:
        """A client's request arrived (propose, read, or redirect)."""
        ...

    def take_replies(self) -> list[tuple[NodeId, Any]]:
        """Replies to send to clients, in order; clears them."""
        ...

    def apply(self, entry: Entry) -> None:
        """Apply a committed entry to the state machine."""
        ...

    def read_ready(self, read: ReadState) -> None:
        """A linearizable read may now be served."""
        ...

    def restore(self, snapshot: Any) -> None:
        """Replace the state machine with a snapshot."""
        ...


class TimedReplica(Replica, Protocol):
    """A replica service that may ask to be woken (``quorate.state.service``:
    time entries for TTLs): the node wakes it at ``tick_at`` (the node's
    clock) with ``tick``, as it wakes the core at ``Ready.wake_at``."""

    tick_at: float | None

    def tick(self, now: float) -> None:
        """Time has passed; ``now`` is the node's clock."""
        ...


CoreFactory = Callable[[NodeId, float, "Recovered | None"], ProtocolCore]
"""Builds a core: ``(node, local_now, recovered or None when fresh)``."""
ReplicaFactory = Callable[[ProtocolCore], Replica]
Send = Callable[[int, int, Any, float], None]
SendAll = Callable[[int, Iterable[tuple[int, Any]], float], None]
Schedule = Callable[[float, int, int, int, Any, int], None]


def _batched(send: Send) -> SendAll:
    """A sender of whole outboxes: ``Network.send_all`` when ``send`` is a
    ``Network``'s own ``send`` (one call per input instead of one per message,
    and the sender's state read once), else a loop over ``send``."""
    network = getattr(send, "__self__", None)
    if isinstance(network, Network) and send == network.send:
        return network.send_all

    def send_all(src: int, messages: Iterable[tuple[int, Any]], depart_s: float) -> None:
        for to, message in messages:
            send(src, to, message, depart_s)

    return send_all


class _Effects:
    """The driver ``Host`` of one incarnation of a node: its storage's and its
    replica's own methods, so the driver reaches them without a forwarding call
    (one less Python call per committed entry on every replica)."""

    __slots__ = ("apply", "persist", "read_ready", "rejected", "restore", "send")

    def __init__(
        self,
        persist: Callable[[Any, list[Entry], Any], None],
        send: Callable[[NodeId, Any], None],
        restore: Callable[[Any], None],
        apply: Callable[[Entry], None],
        read_ready: Callable[[ReadState], None],
        rejected: Callable[[Rejection], None],
    ) -> None:
        self.persist = persist
        self.send = send
        self.restore = restore
        self.apply = apply
        self.read_ready = read_ready
        self.rejected = rejected


class SimNode:
    """One replica in the simulation (see the module docstring)."""

    __slots__ = (
        "_build_core",
        "_build_replica",
        "_driver",
        "_has_replies",
        "_outbox",
        "_schedule",
        "_send_all",
        "_timed",
        "admission_debt_s",
        "alive",
        "busy_until",
        "clock_offset_s",
        "clock_rate",
        "core",
        "cost",
        "cpu_factor",
        "cpu_kind",
        "epoch",
        "first_client_id",
        "id",
        "inbox",
        "last_local_s",
        "limiter",
        "monitor",
        "rejected_count",
        "replica",
        "send_copies",
        "stale_wakes",
        "storage",
        "verifier",
        "wake_gen",
        "wake_kind",
        "wake_local_s",
        "wake_sim_s",
        "work_s",
    )

    def __init__(
        self,
        node_id: NodeId,
        *,
        build_core: CoreFactory,
        build_replica: ReplicaFactory,
        cost: CostModel,
        send: Send,
        schedule: Schedule,
        wake_kind: int,
        cpu_kind: int,
        first_client_id: int,
        verifier: Any = None,
        monitor: Callable[[ProtocolCore, float], None] | None = None,
        limiter: PeerRateLimiter | None = None,
        send_copies: int = 1,
    ) -> None:
        self.id = node_id
        self._build_core = build_core
        self._build_replica = build_replica
        self._send_all = _batched(send)
        self._schedule = schedule
        self._outbox: list[tuple[NodeId, Any]] = []
        self.wake_kind = wake_kind
        self.cpu_kind = cpu_kind
        self.first_client_id = first_client_id
        """Senders with ids from here on are clients, not peers."""
        self.cost = cost
        self.verifier = verifier
        self.monitor = monitor
        self.limiter = limiter
        """Per-peer token buckets applied on arrival (None: no limit)."""
        self.send_copies = send_copies
        self.admission_debt_s = 0.0
        """CPU seconds of dropped messages not yet charged to any work."""
        self.storage = MemoryStorage()
        self.core: ProtocolCore | None = None
        self.replica: Replica | None = None
        self._has_replies: Callable[[], bool] | None = None
        self._timed = False
        """The replica has deadlines of its own (``TimedReplica``)."""
        self._driver: Driver | None = None
        self.alive = False
        self.epoch = 0
        self.busy_until = 0.0
        self.inbox: deque[tuple[float, int, int, int, int, Any, int]] = deque()
        self.cpu_factor = 1.0
        self.clock_offset_s = 0.0
        self.clock_rate = 1.0
        self.last_local_s = 0.0
        self.wake_gen = 0
        self.wake_local_s: float | None = None
        """The deadline the core asked for (its clock), None when none."""
        self.wake_sim_s: float | None = None
        """Simulated time of the one live timer event, None when none is queued."""
        self.rejected_count = 0
        self.stale_wakes = 0
        """Timer and CPU events that found nothing to do (superseded deadlines,
        work lost in a crash): popped, but not counted as events."""
        self.work_s = 0.0
        """CPU seconds spent so far (for utilisation figures)."""

    # -- clock ---------------------------------------------------------------
    def local_time(self, sim_s: float) -> float:
        """The node's clock reading at simulated time ``sim_s`` (monotonic)."""
        local = self.clock_offset_s + self.clock_rate * sim_s
        if local < self.last_local_s:
            local = self.last_local_s
        self.last_local_s = local
        return local

    def sim_time_of(self, local_s: float) -> float:
        """The earliest simulated time at which the local clock reads ``local_s``."""
        offset = self.clock_offset_s
        rate = self.clock_rate
        t = (local_s - offset) / rate
        # Round up: the core must find its deadline passed when woken.
        while offset + rate * t < local_s:
            t = math.nextafter(t, math.inf)
        return t

    def set_clock(self, now_s: float, *, offset_jump_s: float = 0.0, rate: float | None = None) -> None:
        """Change drift rate and/or jump the clock at simulated time ``now_s``,
        keeping the reading continuous apart from the jump."""
        reading = self.clock_offset_s + self.clock_rate * now_s
        if rate is not None:
            self.clock_rate = rate
        self.clock_offset_s = reading + offset_jump_s - self.clock_rate * now_s
        if self.alive:
            self._rearm(now_s)

    # -- lifecycle -------------------------------------------------------------
    def start(self, now_s: float) -> None:
        """Boot (or reboot) from durable storage."""
        recovered = self.storage.recover()
        fresh = recovered.hard_state is None and recovered.snapshot is None and not recovered.entries
        local = self.local_time(now_s)
        self.core = core = self._build_core(self.id, local, None if fresh else recovered)
        self.replica = replica = self._build_replica(core)
        # An optional cheap probe saves building an empty reply list per input.
        self._has_replies = getattr(replica, "has_replies", None)
        self._timed = callable(getattr(replica, "tick", None))
        # The driver calls storage and replica directly: while this incarnation
        # lives, both exist, so the ``Host`` methods below would only forward.
        effects = _Effects(
            self.storage.persist, self.send, replica.restore, replica.apply, replica.read_ready, self.rejected
        )
        self._driver = Driver(core, effects)
        self.alive = True
        self.busy_until = now_s
        # Boot work is a timer firing at once: the core ticks and its first
        # Ready is carried out.
        self._handle((now_s, -1, self.wake_kind, self.id, self.wake_gen, None, 0), now_s)

    def crash(self) -> None:
        """Lose volatile state: the core, the replica, queued inputs, timers."""
        self.core = None
        self.replica = None
        self._driver = None
        self.alive = False
        self.epoch += 1
        self.inbox.clear()
        self._outbox.clear()
        self.wake_gen += 1
        self.wake_local_s = None
        self.wake_sim_s = None

    # -- inputs ----------------------------------------------------------------
    def deliver(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        """A peer's message or a client's request arrived (a delivery event)."""
        if not self.alive:
            return
        now = event[0]
        limiter = self.limiter
        # NodeId is a NewType of int: the event already holds the int.
        if (
            limiter is not None
            and event[4] < self.first_client_id
            and event[5] is not None
            and not limiter.allow(event[4], now)  # type: ignore[arg-type]
        ):
            self.admission_debt_s += ADMISSION_COST_S
            return
        if self.busy_until > now:
            if not self.inbox:
                self._schedule(self.busy_until, self.cpu_kind, self.id, self.epoch, None, 0)
            self.inbox.append(event)
            return
        self._handle(event, now)

    def wake(self, event: tuple[float, int, int, int, int, Any, int]) -> bool:
        """A timer event; returns False when it did not tick the core (superseded,
        or the deadline had moved later and the event re-armed itself)."""
        if event[4] != self.wake_gen or not self.alive:
            self.stale_wakes += 1
            return False
        now = event[0]
        self.wake_sim_s = None  # no timer event is pending any more
        desired = self.wake_local_s
        if desired is None:
            self.stale_wakes += 1
            return False
        at = self.sim_time_of(desired)
        if at > now:
            # The deadline moved later since this event was queued (a follower's
            # election timer reset by heartbeats): re-arm once, lazily.
            self._arm(at)
            self.stale_wakes += 1
            return False
        self.wake_local_s = None  # consumed: whatever the core asks next is new
        if self.busy_until > now:
            if not self.inbox:
                self._schedule(self.busy_until, self.cpu_kind, self.id, self.epoch, None, 0)
            self.inbox.append(event)
            return True
        self._handle(event, now)
        return True

    def _arm(self, at: float) -> None:
        self.wake_gen += 1
        self.wake_sim_s = at
        self._schedule(at, self.wake_kind, self.id, self.wake_gen, None, 0)

    def cpu_free(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        """The CPU finished its work: run the next queued input."""
        if event[4] != self.epoch or not self.alive or not self.inbox:
            self.stale_wakes += 1  # the work it announced died with a crash
            return
        now = event[0]
        queued = self.inbox.popleft()
        self._handle(queued, now)
        if self.inbox and self.alive:
            self._schedule(self.busy_until, self.cpu_kind, self.id, self.epoch, None, 0)

    def _handle(self, event: tuple[float, int, int, int, int, Any, int], now: float) -> None:
        """Run one input on the CPU from ``now`` and carry out what it produced.

        This is the simulator's hottest path (every delivery, timer and boot
        comes through it), written as one function: the clock reading, the
        step, the cost, the driver, the sends and the next deadline."""
        core = self.core
        assert core is not None
        # local_time(), inlined.
        local = self.clock_offset_s + self.clock_rate * now
        if local < self.last_local_s:
            local = self.last_local_s
        self.last_local_s = local
        message = event[5]
        if message is None:
            # A timer: generation must still match (a later drive may have moved it).
            if event[4] != self.wake_gen:
                return
            core.tick(local)
            if self._timed:
                self.replica.tick(local)  # type: ignore[union-attr]
            cost = self.cost.tick_s
        else:
            # NodeId is a NewType of int: the event already holds the int.
            src: NodeId = event[4]  # type: ignore[assignment]
            replica = self.replica
            if src >= self.first_client_id:
                if replica is not None:
                    replica.on_client_request(src, message, local)
            else:
                core.step(src, message, local)
            cost = self.cost.cost_s(message, event[6])
        done = now + cost * self.cpu_factor
        # The driver does persist -> send (into the outbox) -> apply -> advance.
        driver = self._driver
        assert driver is not None
        wake = driver.drive()
        verifier = self.verifier
        if verifier is not None:
            spent = getattr(verifier, "spent_s", 0.0)
            if spent:
                done += spent
                verifier.spent_s = 0.0
        if self.admission_debt_s:
            done += self.admission_debt_s
            self.admission_debt_s = 0.0
        self.work_s += done - now
        self.busy_until = done
        # What the work produced leaves when the work is done.
        send_all = self._send_all
        me = self.id
        outbox = self._outbox
        if outbox:
            copies = self.send_copies
            if copies == 1:
                send_all(me, outbox, done)
            else:
                send_all(me, [item for item in outbox for _ in range(copies)], done)
            outbox.clear()
        replica = self.replica
        if replica is not None:
            has_replies = self._has_replies
            if has_replies is None or has_replies():
                replies = replica.take_replies()
                if replies:
                    send_all(me, replies, done)
        monitor = self.monitor
        if monitor is not None:
            monitor(core, self.last_local_s)
        if self._timed:
            tick_at = replica.tick_at  # type: ignore[union-attr]
            if tick_at is not None and (wake is None or tick_at < wake):
                wake = tick_at
        if wake != self.wake_local_s:
            self.wake_local_s = wake
            if wake is not None:
                # Only a deadline earlier than the pending event needs a new event;
                # a later one is picked up when the pending event fires. A cleared
                # deadline leaves the pending event to find nothing to do.
                offset = self.clock_offset_s
                rate = self.clock_rate
                at = (wake - offset) / rate
                if offset + rate * at < wake:
                    at = self.sim_time_of(wake)  # rounding: see sim_time_of
                if at < now:
                    at = now
                pending = self.wake_sim_s
                if pending is None or at < pending:
                    self._arm(at)

    def _rearm(self, now: float) -> None:
        """Reschedule the armed deadline after a clock change."""
        wake = self.wake_local_s
        self.wake_gen += 1
        self.wake_sim_s = None
        if wake is not None:
            at = self.sim_time_of(wake)
            self._arm(at if at > now else now)

    # -- driver Host --------------------------------------------------------
    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        self.storage.persist(hard_state, entries, snapshot)

    def send(self, to: NodeId, message: Any) -> None:
        self._outbox.append((to, message))

    def restore(self, snapshot: Any) -> None:
        if self.replica is not None:
            self.replica.restore(snapshot)

    def apply(self, entry: Entry) -> None:
        if self.replica is not None:
            self.replica.apply(entry)

    def read_ready(self, read: ReadState) -> None:
        if self.replica is not None:
            self.replica.read_ready(read)

    def rejected(self, rejection: Rejection) -> None:
        self.rejected_count += 1
