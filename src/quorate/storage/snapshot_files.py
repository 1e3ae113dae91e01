"""Snapshot files written atomically, shared by the durable storages.

Theory of operation. A snapshot can be large, so the storages keep its bytes
in a file of its own under the node's ``snapshots/`` directory and record
only a small *pointer* (file name, index, term) in their log or database.
``write_snapshot_file`` makes the file durable before anything points at it:
``snap-<index>-<term>.msgpack.tmp`` is written and fsynced, renamed to its
final name, and the directory is fsynced so the rename itself survives a
crash. The caller then commits the pointer in its own atomic write.

Invariant: a file named by a committed pointer is complete. A crash leaves
at worst a torn temp file or a complete file no pointer names (an orphan);
``remove_stray_snapshot_files`` deletes both when the storage is opened, and
``drop_old_snapshot_files`` deletes superseded snapshots once a newer
pointer is committed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

SNAPSHOT_DIR_NAME = "snapshots"
SNAPSHOT_SUFFIX = ".msgpack"
TEMP_SUFFIX = ".tmp"


class SnapshotPointer(msgspec.Struct, frozen=True, array_like=True):
    """What a storage commits to name the snapshot file in force."""

    file_name: str
    index: int
    term: int


def fsync_directory(directory: Path) -> None:
    """Make a create, rename or unlink in ``directory`` durable (POSIX needs
    the directory itself fsynced)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot_file_name(index: int, term: int) -> str:
    # Zero-padded so names sort in log order.
    return f"snap-{index:020d}-{term:020d}{SNAPSHOT_SUFFIX}"


def write_snapshot_file(directory: Path, snapshot: Any, data: bytes) -> SnapshotPointer:
    """Write ``data`` (the encoded ``snapshot``) atomically into ``directory``;
    the caller commits the returned pointer. A snapshot must have an ``index``
    attribute (``term`` is 0 when absent)."""
    index = int(snapshot.index)
    term = int(getattr(snapshot, "term", 0))
    name = snapshot_file_name(index, term)
    final = directory / name
    temp = directory / (name + TEMP_SUFFIX)
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, final)
    fsync_directory(directory)
    return SnapshotPointer(name, index, term)


def remove_stray_snapshot_files(directory: Path, keep: str | None) -> None:
    """Delete torn temp files and every snapshot file but ``keep`` (the one a
    committed pointer names): leftovers of a crash between the rename and the
    pointer's commit, or before superseded files were removed."""
    for child in directory.iterdir():
        if child.name != keep:
            child.unlink(missing_ok=True)


def drop_old_snapshot_files(directory: Path, keep: str) -> None:
    """After a new pointer is committed: delete the snapshots it superseded
    (a temp file being written meanwhile is left alone)."""
    for child in directory.iterdir():
        if child.name != keep and not child.name.endswith(TEMP_SUFFIX):
            child.unlink(missing_ok=True)
