"""What a node's data directory holds, and which engine wrote it.

A data directory belongs to one engine for its whole life: ``log.db`` (and
SQLite's ``-wal``/``-shm`` companions) for ``SqliteStorage``, ``wal/`` for
``WalStorage``; both keep snapshots in ``snapshots/``. Opening a directory
with the other engine would start an empty log beside the real one and lose
every acknowledged write, so both engines refuse it with a ``ConfigError``.
"""

from __future__ import annotations

from pathlib import Path

from quorate.errors import ConfigError

ENGINES = ("sqlite", "wal")
"""The durable engines, by the name a node's configuration uses."""
DB_FILE_NAME = "log.db"
WAL_DIR_NAME = "wal"
SNAPSHOT_DIR_NAME = "snapshots"


def engine_found(data_dir: Path) -> str | None:
    """Which engine's files ``data_dir`` holds (``None``: neither yet)."""
    if (data_dir / DB_FILE_NAME).is_file():
        return "sqlite"
    wal = data_dir / WAL_DIR_NAME
    if wal.is_dir() and any(wal.iterdir()):
        return "wal"
    return None


def refuse_other_engine(data_dir: Path, engine: str) -> None:
    """``ConfigError`` when ``data_dir`` holds the data of another engine than ``engine``."""
    if engine not in ENGINES:
        raise ConfigError(f"storage must be one of {', '.join(ENGINES)}, got {engine!r}")
    found = engine_found(data_dir)
    if found is not None and found != engine:
        other = DB_FILE_NAME if found == "sqlite" else WAL_DIR_NAME
        raise ConfigError(
            f"{data_dir} holds data of the other storage engine ({other}); "
            f"set storage to match it, or use an empty data_dir for {engine!r}"
        )
