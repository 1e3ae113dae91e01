"""The one loop that turns a core's ``Ready`` into effects, for every runtime.

Order (etcd-io/raft's contract, DESIGN.md): **persist → send → apply → advance**.
Entries and hard state reach stable storage before any message that depends on
them leaves (a vote, an append acknowledgement); committed entries are applied
only after they are durable here too. The simulator and the asyncio runtime
differ only in the ``Host`` they pass: in-memory or SQLite storage, a simulated
or a TCP network, a state machine that answers simulated or real clients.

``drive`` drains a core once; a ``Driver`` runs the same loop for a runtime
that drives one core after every input (the simulator, ~10^5 times per
wall-clock second), with the core's methods and its optional deadline probe
looked up once per core instead of on every call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from quorate.core.host import GroupReady, HostedGroup, NodeHost
from quorate.core.protocol import ProtocolCore
from quorate.core.ready import Entry, ReadState, Ready, Rejection
from quorate.errors import LocalProtocolError
from quorate.ids import NodeId


class Host(Protocol):
    """The effects a runtime provides to one node."""

    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        """Make state durable (fsync) before returning. Any argument may be empty."""
        ...

    def send(self, to: NodeId, message: Any) -> None:
        """Queue ``message`` for ``to``; must not block."""
        ...

    def restore(self, snapshot: Any) -> None:
        """Replace the state machine with ``snapshot`` (InstallSnapshot)."""
        ...

    def apply(self, entry: Entry) -> None:
        """Apply one committed entry to the state machine, in index order."""
        ...

    def read_ready(self, read: ReadState) -> None:
        """A linearizable read may be served once ``read.index`` is applied."""
        ...

    def rejected(self, rejection: Rejection) -> None:
        """Count (and maybe log) an input the core dropped."""
        ...


class DeadlineProbe(Protocol):
    """Optional capability of a core: its next deadline without a ``Ready``.

    Offering it promises that while ``has_ready()`` is False, ``ready()`` would
    hand out nothing but ``wake_at`` and ``advance`` of that ``Ready`` would be a
    no-op (``RaftNode`` and ``SwimNode`` keep this promise)."""

    def wake_at(self) -> float | None:
        """The deadline the next ``Ready.wake_at`` would report."""
        ...


def carry_out(ready: Ready, host: Host) -> None:
    """Do what one ``Ready`` asks, in the contract's order."""
    send = host.send
    for to, message in ready.early_messages:
        send(to, message)
    if ready.hard_state is not None or ready.entries or ready.snapshot is not None:
        host.persist(ready.hard_state, ready.entries, ready.snapshot)
    for to, message in ready.messages:
        send(to, message)
    if ready.snapshot is not None:
        host.restore(ready.snapshot)
    apply = host.apply
    for entry in ready.committed:
        apply(entry)
    for read in ready.reads:
        host.read_ready(read)
    for rejection in ready.rejected:
        host.rejected(rejection)


def drive(core: ProtocolCore, host: Host) -> float | None:
    """Drain the core: persist → send → apply → advance until it has no work.

    Returns the core's next deadline (``wake_at``), or ``None`` if no timer is armed.

    A core that also offers ``wake_at()`` (``DeadlineProbe``) is first asked
    ``has_ready()``: when it has nothing pending, its ``Ready`` would hold only
    that deadline and ``advance`` of it would change nothing, so no ``Ready`` is
    built (about half the inputs of a leader, the acknowledgements, end so).
    """
    wake_at = getattr(core, "wake_at", None)
    if wake_at is not None and not core.has_ready():
        deadline: float | None = wake_at()
        return deadline
    while True:
        ready = core.ready()
        if not ready.is_empty():
            carry_out(ready, host)
        core.advance(ready)
        if not core.has_ready():
            return ready.wake_at


class Driver:
    """``drive`` bound to one core and its host.

    ``drive()`` is the loop of the module-level ``drive``, statement for
    statement, on methods bound at construction; keep the two in step."""

    __slots__ = ("_advance", "_has_ready", "_host", "_ready", "_wake_at")

    def __init__(self, core: ProtocolCore, host: Host) -> None:
        self._has_ready = core.has_ready
        self._ready = core.ready
        self._advance = core.advance
        self._wake_at: Callable[[], float | None] | None = getattr(core, "wake_at", None)
        self._host = host

    def drive(self) -> float | None:
        """As ``drive(core, host)``: returns the core's next deadline or ``None``."""
        has_ready = self._has_ready
        wake_at = self._wake_at
        if wake_at is not None and not has_ready():
            return wake_at()
        next_ready = self._ready
        advance = self._advance
        host = self._host
        while True:
            ready = next_ready()
            if not ready.is_empty():
                carry_out(ready, host)
            advance(ready)
            if not has_ready():
                return ready.wake_at


