"""What a node's durable storage costs per turn when it hosts many groups.

Theory of operation. A node host makes the durable writes of all its groups
durable together: one ``persist_many`` per turn, one transaction (SQLite) or
one ``fdatasync`` (the WAL). On a disk where an fsync costs milliseconds and
writing a few hundred bytes costs microseconds, a turn of ``groups`` groups
should then cost about what one group's write costs, not ``groups`` times it.
For each disk engine this measures, in rotation so the three share the
machine's load:

- ``one_group``: one group's batch (``entries`` entries of ``value_bytes``
  and a Raft hard state) in one ``persist_many``;
- ``persist_many``: ``groups`` groups' batches in one ``persist_many``;
- ``separate``: the same batches as ``groups`` separate calls (what a node
  without group commit across groups would do), timed all together;

and reports wall-clock medians (fsync is waiting, not CPU) in milliseconds,
the ratios ``persist_many / one_group`` (near 1 is the goal) and
``separate / persist_many`` (the saving), and the durable writes each
counted by the engine itself (its ``transactions``: one fsync each).

Recovery: a store holding ``recover_groups`` groups, each with
``recover_entries`` entries and a hard state, is closed and opened again;
the time to open it and to ``recover_group`` every group it lists is the
restart cost of a node hosting that many groups (median of
``recover_repeats``).

Cost per entry: a node turn of many ranges usually carries one new entry in
each of several groups, where a single busy group's turn carries many of its
own. ``measure_entry_cost`` persists, in rotation, ``spread_groups`` groups
× 1 entry per ``persist_many`` (``spread``) and 1 group × ``deep_entries``
entries (``deep``), each shape in a store of its own, for ``entry_turns``
turns each, and reports the process CPU time and the wall time per entry:
the total over every timed turn divided by the entries written (so work an
engine does now and then, such as moving entries between tables, is
counted), and the median turn's. ``spread_over_deep`` (CPU) near 1 means a
turn of many groups costs per entry, not per group.

The files go to ``directory`` (default: a fresh temporary directory, removed
afterwards), so the figures are those of the filesystem under it.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quorate.core.ready import Entry
from quorate.raft.messages import HardState
from quorate.storage import GroupWrite, open_storage
from quorate.storage.engines import ENGINES, DiskStorage

DEFAULT_GROUPS = 64
DEFAULT_ENTRIES_PER_BATCH = 4
DEFAULT_VALUE_BYTES = 128
DEFAULT_SAMPLES = 20
DEFAULT_RECOVER_GROUPS = 1000
DEFAULT_RECOVER_ENTRIES = 10
DEFAULT_RECOVER_REPEATS = 3
DEFAULT_SPREAD_GROUPS = 10
DEFAULT_DEEP_ENTRIES = 20
ENTRY_TURNS_PER_SAMPLE = 15
"""``entry_turns`` defaults to this many turns per ``samples`` (300 for 20)."""
WARMUP_SAMPLES = 2
"""Untimed rounds first: file creation, SQLite's first pages, the WAL's first segment."""
_MS_PER_S = 1000.0
_US_PER_S = 1_000_000.0


class _Log:
    """Next batches of one group: contiguous entries and a hard state."""

    __slots__ = ("group", "last", "value")

    def __init__(self, group: int, value: bytes) -> None:
        self.group = group
        self.last = 0
        self.value = value

    def write(self, entries: int) -> GroupWrite:
        first = self.last + 1
        self.last += entries
        batch = [Entry(1, i, 0, self.value) for i in range(first, self.last + 1)]
        return GroupWrite(self.group, HardState(1, 1, first - 1), batch)


def _timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * _MS_PER_S


def _counted(store: DiskStorage, call: Callable[[], object]) -> tuple[float, int]:
    before = store.transactions
    elapsed = _timed_ms(call)
    return elapsed, store.transactions - before


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "min": ordered[0],
    }


def measure_group_commit(
    engine: str,
    directory: Path,
    *,
    groups: int,
    entries: int,
    value_bytes: int,
    samples: int,
) -> dict[str, Any]:
    """One engine's ``one_group`` / ``persist_many`` / ``separate`` figures."""
    value = bytes(value_bytes)
    store = open_storage(engine, directory / f"{engine}-commit")
    try:
        # Three disjoint sets of groups, so each measure appends to its own logs.
        one = _Log(1, value)
        many = [_Log(g, value) for g in range(100, 100 + groups)]
        separate = [_Log(g, value) for g in range(100 + groups, 100 + 2 * groups)]
        store.create_groups(
            [(log.group, "raft", b"") for log in (one, *many, *separate)]
        )
        times: dict[str, list[float]] = {"one_group": [], "persist_many": [], "separate": []}
        fsyncs: dict[str, set[int]] = {name: set() for name in times}

        def one_group() -> None:
            store.persist_many([one.write(entries)])

        def persist_many() -> None:
            store.persist_many([log.write(entries) for log in many])

        def separately() -> None:
            for log in separate:
                store.persist_many([log.write(entries)])

        calls = {"one_group": one_group, "persist_many": persist_many, "separate": separately}
        for sample in range(WARMUP_SAMPLES + samples):
            for name, call in calls.items():
                elapsed, durable_writes = _counted(store, call)
                if sample >= WARMUP_SAMPLES:
                    times[name].append(elapsed)
                    fsyncs[name].add(durable_writes)
    finally:
        store.close()
    summaries = {name: _summary(values) for name, values in times.items()}
    one_ms = summaries["one_group"]["median"]
    many_ms = summaries["persist_many"]["median"]
    separate_ms = summaries["separate"]["median"]
    return {
        "one_group_ms": summaries["one_group"],
        "persist_many_ms": summaries["persist_many"],
        "separate_persists_ms": summaries["separate"],
        "persist_many_over_one_group": many_ms / one_ms,
        "separate_over_persist_many": separate_ms / many_ms,
        "durable_writes": {name: sorted(counts) for name, counts in fsyncs.items()},
    }


