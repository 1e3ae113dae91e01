"""Durable node storage in SQLite: the log, the hard state and the snapshot.

Theory of operation. A node's data directory holds ``log.db`` (SQLite in WAL
mode with ``synchronous=FULL``, so every committed transaction is fsynced to
the write-ahead log before ``COMMIT`` returns) and ``snapshots/``. It owns:

- ``entries``: one row per log entry (index, term, kind, data). The columns are
  the ``Entry`` fields themselves, so reading the log back needs no decoding;
  ``data`` is the command bytes the protocol produced.
- ``meta``: the protocol's hard state and the snapshot *pointer*, each stored
  as msgspec msgpack bytes plus a type tag (``module.QualName``). They are
  decoded with the ``hard_state_type``/``snapshot_type`` given to the
  constructor; a tag that names another type fails loudly (the directory
  belongs to another protocol).

``persist(hard_state, entries, snapshot)`` — what the driver calls with one
``Ready`` — writes everything in ONE transaction, hence one fsync however many
proposals' entries the ``Ready`` carries (group commit). The order inside the
transaction follows ``NodeStorage``: snapshot, then entries, then hard state.

Snapshots can be large, so their bytes live in a file, written atomically
(``quorate.storage.snapshot_files``: temp file fsynced, renamed, directory
fsynced), and only then does the transaction point ``meta`` at it and drop
the entries it covers. A crash leaves either the old pointer (the
new file is an orphan) or the new one; ``recover`` removes temp files and
orphans, so a torn snapshot write is ignored and cleaned.

Invariants: the stored entries are contiguous, from ``first_index`` to
``last_index``; ``first_index == snapshot.index + 1`` once a snapshot exists
and the log was compacted; every transaction is all-or-nothing (SQLite's
journal), so recovery after a crash returns a prefix of what was persisted
that contains every entry whose ``persist`` returned.

``persist(..., durable=False)`` is for a hard state whose change is only
knowledge a node can learn again (Raft's commit index, which the paper keeps
in volatile state; etcd's ``MustSync`` skips the fsync for it too). Such a
hard state is held in memory and written inside the next durable
transaction (or at ``close``); ``load_state`` returns it meanwhile. A crash
loses at most that lag: the node restarts with an older commit index and
learns the current one from the leader.

The storage is synchronous on purpose: the caller's order (persist before
send) needs the fsync done before it continues. A runtime may call
``persist`` from one worker thread while its event loop keeps working (the
connection is opened with ``check_same_thread=False``), provided calls never
overlap.

Tuning. SQLite's automatic checkpoint (every 1000 WAL pages) is kept: after
it the WAL is rewritten from its start, and overwriting file space that
already exists is the cheaper kind of ``fdatasync`` (no size change to
journal), whereas a WAL left to grow would append on every commit. A WAL that
grew beyond ``JOURNAL_SIZE_LIMIT_BYTES`` (a burst) is truncated back.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from quorate.core.ready import Entry
from quorate.errors import LocalProtocolError
from quorate.storage.base import Recovered, typed_decoder
from quorate.storage.snapshot_files import (
    SNAPSHOT_DIR_NAME,
    SnapshotPointer,
    drop_old_snapshot_files,
    remove_stray_snapshot_files,
    write_snapshot_file,
)

__all__ = ["DB_FILE_NAME", "SNAPSHOT_DIR_NAME", "SqliteStorage"]

DB_FILE_NAME = "log.db"
_KEY_HARD_STATE = "hard_state"
_KEY_SNAPSHOT = "snapshot"
_KEY_FIRST_INDEX = "first_index"
BUSY_TIMEOUT_MS = 5000
"""How long a writer waits for another connection's lock before failing."""
JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024
"""Size the WAL file is truncated back to after a checkpoint."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx  INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    tag   TEXT NOT NULL,
    value BLOB NOT NULL
);
"""


def _type_tag(value_type: type[Any] | None, value: Any) -> str:
    t = value_type if value_type is not None else type(value)
    return f"{t.__module__}.{t.__qualname__}"


