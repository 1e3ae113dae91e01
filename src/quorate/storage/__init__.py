"""Durable state of a node behind small interfaces (after hashicorp/raft):
``LogStore``, ``StableStore``, ``SnapshotStore``; ``MemoryStorage`` keeps them in
memory for the simulator, where a crash loses volatile state but not these;
``SqliteStorage`` and ``WalStorage`` (a segmented write-ahead log) keep them on
disk for real nodes."""

from quorate.storage.base import LogStore, NodeStorage, Recovered, SnapshotStore, StableStore
from quorate.storage.memory import MemoryStorage
from quorate.storage.sqlite import SqliteStorage
from quorate.storage.wal import WalStorage

__all__ = [
    "LogStore",
    "MemoryStorage",
    "NodeStorage",
    "Recovered",
    "SnapshotStore",
    "SqliteStorage",
    "StableStore",
    "WalStorage",
]
