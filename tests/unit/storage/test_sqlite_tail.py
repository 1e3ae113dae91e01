"""SQLite's tail table: a turn's new entries are appended in write order and
moved into the clustered entries table in bulk past a bound; reads,
truncation of a conflicting suffix, compaction, snapshots and dropped groups
see one log across both tables, a crash mid-turn keeps the last committed
turn, and a database of the previous layout (no tail) is migrated on open."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.storage.storage_types import HardState, Snapshot, entries

from quorate.core.ready import Entry
from quorate.errors import ConfigError
from quorate.storage import GroupWrite, SqliteStorage
from quorate.storage.layout import DB_FILE_NAME
from quorate.storage.sqlite import SCHEMA_VERSION

TAIL_ROWS = 4
"""A tiny bound: writing more than this moves the tail into ``entries``."""


def open_small(path: Path) -> SqliteStorage:
    return SqliteStorage(
        path, hard_state_type=HardState, snapshot_type=Snapshot, tail_max_rows=TAIL_ROWS
    )


def rows(store: SqliteStorage, table: str, group: int = 1) -> list[int]:
    return [
        idx
        for (idx,) in store._db.execute(
            f"SELECT idx FROM {table} WHERE grp = ? ORDER BY idx", (group,)
        )
    ]


def split_log(store: SqliteStorage) -> None:
    """Group 1 holds 1..10 in ``entries`` and 11..13 in ``tail``."""
    store.create_groups([(1, "raft", b""), (2, "raft", b"")])
    store.persist_many([GroupWrite(1, HardState(1, 1, 0), entries(1, 10))])
    store.persist_many([GroupWrite(1, None, entries(11, 13))])
    assert rows(store, "entries") == list(range(1, 11))
    assert rows(store, "tail") == [11, 12, 13]


def test_a_turn_of_many_groups_appends_to_the_tail_only(tmp_path: Path) -> None:
    with SqliteStorage(tmp_path) as s:
        s.create_groups([(g, "raft", b"") for g in range(1, 11)])
        s.persist_many(GroupWrite(g, HardState(1, 1, 0), entries(1, 1)) for g in range(1, 11))
        assert s._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0
        seqs = [seq for (seq,) in s._db.execute("SELECT seq FROM tail ORDER BY seq")]
        assert seqs == list(range(1, 11))
        assert s.tail_moves == 0


def test_past_the_bound_the_tail_moves_into_entries(tmp_path: Path) -> None:
    with open_small(tmp_path) as s:
        s.create_groups([(1, "raft", b""), (2, "raft", b"")])
        s.persist_many([GroupWrite(g, None, entries(1, 2)) for g in (1, 2)])
        assert s.tail_moves == 0
        s.persist_many([GroupWrite(g, None, entries(3, 3)) for g in (1, 2)])
        assert s.tail_moves == 1
        assert s._db.execute("SELECT COUNT(*) FROM tail").fetchone()[0] == 0
        for g in (1, 2):
            assert rows(s, "entries", g) == [1, 2, 3]
            assert s.entries_of(g, 1, 4) == entries(1, 3)


def test_reads_span_both_tables(tmp_path: Path) -> None:
    with open_small(tmp_path) as s:
        split_log(s)
        assert (s.first_index_of(1), s.last_index_of(1)) == (1, 13)
        assert s.entries_of(1, 8, 13) == entries(8, 12)
        assert s.entries_of(1, 1, 14) == entries(1, 13)
        assert s.entries_of(1, 12, 20) == entries(12, 13)
        assert s.entries_of(1, 3, 5) == entries(3, 4)
    with open_small(tmp_path) as s:  # the tail is read back at open
        assert (s.first_index_of(1), s.last_index_of(1)) == (1, 13)
        assert s.recover_group(1, HardState).entries == entries(1, 13)


@pytest.mark.parametrize("start", [12, 11, 8])
def test_a_conflicting_suffix_is_replaced_in_either_table(tmp_path: Path, start: int) -> None:
    with open_small(tmp_path) as s:
        split_log(s)
        s.persist_many([GroupWrite(1, HardState(2, 1, 0), entries(start, start + 1, term=2))])
        expected = entries(1, start - 1) + entries(start, start + 1, term=2)
        assert s.entries_of(1, 1, 20) == expected
        assert s.last_index_of(1) == start + 1
    with open_small(tmp_path) as s:
        assert s.recover_group(1, HardState).entries == expected
        assert s.last_index_of(1) == start + 1


def test_the_same_group_twice_in_a_turn_truncating_its_own_rows(tmp_path: Path) -> None:
    with open_small(tmp_path) as s:
        split_log(s)
        s.persist_many(
            [
                GroupWrite(1, None, entries(14, 15)),
                GroupWrite(2, None, entries(1, 1)),
                GroupWrite(1, None, entries(15, 15, term=3)),
            ]
        )
        expected = entries(1, 14) + entries(15, 15, term=3)
        assert s.entries_of(1, 1, 20) == expected
    with open_small(tmp_path) as s:
        assert s.recover_group(1, HardState).entries == expected
        assert s.entries_of(2, 1, 2) == entries(1, 1)


@pytest.mark.parametrize("through", [5, 10, 12, 13])
def test_compaction_drops_from_both_tables(tmp_path: Path, through: int) -> None:
    with open_small(tmp_path) as s:
        split_log(s)
        s.compact_group(1, through)
        assert s.entries_of(1, 1, 20) == entries(through + 1, 13)
        assert (s.first_index_of(1), s.last_index_of(1)) == (through + 1, 13)
    with open_small(tmp_path) as s:
        assert (s.first_index_of(1), s.last_index_of(1)) == (through + 1, 13)
        assert s.recover_group(1, HardState).entries == entries(through + 1, 13)


@pytest.mark.parametrize("index", [7, 12, 20])
def test_a_snapshot_drops_what_it_covers_from_both_tables(tmp_path: Path, index: int) -> None:
    with open_small(tmp_path) as s:
        split_log(s)
        s.persist_many([GroupWrite(1, None, [], Snapshot(index, 1, b"image"))])
        kept = entries(index + 1, 13)
        assert s.entries_of(1, 1, 30) == kept
    with open_small(tmp_path) as s:
        recovered = s.recover_group(1, HardState, Snapshot)
        assert recovered.entries == kept
        assert recovered.snapshot == Snapshot(index, 1, b"image")
        assert s.first_index_of(1) == index + 1
        assert s.last_index_of(1) == max(13, index)


def test_a_dropped_group_leaves_no_tail_rows(tmp_path: Path) -> None:
    with open_small(tmp_path) as s:
        split_log(s)
        s.persist_many([GroupWrite(2, None, entries(1, 2))])
        s.drop_group(1)
        assert s._db.execute("SELECT COUNT(*) FROM tail WHERE grp = 1").fetchone()[0] == 0
        assert s.entries_of(2, 1, 3) == entries(1, 2)
    with open_small(tmp_path) as s:
        assert [r.group for r in s.groups()] == [2]
        assert s.entries_of(2, 1, 3) == entries(1, 2)


def test_a_failed_turn_leaves_memory_as_the_disk(tmp_path: Path) -> None:
    with open_small(tmp_path) as s:
        split_log(s)

        def broken_move() -> None:
            raise OSError("disk full")

        s._move_tail = broken_move  # type: ignore[method-assign]
        with pytest.raises(OSError, match="disk full"):
            s.persist_many([GroupWrite(1, None, entries(12, 16, term=2))])
        assert s.entries_of(1, 1, 20) == entries(1, 13)
        assert s.last_index_of(1) == 13


CRASHING_WRITER = """
import os, sys
from tests.unit.storage.storage_types import HardState, entries
from quorate.storage import GroupWrite, SqliteStorage

