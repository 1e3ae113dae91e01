"""Backups: the snapshot file refuses every damaged copy, and the replica
service takes an image like a linearizable read and hands it out in chunks."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from quorate.core import Accepted, Entry, ReadState, Ready, Redirect
from quorate.core.protocol import ProposeOutcome
from quorate.ids import NodeId
from quorate.state import backup as backup_module
from quorate.state.backup import (
    MAGIC,
    BackupChunk,
    BackupFileError,
    BackupRequest,
    decode_backup_file,
    encode_backup_file,
)
from quorate.state.kv import KVStore, Put, encode_op
from quorate.state.service import ClientRequest, ReplicaService

DATA = b"the store's own encoding \x00\xff" * 20


def test_a_snapshot_file_round_trips_its_header_and_data() -> None:
    raw = encode_backup_file("raft", 42, 3, 1_700_000_000.5, DATA)
    assert raw.startswith(MAGIC)
    decoded = decode_backup_file(raw)
    header = decoded.header
    assert (header.protocol, header.index, header.term, header.created_at_s) == ("raft", 42, 3, 1_700_000_000.5)
    assert header.format_version == 1 and decoded.data == DATA


def test_every_truncation_and_every_flipped_byte_is_refused() -> None:
    raw = encode_backup_file("raft", 42, 3, 0.0, DATA)
    for length in range(len(raw)):
        with pytest.raises(BackupFileError, match="truncated"):
            decode_backup_file(raw[:length])
    for at in range(len(raw)):
        damaged = raw[:at] + bytes([raw[at] ^ 0x10]) + raw[at + 1 :]
        with pytest.raises(BackupFileError):
            decode_backup_file(damaged)
    with pytest.raises(BackupFileError, match="after the checksum"):
        decode_backup_file(raw + b"\x00")
    with pytest.raises(BackupFileError, match="not a quorate snapshot"):
        decode_backup_file(b"SQLite format 3\x00" + raw)


def test_a_newer_format_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_module, "BACKUP_FORMAT_VERSION", 9)
    raw = encode_backup_file("raft", 1, 1, 0.0, DATA)
    monkeypatch.undo()
    with pytest.raises(BackupFileError, match="format version 9"):
        decode_backup_file(raw)


class ReadIndexCore:
    """Leader or not; ReadIndex requests are answered when the test says."""

    def __init__(self, leader: bool = True) -> None:
        self.leader = leader
        self.log: list[Entry] = []
        self.reads: list[bytes] = []

    @property
    def id(self) -> NodeId:
        return NodeId(1)

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        if not self.leader:
            return Redirect(NodeId(2))
        self.log.append(Entry(4, len(self.log) + 1, 0, command))
        return Accepted(len(self.log), 4)

    def read_index(self, context: bytes, now: float) -> ProposeOutcome:
        if not self.leader:
            return Redirect(NodeId(2))
        self.reads.append(context)
        return Accepted(len(self.log), 4)

    def step(self, sender: NodeId, message: Any, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def has_ready(self) -> bool:
        return False

    def ready(self) -> Ready:
        return Ready()

    def advance(self, ready: Ready) -> None: ...


def _with_keys(core: ReadIndexCore, count: int) -> ReplicaService:
    service = ReplicaService(core, KVStore())
    for i in range(count):
        service.on_client_request(NodeId(100), ClientRequest(9, i + 1, encode_op(Put(f"k{i}", "v" * 100))), 0.0)
    return service


def test_a_backup_waits_for_its_read_index_to_apply_and_holds_the_writes_before_it() -> None:
    core = ReadIndexCore()
    service = _with_keys(core, 3)
    for entry in core.log[:2]:
        service.apply(entry)
    service.take_replies()
    service.request_backup(NodeId(200), BackupRequest(seq=1), now=0.0)
    [context] = core.reads
    service.read_ready(ReadState(3, context))  # committed up to 3 when it arrived
    assert service.take_replies() == []  # only 2 applied: wait
    service.apply(core.log[2])
    replies = service.take_replies()
    chunk = next(r for to, r in replies if isinstance(r, BackupChunk))
    assert chunk.status == "ok" and chunk.index == 3 and chunk.term == 4 and chunk.offset == 0
    copy = KVStore()
    copy.restore(chunk.data)
    assert [copy.get(f"k{i}") for i in range(3)] == ["v" * 100] * 3
    assert hashlib.sha256(chunk.data).digest() == chunk.sha256 and chunk.total_bytes == len(chunk.data)


def test_a_large_image_is_fetched_in_chunks_of_the_same_image(monkeypatch: pytest.MonkeyPatch) -> None:
    import quorate.state.service as service_module

    monkeypatch.setattr(service_module, "BACKUP_CHUNK_BYTES", 256)
    core = ReadIndexCore()
    service = _with_keys(core, 10)
    for entry in core.log:
        service.apply(entry)
    service.take_replies()
    service.request_backup(NodeId(200), BackupRequest(seq=1), now=0.0)
    service.read_ready(ReadState(10, core.reads[0]))
    [(_, first)] = service.take_replies()
    assert isinstance(first, BackupChunk)
    assert len(first.data) == 256 < first.total_bytes
    data = first.data
    seq = 2
    while len(data) < first.total_bytes:
        service.request_backup(NodeId(200), BackupRequest(seq, first.image, len(data)), now=0.0)
        [(to, chunk)] = service.take_replies()
        assert isinstance(chunk, BackupChunk) and to == 200 and chunk.sha256 == first.sha256
        data += chunk.data
        seq += 1
    assert hashlib.sha256(data).digest() == first.sha256
    # An image no longer held, and an offset outside the image, are errors.
    service.request_backup(NodeId(200), BackupRequest(seq, 99, 0), now=0.0)
    service.request_backup(NodeId(200), BackupRequest(seq + 1, first.image, first.total_bytes + 1), now=0.0)
    assert [r.status for _, r in service.take_replies()] == ["error", "error"]


def test_a_follower_redirects_a_backup_and_a_lost_leadership_answers_retry() -> None:
    follower = ReplicaService(ReadIndexCore(leader=False), KVStore())
    follower.request_backup(NodeId(200), BackupRequest(seq=5), now=0.0)
    [(_, reply)] = follower.take_replies()
    assert reply == BackupChunk(5, "redirect", leader=2)
    core = ReadIndexCore()
    leader = ReplicaService(core, KVStore())
    leader.request_backup(NodeId(200), BackupRequest(seq=6), now=0.0)
    leader.abandon_pending()
    [(_, reply)] = leader.take_replies()
    assert isinstance(reply, BackupChunk) and reply.status == "retry"


def test_a_service_without_read_index_refuses_a_backup() -> None:
    service = ReplicaService(ReadIndexCore(), KVStore(), read_mode="log")
    service.request_backup(NodeId(200), BackupRequest(seq=1), now=0.0)
    [(_, reply)] = service.take_replies()
    assert reply.status == "error" and "linearizable" in reply.error
