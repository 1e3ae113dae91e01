"""The event loop: ordering, determinism, trace hashing."""

from __future__ import annotations

import gc

import pytest

from quorate.errors import LocalProtocolError
from quorate.runtime.sim import SimConfig, engine, run
from quorate.runtime.sim.engine import EventLoop, derive_rng


def test_events_run_in_time_then_schedule_order() -> None:
    loop = EventLoop()
    seen: list[tuple[float, int]] = []
    kind = loop.add_kind(lambda e: seen.append((e[0], e[3])))
    loop.schedule(2.0, kind, 1, 0, None, 0)
    loop.schedule(1.0, kind, 2, 0, None, 0)
    loop.schedule(1.0, kind, 3, 0, None, 0)  # same time: after dst 2, scheduled first
    loop.run(10.0)
    assert seen == [(1.0, 2), (1.0, 3), (2.0, 1)]
    assert loop.events == 3
    assert loop.now == 10.0


def test_run_stops_at_the_bound_and_resumes() -> None:
    loop = EventLoop()
    seen: list[float] = []
    kind = loop.add_kind(lambda e: seen.append(e[0]))
    for t in (0.5, 1.5, 2.5):
        loop.schedule(t, kind, 0, 0, None, 0)
    loop.run(1.0)
    assert seen == [0.5]
    loop.run(3.0)
    assert seen == [0.5, 1.5, 2.5]


def test_scheduling_in_the_past_is_a_caller_bug() -> None:
    loop = EventLoop()
    loop.run(5.0)
    with pytest.raises(LocalProtocolError):
        loop.schedule(4.0, loop.add_kind(lambda e: None), 0, 0, None, 0)


def test_trace_hash_depends_on_every_event() -> None:
    def trace(times: list[float]) -> str:
        loop = EventLoop()
        kind = loop.add_kind(lambda e: None)
        for t in times:
            loop.schedule(t, kind, 0, 0, None, 0)
        loop.run(100.0)
        return loop.trace_sha256()

    assert trace([1.0, 2.0]) == trace([1.0, 2.0])
    assert trace([1.0, 2.0]) != trace([1.0, 2.000001])
    # more events than one hashing batch
    many = [i * 0.001 for i in range(10_000)]
    assert trace(many) == trace(many)
    assert trace(many) != trace(many[:-1])


def test_derived_streams_are_stable_and_independent() -> None:
    a = derive_rng(7, "network").random()
    assert a == derive_rng(7, "network").random()
    assert a != derive_rng(8, "network").random()
    assert derive_rng(7, "core", 1).random() != derive_rng(7, "core", 2).random()


def _cfg(seed: int) -> SimConfig:
    return SimConfig(protocol="primary", nodes=5, regions=2, clients=8, duration_s=1.0, seed=seed, jitter_ms=2.0)


def test_same_seed_same_trace_different_seed_different_trace() -> None:
    first = run(_cfg(11))
    again = run(_cfg(11))
    other = run(_cfg(12))
    assert first.events > 1000
    assert first.trace_sha256 == again.trace_sha256
    assert first.history == again.history
    assert first.trace_sha256 != other.trace_sha256


def test_run_restores_the_collector_threshold_and_counts_a_failing_event() -> None:
    loop = EventLoop()
    seen: list[float] = []

    def fail(event: tuple[float, int, int, int, int, object, int]) -> None:
        seen.append(event[0])
        assert gc.get_threshold()[0] >= engine.GC_ALLOCATIONS_PER_PASS
        raise RuntimeError("handler failed")

    kind = loop.add_kind(fail)
    loop.schedule(1.0, kind, 0, 0, None, 0)
    loop.schedule(2.0, kind, 0, 0, None, 0)
    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        loop.run(10.0)
    assert gc.get_threshold() == before
    assert seen == [1.0]
    assert loop.events == 1  # the event that failed was popped and counted
    assert loop.pending() == 1
    assert loop.now == 1.0


def test_an_event_past_the_bound_stays_queued_unchanged() -> None:
    loop = EventLoop()
    seen: list[tuple[float, int]] = []
    kind = loop.add_kind(lambda e: seen.append((e[0], e[1])))
    for t in (3.0, 1.0, 3.0):
        loop.schedule(t, kind, 0, 0, None, 0)
    loop.run(2.0)
    assert seen == [(1.0, 1)]
    assert loop.next_time() == 3.0 and loop.pending() == 2
    loop.run(5.0)
    assert seen == [(1.0, 1), (3.0, 0), (3.0, 2)]  # same-time events keep schedule order


def test_a_repeated_large_payload_is_hashed_as_if_encoded_each_time() -> None:
    import hashlib

    import msgspec

    big = {"macs": [[i, bytes(32)] for i in range(64)]}  # well over TRACE_REUSE_MIN_BYTES
    small = {"x": 1}
    size = len(msgspec.msgpack.encode(big))
    assert size >= engine.TRACE_REUSE_MIN_BYTES
    loop = EventLoop()
    kind = loop.add_kind(lambda e: None)
    for i in range(10):
        loop.schedule(i * 0.1, kind, i, 0, big, size)
        loop.schedule(i * 0.1, kind, i, 1, small, 9)
        loop.schedule(i * 0.1, kind, i, 2, {"macs": [[i, bytes(32)]] * 64}, size)  # equal size, other object
    loop.run(5.0)
    expected = []
    seq = 0
    for i in range(10):
        for src, payload, n in ((0, big, size), (1, small, 9), (2, {"macs": [[i, bytes(32)]] * 64}, size)):
            expected.append((i * 0.1, seq, kind, i, src, payload, n))
            seq += 1
    assert loop.trace_sha256() == hashlib.sha256(msgspec.msgpack.encode(expected)).hexdigest()


def _trace_of(payloads: list[object], size: int) -> str:
    loop = EventLoop()
    kind = loop.add_kind(lambda e: None)
    for i, payload in enumerate(payloads):
        loop.schedule(i * 0.01, kind, i, 0, payload, size)
    loop.run(100.0)
    return loop.trace_sha256()


def test_a_very_large_repeated_payload_is_hashed_once_per_batch_and_still_pinned() -> None:
    import msgspec

    big = {"macs": [[i, bytes(32)] for i in range(200)]}
    size = len(msgspec.msgpack.encode(big))
    assert size >= engine.TRACE_BACKREF_MIN_BYTES
    changed = {"macs": [[i, bytes(32)] for i in range(199)] + [[199, bytes(31) + b"\x01"]]}
    one = _trace_of([big] * 50, size)
    assert one == _trace_of([big] * 50, size)  # deterministic
    assert one != _trace_of([big] * 49 + [changed], size)  # a later event's payload still counts
    assert one != _trace_of([changed] + [big] * 49, size)
    assert one != _trace_of([big] * 51, size)
