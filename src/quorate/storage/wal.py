"""Durable node storage as a write-ahead log of preallocated segment files.

Theory of operation. A node's data directory holds ``wal/`` (the log
segments) and ``snapshots/`` (snapshot files, ``quorate.storage.snapshot_files``).
It keeps the same contract as ``SqliteStorage`` (every group's log, hard
state and snapshot pointer, a registry of the groups, the single-group API
on group 0) with less work per write: ``persist_many`` appends one *batch*
of records, for every group it writes, to the active segment with a single
``pwrite`` and makes it durable with a single ``fdatasync`` (group commit
across groups, as TiKV's raft engine does), the layout etcd's WAL uses, and
the batching the Raft thesis recommends (Ongaro, §10.2.2: many entries, one
disk write). One WAL serves every group of a node.

Segments. ``wal/<seq>.wal`` files are created at ``segment_bytes`` with
``posix_fallocate`` (``ftruncate`` where that is unsupported), so an append
never changes the file's size and ``fdatasync`` has no size change to journal
(on ext4 the first write into a preallocated block still marks it written,
a smaller metadata update). A batch that does not fit starts the next
segment. Every segment opens with a *header* batch restating, for every
group, what older segments established (its registry row, its log's bounds,
its hard state, its snapshot pointer), so old segments can be deleted whole
once no group has a live entry in them.

Records are ``[length u32][crc32 u32][type u8][payload]`` (little-endian;
the CRC is zlib's CRC-32 over length, type and payload). Types: an entry
(term, index, kind, data), the hard state, a snapshot pointer, "drop from
index N" (a conflicting suffix), "compact through N", the header's bounds,
"create group" (protocol, meta) and "drop group". The type's bit 6 marks a
record of a group other than 0: its payload starts with the group id (u64),
so group 0's records are byte for byte those of the single-group layout,
which this code still reads. The high bit of the type marks "another record
of this batch follows": recovery applies a batch only when its last record
is intact, so a ``persist_many`` is all-or-nothing across its groups.

Recovery scans the segments in order. A zero header ends a segment (the
preallocated space not yet written). In the last segment, a record that is
short, fails its CRC or ends a batch early is the torn tail of a write that
was never acknowledged: the log is cut at the start of that batch (earlier
batches, of every group, stay), and the segment is truncated there and
preallocated again, so stale bytes beyond the cut can never be read as
records later. Damage anywhere else means the disk lost acknowledged data,
and opening fails loudly.

Invariants: each group's live entries are contiguous from its
``first_index`` to its ``last_index`` and each is found by an in-memory
index (term, segment, offset); ``first_index == snapshot.index + 1`` once a
snapshot compacted the log; recovery after a crash returns, for every group,
a prefix of what was persisted that contains every ``persist_many`` that
returned. A record of a group that was never created means corruption.

Space. A segment is deleted when no group has a live entry in it, so a
group that never compacts keeps its oldest segment, and the ones after it,
alive: the host should snapshot or compact idle groups too.

``durable=False`` defers commit-index-only hard states to the next durable
batch, whichever groups it writes (or ``close``), exactly as
``SqliteStorage`` does.

Not thread-safe: a runtime may call ``persist_many`` from one worker thread
while its event loop does other work, provided calls never overlap.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from quorate.core.ready import Entry
from quorate.errors import LocalProtocolError
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
from quorate.storage.layout import SNAPSHOT_DIR_NAME, WAL_DIR_NAME, refuse_other_engine
from quorate.storage.snapshot_files import (
    SnapshotPointer,
    drop_group_snapshot_files,
    drop_old_snapshot_files,
    fsync_directory,
    remove_stray_snapshot_files,
    write_snapshot_files,
)

__all__ = ["DEFAULT_SEGMENT_BYTES", "SNAPSHOT_DIR_NAME", "WAL_DIR_NAME", "WalStorage"]

SEGMENT_SUFFIX = ".wal"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
MIN_SEGMENT_BYTES = 4096
READ_GAP_BYTES = 4096
"""Entries this close together are read with one ``pread`` (the bytes
between them are read and dropped: cheaper than another system call)."""

_HEADER = struct.Struct("<IIB")  # length, crc32, type
_CRC_PREFIX = struct.Struct("<IB")  # what the CRC covers before the payload
_GROUP = struct.Struct("<Q")  # a grouped record's payload starts with its group
_ENTRY_META = struct.Struct("<QQq")  # term, index, kind; the data follows
_INDEX = struct.Struct("<Q")
_BOUNDS = struct.Struct("<QQ")  # first_index, last_index
_TAG_LENGTH = struct.Struct("<H")

_MORE_IN_BATCH = 0x80
_GROUPED = 0x40
_KIND_MASK = 0x3F
_ENTRY = 1
_HARD_STATE = 2
_SNAPSHOT = 3
_TRUNCATE = 4  # drop entries with index >= N
_COMPACT = 5  # drop entries with index <= N
_BOUNDS_KIND = 6  # a segment header: the log's (first, last) when it began
_CREATE_GROUP = 7  # a registry row: protocol, meta
_DROP_GROUP = 8  # the group, its log and state are gone
_KNOWN_KINDS = frozenset(
    {_ENTRY, _HARD_STATE, _SNAPSHOT, _TRUNCATE, _COMPACT, _BOUNDS_KIND, _CREATE_GROUP, _DROP_GROUP}
)

Record = tuple[int, int, bytes]
"""A record to write: (kind, group, payload without the group prefix)."""


_TAG_PREFIXES: dict[type[Any], bytes] = {}


def _tagged(value_type: type[Any], raw: bytes) -> bytes:
    """``raw`` (an encoded value) behind its type's tag."""
    prefix = _TAG_PREFIXES.get(value_type)
    if prefix is None:
        encoded = type_tag(value_type).encode()
        prefix = _TAG_PREFIXES[value_type] = _TAG_LENGTH.pack(len(encoded)) + encoded
    return prefix + raw


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


