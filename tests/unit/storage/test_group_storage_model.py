"""Model-based: any sequence of valid multi-group operations (create, drop,
batches of writes across groups, snapshots, compaction, deferred hard
states, reopen) leaves each disk engine answering as ``MemoryStorage`` does,
with tiny WAL segments so rotation and segment deletion happen, and SQLite
also with a tiny tail table so entries move between its tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.storage.storage_types import HardState, Snapshot

from quorate.core.ready import Entry
from quorate.storage import GroupWrite, MemoryStorage, SqliteStorage, WalStorage

GROUP_IDS = [0, 1, 2, 2**63 - 1]
STEPS_MAX = 30
SMALL_SEGMENT_BYTES = 4096


SMALL_TAIL_ROWS = 3


def open_disk(kind: str, path: Path) -> SqliteStorage | WalStorage:
    if kind == "sqlite":
        return SqliteStorage(path, hard_state_type=HardState, snapshot_type=Snapshot)
    if kind == "sqlite-small-tail":  # the tail moves into the entries table often
        return SqliteStorage(
            path, hard_state_type=HardState, snapshot_type=Snapshot, tail_max_rows=SMALL_TAIL_ROWS
        )
    return WalStorage(
        path, hard_state_type=HardState, snapshot_type=Snapshot, segment_bytes=SMALL_SEGMENT_BYTES
    )


def known(store: MemoryStorage) -> list[int]:
    return [0] + [r.group for r in store.groups() if r.group != 0]


def assert_same(model: MemoryStorage, disk: SqliteStorage | WalStorage) -> None:
    assert disk.groups() == model.groups()
    for g in known(model):
        assert (disk.first_index_of(g), disk.last_index_of(g)) == (
            model.first_index_of(g),
            model.last_index_of(g),
        ), g
        expected = model.recover_group(g)
        actual = disk.recover_group(g, HardState, Snapshot)
        assert actual.entries == expected.entries, g
        assert actual.hard_state == expected.hard_state, g
        assert actual.snapshot == expected.snapshot, g


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("sqlite-small-tail", marks=pytest.mark.slow), "wal"]
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_matches_memory_storage(
    kind: str, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("model")
    model = MemoryStorage()
    disk = open_disk(kind, path)
    try:
        for _ in range(data.draw(st.integers(1, STEPS_MAX), label="steps")):
            op = data.draw(
                st.sampled_from(["create", "drop", "batch", "batch", "defer", "compact", "reopen"])
            )
            groups = known(model)
            if op == "create":
                g = data.draw(st.sampled_from(GROUP_IDS[1:]))
                if g in groups:
                    continue
                protocol = data.draw(st.sampled_from(["raft", "pbft"]))
                for store in (model, disk):
                    store.create_group(g, protocol, g.to_bytes(8, "big"))
            elif op == "drop":
                g = data.draw(st.sampled_from(groups))
                for store in (model, disk):
                    store.drop_group(g)
            elif op == "batch":
                chosen = data.draw(st.lists(st.sampled_from(groups), min_size=1, unique=True))
                writes = []
                for g in chosen:
                    back, count, term = data.draw(
                        st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(1, 4))
                    )
                    lo = max(model.first_index_of(g), model.last_index_of(g) + 1 - back)
                    batch = [Entry(term, i, 0, bytes(100)) for i in range(lo, lo + count)]
                    state = data.draw(st.none() | st.integers(0, 9).map(lambda t: HardState(t, None, 0)))
                    snapshot = None
                    if not batch and data.draw(st.booleans()):
                        at = data.draw(st.integers(0, 20))
                        snapshot = Snapshot(at, 1, str(at).encode())
                    writes.append(GroupWrite(g, state, batch, snapshot))
                for store in (model, disk):
                    store.persist_many(writes)
            elif op == "defer":
                g = data.draw(st.sampled_from(groups))
                write = GroupWrite(g, HardState(data.draw(st.integers(0, 9)), None, 1))
                for store in (model, disk):
                    store.persist_many([write], durable=False)
            elif op == "compact":
                g = data.draw(st.sampled_from(groups))
                through = min(data.draw(st.integers(0, 20)), model.last_index_of(g))
                for store in (model, disk):
                    store.compact_group(g, through)
            else:
                disk.close()
                disk = open_disk(kind, path)
            assert_same(model, disk)
        disk.close()
        disk = open_disk(kind, path)
        assert_same(model, disk)
    finally:
        disk.close()
