"""Benchmarks of the simulator: its event rate and the CPU cost model's figures.

- ``bare_loop_events_per_second``: a heapq loop that pops an event and pushes
  the next one with the same tuple shape as the simulator, doing nothing else.
  It is the ceiling any heap-based loop in this interpreter can reach, measured
  in the same process as the simulator so the ratio between them is fair on a
  shared, noisy machine.
- ``simulator_run``: the paper's shape at benchmark scale: 51 replicas in 3
  regions 50 ms apart, 1,000 closed-loop clients, 1 Gbps links; events per
  wall-clock second of the whole simulator (network, CPU model, driver, the
  protocol core, the replica service, the workload). An event is a heap pop
  that did work; timers that fire after being superseded (a moved deadline, a
  client timeout of an operation already answered, CPU work lost in a crash)
  are reported apart as ``stale_timer_events``.
- ``measure_cost_model``: what one input really costs a replica here: msgspec
  decode of the wire bytes + ``step`` + driving the ``Ready`` to completion,
  for a small and a large message of the reference protocol; a linear fit gives
  ``base_s`` and ``per_byte_s``. These are timed in process CPU time, so other
  work on a shared machine does not inflate them. ``measure_raft_cost`` does the same for a
  Raft follower receiving ``AppendEntries`` (the figures
  ``runtime.sim.node.CostModel`` uses by default).

Last measured on the project's 2-core machine (``quorate bench sim --json``,
medians of 3 runs, CPython 3.11): 229,800 simulator events/s, 0.091 of the
bare loop's 2.5 M/s in the same runs; ``raft_cost_model`` 2.7 us for the
small AppendEntries, ``cost_model`` 2.0 us for the small message. The event
trace of the benchmark run (``trace_sha256`` 9adbcb31...) is the one the
simulator produced before its speed work, so the figures are comparable.
"""

from __future__ import annotations

import statistics
import time
from heapq import heappop, heappush
from typing import Any

import msgspec

from quorate.core.ready import Entry, ReadState, Rejection
from quorate.ids import NodeId
from quorate.runtime.driver import drive
from quorate.runtime.sim import SimConfig, run
from quorate.runtime.sim.engine import derive_rng
from quorate.runtime.sim.primary import PrimaryBackupNode, ShipAck, ShipEntries

BARE_LOOP_EVENTS = 1_000_000
BARE_LOOP_PENDING = 10_000
"""Events kept in the heap (about what 1,000 clients and 51 nodes keep)."""
COST_SAMPLES = 20_000
COST_REPEATS = 5
SMALL_ENTRY_BYTES = 64
LARGE_BATCH_ENTRIES = 64
LARGE_ENTRY_BYTES = 256


def bare_loop_events_per_second(events: int = BARE_LOOP_EVENTS) -> float:
    """Events/s of a do-nothing heapq loop with the simulator's event shape."""
    heap: list[tuple[float, int, int, int, int, Any, int]] = []
    for i in range(BARE_LOOP_PENDING):
        heappush(heap, (i * 1e-4, i, 0, i % 51, 0, None, 0))
    seq = BARE_LOOP_PENDING
    start = time.perf_counter()
    for _ in range(events):
        event = heappop(heap)
        heappush(heap, (event[0] + 0.05, seq, event[2], event[3], event[4], None, 0))
        seq += 1
    return events / (time.perf_counter() - start)


def simulator_run(
    protocol: str = "raft", nodes: int = 51, clients: int = 1000, duration_s: float = 4.0, seed: int = 1
) -> dict[str, Any]:
    """Run the benchmark scenario; its measurements (no history)."""
    config = SimConfig(
        protocol=protocol,
        nodes=nodes,
        regions=3,
        inter_region_ms=50.0,
        clients=clients,
        duration_s=duration_s,
        seed=seed,
        check_invariants=False,
        record_history=False,
    )
    return run(config).to_json()


class _NullHost:
    """A driver host that does nothing: the step's own cost is what we time."""

    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        pass

    def send(self, to: NodeId, message: Any) -> None:
        pass

    def restore(self, snapshot: Any) -> None:
        pass

    def apply(self, entry: Entry) -> None:
        pass

    def read_ready(self, read: ReadState) -> None:
        pass

    def rejected(self, rejection: Rejection) -> None:
        pass


def _time_inputs(payloads: list[bytes], to_backup: bool) -> float:
    """Median seconds per (decode + step + drive) over ``payloads``."""
    decoder = msgspec.msgpack.Decoder(ShipEntries | ShipAck)
    host = _NullHost()
    voters = (NodeId(0), NodeId(1), NodeId(2))
    samples = []
    for repeat in range(COST_REPEATS):
        me = NodeId(1) if to_backup else NodeId(0)
        sender = NodeId(0) if to_backup else NodeId(1)
        core = PrimaryBackupNode(me, voters, rng=derive_rng(repeat, "bench"), now=0.0)
        if not to_backup:
            for _ in range(len(payloads)):
                core.propose(b"x", 0.0)
            drive(core, host)
        start = time.process_time()
        for data in payloads:
            core.step(sender, decoder.decode(data), 0.0)
            drive(core, host)
        samples.append((time.process_time() - start) / len(payloads))
    return statistics.median(samples)


