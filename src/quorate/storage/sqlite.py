"""Durable node storage in SQLite: every group's log, hard state and snapshot.

Theory of operation. A node's data directory holds ``log.db`` (SQLite in WAL
mode with ``synchronous=FULL``, so every committed transaction is fsynced to
the write-ahead log before ``COMMIT`` returns) and ``snapshots/``. One
database serves every group the node hosts; each row carries its group id
(a u64, stored as SQLite's signed 64-bit integer of the same bits). It owns:

- ``entries``: one row per log entry (group, index, term, kind, data),
  clustered by (group, index). The columns are the ``Entry`` fields
  themselves, so reading the log back needs no decoding; ``data`` is the
  command bytes the protocol produced.
- ``tail``: the newest entries, in the order they were written (an integer
  primary key ``seq`` the storage assigns, so a turn's rows go to the
  table's last page or two whichever groups they belong to). A turn that
  writes one entry in each of ten groups then changes one or two pages, not
  the ten leaf pages of ``entries`` those groups' rows would land on, each
  of which SQLite writes in full to its journal. Once the tail holds more
  than ``TAIL_MAX_ROWS`` rows or ``TAIL_MAX_BYTES`` bytes, the turn's
  transaction moves it into ``entries`` in (group, index) order, many
  entries per group at once, and empties it. The tail is also kept in
  memory (bounded by the same limits), read at open, so reading recent
  entries and deleting a group's tail rows (a conflicting suffix, a
  compaction, a snapshot, a dropped group) need no scan.
- ``meta``: per group, the protocol's hard state and the snapshot *pointer*,
  each stored as msgspec msgpack bytes plus a type tag (``module.QualName``).
  They are decoded with the types the caller names (the constructor's for
  the single-group API, ``recover_group``'s otherwise); a tag that names
  another type fails loudly (the group belongs to another protocol).
- ``groups``: the registry, one row per hosted group (protocol, meta).

``persist_many(writes)`` — what a node host calls with one turn's Readies —
writes every group's share in ONE transaction, hence one fsync however many
groups and proposals the turn carries (group commit). ``persist`` is the
same for group 0 alone. Inside the transaction each group follows
``NodeStorage``'s order: snapshot, then entries, then hard state. Every
write is checked before the transaction begins, so a refused call (a gap in
some group's log) writes nothing.

Snapshots can be large, so their bytes live in files, written atomically
(``quorate.storage.snapshot_files``: temp files fsynced, renamed, directory
fsynced once), and only then does the transaction point ``meta`` at them and
drop the entries they cover. A crash leaves either the old pointer (the new
file is an orphan) or the new one; opening removes temp files and orphans,
so a torn snapshot write is ignored and cleaned.

``drop_group`` deletes a group's entries, meta rows and registry row in one
transaction, then its snapshot files (an orphan left by a crash in between
is removed at the next open).

Invariants: each group's stored entries are contiguous, from its
``first_index`` to its ``last_index``; its rows in ``tail`` are a suffix of
them (every index in ``tail`` is above every index in ``entries``); ``first_index == snapshot.index + 1``
once a snapshot exists and the log was compacted; every transaction is
all-or-nothing (SQLite's journal), so recovery after a crash returns, for
every group, a prefix of what was persisted that contains every write whose
``persist_many`` returned.

``durable=False`` is for a hard state whose change is only knowledge a node
can learn again (Raft's commit index, which the paper keeps in volatile
state; etcd's ``MustSync`` skips the fsync for it too). Such a hard state is
held in memory and written inside the next durable transaction, whichever
groups that one writes (or at ``close``); ``load_state`` returns it
meanwhile. A crash loses at most that lag.

Layout versions. ``PRAGMA user_version`` names the schema. A database of the
single-group layout (version 0: no group column) is migrated in place, in
one transaction, its rows becoming group 0's; a database of the first
multi-group layout (version 1: no ``tail``) gains an empty ``tail``; a newer
version is refused.

The storage is synchronous on purpose: the caller's order (persist before
send) needs the fsync done before it continues. A runtime may call
``persist_many`` from one worker thread while its event loop keeps working
(the connection is opened with ``check_same_thread=False``), provided calls
never overlap.

Tuning. SQLite's automatic checkpoint (every 1000 WAL pages) is kept: after
it the WAL is rewritten from its start, and overwriting file space that
already exists is the cheaper kind of ``fdatasync`` (no size change to
journal), whereas a WAL left to grow would append on every commit. A WAL that
grew beyond ``JOURNAL_SIZE_LIMIT_BYTES`` (a burst) is truncated back.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from quorate.core.ready import Entry
from quorate.errors import ConfigError, LocalProtocolError
from quorate.storage.base import (
    DecoderCache,
    GroupExistsError,
    GroupRecord,
    GroupStorage,
    GroupWrite,
    LogPlan,
    Recovered,
    check_group_id,
    check_group_record,
    check_type_tag,
    checked_writes,
    final_hard_states,
    plan_log_write,
    type_tag,
    unknown_group,
)
from quorate.storage.layout import DB_FILE_NAME, SNAPSHOT_DIR_NAME, refuse_other_engine
from quorate.storage.snapshot_files import (
    SnapshotPointer,
    drop_group_snapshot_files,
    drop_old_snapshot_files,
    remove_stray_snapshot_files,
    write_snapshot_files,
)

__all__ = ["DB_FILE_NAME", "SCHEMA_VERSION", "SNAPSHOT_DIR_NAME", "SqliteStorage"]

_KEY_HARD_STATE = "hard_state"
_KEY_SNAPSHOT = "snapshot"
_KEY_FIRST_INDEX = "first_index"
BUSY_TIMEOUT_MS = 5000
"""How long a writer waits for another connection's lock before failing."""
JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024
"""Size the WAL file is truncated back to after a checkpoint."""
SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the layout below (0: the single-group layout,
1: groups without the ``tail`` table)."""
TAIL_MAX_ROWS = 4096
"""Rows the ``tail`` table holds before a turn moves them into ``entries``."""
TAIL_MAX_BYTES = 4 * 1024 * 1024
"""Entry data the ``tail`` table holds before a turn moves it into ``entries``."""
_U64_SPAN = 1 << 64
_I64_MAX = (1 << 63) - 1

_CREATE_TAIL = """CREATE TABLE tail (
        seq  INTEGER PRIMARY KEY,
        grp  INTEGER NOT NULL,
        idx  INTEGER NOT NULL,
        term INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        data BLOB NOT NULL
    )"""
_SCHEMA = (
    """CREATE TABLE entries (
        grp  INTEGER NOT NULL,
        idx  INTEGER NOT NULL,
        term INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (grp, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE meta (
        grp   INTEGER NOT NULL,
        key   TEXT NOT NULL,
        tag   TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (grp, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE groups (
        grp      INTEGER PRIMARY KEY,
        protocol TEXT NOT NULL,
        meta     BLOB NOT NULL
    )""",
    _CREATE_TAIL,
)
_MIGRATE_FROM_GROUPS_WITHOUT_TAIL = (_CREATE_TAIL,)
_MIGRATE_FROM_SINGLE_GROUP = (
    "ALTER TABLE entries RENAME TO entries_v0",
    "ALTER TABLE meta RENAME TO meta_v0",
    *_SCHEMA,
    "INSERT INTO entries (grp, idx, term, kind, data) "
    "SELECT 0, idx, term, kind, data FROM entries_v0",
    "INSERT INTO meta (grp, key, tag, value) SELECT 0, key, tag, value FROM meta_v0",
    "DROP TABLE entries_v0",
    "DROP TABLE meta_v0",
)


class _Tail:
    """One group's rows in the ``tail`` table: its newest entries, contiguous
    and ascending, and the ``seq`` of each row."""

    __slots__ = ("entries", "seqs")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.seqs: list[int] = []


def _plain(entry: Entry) -> Entry:
    """``entry`` as reading it back from the table gives it (a plain
    ``Entry`` with ``bytes`` data)."""
    if type(entry) is Entry and type(entry.data) is bytes:
        return entry
    return Entry(entry.term, entry.index, entry.kind, bytes(entry.data))


def _sql_group(group: int) -> int:
    """A u64 group id as the signed 64-bit integer SQLite stores (same bits)."""
    return group - _U64_SPAN if group > _I64_MAX else group


def _u64_group(stored: int) -> int:
    return stored + _U64_SPAN if stored < 0 else stored


class SqliteStorage:
    """Every group's ``LogStore`` + ``StableStore`` + ``SnapshotStore`` on disk,
    with the single-group API (``persist``, ``recover``, ``first_index``...)
    working on group 0.

    ``path`` is the node's data directory (created if missing).
    ``hard_state_type`` and ``snapshot_type`` are group 0's protocol's msgspec
    Structs; ``None`` decodes them as plain msgpack values (lists, dicts...).
    A snapshot must have an ``index`` attribute (and ``term``, 0 if absent).
    ``tail_max_rows`` and ``tail_max_bytes`` bound the ``tail`` table (see
    the module docstring).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
        tail_max_rows: int = TAIL_MAX_ROWS,
        tail_max_bytes: int = TAIL_MAX_BYTES,
    ) -> None:
        if tail_max_rows < 0 or tail_max_bytes < 0:
            raise ConfigError("tail_max_rows and tail_max_bytes must be >= 0")
        self.tail_max_rows = tail_max_rows
        self.tail_max_bytes = tail_max_bytes
        self.directory = Path(path)
        self.directory.mkdir(parents=True, exist_ok=True)
        refuse_other_engine(self.directory, "sqlite")
        self.snapshot_directory = self.directory / SNAPSHOT_DIR_NAME
        self.snapshot_directory.mkdir(exist_ok=True)
        self.hard_state_type = hard_state_type
        self.snapshot_type = snapshot_type
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = DecoderCache()
        self._pointer_decoder = msgspec.msgpack.Decoder(SnapshotPointer)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one
        # persist_many() is exactly one transaction.
        self._db = sqlite3.connect(
            self.directory / DB_FILE_NAME, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LocalProtocolError(f"SQLite refused WAL mode for {self.directory} (got {mode})")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
        self._open_schema()
        self._registry: dict[int, GroupRecord] = {}
        for grp, protocol, meta in self._db.execute("SELECT grp, protocol, meta FROM groups"):
            group = _u64_group(grp)
            self._registry[group] = GroupRecord(group, protocol, bytes(meta))
        self._bounds: dict[int, tuple[int, int]] = {}
        """Each group's (first_index, last_index), read on first use."""
        self._deferred: dict[int, Any] = {}
        """Hard states given with ``durable=False``, not yet written."""
        self._tail: dict[int, _Tail] = {}
        """Each group's rows in the ``tail`` table (groups with none are absent)."""
        self._tail_rows = 0
        self._tail_bytes = 0
        self._next_seq = 1
        self.tail_moves = 0
        """Times the tail was moved into ``entries`` by this instance."""
        self._load_tail()
        self.transactions = 0
        """Committed write transactions (each one fsync of the WAL)."""
        self._remove_stray_snapshot_files()

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._deferred:
            self.persist_many([])
        self._db.close()

    def __enter__(self) -> SqliteStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ internals
    def _open_schema(self) -> None:
        """Create the tables, or migrate the single-group layout, or refuse a newer one."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        self._begin()
        try:
            # Read again under the write lock: another connection may have
            # created or migrated the schema meanwhile.
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.directory / DB_FILE_NAME} has layout version {version}, newer than "
                    f"this quorate's ({SCHEMA_VERSION}); open it with the version that wrote it"
                )
            if version < SCHEMA_VERSION:
                tables = {
                    row[0]
                    for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                statements: tuple[str, ...]
                if version == 1:
                    statements = _MIGRATE_FROM_GROUPS_WITHOUT_TAIL
                elif "entries" in tables:
                    statements = _MIGRATE_FROM_SINGLE_GROUP
                else:
                    statements = _SCHEMA
                for statement in statements:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback(reload_tail=False)
            raise

    def _check_known(self, group: object) -> int:
        checked = check_group_id(group)
        if checked != 0 and checked not in self._registry:
            raise unknown_group(checked)
        return checked

    def _bounds_of(self, group: int) -> tuple[int, int]:
        bounds = self._bounds.get(group)
        if bounds is None:
            bounds = self._bounds[group] = self._load_bounds(group)
        return bounds

    def _load_tail(self) -> None:
        """Read the ``tail`` table into memory (at open, and after a rollback)."""
        self._tail = {}
        rows = bytes_ = 0
        last_seq = 0
        for seq, grp, idx, term, kind, data in self._db.execute(
            "SELECT seq, grp, idx, term, kind, data FROM tail ORDER BY seq"
        ):
            group = _u64_group(grp)
            tail = self._tail.get(group)
            if tail is None:
                tail = self._tail[group] = _Tail()
            tail.entries.append(Entry(term, idx, kind, bytes(data)))
            tail.seqs.append(seq)
            rows += 1
            bytes_ += len(data)
            last_seq = seq
        for tail in self._tail.values():
            for previous, entry in zip(tail.entries, tail.entries[1:], strict=False):
                if entry.index != previous.index + 1:
                    raise LocalProtocolError(
                        f"{self.directory / DB_FILE_NAME}: the tail table is not contiguous "
                        f"({previous.index} then {entry.index})"
                    )
        self._tail_rows, self._tail_bytes = rows, bytes_
        self._next_seq = last_seq + 1

    def _drop_tail_rows(self, group: int, keep: slice) -> None:
        """Inside the open transaction: delete ``group``'s tail rows outside
        ``keep`` (a slice of its tail), by ``seq``."""
        tail = self._tail.get(group)
        if tail is None:
            return
        kept_entries = tail.entries[keep]
        if len(kept_entries) == len(tail.entries):
            return
        kept_seqs = tail.seqs[keep]
        kept = set(kept_seqs)
        gone = [seq for seq in tail.seqs if seq not in kept]
        self._db.executemany("DELETE FROM tail WHERE seq = ?", [(seq,) for seq in gone])
        self._tail_rows -= len(gone)
        self._tail_bytes -= sum(len(e.data) for e in tail.entries) - sum(
            len(e.data) for e in kept_entries
        )
        if kept_entries:
            tail.entries, tail.seqs = kept_entries, kept_seqs
        else:
            del self._tail[group]

    def _drop_tail_below(self, group: int, index: int) -> None:
        tail = self._tail.get(group)
        if tail is not None and tail.entries[0].index < index:
            self._drop_tail_rows(group, slice(index - tail.entries[0].index, None))

    def _drop_tail_from(self, group: int, index: int) -> None:
        tail = self._tail.get(group)
        if tail is not None and tail.entries[-1].index >= index:
            self._drop_tail_rows(group, slice(0, max(0, index - tail.entries[0].index)))

    def _move_tail(self) -> None:
        """Inside the open transaction: move every tail row into ``entries``,
        in (group, index) order, and empty the tail."""
        self._db.execute(
            "INSERT INTO entries (grp, idx, term, kind, data) "
            "SELECT grp, idx, term, kind, data FROM tail ORDER BY grp, idx"
        )
        self._db.execute("DELETE FROM tail")
        self._tail = {}
        self._tail_rows = self._tail_bytes = 0
        self.tail_moves += 1

    def _load_bounds(self, group: int) -> tuple[int, int]:
        grp = _sql_group(group)
        tail = self._tail.get(group)
        # Two ORDER BY ... LIMIT 1 queries: each is one index lookup, where
        # MIN and MAX together would scan the group's rows.
        lo = self._db.execute(
            "SELECT idx FROM entries WHERE grp = ? ORDER BY idx LIMIT 1", (grp,)
        ).fetchone()
        row = self._db.execute(
            "SELECT value FROM meta WHERE grp = ? AND key = ?", (grp, _KEY_FIRST_INDEX)
        ).fetchone()
        offset = int.from_bytes(row[0], "big") if row else 1
        if tail is not None:
            first = int(lo[0]) if lo is not None else tail.entries[0].index
            return first, tail.entries[-1].index
        if lo is None:
            return offset, offset - 1
        hi = self._db.execute(
            "SELECT idx FROM entries WHERE grp = ? ORDER BY idx DESC LIMIT 1", (grp,)
        ).fetchone()
        return int(lo[0]), int(hi[0])

    def _set_first_index(self, grp: int, first: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta (grp, key, tag, value) VALUES (?, ?, 'int', ?)",
            (grp, _KEY_FIRST_INDEX, first.to_bytes(8, "big")),
        )

    def _pointer(self, group: int) -> SnapshotPointer | None:
        row = self._db.execute(
            "SELECT value FROM meta WHERE grp = ? AND key = ?", (_sql_group(group), _KEY_SNAPSHOT)
        ).fetchone()
        return self._pointer_decoder.decode(row[0]) if row else None

    def _remove_stray_snapshot_files(self) -> None:
        """Delete torn temp files and snapshot files no committed row points at
        (a crash between the rename and the commit, before old files were
        removed, or before a dropped group's files were)."""
        keep = {
            self._pointer_decoder.decode(row[0]).file_name
            for row in self._db.execute("SELECT value FROM meta WHERE key = ?", (_KEY_SNAPSHOT,))
        }
        remove_stray_snapshot_files(self.snapshot_directory, keep)

    def _begin(self) -> None:
        # IMMEDIATE takes the write lock now, so the transaction never fails
        # half-way for lack of it.
        self._db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._db.execute("COMMIT")
        self.transactions += 1

    def _rollback(self, *, reload_tail: bool = True) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        if reload_tail:
            # The in-memory tail may have followed the transaction part-way.
            self._load_tail()

    def _write_log(
        self,
        group: int,
        plan: LogPlan,
        pointer: SnapshotPointer | None,
        snapshot_tag: str,
        rows: list[tuple[int, int, int, int, int, bytes]],
    ) -> None:
        """Inside the open transaction: one write's snapshot pointer and
        deletions; its entries are added to ``rows`` (the turn's tail rows,
        inserted together) and to the in-memory tail."""
        db = self._db
        grp = _sql_group(group)
        if pointer is not None:
            db.execute(
                "INSERT OR REPLACE INTO meta (grp, key, tag, value) VALUES (?, ?, ?, ?)",
                (grp, _KEY_SNAPSHOT, snapshot_tag, self._encoder.encode(pointer)),
            )
            # Everything the snapshot covers goes (all of it when the
            # snapshot is past the log's end).
            db.execute(
                "DELETE FROM entries WHERE grp = ? AND idx < ?", (grp, plan.first_after_snapshot)
            )
            self._drop_tail_below(group, plan.first_after_snapshot)
            self._set_first_index(grp, plan.first_after_snapshot)
        if plan.truncate_from is not None:
            tail = self._tail.get(group)
            if tail is None or plan.truncate_from < tail.entries[0].index:
                db.execute(
                    "DELETE FROM entries WHERE grp = ? AND idx >= ?", (grp, plan.truncate_from)
                )
            self._drop_tail_from(group, plan.truncate_from)
        if plan.entries:
            tail = self._tail.get(group)
            if tail is None:
                tail = self._tail[group] = _Tail()
            seq = self._next_seq
            for entry in plan.entries:
                plain = _plain(entry)
                rows.append((seq, grp, plain.index, plain.term, plain.kind, plain.data))
                tail.entries.append(plain)
                tail.seqs.append(seq)
                self._tail_bytes += len(plain.data)
                seq += 1
            self._tail_rows += seq - self._next_seq
            self._next_seq = seq

    def _insert_tail(self, rows: list[tuple[int, int, int, int, int, bytes]]) -> None:
        self._db.executemany(
            "INSERT INTO tail (seq, grp, idx, term, kind, data) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        rows.clear()

    def _load_meta(
        self, group: int, key: str, value_type: type[Any] | None
    ) -> tuple[bool, bytes, type[Any] | None]:
        """(found, the stored bytes, the type to decode them with)."""
        row = self._db.execute(
            "SELECT tag, value FROM meta WHERE grp = ? AND key = ?", (_sql_group(group), key)
        ).fetchone()
        if row is None:
            return False, b"", value_type
        tag, value = row
        decode_as = check_type_tag(str(self.directory), group, key, tag, value_type)
        return True, bytes(value), decode_as

    # ------------------------------------------------------------ registry
    def create_group(self, group: int, protocol: str, meta: bytes = b"") -> None:
        """Register ``group`` as hosted here, running ``protocol``; durable on return."""
        self.create_groups([(group, protocol, meta)])

    def create_groups(self, records: Iterable[tuple[int, str, bytes]]) -> None:
        """Register many groups in one transaction (one fsync)."""
        checked = [check_group_record(*record) for record in records]
        seen: set[int] = set()
        for record in checked:
            if record.group in self._registry or record.group in seen:
                raise GroupExistsError(f"group {record.group} exists already")
            seen.add(record.group)
        if not checked:
            return
        self._begin()
        try:
            self._db.executemany(
                "INSERT INTO groups (grp, protocol, meta) VALUES (?, ?, ?)",
                [(_sql_group(r.group), r.protocol, r.meta) for r in checked],
            )
            self._commit()
        except BaseException:
            self._rollback()
            raise
        for record in checked:
            self._registry[record.group] = record

    def groups(self) -> list[GroupRecord]:
        """The hosted groups, by id."""
        return sorted(self._registry.values())

    def drop_group(self, group: int) -> None:
        """Remove ``group``: its log, hard state, snapshot and registry row go
        in one transaction (durable on return), then its snapshot files."""
        checked = self._check_known(group)
        grp = _sql_group(checked)
        self._begin()
        try:
            self._db.execute("DELETE FROM entries WHERE grp = ?", (grp,))
            self._drop_tail_rows(checked, slice(0, 0))
            self._db.execute("DELETE FROM meta WHERE grp = ?", (grp,))
            self._db.execute("DELETE FROM groups WHERE grp = ?", (grp,))
            self._commit()
        except BaseException:
            self._rollback()
            raise
        self._registry.pop(checked, None)
        self._bounds.pop(checked, None)
        self._deferred.pop(checked, None)
        drop_group_snapshot_files(self.snapshot_directory, checked)

    # ------------------------------------------------------------ keyed access
    def persist_many(self, writes: Iterable[GroupWrite], *, durable: bool = True) -> None:
        """Durably save many groups' writes in ONE transaction (one fsync),
        plus the snapshot files' own fsyncs when there are snapshots; all or
        nothing. ``durable=False`` (hard states only) defers them to the next
        durable transaction; see the module docstring."""
        batch = checked_writes(writes, durable)
        registry = self._registry
        for write in batch:
            if write.group != 0 and write.group not in registry:
                raise unknown_group(write.group)
        if not durable:
            for write in batch:
                if write.hard_state is not None:
                    self._deferred[write.group] = write.hard_state
            return
        hard_states = final_hard_states(self._deferred, batch)
        # Plan every write against the bounds the earlier ones leave, so a
        # refused write (a gap) changes nothing on disk or in memory.
        bounds: dict[int, tuple[int, int]] = {}
        plans = []
        for write in batch:
            first, last = bounds.get(write.group) or self._bounds_of(write.group)
            plan = plan_log_write(first, last, write.entries, write.snapshot)
            bounds[write.group] = (plan.first_index, plan.last_index)
            plans.append(plan)
        snapshots = [(w.group, w.snapshot) for w in batch if w.snapshot is not None]
        if not hard_states and not snapshots and not any(p.entries for p in plans):
            return
        pointers = iter(
            write_snapshot_files(
                self.snapshot_directory,
                [(g, s, self._encoder.encode(s)) for g, s in snapshots],
            )
        )
        committed: list[tuple[int, SnapshotPointer]] = []
        rows: list[tuple[int, int, int, int, int, bytes]] = []
        self._begin()
        try:
            for write, plan in zip(batch, plans, strict=True):
                pointer = None
                if write.snapshot is not None:
                    pointer = next(pointers)
                    committed.append((write.group, pointer))
                if pointer is None and plan.truncate_from is None:
                    # The common case: entries appended, nothing deleted.
                    if plan.entries:
                        self._write_log(write.group, plan, None, "", rows)
                    continue
                if rows:  # earlier writes' rows first: this one may delete some
                    self._insert_tail(rows)
                snapshot_tag = type_tag(type(write.snapshot))
                self._write_log(write.group, plan, pointer, snapshot_tag, rows)
            if rows:
                self._insert_tail(rows)
            if self._tail_rows > self.tail_max_rows or self._tail_bytes > self.tail_max_bytes:
                self._move_tail()
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (grp, key, tag, value) VALUES (?, ?, ?, ?)",
                [
                    (_sql_group(g), _KEY_HARD_STATE, type_tag(type(hs)), self._encoder.encode(hs))
                    for g, hs in hard_states.items()
                ],
            )
            self._commit()
        except BaseException:
            self._rollback()
            raise
        self._deferred.clear()
        self._bounds.update(bounds)
        for group, pointer in committed:
            drop_old_snapshot_files(self.snapshot_directory, pointer.file_name, group)

    def recover_group(
        self,
        group: int,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
    ) -> Recovered:
        """Everything persisted for ``group``, decoded with its protocol's
        types. Stray snapshot files were removed when the storage was opened."""
        checked = self._check_known(group)
        first, last = self._bounds_of(checked)
        return Recovered(
            hard_state=self.hard_state_of(checked, hard_state_type),
            snapshot=self.snapshot_of(checked, snapshot_type),
            entries=self.entries_of(checked, first, last + 1),
        )

    def compact_group(self, group: int, through: int) -> None:
        """Drop ``group``'s entries with index <= ``through`` (one transaction)."""
        checked = self._check_known(group)
        first, last = self._bounds_of(checked)
        if through < first:
            return
        through = min(through, last)
        grp = _sql_group(checked)
        self._begin()
        try:
            self._db.execute("DELETE FROM entries WHERE grp = ? AND idx <= ?", (grp, through))
            self._drop_tail_below(checked, through + 1)
            self._set_first_index(grp, through + 1)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        self._bounds[checked] = (through + 1, last)

    def first_index_of(self, group: int) -> int:
        return self._bounds_of(self._check_known(group))[0]

    def last_index_of(self, group: int) -> int:
        return self._bounds_of(self._check_known(group))[1]

    def entries_of(self, group: int, lo: int, hi: int) -> list[Entry]:
        checked = self._check_known(group)
        tail = self._tail.get(checked)
        main_hi = hi if tail is None else min(hi, tail.entries[0].index)
        out: list[Entry] = []
        if lo < main_hi:
            rows = self._db.execute(
                "SELECT term, idx, kind, data FROM entries WHERE grp = ? AND idx >= ? AND idx < ? "
                "ORDER BY idx",
                (_sql_group(checked), lo, main_hi),
            ).fetchall()
            out = [Entry(term, idx, kind, bytes(data)) for term, idx, kind, data in rows]
        if tail is not None and hi > main_hi:
            first = tail.entries[0].index
            out.extend(tail.entries[max(lo, first) - first : hi - first])
        return out

    def hard_state_of(self, group: int, hard_state_type: type[Any] | None = None) -> Any:
        checked = self._check_known(group)
        deferred = self._deferred.get(checked)
        if deferred is not None:
            return deferred
        found, raw, decode_as = self._load_meta(checked, _KEY_HARD_STATE, hard_state_type)
        return self._decoder(decode_as).decode(raw) if found else None

    def snapshot_of(self, group: int, snapshot_type: type[Any] | None = None) -> Any:
        checked = self._check_known(group)
        found, raw, decode_as = self._load_meta(checked, _KEY_SNAPSHOT, snapshot_type)  # checks the tag
        if not found:
            return None
        pointer = self._pointer_decoder.decode(raw)
        data = (self.snapshot_directory / pointer.file_name).read_bytes()
        return self._decoder(decode_as).decode(data)

    def group(
        self,
        group: int,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
    ) -> GroupStorage:
        """One group's ``NodeStorage``, decoding with its protocol's types."""
        return GroupStorage(self, self._check_known(group), hard_state_type, snapshot_type)

    # ------------------------------------------------------------ group 0
    def first_index(self) -> int:
        return self.first_index_of(0)

    def last_index(self) -> int:
        return self.last_index_of(0)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.entries_of(0, lo, hi)

    def store(self, entries: list[Entry]) -> None:
        self.persist(None, entries, None)

    def compact(self, through: int) -> None:
        self.compact_group(0, through)

    def save_state(self, state: Any) -> None:
        self.persist(state, [], None)

    def load_state(self) -> Any:
        return self.hard_state_of(0, self.hard_state_type)

    def save_snapshot(self, snapshot: Any) -> None:
        self.persist(None, [], snapshot)

    def load_snapshot(self) -> Any:
        return self.snapshot_of(0, self.snapshot_type)

    def persist(
        self, hard_state: Any, entries: list[Entry], snapshot: Any, *, durable: bool = True
    ) -> None:
        """Durably save one ``Ready``'s state of group 0 in one transaction
        (one fsync); ``durable=False`` (a hard state alone) defers it."""
        self.persist_many([GroupWrite(0, hard_state, entries, snapshot)], durable=durable)

    def recover(self) -> Recovered:
        """Everything persisted for group 0."""
        return self.recover_group(0, self.hard_state_type, self.snapshot_type)
