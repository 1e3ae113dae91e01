"""A simulated node: a node host with its groups' cores, durable storage, CPU and clock.

Theory of operation.

- **Groups.** A node hosts any number of protocol groups
  (``quorate.core.host.NodeHost``); a single-protocol run hosts group 0. A
  message of group 0 travels bare; one of another group travels as
  ``Grouped(group, message)`` (a few bytes more, like the group id in a real
  frame), and the node routes it to that group's core, or to that group's
  replica service when it comes from a client. ``group_factory`` builds a
  group's core and service, fresh or from its storage after a restart. What
  a group sends on *other* groups (``NodeHost.take_outbound``, HRB's tiers)
  leaves after the turn like its other messages; what is for this node
  itself is stepped into its host at once.
- **Effects.** A ``SimNode`` is the ``HostEffects`` of the one driver loop
  both runtimes use (``quorate.runtime.driver.HostDriver``): ``persist``
  writes every group's state to its ``MemoryStorage`` (which survives a
  simulated crash), ``send`` collects messages that leave when the CPU work
  producing them is done, ``apply``/``read_ready``/``restore`` go to the
  group's replica service (the client-facing state machine). What one input
  produced leaves in one ``Network.send_all`` call.
- **Disk.** With ``fsync_s`` > 0 the node models its disk: a write that must
  be synced joins the fsync that starts next (writes issued while one runs
  wait for it and then share the next one: group commit), and every message
  and client reply the node produces after it leaves only once that fsync is
  done — except the messages a core allowed to leave before its writes
  (``Ready.early_messages``) and those of groups whose binding pipelines
  sends during a write. With ``fsync_s`` = 0 writes are instant.
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

import msgspec

from quorate.core.binding import Binding
from quorate.core.host import GroupReady, HostedGroup, NodeHost
from quorate.core.protocol import ProtocolCore
from quorate.core.ready import Entry, ReadState, Rejection
from quorate.core.service_message import PeerService, ServiceMessage
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.driver import HostDriver
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
    """The client-facing service a node runs on top of a group's core."""

    def on_client_request(self, sender: NodeId, request: Any, now: float) -> None:
        """A client's request arrived (propose, read, or redirect)."""
        ...

    def take_replies(self) -> list[tuple[NodeId, Any]]:
        """Replies to send to clients, in order; clears them."""
        ...

    def has_replies(self) -> bool:
        """True when ``take_replies`` would return something (a cheap probe)."""
        ...

    def apply(self, entry: Entry) -> None:
        """Apply a committed entry to the state machine."""
        ...

    def apply_all(self, entries: list[Entry]) -> None:
        """Apply committed entries, in order (one call per batch)."""
        ...

    def read_ready(self, read: ReadState) -> None:
        """A linearizable read may now be served."""
        ...

    def restore(self, snapshot: Any) -> None:
        """Replace the state machine with a snapshot."""
        ...


