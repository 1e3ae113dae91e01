"""``Ready``: what a protocol core asks its runtime to do.

Theory of operation (after etcd-io/raft's ``Ready``): a core never performs I/O.
Inputs (``step``, ``tick``, ``propose``) only change memory and queue work. The
runtime then calls ``ready()``, carries the work out in a fixed order —
persist ``hard_state``/``snapshot``/``entries``, send ``messages``, apply
``committed``, answer ``reads`` — and calls ``advance(ready)``. Entries are on
stable storage before any message that depends on them leaves.

Invariants:
- ``entries`` are contiguous by index; persisting them replaces any stored entry
  at or after ``entries[0].index`` (a follower truncating a conflicting suffix).
- ``committed`` are contiguous and never go backwards across ``Ready`` values.
- ``wake_at`` is an absolute deadline on the core's monotonic clock (seconds),
  or ``None`` when the core has no timer armed.

Two facts only the core knows travel with the work (etcd-io/raft's ``MustSync``
and its leader-side early sends), so no runtime guesses them:
- ``must_sync``: persisting this Ready's state needs an fsync. False when all
  that changed is state that may be lost in a crash (Raft's commit index):
  the runtime may then write it without syncing, to ride along with the next
  synced write.
- ``early_messages``: messages that may leave *before* this Ready's writes are
  durable (a Raft leader's AppendEntries, thesis §10.2.1: each follower makes
  the entries durable itself before it acknowledges). Everything in
  ``messages`` waits for the writes, as the order above says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from quorate.ids import NodeId

ENTRY_NORMAL = 0
"""``Entry.kind`` of an application command, for every protocol. Other kinds
(no-ops, configuration changes) belong to the protocol and are not applied."""


class Entry(msgspec.Struct, frozen=True, array_like=True):
    """A replicated log entry. ``kind`` is ``ENTRY_NORMAL`` for an application
    command; other values are the owning protocol's own (no-op, config change).

    ``digest`` is empty for a plain entry; a ``ChainedEntry`` carries one."""

    term: int
    index: int
    kind: int
    data: bytes
    digest: ClassVar[bytes] = b""


class ChainedEntry(Entry, frozen=True, array_like=True):
    """An ``Entry`` that carries a ``digest``: a protocol that chains its log
    (each digest covers the one before it, as a watched Raft's leader signs)
    stores and sends these. It is an ``Entry`` everywhere one is expected.

    Why a subclass and not a trailing field with a default on ``Entry``:
    msgspec encodes every field of an ``array_like`` struct, defaults included
    (``omit_defaults`` does not apply to array-like structs), so such a field
    would add bytes to every entry of every protocol. Here a plain ``Entry``
    encodes exactly as before and only chained entries pay for their digest;
    decoding a plain entry's bytes as a ``ChainedEntry`` gives ``digest=b""``."""

    digest: bytes = b""  # type: ignore[misc]  # a field here, a class default on Entry


class ReadState(msgspec.Struct, frozen=True, array_like=True):
    """A linearizable read may be served once the state machine has applied
    ``index``. ``context`` is the caller's opaque request id."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input the core dropped: who sent it, which message, and why."""

    sender: NodeId
    message_type: str
    reason: str


@dataclass(slots=True)
class Ready:
    """Work for the runtime. See the module docstring for the order."""

    messages: list[tuple[NodeId, Any]] = field(default_factory=list)
    hard_state: Any = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Any = None
    committed: list[Entry] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)
    wake_at: float | None = None
    rejected: list[Rejection] = field(default_factory=list)
    must_sync: bool = True
    """Persisting ``hard_state``/``entries``/``snapshot`` needs an fsync (see above)."""
    early_messages: list[tuple[NodeId, Any]] = field(default_factory=list)
    """Messages that may be sent before this Ready's writes are durable (see above)."""

    def is_empty(self) -> bool:
        """True when there is nothing to persist, send, apply or report."""
        return not (
            self.messages
            or self.early_messages
            or self.hard_state is not None
            or self.entries
            or self.snapshot is not None
            or self.committed
            or self.reads
            or self.rejected
        )
