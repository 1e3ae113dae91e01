"""Opening a node's data directory with the engine its configuration names.

``open_storage("sqlite" | "wal", data_dir)`` returns the engine, which
refuses a directory holding the other engine's data (``ConfigError``, see
``quorate.storage.layout``); an unknown engine name is a ``ConfigError`` too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from quorate.storage.layout import ENGINES, refuse_other_engine
from quorate.storage.sqlite import SqliteStorage
from quorate.storage.wal import WalStorage

__all__ = ["ENGINES", "DiskStorage", "open_storage"]

DiskStorage = SqliteStorage | WalStorage
"""A durable engine: either keeps every group of a node."""


def open_storage(
    engine: str,
    data_dir: str | os.PathLike[str],
    *,
    hard_state_type: type[Any] | None = None,
    snapshot_type: type[Any] | None = None,
) -> DiskStorage:
    """Open ``data_dir`` with ``engine`` (one of ``ENGINES``); the types are
    group 0's, for the single-group API."""
    directory = Path(data_dir)
    refuse_other_engine(directory, engine)
    if engine == "wal":
        return WalStorage(directory, hard_state_type=hard_state_type, snapshot_type=snapshot_type)
    return SqliteStorage(directory, hard_state_type=hard_state_type, snapshot_type=snapshot_type)