class SqliteStorage:
    """``LogStore`` + ``StableStore`` + ``SnapshotStore`` + ``NodeStorage`` on disk.

    ``path`` is the node's data directory (created if missing).
    ``hard_state_type`` and ``snapshot_type`` are the protocol's msgspec Structs;
    ``None`` decodes them as plain msgpack values (lists, dicts...). A snapshot
    must have an ``index`` attribute (and ``term``, 0 if absent).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
    ) -> None:
        self.directory = Path(path)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.snapshot_directory = self.directory / SNAPSHOT_DIR_NAME
        self.snapshot_directory.mkdir(exist_ok=True)
        self.hard_state_type = hard_state_type
        self.snapshot_type = snapshot_type
        self._encoder = msgspec.msgpack.Encoder()
        self._hard_state_decoder = typed_decoder(hard_state_type)
        self._snapshot_decoder = typed_decoder(snapshot_type)
        self._pointer_decoder = msgspec.msgpack.Decoder(SnapshotPointer)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one
        # persist() is exactly one transaction.
        self._db = sqlite3.connect(
            self.directory / DB_FILE_NAME, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LocalProtocolError(f"SQLite refused WAL mode for {self.directory} (got {mode})")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
        self._db.executescript(_SCHEMA)
        self._deferred_hard_state: Any = None
        """A hard state given with ``durable=False``, not yet written."""
        self.transactions = 0
        """Committed write transactions (each one fsync of the WAL)."""
        self._first_index, self._last_index = self._load_bounds()
        self._remove_stray_snapshot_files()

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._deferred_hard_state is not None:
            self.persist(self._deferred_hard_state, [], None)
        self._db.close()

    def __enter__(self) -> SqliteStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ internals
    def _load_bounds(self) -> tuple[int, int]:
        row = self._db.execute("SELECT MIN(idx), MAX(idx) FROM entries").fetchone()
        offset = self._stored_first_index()
        if row[0] is None:
            return offset, offset - 1
        return int(row[0]), int(row[1])

    def _stored_first_index(self) -> int:
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (_KEY_FIRST_INDEX,)
        ).fetchone()
        return int.from_bytes(row[0], "big") if row else 1

    def _set_first_index(self, first: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, tag, value) VALUES (?, 'int', ?)",
            (_KEY_FIRST_INDEX, first.to_bytes(8, "big")),
        )

    def _pointer(self) -> SnapshotPointer | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (_KEY_SNAPSHOT,)).fetchone()
        return self._pointer_decoder.decode(row[0]) if row else None

    def _remove_stray_snapshot_files(self) -> None:
        """Delete torn temp files and snapshot files no committed row points at
        (a crash between the rename and the commit, or before old files were removed)."""
        pointer = self._pointer()
        remove_stray_snapshot_files(
            self.snapshot_directory, pointer.file_name if pointer is not None else None
        )

    def _begin(self) -> None:
        # IMMEDIATE takes the write lock now, so the transaction never fails
        # half-way for lack of it.
        self._db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._db.execute("COMMIT")
        self.transactions += 1

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _store_entries(self, entries: list[Entry], bounds: tuple[int, int]) -> tuple[int, int]:
        """Write ``entries`` inside the open transaction, given the log's
        ``(first_index, last_index)``; return the new bounds."""
        first_index, last_index = bounds
        if not entries:
            return first_index, last_index
        if entries[0].index < first_index:
            # Entries already covered by the snapshot are skipped.
            entries = [e for e in entries if e.index >= first_index]
            if not entries:
                return first_index, last_index
        first = entries[0].index
        if first > last_index + 1:
            raise LocalProtocolError(f"gap in log: last {last_index}, appending {first}")
        for previous, entry in itertools.pairwise(entries):
            if entry.index != previous.index + 1:
                raise LocalProtocolError(
                    f"entries are not contiguous: {previous.index} then {entry.index}"
                )
        if first <= last_index:
            self._db.execute("DELETE FROM entries WHERE idx >= ?", (first,))
        self._db.executemany(
            "INSERT INTO entries (idx, term, kind, data) VALUES (?, ?, ?, ?)",
            [(e.index, e.term, e.kind, e.data) for e in entries],
        )
        return first_index, entries[-1].index

    def _save_meta(self, key: str, value_type: type[Any] | None, value: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, tag, value) VALUES (?, ?, ?)",
            (key, _type_tag(value_type, value), self._encoder.encode(value)),
        )

    def _load_meta(self, key: str, value_type: type[Any] | None) -> tuple[bool, bytes]:
        row = self._db.execute("SELECT tag, value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return False, b""
        tag, value = row
        if value_type is not None and tag != _type_tag(value_type, None):
            raise LocalProtocolError(
                f"{self.directory}: stored {key} has type {tag}, "
                f"but this storage was opened for {_type_tag(value_type, None)}"
            )
        return True, bytes(value)

    def _write_snapshot_file(self, snapshot: Any) -> SnapshotPointer:
        """Write the snapshot's bytes atomically; the DB row is set by the caller."""
        return write_snapshot_file(
            self.snapshot_directory, snapshot, self._encoder.encode(snapshot)
        )

    def _point_at_snapshot(
        self, pointer: SnapshotPointer, bounds: tuple[int, int]
    ) -> tuple[int, int]:
        """Inside the open transaction: record the snapshot, compact the log."""
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, tag, value) VALUES (?, ?, ?)",
            (_KEY_SNAPSHOT, _type_tag(self.snapshot_type, None), self._encoder.encode(pointer)),
        )
        first_index, last_index = bounds
        if pointer.index >= last_index:
            # The snapshot covers the whole log (a follower installing a
            # leader's snapshot): nothing stored is still needed.
            self._db.execute("DELETE FROM entries")
            first_index, last_index = pointer.index + 1, pointer.index
        elif pointer.index >= first_index:
            self._db.execute("DELETE FROM entries WHERE idx <= ?", (pointer.index,))
            first_index = pointer.index + 1
        self._set_first_index(first_index)
        return first_index, last_index

    # ------------------------------------------------------------ LogStore
    def first_index(self) -> int:
        return self._first_index

    def last_index(self) -> int:
        return self._last_index

    def entries(self, lo: int, hi: int) -> list[Entry]:
        rows = self._db.execute(
            "SELECT term, idx, kind, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (lo, hi),
        ).fetchall()
        return [Entry(term, idx, kind, bytes(data)) for term, idx, kind, data in rows]

    def store(self, entries: list[Entry]) -> None:
        self.persist(None, entries, None)

    def compact(self, through: int) -> None:
        if through < self._first_index:
            return
        through = min(through, self._last_index)
        self._begin()
        try:
            self._db.execute("DELETE FROM entries WHERE idx <= ?", (through,))
            self._set_first_index(through + 1)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        self._first_index = through + 1

    # ------------------------------------------------------------ StableStore
    def save_state(self, state: Any) -> None:
        self.persist(state, [], None)

    def load_state(self) -> Any:
        if self._deferred_hard_state is not None:
            return self._deferred_hard_state
        found, raw = self._load_meta(_KEY_HARD_STATE, self.hard_state_type)
        return self._hard_state_decoder.decode(raw) if found else None

    # ------------------------------------------------------------ SnapshotStore
    def save_snapshot(self, snapshot: Any) -> None:
        self.persist(None, [], snapshot)

    def load_snapshot(self) -> Any:
        pointer = self._pointer()
        if pointer is None:
            return None
        self._load_meta(_KEY_SNAPSHOT, self.snapshot_type)  # checks the type tag
        data = (self.snapshot_directory / pointer.file_name).read_bytes()
        return self._snapshot_decoder.decode(data)

    # ------------------------------------------------------------ NodeStorage
    def persist(
        self, hard_state: Any, entries: list[Entry], snapshot: Any, *, durable: bool = True
    ) -> None:
        """Durably save one ``Ready``'s state in one transaction (one fsync),
        plus the snapshot file's own fsyncs when there is a snapshot.

        ``durable=False`` (only with a hard state alone) defers the write to
        the next durable transaction; see the module docstring."""
        if not durable:
            if entries or snapshot is not None:
                raise LocalProtocolError("entries and snapshots are always persisted durably")
            if hard_state is not None:
                self._deferred_hard_state = hard_state
            return
        if hard_state is None:
            hard_state = self._deferred_hard_state
        if hard_state is None and not entries and snapshot is None:
            return
        pointer = self._write_snapshot_file(snapshot) if snapshot is not None else None
        self._begin()
        try:
            bounds = (self._first_index, self._last_index)
            if pointer is not None:
                bounds = self._point_at_snapshot(pointer, bounds)
            # Entries are checked against the bounds *after* the snapshot, as
            # MemoryStorage does: those the snapshot covers are skipped.
            bounds = self._store_entries(entries, bounds)
            if hard_state is not None:
                self._save_meta(_KEY_HARD_STATE, self.hard_state_type, hard_state)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        self._deferred_hard_state = None
        self._first_index, self._last_index = bounds
        if pointer is not None:
            drop_old_snapshot_files(self.snapshot_directory, pointer.file_name)

    def recover(self) -> Recovered:
        """Everything persisted so far. Stray snapshot files were removed when
        the storage was opened."""
        return Recovered(
            hard_state=self.load_state(),
            snapshot=self.load_snapshot(),
            entries=self.entries(self._first_index, self._last_index + 1),
        )
