"""Durable node storage as a write-ahead log of preallocated segment files.

Theory of operation. A node's data directory holds ``wal/`` (the log
segments) and ``snapshots/`` (snapshot files, ``quorate.storage.snapshot_files``).
It keeps the same contract as ``SqliteStorage`` (``NodeStorage`` with the log,
the hard state and the snapshot pointer) with less work per write: a
``persist`` appends one group of records to the active segment with a single
``pwrite`` and makes it durable with a single ``fdatasync`` (group commit),
the layout etcd's WAL uses, and the batching the Raft thesis recommends
(Ongaro, §10.2.2: many entries, one disk write).

Segments. ``wal/<seq>.wal`` files are created at ``segment_bytes`` with
``posix_fallocate`` (``ftruncate`` where that is unsupported), so an append
never changes the file's size and ``fdatasync`` has no size change to journal
(on ext4 the first write into a preallocated block still marks it written,
a smaller metadata update). A
group that does not fit starts the next segment. Every segment opens with a
*header* group restating what older segments established (the log's bounds,
the hard state, the snapshot pointer), so old segments can be deleted whole
once a snapshot or ``compact`` leaves no live entry in them.

Records are ``[length u32][crc32 u32][type u8][payload]`` (little-endian;
the CRC is zlib's CRC-32 over length, type and payload). Types: an entry
(term, index, kind, data), the hard state, a snapshot pointer, "drop from
index N" (a conflicting suffix), "compact through N", and the header's
bounds. The high bit of the type marks "another record of this group
follows": recovery applies a group only when its last record is intact, so a
``persist`` is all-or-nothing.

Recovery scans the segments in order. A zero header ends a segment (the
preallocated space not yet written). In the last segment, a record that is
short, fails its CRC or ends a group early is the torn tail of a write that
was never acknowledged: the log is cut at the start of that group, and the
segment is truncated there and preallocated again, so stale bytes beyond the
cut can never be read as records later. Damage anywhere else means the disk
lost acknowledged data, and opening fails loudly.

Invariants: live entries are contiguous from ``first_index`` to
``last_index`` and each is found by an in-memory index (term, segment,
offset); ``first_index == snapshot.index + 1`` once a snapshot compacted the
log; recovery after a crash returns a prefix of what was persisted that
contains every ``persist`` that returned.

``persist(..., durable=False)`` defers a commit-index-only hard state to the
next durable group (or ``close``), exactly as ``SqliteStorage`` does.

Not thread-safe: a runtime may call ``persist`` from one worker thread while
its event loop does other work, provided calls never overlap.
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
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
    fsync_directory,
    remove_stray_snapshot_files,
    write_snapshot_file,
)

__all__ = ["DEFAULT_SEGMENT_BYTES", "SNAPSHOT_DIR_NAME", "WAL_DIR_NAME", "WalStorage"]

WAL_DIR_NAME = "wal"
SEGMENT_SUFFIX = ".wal"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
MIN_SEGMENT_BYTES = 4096

_HEADER = struct.Struct("<IIB")  # length, crc32, type
_CRC_PREFIX = struct.Struct("<IB")  # what the CRC covers before the payload
_ENTRY_META = struct.Struct("<QQq")  # term, index, kind; the data follows
_INDEX = struct.Struct("<Q")
_BOUNDS = struct.Struct("<QQ")  # first_index, last_index
_TAG_LENGTH = struct.Struct("<H")

_MORE_IN_GROUP = 0x80
_TYPE_MASK = 0x7F
_ENTRY = 1
_HARD_STATE = 2
_SNAPSHOT = 3
_TRUNCATE = 4  # drop entries with index >= N
_COMPACT = 5  # drop entries with index <= N
_BOUNDS_TYPE = 6  # a segment header: the log's (first, last) when it began
_KNOWN_TYPES = frozenset({_ENTRY, _HARD_STATE, _SNAPSHOT, _TRUNCATE, _COMPACT, _BOUNDS_TYPE})


def _type_tag(value_type: type[Any] | None, value: Any) -> str:
    t = value_type if value_type is not None else type(value)
    return f"{t.__module__}.{t.__qualname__}"


def _frame(kind: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(_CRC_PREFIX.pack(len(payload), kind)))
    return _HEADER.pack(len(payload), crc, kind) + payload


def _tagged(tag: str, raw: bytes) -> bytes:
    encoded = tag.encode()
    return _TAG_LENGTH.pack(len(encoded)) + encoded + raw


def _untag(payload: bytes) -> tuple[str, bytes]:
    (n,) = _TAG_LENGTH.unpack_from(payload)
    start = _TAG_LENGTH.size
    return payload[start : start + n].decode(), payload[start + n :]


def _preallocate(fd: int, size_bytes: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size_bytes)
    except OSError as exc:
        # Some filesystems (tmpfs on old kernels, some network ones) refuse
        # fallocate; a sparse file of the right size still keeps the size fixed.
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(fd, size_bytes)


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    fd: int
    allocated_bytes: int
    write_offset: int


@dataclass(slots=True)
class _Location:
    """Where an entry's record lives."""

    term: int
    segment: _Segment
    offset: int
    length: int  # of the whole record, header included