class HostEffects(Protocol):
    """What a runtime does for a node host's turn (``HostDriver``)."""

    def persist(self, writes: list[GroupReady], sync: bool) -> bool:
        """Make the hard states, entries and snapshots of ``writes`` durable in
        one write (one fsync when ``sync``; without it they may be written
        unsynced, to ride along with the next synced write). Return True when
        done, or False when the write goes on in the background and the
        runtime will call ``HostDriver.persisted()`` once it is durable."""
        ...

    def send(self, group: HostedGroup, messages: list[tuple[NodeId, Any]]) -> None:
        """Queue ``group``'s ``messages`` (``(to, message)`` pairs); must not block."""
        ...

    def restore(self, group: HostedGroup, snapshot: Any) -> None:
        """Replace ``group``'s state machine with ``snapshot``."""
        ...

    def apply(self, group: HostedGroup, entries: list[Entry]) -> None:
        """Apply ``group``'s committed ``entries``, in index order."""
        ...

    def read_ready(self, group: HostedGroup, read: ReadState) -> None:
        """A linearizable read of ``group`` may be served once ``read.index`` is applied."""
        ...

    def rejected(self, group: HostedGroup, rejection: Rejection) -> None:
        """Count (and maybe log) an input ``group``'s core dropped."""
        ...


def _pipelines(group: HostedGroup) -> bool:
    return group.pipelines


