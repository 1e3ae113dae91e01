"""SqliteStorage keeps the NodeStorage contract on disk: the same answers as
MemoryStorage for any sequence of writes, one transaction per persist, atomic
snapshots, and a prefix of acknowledged writes after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.storage.storage_types import HardState, OtherState, Snapshot, entries

from quorate.errors import LocalProtocolError
from quorate.storage import MemoryStorage
from quorate.storage.sqlite import SNAPSHOT_DIR_NAME, SqliteStorage

WRITER = Path(__file__).with_name("sqlite_crash_writer.py")
CRASH_BATCH_ENTRIES = 7
CRASH_MIN_ACKNOWLEDGED_PERSISTS = 30
CRASH_WAIT_S = 60.0


def open_storage(path: Path) -> SqliteStorage:
    return SqliteStorage(path, hard_state_type=HardState, snapshot_type=Snapshot)


def test_empty_storage_recovers_nothing(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        r = s.recover()
        assert (r.hard_state, r.snapshot, r.entries) == (None, None, [])
        assert (s.first_index(), s.last_index()) == (1, 0)


def test_persist_then_reopen_returns_everything(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(HardState(2, 1, 3), entries(1, 5), None)
    with open_storage(tmp_path) as s:
        r = s.recover()
        assert r.hard_state == HardState(2, 1, 3)
        assert r.entries == entries(1, 5)
        assert s.entries(2, 4) == entries(2, 3)
        assert (s.first_index(), s.last_index()) == (1, 5)


def test_one_persist_is_one_transaction(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(HardState(1, None, 0), entries(1, 500), Snapshot(0, 0, b""))
        assert s.transactions == 1


def test_conflicting_suffix_is_replaced(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 6, term=1), None)
        s.persist(None, entries(4, 5, term=2), None)
        assert s.recover().entries == entries(1, 3, 1) + entries(4, 5, 2)
        assert s.last_index() == 5


def test_gap_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 2), None)
        with pytest.raises(LocalProtocolError, match="gap"):
            s.persist(HardState(9, 9, 9), entries(5, 6), None)
        assert s.recover().hard_state is None
        assert s.last_index() == 2


def test_snapshot_compacts_the_log_and_survives_reopen(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 10), None)
        s.persist(None, [], Snapshot(6, 1, b"image"))
        assert (s.first_index(), s.last_index()) == (7, 10)
    with open_storage(tmp_path) as s:
        r = s.recover()
        assert r.snapshot == Snapshot(6, 1, b"image")
        assert r.entries == entries(7, 10)
        assert len(list((tmp_path / SNAPSHOT_DIR_NAME).iterdir())) == 1


def test_snapshot_past_the_log_empties_it(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 3), None)
        s.persist(None, entries(20, 21, term=4), Snapshot(19, 4, b"leader's"))
        assert s.recover().entries == entries(20, 21, term=4)
        assert s.first_index() == 20


def test_newer_snapshot_replaces_the_old_file(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 10), Snapshot(3, 1, b"a"))
        s.persist(None, [], Snapshot(8, 1, b"b"))
        files = sorted(p.name for p in (tmp_path / SNAPSHOT_DIR_NAME).iterdir())
        assert len(files) == 1 and "00000000000000000008" in files[0]
        assert s.load_snapshot() == Snapshot(8, 1, b"b")


def test_torn_snapshot_temp_file_and_orphan_are_ignored_and_cleaned(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 4), Snapshot(2, 1, b"good"))
    snapdir = tmp_path / SNAPSHOT_DIR_NAME
    # A crash while writing the next snapshot's temp file...
    (snapdir / "snap-00000000000000000004-00000000000000000001.msgpack.tmp").write_bytes(
        b"\x93\x04"
    )
    # ...or after its rename but before the transaction pointed at it.
    (snapdir / "snap-00000000000000000003-00000000000000000001.msgpack").write_bytes(b"\x93")
    with open_storage(tmp_path) as s:
        r = s.recover()
        assert r.snapshot == Snapshot(2, 1, b"good")
        assert r.entries == entries(3, 4)
    assert [p.name for p in snapdir.iterdir()] == [
        "snap-00000000000000000002-00000000000000000001.msgpack"
    ]


def test_opening_with_another_protocols_type_fails_loudly(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.save_state(HardState(1, None, 0))
    with (
        SqliteStorage(tmp_path, hard_state_type=OtherState) as s,
        pytest.raises(LocalProtocolError, match="type"),
    ):
        s.load_state()


def test_without_types_values_decode_as_plain_msgpack(tmp_path: Path) -> None:
    with SqliteStorage(tmp_path) as s:
        s.save_state(HardState(3, 2, 1))
        assert s.load_state() == [3, 2, 1]


def test_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


Op = tuple[str, int, int, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3), st.integers(1, 5), st.integers(1, 4)),
        st.tuples(st.just("snapshot"), st.integers(0, 12), st.just(0), st.just(0)),
        st.tuples(st.just("compact"), st.integers(0, 12), st.just(0), st.just(0)),
        st.tuples(st.just("state"), st.integers(0, 9), st.just(0), st.just(0)),
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops)
def test_matches_memory_storage(tmp_path_factory: pytest.TempPathFactory, script: list[Op]) -> None:
    """Model-based: any sequence of valid writes leaves both stores equal,
    and reopening the SQLite store changes nothing."""
    path = tmp_path_factory.mktemp("model")
    memory = MemoryStorage()
    disk = open_storage(path)
    try:
        for kind, a, b, c in script:
            if kind == "append":
                # back up by ``a`` entries (a conflicting suffix), append ``b`` in term ``c``
                lo = max(memory.first_index(), memory.last_index() + 1 - a)
                batch = entries(lo, lo + b - 1, term=c)
                memory.persist(None, batch, None)
                disk.persist(None, batch, None)
            elif kind == "snapshot":
                snap = Snapshot(a, 1, str(a).encode())
                memory.persist(None, [], snap)
                disk.persist(None, [], snap)
            elif kind == "compact":
                through = min(a, memory.last_index())
                memory.compact(through)
                disk.compact(through)
            else:
                memory.persist(HardState(a, None, 0), [], None)
                disk.persist(HardState(a, None, 0), [], None)
            assert (disk.first_index(), disk.last_index()) == (
                memory.first_index(),
                memory.last_index(),
            )
        disk.close()
        disk = open_storage(path)
        expected, actual = memory.recover(), disk.recover()
        assert actual.entries == expected.entries
        assert actual.hard_state == expected.hard_state
        assert actual.snapshot == expected.snapshot
        assert disk.last_index() == memory.last_index()
    finally:
        disk.close()


def test_sigkill_mid_stream_recovers_every_acknowledged_entry(tmp_path: Path) -> None:
    """A writer is killed while persisting batches; after recovery the log is
    a contiguous prefix from 1 that contains every entry whose persist() had
    returned (the writer printed it), with the right contents."""
    sys.path.insert(0, str(WRITER.parent))
    try:
        from sqlite_crash_writer import payload
    finally:
        sys.path.remove(str(WRITER.parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(WRITER), str(tmp_path), str(CRASH_BATCH_ENTRIES)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    acknowledged = 0
    try:
        assert child.stdout is not None
        for _ in range(CRASH_MIN_ACKNOWLEDGED_PERSISTS):
            line = child.stdout.readline()
            assert line, "writer exited early"
            acknowledged = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=CRASH_WAIT_S)
    # Lines printed after the last one read may also have been acknowledged.
    assert child.stdout is not None
    for line in child.stdout.read().split():
        acknowledged = int(line)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with SqliteStorage(tmp_path) as s:
        recovered = s.recover()
    indices = [e.index for e in recovered.entries]
    assert indices == list(range(1, len(indices) + 1))
    assert len(indices) >= acknowledged
    assert all(e.data == payload(e.index) for e in recovered.entries)
    # The hard state is from the same transaction as the last batch.
    assert recovered.hard_state[2] == len(indices)
    assert len(indices) % CRASH_BATCH_ENTRIES == 0
