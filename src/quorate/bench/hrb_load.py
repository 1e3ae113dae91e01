"""HRB under the ramp: one load step as a seeded run of the HRB model.

Theory of operation. ``HrbLoadTarget`` is a ``quorate.bench.ramp``
*target* for HRB: each step builds the real protocol code's model
(``quorate.hrb.simulation.HrbSystem``: shards, the core, agents) on the
simulator of composed systems, with the same seed every step, and runs it
for the warm-up and the window plus a short drain.

HRB's clients are *agents* that run closed loop (one transaction at a time,
``quorate.hrb.agents``), not an open-loop stream. The target first measures
the mean latency L of a lightly loaded run (one agent per shard, the same
seed: the *calibration*); a step at rate R then runs
``ceil(HEADROOM × R × (think time + L))`` agents — enough to offer R while a
transaction takes what it takes unloaded (they may offer up to
``HEADROOM`` times R while it does: agents cannot be paced) — and counts the transactions the
open-loop load would have started but the agents could not (each waited
for its last answer) as *not answered*: a step is good only when the
cluster completed at least 95 % of R per second within the latency bound,
so a cluster whose latency grows under load shows it as a shortfall. Latencies run from each transaction's invoke (an agent
starts a transaction only when it is free), so a saturated HRB shows as a
shortfall more than as latency. An operation is one transaction (a put, a
get, or, with probability ``cross_shard``, a put of a home key and one of
another shard's key). The composed simulator has no per-node CPU model
sampler, so HRB's steps carry no resource timeline and no bottleneck rule
reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quorate.bench.histogram import LatencyHistogram
from quorate.bench.ramp import StepResult
from quorate.errors import ConfigError

if TYPE_CHECKING:
    from quorate.bench.hrb_sim import HrbRunConfig

__all__ = ["DEFAULT_CORE", "DEFAULT_SHARD_SIZE", "MAX_AGENTS", "HrbLoadTarget"]

DEFAULT_SHARD_SIZE = 4
DEFAULT_CORE = 4
MAX_AGENTS = 4096
"""Most agents one step runs (a rate beyond what they can offer is a shortfall)."""
HEADROOM = 1.2
"""Agents beyond the count that offers R at the calibrated latency (queueing adds some)."""
DRAIN_S = 1.0
"""Simulated seconds after the window for transactions in flight to finish."""


@dataclass
class HrbLoadTarget:
    """Each step a fresh seeded HRB run at the step's rate (module docstring)."""

    nodes: int
    shard_size: int = DEFAULT_SHARD_SIZE
    core: int = DEFAULT_CORE
    regions: int = 1
    inter_region_ms: float = 50.0
    seed: int = 1
    latency_s: float | None = None
    """The latency the agents are sized for; None: calibrate at the first step."""
    cross_shard: float = 0.2
    read_ratio: float = 0.2
    quorum: str = "byzantine"
    core_bft: str = "hotstuff"
    protocol: str = "hrb"

    def validate(self) -> HrbLoadTarget:
        if self.nodes < self.shard_size:
            raise ConfigError(f"hrb needs at least one shard of {self.shard_size} nodes, got {self.nodes} nodes")
        self._run_config(100.0, 1.0, 1).validate()
        return self

    @property
    def shards(self) -> int:
        return max(1, self.nodes // self.shard_size)

    def agents_for(self, rate_ops: float) -> int:
        from quorate.hrb.agents import THINK_S

        latency_s = self.latency_s if self.latency_s is not None else 0.0
        return max(self.shards, min(MAX_AGENTS, math.ceil(HEADROOM * rate_ops * (THINK_S + latency_s))))

    def calibrate(self, warmup_s: float, window_s: float) -> float:
        """The mean latency with one agent per shard (sets ``latency_s``)."""
        step = self._run(self.shards, warmup_s, window_s)
        mean_s = step.extra.get("mean_latency_s")
        self.latency_s = float(mean_s) if mean_s is not None else 1.0
        return self.latency_s

    def _run_config(self, rate_ops: float, duration_s: float, agents: int | None = None) -> HrbRunConfig:
        from quorate.bench.hrb_sim import HrbRunConfig

        return HrbRunConfig(
            nodes=self.nodes,
            shard_size=self.shard_size,
            core=self.core,
            regions=self.regions,
            inter_region_ms=self.inter_region_ms,
            cross_shard=self.cross_shard,
            read_ratio=self.read_ratio,
            workload="kv",
            quorum=self.quorum,
            core_bft=self.core_bft,
            duration_s=duration_s,
            agents=agents if agents is not None else self.agents_for(rate_ops),
            drain_s=DRAIN_S,
            seed=self.seed,
        )

    def step(self, rate_ops: float, warmup_s: float, window_s: float) -> StepResult:
        if self.latency_s is None:
            self.calibrate(warmup_s, window_s)
        step = self._run(self.agents_for(rate_ops), warmup_s, window_s)
        intended = round(rate_ops * window_s)
        shortfall = max(0, intended - step.invoked)
        step.invoked += shortfall
        step.unknown += shortfall
        step.extra["not_started"] = shortfall
        step.extra["calibrated_latency_ms"] = round((self.latency_s or 0.0) * 1000, 3)
        return step

    def run_agents(self, agents: int, warmup_s: float, window_s: float) -> StepResult:
        """One closed-loop run with ``agents`` agents, measured after ``warmup_s``."""
        return self._run(agents, warmup_s, window_s)

    def _run(self, agents: int, warmup_s: float, window_s: float) -> StepResult:
        from quorate.hrb.simulation import HrbSystem
        from quorate.runtime.sim.composed import SystemSimulation

        config = self._run_config(0.0, warmup_s + window_s, agents)
        config.validate()
        model = HrbSystem(config.settings())
        sim_config = config.sim_config()
        run = SystemSimulation(sim_config, model, drain_s=DRAIN_S, name="hrb").run()
        end_s = warmup_s + window_s
        histogram = LatencyHistogram()
        ok = failed = unknown = 0
        latencies: list[float] = []
        for done in model.pool.completed:
            if not warmup_s <= done.invoked_at < end_s:
                continue
            if done.outcome in ("ok", "fail"):
                ok += done.outcome == "ok"
                failed += done.outcome == "fail"
                histogram.record_s(done.latency_s)
                latencies.append(done.latency_s)
            else:
                unknown += 1
        pending = sum(
            1 for a in model.pool.agents if a.pending is not None and warmup_s <= a.pending.invoked_at < end_s
        )
        started = ok + failed + unknown + pending
        return StepResult(
            rate_ops=started / window_s,
            window_s=window_s,
            invoked=started,
            ok=ok,
            failed=failed,
            unknown=unknown + pending,
            histogram=histogram,
            resources={},
            extra={
                "trace_sha256": run.fields["trace_sha256"],
                "agents": agents,
                "mean_latency_s": sum(latencies) / len(latencies) if latencies else None,
                "safety_violations": len(run.fields["safety_violations"]),
            },
        )

    def close(self) -> None:
        pass
