"""Storage interfaces, and one node's storage keyed by group.

- ``LogStore``: entries by index. ``store`` replaces everything at or after the
  first new entry's index (a follower dropping a conflicting suffix);
  ``compact`` drops everything up to and including an index (after a snapshot).
- ``StableStore``: the protocol's small durable state (Raft: term, vote, commit).
- ``SnapshotStore``: the latest snapshot, written atomically.
- ``NodeStorage``: the three together, as the driver's ``Host.persist`` uses them,
  plus ``recover`` to rebuild a core after a crash.

Many groups per node. A node hosts many protocol groups (multi-Raft ranges, a
shard's Raft group beside a BFT core group), and keeps them all in ONE store:
one database or one write-ahead log per node, so the durable writes of every
group in a turn cost one fsync (group commit across groups, as TiKV's
raftstore and CockroachDB do). ``GroupKeyedStorage`` is that store:

- ``persist_many(writes)`` makes a list of ``GroupWrite`` durable at once, all
  or nothing: a write that cannot apply (a gap in its group's log) refuses the
  whole call before anything is written. Writes apply in order, so a group may
  appear more than once. ``durable=False`` holds hard states (only) in memory
  until the next durable call, whichever groups it writes.
- A registry (``create_group``, ``groups``, ``drop_group``) says which groups
  the node hosts and with which protocol, so a restarting node knows what to
  rebuild; ``recover_group`` decodes a group's state with the types of that
  group's protocol. Writing to a group that is not registered is refused,
  except group 0: the single-group API (``persist``, ``recover``...) is group 0
  and works without a registry row.
- ``group(g, types)`` is a ``GroupStorage``: one group's ``NodeStorage``.

Group ids are u64: ``check_group_id`` refuses anything else with a
``GroupIdError`` (a ``ConfigError``) before it reaches an engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import msgspec

from quorate.core.ready import Entry
from quorate.errors import ConfigError, LocalProtocolError
from quorate.ids import MAX_GROUP_ID

"""Group ids are unsigned 64-bit integers."""
MAX_PROTOCOL_NAME_BYTES = 255
"""A registry row's protocol name, UTF-8 encoded (a binding's name, e.g. "raft")."""
MAX_GROUP_META_BYTES = 1 << 20
"""A registry row's opaque metadata (a range's bounds, a group's config)."""


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


# ---------------------------------------------------------------- groups
class GroupIdError(ConfigError):
    """A group id that is not an unsigned 64-bit integer."""


class UnknownGroupError(LocalProtocolError):
    """A group the storage does not host (never created, or dropped)."""


def unknown_group(group: int) -> UnknownGroupError:
    return UnknownGroupError(f"group {group} is not hosted here; create_group first")


class GroupExistsError(LocalProtocolError):
    """``create_group`` of a group the storage hosts already."""


class GroupWrite(NamedTuple):
    """One group's share of a node turn's durable writes: a ``Ready``'s
    hard state, entries and snapshot, addressed to ``group``. (A named
    tuple: a node host builds one per group per turn.)"""

    group: int
    hard_state: Any = None
    entries: Sequence[Entry] = ()
    snapshot: Any = None


class GroupRecord(NamedTuple):
    """A registry row: a group this node hosts, the protocol it runs (a
    binding's name) and opaque metadata the host keeps with it."""

    group: int
    protocol: str
    meta: bytes


def check_group_id(group: object) -> int:
    """``group`` as an int if it is a valid group id (``quorate.ids.MAX_GROUP_ID``);
    ``GroupIdError`` otherwise."""
    if isinstance(group, bool) or not isinstance(group, int):
        raise GroupIdError(f"a group id must be an integer, got {group!r}")
    if not 0 <= group <= MAX_GROUP_ID:
        raise GroupIdError(f"a group id must be in 0..2**63-1, got {group}")
    return int(group)