def _encode_batch(records: list[Record]) -> tuple[bytearray, list[int]]:
    """Frame ``records`` as one batch; return the bytes and where each
    record's payload (after any group prefix) starts in them."""
    buffer = bytearray()
    payload_offsets = []
    last = len(records) - 1
    for i, (kind, group, payload) in enumerate(records):
        raw_type = kind | (_MORE_IN_BATCH if i < last else 0)
        if group:
            prefix = _GROUP.pack(group)
            raw_type |= _GROUPED
            length = len(prefix) + len(payload)
            crc = zlib.crc32(_CRC_PREFIX.pack(length, raw_type))
            crc = zlib.crc32(payload, zlib.crc32(prefix, crc))
            buffer += _HEADER.pack(length, crc, raw_type)
            buffer += prefix
        else:
            length = len(payload)
            crc = zlib.crc32(payload, zlib.crc32(_CRC_PREFIX.pack(length, raw_type)))
            buffer += _HEADER.pack(length, crc, raw_type)
        payload_offsets.append(len(buffer))
        buffer += payload
    return buffer, payload_offsets


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    fd: int
    allocated_bytes: int
    write_offset: int


@dataclass(slots=True)
class _Location:
    """Where an entry's payload (term, index, kind, data) lives."""

    term: int
    segment: _Segment
    offset: int
    length: int


@dataclass(slots=True)
class _GroupLog:
    """One group's state as the log says it is."""

    first_index: int = 1
    locations: list[_Location | None] = field(default_factory=list)
    """``locations[i]`` is entry ``first_index + i``; ``None`` while recovery
    knows the entry exists but has not found it yet."""
    hard_state_record: bytes | None = None  # tagged payload of the durable hard state
    snapshot_record: bytes | None = None  # tagged payload of the pointer

    def last_index(self) -> int:
        return self.first_index + len(self.locations) - 1

    def truncate_from(self, index: int) -> None:
        del self.locations[max(0, index - self.first_index) :]

    def drop_through(self, through: int) -> None:
        """Drop entries with index <= ``through``."""
        if through < self.first_index:
            return
        del self.locations[: through - self.first_index + 1]
        self.first_index = through + 1

    def apply_snapshot_bounds(self, snapshot_index: int) -> None:
        if snapshot_index >= self.last_index():
            # The snapshot covers the whole log (a follower installing a
            # leader's snapshot): nothing stored is still needed.
            self.locations.clear()
            self.first_index = snapshot_index + 1
        else:
            self.drop_through(snapshot_index)

    def apply_segment_bounds(self, first: int, last: int) -> None:
        """A segment header: the log's bounds when the segment began. Entries
        it covers that no replayed segment holds stay unknown (None); a later
        record must drop them or recovery fails."""
        if first > self.first_index:
            del self.locations[: first - self.first_index]
            self.first_index = first
        known_last = self.last_index()
        if last > known_last:
            self.locations.extend([None] * (last - known_last))
        elif last < known_last:
            del self.locations[last - self.first_index + 1 :]


