"""In-memory storage for the simulator: it survives a simulated crash (the
simulator keeps the object) but not the process."""

from __future__ import annotations

from typing import Any

from quorate.core.ready import Entry
from quorate.storage.base import Recovered


class MemoryStorage:
    """``LogStore`` + ``StableStore`` + ``SnapshotStore`` in memory."""

    __slots__ = ("_entries", "_offset", "_snapshot", "_state", "writes")

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._offset = 1  # index of _entries[0]
        self._state: Any = None
        self._snapshot: Any = None
        self.writes = 0

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

    # NodeStorage
    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        self.writes += 1
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

    def recover(self) -> Recovered:
        return Recovered(self._state, self._snapshot, list(self._entries))
