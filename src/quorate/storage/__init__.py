"""Durable state of a node behind small interfaces (after hashicorp/raft):
``LogStore``, ``StableStore``, ``SnapshotStore``; ``MemoryStorage`` keeps them in
memory for the simulator, where a crash loses volatile state but not these."""

from quorate.storage.base import LogStore, NodeStorage, Recovered, SnapshotStore, StableStore
from quorate.storage.memory import MemoryStorage
from quorate.storage.sqlite import SqliteStorage

__all__ = [
    "LogStore",
    "MemoryStorage",
    "NodeStorage",
    "Recovered",
    "SnapshotStore",
    "SqliteStorage",
    "StableStore",
]
