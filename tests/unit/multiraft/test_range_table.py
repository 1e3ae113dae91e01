"""The range table (the meta group's state machine) and the client's range cache:
every refusal with its reason, and the tiling kept by any sequence of commands."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.errors import ConfigError
from quorate.multiraft import RangeCache, RangeDescriptor, RangeTable, check_tiling, initial_ranges
from quorate.multiraft.table import (
    ChangeReplicas,
    LookupKey,
    LookupRange,
    MetaResult,
    SplitRange,
    decode_meta_result,
    encode_meta_op,
)


def table(*splits: str, nodes: int = 5) -> RangeTable:
    ids = list(range(1, nodes + 1))
    return RangeTable(initial_ranges(list(splits), ids, 3), ids)


def apply(t: RangeTable, op: object) -> MetaResult:
    return t.apply(t.applied_index + 1, encode_meta_op(op))  # type: ignore[arg-type]


def test_an_overlapping_entry_is_refused_with_its_reason() -> None:
    ranges = [
        RangeDescriptor(1, "", "m", (1, 2, 3)),
        RangeDescriptor(2, "g", None, (2, 3, 4)),
    ]
    with pytest.raises(ConfigError, match=r"overlaps range 1"):
        RangeTable(ranges)
    assert "belong to no range" in (check_tiling([RangeDescriptor(1, "", "m", (1,)), RangeDescriptor(2, "q", None, (1,))]) or "")
    assert "belong to no range" in (check_tiling([RangeDescriptor(1, "b", None, (1,))]) or "")
    assert "appears twice" in (check_tiling([RangeDescriptor(1, "", "m", (1,)), RangeDescriptor(1, "m", None, (1,))]) or "")
    assert "repeat a node" in (check_tiling([RangeDescriptor(1, "", None, (1, 1))]) or "")


@pytest.mark.parametrize("bad_id", [0, -1, 1 << 63])
def test_a_malformed_range_id_is_refused(bad_id: int) -> None:
    with pytest.raises(ConfigError, match="not a group id"):
        RangeTable([RangeDescriptor(bad_id, "", None, (1,))])


def test_a_split_of_a_nonexistent_range_is_refused() -> None:
    t = table("k")
    result = apply(t, SplitRange(99, 1, "x"))
    assert not result.ok and result.error == "no range 99"
    assert len(t) == 2


def test_a_bad_split_is_refused_and_changes_nothing() -> None:
    t = table("k")
    before = t.snapshot()
    outside = apply(t, SplitRange(1, 1, "z"))
    assert not outside.ok and "not inside range 1" in (outside.error or "")
    at_start = apply(t, SplitRange(2, 1, "k"))
    assert not at_start.ok and "not inside" in (at_start.error or "")
    stale = apply(t, SplitRange(1, 7, "c"))
    assert not stale.ok and "generation 1, not 7" in (stale.error or "")
    assert t.snapshot() == before


def test_a_split_gives_a_new_id_and_a_repeat_gets_the_same_answer() -> None:
    t = table("k")
    first = apply(t, SplitRange(1, 1, "c"))
    assert first.ok
    left, right = first.ranges
    assert (left.range_id, left.start, left.end, left.generation) == (1, "", "c", 2)
    assert (right.range_id, right.start, right.end, right.generation) == (3, "c", "k", 1)
    assert right.replicas == left.replicas
    again = apply(t, SplitRange(1, 1, "c"))  # a new leader finishing the split
    assert again == first and len(t) == 3
    assert t.read(LookupRange(1, 1)).ranges == [left, left, right]
    assert t.read(LookupKey("d")).ranges == [right]


def test_range_ids_are_never_reused() -> None:
    t = table("k")
    ids = []
    for key in ("c", "e", "g"):
        current = t.lookup(key)
        result = apply(t, SplitRange(current.range_id, current.generation, key))
        ids.append(result.ranges[1].range_id)
    restored = table("k")
    restored.restore(t.snapshot())
    current = restored.lookup("z")
    ids.append(apply(restored, SplitRange(current.range_id, current.generation, "x")).ranges[1].range_id)
    assert ids == sorted(set(ids)) and min(ids) > 2


def test_replica_changes_check_what_the_caller_saw() -> None:
    t = table("k")
    r1 = t.get(1)
    assert r1 is not None
    wrong = apply(t, ChangeReplicas(1, (5, 4, 3), (1, 2, 5)))
    assert not wrong.ok and "not [5, 4, 3]" in (wrong.error or "")
    bad = apply(t, ChangeReplicas(1, r1.replicas, (1, 9, 2)))
    assert not bad.ok and "replica 9 is not a node" in (bad.error or "")
    zero = apply(t, ChangeReplicas(1, r1.replicas, (0, 1, 2)))  # nodes are numbered from 1
    assert not zero.ok and "replica 0 is not a node" in (zero.error or "")
    done = apply(t, ChangeReplicas(1, r1.replicas, (1, 2, 5)))
    assert done.ok and done.ranges[0].replicas == (1, 2, 5)
    assert apply(t, ChangeReplicas(1, r1.replicas, (1, 2, 5))) == done  # repeated
    assert t.moves == 1


def test_malformed_commands_are_refused_on_every_replica_alike() -> None:
    t = table("k")
    assert t.apply(1, b"\xc1junk") == MetaResult(ok=False, error="malformed meta command")
    assert decode_meta_result(b"\x93\xc3\x90\xc0").ok  # the result format round-trips


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text("abcdefgh", min_size=1, max_size=4), st.booleans()), max_size=25))
def test_any_commands_keep_the_table_tiling_and_replicas_agree(ops: list[tuple[str, bool]]) -> None:
    a, b = table("d"), table("d")
    for key, stale in ops:
        current = a.lookup(key)
        op = SplitRange(current.range_id, current.generation + (1 if stale else 0), key)
        assert apply(a, op) == apply(b, op)
        assert check_tiling(a.ranges(), a.nodes) is None
        assert all(a.lookup(k) is a.get(a.lookup(k).range_id) for k in ("", "a", key, "zzz"))
    assert a.snapshot() == b.snapshot()
    c = table("d")
    c.restore(a.snapshot())
    assert c.ranges() == a.ranges() and c.next_range_id == a.next_range_id


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text("abcdefgh", min_size=1, max_size=3), max_size=20), st.randoms(use_true_random=False))
def test_the_range_cache_always_covers_the_key_space(keys: list[str], rng: object) -> None:
    t = table("d")
    cache = RangeCache(t.ranges())
    seen: list[RangeDescriptor] = []
    for key in keys:
        current = t.lookup(key)
        result = apply(t, SplitRange(current.range_id, current.generation, key))
        seen += result.ranges
    rng.shuffle(seen)  # type: ignore[attr-defined]
    for d in seen:  # answers in any order, stale ones included
        cache.update([d])
        for probe in ("", "a", "d", "dd", "h", "zz", *keys):
            assert cache.lookup(probe) is not None
    cache.update(t.ranges())
    for probe in ("", "a", "d", "dd", "h", "zz", *keys):
        assert cache.lookup(probe) == t.lookup(probe)
