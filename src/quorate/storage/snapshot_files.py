"""Snapshot files written atomically, shared by the durable storages.

Theory of operation. A snapshot can be large, so the storages keep its bytes
in a file of its own under the node's ``snapshots/`` directory and record
only a small *pointer* (file name, index, term) in their log or database.
``write_snapshot_file`` makes the file durable before anything points at it:
``snap-<index>-<term>.msgpack.tmp`` is written and fsynced, renamed to its
final name, and the directory is fsynced so the rename itself survives a
crash. The caller then commits the pointer in its own atomic write.

Each group's files carry the group in their names
(``snapshot_file_prefix``), so one directory serves every group of a node.

Invariant: a file named by a committed pointer is complete. A crash leaves
at worst a torn temp file or a complete file no pointer names (an orphan);
``remove_stray_snapshot_files`` deletes both when the storage is opened,
``drop_old_snapshot_files`` deletes a group's superseded snapshots once a
newer pointer is committed, and ``drop_group_snapshot_files`` a dropped
group's.
"""

from __future__ import annotations

import os
from collections.abc import Collection
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


def snapshot_file_prefix(group: int) -> str:
    """What the names of ``group``'s snapshot files begin with. Group 0 (the
    single-group API's) keeps the plain ``snap-`` names; the prefixes of two
    groups are never prefixes of each other (the id is zero-padded)."""
    return "snap-" if group == 0 else f"group-{group:020d}-snap-"


def snapshot_file_name(index: int, term: int, group: int = 0) -> str:
    # Zero-padded so names sort in log order.
    return f"{snapshot_file_prefix(group)}{index:020d}-{term:020d}{SNAPSHOT_SUFFIX}"


def write_snapshot_files(
    directory: Path, snapshots: list[tuple[int, Any, bytes]]
) -> list[SnapshotPointer]:
    """Write each ``(group, snapshot, encoded bytes)`` atomically into
    ``directory``, with one directory fsync for all the renames; the caller
    commits the returned pointers. A snapshot must have an ``index``
    attribute (``term`` is 0 when absent)."""
    pointers = []
    temps = []
    for group, snapshot, data in snapshots:
        index = int(snapshot.index)
        term = int(getattr(snapshot, "term", 0))
        name = snapshot_file_name(index, term, group)
        temp = directory / (name + TEMP_SUFFIX)
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        temps.append((temp, directory / name))
        pointers.append(SnapshotPointer(name, index, term))
    for temp, final in temps:
        os.replace(temp, final)
    if temps:
        fsync_directory(directory)
    return pointers


def write_snapshot_file(
    directory: Path, snapshot: Any, data: bytes, group: int = 0
) -> SnapshotPointer:
    """Write ``data`` (the encoded ``snapshot``) atomically into ``directory``;
    the caller commits the returned pointer."""
    [pointer] = write_snapshot_files(directory, [(group, snapshot, data)])
    return pointer


def remove_stray_snapshot_files(directory: Path, keep: Collection[str]) -> None:
    """Delete torn temp files and every snapshot file but those in ``keep``
    (the ones committed pointers name): leftovers of a crash between the
    rename and the pointer's commit, before superseded files were removed,
    or before a dropped group's files were removed."""
    for child in directory.iterdir():
        if child.name not in keep:
            child.unlink(missing_ok=True)


def drop_old_snapshot_files(directory: Path, keep: str, group: int = 0) -> None:
    """After a new pointer of ``group`` is committed: delete the group's
    snapshots it superseded (a temp file being written meanwhile is left alone)."""
    prefix = snapshot_file_prefix(group)
    for child in directory.iterdir():
        name = child.name
        if name != keep and name.startswith(prefix) and not name.endswith(TEMP_SUFFIX):
            child.unlink(missing_ok=True)


def drop_group_snapshot_files(directory: Path, group: int) -> None:
    """After ``group``'s removal is committed: delete all its snapshot files."""
    prefix = snapshot_file_prefix(group)
    for child in directory.iterdir():
        if child.name.startswith(prefix):
            child.unlink(missing_ok=True)
