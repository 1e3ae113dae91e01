"""The simulated load target of ``quorate bench paper`` (and of its
validation): ``SimLoadTarget`` with the paper's network, the CPU model and a
wall-clock budget that abandons a step running far past it.

Bootstrap campaign. With ``bootstrap_campaign`` node 1 calls its core's
``campaign`` at time 0, as an operator bootstrapping a new group does (a new
CockroachDB range's first replica campaigns at once). Without it a flat Raft
group of a hundred voters or more over three regions 50 ms apart splits its
votes round after round: a candidate's RequestVote reaches its own region in
0.5 ms and the others in 50 ms, and with timeouts uniform in [T, 2T) the gap
between consecutive timeouts of n nodes is about T / n (4 ms for T = 0.5 s,
n = 128), so every round has a candidate in each region before any other
region hears of one, each collects about its own third of the votes, and
none reaches a majority (measured: n = 128, seed 1, eleven such rounds, the
first leader at 6.8 s; n = 1000 never within 10 s). Only the first election
is helped: a later one (after a leader fails) would split the same way,
which the paper's figures do not exercise."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from quorate.bench.ramp import SimLoadTarget, StepResult
from quorate.crypto.costmodel import CryptoCosts
from quorate.runtime.sim import SimConfig, Simulation
from quorate.runtime.sim.cluster import SimResult
from quorate.runtime.sim.node import CostModel

__all__ = ["OP_TIMEOUT_S", "STEP_OVERRUN_SHARE", "BudgetExhausted", "PaperSimTarget"]

OP_TIMEOUT_S = 2.0
"""A simulated operation not answered this long after its start is not answered."""
STEP_OVERRUN_SHARE = 0.5
"""A step still running this share of its cell's budget past the cell's deadline is abandoned."""


class BudgetExhausted(Exception):
    pass


@dataclass
class PaperSimTarget(SimLoadTarget):
    """``SimLoadTarget`` with the paper's network, CPU model and timeouts."""

    bandwidth_gbps: float = 1.0
    intra_region_ms: float = 0.5
    cost: CostModel = field(default_factory=CostModel)
    crypto: CryptoCosts | None = None
    op_timeout_s: float = OP_TIMEOUT_S
    deadline: float = math.inf
    """perf_counter() after which no new step starts."""
    budget_s: float = 0.0
    """The cell's budget (a step running past the deadline by half of it is abandoned)."""
    bootstrap_campaign: bool = False
    """Node 1 campaigns at time 0 (Raft; see the module docstring)."""
    observe: bool = False
    """Keep the simulation's per-turn observer (leader tracking, the
    equivocation log). The figures use neither and no run here has Byzantine
    nodes, so it is off: it was about 8 % of a BFT run's wall time, and it
    only watches (the trace is the same either way)."""
    _last: Simulation | None = field(default=None, init=False, repr=False)

    def config(self, rate_ops: float, duration_s: float) -> SimConfig:
        base = super().config(rate_ops, duration_s)
        base.bandwidth_gbps = self.bandwidth_gbps
        base.intra_region_ms = self.intra_region_ms
        base.cost = self.cost
        base.crypto_costs = self.crypto
        base.op_timeout_s = self.op_timeout_s
        return base

    def build(self, rate_ops: float, duration_s: float) -> Simulation:
        """The step's simulation, abandoned (``BudgetExhausted``) if it is still
        running ``STEP_OVERRUN_SHARE`` of the cell's budget after the deadline."""
        simulation = super().build(rate_ops, duration_s)
        self._last = simulation
        if not self.observe and not simulation.byzantine:
            for node in simulation.nodes:
                node.monitor = None
        if self.bootstrap_campaign:
            first = simulation.nodes[0]

            def campaign(event: tuple[float, int, int, int, int, Any, int]) -> None:
                first.run_local(event[0], lambda group, local: cast(Any, group.core).campaign(local))  # a RaftNode

            simulation.loop.schedule(0.0, simulation.loop.add_kind(campaign), -1, -1, None, 0)
        run = simulation.run
        hard_deadline = self.deadline + STEP_OVERRUN_SHARE * self.budget_s

        def bounded_run(
            progress: Callable[[float, float], None] | None = None, clock: Callable[[], float] = time.perf_counter
        ) -> SimResult:
            def guarded(now: float, end: float) -> None:
                if time.perf_counter() > hard_deadline:
                    raise BudgetExhausted
                if progress is not None:
                    progress(now, end)

            return run(guarded, clock)

        simulation.run = bounded_run  # type: ignore[method-assign]
        return simulation

    def step(self, rate_ops: float, warmup_s: float, window_s: float) -> StepResult:
        if time.perf_counter() > self.deadline:
            raise BudgetExhausted
        started = time.perf_counter()
        result = super().step(rate_ops, warmup_s, window_s)
        result.extra["wall_s"] = round(time.perf_counter() - started, 3)
        result.extra["sim_s"] = warmup_s + window_s
        if self._last is not None:
            result.extra["events"] = self._last.loop.events
            self._last = None
        # The timelines are large and not part of the paper's figures.
        result.resources = {}
        return result