def measure_entry_cost(
    engine: str,
    directory: Path,
    *,
    spread_groups: int,
    deep_entries: int,
    value_bytes: int,
    turns: int,
) -> dict[str, Any]:
    """Process CPU and wall time per entry: one entry in each of
    ``spread_groups`` groups per turn against ``deep_entries`` entries of
    one group per turn (see the module docstring)."""
    value = bytes(value_bytes)
    spread_store = open_storage(engine, directory / f"{engine}-spread")
    deep_store = open_storage(engine, directory / f"{engine}-deep")
    try:
        spread_logs = [_Log(g, value) for g in range(1, spread_groups + 1)]
        spread_store.create_groups([(log.group, "raft", b"") for log in spread_logs])
        deep_log = _Log(1, value)
        deep_store.create_groups([(1, "raft", b"")])

        def spread() -> None:
            spread_store.persist_many([log.write(1) for log in spread_logs])

        def deep() -> None:
            deep_store.persist_many([deep_log.write(deep_entries)])

        shapes: dict[str, tuple[Callable[[], None], int]] = {
            "spread": (spread, spread_groups),
            "deep": (deep, deep_entries),
        }
        cpu: dict[str, list[float]] = {name: [] for name in shapes}
        wall: dict[str, list[float]] = {name: [] for name in shapes}
        for turn in range(WARMUP_SAMPLES + turns):
            for name, (call, _) in shapes.items():
                wall_started = time.perf_counter()
                cpu_started = time.process_time()
                call()
                cpu_spent = time.process_time() - cpu_started
                wall_spent = time.perf_counter() - wall_started
                if turn >= WARMUP_SAMPLES:
                    cpu[name].append(cpu_spent)
                    wall[name].append(wall_spent)
    finally:
        spread_store.close()
        deep_store.close()
    out: dict[str, Any] = {
        "spread_groups": spread_groups,
        "deep_entries": deep_entries,
        "turns": turns,
    }
    for name, (_, per_turn) in shapes.items():
        written = per_turn * turns
        out[name] = {
            "cpu_us_per_entry": sum(cpu[name]) / written * _US_PER_S,
            "wall_us_per_entry": sum(wall[name]) / written * _US_PER_S,
            "median_turn_cpu_us_per_entry": statistics.median(cpu[name]) / per_turn * _US_PER_S,
            "median_turn_wall_us_per_entry": statistics.median(wall[name])
            / per_turn
            * _US_PER_S,
        }
    for kind in ("cpu", "wall"):
        deep_us = out["deep"][f"{kind}_us_per_entry"]
        out[f"spread_over_deep_{kind}"] = (
            out["spread"][f"{kind}_us_per_entry"] / deep_us if deep_us > 0 else None
        )
    return out


