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
- **times** the groups: each core's deadline (``Ready.wake_at`` or its
  deadline probe) sits in one heap; ``tick(now)`` ticks only the groups whose
  deadline passed, and ``wake_at()`` is the earliest deadline of any group, so
  a thousand idle (quiesced) groups cost nothing;
- **merges** their work: ``ready()`` returns one ``GroupReady`` per group with
  work since the last turn, so the runtime makes every group's durable writes
  durable with one fsync, sends what may leave early before it and the rest
  after, applies, and calls ``advance`` once for the whole turn
  (``quorate.runtime.driver.HostDriver`` does this for both runtimes);
- **adds and removes** groups at run time (``add``/``remove``), so ranges can
  split and merge and shard managers come and go.

Invariants: a group's core sees its inputs in the order the host got them;
``advance`` is called with exactly the ``GroupReady`` list ``ready`` returned;
a removed group's pending work is dropped with it (its core is gone).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from quorate.core.binding import Binding
from quorate.core.protocol import DeadlineProbe, ProposeOutcome, ProtocolCore, Refused
from quorate.core.ready import Ready, Rejection
from quorate.errors import LocalProtocolError
from quorate.ids import NodeId

__all__ = ["MAX_GROUP_ID", "GroupReady", "HostedGroup", "NodeHost", "UnknownGroup", "valid_group_id"]

MAX_GROUP_ID = (1 << 63) - 1
"""Group ids are non-negative and fit a signed 64-bit integer (storage keys them so)."""

UnknownGroup = Callable[[NodeId, int, Any, float], "HostedGroup | None"]
"""``(sender, group, message, now) -> a group to host, or None to drop the message``."""


def valid_group_id(group: object) -> bool:
    """True for an int (not a bool) within ``0..MAX_GROUP_ID``."""
    return type(group) is int and 0 <= group <= MAX_GROUP_ID


@dataclass(slots=True)
class HostedGroup:
    """One group on this node: its core and what the runtime knows about it."""

    id: int
    core: ProtocolCore
    binding: Binding
    state: Any = None
    """Whatever the runtime attaches (the group's state machine service)."""
    deadline: float | None = None
    """The core's next deadline, as last reported."""
    probe: Callable[[], float | None] | None = None
    """The core's ``wake_at`` when it offers a ``DeadlineProbe`` (set by ``NodeHost.add``)."""


@dataclass(slots=True)
class GroupReady:
    """One group's ``Ready`` in a turn."""

    group: HostedGroup
    ready: Ready


class NodeHost:
    """Many groups' cores on one node (see the module docstring)."""

    __slots__ = ("_dirty", "_groups", "_heap", "node", "on_unknown_group", "unknown_group_messages")

    def __init__(self, node: NodeId, *, on_unknown_group: UnknownGroup | None = None) -> None:
        self.node = node
        self.on_unknown_group = on_unknown_group
        self._groups: dict[int, HostedGroup] = {}
        self._dirty: dict[int, HostedGroup] = {}
        """Groups that got an input since their last Ready (insertion ordered)."""
        self._heap: list[tuple[float, int]] = []
        """(deadline, group) entries; stale ones (deadline moved, group gone) are skipped."""
        self.unknown_group_messages = 0

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
        self._groups[group.id] = group
        self._dirty[group.id] = group
        return group

    def remove(self, group_id: int) -> HostedGroup | None:
        """Stop hosting ``group_id`` (its queued work goes with it)."""
        self._dirty.pop(group_id, None)
        return self._groups.pop(group_id, None)

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
        group = self._groups.get(group_id)
        if group is None:
            factory = self.on_unknown_group
            created = factory(sender, group_id, message, now) if factory is not None and valid_group_id(group_id) else None
            if created is None:
                self.unknown_group_messages += 1
                return Rejection(sender, type(message).__name__, "unknown group")
            group = self.add(created)
        group.core.step(sender, message, now)
        self._dirty[group.id] = group
        return None

    def propose(self, group_id: int, command: bytes, now: float) -> ProposeOutcome:
        group = self._groups.get(group_id)
        if group is None:
            return Refused(f"this node hosts no group {group_id}")
        outcome = group.core.propose(command, now)
        self._dirty[group_id] = group
        return outcome

    def touch(self, group_id: int) -> None:
        """The runtime called the group's core directly (a read, an admin call):
        take its Ready in the next turn."""
        group = self._groups.get(group_id)
        if group is not None:
            self._dirty[group_id] = group

    def tick(self, now: float) -> None:
        """Tick every group whose deadline has passed."""
        heap = self._heap
        groups = self._groups
        while heap and heap[0][0] <= now:
            deadline, group_id = heapq.heappop(heap)
            group = groups.get(group_id)
            if group is None or group.deadline != deadline:
                continue  # stale: the deadline moved or the group left
            group.deadline = None
            group.core.tick(now)
            self._dirty[group_id] = group

    def wake_at(self) -> float | None:
        """The earliest deadline of any group (None: no timer armed)."""
        heap = self._heap
        groups = self._groups
        while heap:
            deadline, group_id = heap[0]
            group = groups.get(group_id)
            if group is not None and group.deadline == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    # -- turns ----------------------------------------------------------------
    def has_ready(self) -> bool:
        return bool(self._dirty)

    def ready(self, select: Callable[[HostedGroup], bool] | None = None) -> list[GroupReady]:
        """Every dirty group's Ready (groups whose cores have nothing but a
        deadline only update it and are left out); with ``select``, only the
        groups it selects (the others stay dirty for a later turn)."""
        out: list[GroupReady] = []
        if select is None:
            dirty, self._dirty = self._dirty, {}
        else:
            dirty = {g: group for g, group in self._dirty.items() if select(group)}
            for g in dirty:
                del self._dirty[g]
        for group in dirty.values():
            core = group.core
            probe = group.probe
            if probe is not None and not core.has_ready():
                self._set_deadline(group, probe())
                continue
            ready = core.ready()
            if ready.is_empty():
                core.advance(ready)
                self._set_deadline(group, ready.wake_at)
                if core.has_ready():
                    self._dirty[group.id] = group
                continue
            out.append(GroupReady(group, ready))
        return out

    def advance(self, readies: list[GroupReady]) -> None:
        """The runtime carried out ``readies`` (the list ``ready`` returned)."""
        groups = self._groups
        for item in readies:
            group = item.group
            if groups.get(group.id) is not group:
                continue  # removed meanwhile
            core = group.core
            core.advance(item.ready)
            self._set_deadline(group, item.ready.wake_at)
            if core.has_ready():
                self._dirty[group.id] = group

    def _set_deadline(self, group: HostedGroup, deadline: float | None) -> None:
        if deadline == group.deadline:
            return
        group.deadline = deadline
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, group.id))
