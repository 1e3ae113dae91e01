"""Replicated state machines that ride beside the key-value store in one log.

Theory of operation. A group's log carries the key-value store's commands;
other deterministic machines (the key registry, private votes, an agent's
task queue) share the same log rather than each needing a group of its own.
A command for one of them travels as the store's ``Extension`` operation,
naming the machine; the store hands the bytes to the machine registered
under that name, with the log position and the log time, and returns what
the machine answers as the operation's result. So a machine gets the log's
guarantees for free: one order on every replica, client sessions
(exactly-once retries), snapshots.

The contract, as hashicorp/raft's FSM says it: ``apply`` must be
deterministic. It reads no clock (``now_s`` is log time), draws no
randomness, and answers malformed bytes with a refusal (the same one on
every replica), never an exception. ``snapshot`` returns ``None`` while the
machine holds nothing, so a store without extension state keeps its
snapshot format byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["MachineResult", "ReplicatedMachine"]


@dataclass(frozen=True, slots=True)
class MachineResult:
    """What a machine answers for one command: ``ok``, or ``error`` saying why
    not; ``value`` is the machine's answer as text (JSON for structured ones)."""

    ok: bool
    value: str | None = None
    error: str | None = None
    audit: tuple[tuple[str, str, object], ...] = ()
    """Decisions worth the replicated audit trail, as (kind, subject,
    document): the store records them at this log position."""


class ReplicatedMachine(Protocol):
    """A deterministic state machine fed committed commands (see the module docstring)."""

    def apply(self, index: int, now_s: float, data: bytes) -> MachineResult:
        """Apply the command ``data`` committed at log ``index`` (log time ``now_s``)."""
        ...

    def snapshot(self) -> bytes | None:
        """The machine's state, or ``None`` when it holds nothing."""
        ...

    def restore(self, data: bytes | None) -> None:
        """Replace the state with what ``snapshot`` returned (``None``: empty)."""
        ...
