"""The node host: many protocol groups in one node, as one sans-IO state machine.

Theory of operation. A process is a *node*; a protocol instance it takes part
in is a *group* (a Raft range, a PBFT cluster, HRB's shard and core groups).
Every message between nodes belongs to one group (``group`` ids are
non-negative integers; a node hosting one group uses 0). The host holds any
number of cores keyed by group id and:

- **routes** each input to its group's core: ``step(sender, group, message,
  now)``, ``propose(group, command, now)``; a message for a group this node
  does not host is handed to ``on_unknown_group`` (which may create the group,
  as a multi-Raft node does when a range's leader adds it; see there), else
  dropped and counted as a rejection with the reason ``unknown group``;
- **times** the groups: a group's deadline is its core's (``Ready.wake_at``
  or its deadline probe) or, if earlier, that of its state when the state
  keeps time too (a ``TimedState``: the key-value service proposing time
  entries for TTLs); the deadlines sit in one heap, ``tick(now)`` ticks only
  the cores and states whose deadline passed, and ``wake_at()`` is the
  earliest deadline of any group, so a thousand idle (quiesced) groups cost
  nothing;
- **merges** their work: ``ready()`` returns one ``GroupReady`` per group with
  work since the last turn, so the runtime makes every group's durable writes
  durable with one fsync, sends what may leave early before it and the rest
  after, applies, and calls ``advance`` once for the whole turn
  (``quorate.runtime.driver.HostDriver`` does this for both runtimes);
- **adds and removes** groups at run time (``add``/``remove``), so ranges can
  split and merge and shard managers come and go;
- **carries output for other groups**: a core that speaks to groups other
  than its own (HRB's core tier certifies decisions for shard groups; a
  shard member sends its votes to the core's group) offers the optional
  ``CrossGroupOutput`` role, ``take_outbound()`` -> ``(to, group, message)``
  triples. The host takes them right after each ``ready()`` of such a core
  (a core may count them as work in ``has_ready``, as HRB's core does, so
  they must not wait for the turn's end) and ``NodeHost.take_outbound()``
  returns those and whatever the cores queued since; the runtime calls it
  after each turn and
  sends each message on its group (one for this node itself is stepped
  into this host, as if it had arrived). Groups without the role cost
  nothing.

Invariants: a group's core sees its inputs in the order the host got them;
``advance`` is called with exactly the ``GroupReady`` list ``ready`` returned;
a removed group's pending work is dropped with it (its core is gone).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from quorate.core.binding import Binding
from quorate.core.protocol import DeadlineProbe, ProposeOutcome, ProtocolCore, Refused
from quorate.core.ready import Ready, Rejection
from quorate.errors import LocalProtocolError
from quorate.ids import MAX_GROUP_ID, NodeId, valid_group_id

__all__ = [
    "MAX_GROUP_ID",
    "CrossGroupOutput",
    "GroupMessage",
    "GroupReady",
    "HostedGroup",
    "NodeHost",
    "TimedState",
    "UnknownGroup",
    "valid_group_id",
]


UnknownGroup = Callable[[NodeId, int, Any, float], "HostedGroup | None"]


@runtime_checkable
class TimedState(Protocol):
    """A group's state that keeps time too (the key-value service's time
    entries): the host ticks it at ``tick_at`` (the node's clock) as it
    ticks the core at its deadline."""

    tick_at: float | None

    def tick(self, now: float) -> None: ...
"""``(sender, group, message, now) -> a group to host, or None to drop the message``."""

GroupMessage = tuple[NodeId, int, Any]
"""``(to, group, message)``: a message for a group other than its sender's."""


@runtime_checkable
class CrossGroupOutput(Protocol):
    """Optional role of a core that sends messages on other groups than its
    own (see the module docstring): what it queued since the last call."""

    def take_outbound(self) -> list[GroupMessage]: ...


@dataclass(slots=True)
class HostedGroup:
    """One group on this node: its core and what the runtime knows about it."""

    id: int
    core: ProtocolCore
    binding: Binding | None
    state: Any = None
    """Whatever the runtime attaches (the group's state machine service)."""
    pipelines: bool = False
    """The group's messages may all leave before their Ready's write is
    durable, and its Readies may be taken while a write is in flight (the
    runtime sets it from ``Binding.pipelines_while_persisting`` and the
    group's config)."""
    deadline: float | None = None
    """The group's next deadline: its core's, or its state's if earlier."""
    core_deadline: float | None = None
    """The core's next deadline, as last reported."""
    timed: TimedState | None = None
    """``state``, when it keeps time (set by ``NodeHost.add``)."""
    queued: float | None = None
    """The deadline of the group's live entry in the host's heap (at most
    ``deadline``; a deadline that moved later is re-queued lazily when the
    earlier entry comes up, so a timer pushed back by every heartbeat costs
    no heap operation)."""
    probe: Callable[[], float | None] | None = None
    """The core's ``wake_at`` when it offers a ``DeadlineProbe`` (set by ``NodeHost.add``)."""
    outbound: Callable[[], list[GroupMessage]] | None = None
    """The core's ``take_outbound`` when it offers ``CrossGroupOutput`` (set by ``NodeHost.add``)."""
    dirty: bool = False
    """The group had an input since its last Ready (it is in the host's dirty list)."""
    stale: bool = False
    """The group had an input after its last Ready was taken and before that
    Ready was advanced (a background write was in flight): the Ready's
    deadline may be out of date, so a fresh Ready is taken after it."""


GroupReady = tuple[HostedGroup, Ready]
"""One group's ``Ready`` in a turn."""


class NodeHost:
    """Many groups' cores on one node (see the module docstring)."""

    __slots__ = (
        "_dirty",
        "_groups",
        "_heap",
        "_outbound",
        "_taken_out",
        "cross_group",
        "node",
        "on_unknown_group",
        "only",
        "turned",
        "unknown_group_messages",
    )

    def __init__(self, node: NodeId, *, on_unknown_group: UnknownGroup | None = None) -> None:
        self.node = node
        self.on_unknown_group = on_unknown_group
        self._groups: dict[int, HostedGroup] = {}
        self._dirty: list[HostedGroup] = []
        """Groups that got an input since their last Ready (insertion ordered)."""
        self._outbound: list[HostedGroup] = []
        """Hosted groups whose core offers ``CrossGroupOutput``."""
        self._taken_out: list[GroupMessage] = []
        """Their messages for other groups, taken with their Readies."""
        self.cross_group = False
        """True while a hosted core offers ``CrossGroupOutput`` or messages
        of such a core wait in the host: a runtime that sees False need not
        call ``take_outbound`` (it would return nothing). Read-only for
        everyone but the host."""
        self.only: HostedGroup | None = None
        """The group, while this node hosts exactly one (the common case: its
        deadline stays out of the heap and the driver takes a shorter path).
        Read-only for everyone but the host."""
        self._heap: list[tuple[float, int]] = []
        """(deadline, group) entries; stale ones (deadline moved, group gone) are skipped."""
        self.unknown_group_messages = 0
        self.turned: list[HostedGroup] = []
        """While more than one group is hosted: every group that had an input
        (whose Ready was taken or whose deadline moved), in order, until the
        runtime clears the list (it looks at them after an input: replies to
        send, safety checks). While one group is hosted it stays empty: that
        group (``only``) is the one."""

    # -- groups ---------------------------------------------------------------
    def add(self, group: HostedGroup) -> HostedGroup:
        """Host ``group``; its core's first Ready is taken in the next turn."""
        if not valid_group_id(group.id):
            raise LocalProtocolError(f"group ids are integers within 0..{MAX_GROUP_ID}, got {group.id!r}")
        if group.id in self._groups:
            raise LocalProtocolError(f"group {group.id} is hosted already")
        if group.core.id != self.node:
            raise LocalProtocolError(f"group {group.id}'s core is node {group.core.id}, not this node {self.node}")
        group.probe = group.core.wake_at if isinstance(group.core, DeadlineProbe) else None
        group.timed = group.state if isinstance(group.state, TimedState) else None
        group.outbound = group.core.take_outbound if isinstance(group.core, CrossGroupOutput) else None
        if group.outbound is not None:
            self._outbound.append(group)
            self.cross_group = True
        self._groups[group.id] = group
        self._mark(group)
        self.only = group if len(self._groups) == 1 else None
        if len(self._groups) == 2:
            # One group keeps its deadline outside the heap (the common case
            # costs no heap operation); from two on, all of them are in it.
            self._heap = [(g.deadline, g.id) for g in self._groups.values() if g.deadline is not None]
            heapq.heapify(self._heap)
            for g in self._groups.values():
                g.queued = g.deadline
        return group

    def remove(self, group_id: int) -> HostedGroup | None:
        """Stop hosting ``group_id`` (its queued work goes with it)."""
        removed = self._groups.pop(group_id, None)
        if removed is not None and removed.outbound is not None:
            self._outbound.remove(removed)
            self.cross_group = bool(self._outbound or self._taken_out)
        if removed is not None and removed.dirty:
            self._dirty.remove(removed)
            removed.dirty = False
        self.only = next(iter(self._groups.values())) if len(self._groups) == 1 else None
        return removed

    def get(self, group_id: int) -> HostedGroup | None:
        return self._groups.get(group_id)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._groups

    def __iter__(self) -> Iterator[HostedGroup]:
        return iter(self._groups.values())

    def __len__(self) -> int:
        return len(self._groups)

    # -- inputs ---------------------------------------------------------------
    def step(self, sender: NodeId, group_id: int, message: Any, now: float) -> Rejection | None:
        """Route a peer's message; returns a ``Rejection`` when no group takes it."""
        group = self.only
        if group is None or group.id != group_id:
            group = self._groups.get(group_id)
        if group is None:
            factory = self.on_unknown_group
            created = factory(sender, group_id, message, now) if factory is not None and valid_group_id(group_id) else None
            if created is None:
                self.unknown_group_messages += 1
                return Rejection(sender, type(message).__name__, "unknown group")
            group = self.add(created)
        core = group.core
        core.step(sender, message, now)
        # _had_input(group), inlined: every peer message comes through here.
        group.stale = True
        if group.dirty:
            return None
        probe = group.probe
        if probe is not None and not core.has_ready():
            if self.only is group:
                deadline = group.core_deadline = probe()
                timed = group.timed
                if timed is not None:
                    tick_at = timed.tick_at
                    if tick_at is not None and (deadline is None or tick_at < deadline):
                        deadline = tick_at
                group.deadline = deadline
            else:
                self.turned.append(group)
                self._set_deadline(group, probe())
        else:
            group.dirty = True
            self._dirty.append(group)
        return None

    def propose(self, group_id: int, command: bytes, now: float) -> ProposeOutcome:
        group = self._groups.get(group_id)
        if group is None:
            return Refused(f"this node hosts no group {group_id}")
        outcome = group.core.propose(command, now)
        self._had_input(group)
        return outcome

    def touch(self, group: HostedGroup) -> None:
        """The runtime called ``group``'s core directly (a proposal from its
        service, a read, an admin call): take its Ready in the next turn."""
        self._had_input(group)

    def tick(self, now: float) -> None:
        """Tick every group whose deadline has passed."""
        only = self.only
        if only is not None:
            if only.deadline is not None and only.deadline <= now:
                self._fire(only, now)
            return
        heap = self._heap
        while heap and heap[0][0] <= now:
            group = self._due(heap[0])
            if group is None:
                continue
            deadline = group.deadline
            assert deadline is not None
            if deadline > now:
                continue  # _due re-queued it at its later deadline
            heapq.heappop(heap)
            group.queued = None
            self._fire(group, now)

    def _fire(self, group: HostedGroup, now: float) -> None:
        """``group``'s deadline passed: tick its core and/or its state."""
        group.deadline = None
        core_deadline = group.core_deadline
        if core_deadline is not None and core_deadline <= now:
            group.core_deadline = None
            group.core.tick(now)
        timed = group.timed
        if timed is not None:
            tick_at = timed.tick_at
            if tick_at is not None and tick_at <= now:
                timed.tick(now)
        self._had_input(group)

    def wake_at(self) -> float | None:
        """The earliest deadline of any group (None: no timer armed)."""
        only = self.only
        if only is not None:
            return only.deadline
        heap = self._heap
        while heap:
            top = heap[0]
            group = self._due(top)
            if group is not None and group.deadline == top[0]:
                return top[0]
        return None

    def _due(self, top: tuple[float, int]) -> HostedGroup | None:
        """Look at the heap's top entry: None (and the entry gone) when it is
        stale; its group otherwise, re-queued first if the group's deadline
        moved later than the entry."""
        heap = self._heap
        queued, group_id = top
        group = self._groups.get(group_id)
        if group is None or group.queued != queued or group.deadline is None:
            heapq.heappop(heap)
            if group is not None and group.queued == queued:
                group.queued = None
            return None
        if group.deadline > queued:
            heapq.heapreplace(heap, (group.deadline, group_id))
            group.queued = group.deadline
        return group

    def take_outbound(self) -> list[GroupMessage]:
        """Messages for other groups that the hosted cores queued since the
        last call (``CrossGroupOutput``), in hosting order; empty when no
        hosted core offers the role."""
        out, self._taken_out = self._taken_out, []
        for group in self._outbound:
            assert group.outbound is not None
            out.extend(group.outbound())
        self.cross_group = bool(self._outbound)
        return out

    # -- turns ----------------------------------------------------------------
    def has_ready(self) -> bool:
        return bool(self._dirty)

    def ready(self, select: Callable[[HostedGroup], bool] | None = None) -> list[GroupReady]:
        """Every dirty group's Ready (groups whose cores have nothing but a
        deadline only update it and are left out); with ``select``, only the
        groups it selects (the others stay dirty for a later turn)."""
        out: list[GroupReady] = []
        if select is None:
            dirty = self._dirty
            self._dirty = []
        else:
            dirty = [group for group in self._dirty if select(group)]
            self._dirty = [group for group in self._dirty if not select(group)]
        turned = self.turned
        for group in dirty:
            group.dirty = False
            group.stale = False
            turned.append(group)
            core = group.core
            ready = core.ready()
            if group.outbound is not None:
                self._taken_out.extend(group.outbound())
            if ready.is_empty():
                core.advance(ready)
                self._set_deadline(group, ready.wake_at)
                if core.has_ready():
                    self._mark(group)
                continue
            out.append((group, ready))
        return out

    def advance(self, readies: list[GroupReady]) -> None:
        """The runtime carried out ``readies`` (the list ``ready`` returned)."""
        for group, ready in readies:
            self.advance_one(group, ready)

    def advance_one(self, group: HostedGroup, ready: Ready) -> None:
        """The runtime carried out one group's ``ready`` of the list ``ready`` returned."""
        if self.only is group:
            deadline = group.core_deadline = ready.wake_at
            timed = group.timed
            if timed is not None:
                tick_at = timed.tick_at
                if tick_at is not None and (deadline is None or tick_at < deadline):
                    deadline = tick_at
            group.deadline = deadline
        elif self._groups.get(group.id) is not group:
            return  # removed meanwhile
        else:
            self._set_deadline(group, ready.wake_at)
        core = group.core
        core.advance(ready)
        if (group.stale or core.has_ready()) and not group.dirty:
            group.dirty = True
            self._dirty.append(group)

    def ready_one(self, group: HostedGroup) -> Ready | None:
        """``ready()`` for a host whose one group is ``group``: its Ready, or
        None when it had nothing but a deadline (already noted)."""
        group.dirty = False
        group.stale = False
        self._dirty.pop()
        core = group.core
        ready = core.ready()
        if group.outbound is not None:
            self._taken_out.extend(group.outbound())
        if ready.is_empty():
            core.advance(ready)
            self._set_deadline(group, ready.wake_at)
            if core.has_ready():
                self._mark(group)
            return None
        return ready

    def _had_input(self, group: HostedGroup) -> None:
        """``group``'s core got an input: queue it for the next turn, unless
        its deadline probe says it has nothing to carry out (about half a
        leader's inputs, the acknowledgements), when only its deadline may
        have moved."""
        group.stale = True
        if group.dirty:
            return
        probe = group.probe
        if probe is not None and not group.core.has_ready():
            if self.only is group:
                deadline = group.core_deadline = probe()
                timed = group.timed
                if timed is not None:
                    tick_at = timed.tick_at
                    if tick_at is not None and (deadline is None or tick_at < deadline):
                        deadline = tick_at
                group.deadline = deadline
            else:
                self.turned.append(group)
                self._set_deadline(group, probe())
        else:
            group.dirty = True
            self._dirty.append(group)

    def _mark(self, group: HostedGroup) -> None:
        if not group.dirty:
            group.dirty = True
            self._dirty.append(group)

    def _set_deadline(self, group: HostedGroup, core_deadline: float | None) -> None:
        """The core reported ``core_deadline``: the group's deadline is that or
        its state's, whichever is earlier."""
        deadline = group.core_deadline = core_deadline
        timed = group.timed
        if timed is not None:
            tick_at = timed.tick_at
            if tick_at is not None and (deadline is None or tick_at < deadline):
                deadline = tick_at
        group.deadline = deadline
        if deadline is not None and self.only is None:
            queued = group.queued
            if queued is None or deadline < queued:
                heapq.heappush(self._heap, (deadline, group.id))
                group.queued = deadline
