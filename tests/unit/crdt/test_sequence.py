"""The list CRDT of arbitrary values: local edits and range reads, the text's
non-interleaving order, convergence, deltas and the saved form."""

from __future__ import annotations

import random
from typing import Any

import pytest

from quorate.crdt import ListDelta, ReplicatedList
from quorate.errors import LocalProtocolError, RemoteProtocolError


def synced(*lists: ReplicatedList) -> None:
    for a in lists:
        for b in lists:
            if a is not b:
                a.merge(b)


def test_local_edits_and_range_reads() -> None:
    items = ReplicatedList(1)
    items.insert(0, [{"task": "a"}, 2, "three", None, [4, 5]])
    items.append(b"six")
    assert len(items) == 6
    assert items[0] == {"task": "a"} and items[-1] == b"six"
    assert items[1:4] == [2, "three", None] and items.range(3, 99) == [None, [4, 5], b"six"]
    assert items[::2] == [{"task": "a"}, "three", [4, 5]]
    items.delete(1, 2)
    assert items.to_list() == [{"task": "a"}, None, [4, 5], b"six"]
    items.move(0, 3)
    assert list(items) == [None, [4, 5], b"six", {"task": "a"}]
    with pytest.raises(IndexError):
        items[4]
    with pytest.raises(LocalProtocolError):
        items.insert(9, [1])
    with pytest.raises(LocalProtocolError):
        items.move(0, 4)
    with pytest.raises(LocalProtocolError):
        items.insert(0, [object()])


@pytest.mark.parametrize("backwards", [False, True])
def test_concurrent_runs_at_one_place_do_not_interleave(backwards: bool) -> None:
    a, b = ReplicatedList(1), ReplicatedList(2)
    a.insert(0, ["start", "end"])
    synced(a, b)
    for replica, name in ((a, "a"), (b, "b")):
        for k in range(4):
            if backwards:
                replica.insert(1, [f"{name}{3 - k}"])
            else:
                replica.insert(1 + k, [f"{name}{k}"])
    synced(a, b)
    assert a.to_list() == b.to_list()
    middle = a[1:9]
    runs = ["".join(x[0] for x in middle[:4]), "".join(x[0] for x in middle[4:])]
    assert sorted(runs) == ["aaaa", "bbbb"]
    for block in (middle[:4], middle[4:]):
        assert [int(x[1]) for x in block] == [0, 1, 2, 3]


@pytest.mark.parametrize("seed", range(20))
def test_random_editing_on_several_replicas_converges(seed: int) -> None:
    rng = random.Random(seed)
    replicas = [ReplicatedList(r) for r in range(4)]
    for step in range(120):
        doc = rng.choice(replicas)
        roll = rng.random()
        n = len(doc)
        if n and roll < 0.25:
            pos = rng.randrange(n)
            doc.delete(pos, rng.randint(1, min(3, n - pos)))
        elif n > 1 and roll < 0.35:
            doc.move(rng.randrange(n), rng.randrange(n))
        else:
            doc.insert(
                rng.randint(0, n), [{"step": step, "k": k} for k in range(rng.randint(1, 3))]
            )
        if rng.random() < 0.3:
            doc.merge(rng.choice(replicas))
    synced(*replicas)
    first = replicas[0].to_list()
    assert all(r.to_list() == first for r in replicas)
    assert all(r.pending == 0 for r in replicas)


def test_deltas_apply_in_any_order_with_duplicates_and_through_bytes() -> None:
    rng = random.Random(4)
    source = [ReplicatedList(r) for r in range(3)]
    deltas: list[ListDelta] = []
    for step in range(60):
        doc = rng.choice(source)
        if len(doc) and rng.random() < 0.3:
            deltas.append(doc.delete(rng.randrange(len(doc))))
        else:
            deltas.append(doc.insert(rng.randint(0, len(doc)), [step, str(step)]))
    synced(*source)
    receiver = ReplicatedList(9)
    order = deltas + deltas[:20]
    rng.shuffle(order)
    for delta in order:
        receiver.apply(ListDelta.decode(delta.encode()))
    assert receiver.pending == 0
    assert receiver.to_list() == source[0].to_list()


def test_delta_since_serves_a_peer_that_missed_deleted_elements() -> None:
    a, b = ReplicatedList(1), ReplicatedList(2)
    a.insert(0, ["x", "y", "z"])
    a.delete(1)
    delta = a.delta_since(b.version)
    assert [v for vs in delta.values for v in vs] == ["x", None, "z"]
    b.apply(delta)
    assert b.to_list() == ["x", "z"]


def test_saved_list_loads_and_keeps_editing() -> None:
    a = ReplicatedList(1)
    a.insert(0, [1, [2, 3], {"four": 4}])
    a.delete(0)
    b = ReplicatedList(2)
    b.merge(a)
    b.insert(2, ["five"])
    a.merge(b)
    loaded = ReplicatedList.decode(a.encode(), 7)
    assert loaded.to_list() == a.to_list() == [[2, 3], {"four": 4}, "five"]
    loaded.insert(0, ["zero"])
    a.merge(loaded)
    assert a.to_list() == ["zero", [2, 3], {"four": 4}, "five"]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: ListDelta(d.operations, []),
        lambda d: ListDelta(d.operations, [[1]]),
    ],
)
def test_malformed_deltas_are_refused_before_any_change(mangle: Any) -> None:
    a = ReplicatedList(1)
    delta = a.insert(0, ["p", "q"])
    b = ReplicatedList(2)
    with pytest.raises(RemoteProtocolError):
        b.apply(mangle(delta))
    assert len(b) == 0 and b.version == {}
    with pytest.raises(RemoteProtocolError):
        ReplicatedList.decode(delta.encode(), 3)  # a delta is not a saved list


def test_concurrent_moves_of_one_element_keep_both_copies() -> None:
    """Move is delete + insert: each mover re-inserts the value it moved."""
    a, b = ReplicatedList(1), ReplicatedList(2)
    a.insert(0, ["m", "x", "y"])
    synced(a, b)
    a.move(0, 2)
    b.move(0, 1)
    synced(a, b)
    assert a.to_list() == b.to_list()
    assert sorted(a.to_list()) == ["m", "m", "x", "y"]
