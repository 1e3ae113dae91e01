"""The change history of the replicated store: revisions and watches.

Theory of operation (etcd's watch, on our log). Every change the store makes
— a put, a delete, a key expiring, a task or lock or proposal changing state
— gets the next *revision*, a counter every replica advances at the same log
position, so a revision names the same change on every replica. The store
keeps the latest ``history_events`` changes (``CHANGE_HISTORY_EVENTS``), in
its snapshots too. A watcher asks for the changes to a key prefix in a
namespace from a revision on (``poll``); the answer holds them in order and
the revision to ask from next, so a watcher that reconnects to any replica
resumes exactly where it stopped: nothing missed, nothing repeated. Asking
from a revision older than the history is refused as *compacted* with the
oldest revision still held (the watcher must re-read the state and watch
from the current revision, as with etcd's ``ErrCompacted``).

Agent state machines write their changes to namespaces whose names begin
with ``@`` (``@tasks``, ``@locks``, ``@proposals``, ``@agents``), which no
client write can name, so watching ``@tasks`` shows every task transition.
"""

from __future__ import annotations

from collections import deque

import msgspec

CHANGE_HISTORY_EVENTS = 4096
"""Changes kept for watchers (and in snapshots)."""
WATCH_ALL_NAMESPACES = "*"
AGENT_NAMESPACE_PREFIX = "@"


class Change(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """One change: ``kind`` is put, delete or expire for keys; for agent
    namespaces, what happened (``task.claimed``...), with the new state as
    JSON in ``value``."""

    revision: int
    kind: str
    namespace: str
    key: str
    value: str | None = None


class Compacted(Exception):
    """A watch from a revision the history no longer holds."""

    def __init__(self, oldest: int) -> None:
        super().__init__(f"revision compacted: the oldest revision held is {oldest}")
        self.oldest = oldest


class ChangeLog:
    """Revisions and the recent changes (see the module docstring)."""

    __slots__ = ("events", "history_events", "revision")

    def __init__(self, history_events: int = CHANGE_HISTORY_EVENTS) -> None:
        if history_events < 1:
            raise ValueError(f"history_events must be >= 1, got {history_events}")
        self.history_events = history_events
        self.revision = 0
        """The revision of the latest change (0: none yet)."""
        self.events: deque[Change] = deque(maxlen=history_events)

    def record(self, kind: str, namespace: str, key: str, value: str | None = None) -> int:
        self.revision += 1
        self.events.append(Change(self.revision, kind, namespace, key, value))
        return self.revision

    @property
    def oldest(self) -> int:
        """The oldest revision still held (``revision + 1`` when none is)."""
        return self.events[0].revision if self.events else self.revision + 1

    def poll(self, prefix: str, namespace: str, from_revision: int, limit: int) -> tuple[list[Change], int]:
        """(changes matching, the revision to poll from next); ``Compacted``
        when ``from_revision`` is older than the history."""
        if from_revision <= 0:
            return [], self.revision + 1
        if from_revision > self.revision:
            return [], from_revision
        oldest = self.oldest
        if from_revision < oldest:
            raise Compacted(oldest)
        limit = max(1, limit)
        out: list[Change] = []
        every = namespace == WATCH_ALL_NAMESPACES
        events = self.events
        for i in range(from_revision - oldest, len(events)):
            change = events[i]
            if (every or change.namespace == namespace) and change.key.startswith(prefix):
                out.append(change)
                if len(out) == limit:
                    return out, change.revision + 1
        return out, self.revision + 1

    # -- snapshots ------------------------------------------------------------
    def state(self) -> tuple[int, list[Change]]:
        return self.revision, list(self.events)

    def restore(self, revision: int, events: list[Change]) -> None:
        self.revision = revision
        self.events = deque(events, maxlen=self.history_events)


__all__ = [
    "AGENT_NAMESPACE_PREFIX",
    "CHANGE_HISTORY_EVENTS",
    "WATCH_ALL_NAMESPACES",
    "Change",
    "ChangeLog",
    "Compacted",
]
