"""What the agent state machines share: log time, fencing tokens, deadlines
and the change history.

Everything here moves only when a committed command is applied: ``now_s``
is the store's log time, the fencing counter only grows, and deadlines are
log times kept in one heap (stale entries — a lease renewed or released
since — are recognised by their token and skipped when they come up).
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from typing import Any

from quorate.state.agents.audit import AuditTrail
from quorate.state.watch import ChangeLog

NAME_MAX_CHARS = 128
"""Task ids, agent names, lock names, proposal ids."""
TEXT_MAX_CHARS = 64 * 1024
"""Descriptions, results, questions: bounds what one command makes every replica keep."""
LEASE_MAX_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one operation did: ``value`` is JSON; ``error`` says why not."""

    ok: bool
    value: str | None = None
    error: str | None = None


def to_json(document: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): every replica makes the same bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def refuse(reason: str, document: Any = None) -> Outcome:
    return Outcome(False, None if document is None else to_json(document), reason)


def name_fault(what: str, name: str) -> str | None:
    if not name or len(name) > NAME_MAX_CHARS:
        return f"{what} must be 1..{NAME_MAX_CHARS} characters"
    if not name.isprintable():
        return f"{what} must be printable text"
    return None


def lease_fault(lease_s: float) -> str | None:
    if not 0 < lease_s <= LEASE_MAX_S:
        return f"lease_s must be in (0, {LEASE_MAX_S:g}] seconds, got {lease_s!r}"
    return None


class AgentEnv:
    """Log time, the fencing counter, the deadline heap, the change log and the audit trail."""

    __slots__ = ("audit", "changes", "deadlines", "fence", "now_s")

    def __init__(self, changes: ChangeLog) -> None:
        self.now_s = 0.0
        self.fence = 0
        """The last fencing token handed out (tasks and locks share it, so a
        token names one grant of one resource, and later grants are larger)."""
        self.deadlines: list[tuple[float, str, str, int]] = []
        """Heap of (log time, kind, id, token)."""
        self.changes = changes
        self.audit = AuditTrail()

    def next_token(self) -> int:
        self.fence += 1
        return self.fence

    def schedule(self, deadline_s: float, kind: str, ident: str, token: int) -> None:
        heapq.heappush(self.deadlines, (deadline_s, kind, ident, token))

    def emit(self, kind: str, namespace: str, key: str, document: Any) -> None:
        """A state change: to the change history (watchers) and the audit trail."""
        self.changes.record(kind, namespace, key, to_json(document))
        self.audit.record(self.now_s, kind, key, document)

    def note(self, kind: str, key: str, document: Any) -> None:
        """A decision that changed nothing (a stale completion refused): audit trail only."""
        self.audit.record(self.now_s, kind, key, document)


__all__ = [
    "LEASE_MAX_S",
    "NAME_MAX_CHARS",
    "TEXT_MAX_CHARS",
    "AgentEnv",
    "Outcome",
    "lease_fault",
    "name_fault",
    "refuse",
    "to_json",
]