def measure_recovery(
    engine: str,
    directory: Path,
    *,
    groups: int,
    entries: int,
    value_bytes: int,
    repeats: int,
) -> dict[str, Any]:
    """Open a store of ``groups`` groups and recover every one of them."""
    path = directory / f"{engine}-recover"
    value = bytes(value_bytes)
    logs = [_Log(g, value) for g in range(1, groups + 1)]
    with open_storage(engine, path) as store:
        store.create_groups([(log.group, "raft", b"") for log in logs])
        for _ in range(entries):
            store.persist_many([log.write(1) for log in logs])
    open_ms: list[float] = []
    recover_ms: list[float] = []
    recovered_entries = 0
    for _ in range(repeats):
        started = time.perf_counter()
        store = open_storage(engine, path)
        opened = time.perf_counter()
        try:
            recovered_entries = 0
            for record in store.groups():
                recovered = store.recover_group(record.group, HardState, None)
                recovered_entries += len(recovered.entries)
            finished = time.perf_counter()
        finally:
            store.close()
        open_ms.append((opened - started) * _MS_PER_S)
        recover_ms.append((finished - opened) * _MS_PER_S)
    if recovered_entries != groups * entries:
        raise AssertionError(
            f"{engine}: recovered {recovered_entries} entries, wrote {groups * entries}"
        )
    total_ms = statistics.median(o + r for o, r in zip(open_ms, recover_ms, strict=True))
    return {
        "groups": groups,
        "entries_per_group": entries,
        "open_ms": statistics.median(open_ms),
        "recover_all_groups_ms": statistics.median(recover_ms),
        "total_ms": total_ms,
        "per_group_us": total_ms / groups * _US_PER_S / _MS_PER_S,
    }


def report(
    *,
    engines: tuple[str, ...] = ENGINES,
    groups: int = DEFAULT_GROUPS,
    entries: int = DEFAULT_ENTRIES_PER_BATCH,
    value_bytes: int = DEFAULT_VALUE_BYTES,
    samples: int = DEFAULT_SAMPLES,
    recover_groups: int = DEFAULT_RECOVER_GROUPS,
    recover_entries: int = DEFAULT_RECOVER_ENTRIES,
    recover_repeats: int = DEFAULT_RECOVER_REPEATS,
    spread_groups: int = DEFAULT_SPREAD_GROUPS,
    deep_entries: int = DEFAULT_DEEP_ENTRIES,
    entry_turns: int | None = None,
    directory: Path | None = None,
) -> dict[str, Any]:
    """Every measure for each engine, as one JSON-ready object."""
    if entry_turns is None:
        entry_turns = ENTRY_TURNS_PER_SAMPLE * samples
    for name, value, least in (
        ("groups", groups, 1),
        ("entries", entries, 1),
        ("value_bytes", value_bytes, 0),
        ("samples", samples, 1),
        ("recover_groups", recover_groups, 1),
        ("recover_entries", recover_entries, 0),
        ("recover_repeats", recover_repeats, 1),
        ("spread_groups", spread_groups, 1),
        ("deep_entries", deep_entries, 1),
        ("entry_turns", entry_turns, 1),
    ):
        if value < least:
            raise ValueError(f"{name} must be >= {least}, got {value}")
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise ValueError(f"engines must be among {', '.join(ENGINES)}, got {', '.join(engines)}")
    base = Path(tempfile.mkdtemp(prefix="quorate-bench-storage-", dir=directory))
    try:
        results = {
            engine: {
                "group_commit": measure_group_commit(
                    engine,
                    base,
                    groups=groups,
                    entries=entries,
                    value_bytes=value_bytes,
                    samples=samples,
                ),
                "entry_cost": measure_entry_cost(
                    engine,
                    base,
                    spread_groups=spread_groups,
                    deep_entries=deep_entries,
                    value_bytes=value_bytes,
                    turns=entry_turns,
                ),
                "recovery": measure_recovery(
                    engine,
                    base,
                    groups=recover_groups,
                    entries=recover_entries,
                    value_bytes=value_bytes,
                    repeats=recover_repeats,
                ),
            }
            for engine in engines
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "benchmark": "storage",
        "groups": groups,
        "entries_per_batch": entries,
        "value_bytes": value_bytes,
        "samples": samples,
        "directory": str(directory) if directory is not None else tempfile.gettempdir(),
        "engines": results,
    }
