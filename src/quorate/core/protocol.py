"""The interface of every sans-IO protocol core.

A core is driven by exactly five calls (see DESIGN.md):

    core.step(sender, message, now)   a peer's message (possibly Byzantine)
    core.tick(now)                    time has passed (monotonic seconds)
    core.propose(command, now)        a client command -> ProposeOutcome
    ready = core.ready()              the work to do (core.ready.Ready)
    core.advance(ready)               the runtime did it

``step`` never raises on bad peer input: it drops the message and records a
``Rejection``. ``propose`` never raises for "not leader": it returns
``Redirect``. Caller misuse raises ``LocalProtocolError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from quorate.core.ready import Ready
from quorate.ids import NodeId


@dataclass(frozen=True, slots=True)
class Accepted:
    """The command was appended at ``index`` in ``term`` (or view/height)."""

    index: int
    term: int


@dataclass(frozen=True, slots=True)
class Queued:
    """The command will be ordered but its position is not known yet (a BFT
    replica that is not the primary/leader keeps it and watches the primary).
    The replica answers the client when it executes the command."""

    view: int


@dataclass(frozen=True, slots=True)
class Redirect:
    """This node cannot order commands now; ``leader`` may (``None``: unknown)."""

    leader: NodeId | None


@dataclass(frozen=True, slots=True)
class Refused:
    """The command was refused for a reason the client can act on
    (flow control, oversize command, a leadership transfer in progress...)."""

    reason: str


ProposeOutcome = Accepted | Queued | Redirect | Refused


@runtime_checkable
class ProtocolCore(Protocol):
    """What the runtimes (simulator and asyncio) need from a protocol core."""

    @property
    def id(self) -> NodeId:
        """This node's id."""
        ...

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        """Handle a message from ``sender``."""
        ...

    def tick(self, now: float) -> None:
        """Advance the core's notion of time to ``now`` and fire due timers."""
        ...

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        """Submit a client command for ordering."""
        ...

    def has_ready(self) -> bool:
        """True when ``ready()`` would return work (cheap, called often)."""
        ...

    def ready(self) -> Ready:
        """Collect the pending work. Call ``advance`` after doing it."""
        ...

    def advance(self, ready: Ready) -> None:
        """Acknowledge that ``ready`` was carried out."""
        ...


@runtime_checkable
class DeadlineProbe(Protocol):
    """Optional capability of a core: its next deadline without a ``Ready``.

    Offering it promises that while ``has_ready()`` is False, ``ready()`` would
    hand out nothing but ``wake_at`` and ``advance`` of that ``Ready`` would be a
    no-op (``RaftNode`` and ``SwimNode`` keep this promise), so a runtime may
    skip building one."""

    def wake_at(self) -> float | None:
        """The deadline the next ``Ready.wake_at`` would report."""
        ...

    def has_ready(self) -> bool: ...
