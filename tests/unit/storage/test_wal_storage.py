"""WalStorage keeps the NodeStorage contract in a segmented write-ahead log:
the same answers as MemoryStorage for any sequence of writes (across reopen
and segment rotation), one fdatasync per persist, a torn tail cut off, and a
prefix of acknowledged writes after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.storage.storage_types import HardState, OtherState, Snapshot, entries

from quorate.core.ready import Entry
from quorate.errors import LocalProtocolError
from quorate.storage import MemoryStorage
from quorate.storage import wal as wal_module
from quorate.storage.wal import SNAPSHOT_DIR_NAME, WAL_DIR_NAME, WalStorage

SMALL_SEGMENT_BYTES = 4096
CRASH_BATCH_ENTRIES = 7
CRASH_MIN_ACKNOWLEDGED_PERSISTS = 30
CRASH_WAIT_S = 60.0


def open_storage(path: Path, segment_bytes: int = SMALL_SEGMENT_BYTES) -> WalStorage:
    return WalStorage(
        path, hard_state_type=HardState, snapshot_type=Snapshot, segment_bytes=segment_bytes
    )


def segments(path: Path) -> list[Path]:
    return sorted((path / WAL_DIR_NAME).iterdir())


def test_empty_storage_recovers_nothing(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        r = s.recover()
        assert (r.hard_state, r.snapshot, r.entries) == (None, None, [])
        assert (s.first_index(), s.last_index()) == (1, 0)
    with open_storage(tmp_path) as s:
        assert (s.first_index(), s.last_index()) == (1, 0)


def test_persist_then_reopen_returns_everything(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(HardState(2, 1, 3), entries(1, 5), None)
        assert s.entries(2, 4) == entries(2, 3)
    with open_storage(tmp_path) as s:
        r = s.recover()
        assert r.hard_state == HardState(2, 1, 3)
        assert r.entries == entries(1, 5)
        assert s.entries(2, 4) == entries(2, 3)
        assert s.entries(0, 99) == entries(1, 5)
        assert s.term(4) == 1 and s.term(6) is None
        assert (s.first_index(), s.last_index()) == (1, 5)


def test_segment_is_preallocated(tmp_path: Path) -> None:
    with open_storage(tmp_path, segment_bytes=1 << 20) as s:
        s.persist(None, entries(1, 1), None)
        [segment] = segments(tmp_path)
        assert segment.stat().st_size == 1 << 20


def test_one_persist_is_one_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    with open_storage(tmp_path, segment_bytes=1 << 20) as s:
        s.persist(HardState(1, None, 0), entries(1, 2), None)  # creates the segment
        monkeypatch.setattr(wal_module.os, "fdatasync", counting)
        s.persist(HardState(1, 1, 0), entries(3, 500), None)
        assert len(calls) == 1
        assert s.transactions == 2


def test_conflicting_suffix_is_replaced_also_after_reopen(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 6, term=1), None)
        s.persist(None, entries(4, 5, term=2), None)
        assert s.recover().entries == entries(1, 3, 1) + entries(4, 5, 2)
        assert s.last_index() == 5
    with open_storage(tmp_path) as s:
        assert s.recover().entries == entries(1, 3, 1) + entries(4, 5, 2)
        s.persist(None, entries(6, 6, term=2), None)
    with open_storage(tmp_path) as s:
        assert s.recover().entries == entries(1, 3, 1) + entries(4, 6, 2)


def test_gap_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 2), None)
        with pytest.raises(LocalProtocolError, match="gap"):
            s.persist(HardState(9, 9, 9), entries(5, 6), None)
        assert s.recover().hard_state is None
        assert s.last_index() == 2
    with open_storage(tmp_path) as s:
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
        assert (s.first_index(), s.last_index()) == (7, 10)
        assert len(list((tmp_path / SNAPSHOT_DIR_NAME).iterdir())) == 1


def test_snapshot_past_the_log_empties_it(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 3), None)
        s.persist(None, entries(20, 21, term=4), Snapshot(19, 4, b"leader's"))
        assert s.recover().entries == entries(20, 21, term=4)
        assert s.first_index() == 20
    with open_storage(tmp_path) as s:
        assert s.recover().entries == entries(20, 21, term=4)
        assert s.first_index() == 20


def test_torn_snapshot_temp_file_and_orphan_are_ignored_and_cleaned(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 4), Snapshot(2, 1, b"good"))
    snapdir = tmp_path / SNAPSHOT_DIR_NAME
    (snapdir / "snap-00000000000000000004-00000000000000000001.msgpack.tmp").write_bytes(b"\x93")
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
        WalStorage(tmp_path, hard_state_type=OtherState, segment_bytes=SMALL_SEGMENT_BYTES) as s,
        pytest.raises(LocalProtocolError, match="type"),
    ):
        s.load_state()


def test_without_types_values_decode_as_plain_msgpack(tmp_path: Path) -> None:
    with WalStorage(tmp_path, segment_bytes=SMALL_SEGMENT_BYTES) as s:
        s.save_state(HardState(3, 2, 1))
        assert s.load_state() == [3, 2, 1]


def test_deferred_hard_state_rides_on_the_next_group_or_close(tmp_path: Path) -> None:
    writer = open_storage(tmp_path)
    writer.persist(HardState(2, 1, 0), entries(1, 1), None)
    writer.persist(HardState(2, 1, 1), [], None, durable=False)
    assert writer.load_state() == HardState(2, 1, 1)
    assert writer.transactions == 1
    with open_storage(tmp_path) as reader:  # what a crash now would find
        assert reader.load_state() == HardState(2, 1, 0)
    writer.persist(None, entries(2, 2), None)
    with open_storage(tmp_path) as reader:
        assert reader.load_state() == HardState(2, 1, 1)
    writer.persist(HardState(2, 1, 2), [], None, durable=False)
    writer.close()
    with open_storage(tmp_path) as reader:
        assert reader.load_state() == HardState(2, 1, 2)
        with pytest.raises(LocalProtocolError):
            reader.persist(None, entries(3, 3), None, durable=False)


def test_log_rotates_over_segments_and_snapshot_drops_old_ones(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        for i in range(1, 201):
            s.persist(HardState(1, 1, i - 1), entries(i, i), None)
        before = segments(tmp_path)
        assert len(before) > 3
    with open_storage(tmp_path) as s:
        assert s.recover().entries == entries(1, 200)
        assert s.load_state() == HardState(1, 1, 199)
        s.persist(None, [], Snapshot(195, 1, b"image"))
        # Only segments still holding entry 196 onwards (and the active one) remain.
        after = segments(tmp_path)
        assert len(after) <= 2 and not set(after) & set(before[:-2])
    with open_storage(tmp_path) as s:
        r = s.recover()
        assert r.entries == entries(196, 200)
        assert r.snapshot == Snapshot(195, 1, b"image")
        # The header of the surviving segment restated the hard state.
        assert r.hard_state == HardState(1, 1, 199)


def test_compact_drops_old_segments_and_survives_reopen(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        for i in range(1, 301):
            s.persist(None, entries(i, i), None)
        before = len(segments(tmp_path))
        assert before > 2
        s.compact(290)
        assert len(segments(tmp_path)) < before
        assert (s.first_index(), s.last_index()) == (291, 300)
    with open_storage(tmp_path) as s:
        assert s.recover().entries == entries(291, 300)
        assert s.first_index() == 291


def test_a_group_larger_than_a_segment_gets_its_own(tmp_path: Path) -> None:
    big = [Entry(1, i, 0, bytes(1000)) for i in range(1, 11)]
    with open_storage(tmp_path) as s:
        s.persist(HardState(1, None, 0), big, None)
        s.persist(None, entries(11, 12), None)
    with open_storage(tmp_path) as s:
        assert s.recover().entries == big + entries(11, 12)


def _last_segment(path: Path) -> Path:
    return segments(path)[-1]


def _written_end(segment: Path) -> int:
    data = segment.read_bytes()
    return len(data.rstrip(b"\0"))


def test_torn_tail_is_truncated_and_never_read_again(tmp_path: Path) -> None:
    with open_storage(tmp_path, segment_bytes=1 << 16) as s:
        s.persist(HardState(1, 1, 0), entries(1, 3), None)
        s.persist(HardState(1, 1, 3), entries(4, 6), None)
    segment = _last_segment(tmp_path)
    end = _written_end(segment)
    with open(segment, "r+b") as f:
        # The second group's last record (the hard state) lost its final bytes,
        # and a page of an unfinished later write landed further on.
        f.seek(end - 3)
        f.write(b"\0\0\0")
        f.seek(end + 500)
        f.write(b"\x07" * 64)
    with open_storage(tmp_path, segment_bytes=1 << 16) as s:
        r = s.recover()
        # The whole torn group is gone: its entries and its hard state.
        assert r.entries == entries(1, 3)
        assert r.hard_state == HardState(1, 1, 0)
        s.persist(None, entries(4, 4, term=2), None)
    assert b"\x07" * 64 not in segment.read_bytes()
    with open_storage(tmp_path, segment_bytes=1 << 16) as s:
        assert s.recover().entries == entries(1, 3) + entries(4, 4, term=2)


def test_garbage_after_the_last_group_is_ignored(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 2), None)
    segment = _last_segment(tmp_path)
    end = _written_end(segment)
    with open(segment, "r+b") as f:
        f.seek(end)
        f.write(b"\xff" * 5)  # a short header
    with open_storage(tmp_path) as s:
        assert s.recover().entries == entries(1, 2)


def test_damage_before_the_last_segment_fails_loudly(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        for i in range(1, 301):
            s.persist(None, entries(i, i), None)
    assert len(segments(tmp_path)) > 1
    first = segments(tmp_path)[0]
    with open(first, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(LocalProtocolError, match=r"0001\.wal: .* at offset"):
        open_storage(tmp_path)


def test_an_empty_last_segment_from_a_crashed_rotation_is_removed(tmp_path: Path) -> None:
    with open_storage(tmp_path) as s:
        s.persist(None, entries(1, 2), None)
    (tmp_path / WAL_DIR_NAME / f"{2:020d}.wal").write_bytes(bytes(SMALL_SEGMENT_BYTES))
    with open_storage(tmp_path) as s:
        assert s.recover().entries == entries(1, 2)
        s.persist(None, entries(3, 3), None)
    with open_storage(tmp_path) as s:
        assert s.recover().entries == entries(1, 3)


Op = tuple[str, int, int, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3), st.integers(1, 5), st.integers(1, 4)),
        st.tuples(st.just("snapshot"), st.integers(0, 30), st.just(0), st.just(0)),
        st.tuples(st.just("compact"), st.integers(0, 30), st.just(0), st.just(0)),
        st.tuples(st.just("state"), st.integers(0, 9), st.just(0), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops)
def test_matches_memory_storage(tmp_path_factory: pytest.TempPathFactory, script: list[Op]) -> None:
    """Model-based: any sequence of valid writes, with reopens and tiny
    segments (so rotation and segment deletion happen), leaves both stores equal."""
    path = tmp_path_factory.mktemp("model")
    memory = MemoryStorage()
    disk = WalStorage(path, hard_state_type=HardState, snapshot_type=Snapshot, segment_bytes=4096)
    try:
        for kind, a, b, c in script:
            if kind == "append":
                lo = max(memory.first_index(), memory.last_index() + 1 - a)
                batch = [Entry(c, i, 0, bytes(150)) for i in range(lo, lo + b)]
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
            elif kind == "state":
                memory.persist(HardState(a, None, 0), [], None)
                disk.persist(HardState(a, None, 0), [], None)
            else:
                disk.close()
                disk = WalStorage(
                    path, hard_state_type=HardState, snapshot_type=Snapshot, segment_bytes=4096
                )
            assert (disk.first_index(), disk.last_index()) == (
                memory.first_index(),
                memory.last_index(),
            )
        disk.close()
        disk = WalStorage(
            path, hard_state_type=HardState, snapshot_type=Snapshot, segment_bytes=4096
        )
        expected, actual = memory.recover(), disk.recover()
        assert actual.entries == expected.entries
        assert actual.hard_state == expected.hard_state
        assert actual.snapshot == expected.snapshot
        assert (disk.first_index(), disk.last_index()) == (
            memory.first_index(),
            memory.last_index(),
        )
    finally:
        disk.close()


CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from quorate.core.ready import Entry
    from quorate.storage.wal import WalStorage

    directory, batch = sys.argv[1], int(sys.argv[2])
    storage = WalStorage(directory, segment_bytes=16384)
    index = storage.last_index()
    while True:
        entries = [
            Entry(1, i, 0, b"command-%d" % i * 8) for i in range(index + 1, index + 1 + batch)
        ]
        index += batch
        storage.persist([1, 1, index], entries, None)
        sys.stdout.write(f"{index}\\n")
        sys.stdout.flush()
    """
)


