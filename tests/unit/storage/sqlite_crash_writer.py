"""A writer for the crash test: persists a stream of batches to a SqliteStorage
and prints the last index of each batch once ``persist`` has returned.

Usage: python sqlite_crash_writer.py DIR BATCH_ENTRIES
Entry ``i`` carries ``payload(i)`` so the reader can check contents too.
"""

from __future__ import annotations

import sys

import msgspec

from quorate.core.ready import Entry
from quorate.storage.sqlite import SqliteStorage


class HardState(msgspec.Struct, frozen=True, array_like=True):
    term: int
    vote: int | None
    commit: int


def payload(index: int) -> bytes:
    return f"command-{index}".encode() * 8


def main() -> None:
    directory, batch = sys.argv[1], int(sys.argv[2])
    storage = SqliteStorage(directory, hard_state_type=HardState)
    index = storage.last_index()
    while True:
        entries = [Entry(1, i, 0, payload(i)) for i in range(index + 1, index + 1 + batch)]
        index += batch
        storage.persist(HardState(1, 1, index), entries, None)
        sys.stdout.write(f"{index}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
