"""Storage interfaces.

- ``LogStore``: entries by index. ``store`` replaces everything at or after the
  first new entry's index (a follower dropping a conflicting suffix);
  ``compact`` drops everything up to and including an index (after a snapshot).
- ``StableStore``: the protocol's small durable state (Raft: term, vote, commit).
- ``SnapshotStore``: the latest snapshot, written atomically.
- ``NodeStorage``: the three together, as the driver's ``Host.persist`` uses them,
  plus ``recover`` to rebuild a core after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from quorate.core.ready import Entry


class LogStore(Protocol):
    def first_index(self) -> int:
        """Index of the first stored entry (last snapshot index + 1 when empty)."""
        ...

    def last_index(self) -> int:
        """Index of the last stored entry (the snapshot index when empty)."""
        ...

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index < hi``."""
        ...

    def store(self, entries: list[Entry]) -> None:
        """Append, replacing any suffix from ``entries[0].index``."""
        ...

    def compact(self, through: int) -> None:
        """Drop entries with index <= ``through``."""
        ...


class StableStore(Protocol):
    def save_state(self, state: Any) -> None: ...

    def load_state(self) -> Any: ...


class SnapshotStore(Protocol):
    def save_snapshot(self, snapshot: Any) -> None: ...

    def load_snapshot(self) -> Any: ...


@dataclass(slots=True)
class Recovered:
    """What a node finds on its disk after a restart."""

    hard_state: Any = None
    snapshot: Any = None
    entries: list[Entry] = field(default_factory=list)


class NodeStorage(Protocol):
    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        """Durably save a ``Ready``'s state. Snapshot first, then entries, then
        the hard state; entries covered by the snapshot are dropped."""
        ...

    def recover(self) -> Recovered:
        """Everything persisted so far, to rebuild the core after a crash."""
        ...


def typed_decoder(type_: type[Any] | None) -> msgspec.msgpack.Decoder[Any]:
    """A msgpack decoder for a protocol's stored struct, or an untyped one
    when the storage was opened without the type (e.g. by a tool)."""
    if type_ is None:
        return msgspec.msgpack.Decoder()
    return msgspec.msgpack.Decoder(type_)