def test_sigkill_mid_stream_recovers_every_acknowledged_entry(tmp_path: Path) -> None:
    """A writer is killed while persisting batches (over several segments);
    after recovery the log is a contiguous prefix from 1 holding every entry
    whose persist() had returned, with the right contents, and the hard state
    of the same group as the last batch."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(tmp_path), str(CRASH_BATCH_ENTRIES)],
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
    assert child.stdout is not None
    for line in child.stdout.read().split():
        acknowledged = int(line)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with WalStorage(tmp_path, segment_bytes=SMALL_SEGMENT_BYTES) as s:
        recovered = s.recover()
    indices = [e.index for e in recovered.entries]
    assert indices == list(range(1, len(indices) + 1))
    assert len(indices) >= acknowledged
    assert all(e.data == b"command-%d" % e.index * 8 for e in recovered.entries)
    assert recovered.hard_state[2] == len(indices)
    assert len(indices) % CRASH_BATCH_ENTRIES == 0


def test_a_node_refuses_a_data_directory_of_the_other_engine(tmp_path: Path) -> None:
    from quorate.errors import ConfigError
    from quorate.runtime.aio.node import open_disk_storage
    from quorate.storage.sqlite import SqliteStorage

    with SqliteStorage(tmp_path / "a") as s:
        s.persist(HardState(1, None, 0), [], None)
    with pytest.raises(ConfigError, match="other storage engine"):
        open_disk_storage("wal", tmp_path / "a", hard_state_type=HardState, snapshot_type=None)
    with open_storage(tmp_path / "b") as w:
        w.persist(HardState(1, None, 0), [], None)
    with pytest.raises(ConfigError, match="other storage engine"):
        open_disk_storage("sqlite", tmp_path / "b", hard_state_type=HardState, snapshot_type=None)
    opened = open_disk_storage("wal", tmp_path / "b", hard_state_type=HardState, snapshot_type=None)
    with opened:
        assert isinstance(opened, WalStorage)
        assert opened.load_state() == HardState(1, None, 0)


@pytest.mark.timeout(60)
def test_raft_nodes_on_the_wal_commit_and_restart_from_it(tmp_path: Path) -> None:
    """Three real Raft nodes on loopback keep their log in WalStorage: a
    client's puts commit, and a node restarted from its directory has them."""
    import asyncio
    import socket

    from quorate.ids import NodeId
    from quorate.runtime.aio import AioNode, ClientConnection, protocol_binding
    from quorate.state.kv import Put, encode_op
    from quorate.state.service import CLIENT_MESSAGE_TYPES, STATUS_OK, ClientReply, ClientRequest

    wait_limit_s = 20.0
    timing = {"election_timeout_s": 0.3, "heartbeat_interval_s": 0.03}
    sockets = [socket.socket() for _ in range(3)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    addresses = {NodeId(i + 1): ("127.0.0.1", s.getsockname()[1]) for i, s in enumerate(sockets)}
    for s in sockets:
        s.close()

    def node(i: int) -> AioNode:
        return AioNode(
            NodeId(i),
            addresses,
            tmp_path / f"n{i}",
            listen=addresses[NodeId(i)],
            protocol=protocol_binding("raft"),
            protocol_options=timing,
            insecure=True,
            storage_kind="wal",
        )

    async def until(condition: object) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_limit_s
        while not condition():  # type: ignore[operator]
            assert loop.time() < deadline, "gave up waiting"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        nodes = [node(i) for i in (1, 2, 3)]
        try:
            for n in nodes:
                await n.start()
            await until(lambda: any(n.core.is_leader for n in nodes))
            leader = next(n for n in nodes if n.core.is_leader)
            assert leader.transport is not None
            client = await ClientConnection.open(
                leader.transport.listen_address,
                7,
                CLIENT_MESSAGE_TYPES,
                node=leader.id,
                insecure=True,
            )
            for seq in range(1, 4):
                client.send(ClientRequest(7, seq, encode_op(Put(f"k{seq}", "v"))))
                reply = await asyncio.wait_for(client.receive(), wait_limit_s)
                assert isinstance(reply, ClientReply) and reply.status == STATUS_OK
            await client.close()
            await until(lambda: all(n.storage and n.storage.last_index() >= 4 for n in nodes))
        finally:
            for n in nodes:
                await n.close()
        restarted = node(2)
        try:
            await restarted.start()
            assert isinstance(restarted.storage, WalStorage)
            assert restarted.storage.last_index() >= 4  # the leader's no-op + three puts
        finally:
            await restarted.close()

    asyncio.run(scenario())
