"""Version vectors, causal contexts, the hybrid logical clock and registers."""

from __future__ import annotations

from quorate.crdt import (
    HLC,
    MV_REGISTER_VALUES,
    CausalContext,
    GCounter,
    HLCTimestamp,
    LWWRegister,
    MVRegister,
    Ordering,
    ORMap,
    PNCounter,
    VersionVector,
)


def test_version_vector_compare_and_merge() -> None:
    a = VersionVector({1: 2, 2: 1})
    b = VersionVector({1: 2, 2: 3})
    c = VersionVector({1: 3})
    assert a.compare(b) is Ordering.BEFORE and b.compare(a) is Ordering.AFTER
    assert a.compare(c) is Ordering.CONCURRENT
    assert a.compare(VersionVector({2: 1, 1: 2, 7: 0})) is Ordering.EQUAL
    assert a.merge(c) == {1: 3, 2: 1}
    assert a.contains((2, 1)) and not a.contains((2, 2))
    assert a.increment(4) == (4, 1)


def test_causal_context_compacts_its_dot_cloud() -> None:
    ctx = CausalContext()
    ctx.add((1, 2))
    ctx.add((1, 3))
    assert ctx.vector == {} and ctx.cloud == {(1, 2), (1, 3)}
    ctx.add((1, 1))
    assert ctx.vector == {1: 3} and not ctx.cloud
    assert (1, 3) in ctx and (1, 4) not in ctx
    assert ctx.next_dot(1) == (1, 4)


def test_hlc_is_monotonic_when_physical_time_steps_back() -> None:
    clock = HLC(1)
    t1 = clock.now(100)
    t2 = clock.now(90)  # the physical clock went backwards
    t3 = clock.update(HLCTimestamp(150, 4, 2), 95)
    t4 = clock.now(96)
    assert t1 < t2 < t3 < t4
    assert t3 == HLCTimestamp(150, 5, 1)
    assert clock.now(200) == HLCTimestamp(200, 0, 1)


def test_lww_register_breaks_timestamp_ties_by_replica() -> None:
    a: LWWRegister[str] = LWWRegister()
    b: LWWRegister[str] = LWWRegister()
    da = a.set("from-1", HLC(1).now(10))
    db = b.set("from-2", HLC(2).now(10))
    a.merge(db)
    b.merge(da)
    assert a.value == b.value == "from-2"


def test_mv_register_keeps_concurrent_writes_until_overwritten() -> None:
    a, b = MVRegister(1), MVRegister(2)
    da, db = a.set("x"), b.set("y")
    a.merge(db)
    b.merge(da)
    assert sorted(a.values) == sorted(b.values) == ["x", "y"]
    b.merge(a.set("z"))
    assert b.values == ["z"]


def test_counters() -> None:
    g1, g2 = GCounter(), GCounter()
    g1.increment(1, 3)
    d = g2.increment(2, 4)
    g1.merge(d)
    g1.merge(d)
    assert g1.value == 7
    p = PNCounter()
    p.increment(1, 5)
    p.decrement(2, 7)
    assert p.value == -2 and PNCounter.decode(p.encode()) == p


def test_or_map_remove_is_observed_remove() -> None:
    a = ORMap(1, MV_REGISTER_VALUES)
    b = ORMap(2, MV_REGISTER_VALUES)
    b.merge(a.update("k", lambda r: r.set(1)))
    removal = b.remove("k")
    update = a.update("k", lambda r: r.set(2))  # concurrent with the remove
    a.merge(removal)
    b.merge(update)
    assert a == b and a.get("k").store and list(a.get("k").store.values()) == [2]
    a.merge(a.remove("k"))
    assert "k" not in a and not a.store