def check_group_record(group: object, protocol: object, meta: object) -> GroupRecord:
    """A valid registry row from user-supplied parts, or ``ConfigError``."""
    checked = check_group_id(group)
    if not isinstance(protocol, str) or not protocol:
        raise ConfigError(
            f"group {checked}: the protocol must be a non-empty name, got {protocol!r}"
        )
    if len(protocol.encode()) > MAX_PROTOCOL_NAME_BYTES:
        raise ConfigError(
            f"group {checked}: the protocol name is longer than {MAX_PROTOCOL_NAME_BYTES} bytes"
        )
    if not isinstance(meta, (bytes, bytearray, memoryview)):
        raise ConfigError(f"group {checked}: meta must be bytes, got {type(meta).__name__}")
    raw = bytes(meta)
    if len(raw) > MAX_GROUP_META_BYTES:
        raise ConfigError(
            f"group {checked}: meta is {len(raw)} bytes, more than {MAX_GROUP_META_BYTES}"
        )
    return GroupRecord(checked, protocol, raw)


def checked_writes(writes: Iterable[GroupWrite], durable: bool) -> list[GroupWrite]:
    """``writes`` as a list, each group id checked; a deferred write
    (``durable=False``) may carry a hard state only."""
    out = writes if type(writes) is list else list(writes)
    for write in out:
        if type(write) is not GroupWrite:
            raise LocalProtocolError(f"persist_many takes GroupWrite values, got {write!r}")
        group = write.group
        if type(group) is not int or not 0 <= group <= MAX_GROUP_ID:
            check_group_id(group)  # raises, unless an int subclass in range
        if not durable and (write.entries or write.snapshot is not None):
            raise LocalProtocolError("entries and snapshots are always persisted durably")
    return out


class LogPlan(NamedTuple):
    """What one write does to one group's log, worked out before anything is
    written so a refused write changes nothing."""

    first_index: int
    """The log's bounds once the write is applied."""
    last_index: int
    first_after_snapshot: int
    """Entries below this index are gone once the snapshot is applied."""
    snapshot_index: int | None
    truncate_from: int | None
    """A conflicting suffix from this index is replaced."""
    entries: list[Entry]
    """The entries to store: those the snapshot covers are left out."""


def plan_log_write(
    first_index: int, last_index: int, entries: Sequence[Entry], snapshot: Any
) -> LogPlan:
    """Apply a snapshot, then entries, to a log holding ``first_index`` to
    ``last_index``. A snapshot past the log's end empties it (a follower
    installing the leader's snapshot); entries must follow on without a gap.
    ``LocalProtocolError`` for a gap or non-contiguous entries."""
    first, last = first_index, last_index
    snapshot_index: int | None = None
    if snapshot is not None:
        snapshot_index = int(snapshot.index)
        if snapshot_index >= last:
            first, last = snapshot_index + 1, snapshot_index
        elif snapshot_index >= first:
            first = snapshot_index + 1
    first_after_snapshot = first
    kept = [e for e in entries if e.index >= first] if entries else []
    truncate_from: int | None = None
    if kept:
        start = kept[0].index
        if start > last + 1:
            raise LocalProtocolError(f"gap in log: last {last}, appending {start}")
        for previous, entry in itertools.pairwise(kept):
            if entry.index != previous.index + 1:
                raise LocalProtocolError(
                    f"entries are not contiguous: {previous.index} then {entry.index}"
                )
        if start <= last:
            truncate_from = start
        last = kept[-1].index
    return LogPlan(first, last, first_after_snapshot, snapshot_index, truncate_from, kept)


def final_hard_states(deferred: dict[int, Any], writes: list[GroupWrite]) -> dict[int, Any]:
    """The hard state each group's durable write leaves: the last one given,
    else the one deferred (``durable=False``) since the last durable write."""
    out = dict(deferred)
    for write in writes:
        if write.hard_state is not None:
            out[write.group] = write.hard_state
    return out


class GroupKeyedStorage(Protocol):
    """One node's storage for all the groups it hosts (see the module docstring)."""

    def persist_many(self, writes: Iterable[GroupWrite], *, durable: bool = True) -> None: ...

    def recover_group(
        self,
        group: int,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
    ) -> Recovered: ...

    def create_group(self, group: int, protocol: str, meta: bytes = b"") -> None: ...

    def create_groups(self, records: Iterable[tuple[int, str, bytes]]) -> None: ...

    def groups(self) -> list[GroupRecord]: ...

    def drop_group(self, group: int) -> None: ...

    def compact_group(self, group: int, through: int) -> None: ...

    def first_index_of(self, group: int) -> int: ...

    def last_index_of(self, group: int) -> int: ...

    def entries_of(self, group: int, lo: int, hi: int) -> list[Entry]: ...

    def hard_state_of(self, group: int, hard_state_type: type[Any] | None = None) -> Any: ...

    def snapshot_of(self, group: int, snapshot_type: type[Any] | None = None) -> Any: ...


