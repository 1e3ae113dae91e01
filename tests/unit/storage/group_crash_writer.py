"""A writer for the many-groups crash test: persists rounds of writes to
every group of a store with ``persist_many`` and prints each event once the
call that made it durable has returned.

Usage: python group_crash_writer.py ENGINE DIR (with the repository root on
PYTHONPATH).

Round ``r`` appends ``BATCH_ENTRIES`` entries to each of the ``BASE_GROUPS``
groups (and to the churn group alive then), with a hard state whose commit
is the group's new last index; one base group per round also installs a
snapshot of its log so far, in the same write. After every
``CHURN_EVERY_ROUNDS`` rounds the previous churn group is dropped and a new
one created. Groups run two protocols with different hard-state types.
Printed lines: ``round R``, ``drop G``, ``create G``.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.unit.storage.storage_types import HardState, OtherState, Snapshot

from quorate.core.ready import Entry
from quorate.storage import GroupWrite, SqliteStorage, WalStorage

BASE_GROUPS = 16
BATCH_ENTRIES = 3
CHURN_EVERY_ROUNDS = 5
CHURN_GROUP_BASE = 100
SEGMENT_BYTES = 16384
PROTOCOL_TYPES: dict[str, type[Any]] = {"raft-like": HardState, "view-based": OtherState}


def protocol_of(group: int) -> str:
    return "raft-like" if group % 2 == 0 else "view-based"


def hard_state(group: int, commit: int) -> Any:
    if protocol_of(group) == "raft-like":
        return HardState(1, group, commit)
    return OtherState(commit)


def commit_of(state: Any) -> int:
    return int(state.commit if isinstance(state, HardState) else state.view)


def payload(group: int, index: int) -> bytes:
    return f"g{group}-i{index}".encode() * 3


def churn_group(k: int) -> int:
    """The group created after round ``k * CHURN_EVERY_ROUNDS``."""
    return CHURN_GROUP_BASE + k


def open_store(engine: str, directory: str) -> SqliteStorage | WalStorage:
    if engine == "sqlite":
        return SqliteStorage(directory)
    return WalStorage(directory, segment_bytes=SEGMENT_BYTES)


def main() -> None:
    engine, directory = sys.argv[1], sys.argv[2]
    store = open_store(engine, directory)
    base = list(range(1, BASE_GROUPS + 1))
    store.create_groups([(g, protocol_of(g), b"base") for g in base])
    churn: int | None = None
    churn_start = 0  # the round before the churn group's first
    round_ = 0
    while True:
        round_ += 1
        writes = []
        snapshotting = base[round_ % BASE_GROUPS]
        for g in base:
            lo = (round_ - 1) * BATCH_ENTRIES + 1
            hi = round_ * BATCH_ENTRIES
            snapshot = Snapshot(lo - 1, 1, b"image") if g == snapshotting else None
            batch = [Entry(1, i, 0, payload(g, i)) for i in range(lo, hi + 1)]
            writes.append(GroupWrite(g, hard_state(g, hi), batch, snapshot))
        if churn is not None:
            lo = (round_ - churn_start - 1) * BATCH_ENTRIES + 1
            hi = lo + BATCH_ENTRIES - 1
            batch = [Entry(1, i, 0, payload(churn, i)) for i in range(lo, hi + 1)]
            writes.append(GroupWrite(churn, hard_state(churn, hi), batch))
        store.persist_many(writes)
        print(f"round {round_}", flush=True)
        if round_ % CHURN_EVERY_ROUNDS == 0:
            if churn is not None:
                store.drop_group(churn)
                print(f"drop {churn}", flush=True)
            churn = churn_group(round_ // CHURN_EVERY_ROUNDS)
            store.create_group(churn, protocol_of(churn), b"churn")
            churn_start = round_
            print(f"create {churn}", flush=True)


if __name__ == "__main__":
    main()
