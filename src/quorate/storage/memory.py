"""In-memory storage for the simulator: it survives a simulated crash (the
simulator keeps the object) but not the process.

``MemoryStorage`` is group 0's log itself (the single-group API costs no
lookup, which the simulator's hot path notices) plus a table of the other
groups a node hosts, with the same ``GroupKeyedStorage`` contract as the disk
engines: a registry, ``persist_many`` all or nothing, per-group recovery.

``durable=False`` hard states are held aside until the next durable write,
as on disk, so a simulator that models power loss calls ``discard_unsynced``
when it crashes a node: what was never synced is gone, the rest stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from quorate.core.ready import Entry
from quorate.storage.base import (
    GroupExistsError,
    GroupRecord,
    GroupStorage,
    GroupWrite,
    Recovered,
    check_group_id,
    check_group_record,
    checked_writes,
    final_hard_states,
    plan_log_write,
    unknown_group,
)


class MemoryGroupLog:
    """One group's ``LogStore`` + ``StableStore`` + ``SnapshotStore`` in memory."""

    __slots__ = ("_entries", "_offset", "_snapshot", "_state")

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._offset = 1  # index of _entries[0]
        self._state: Any = None
        self._snapshot: Any = None

    # LogStore
    def first_index(self) -> int:
        return self._offset

    def last_index(self) -> int:
        return self._offset + len(self._entries) - 1

    def entries(self, lo: int, hi: int) -> list[Entry]:
        lo = max(lo, self._offset)
        return self._entries[lo - self._offset : max(hi - self._offset, 0)]

    def store(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        if first < self._offset:
            # entries already covered by the snapshot are skipped
            entries = [e for e in entries if e.index >= self._offset]
            if not entries:
                return
            first = entries[0].index
        if first > self.last_index() + 1:
            raise ValueError(f"gap in log: last {self.last_index()}, appending {first}")
        del self._entries[first - self._offset :]
        self._entries.extend(entries)

    def compact(self, through: int) -> None:
        if through < self._offset:
            return
        del self._entries[: through - self._offset + 1]
        self._offset = through + 1

    # StableStore
    def save_state(self, state: Any) -> None:
        self._state = state

    def load_state(self) -> Any:
        return self._state

    # SnapshotStore
    def save_snapshot(self, snapshot: Any) -> None:
        self._snapshot = snapshot

    def load_snapshot(self) -> Any:
        return self._snapshot

    def _apply(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        """Snapshot, then entries, then hard state (``NodeStorage``'s order)."""
        if snapshot is not None:
            self._snapshot = snapshot
            idx: int = snapshot.index
            if idx >= self.last_index():
                self._entries.clear()
                self._offset = idx + 1
            else:
                self.compact(idx)
        if entries:
            self.store(entries)
        if hard_state is not None:
            self._state = hard_state

    def _reset(self) -> None:
        self._entries = []
        self._offset = 1
        self._state = None
        self._snapshot = None


class MemoryStorage(MemoryGroupLog):
    """Group 0's log (the single-group API) and every other group's, in memory."""

    __slots__ = ("_deferred", "_logs", "_registry", "writes")

    def __init__(self) -> None:
        super().__init__()
        self._logs: dict[int, MemoryGroupLog] = {0: self}
        self._registry: dict[int, GroupRecord] = {}
        self._deferred: dict[int, Any] = {}
        """Hard states given with ``durable=False``, not yet written."""
        self.writes = 0
        """Durable writes (each one fsync on a disk engine)."""

    # ------------------------------------------------------------ group 0
    def load_state(self) -> Any:
        if self._deferred:
            deferred = self._deferred.get(0)
            if deferred is not None:
                return deferred
        return self._state

    def persist(
        self, hard_state: Any, entries: list[Entry], snapshot: Any, *, durable: bool = True
    ) -> None:
        if not durable or self._deferred:
            self.persist_many([GroupWrite(0, hard_state, entries, snapshot)], durable=durable)
            return
        # MemoryGroupLog._apply, inlined: the simulator's hottest storage path.
        self.writes += 1
        if snapshot is not None:
            self._snapshot = snapshot
            idx: int = snapshot.index
            if idx >= self._offset + len(self._entries) - 1:
                self._entries.clear()
                self._offset = idx + 1
            else:
                self.compact(idx)
        if entries:
            self.store(entries)
        if hard_state is not None:
            self._state = hard_state

    def recover(self) -> Recovered:
        return Recovered(self.load_state(), self._snapshot, list(self._entries))

    # ------------------------------------------------------------ registry
    def create_group(self, group: int, protocol: str, meta: bytes = b"") -> None:
        self.create_groups([(group, protocol, meta)])

    def create_groups(self, records: Iterable[tuple[int, str, bytes]]) -> None:
        checked = [check_group_record(*record) for record in records]
        seen: set[int] = set()
        for record in checked:
            if record.group in self._registry or record.group in seen:
                raise GroupExistsError(f"group {record.group} exists already")
            seen.add(record.group)
        for record in checked:
            self._registry[record.group] = record
            if record.group not in self._logs:
                self._logs[record.group] = MemoryGroupLog()
        if checked:
            self.writes += 1

    def groups(self) -> list[GroupRecord]:
        return sorted(self._registry.values())

    def drop_group(self, group: int) -> None:
        self._log(group)
        self._registry.pop(group, None)
        self._deferred.pop(group, None)
        if group == 0:
            self._reset()
        else:
            del self._logs[group]
        self.writes += 1

    def _log(self, group: int) -> MemoryGroupLog:
        log = self._logs.get(check_group_id(group))
        if log is None:
            raise unknown_group(group)
        return log

    # ------------------------------------------------------------ keyed access
    def persist_many(self, writes: Iterable[GroupWrite], *, durable: bool = True) -> None:
        batch = checked_writes(writes, durable)
        for write in batch:
            if write.group not in self._logs:
                raise unknown_group(write.group)
        if not durable:
            for write in batch:
                if write.hard_state is not None:
                    self._deferred[write.group] = write.hard_state
            return
        hard_states = final_hard_states(self._deferred, batch)
        # Check every write against the bounds the earlier ones leave, so a
        # refused call changes nothing.
        bounds: dict[int, tuple[int, int]] = {}
        for write in batch:
            log = self._logs[write.group]
            first, last = bounds.get(write.group) or (log.first_index(), log.last_index())
            plan = plan_log_write(first, last, write.entries, write.snapshot)
            bounds[write.group] = (plan.first_index, plan.last_index)
        if not hard_states and not any(w.entries or w.snapshot is not None for w in batch):
            return
        for write in batch:
            self._logs[write.group]._apply(None, list(write.entries), write.snapshot)
        for group, hard_state in hard_states.items():
            self._logs[group]._state = hard_state
        self._deferred.clear()
        self.writes += 1

    def discard_unsynced(self) -> None:
        """What a power loss does: hard states given with ``durable=False``
        and not written since are lost."""
        self._deferred.clear()

    def recover_group(
        self,
        group: int,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
    ) -> Recovered:
        log = self._log(group)
        return Recovered(
            self.hard_state_of(group), log.load_snapshot(), log.entries(1, log.last_index() + 1)
        )

    def compact_group(self, group: int, through: int) -> None:
        self._log(group).compact(through)

    def first_index_of(self, group: int) -> int:
        return self._log(group).first_index()

    def last_index_of(self, group: int) -> int:
        return self._log(group).last_index()

    def entries_of(self, group: int, lo: int, hi: int) -> list[Entry]:
        return self._log(group).entries(lo, hi)

    def hard_state_of(self, group: int, hard_state_type: type[Any] | None = None) -> Any:
        log = self._log(group)
        deferred = self._deferred.get(group)
        return deferred if deferred is not None else log._state

    def snapshot_of(self, group: int, snapshot_type: type[Any] | None = None) -> Any:
        return self._log(group).load_snapshot()

    def group(
        self,
        group: int,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
    ) -> GroupStorage:
        self._log(group)
        return GroupStorage(self, group, hard_state_type, snapshot_type)
