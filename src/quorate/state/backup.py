"""Backups of the replicated store: the snapshot file and how it travels.

Theory of operation.

- *Consistent and linearizable.* A client asks a node for a backup
  (``BackupRequest`` with ``image == 0``). The replica service takes it like
  a linearizable read (Raft thesis §6.4, ReadIndex): the leader confirms its
  leadership, waits until it has applied everything committed when the
  request arrived, then encodes the store (``KVStore.snapshot``) at that
  applied index. The image therefore holds every write acknowledged before
  the request was sent, and is one state the cluster really went through.
  A node that is not the leader answers ``redirect``.
- *Chunks.* An image can outgrow one frame, so the node keeps it (the latest
  ``MAX_HELD_IMAGES``) under an id and answers with one ``BackupChunk`` of at
  most ``BACKUP_CHUNK_BYTES`` at a time; the client asks for the next offset
  of the same image (any node role: the image is already taken). The first
  chunk says the image's index, term, size and SHA-256, which the client
  checks when it has every byte.
- *The file* (``encode_backup_file`` / ``decode_backup_file``)::

      MAGIC                 "QUORATE-SNAPSHOT\\n", 17 bytes
      header length         4 bytes, big-endian
      header                msgpack: format version, protocol, index, term,
                            created-at (Unix seconds), data length
      data                  the store's own snapshot encoding
      checksum              SHA-256 of everything above, 32 bytes

  Decoding refuses, with a ``BackupFileError`` saying which, a file that is
  not a snapshot, is cut short, has trailing bytes, fails its checksum or has
  a format version this code does not know. Writing it atomically (temp
  file, fsync, rename, fsync of the directory) is the caller's job, as is
  building a data directory from it (``quorate snapshot restore``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import msgspec

from quorate.core.wire import WireMessage
from quorate.errors import QuorateError

MAGIC = b"QUORATE-SNAPSHOT\n"
BACKUP_FORMAT_VERSION = 1
BACKUP_CHUNK_BYTES = 4 * 1024 * 1024
"""Image bytes per ``BackupChunk``: well inside a frame (16 MiB)."""
MAX_HELD_IMAGES = 2
"""Images a node keeps for clients still fetching them (oldest dropped)."""
_LENGTH = struct.Struct(">I")
_CHECKSUM_BYTES = 32
MAX_HEADER_BYTES = 64 * 1024


class BackupRequest(WireMessage, tag="client.Backup", frozen=True):
    """``image == 0``: take a new image (linearizable); else the chunk of
    image ``image`` that starts at ``offset``."""

    seq: int
    image: int = 0
    offset: int = 0


class BackupChunk(WireMessage, tag="client.BackupChunk", frozen=True):
    """``status`` is ok | redirect | retry | error (as for ``ClientReply``);
    when ok, ``data`` is the image's bytes from ``offset``."""

    seq: int
    status: str
    leader: int | None = None
    error: str = ""
    image: int = 0
    index: int = 0
    term: int = 0
    total_bytes: int = 0
    sha256: bytes = b""
    offset: int = 0
    data: bytes = b""


BACKUP_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (BackupRequest, BackupChunk)


class BackupFileError(QuorateError, ValueError):
    """The file is not a complete, intact quorate snapshot."""


class BackupHeader(msgspec.Struct, array_like=True, frozen=True):
    format_version: int
    protocol: str
    index: int
    term: int
    created_at_s: float
    data_bytes: int


@dataclass(frozen=True, slots=True)
class BackupFile:
    header: BackupHeader
    data: bytes


def encode_backup_file(protocol: str, index: int, term: int, created_at_s: float, data: bytes) -> bytes:
    header = msgspec.msgpack.encode(
        BackupHeader(BACKUP_FORMAT_VERSION, protocol, index, term, created_at_s, len(data))
    )
    body = MAGIC + _LENGTH.pack(len(header)) + header + data
    return body + hashlib.sha256(body).digest()


def decode_backup_file(raw: bytes) -> BackupFile:
    """The header and data of a snapshot file; ``BackupFileError`` otherwise."""
    if not raw.startswith(MAGIC):
        if MAGIC.startswith(raw):
            raise BackupFileError("truncated: the file ends inside its header")
        raise BackupFileError("not a quorate snapshot file")
    at = len(MAGIC)
    if len(raw) < at + _LENGTH.size:
        raise BackupFileError("truncated: the file ends inside its header")
    (header_bytes,) = _LENGTH.unpack_from(raw, at)
    at += _LENGTH.size
    if header_bytes > MAX_HEADER_BYTES:
        raise BackupFileError(f"corrupt: a header of {header_bytes} bytes")
    if len(raw) < at + header_bytes:
        raise BackupFileError("truncated: the file ends inside its header")
    try:
        header = msgspec.msgpack.decode(raw[at : at + header_bytes], type=BackupHeader)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise BackupFileError("corrupt: the header does not decode") from None
    at += header_bytes
    expected = at + header.data_bytes + _CHECKSUM_BYTES
    if len(raw) < expected:
        raise BackupFileError(f"truncated: {len(raw)} bytes of the {expected} the header announces")
    if len(raw) > expected:
        raise BackupFileError(f"corrupt: {len(raw) - expected} bytes after the checksum")
    body, checksum = raw[: expected - _CHECKSUM_BYTES], raw[expected - _CHECKSUM_BYTES :]
    if hashlib.sha256(body).digest() != checksum:
        raise BackupFileError("checksum mismatch: the file is corrupt")
    if header.format_version != BACKUP_FORMAT_VERSION:
        raise BackupFileError(
            f"format version {header.format_version}; this quorate reads version {BACKUP_FORMAT_VERSION}"
        )
    return BackupFile(header, raw[at : at + header.data_bytes])
