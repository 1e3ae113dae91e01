"""What a simulated run will cost, said before it costs it.

Theory of operation (``quorate sim raft|pbft|hotstuff|primary``, and the
second estimate for ``quorate sim swim``): a simulated PBFT run's work grows about as n² with its
replicas (every replica hears every other's votes for every batch), a Raft
run's about as n (the leader talks to each follower), and both linearly with
the simulated duration. Two estimates, each printed once on stderr, only
when the run looks like it will take ``WARN_WALL_S`` or more, or
``WARN_MEMORY_BYTES`` or more:

1. *Before the run*, for ``MANY_NODES`` replicas or more: a sample run of the
   same protocol, options, regions and clients with ``SAMPLE_NODES``
   replicas for ``SAMPLE_DURATION_S`` of simulated time, scaled by
   (n / sample)^k (k = 2 for BFT protocols, 1 otherwise) and by the
   duration; memory is the sample's growth scaled the same way. Rough by
   nature (the warning says so), and it costs a few seconds.
2. *While it runs*: after ``MEASURE_AFTER_S`` of wall time, the elapsed time
   and the resident memory's growth extrapolated linearly over the simulated
   time still to go.

Resident memory is read from ``/proc/self/statm`` (Linux); elsewhere only the
time is estimated.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import typer

from quorate.protocols import byzantine_fault_tolerant
from quorate.runtime.sim import SimConfig
from quorate.runtime.sim.cluster import Simulation

MANY_NODES = 100
"""From this many replicas a run is sampled before it starts."""
SAMPLE_NODES = 16
SAMPLE_DURATION_S = 0.5
"""Simulated seconds of the sample run."""
MEASURE_AFTER_S = 3.0
"""Wall seconds of a run before its own progress is extrapolated."""
WARN_WALL_S = 60.0
WARN_MEMORY_BYTES = 1 << 30


def resident_bytes() -> int | None:
    """This process's resident memory, or ``None`` where ``/proc`` is absent."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_bytes(size: float) -> str:
    if size >= 1 << 30:
        return f"{size / (1 << 30):.1f} GB"
    return f"{size / (1 << 20):.0f} MB"


class CostWatch:
    """Estimates and warnings for one run of ``config`` (see the module docstring)."""

    def __init__(
        self,
        config: SimConfig | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        memory: Callable[[], int | None] = resident_bytes,
        say: Callable[[str], None] | None = None,
        many_nodes: int = MANY_NODES,
    ) -> None:
        self.config = config
        self.clock = clock
        self.memory = memory
        self.say = say or (lambda text: typer.echo(text, err=True))
        self.many_nodes = many_nodes
        self.warnings: list[str] = []
        self._started: float | None = None
        self._first: tuple[float, float, int | None] | None = None  # wall, fraction, memory
        self._measured = False

    def _warn(self, wall_s: float, memory: float | None, source: str) -> None:
        if wall_s < WARN_WALL_S and (memory is None or memory < WARN_MEMORY_BYTES):
            return
        size = "" if memory is None else f" and about {format_bytes(memory)} of memory"
        text = (
            f"quorate: warning: this run will take about {format_duration(wall_s)}{size} "
            f"({source}); Ctrl-C stops it, fewer --nodes or a shorter --duration cost less"
        )
        self.warnings.append(text)
        self.say(text)

    # ------------------------------------------------------------ before
    def estimate_before(self) -> tuple[float, float | None] | None:
        """(wall seconds, bytes) from a small sample run, or ``None`` below
        ``many_nodes`` (or for a run that is not a ``SimConfig``: SWIM)."""
        config = self.config
        if config is None or config.nodes < self.many_nodes:
            return None
        sample_nodes = max(SAMPLE_NODES, config.regions)
        sample = dataclasses.replace(
            config,
            nodes=sample_nodes,
            duration_s=min(SAMPLE_DURATION_S, config.duration_s),
            faults="none",
            heal_at_s=None,
            byzantine="",
            max_crashed=None,
            record_history=False,
        )
        before = self.memory()
        started = self.clock()
        simulation = Simulation(sample)
        simulation.run()
        wall_s = self.clock() - started
        after = self.memory()
        del simulation
        power = 2 if byzantine_fault_tolerant(config.protocol) else 1
        scale = (config.nodes / sample_nodes) ** power
        total_s = wall_s * scale * config.duration_s / sample.duration_s
        growth = None if before is None or after is None else max(0, after - before) * scale
        return total_s, None if growth is None or before is None else before + growth

    def warn_before(self) -> None:
        estimate = self.estimate_before()
        if estimate is not None:
            total_s, memory = estimate
            self._warn(
                total_s,
                memory,
                f"extrapolated from a {SAMPLE_NODES}-replica sample; expect it to be off by a "
                "factor of two either way",
            )

    # ------------------------------------------------------------ during
    def progress(
        self, update: Callable[[float, float], None] | None
    ) -> Callable[[float, float], None]:
        """A progress callback that measures, then calls ``update`` (if any)."""
        self._started = self.clock()

        def observe(now_s: float, end_s: float) -> None:
            if update is not None:
                update(now_s, end_s)
            if self._measured or end_s <= 0:
                return
            wall = self.clock()
            fraction = now_s / end_s
            if self._first is None:
                self._first = (wall, fraction, self.memory())
                return
            first_wall, first_fraction, first_memory = self._first
            assert self._started is not None
            if wall - self._started < MEASURE_AFTER_S or fraction <= first_fraction:
                return
            self._measured = True
            done = fraction - first_fraction
            rest = 1.0 - fraction
            total_s = (wall - self._started) + (wall - first_wall) / done * rest
            memory_now = self.memory()
            memory = None
            if first_memory is not None and memory_now is not None:
                memory = memory_now + max(0, memory_now - first_memory) / done * rest
            self._warn(
                total_s, memory, f"measured over the first {fraction:.0%} of the simulated time"
            )

        return observe
