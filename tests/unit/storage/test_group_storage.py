"""Storage keyed by group, the same contract in all three engines: many
groups of different protocols in one store, one durable write (one fsync)
for all of them, a registry that survives a restart, per-group snapshots,
compaction and removal, and a clear refusal of every misuse."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.storage.storage_types import HardState, OtherState, Snapshot, entries

from quorate.errors import ConfigError, LocalProtocolError
from quorate.raft import messages as raft_messages
from quorate.storage import (
    GroupExistsError,
    GroupIdError,
    GroupRecord,
    GroupWrite,
    MemoryStorage,
    SqliteStorage,
    UnknownGroupError,
    WalStorage,
)
from quorate.storage import wal as wal_module
from quorate.storage.layout import SNAPSHOT_DIR_NAME

SMALL_SEGMENT_BYTES = 4096
MANY_GROUPS = 40
BAD_GROUP_IDS: list[Any] = [-1, 2**63, 2**64, "3", 1.5, True, None, [1]]

Store = MemoryStorage | SqliteStorage | WalStorage


class Engine:
    """Opens one engine's store over a directory; ``reopen`` is a restart
    (the memory engine keeps its object, as the simulator does)."""

    def __init__(self, name: str, path: Path, segment_bytes: int = SMALL_SEGMENT_BYTES) -> None:
        self.name = name
        self.path = path
        self.segment_bytes = segment_bytes
        self._memory: MemoryStorage | None = None

    def open(self) -> Store:
        if self.name == "memory":
            if self._memory is None:
                self._memory = MemoryStorage()
            return self._memory
        if self.name == "sqlite":
            return SqliteStorage(self.path)
        return WalStorage(self.path, segment_bytes=self.segment_bytes)

    def reopen(self, store: Store) -> Store:
        close(store)
        return self.open()


def close(store: Store) -> None:
    if not isinstance(store, MemoryStorage):
        store.close()


@pytest.fixture(params=["memory", "sqlite", "wal"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield Engine(request.param, tmp_path)


@pytest.fixture(params=["sqlite", "wal"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield Engine(request.param, tmp_path)


def hard_state_for(group: int, round_: int) -> Any:
    """Groups of three protocols: a Raft-like, a view-based one and Raft's own."""
    if group % 3 == 0:
        return HardState(round_, group % 7, round_)
    if group % 3 == 1:
        return OtherState(round_ * 10 + group)
    return raft_messages.HardState(round_, None, round_)


def types_for(group: int) -> tuple[type[Any], type[Any] | None]:
    if group % 3 == 0:
        return HardState, Snapshot
    if group % 3 == 1:
        return OtherState, None
    return raft_messages.HardState, None


def protocol_for(group: int) -> str:
    return ("raft-like", "view-based", "raft")[group % 3]


def test_many_groups_of_mixed_protocols_round_trip(engine: Engine) -> None:
    groups = [1, 2, 3, 17, 1000, 2**63 - 1, *range(100, 100 + MANY_GROUPS)]
    store = engine.open()
    store.create_groups([(g, protocol_for(g), f"meta-{g}".encode()) for g in groups])
    for round_ in (1, 2, 3):
        lo = (round_ - 1) * 4 + 1
        store.persist_many(
            GroupWrite(g, hard_state_for(g, round_), entries(lo, lo + 3, term=round_))
            for g in groups
        )
    store = engine.reopen(store)
    try:
        assert store.groups() == sorted(
            GroupRecord(g, protocol_for(g), f"meta-{g}".encode()) for g in groups
        )
        for g in groups:
            hard_state_type, snapshot_type = types_for(g)
            recovered = store.recover_group(g, hard_state_type, snapshot_type)
            assert recovered.hard_state == hard_state_for(g, 3)
            assert recovered.entries == entries(1, 4, 1) + entries(5, 8, 2) + entries(9, 12, 3)
            assert recovered.snapshot is None
            assert (store.first_index_of(g), store.last_index_of(g)) == (1, 12)
            assert store.entries_of(g, 5, 7) == entries(5, 6, 2)
        # Group 0, the single-group API's, was never written.
        assert store.recover().entries == [] and store.load_state() is None
    finally:
        close(store)


