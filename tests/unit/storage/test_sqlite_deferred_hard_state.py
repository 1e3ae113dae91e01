"""``persist(..., durable=False)``: a commit-index-only hard state costs no
fsync; it is written with the next durable transaction, or at close."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorate.core.ready import Entry
from quorate.errors import LocalProtocolError
from quorate.raft.messages import HardState, Snapshot
from quorate.storage.sqlite import SqliteStorage


def _open(path: Path) -> SqliteStorage:
    return SqliteStorage(path, hard_state_type=HardState, snapshot_type=Snapshot)


def test_deferred_hard_state_is_visible_but_not_written(tmp_path: Path) -> None:
    writer = _open(tmp_path)
    writer.persist(HardState(2, 1, 0), [Entry(2, 1, 0, b"a")], None)
    writer.persist(HardState(2, 1, 1), [], None, durable=False)
    assert writer.load_state() == HardState(2, 1, 1)
    assert writer.transactions == 1
    # Another connection sees only what was committed: as after a crash now.
    with _open(tmp_path) as reader:
        assert reader.load_state() == HardState(2, 1, 0)
    # The next durable transaction carries it along.
    writer.persist(None, [Entry(2, 2, 0, b"b")], None)
    with _open(tmp_path) as reader:
        assert reader.load_state() == HardState(2, 1, 1)
        assert reader.last_index() == 2
    writer.close()


def test_close_writes_the_deferred_hard_state(tmp_path: Path) -> None:
    with _open(tmp_path) as storage:
        storage.persist(HardState(1, None, 0), [], None)
        storage.persist(HardState(1, None, 7), [], None, durable=False)
    with _open(tmp_path) as storage:
        assert storage.load_state() == HardState(1, None, 7)


def test_a_newer_durable_hard_state_wins_over_the_deferred_one(tmp_path: Path) -> None:
    with _open(tmp_path) as storage:
        storage.persist(HardState(1, None, 3), [], None, durable=False)
        storage.persist(HardState(2, 2, 3), [], None)
        assert storage.load_state() == HardState(2, 2, 3)
    with _open(tmp_path) as storage:
        assert storage.load_state() == HardState(2, 2, 3)


def test_entries_cannot_be_deferred(tmp_path: Path) -> None:
    with _open(tmp_path) as storage, pytest.raises(LocalProtocolError):
        storage.persist(None, [Entry(1, 1, 0, b"a")], None, durable=False)
