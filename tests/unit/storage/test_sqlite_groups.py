"""SQLite with many groups: one database per node, u64 group ids in signed
columns, the single-group layout migrated in place, a newer layout and the
other engine's directory refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.unit.storage.storage_types import HardState, Snapshot, entries

from quorate.errors import ConfigError
from quorate.storage import GroupRecord, GroupWrite, SqliteStorage, WalStorage, open_storage
from quorate.storage.layout import DB_FILE_NAME, WAL_DIR_NAME
from quorate.storage.sqlite import SCHEMA_VERSION

SINGLE_GROUP_SCHEMA = """
CREATE TABLE entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
                      kind INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, tag TEXT NOT NULL, value BLOB NOT NULL);
"""


def test_every_group_lives_in_one_database(tmp_path: Path) -> None:
    with SqliteStorage(tmp_path) as s:
        s.create_groups([(g, "raft", b"") for g in range(1, 33)])
        s.persist_many(GroupWrite(g, HardState(1, None, 0), entries(1, 3)) for g in range(1, 33))
        count = s._db.execute(
            "SELECT COUNT(DISTINCT grp) FROM (SELECT grp FROM entries UNION ALL SELECT grp FROM tail)"
        ).fetchone()[0]
        assert count == 32
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file())[0] == DB_FILE_NAME


def test_the_largest_group_ids_fit_the_signed_columns(tmp_path: Path) -> None:
    big = [2**62, 2**63 - 2, 2**63 - 1]
    with SqliteStorage(tmp_path) as s:
        s.create_groups([(g, "raft", b"") for g in big])
        s.persist_many(GroupWrite(g, HardState(g % 1000, None, 0), entries(1, 2)) for g in big)
    with SqliteStorage(tmp_path) as s:
        assert [r.group for r in s.groups()] == big
        for g in big:
            assert s.recover_group(g, HardState).hard_state == HardState(g % 1000, None, 0)
            assert s.entries_of(g, 1, 3) == entries(1, 2)


def test_a_single_group_database_is_migrated_in_place(tmp_path: Path) -> None:
    import msgspec

    db = sqlite3.connect(tmp_path / DB_FILE_NAME)
    db.executescript(SINGLE_GROUP_SCHEMA)
    db.executemany(
        "INSERT INTO entries VALUES (?, ?, ?, ?)",
        [(e.index, e.term, e.kind, e.data) for e in entries(3, 6)],
    )
    db.execute(
        "INSERT INTO meta VALUES ('hard_state', ?, ?)",
        (f"{HardState.__module__}.HardState", msgspec.msgpack.encode(HardState(4, 2, 5))),
    )
    db.execute("INSERT INTO meta VALUES ('first_index', 'int', ?)", ((3).to_bytes(8, "big"),))
    db.commit()
    db.close()
    with SqliteStorage(tmp_path, hard_state_type=HardState, snapshot_type=Snapshot) as s:
        recovered = s.recover()
        assert recovered.entries == entries(3, 6)
        assert recovered.hard_state == HardState(4, 2, 5)
        assert (s.first_index(), s.last_index()) == (3, 6)
        assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        s.create_group(1, "raft")
        s.persist_many([GroupWrite(0, None, entries(7, 7)), GroupWrite(1, None, entries(1, 1))])
    with SqliteStorage(tmp_path, hard_state_type=HardState) as s:
        assert s.recover().entries == entries(3, 7)
        assert s.groups() == [GroupRecord(1, "raft", b"")]


def test_a_newer_layout_is_refused(tmp_path: Path) -> None:
    with SqliteStorage(tmp_path) as s:
        s.save_state(HardState(1, None, 0))
    db = sqlite3.connect(tmp_path / DB_FILE_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="newer than this quorate"):
        SqliteStorage(tmp_path)


def test_each_engine_refuses_the_other_engines_directory(tmp_path: Path) -> None:
    with SqliteStorage(tmp_path / "a") as s:
        s.save_state(HardState(1, None, 0))
    with pytest.raises(ConfigError, match=f"other storage engine \\({DB_FILE_NAME}\\)"):
        WalStorage(tmp_path / "a")
    with WalStorage(tmp_path / "b") as w:
        w.save_state(HardState(1, None, 0))
    with pytest.raises(ConfigError, match=f"other storage engine \\({WAL_DIR_NAME}\\)"):
        SqliteStorage(tmp_path / "b")
    with pytest.raises(ConfigError, match="other storage engine"):
        open_storage("sqlite", tmp_path / "b")
    with pytest.raises(ConfigError, match="storage must be one of sqlite, wal"):
        open_storage("lmdb", tmp_path / "c")
    with open_storage("wal", tmp_path / "b", hard_state_type=HardState) as opened:
        assert isinstance(opened, WalStorage)
        assert opened.load_state() == HardState(1, None, 0)
    # An empty wal/ directory (a WAL opened, nothing written) is no data yet.
    (tmp_path / "d" / WAL_DIR_NAME).mkdir(parents=True)
    with open_storage("sqlite", tmp_path / "d") as opened:
        assert isinstance(opened, SqliteStorage)
