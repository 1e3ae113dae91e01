"""The write-ahead log with many groups: a torn batch loses only itself
(never another group's earlier records), segment headers restate every
group so old segments can go, a segment lives while any group needs it,
and group 0's records keep the single-group format."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from tests.unit.storage.storage_types import HardState, OtherState, Snapshot, entries

from quorate.core.ready import Entry
from quorate.errors import LocalProtocolError
from quorate.storage import GroupRecord, GroupWrite, WalStorage
from quorate.storage.layout import WAL_DIR_NAME

SMALL_SEGMENT_BYTES = 4096
GROUPS = list(range(1, 9))


def open_wal(path: Path, segment_bytes: int = SMALL_SEGMENT_BYTES) -> WalStorage:
    return WalStorage(path, segment_bytes=segment_bytes)


def segments(path: Path) -> list[Path]:
    return sorted((path / WAL_DIR_NAME).iterdir())


def padded(index: int) -> list[Entry]:
    return [Entry(1, index, 0, bytes(150))]


def written_end(segment: Path) -> int:
    return len(segment.read_bytes().rstrip(b"\0"))


def test_a_torn_batch_of_many_groups_loses_only_itself(tmp_path: Path) -> None:
    with open_wal(tmp_path, 1 << 16) as s:
        s.create_groups([(g, "raft", b"") for g in GROUPS])
        s.persist_many(GroupWrite(g, HardState(1, 1, 0), entries(1, 3)) for g in GROUPS)
        s.persist_many(GroupWrite(g, HardState(1, 1, 3), entries(4, 6)) for g in GROUPS)
    segment = segments(tmp_path)[-1]
    end = written_end(segment)
    with open(segment, "r+b") as f:
        # The second batch's last record (group 8's hard state) lost its tail.
        f.seek(end - 3)
        f.write(b"\0\0\0")
    with open_wal(tmp_path, 1 << 16) as s:
        assert [r.group for r in s.groups()] == GROUPS
        for g in GROUPS:
            recovered = s.recover_group(g, HardState)
            # Every group lost the torn batch, none lost the batch before.
            assert recovered.entries == entries(1, 3)
            assert recovered.hard_state == HardState(1, 1, 0)
        s.persist_many([GroupWrite(3, None, entries(4, 4, term=2))])
    with open_wal(tmp_path, 1 << 16) as s:
        assert s.recover_group(3).entries == entries(1, 3) + entries(4, 4, term=2)
        assert s.recover_group(4).entries == entries(1, 3)


def test_a_torn_group_creation_is_not_a_group(tmp_path: Path) -> None:
    with open_wal(tmp_path, 1 << 16) as s:
        s.create_group(1, "raft")
        s.persist_many([GroupWrite(1, None, entries(1, 2))])
        s.create_groups([(2, "pbft", b"m"), (3, "pbft", b"m")])
    segment = segments(tmp_path)[-1]
    end = written_end(segment)
    with open(segment, "r+b") as f:
        f.seek(end - 1)
        f.write(b"\0")
    with open_wal(tmp_path, 1 << 16) as s:
        assert s.groups() == [GroupRecord(1, "raft", b"")]
        assert s.recover_group(1).entries == entries(1, 2)


def test_segment_headers_restate_every_group(tmp_path: Path) -> None:
    """Many rotations; then every group snapshots, old segments go, and the
    survivors alone still know the registry, hard states and snapshots."""
    protocols = {g: ("raft", "pbft")[g % 2] for g in GROUPS}
    with open_wal(tmp_path) as s:
        s.create_groups([(g, protocols[g], bytes([g])) for g in GROUPS])
        for i in range(1, 61):
            s.persist_many(GroupWrite(g, HardState(1, g, i), entries(i, i)) for g in GROUPS)
        before = segments(tmp_path)
        assert len(before) > 10
        s.persist_many(GroupWrite(g, None, [], Snapshot(58, 1, b"image")) for g in GROUPS)
        after = segments(tmp_path)
        assert len(after) <= 2 and not set(after) & set(before[:-2])
    with open_wal(tmp_path) as s:
        assert s.groups() == [GroupRecord(g, protocols[g], bytes([g])) for g in GROUPS]
        for g in GROUPS:
            recovered = s.recover_group(g, HardState, Snapshot)
            assert recovered.entries == entries(59, 60)
            assert recovered.hard_state == HardState(1, g, 60)
            assert recovered.snapshot == Snapshot(58, 1, b"image")


def test_a_segment_lives_while_any_group_needs_it(tmp_path: Path) -> None:
    with open_wal(tmp_path) as s:
        s.create_groups([(1, "raft", b""), (2, "raft", b"")])
        s.persist_many([GroupWrite(1, None, entries(1, 1))])  # group 1 writes once
        for i in range(1, 200):
            s.persist_many([GroupWrite(2, None, padded(i))])
        assert len(segments(tmp_path)) > 5
        s.compact_group(2, 198)
        # Group 1's only entry still pins the first segment, so none can go.
        assert segments(tmp_path)[0].name.endswith("1.wal")
        assert len(segments(tmp_path)) > 5
        s.compact_group(1, 1)
        assert len(segments(tmp_path)) <= 2
    with open_wal(tmp_path) as s:
        assert s.recover_group(1).entries == []
        assert s.recover_group(2).entries == [padded(199)[0]]


def test_drop_group_frees_the_segments_only_it_kept(tmp_path: Path) -> None:
    with open_wal(tmp_path) as s:
        s.create_groups([(1, "raft", b""), (2, "raft", b"")])
        for i in range(1, 100):
            s.persist_many([GroupWrite(1, None, padded(i))])
        s.persist_many([GroupWrite(2, HardState(3, 3, 3), entries(1, 1))])
        assert len(segments(tmp_path)) > 3
        s.drop_group(1)
        assert len(segments(tmp_path)) == 1
    with open_wal(tmp_path) as s:
        assert s.groups() == [GroupRecord(2, "raft", b"")]
        assert s.recover_group(2, HardState).hard_state == HardState(3, 3, 3)
        assert s.recover_group(2).entries == entries(1, 1)


def test_group_zero_records_keep_the_single_group_format(tmp_path: Path) -> None:
    """A log written by the single-group layout (records without a group id)
    opens as group 0: the bytes below are framed by hand as that layout did."""

    def frame(kind: int, payload: bytes, more: bool) -> bytes:
        raw_type = kind | (0x80 if more else 0)
        crc = zlib.crc32(payload, zlib.crc32(struct.pack("<IB", len(payload), raw_type)))
        return struct.pack("<IIB", len(payload), crc, raw_type) + payload

    def entry(index: int) -> bytes:
        return struct.pack("<QQq", 1, index, 0) + f"e{index}t1".encode()

    tag = b"builtins.list"
    hard_state = struct.pack("<H", len(tag)) + tag + b"\x93\x01\x01\x02"
    data = (
        frame(6, struct.pack("<QQ", 1, 0), more=False)
        + frame(1, entry(1), more=True)
        + frame(1, entry(2), more=True)
        + frame(2, hard_state, more=False)
    )
    wal = tmp_path / WAL_DIR_NAME
    wal.mkdir()
    (wal / f"{1:020d}.wal").write_bytes(data + bytes(SMALL_SEGMENT_BYTES - len(data)))
    with open_wal(tmp_path) as s:
        recovered = s.recover()
        assert recovered.entries == entries(1, 2)
        assert recovered.hard_state == [1, 1, 2]
        assert s.groups() == []
        s.persist(None, entries(3, 3), None)
    # What this code writes for group 0 is that same format.
    raw = segments(tmp_path)[0].read_bytes()
    assert raw.startswith(data)
    assert raw[len(data) + 8] == 1  # an entry record, no group bit
    with open_wal(tmp_path) as s:
        assert s.recover().entries == entries(1, 3)


def test_a_record_of_a_group_never_created_fails_loudly(tmp_path: Path) -> None:
    with open_wal(tmp_path) as s:
        s.create_group(5, "raft")
        s.persist_many([GroupWrite(5, None, entries(1, 1))])
        s.persist_many([GroupWrite(5, None, entries(2, 2))])
    # Rewrite the creation record's kind to "drop": the later entries then
    # belong to a group that does not exist.
    segment = segments(tmp_path)[0]
    raw = bytearray(segment.read_bytes())
    offset = raw.index(b"raft") - 2 - 8 - 9  # name length, group id, header
    length, _, raw_type = struct.unpack_from("<IIB", raw, offset)
    assert raw_type & 0x3F == 7
    payload = bytes(raw[offset + 9 : offset + 9 + length])
    new_type = (raw_type & ~0x3F) | 8
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<IB", length, new_type)))
    struct.pack_into("<IIB", raw, offset, length, crc, new_type)
    segment.write_bytes(bytes(raw))
    with pytest.raises(LocalProtocolError, match="group 5, which was never created"):
        open_wal(tmp_path)


def test_types_are_checked_per_group_after_rotation(tmp_path: Path) -> None:
    with open_wal(tmp_path) as s:
        s.create_groups([(1, "raft", b""), (2, "view", b"")])
        for i in range(1, 80):
            s.persist_many(
                [
                    GroupWrite(1, HardState(i, None, i), entries(i, i)),
                    GroupWrite(2, OtherState(i)),
                ]
            )
        assert len(segments(tmp_path)) > 2
    with open_wal(tmp_path) as s:
        assert s.recover_group(1, HardState).hard_state == HardState(79, None, 79)
        assert s.recover_group(2, OtherState).hard_state == OtherState(79)
        with pytest.raises(LocalProtocolError, match="group 2: stored hard_state"):
            s.recover_group(2, HardState)