class _CorruptLog(LocalProtocolError):
    """The log lost data that was acknowledged (not a torn tail)."""


class WalStorage:
    """``LogStore`` + ``StableStore`` + ``SnapshotStore`` + ``NodeStorage`` in
    a segmented write-ahead log.

    ``path`` is the node's data directory (created if missing);
    ``hard_state_type`` and ``snapshot_type`` are the protocol's msgspec
    Structs (``None`` decodes plain msgpack values); ``segment_bytes`` is the
    size each segment file is preallocated to.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise LocalProtocolError(f"segment_bytes must be >= {MIN_SEGMENT_BYTES}, got {segment_bytes}")
        self.directory = Path(path)
        self.wal_directory = self.directory / WAL_DIR_NAME
        self.snapshot_directory = self.directory / SNAPSHOT_DIR_NAME
        self.wal_directory.mkdir(parents=True, exist_ok=True)
        self.snapshot_directory.mkdir(exist_ok=True)
        self.hard_state_type = hard_state_type
        self.snapshot_type = snapshot_type
        self.segment_bytes = segment_bytes
        self._encoder = msgspec.msgpack.Encoder()
        self._hard_state_decoder = typed_decoder(hard_state_type)
        self._snapshot_decoder = typed_decoder(snapshot_type)
        self._pointer_decoder = msgspec.msgpack.Decoder(SnapshotPointer)
        self._segments: list[_Segment] = []
        self._first_index = 1
        self._locations: list[_Location | None] = []  # _locations[i] is entry first_index + i
        self._hard_state_record: bytes | None = None  # tagged payload of the durable hard state
        self._snapshot_record: bytes | None = None  # tagged payload of the pointer
        self._deferred_hard_state: Any = None
        """A hard state given with ``durable=False``, not yet written."""
        self._broken = False
        self._closed = False
        self.transactions = 0
        """Durable groups written (each one ``fdatasync``)."""
        self._recover_segments()
        pointer = self._pointer()
        remove_stray_snapshot_files(
            self.snapshot_directory, pointer.file_name if pointer is not None else None
        )

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._deferred_hard_state is not None and not self._broken:
                self.persist(self._deferred_hard_state, [], None)
        finally:
            self._closed = True
            for segment in self._segments:
                os.close(segment.fd)
            self._segments.clear()

    def __enter__(self) -> WalStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ recovery
    def _segment_files(self) -> list[tuple[int, Path]]:
        found = []
        for child in self.wal_directory.iterdir():
            if child.suffix == SEGMENT_SUFFIX and child.stem.isdigit():
                found.append((int(child.stem), child))
        found.sort()
        for (a, _), (b, path) in itertools.pairwise(found):
            if b != a + 1:
                raise _CorruptLog(f"{path}: segment {a + 1} is missing from {self.wal_directory}")
        return found

    def _recover_segments(self) -> None:
        files = self._segment_files()
        self._locations = []
        for position, (seq, path) in enumerate(files):
            is_last = position == len(files) - 1
            fd = os.open(path, os.O_RDWR)
            size = os.fstat(fd).st_size
            segment = _Segment(seq, path, fd, size, 0)
            self._segments.append(segment)
            data = os.pread(fd, size, 0)
            end = self._replay(segment, data, is_last)
            segment.write_offset = end
            if is_last and end == 0:
                # Created but never written (a crash during rotation): it
                # holds nothing, and the next write makes a fresh one.
                os.close(fd)
                self._segments.pop()
                path.unlink()
                fsync_directory(self.wal_directory)
            elif is_last:
                # Cut the file at the end of the last intact group and
                # allocate again: whatever lay beyond (a torn group, or
                # later pages of a write that never completed) reads as
                # zeros from now on.
                os.ftruncate(fd, end)
                _preallocate(fd, size)
                os.fsync(fd)
                segment.allocated_bytes = os.fstat(fd).st_size
        missing = [i for i, loc in enumerate(self._locations) if loc is None]
        if missing:
            raise _CorruptLog(
                f"{self.wal_directory}: entry {self._first_index + missing[0]} is in no segment"
            )

    def _replay(self, segment: _Segment, data: bytes, is_last: bool) -> int:
        """Apply ``segment``'s intact groups; return where they end."""
        view = memoryview(data)
        offset = 0
        group_start = 0
        group: list[tuple[int, int, int, bytes]] = []  # type, offset, record length, payload
        while True:
            problem = None
            if offset + _HEADER.size > len(data):
                problem = "short header" if any(view[offset:]) else None
                if problem is None:
                    break
            else:
                length, crc, raw_type = _HEADER.unpack_from(data, offset)
                if length == 0 and crc == 0 and raw_type == 0:
                    break  # preallocated space: the end of what was written
                end = offset + _HEADER.size + length
                kind = raw_type & _TYPE_MASK
                if end > len(data):
                    problem = "record runs past the end of the segment"
                elif kind not in _KNOWN_TYPES:
                    problem = f"unknown record type {raw_type}"
                else:
                    payload = bytes(view[offset + _HEADER.size : end])
                    expected = zlib.crc32(payload, zlib.crc32(_CRC_PREFIX.pack(length, raw_type)))
                    if expected != crc:
                        problem = "CRC mismatch"
            if problem is not None:
                if not is_last:
                    raise _CorruptLog(f"{segment.path}: {problem} at offset {offset}")
                break  # a torn tail: the group in progress is dropped
            group.append((kind, offset, end - offset, payload))
            offset = end
            if not raw_type & _MORE_IN_GROUP:
                for record in group:
                    self._apply_record(segment, record)
                group = []
                group_start = offset
        if group and not is_last:
            raise _CorruptLog(f"{segment.path}: a group ends early at offset {offset}")
        return group_start

    def _apply_record(self, segment: _Segment, record: tuple[int, int, int, bytes]) -> None:
        kind, offset, length, payload = record
        if kind == _ENTRY:
            term, index, _ = _ENTRY_META.unpack_from(payload)
            if index != self._last_index() + 1:
                raise _CorruptLog(
                    f"{segment.path}: entry {index} at offset {offset} "
                    f"follows entry {self._last_index()}"
                )
            self._locations.append(_Location(term, segment, offset, length))
        elif kind == _TRUNCATE:
            (index,) = _INDEX.unpack(payload)
            del self._locations[max(0, index - self._first_index) :]
        elif kind == _COMPACT:
            (through,) = _INDEX.unpack(payload)
            self._drop_through(through)
        elif kind == _HARD_STATE:
            self._hard_state_record = payload
        elif kind == _SNAPSHOT:
            self._snapshot_record = payload
            _, raw = _untag(payload)
            self._apply_snapshot_bounds(self._pointer_decoder.decode(raw).index)
        else:
            self._apply_segment_bounds(*_BOUNDS.unpack(payload))

    def _apply_segment_bounds(self, first: int, last: int) -> None:
        """A segment header: the log's bounds when the segment began. Entries
        it covers that no replayed segment holds stay unknown (None); a later
        record must drop them or recovery fails."""
        if first > self._first_index:
            del self._locations[: first - self._first_index]
            self._first_index = first
        known_last = self._first_index + len(self._locations) - 1
        if last > known_last:
            self._locations.extend([None] * (last - known_last))
        elif last < known_last:
            del self._locations[last - self._first_index + 1 :]

    def _drop_through(self, through: int) -> None:
        """Drop entries with index <= ``through`` from the in-memory index."""
        if through < self._first_index:
            return
        del self._locations[: through - self._first_index + 1]
        self._first_index = through + 1

    def _apply_snapshot_bounds(self, snapshot_index: int) -> None:
        if snapshot_index >= self._last_index():
            # The snapshot covers the whole log (a follower installing a
            # leader's snapshot): nothing stored is still needed.
            self._locations.clear()
            self._first_index = snapshot_index + 1
        else:
            self._drop_through(snapshot_index)

    # ------------------------------------------------------------ writing
    def _check_usable(self) -> None:
        if self._closed:
            raise LocalProtocolError(f"{self.directory}: the storage is closed")
        if self._broken:
            raise LocalProtocolError(
                f"{self.directory}: an earlier write failed; reopen the storage to recover"
            )

    def _header_group(self) -> list[tuple[int, bytes]]:
        """What a new segment restates so older segments may be deleted."""
        records = [(_BOUNDS_TYPE, _BOUNDS.pack(self._first_index, self._last_index()))]
        if self._snapshot_record is not None:
            records.append((_SNAPSHOT, self._snapshot_record))
        if self._hard_state_record is not None:
            records.append((_HARD_STATE, self._hard_state_record))
        return records

    def _new_segment(self, needed_bytes: int) -> _Segment:
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self.wal_directory / f"{seq:020d}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        size = max(self.segment_bytes, needed_bytes)
        _preallocate(fd, size)
        # The file and its name must be durable before records in it count.
        os.fsync(fd)
        fsync_directory(self.wal_directory)
        segment = _Segment(seq, path, fd, size, 0)
        self._segments.append(segment)
        return segment

    @staticmethod
    def _encode_group(records: list[tuple[int, bytes]]) -> tuple[bytearray, list[int]]:
        buffer = bytearray()
        offsets = []
        last = len(records) - 1
        for i, (kind, payload) in enumerate(records):
            offsets.append(len(buffer))
            buffer += _frame(kind | (_MORE_IN_GROUP if i < last else 0), payload)
        return buffer, offsets

    def _append_group(self, records: list[tuple[int, bytes]]) -> tuple[_Segment, int, list[int]]:
        """Write ``records`` as one group and fdatasync; return the segment,
        the group's offset in it and each record's offset within the group."""
        buffer, offsets = self._encode_group(records)
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.write_offset + len(buffer) > segment.allocated_bytes:
            header, _ = self._encode_group(self._header_group())
            # A group larger than a whole segment gets a segment of its own size.
            segment = self._new_segment(len(header) + len(buffer))
            os.pwrite(segment.fd, header, 0)
            segment.write_offset = len(header)
        start = segment.write_offset
        try:
            os.pwrite(segment.fd, buffer, start)
            os.fdatasync(segment.fd)
        except BaseException:
            # What reached the disk is unknown: refuse further writes until
            # a reopen has scanned the tail again.
            self._broken = True
            raise
        segment.write_offset = start + len(buffer)
        self.transactions += 1
        return segment, start, offsets

    def _drop_dead_segments(self) -> None:
        """Delete the oldest segments that hold no live entry (never the active one)."""
        if not self._locations:
            keep_from = self._segments[-1].seq if self._segments else 0
        else:
            first = self._locations[0]
            keep_from = first.segment.seq if first is not None else 0
        dropped = False
        while len(self._segments) > 1 and self._segments[0].seq < keep_from:
            segment = self._segments.pop(0)
            os.close(segment.fd)
            segment.path.unlink()
            dropped = True
        if dropped:
            # Not needed for safety (a resurrected old segment replays into
            # the same state), only to free the space for good.
            fsync_directory(self.wal_directory)

    # ------------------------------------------------------------ internals
    def _last_index(self) -> int:
        return self._first_index + len(self._locations) - 1

    def _pointer(self) -> SnapshotPointer | None:
        if self._snapshot_record is None:
            return None
        _, raw = _untag(self._snapshot_record)
        return self._pointer_decoder.decode(raw)

    def _checked(self, record: bytes, value_type: type[Any] | None, what: str) -> bytes:
        tag, raw = _untag(record)
        if value_type is not None and tag != _type_tag(value_type, None):
            raise LocalProtocolError(
                f"{self.directory}: stored {what} has type {tag}, "
                f"but this storage was opened for {_type_tag(value_type, None)}"
            )
        return raw

    def _read_records(self, locations: list[_Location]) -> Iterator[bytes]:
        """Payloads of entry records, reading each segment's span at once."""
        for _, run in itertools.groupby(locations, key=lambda loc: loc.segment.seq):
            group = list(run)
            lo = group[0].offset
            hi = group[-1].offset + group[-1].length
            data = os.pread(group[0].segment.fd, hi - lo, lo)
            for loc in group:
                start = loc.offset - lo + _HEADER.size
                yield data[start : loc.offset - lo + loc.length]

    # ------------------------------------------------------------ LogStore
    def first_index(self) -> int:
        return self._first_index

    def last_index(self) -> int:
        return self._last_index()

    def entries(self, lo: int, hi: int) -> list[Entry]:
        lo = max(lo, self._first_index)
        hi = min(hi, self._last_index() + 1)
        if lo >= hi:
            return []
        locations = [
            loc for loc in self._locations[lo - self._first_index : hi - self._first_index]
            if loc is not None
        ]
        out = []
        for payload in self._read_records(locations):
            term, index, kind = _ENTRY_META.unpack_from(payload)
            out.append(Entry(term, index, kind, payload[_ENTRY_META.size :]))
        return out

    def term(self, index: int) -> int | None:
        """The term of entry ``index`` from memory, or ``None`` if not stored."""
        i = index - self._first_index
        if 0 <= i < len(self._locations):
            loc = self._locations[i]
            return loc.term if loc is not None else None
        return None

    def store(self, entries: list[Entry]) -> None:
        self.persist(None, entries, None)

    def compact(self, through: int) -> None:
        self._check_usable()
        if through < self._first_index:
            return
        through = min(through, self._last_index())
        self._append_group([(_COMPACT, _INDEX.pack(through))])
        self._drop_through(through)
        self._drop_dead_segments()

    # ------------------------------------------------------------ StableStore
    def save_state(self, state: Any) -> None:
        self.persist(state, [], None)

    def load_state(self) -> Any:
        if self._deferred_hard_state is not None:
            return self._deferred_hard_state
        if self._hard_state_record is None:
            return None
        raw = self._checked(self._hard_state_record, self.hard_state_type, "hard_state")
        return self._hard_state_decoder.decode(raw)

    # ------------------------------------------------------------ SnapshotStore
    def save_snapshot(self, snapshot: Any) -> None:
        self.persist(None, [], snapshot)

    def load_snapshot(self) -> Any:
        if self._snapshot_record is None:
            return None
        raw = self._checked(self._snapshot_record, self.snapshot_type, "snapshot")
        pointer = self._pointer_decoder.decode(raw)
        data = (self.snapshot_directory / pointer.file_name).read_bytes()
        return self._snapshot_decoder.decode(data)

    # ------------------------------------------------------------ NodeStorage
    def persist(
        self, hard_state: Any, entries: list[Entry], snapshot: Any, *, durable: bool = True
    ) -> None:
        """Durably save one ``Ready``'s state as one group (one ``fdatasync``),
        plus the snapshot file's own fsyncs when there is a snapshot.

        ``durable=False`` (only with a hard state alone) defers the write to
        the next durable group; see the module docstring."""
        self._check_usable()
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
        # Plan the whole group against the bounds it will leave, so a refused
        # write (a gap) changes nothing on disk or in memory.
        first_index, last_index = self._first_index, self._last_index()
        snapshot_index: int | None = None
        if snapshot is not None:
            snapshot_index = int(snapshot.index)
            if snapshot_index >= last_index:
                first_index, last_index = snapshot_index + 1, snapshot_index
            elif snapshot_index >= first_index:
                first_index = snapshot_index + 1
        # Entries are checked against the bounds *after* the snapshot, as
        # MemoryStorage does: those the snapshot covers are skipped.
        entries = [e for e in entries if e.index >= first_index]
        truncate_from: int | None = None
        if entries:
            first = entries[0].index
            if first > last_index + 1:
                raise LocalProtocolError(f"gap in log: last {last_index}, appending {first}")
            for previous, entry in itertools.pairwise(entries):
                if entry.index != previous.index + 1:
                    raise LocalProtocolError(
                        f"entries are not contiguous: {previous.index} then {entry.index}"
                    )
            if first <= last_index:
                truncate_from = first
        records: list[tuple[int, bytes]] = []
        pointer: SnapshotPointer | None = None
        snapshot_record: bytes | None = None
        if snapshot is not None:
            pointer = write_snapshot_file(
                self.snapshot_directory, snapshot, self._encoder.encode(snapshot)
            )
            snapshot_record = _tagged(
                _type_tag(self.snapshot_type, snapshot), self._encoder.encode(pointer)
            )
            records.append((_SNAPSHOT, snapshot_record))
        if truncate_from is not None:
            records.append((_TRUNCATE, _INDEX.pack(truncate_from)))
        first_entry_record = len(records)
        records.extend(
            (_ENTRY, _ENTRY_META.pack(e.term, e.index, e.kind) + e.data) for e in entries
        )
        hard_state_record: bytes | None = None
        if hard_state is not None:
            hard_state_record = _tagged(
                _type_tag(self.hard_state_type, hard_state), self._encoder.encode(hard_state)
            )
            records.append((_HARD_STATE, hard_state_record))
        segment, start, offsets = self._append_group(records)
        # The group is durable: bring the in-memory index up to date.
        if snapshot_index is not None:
            self._apply_snapshot_bounds(snapshot_index)
            self._snapshot_record = snapshot_record
        if truncate_from is not None:
            del self._locations[truncate_from - self._first_index :]
        for i, entry in enumerate(entries):
            length = _HEADER.size + _ENTRY_META.size + len(entry.data)
            offset = start + offsets[first_entry_record + i]
            self._locations.append(_Location(entry.term, segment, offset, length))
        if hard_state_record is not None:
            self._hard_state_record = hard_state_record
        self._deferred_hard_state = None
        if pointer is not None:
            drop_old_snapshot_files(self.snapshot_directory, pointer.file_name)
            self._drop_dead_segments()

    def recover(self) -> Recovered:
        """Everything persisted so far, as recovered when the storage was opened
        plus what was written since."""
        return Recovered(
            hard_state=self.load_state(),
            snapshot=self.load_snapshot(),
            entries=self.entries(self._first_index, self._last_index() + 1),
        )
