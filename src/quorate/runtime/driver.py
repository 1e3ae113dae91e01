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

from collections.abc import Callable
from typing import Any, Protocol

from quorate.core.protocol import ProtocolCore
from quorate.core.ready import Entry, ReadState, Ready, Rejection
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