def test_one_persist_many_is_one_durable_write(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.segment_bytes = 1 << 20  # no segment rotation (its own fsyncs) in between
    store = engine.open()
    groups = list(range(1, 65))
    store.create_groups([(g, "raft", b"") for g in groups])
    store.persist_many([GroupWrite(g, HardState(1, None, 0), entries(1, 1)) for g in groups])
    fsyncs: list[int] = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def counting_fdatasync(fd: int) -> None:
        fsyncs.append(fd)
        real_fdatasync(fd)

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(wal_module.os, "fdatasync", counting_fdatasync)
    monkeypatch.setattr(wal_module.os, "fsync", counting_fsync)
    before = store.writes if isinstance(store, MemoryStorage) else store.transactions
    store.persist_many([GroupWrite(g, HardState(1, 1, 1), entries(2, 9)) for g in groups])
    after = store.writes if isinstance(store, MemoryStorage) else store.transactions
    assert after - before == 1
    if isinstance(store, WalStorage):
        assert len(fsyncs) == 1
    store = engine.reopen(store)
    try:
        assert all(store.last_index_of(g) == 9 for g in groups)
    finally:
        close(store)


def test_a_refused_write_leaves_every_group_unchanged(engine: Engine) -> None:
    store = engine.open()
    store.create_groups([(1, "raft", b""), (2, "raft", b"")])
    store.persist_many([GroupWrite(1, HardState(1, None, 0), entries(1, 2))])
    with pytest.raises(LocalProtocolError, match="gap"):
        store.persist_many(
            [
                GroupWrite(2, HardState(5, 5, 5), entries(1, 3)),
                GroupWrite(1, HardState(9, 9, 9), entries(5, 6)),  # a gap after 2
            ]
        )
    store = engine.reopen(store)
    try:
        assert store.last_index_of(2) == 0 and store.hard_state_of(2) is None
        assert store.last_index_of(1) == 2
        assert store.recover_group(1, HardState).hard_state == HardState(1, None, 0)
    finally:
        close(store)


def test_a_group_may_appear_twice_in_one_batch(engine: Engine) -> None:
    store = engine.open()
    store.create_group(4, "raft")
    store.persist_many(
        [
            GroupWrite(4, HardState(1, None, 0), entries(1, 6, term=1)),
            GroupWrite(4, HardState(2, 2, 0), entries(4, 5, term=2)),  # replaces 4..6
            GroupWrite(4, None, [], Snapshot(2, 1, b"image")),
        ]
    )
    store = engine.reopen(store)
    try:
        recovered = store.recover_group(4, HardState, Snapshot)
        assert recovered.entries == entries(3, 3, 1) + entries(4, 5, 2)
        assert recovered.hard_state == HardState(2, 2, 0)
        assert recovered.snapshot == Snapshot(2, 1, b"image")
    finally:
        close(store)


def test_deferred_hard_states_ride_along_with_any_durable_write(disk: Engine) -> None:
    store = disk.open()
    store.create_groups([(1, "raft", b""), (2, "raft", b""), (3, "raft", b"")])
    store.persist_many([GroupWrite(g, HardState(1, None, 0), entries(1, 1)) for g in (1, 2, 3)])
    store.persist_many(
        [GroupWrite(1, HardState(1, None, 1)), GroupWrite(2, HardState(1, None, 1))],
        durable=False,
    )
    assert store.hard_state_of(1) == HardState(1, None, 1)
    reader = disk.open()  # what a crash now would find
    try:
        assert reader.hard_state_of(1, HardState) == HardState(1, None, 0)
    finally:
        close(reader)
    # A durable write of group 3 alone carries groups 1 and 2 along; group
    # 2's own newer hard state in the same batch wins over its deferred one.
    store.persist_many([GroupWrite(3, None, entries(2, 2)), GroupWrite(2, HardState(2, 2, 1))])
    reader = disk.open()
    try:
        assert reader.hard_state_of(1, HardState) == HardState(1, None, 1)
        assert reader.hard_state_of(2, HardState) == HardState(2, 2, 1)
        assert reader.hard_state_of(3, HardState) == HardState(1, None, 0)
    finally:
        close(reader)
    store.persist_many([GroupWrite(3, HardState(1, None, 2))], durable=False)
    store = disk.reopen(store)  # close writes it
    try:
        assert store.hard_state_of(3, HardState) == HardState(1, None, 2)
    finally:
        close(store)


def test_memory_discards_unsynced_hard_states_like_a_power_loss() -> None:
    store = MemoryStorage()
    store.create_group(1, "raft")
    store.persist_many([GroupWrite(1, HardState(1, None, 0), entries(1, 1))])
    store.persist_many([GroupWrite(1, HardState(1, None, 1))], durable=False)
    store.persist(HardState(3, None, 3), [], None, durable=False)
    assert store.recover_group(1).hard_state == HardState(1, None, 1)
    assert store.recover().hard_state == HardState(3, None, 3)
    store.discard_unsynced()
    assert store.recover_group(1).hard_state == HardState(1, None, 0)
    assert store.recover().hard_state is None


def test_drop_group_removes_everything_of_that_group_only(engine: Engine) -> None:
    store = engine.open()
    store.create_groups([(1, "raft", b"a"), (2, "pbft", b"b")])
    for g in (1, 2):
        store.persist_many([GroupWrite(g, HardState(1, None, 3), entries(1, 5))])
        store.persist_many([GroupWrite(g, None, [], Snapshot(3, 1, b"image"))])
    store.drop_group(1)
    assert store.groups() == [GroupRecord(2, "pbft", b"b")]
    with pytest.raises(UnknownGroupError):
        store.recover_group(1)
    with pytest.raises(UnknownGroupError):
        store.persist_many([GroupWrite(1, None, entries(1, 1))])
    if engine.name != "memory":
        names = sorted(p.name for p in (engine.path / SNAPSHOT_DIR_NAME).iterdir())
        assert names == ["group-00000000000000000002-snap-00000000000000000003-00000000000000000001.msgpack"]
    store = engine.reopen(store)
    try:
        assert store.groups() == [GroupRecord(2, "pbft", b"b")]
        recovered = store.recover_group(2, HardState, Snapshot)
        assert recovered.entries == entries(4, 5)
        assert recovered.snapshot == Snapshot(3, 1, b"image")
        # The same id created again starts empty.
        store.create_group(1, "hotstuff")
        assert store.recover_group(1, HardState, Snapshot).entries == []
        assert store.hard_state_of(1) is None and store.snapshot_of(1) is None
    finally:
        close(store)


def test_snapshots_and_compaction_are_per_group(engine: Engine) -> None:
    store = engine.open()
    store.create_groups([(1, "raft", b""), (2, "raft", b"")])
    store.persist_many([GroupWrite(g, None, entries(1, 10)) for g in (1, 2)])
    store.persist_many([GroupWrite(1, None, [], Snapshot(6, 1, b"one"))])
    store.compact_group(2, 3)
    store.persist_many([GroupWrite(2, None, entries(21, 22, term=4), Snapshot(20, 4, b"two"))])
    store = engine.reopen(store)
    try:
        one = store.recover_group(1, HardState, Snapshot)
        two = store.recover_group(2, HardState, Snapshot)
        assert (one.snapshot, one.entries) == (Snapshot(6, 1, b"one"), entries(7, 10))
        assert (two.snapshot, two.entries) == (Snapshot(20, 4, b"two"), entries(21, 22, term=4))
        assert store.first_index_of(1) == 7 and store.first_index_of(2) == 21
    finally:
        close(store)


def test_a_group_storage_view_is_one_groups_node_storage(engine: Engine) -> None:
    store = engine.open()
    store.create_group(9, "raft")
    view = store.group(9, HardState, Snapshot)
    view.persist(HardState(1, None, 0), entries(1, 4), None)
    view.store(entries(5, 5))
    view.save_snapshot(Snapshot(2, 1, b"s"))
    view.compact(3)
    view.save_state(HardState(2, None, 1))
    assert (view.first_index(), view.last_index()) == (4, 5)
    assert view.entries(1, 99) == entries(4, 5)
    assert view.load_state() == HardState(2, None, 1)
    assert view.load_snapshot() == Snapshot(2, 1, b"s")
    assert view.recover().entries == entries(4, 5)
    assert store.last_index() == 0  # group 0 untouched
    close(store)


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("bad", BAD_GROUP_IDS, ids=repr)
def test_a_malformed_group_id_is_refused_everywhere(engine: Engine, bad: Any) -> None:
    store = engine.open()
    calls: list[Callable[[], object]] = [
        lambda: store.persist_many([GroupWrite(bad, None, entries(1, 1))]),
        lambda: store.persist_many([GroupWrite(bad, HardState(1, None, 0))], durable=False),
        lambda: store.recover_group(bad),
        lambda: store.create_group(bad, "raft"),
        lambda: store.drop_group(bad),
        lambda: store.compact_group(bad, 1),
        lambda: store.first_index_of(bad),
        lambda: store.entries_of(bad, 1, 2),
        lambda: store.hard_state_of(bad),
        lambda: store.group(bad),
    ]
    try:
        for call in calls:
            with pytest.raises(GroupIdError, match="group id"):
                call()
        assert isinstance(GroupIdError("x"), ConfigError)
        assert store.groups() == []
    finally:
        close(store)


def test_an_unknown_group_is_refused(engine: Engine) -> None:
    store = engine.open()
    try:
        for call in (
            lambda: store.persist_many([GroupWrite(5, None, entries(1, 1))]),
            lambda: store.recover_group(5),
            lambda: store.drop_group(5),
            lambda: store.compact_group(5, 1),
            lambda: store.group(5),
        ):
            with pytest.raises(UnknownGroupError, match="group 5 is not hosted"):
                call()
    finally:
        close(store)


def test_creating_a_group_twice_is_refused(engine: Engine) -> None:
    store = engine.open()
    try:
        store.create_group(3, "raft")
        with pytest.raises(GroupExistsError):
            store.create_group(3, "pbft")
        with pytest.raises(GroupExistsError):
            store.create_groups([(4, "raft", b""), (4, "raft", b"")])
        assert store.groups() == [GroupRecord(3, "raft", b"")]
    finally:
        close(store)


@pytest.mark.parametrize(
    ("protocol", "meta"),
    [("", b""), (7, b""), ("x" * 256, b""), ("raft", "not bytes"), ("raft", bytes(2**20 + 1))],
    ids=["empty-name", "int-name", "long-name", "str-meta", "huge-meta"],
)
def test_a_bad_registry_row_is_refused(engine: Engine, protocol: Any, meta: Any) -> None:
    store = engine.open()
    try:
        with pytest.raises(ConfigError, match="group 3"):
            store.create_group(3, protocol, meta)
        assert store.groups() == []
    finally:
        close(store)


def test_entries_cannot_be_deferred(engine: Engine) -> None:
    store = engine.open()
    try:
        store.create_group(1, "raft")
        with pytest.raises(LocalProtocolError, match="durably"):
            store.persist_many([GroupWrite(1, None, entries(1, 1))], durable=False)
        with pytest.raises(LocalProtocolError, match="GroupWrite"):
            store.persist_many([(1, None, [], None)])  # type: ignore[list-item]
    finally:
        close(store)


def test_a_group_decoded_with_another_protocols_type_fails_loudly(disk: Engine) -> None:
    store = disk.open()
    try:
        store.create_group(8, "raft")
        store.persist_many([GroupWrite(8, HardState(1, None, 0), [], Snapshot(0, 0, b""))])
        with pytest.raises(LocalProtocolError, match="group 8: stored hard_state has type"):
            store.recover_group(8, OtherState)
        with pytest.raises(LocalProtocolError, match="group 8: stored snapshot has type"):
            store.recover_group(8, HardState, OtherState)
        assert store.recover_group(8, HardState, Snapshot).hard_state == HardState(1, None, 0)
    finally:
        close(store)