class HostDriver:
    """The one loop of every runtime: a node host's turns, in the contract's order.

    A turn takes every group's ``Ready`` (``NodeHost.ready``) and carries them
    out together: the messages each core allows before its writes
    (``early_messages``) leave first; then the durable writes of *all* groups
    go to storage in one ``persist`` call, synced if any group's Ready
    ``must_sync`` (group commit across groups); then the other messages
    leave, snapshots are restored, committed entries applied and reads
    answered, and the host advances. A runtime whose persist runs in the
    background (the real node's worker thread) gets False from ``persist``:
    the turn stops there, inputs keep reaching the cores, and no new turn is
    taken until ``persisted()`` finishes this one — so the next turn's write
    carries everything that arrived meanwhile. Meanwhile the groups outside
    that write keep going as far as they can without a write of their own
    (``_pipeline``): with many groups per node, an acknowledgement that
    commits one group's entry is not kept waiting for another group's fsync. Groups whose binding allows
    pipelining (``Binding.pipelines_while_persisting``, a BFT option) send
    all of a Ready's messages before its write, and keep sending while a
    write is in flight; the rest of their Readies joins the next write.
    """

    __slots__ = (
        "_backlog",
        "_busy",
        "_deferred",
        "_effects",
        "_held",
        "_host",
        "_in_flight",
        "_waiting",
        "carried_in_flight",
        "sent_early",
        "turns",
    )

    def __init__(self, host: NodeHost, effects: HostEffects) -> None:
        self._host = host
        self._effects = effects
        self._in_flight: tuple[list[GroupReady], list[GroupReady]] | None = None
        """(the turn's Readies, those of them taken fresh from the host)."""
        self._waiting: list[GroupReady] = []
        """Pipelined Readies taken during the write in flight (messages sent)."""
        self._held: list[GroupReady] = []
        """Other Readies taken during the write in flight that have writes of
        their own: they join the next write (early messages sent)."""
        self._deferred: list[GroupReady] = []
        """Hard states that need no sync (a commit index) of Readies carried
        out during the write in flight: written with the next turn's write."""
        self._busy: set[int] = set()
        """Groups whose Ready's write is in flight or held: none of their
        Readies is taken until that write is durable."""
        self._backlog = False
        """True while ``_waiting``, ``_held`` or ``_deferred`` holds anything."""
        self.carried_in_flight = 0
        """Readies carried out whole while another write was in flight."""
        self.turns = 0
        self.sent_early = 0
        """Messages sent before the write of their Ready was durable."""

    @property
    def persisting(self) -> bool:
        """True while a background write of a turn is in flight."""
        return self._in_flight is not None

    def drive(self) -> None:
        """Take and carry out turns until the host has no work, or one waits on its write."""
        if self._in_flight is not None:
            self._pipeline()
            return
        host = self._host
        group = host.only
        if group is not None and not self._backlog:
            # One group (the common case): the same steps as below, with fewer
            # calls (the simulator comes through here for every input).
            effects = self._effects
            core = group.core
            while group.dirty:
                if group.outbound is not None:
                    ready_or_none = host.ready_one(group)
                    if ready_or_none is None:
                        continue
                    ready = ready_or_none
                else:
                    # host.ready_one(group), inlined for a group without
                    # cross-group output: it is the host's only dirty group.
                    group.dirty = False
                    group.stale = False
                    host._dirty.pop()
                    ready = core.ready()
                    if ready.is_empty():
                        core.advance(ready)
                        host._set_deadline(group, ready.wake_at)
                        if core.has_ready():
                            host._mark(group)
                        continue
                self.turns += 1
                if group.pipelines:
                    ready = self._send_early(group, ready)
                elif ready.early_messages:
                    effects.send(group, ready.early_messages)
                    self.sent_early += len(ready.early_messages)
                if (ready.hard_state is not None or ready.entries or ready.snapshot is not None) and not effects.persist(
                    [(group, ready)], ready.must_sync
                ):
                    self._in_flight = ([(group, ready)], [(group, ready)])
                    self._busy = {group.id}
                    return
                if ready.messages:
                    effects.send(group, ready.messages)
                if ready.snapshot is not None:
                    effects.restore(group, ready.snapshot)
                if ready.committed:
                    effects.apply(group, ready.committed)
                if ready.reads:
                    for read in ready.reads:
                        effects.read_ready(group, read)
                if ready.rejected:
                    for rejection in ready.rejected:
                        effects.rejected(group, rejection)
                if host.only is not group:
                    host.advance_one(group, ready)  # the host changed meanwhile
                    continue
                # host.advance_one(group, ready), inlined for the only group.
                deadline = group.core_deadline = ready.wake_at
                timed = group.timed
                if timed is not None:
                    tick_at = timed.tick_at
                    if tick_at is not None and (deadline is None or tick_at < deadline):
                        deadline = tick_at
                group.deadline = deadline
                core.advance(ready)
                if (group.stale or core.has_ready()) and not group.dirty:
                    host._mark(group)
            return
        has_ready = host.has_ready
        while True:
            deferred = None
            if self._backlog:
                self._backlog = False
                waiting, self._waiting = self._waiting, []
                held, self._held = self._held, []
                if self._deferred:
                    # Of groups still hosted (a retired group's store is gone).
                    deferred = [item for item in self._deferred if host.get(item[0].id) is item[0]]
                    self._deferred = []
                if held:
                    # Their groups' next Readies wait for this write.
                    self._busy = {g.id for g, _ in held}
                    fresh = held + host.ready(self._free)
                    self._busy.clear()
                else:
                    fresh = host.ready()
                readies = waiting + fresh
            elif has_ready():
                readies = fresh = host.ready()
            else:
                return
            if not readies and not deferred:
                continue
            self.turns += 1
            writes = deferred or None
            sync = False
            for i, item in enumerate(readies):
                ready = item[1]
                if ready.early_messages or (item[0].pipelines and ready.messages):
                    ready = self._send_early(item[0], ready)
                    readies[i] = (item[0], ready)
                if ready.hard_state is not None or ready.entries or ready.snapshot is not None:
                    if writes is None:
                        writes = [item]
                    else:
                        writes.append(item)
                    if ready.must_sync:
                        sync = True
            if writes is not None and not self._effects.persist(writes, sync):
                self._in_flight = (readies, fresh)
                self._busy = {g.id for g, _ in readies}
                return
            self._finish(readies, fresh)

    def _send_early(self, group: HostedGroup, ready: Ready) -> Ready:
        """Send what may leave before ``ready``'s write: its early messages,
        and all its messages for a pipelining group (returning the Ready
        without them, so they are not sent twice)."""
        effects = self._effects
        if ready.early_messages:
            effects.send(group, ready.early_messages)
            self.sent_early += len(ready.early_messages)
        if group.pipelines and ready.messages:
            effects.send(group, ready.messages)
            self.sent_early += len(ready.messages)
            return dataclasses.replace(ready, messages=[], early_messages=[])
        return ready

    def persisted(self) -> None:
        """The background write of the turn in flight is durable: finish it and drive on."""
        if self._in_flight is None:
            raise LocalProtocolError("no write is in flight")
        readies, fresh = self._in_flight
        self._in_flight = None
        self._busy.clear()
        self._finish(readies, fresh)
        self.drive()

    def _takeable(self, group: HostedGroup) -> bool:
        return group.pipelines or group.id not in self._busy

    def _free(self, group: HostedGroup) -> bool:
        return group.id not in self._busy

    def _pipeline(self) -> None:
        """While a write is in flight, take the Readies of the groups whose
        own writes are all durable (and of pipelining groups):

        - a Ready with nothing to write, or only a hard state that needs no
          sync (a Raft commit index, which may be lost in a crash), is
          carried out whole at once — its messages depend on no write that
          is not durable, and its committed entries were made durable by
          earlier turns — and its hard state joins the next write;
        - a Ready with writes sends its early messages now and is held for
          the next write; its group gives no further Ready until then (a
          core may count on that, as Raft's early messages do);
        - a pipelining group's Ready sends all its messages now and keeps
          the rest for the next write (its core's ``advance`` does nothing,
          so taking further Readies is safe).

        Groups in the write in flight wait for it."""
        host = self._host
        send = self._effects.send
        while True:
            taken = host.ready(self._takeable)
            if not taken:
                return
            self._backlog = True
            for hosted, ready in taken:
                if not hosted.pipelines:
                    self._take_in_flight(hosted, ready)
                    continue
                if ready.early_messages:
                    send(hosted, ready.early_messages)
                if ready.messages:
                    send(hosted, ready.messages)
                self.sent_early += len(ready.early_messages) + len(ready.messages)
                held = Ready(
                    hard_state=ready.hard_state,
                    entries=ready.entries,
                    snapshot=ready.snapshot,
                    committed=ready.committed,
                    reads=ready.reads,
                    wake_at=ready.wake_at,
                    rejected=ready.rejected,
                    must_sync=ready.must_sync,
                )
                self._waiting.append((hosted, held))
                host.advance([(hosted, ready)])

    def _take_in_flight(self, group: HostedGroup, ready: Ready) -> None:
        """A non-pipelining group's Ready taken while a write is in flight (see ``_pipeline``)."""
        if ready.entries or ready.snapshot is not None or (ready.hard_state is not None and ready.must_sync):
            if ready.early_messages:
                self._effects.send(group, ready.early_messages)
                self.sent_early += len(ready.early_messages)
                ready = dataclasses.replace(ready, early_messages=[])
            self._held.append((group, ready))
            self._busy.add(group.id)
            return
        if ready.hard_state is not None:
            self._deferred.append((group, Ready(hard_state=ready.hard_state, must_sync=False)))
        if ready.early_messages:
            self._effects.send(group, ready.early_messages)
        self.carried_in_flight += 1
        self._carry(group, ready)
        self._host.advance_one(group, ready)

    def _finish(self, readies: list[GroupReady], fresh: list[GroupReady]) -> None:
        """Carry out the rest of each Ready; advance the ``fresh`` ones
        (pipelined ones were advanced when taken)."""
        carry = self._carry
        if readies is fresh:
            advance = self._host.advance_one
            for group, ready in readies:
                carry(group, ready)
                advance(group, ready)
            return
        for group, ready in readies:
            carry(group, ready)
        self._host.advance(fresh)

    def _carry(self, group: HostedGroup, ready: Ready) -> None:
        """After the write: send, restore, apply, answer reads, report rejections."""
        effects = self._effects
        if ready.messages:
            effects.send(group, ready.messages)
        if ready.snapshot is not None:
            effects.restore(group, ready.snapshot)
        if ready.committed:
            effects.apply(group, ready.committed)
        if ready.reads:
            for read in ready.reads:
                effects.read_ready(group, read)
        if ready.rejected:
            for rejection in ready.rejected:
                effects.rejected(group, rejection)