def measure_cost_model(samples: int = COST_SAMPLES) -> dict[str, Any]:
    """Per-input CPU cost here, small and large messages, and the linear fit."""
    encode = msgspec.msgpack.Encoder().encode
    small_entry = b"s" * SMALL_ENTRY_BYTES
    large = [b"l" * LARGE_ENTRY_BYTES] * LARGE_BATCH_ENTRIES
    small_msgs = [encode(ShipEntries(i, [small_entry], 0)) for i in range(samples)]
    large_msgs = [encode(ShipEntries(i * LARGE_BATCH_ENTRIES, large, 0)) for i in range(samples)]
    acks = [encode(ShipAck(i + 1)) for i in range(samples)]
    small_s = _time_inputs(small_msgs, to_backup=True)
    large_s = _time_inputs(large_msgs, to_backup=True)
    ack_s = _time_inputs(acks, to_backup=False)
    small_bytes = len(small_msgs[0])
    large_bytes = len(large_msgs[0])
    per_byte_s = max((large_s - small_s) / (large_bytes - small_bytes), 0.0)
    base_s = max(small_s - per_byte_s * small_bytes, 0.0)
    return {
        "small_message_bytes": small_bytes,
        "small_message_us": round(small_s * 1e6, 3),
        "large_message_bytes": large_bytes,
        "large_message_us": round(large_s * 1e6, 3),
        "ack_message_us": round(ack_s * 1e6, 3),
        "fit_base_s": base_s,
        "fit_per_byte_s": per_byte_s,
    }


def _time_raft_appends(batches: list[list[bytes]]) -> float:
    """Median seconds per AppendEntries (decode + step + drive) at a Raft follower."""
    from quorate.core.ready import ENTRY_NORMAL
    from quorate.raft import AppendEntries, RaftConfig, RaftNode

    encode = msgspec.msgpack.Encoder().encode
    decoder = msgspec.msgpack.Decoder(AppendEntries)
    payloads = []
    index = 0
    for batch in batches:
        entries = [Entry(1, index + k + 1, ENTRY_NORMAL, data) for k, data in enumerate(batch)]
        payloads.append(encode(AppendEntries(1, index, 1 if index else 0, entries, index)))
        index += len(batch)
    host = _NullHost()
    voters = (NodeId(0), NodeId(1), NodeId(2))
    samples = []
    for repeat in range(COST_REPEATS):
        core = RaftNode(NodeId(1), voters, config=RaftConfig(), rng=derive_rng(repeat, "bench"), now=0.0)
        drive(core, host)
        start = time.process_time()
        for data in payloads:
            core.step(NodeId(0), decoder.decode(data), 0.0)
            drive(core, host)
        samples.append((time.process_time() - start) / len(payloads))
    return statistics.median(samples)


def measure_raft_cost(samples: int = COST_SAMPLES // 4) -> dict[str, Any] | None:
    """The same fit for Raft followers receiving AppendEntries (None without Raft)."""
    try:
        import quorate.raft  # noqa: F401
    except ImportError:
        return None
    small = [[b"s" * SMALL_ENTRY_BYTES] for _ in range(samples)]
    large = [[b"l" * LARGE_ENTRY_BYTES] * LARGE_BATCH_ENTRIES for _ in range(samples // 8)]
    small_s = _time_raft_appends(small)
    large_s = _time_raft_appends(large)
    encode = msgspec.msgpack.Encoder().encode
    from quorate.core.ready import ENTRY_NORMAL
    from quorate.raft import AppendEntries

    small_bytes = len(encode(AppendEntries(1, 1, 1, [Entry(1, 2, ENTRY_NORMAL, small[0][0])], 1)))
    large_entries = [Entry(1, 2 + k, ENTRY_NORMAL, d) for k, d in enumerate(large[0])]
    large_bytes = len(encode(AppendEntries(1, 1, 1, large_entries, 1)))
    per_byte_s = max((large_s - small_s) / (large_bytes - small_bytes), 0.0)
    return {
        "small_append_bytes": small_bytes,
        "small_append_us": round(small_s * 1e6, 3),
        "large_append_bytes": large_bytes,
        "large_append_us": round(large_s * 1e6, 3),
        "fit_base_s": max(small_s - per_byte_s * small_bytes, 0.0),
        "fit_per_byte_s": per_byte_s,
    }


def report(protocol: str = "raft", duration_s: float = 4.0) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready object."""
    bare = bare_loop_events_per_second()
    sim = simulator_run(protocol=protocol, duration_s=duration_s)
    return {
        "bare_heapq_events_per_second": round(bare, 1),
        "simulator": sim,
        "simulator_over_bare": round(sim["events_per_second"] / bare, 4),
        "cost_model": measure_cost_model(),
        "raft_cost_model": measure_raft_cost(),
    }