class Grouped(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A message of group ``group`` (not 0) on the simulated network."""

    group: int
    message: Any


CoreFactory = Callable[[NodeId, float, "Recovered | None"], ProtocolCore]
"""Builds a core: ``(node, local_now, recovered or None when fresh)``."""
ReplicaFactory = Callable[[ProtocolCore], Replica]
GroupFactory = Callable[[NodeId, int, float, "Recovered | None"], "HostedGroup | None"]
"""Builds a hosted group (core and replica service as ``state``):
``(node, group, local_now, recovered or None when fresh)``; None: not here."""
UnknownGroupFactory = Callable[[NodeId, NodeId, int, Any, float], "HostedGroup | None"]
"""Builds a group on the first message of a group this node does not host:
``(node, sender, group, message, local_now)``; None: drop the message."""
UnknownGroupReply = Callable[[int, Any], Any]
"""The answer to a client's request for a group this node does not host:
``(group, request) -> reply``, or None for no answer."""
Monitor = Callable[[HostedGroup, float], None]
"""Called with each group that took a turn, after every input (safety checks)."""
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


def single_group(
    build_core: CoreFactory, build_replica: ReplicaFactory, binding: Binding | None = None, *, pipelines: bool = False
) -> GroupFactory:
    """The group factory of a node that hosts one group, 0."""

    def build(node: NodeId, group: int, now: float, recovered: Recovered | None) -> HostedGroup | None:
        if group != 0:
            return None
        core = build_core(node, now, recovered)
        return HostedGroup(0, core, binding, state=build_replica(core), pipelines=pipelines)

    return build


class SimNode:
    """One node in the simulation (see the module docstring)."""

    __slots__ = (
        "_disk_end_s",
        "_driver",
        "_group_changes",
        "_group_factory",
        "_held",
        "_hold_until_s",
        "_initial_groups",
        "_last_batch_start_s",
        "_late_outbox",
        "_outbox",
        "_schedule",
        "_send_all",
        "_turn_done_s",
        "_unknown_group_factory",
        "admission_debt_s",
        "alive",
        "busy_until",
        "clock_offset_s",
        "clock_rate",
        "cost",
        "cpu_factor",
        "cpu_kind",
        "epoch",
        "first_client_id",
        "fsync_s",
        "fsyncs",
        "host",
        "id",
        "inbox",
        "last_local_s",
        "limiter",
        "monitor",
        "rejected_count",
        "send_copies",
        "stale_wakes",
        "storages",
        "tombstones",
        "unknown_group_reply",
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
        cost: CostModel,
        send: Send,
        schedule: Schedule,
        wake_kind: int,
        cpu_kind: int,
        first_client_id: int,
        build_core: CoreFactory | None = None,
        build_replica: ReplicaFactory | None = None,
        group_factory: GroupFactory | None = None,
        initial_groups: Iterable[int] = (0,),
        verifier: Any = None,
        monitor: Monitor | None = None,
        limiter: PeerRateLimiter | None = None,
        send_copies: int = 1,
        fsync_s: float = 0.0,
        unknown_group: UnknownGroupFactory | None = None,
        unknown_group_reply: UnknownGroupReply | None = None,
    ) -> None:
        self.id = node_id
        if group_factory is None:
            if build_core is None or build_replica is None:
                raise ConfigError("a simulated node needs a group factory, or a core and a replica factory")
            group_factory = single_group(build_core, build_replica)
        self._group_factory = group_factory
        self._initial_groups = tuple(initial_groups)
        self._unknown_group_factory = unknown_group
        self.unknown_group_reply = unknown_group_reply
        self._group_changes: list[tuple[int, Any]] = []
        """Groups to create (``spawn``: (group, recovered)) or drop
        (``retire``: (group, None)) once the current turn is carried out."""
        self.tombstones: set[int] = set()
        """Groups this node stopped hosting (``retire``); durable like the
        storage: a stale message of one never creates it again."""
        self._send_all = _batched(send)
        self._schedule = schedule
        self._outbox: list[tuple[NodeId, Any]] = []
        self._late_outbox: list[tuple[NodeId, Any]] = []
        """Messages held until the fsync of this input's writes is done."""
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
        if not (fsync_s >= 0 and math.isfinite(fsync_s)):
            raise ConfigError(f"fsync_s must be a finite number >= 0, got {fsync_s}")
        self.fsync_s = fsync_s
        self.fsyncs = 0
        """Modelled fsyncs (with ``fsync_s`` > 0): one per group commit."""
        self._disk_end_s = 0.0
        self._last_batch_start_s = -math.inf
        self._hold_until_s = 0.0
        self._held = False
        self._turn_done_s = 0.0
        self.admission_debt_s = 0.0
        """CPU seconds of dropped messages not yet charged to any work."""
        self.storages: dict[int, MemoryStorage] = {}
        """Each group's durable state (survives crashes)."""
        self.host: NodeHost | None = None
        self._driver: HostDriver | None = None
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
        """The deadline the host asked for (its clock), None when none."""
        self.wake_sim_s: float | None = None
        """Simulated time of the one live timer event, None when none is queued."""
        self.rejected_count = 0
        self.stale_wakes = 0
        """Timer and CPU events that found nothing to do (superseded deadlines,
        work lost in a crash): popped, but not counted as events."""
        self.work_s = 0.0
        """CPU seconds spent so far (for utilisation figures)."""

    # -- the single-group view ----------------------------------------------
    @property
    def core(self) -> ProtocolCore | None:
        """Group 0's core (None while crashed or when the node does not host it)."""
        group = self.host.get(0) if self.host is not None else None
        return group.core if group is not None else None

    @property
    def replica(self) -> Any:
        """Group 0's replica service (None while crashed)."""
        group = self.host.get(0) if self.host is not None else None
        return group.state if group is not None else None

    @property
    def storage(self) -> MemoryStorage:
        """Group 0's storage."""
        return self._storage(0)

    def _storage(self, group: int) -> MemoryStorage:
        storage = self.storages.get(group)
        if storage is None:
            storage = self.storages[group] = MemoryStorage()
        return storage

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
        """Boot (or reboot) from durable storage: every group this node was
        placed in or holds state of."""
        local = self.local_time(now_s)
        self.host = host = NodeHost(
            self.id, on_unknown_group=self._unknown_group if self._unknown_group_factory is not None else None
        )
        for group_id in sorted({*self._initial_groups, *self.storages}):
            recovered = self._storage(group_id).recover()
            fresh = recovered.hard_state is None and recovered.snapshot is None and not recovered.entries
            group = self._group_factory(self.id, group_id, local, None if fresh else recovered)
            if group is not None:
                host.add(group)
                group.core.tick(local)
        self._driver = HostDriver(host, self)
        self.alive = True
        self.busy_until = now_s
        self._disk_end_s = now_s
        self._last_batch_start_s = -math.inf
        self._hold_until_s = now_s
        # Boot work is a timer firing at once: the cores tick and their first
        # Readies are carried out.
        self._handle((now_s, -1, self.wake_kind, self.id, self.wake_gen, None, 0), now_s)

    def crash(self) -> None:
        """Lose volatile state: the cores, the services, queued inputs, timers."""
        self.host = None
        self._driver = None
        self.alive = False
        self.epoch += 1
        self.inbox.clear()
        self._outbox.clear()
        self._late_outbox.clear()
        self._group_changes.clear()
        self.wake_gen += 1
        self.wake_local_s = None
        self.wake_sim_s = None

    # -- inputs ----------------------------------------------------------------
    def run_local(self, now_s: float, action: Callable[[HostedGroup, float], Any], group_id: int = 0) -> Any:
        """An operator's request reaching this node at ``now_s``: call
        ``action(group, local_time)`` on a hosted group now, then carry out
        what it produced like any input. None when the node is down or does
        not host the group."""
        host = self.host
        if not self.alive or host is None:
            return None
        group = host.get(group_id)
        if group is None:
            return None
        result = action(group, self.local_time(now_s))
        host.touch(group)
        self._handle((now_s, -1, self.wake_kind, self.id, self.wake_gen, None, 0), now_s)
        return result

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
        routing, the cost, the driver's turns, the sends and the next deadline."""
        host = self.host
        assert host is not None
        # local_time(), inlined.
        local = self.clock_offset_s + self.clock_rate * now
        if local < self.last_local_s:
            local = self.last_local_s
        self.last_local_s = local
        message = event[5]
        asked: HostedGroup | None = None
        if message is None:
            # A timer: generation must still match (a later drive may have moved it).
            if event[4] != self.wake_gen:
                return
            host.tick(local)
            cost = self.cost.tick_s
        else:
            # NodeId is a NewType of int: the event already holds the int.
            src: NodeId = event[4]  # type: ignore[assignment]
            group_id = 0
            inner = message
            if type(message) is Grouped:
                group_id = message.group
                inner = message.message
            if src >= self.first_client_id:
                asked = host.get(group_id)
                if asked is not None and asked.state is not None:
                    asked.state.on_client_request(src, inner, local)
                    host.touch(asked)
                else:
                    self.rejected_count += 1
                    if self.unknown_group_reply is not None:
                        reply = self.unknown_group_reply(group_id, inner)
                        if reply is not None:
                            self._outbox.append((src, Grouped(group_id, reply) if group_id else reply))
            elif type(inner) is ServiceMessage:
                asked = self._to_service(src, inner, local)
            elif host.step(src, group_id, inner, local) is not None:
                self.rejected_count += 1
            model = self.cost
            if model.base_by_type_s:
                cost = model.cost_s(message, event[6])
            else:  # cost_s(), inlined for the common model
                cost = model.base_s + event[6] * model.per_byte_s
        done = now + cost * self.cpu_factor
        # The driver: early sends -> persist (every group at once) -> sends ->
        # apply -> advance, into the outboxes.
        self._turn_done_s = done
        turned = host.turned
        if turned:
            turned.clear()
        driver = self._driver
        assert driver is not None
        only = host.only
        # Writes here are synchronous (``persist`` returns True): no turn is
        # ever in flight, so a lone group with no Ready to take (about half
        # of a leader's inputs, the acknowledgements) needs no drive.
        if only is None or only.dirty:
            driver.drive()
        while self._group_changes:
            self._change_groups(local)
            driver.drive()
        if host.cross_group:
            outbound = host.take_outbound()
            while outbound:
                self._send_across(outbound, local)
                driver.drive()
                outbound = host.take_outbound()
        only = host.only
        wake = only.deadline if only is not None else host.wake_at()
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
        # What the work produced leaves when the work is done (held messages
        # when the fsync they wait for is done, if that is later).
        send_all = self._send_all
        me = self.id
        copies = self.send_copies
        outbox = self._outbox
        if outbox:
            if copies == 1:
                send_all(me, outbox, done)
            else:
                send_all(me, [item for item in outbox for _ in range(copies)], done)
            outbox.clear()
        late_s = done
        if self._held:
            self._held = False
            if self._hold_until_s > late_s:
                late_s = self._hold_until_s
        late = self._late_outbox
        if late:
            if copies == 1:
                send_all(me, late, late_s)
            else:
                send_all(me, [item for item in late for _ in range(copies)], late_s)
            late.clear()
        monitor = self.monitor
        if only is not None:
            # The one group (the common case), without a list to loop over.
            state = only.state
            if state is not None and state.has_replies():
                replies = state.take_replies()
                if replies:
                    if only.id:
                        gid = only.id
                        replies = [
                            (to, reply if type(reply) is ServiceMessage else Grouped(gid, reply))
                            for to, reply in replies
                        ]
                    send_all(me, replies, late_s)
            if monitor is not None:
                monitor(only, self.last_local_s)
        else:
            if asked is not None and asked not in turned:
                turned.append(asked)
            for group in turned:
                state = group.state
                if state is not None and state.has_replies():
                    replies = state.take_replies()
                    if replies:
                        if group.id:
                            gid = group.id
                            replies = [
                                (to, reply if type(reply) is ServiceMessage else Grouped(gid, reply))
                                for to, reply in replies
                            ]
                        send_all(me, replies, late_s)
                if monitor is not None:
                    monitor(group, self.last_local_s)
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

    # -- groups coming and going ------------------------------------------------
    def _to_service(self, src: NodeId, envelope: ServiceMessage, local: float) -> HostedGroup | None:
        """A peer's service message: to the service of the group it names."""
        assert self.host is not None
        group = self.host.get(envelope.group)
        state = group.state if group is not None else None
        if group is None or not isinstance(state, PeerService):
            self.rejected_count += 1
            return None
        state.on_service_message(src, envelope.message, local)
        self.host.touch(group)
        return group

    def _unknown_group(self, sender: NodeId, group: int, message: Any, now: float) -> HostedGroup | None:
        """``NodeHost.on_unknown_group``: never a group this node left."""
        if group in self.tombstones or self._unknown_group_factory is None:
            return None
        return self._unknown_group_factory(self.id, sender, group, message, now)

    def spawn(self, group: int, recovered: Recovered) -> None:
        """Host ``group`` from ``recovered`` (made durable first) once the
        current turn is done, unless this node hosts it, holds state of it
        or left it."""
        self._group_changes.append((group, recovered))

    def retire(self, group: int) -> None:
        """Stop hosting ``group`` once the current turn is done; drop its
        storage and keep a tombstone."""
        self._group_changes.append((group, None))

    def _change_groups(self, local: float) -> None:
        host = self.host
        assert host is not None
        changes, self._group_changes = self._group_changes, []
        for group_id, recovered in changes:
            if recovered is None:
                if host.remove(group_id) is not None or group_id in self.storages:
                    self.storages.pop(group_id, None)
                    self.tombstones.add(group_id)
                continue
            if group_id in host or group_id in self.tombstones or group_id in self.storages:
                continue
            self._storage(group_id).persist(recovered.hard_state, recovered.entries, recovered.snapshot)
            built = self._group_factory(self.id, group_id, local, recovered)
            if built is not None:
                host.add(built)

    def _rearm(self, now: float) -> None:
        """Reschedule the armed deadline after a clock change."""
        wake = self.wake_local_s
        self.wake_gen += 1
        self.wake_sim_s = None
        if wake is not None:
            at = self.sim_time_of(wake)
            self._arm(at if at > now else now)

    # -- driver effects (HostEffects) -------------------------------------------
    def persist(self, writes: list[GroupReady], sync: bool) -> bool:
        storages = self.storages
        for group, ready in writes:
            storage = storages.get(group.id)
            if storage is None:
                storage = storages[group.id] = MemoryStorage()
            storage.persist(ready.hard_state, ready.entries, ready.snapshot)
        if sync and self.fsync_s:
            self._model_fsync()
        return True

    def _model_fsync(self) -> None:
        """Group commit on one disk: a write issued while an fsync runs waits
        for it, then shares the next one with every write issued meanwhile."""
        issued = self._turn_done_s
        if issued < self._last_batch_start_s:
            done = self._disk_end_s  # joins the batch that has not started yet
        else:
            start = issued if issued > self._disk_end_s else self._disk_end_s
            self._last_batch_start_s = start
            done = self._disk_end_s = start + self.fsync_s
            self.fsyncs += 1
        if done > self._hold_until_s:
            self._hold_until_s = done
        self._held = True

    def _send_across(self, outbound: list[tuple[NodeId, int, Any]], local: float) -> None:
        """Messages the groups have for other groups (``NodeHost.take_outbound``):
        each leaves on its group, after this turn's fsync like the turn's
        other messages; one for this node itself is stepped into its host."""
        host = self.host
        assert host is not None
        me = self.id
        box = self._late_outbox if self._held else self._outbox
        for to, group, message in outbound:
            if to == me:
                if host.step(me, group, message, local) is not None:
                    self.rejected_count += 1
            else:
                box.append((to, Grouped(group, message) if group else message))

    def send(self, group: HostedGroup, messages: list[tuple[NodeId, Any]]) -> None:
        gid = group.id
        if gid:
            messages = [(to, Grouped(gid, message)) for to, message in messages]
        if self._held and not group.pipelines:
            self._late_outbox.extend(messages)
        else:
            self._outbox.extend(messages)

    def restore(self, group: HostedGroup, snapshot: Any) -> None:
        if group.state is not None:
            group.state.restore(snapshot)

    def apply(self, group: HostedGroup, entries: list[Entry]) -> None:
        group.state.apply_all(entries)

    def read_ready(self, group: HostedGroup, read: ReadState) -> None:
        if group.state is not None:
            group.state.read_ready(read)

    def rejected(self, group: HostedGroup, rejection: Rejection) -> None:
        self.rejected_count += 1
