"""HRB under the ramp: one load step as a seeded run of the HRB model.

Two targets. ``HrbOpenLoopTarget`` (what ``quorate bench paper`` steps) runs
open-loop Poisson arrivals taken by HRB's agents once every shard has a
leader (its docstring says what a step measures). ``HrbLoadTarget`` (the
advisor's and ``bench compare``'s) sizes closed-loop agents to a rate:

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

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quorate.bench.histogram import LatencyHistogram
from quorate.bench.ramp import StepResult
from quorate.errors import ConfigError

if TYPE_CHECKING:
    from quorate.bench.hrb_sim import HrbRunConfig
    from quorate.crypto.costmodel import CryptoCosts
    from quorate.hrb.simulation import HrbSystem

__all__ = ["DEFAULT_CORE", "DEFAULT_SHARD_SIZE", "MAX_AGENTS", "HrbLoadTarget", "HrbOpenLoopTarget"]

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


OPEN_LOOP_AGENT_S = 3.0
"""Open loop: agents per unit of rate (a transaction holds its agent until its answer; at
the p99 bound of a second, three seconds of arrivals leave most of the pool free)."""
OPEN_LOOP_DRAIN_S = 6.0
"""Open loop: simulated seconds after the window: longer than an agent's timeout (5 s), so
every transaction of the window ends answered or timed out (a cross-shard one takes a core
round, 2-3.5 s at p99; a shorter drain would count the slowest of them as not answered)."""
OPEN_LOOP_KEYS_PER_SHARD = 1024
"""Open loop: keys of each shard the transactions write (few keys would make
conflicts with cross-shard transactions' locks the common case)."""
MAX_OPEN_LOOP_AGENTS = 200_000
"""Open loop: most agents one step runs (beyond, arrivals finding none free are a shortfall)."""
MAX_ELECTION_S = 20.0
"""Open loop: the agents start by this simulated time even if some shard has no leader yet."""


class _StepDone(Exception):
    """The window and the drain after it have been simulated: the run can stop."""


@dataclass
class HrbOpenLoopTarget:
    """HRB under an open-loop ramp: each step a fresh seeded run in which
    transactions arrive as a Poisson process at the step's rate, each taken
    by a free agent (``quorate.hrb.agents``, "Arrivals").

    The agents start once every shard has a leader, and not before the
    warm-up (nor after ``MAX_ELECTION_S``); they then take arrivals for the
    window, and the run stops ``OPEN_LOOP_DRAIN_S`` after it. A step
    measures the transactions that arrived in the window: each answered one
    (committed or refused) counts toward the throughput; the latency
    histogram is the **intra-shard** ones' (the ramp's p99 bound judges it),
    the cross-shard ones' summary is in ``extra``; an arrival that found
    every agent busy, or was not answered by the end of the drain, is not
    answered. ``leaders_at_s`` is when the agents of the last step started."""

    nodes: int
    shard_size: int = 25
    core: int = 7
    regions: int = 3
    inter_region_ms: float = 50.0
    intra_region_ms: float = 0.5
    bandwidth_gbps: float = 1.0
    seed: int = 1
    cross_shard: float = 0.2
    read_ratio: float = 0.2
    txn_bytes: int = 64
    quorum: str = "byzantine"
    core_bft: str = "hotstuff"
    deadline: float = math.inf
    """perf_counter() after which no new step starts (``BudgetExhausted``)."""
    hard_deadline: float = math.inf
    """perf_counter() after which a running step is abandoned (``BudgetExhausted``)."""
    protocol: str = "hrb"
    leaders_at_s: float | None = None
    crypto: CryptoCosts | None = None
    """What signatures, verifications and threshold shares cost (None: the defaults)."""
    charge_crypto: bool = True
    """Charge each node's signatures, verifications and threshold shares and combines
    to its CPU (its inputs wait behind them), as the baselines' runs do."""

    def run_config(self, rate_ops: float, window_s: float) -> HrbRunConfig:
        from quorate.bench.hrb_sim import HrbRunConfig

        shards = max(1, self.nodes // self.shard_size)
        return HrbRunConfig(
            nodes=self.nodes,
            shard_size=self.shard_size,
            core=self.core,
            regions=self.regions,
            inter_region_ms=self.inter_region_ms,
            intra_region_ms=self.intra_region_ms,
            bandwidth_gbps=self.bandwidth_gbps,
            cross_shard=self.cross_shard,
            read_ratio=self.read_ratio,
            txn_bytes=self.txn_bytes,
            workload="kv",
            quorum=self.quorum,
            core_bft=self.core_bft,
            duration_s=MAX_ELECTION_S + window_s,
            agents=max(shards, min(MAX_OPEN_LOOP_AGENTS, math.ceil(rate_ops * OPEN_LOOP_AGENT_S))),
            drain_s=OPEN_LOOP_DRAIN_S,
            seed=self.seed,
        )

    def model(self, rate_ops: float, warmup_s: float, window_s: float) -> tuple[HrbRunConfig, HrbSystem]:
        """The step's configuration and model (the agents' open-loop settings applied)."""
        import dataclasses

        from quorate.hrb.simulation import HrbSystem

        config = self.run_config(rate_ops, window_s)
        config.validate()
        settings = config.settings()
        workload = dataclasses.replace(
            settings.workload,
            arrival_rate_ops=rate_ops,
            start_s=min(warmup_s, MAX_ELECTION_S),
            wait_for_leaders=True,
            issue_for_s=window_s,
            keys_per_shard=OPEN_LOOP_KEYS_PER_SHARD,
        )
        return config, HrbSystem(dataclasses.replace(settings, workload=workload, crypto_costs=self.crypto))

    def step(self, rate_ops: float, warmup_s: float, window_s: float) -> StepResult:
        import time

        from quorate.bench.paper_target import BudgetExhausted
        from quorate.runtime.sim.composed import SystemSimulation

        if time.perf_counter() > self.deadline:
            raise BudgetExhausted
        started = time.perf_counter()
        config, model = self.model(rate_ops, warmup_s, window_s)
        pool = model.pool
        simulation = SystemSimulation(config.sim_config(), model, drain_s=OPEN_LOOP_DRAIN_S, name="hrb")
        if self.charge_crypto:
            # A node's CPU model adds what its cost-model crypto charged to each input's cost.
            for node in simulation.nodes:
                node.verifier = model.cpu_meter(node.id)
        hard = self.hard_deadline

        def guard(now: float, end: float) -> None:
            if time.perf_counter() > hard:
                raise BudgetExhausted
            if pool.started_at is not None and now >= pool.started_at + window_s + OPEN_LOOP_DRAIN_S:
                raise _StepDone

        with contextlib.suppress(_StepDone):
            simulation.run(guard)
        began = pool.started_at if pool.started_at is not None else config.duration_s
        self.leaders_at_s = pool.started_at
        end_s = began + window_s
        intra = LatencyHistogram()
        cross: list[float] = []
        ok = failed = unknown = lost_cross = 0
        for done in pool.completed:
            if not began <= done.invoked_at < end_s:
                continue
            if done.outcome in ("ok", "fail"):
                ok += done.outcome == "ok"
                failed += done.outcome == "fail"
                if done.cross:
                    cross.append(done.latency_s)
                else:
                    intra.record_s(done.latency_s)
            else:
                unknown += 1
                lost_cross += done.cross
        still = [a.pending for a in pool.agents if a.pending is not None and began <= a.pending.invoked_at < end_s]
        pending = len(still)
        lost_cross += sum(1 for p in still if p.cross)
        invoked = ok + failed + unknown + pending + pool.not_started
        cross.sort()
        loop = simulation.loop
        return StepResult(
            rate_ops=invoked / window_s,
            window_s=window_s,
            invoked=invoked,
            ok=ok,
            failed=failed,
            unknown=unknown + pending + pool.not_started,
            histogram=intra,
            resources={},
            extra={
                "trace_sha256": loop.trace_sha256(),
                "agents": config.agents,
                "agents_started_at_s": round(began, 3),
                "not_started": pool.not_started,
                "unanswered_cross_shard": lost_cross,
                "unanswered_intra_shard": unknown + pending - lost_cross,
                "cross_shard": len(cross),
                "cross_shard_latency_ms": _summary_ms(cross),
                "safety_violations": len(simulation.violations),
                "cpu": _cpu_summary(simulation, model, began, loop.now),
                "events": loop.events,
                "messages": simulation.network.sent,
                "sim_s": round(loop.now, 3),
                "wall_s": round(time.perf_counter() - started, 3),
            },
        )

    def close(self) -> None:
        pass


def _cpu_summary(simulation: Any, model: HrbSystem, began: float, now: float) -> dict[str, Any]:
    """Busy share of each node's CPU from the agents' start to the end of the
    run (``SimNode.work_s`` counts from the start: the election before is
    small and counted in), the core members' one by one, the others' median
    and most."""
    span_s = max(1e-9, now - began)
    core = set(model.members_of.get(0, ()))
    work = {int(node.id): node.work_s for node in simulation.nodes}
    others = sorted(w for n, w in work.items() if n not in core)
    return {
        "span_s": round(span_s, 3),
        "core_busy": {str(n): round(work[n] / span_s, 4) for n in sorted(core) if n in work},
        "others_busy_median": round(others[len(others) // 2] / span_s, 4) if others else None,
        "others_busy_max": round(others[-1] / span_s, 4) if others else None,
        "crypto_charged": simulation.nodes[0].verifier is not None if simulation.nodes else False,
    }


def _summary_ms(ordered: list[float]) -> dict[str, float] | None:
    if not ordered:
        return None
    n = len(ordered)
    return {
        "p50": round(ordered[min(n - 1, int(0.5 * n))] * 1e3, 3),
        "p99": round(ordered[min(n - 1, int(0.99 * n))] * 1e3, 3),
        "max": round(ordered[-1] * 1e3, 3),
    }