s = SqliteStorage(sys.argv[1], tail_max_rows=4)
s.create_groups([(g, "raft", b"") for g in (1, 2, 3)])
for i in range(1, 4):
    s.persist_many(GroupWrite(g, HardState(1, 1, i), entries(i, i)) for g in (1, 2, 3))
s._commit = lambda: os._exit(7)  # the process dies with the turn's transaction open
s.persist_many(GroupWrite(g, HardState(1, 1, 4), entries(4, 4, term=2)) for g in (1, 2, 3))
"""


def test_a_crash_mid_turn_keeps_the_last_committed_turn(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path)], cwd=root, timeout=120, check=False
    )
    assert done.returncode == 7
    with open_small(tmp_path) as s:
        for g in (1, 2, 3):
            recovered = s.recover_group(g, HardState)
            assert recovered.entries == entries(1, 3)
            assert recovered.hard_state == HardState(1, 1, 3)
        s.persist_many([GroupWrite(1, None, entries(4, 4, term=2))])
        assert s.entries_of(1, 1, 5) == entries(1, 3) + entries(4, 4, term=2)


V1_SCHEMA = """
CREATE TABLE entries (grp INTEGER NOT NULL, idx INTEGER NOT NULL, term INTEGER NOT NULL,
                      kind INTEGER NOT NULL, data BLOB NOT NULL,
                      PRIMARY KEY (grp, idx)) WITHOUT ROWID;
CREATE TABLE meta (grp INTEGER NOT NULL, key TEXT NOT NULL, tag TEXT NOT NULL,
                   value BLOB NOT NULL, PRIMARY KEY (grp, key)) WITHOUT ROWID;
CREATE TABLE groups (grp INTEGER PRIMARY KEY, protocol TEXT NOT NULL, meta BLOB NOT NULL);
PRAGMA user_version = 1;
"""


def test_a_database_without_the_tail_is_migrated_on_open(tmp_path: Path) -> None:
    import msgspec

    db = sqlite3.connect(tmp_path / DB_FILE_NAME)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO groups VALUES (5, 'raft', x'01')")
    db.executemany(
        "INSERT INTO entries VALUES (5, ?, ?, ?, ?)",
        [(e.index, e.term, e.kind, e.data) for e in entries(1, 6)],
    )
    db.execute(
        "INSERT INTO meta VALUES (5, 'hard_state', ?, ?)",
        (f"{HardState.__module__}.HardState", msgspec.msgpack.encode(HardState(3, 2, 6))),
    )
    db.commit()
    db.close()
    with open_small(tmp_path) as s:
        assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        recovered = s.recover_group(5, HardState)
        assert recovered.entries == entries(1, 6)
        assert recovered.hard_state == HardState(3, 2, 6)
        s.persist_many([GroupWrite(5, None, entries(5, 7, term=4))])
    with open_small(tmp_path) as s:
        assert s.entries_of(5, 1, 10) == entries(1, 4) + entries(5, 7, term=4)


def test_the_byte_bound_moves_large_entries_too(tmp_path: Path) -> None:
    big = [Entry(1, i, 0, bytes(1000)) for i in range(1, 4)]
    with SqliteStorage(tmp_path, tail_max_bytes=2500) as s:
        s.persist_many([GroupWrite(0, None, big[:2])])
        assert s.tail_moves == 0
        s.persist_many([GroupWrite(0, None, big[2:])])
        assert s.tail_moves == 1
        assert s.entries(1, 4) == big


def test_negative_tail_bounds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tail_max_rows"):
        SqliteStorage(tmp_path, tail_max_rows=-1)