class _CorruptLog(LocalProtocolError):
    """The log lost data that was acknowledged (not a torn tail)."""


class WalStorage:
    """Every group's ``LogStore`` + ``StableStore`` + ``SnapshotStore`` in a
    segmented write-ahead log, with the single-group API (``persist``,
    ``recover``, ``first_index``...) working on group 0.

    ``path`` is the node's data directory (created if missing);
    ``hard_state_type`` and ``snapshot_type`` are group 0's protocol's
    msgspec Structs (``None`` decodes plain msgpack values); ``segment_bytes``
    is the size each segment file is preallocated to.
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
            raise LocalProtocolError(
                f"segment_bytes must be >= {MIN_SEGMENT_BYTES}, got {segment_bytes}"
            )
        self.directory = Path(path)
        self.directory.mkdir(parents=True, exist_ok=True)
        refuse_other_engine(self.directory, "wal")
        self.wal_directory = self.directory / WAL_DIR_NAME
        self.snapshot_directory = self.directory / SNAPSHOT_DIR_NAME
        self.wal_directory.mkdir(exist_ok=True)
        self.snapshot_directory.mkdir(exist_ok=True)
        self.hard_state_type = hard_state_type
        self.snapshot_type = snapshot_type
        self.segment_bytes = segment_bytes
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = DecoderCache()
        self._pointer_decoder = msgspec.msgpack.Decoder(SnapshotPointer)
        self._segments: list[_Segment] = []
        self._logs: dict[int, _GroupLog] = {0: _GroupLog()}
        """Group 0 (the single-group API's) and every registered group."""
        self._registry: dict[int, GroupRecord] = {}
        self._deferred: dict[int, Any] = {}
        """Hard states given with ``durable=False``, not yet written."""
        self._broken = False
        self._closed = False
        self.transactions = 0
        """Durable batches written (each one ``fdatasync``)."""
        self._recover_segments()
        keep = {p.file_name for p in map(self._pointer, self._logs.values()) if p is not None}
        remove_stray_snapshot_files(self.snapshot_directory, keep)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._deferred and not self._broken:
                self.persist_many([])
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
        for position, (seq, path) in enumerate(files):
            is_last = position == len(files) - 1
            fd = os.open(path, os.O_RDWR)
            size = os.fstat(fd).st_size
            segment = _Segment(seq, path, fd, size, 0)
            self._segments.append(segment)
            if size:
                # Mapped, not read: the preallocated space beyond the last
                # batch costs nothing until touched, and the scan stops there.
                with (
                    mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped,
                    memoryview(mapped) as view,
                ):
                    end = self._replay(segment, view, is_last)
            else:
                end = 0
            segment.write_offset = end
            if is_last and end == 0:
                # Created but never written (a crash during rotation): it
                # holds nothing, and the next write makes a fresh one.
                os.close(fd)
                self._segments.pop()
                path.unlink()
                fsync_directory(self.wal_directory)
            elif is_last:
                # Cut the file at the end of the last intact batch and
                # allocate again: whatever lay beyond (a torn batch, or
                # later pages of a write that never completed) reads as
                # zeros from now on.
                os.ftruncate(fd, end)
                _preallocate(fd, size)
                os.fsync(fd)
                segment.allocated_bytes = os.fstat(fd).st_size
        for group, log in self._logs.items():
            missing = [i for i, loc in enumerate(log.locations) if loc is None]
            if missing:
                owner = "" if group == 0 else f"group {group}: "
                raise _CorruptLog(
                    f"{self.wal_directory}: {owner}entry {log.first_index + missing[0]} "
                    "is in no segment"
                )

    def _replay(self, segment: _Segment, view: memoryview, is_last: bool) -> int:
        """Apply ``segment``'s intact batches; return where they end."""
        offset = 0
        batch_start = 0
        batch: list[tuple[int, int, int, int]] = []  # kind, group, payload offset, length
        while True:
            problem = None
            if offset + _HEADER.size > len(view):
                problem = "short header" if any(view[offset:]) else None
                if problem is None:
                    break
            else:
                length, crc, raw_type = _HEADER.unpack_from(view, offset)
                if length == 0 and crc == 0 and raw_type == 0:
                    break  # preallocated space: the end of what was written
                end = offset + _HEADER.size + length
                kind = raw_type & _KIND_MASK
                grouped = bool(raw_type & _GROUPED)
                if end > len(view):
                    problem = "record runs past the end of the segment"
                elif kind not in _KNOWN_KINDS:
                    problem = f"unknown record type {raw_type}"
                elif grouped and length < _GROUP.size:
                    problem = "a grouped record too short for its group id"
                else:
                    # Released at once: a slice still held when an error
                    # unwinds would keep the mapping from closing.
                    with view[offset + _HEADER.size : end] as payload:
                        prefix_crc = zlib.crc32(_CRC_PREFIX.pack(length, raw_type))
                        expected = zlib.crc32(payload, prefix_crc)
                    if expected != crc:
                        problem = "CRC mismatch"
            if problem is not None:
                if not is_last:
                    raise _CorruptLog(f"{segment.path}: {problem} at offset {offset}")
                break  # a torn tail: the batch in progress is dropped
            payload_offset = offset + _HEADER.size
            group = 0
            if grouped:
                (group,) = _GROUP.unpack_from(view, payload_offset)
                payload_offset += _GROUP.size
            batch.append((kind, group, payload_offset, end - payload_offset))
            offset = end
            if not raw_type & _MORE_IN_BATCH:
                for record in batch:
                    self._apply_record(segment, view, record)
                batch = []
                batch_start = offset
        if batch and not is_last:
            raise _CorruptLog(f"{segment.path}: a batch ends early at offset {offset}")
        return batch_start

    def _apply_record(
        self, segment: _Segment, view: memoryview, record: tuple[int, int, int, int]
    ) -> None:
        kind, group, offset, length = record
        if kind == _ENTRY:
            log = self._logs.get(group)
            if log is not None:
                term, index, _ = _ENTRY_META.unpack_from(view, offset)
                if index != log.last_index() + 1:
                    raise _CorruptLog(
                        f"{segment.path}: entry {index} at offset {offset} "
                        f"follows entry {log.last_index()}"
                    )
                log.locations.append(_Location(term, segment, offset, length))
                return
        payload = bytes(view[offset : offset + length])
        if kind == _CREATE_GROUP:
            (n,) = _TAG_LENGTH.unpack_from(payload)
            start = _TAG_LENGTH.size
            protocol = payload[start : start + n].decode()
            self._registry[group] = GroupRecord(group, protocol, payload[start + n :])
            self._logs.setdefault(group, _GroupLog())
            return
        if kind == _DROP_GROUP:
            self._forget_group(group)
            return
        log = self._logs.get(group)
        if log is None:
            raise _CorruptLog(
                f"{segment.path}: a record at offset {offset} belongs to group {group}, "
                "which was never created"
            )
        if kind == _TRUNCATE:
            (index,) = _INDEX.unpack(payload)
            log.truncate_from(index)
        elif kind == _COMPACT:
            (through,) = _INDEX.unpack(payload)
            log.drop_through(through)
        elif kind == _HARD_STATE:
            log.hard_state_record = payload
        elif kind == _SNAPSHOT:
            log.snapshot_record = payload
            _, raw = _untag(payload)
            log.apply_snapshot_bounds(self._pointer_decoder.decode(raw).index)
        else:
            log.apply_segment_bounds(*_BOUNDS.unpack(payload))

    def _forget_group(self, group: int) -> None:
        self._registry.pop(group, None)
        self._deferred.pop(group, None)
        if group == 0:
            self._logs[0] = _GroupLog()
        else:
            self._logs.pop(group, None)

    # ------------------------------------------------------------ writing
    def _check_usable(self) -> None:
        if self._closed:
            raise LocalProtocolError(f"{self.directory}: the storage is closed")
        if self._broken:
            raise LocalProtocolError(
                f"{self.directory}: an earlier write failed; reopen the storage to recover"
            )

    def _header_batch(self) -> list[Record]:
        """What a new segment restates so older segments may be deleted."""
        records: list[Record] = []
        for group in sorted(self._logs):
            log = self._logs[group]
            registered = self._registry.get(group)
            if registered is not None:
                records.append((_CREATE_GROUP, group, self._registry_payload(registered)))
            records.append((_BOUNDS_KIND, group, _BOUNDS.pack(log.first_index, log.last_index())))
            if log.snapshot_record is not None:
                records.append((_SNAPSHOT, group, log.snapshot_record))
            if log.hard_state_record is not None:
                records.append((_HARD_STATE, group, log.hard_state_record))
        return records

    @staticmethod
    def _registry_payload(record: GroupRecord) -> bytes:
        name = record.protocol.encode()
        return _TAG_LENGTH.pack(len(name)) + name + record.meta

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

    def _append_batch(self, records: list[Record]) -> tuple[_Segment, int, list[int]]:
        """Write ``records`` as one batch and fdatasync; return the segment,
        the batch's offset in it and each record's payload offset within the batch."""
        buffer, offsets = _encode_batch(records)
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.write_offset + len(buffer) > segment.allocated_bytes:
            header, _ = _encode_batch(self._header_batch())
            # A batch larger than a whole segment gets a segment of its own size.
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
        """Delete the oldest segments in which no group has a live entry
        (never the active one)."""
        keep_from = self._segments[-1].seq if self._segments else 0
        for log in self._logs.values():
            if log.locations:
                first = log.locations[0]
                keep_from = min(keep_from, first.segment.seq if first is not None else 0)
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
    def _log(self, group: object) -> tuple[int, _GroupLog]:
        checked = check_group_id(group)
        log = self._logs.get(checked)
        if log is None:
            raise unknown_group(checked)
        return checked, log

    def _pointer(self, log: _GroupLog) -> SnapshotPointer | None:
        if log.snapshot_record is None:
            return None
        _, raw = _untag(log.snapshot_record)
        return self._pointer_decoder.decode(raw)

    def _checked(
        self, group: int, record: bytes, value_type: type[Any] | None, what: str
    ) -> tuple[bytes, type[Any] | None]:
        """(the record's value bytes, the type to decode them with)."""
        tag, raw = _untag(record)
        return raw, check_type_tag(str(self.directory), group, what, tag, value_type)

    @staticmethod
    def _read_payloads(locations: list[_Location]) -> Iterator[bytes]:
        """Payloads of entry records. Neighbours (in the same segment, at most
        ``READ_GAP_BYTES`` apart) are read with one ``pread``; a group's
        entries interleaved with many other groups' are read one by one
        rather than with the other groups' bytes between them."""
        i = 0
        while i < len(locations):
            first = locations[i]
            j = i + 1
            hi = first.offset + first.length
            while j < len(locations):
                loc = locations[j]
                if loc.segment is not first.segment or not 0 <= loc.offset - hi <= READ_GAP_BYTES:
                    break
                hi = loc.offset + loc.length
                j += 1
            data = os.pread(first.segment.fd, hi - first.offset, first.offset)
            for loc in locations[i:j]:
                start = loc.offset - first.offset
                yield data[start : start + loc.length]
            i = j

    # ------------------------------------------------------------ registry
    def create_group(self, group: int, protocol: str, meta: bytes = b"") -> None:
        """Register ``group`` as hosted here, running ``protocol``; durable on return."""
        self.create_groups([(group, protocol, meta)])

    def create_groups(self, records: Iterable[tuple[int, str, bytes]]) -> None:
        """Register many groups in one batch (one fdatasync)."""
        self._check_usable()
        checked = [check_group_record(*record) for record in records]
        seen: set[int] = set()
        for record in checked:
            if record.group in self._registry or record.group in seen:
                raise GroupExistsError(f"group {record.group} exists already")
            seen.add(record.group)
        if not checked:
            return
        self._append_batch([(_CREATE_GROUP, r.group, self._registry_payload(r)) for r in checked])
        for record in checked:
            self._registry[record.group] = record
            self._logs.setdefault(record.group, _GroupLog())

    def groups(self) -> list[GroupRecord]:
        """The hosted groups, by id."""
        return sorted(self._registry.values())

    def drop_group(self, group: int) -> None:
        """Remove ``group``: one record drops its log, hard state, snapshot
        pointer and registry row (durable on return); then its snapshot
        files and the segments only it kept alive go."""
        self._check_usable()
        checked, _ = self._log(group)
        self._append_batch([(_DROP_GROUP, checked, b"")])
        self._forget_group(checked)
        drop_group_snapshot_files(self.snapshot_directory, checked)
        self._drop_dead_segments()

    # ------------------------------------------------------------ keyed access
    def persist_many(self, writes: Iterable[GroupWrite], *, durable: bool = True) -> None:
        """Durably save many groups' writes as one batch (one ``fdatasync``),
        plus the snapshot files' own fsyncs when there are snapshots; all or
        nothing. ``durable=False`` (hard states only) defers them to the next
        durable batch; see the module docstring."""
        self._check_usable()
        batch = checked_writes(writes, durable)
        logs = self._logs
        for write in batch:
            if write.group not in logs:
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
        plans: list[LogPlan] = []
        has_entries = False
        for write in batch:
            log = logs[write.group]
            first, last = bounds.get(write.group) or (log.first_index, log.last_index())
            plan = plan_log_write(first, last, write.entries, write.snapshot)
            bounds[write.group] = (plan.first_index, plan.last_index)
            plans.append(plan)
            has_entries = has_entries or bool(plan.entries)
        snapshots = [(w.group, w.snapshot) for w in batch if w.snapshot is not None]
        if not hard_states and not snapshots and not has_entries:
            return
        pointers = iter(
            write_snapshot_files(
                self.snapshot_directory,
                [(g, s, self._encoder.encode(s)) for g, s in snapshots],
            )
            if snapshots
            else ()
        )
        records: list[Record] = []
        snapshot_records: list[bytes | None] = []
        first_entry_records: list[int] = []
        for write, plan in zip(batch, plans, strict=True):
            group = write.group
            snapshot_record = None
            if write.snapshot is not None:
                snapshot_record = _tagged(
                    type(write.snapshot), self._encoder.encode(next(pointers))
                )
                records.append((_SNAPSHOT, group, snapshot_record))
            snapshot_records.append(snapshot_record)
            if plan.truncate_from is not None:
                records.append((_TRUNCATE, group, _INDEX.pack(plan.truncate_from)))
            first_entry_records.append(len(records))
            records.extend(
                (_ENTRY, group, _ENTRY_META.pack(e.term, e.index, e.kind) + e.data)
                for e in plan.entries
            )
        hard_state_records = {
            group: _tagged(type(hs), self._encoder.encode(hs))
            for group, hs in hard_states.items()
        }
        records.extend((_HARD_STATE, g, r) for g, r in hard_state_records.items())
        segment, start, offsets = self._append_batch(records)
        # The batch is durable: bring the in-memory index up to date, in the
        # order recovery would replay it.
        for write, plan, snapshot_record, first_entry in zip(
            batch, plans, snapshot_records, first_entry_records, strict=True
        ):
            log = self._logs[write.group]
            if plan.snapshot_index is not None:
                log.apply_snapshot_bounds(plan.snapshot_index)
                log.snapshot_record = snapshot_record
            if plan.truncate_from is not None:
                log.truncate_from(plan.truncate_from)
            locations = log.locations
            for i, entry in enumerate(plan.entries):
                locations.append(
                    _Location(
                        entry.term,
                        segment,
                        start + offsets[first_entry + i],
                        _ENTRY_META.size + len(entry.data),
                    )
                )
        for group, record in hard_state_records.items():
            self._logs[group].hard_state_record = record
        self._deferred.clear()
        if snapshots:
            for group, _ in snapshots:
                pointer = self._pointer(self._logs[group])
                if pointer is not None:
                    drop_old_snapshot_files(self.snapshot_directory, pointer.file_name, group)
            self._drop_dead_segments()

    def recover_group(
        self,
        group: int,
        hard_state_type: type[Any] | None = None,
        snapshot_type: type[Any] | None = None,
    ) -> Recovered:
        """Everything persisted for ``group``, as recovered when the storage
        was opened plus what was written since, decoded with its protocol's types."""
        checked, log = self._log(group)
        return Recovered(
            hard_state=self.hard_state_of(checked, hard_state_type),
            snapshot=self.snapshot_of(checked, snapshot_type),
            entries=self.entries_of(checked, log.first_index, log.last_index() + 1),
        )

    def compact_group(self, group: int, through: int) -> None:
        """Drop ``group``'s entries with index <= ``through`` (one batch)."""
        self._check_usable()
        checked, log = self._log(group)
        if through < log.first_index:
            return
        through = min(through, log.last_index())
        self._append_batch([(_COMPACT, checked, _INDEX.pack(through))])
        log.drop_through(through)
        self._drop_dead_segments()

    def first_index_of(self, group: int) -> int:
        return self._log(group)[1].first_index

    def last_index_of(self, group: int) -> int:
        return self._log(group)[1].last_index()

    def entries_of(self, group: int, lo: int, hi: int) -> list[Entry]:
        _, log = self._log(group)
        lo = max(lo, log.first_index)
        hi = min(hi, log.last_index() + 1)
        if lo >= hi:
            return []
        locations = [
            loc
            for loc in log.locations[lo - log.first_index : hi - log.first_index]
            if loc is not None
        ]
        out = []
        for payload in self._read_payloads(locations):
            term, index, kind = _ENTRY_META.unpack_from(payload)
            out.append(Entry(term, index, kind, payload[_ENTRY_META.size :]))
        return out

    def term_of(self, group: int, index: int) -> int | None:
        """The term of ``group``'s entry ``index`` from memory, or ``None`` if not stored."""
        _, log = self._log(group)
        i = index - log.first_index
        if 0 <= i < len(log.locations):
            loc = log.locations[i]
            return loc.term if loc is not None else None
        return None

    def hard_state_of(self, group: int, hard_state_type: type[Any] | None = None) -> Any:
        checked, log = self._log(group)
        deferred = self._deferred.get(checked)
        if deferred is not None:
            return deferred
        if log.hard_state_record is None:
            return None
        raw, decode_as = self._checked(checked, log.hard_state_record, hard_state_type, "hard_state")
        return self._decoder(decode_as).decode(raw)

    def snapshot_of(self, group: int, snapshot_type: type[Any] | None = None) -> Any:
        checked, log = self._log(group)
        if log.snapshot_record is None:
            return None
        raw, decode_as = self._checked(checked, log.snapshot_record, snapshot_type, "snapshot")
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
        checked, _ = self._log(group)
        return GroupStorage(self, checked, hard_state_type, snapshot_type)

    # ------------------------------------------------------------ group 0
    def first_index(self) -> int:
        return self._logs[0].first_index

    def last_index(self) -> int:
        return self._logs[0].last_index()

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.entries_of(0, lo, hi)

    def term(self, index: int) -> int | None:
        """The term of entry ``index`` from memory, or ``None`` if not stored."""
        return self.term_of(0, index)

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
        """Durably save one ``Ready``'s state of group 0 as one batch (one
        ``fdatasync``); ``durable=False`` (a hard state alone) defers it."""
        self.persist_many([GroupWrite(0, hard_state, entries, snapshot)], durable=durable)

    def recover(self) -> Recovered:
        """Everything persisted for group 0."""
        return self.recover_group(0, self.hard_state_type, self.snapshot_type)
