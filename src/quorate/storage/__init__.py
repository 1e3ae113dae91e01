"""Durable state of a node behind small interfaces (after hashicorp/raft):
``LogStore``, ``StableStore``, ``SnapshotStore``, keyed by group so one store
serves every protocol group a node hosts (``GroupKeyedStorage``:
``persist_many`` with one fsync for all groups, a registry of groups,
per-group recovery). ``MemoryStorage`` keeps them in memory for the
simulator, where a crash loses volatile state but not these;
``SqliteStorage`` and ``WalStorage`` (a segmented write-ahead log) keep them
on disk for real nodes; ``open_storage`` opens a data directory by engine name."""

from quorate.storage.base import (
    GroupExistsError,
    GroupIdError,
    GroupKeyedStorage,
    GroupRecord,
    GroupStorage,
    GroupWrite,
    LogStore,
    NodeStorage,
    Recovered,
    SnapshotStore,
    StableStore,
    UnknownGroupError,
    check_group_id,
)
from quorate.storage.engines import ENGINES, DiskStorage, open_storage
from quorate.storage.memory import MemoryStorage
from quorate.storage.sqlite import SqliteStorage
from quorate.storage.wal import WalStorage

__all__ = [
    "ENGINES",
    "DiskStorage",
    "GroupExistsError",
    "GroupIdError",
    "GroupKeyedStorage",
    "GroupRecord",
    "GroupStorage",
    "GroupWrite",
    "LogStore",
    "MemoryStorage",
    "NodeStorage",
    "Recovered",
    "SnapshotStore",
    "SqliteStorage",
    "StableStore",
    "UnknownGroupError",
    "WalStorage",
    "check_group_id",
    "open_storage",
]
