"""The simulated load target of ``quorate bench paper`` (and of its
validation): ``SimLoadTarget`` with the paper's network, the CPU model and a
wall-clock budget that abandons a step running far past it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
        # The timelines are large and not part of the paper's figures.
        result.resources = {}
        return result