class GroupStorage:
    """One group of a ``GroupKeyedStorage`` as a ``LogStore``, ``StableStore``,
    ``SnapshotStore`` and ``NodeStorage``, decoding with its protocol's types.
    Each ``persist`` is its own durable write (one fsync); a node host that
    wants one fsync for many groups calls the storage's ``persist_many``."""

    __slots__ = ("group", "hard_state_type", "snapshot_type", "storage")

    def __init__(
        self,
        storage: GroupKeyedStorage,
        group: int,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
    ) -> None:
        self.storage = storage
        self.group = check_group_id(group)
        self.hard_state_type = hard_state_type
        self.snapshot_type = snapshot_type

    def first_index(self) -> int:
        return self.storage.first_index_of(self.group)

    def last_index(self) -> int:
        return self.storage.last_index_of(self.group)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.storage.entries_of(self.group, lo, hi)

    def store(self, entries: list[Entry]) -> None:
        self.persist(None, entries, None)

    def compact(self, through: int) -> None:
        self.storage.compact_group(self.group, through)

    def save_state(self, state: Any) -> None:
        self.persist(state, [], None)

    def load_state(self) -> Any:
        return self.storage.hard_state_of(self.group, self.hard_state_type)

    def save_snapshot(self, snapshot: Any) -> None:
        self.persist(None, [], snapshot)

    def load_snapshot(self) -> Any:
        return self.storage.snapshot_of(self.group, self.snapshot_type)

    def persist(
        self, hard_state: Any, entries: list[Entry], snapshot: Any, *, durable: bool = True
    ) -> None:
        self.storage.persist_many(
            [GroupWrite(self.group, hard_state, entries, snapshot)], durable=durable
        )

    def recover(self) -> Recovered:
        return self.storage.recover_group(self.group, self.hard_state_type, self.snapshot_type)


# ---------------------------------------------------------------- type tags
_TYPE_TAGS: dict[type[Any], str] = {}


def type_tag(value_type: type[Any]) -> str:
    """How a stored value names its type, so a group is never decoded with
    another protocol's struct."""
    tag = _TYPE_TAGS.get(value_type)
    if tag is None:
        tag = _TYPE_TAGS[value_type] = f"{value_type.__module__}.{value_type.__qualname__}"
    return tag


def typed_decoder(type_: type[Any] | None) -> msgspec.msgpack.Decoder[Any]:
    """A msgpack decoder for a protocol's stored struct, or an untyped one
    when the storage was opened without the type (e.g. by a tool)."""
    if type_ is None:
        return msgspec.msgpack.Decoder()
    return msgspec.msgpack.Decoder(type_)


class DecoderCache:
    """One decoder per stored type: a node with many groups of a few
    protocols builds each decoder once."""

    __slots__ = ("_decoders",)

    def __init__(self) -> None:
        self._decoders: dict[type[Any] | None, msgspec.msgpack.Decoder[Any]] = {}

    def __call__(self, type_: type[Any] | None) -> msgspec.msgpack.Decoder[Any]:
        decoder = self._decoders.get(type_)
        if decoder is None:
            decoder = self._decoders[type_] = typed_decoder(type_)
        return decoder


def check_type_tag(
    where: str, group: int, what: str, stored_tag: str, wanted: type[Any] | None
) -> type[Any] | None:
    """The type to decode a stored value with: ``wanted``, or the subclass of
    it the value's tag names (a protocol's extension of its stored struct,
    e.g. a Raft snapshot taken in a joint configuration). A tag naming any
    other type is a ``LocalProtocolError`` (the group belongs to another
    protocol)."""
    if wanted is None or stored_tag == type_tag(wanted):
        return wanted
    subclasses = list(wanted.__subclasses__())
    while subclasses:
        candidate = subclasses.pop()
        if type_tag(candidate) == stored_tag:
            return candidate
        subclasses.extend(candidate.__subclasses__())
    owner = "" if group == 0 else f" group {group}:"
    raise LocalProtocolError(
        f"{where}:{owner} stored {what} has type {stored_tag}, "
        f"but this storage was opened for {type_tag(wanted)}"
    )
