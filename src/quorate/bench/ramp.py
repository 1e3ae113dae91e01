"""The load ramp: find the optimal and the sustainable rate of a cluster.

Theory of operation. A *target* (the simulator, ``SimLoadTarget``, or a
live local cluster, ``quorate.bench.real_load.RealLoadTarget``) runs one
*step*: an open-loop load at a given rate for a warm-up and then a
measurement window, and answers with a ``StepResult`` — operations invoked
and answered in the window, the latency histogram of those (HDR, from each
operation's intended start), and the nodes' resource timeline.

A step is *good* when its success rate (answered / invoked; an answer may
be a failed compare-and-swap, which is still an answer) is at least
``success_min`` (95 %) and its p99 is within ``max_p99_ms``; *overloaded*
when the success rate is below ``backoff_below`` (80 %); *degraded* in
between or when only the latency bound is broken. The ramp

1. *probes*: from ``start_rate_ops`` it multiplies the rate by
   ``probe_factor`` after every good step, to find the region of the limit
   in few steps (up to ``max_rate_ops``: a cap, reported as such); when
   even the start rate is not good it *backs off*, dividing the rate by
   ``probe_factor`` until a step is good (down to ``min_rate_ops``: below
   that the cluster is reported as unable to serve the load at all);
2. *refines*: after a step that is not good it backs off, to halfway
   between the highest good rate and the lowest rate that was not good, and
   goes on halving that gap until it is within ``refine_step`` (5 %) of the
   good rate — the limit to 5 % in a handful of steps, where climbing 5 % at
   a time could take a dozen (``max_steps`` bounds the whole ramp);
3. *soaks*: the **optimal rate** is the good step with the highest measured
   throughput; the ramp then holds that rate for ``soak_s``. If the soak is
   not good it retries at ``soak_backoff`` (90 %) of the rate, up to
   ``soak_tries`` times. The **sustainable rate** is the rate a soak held.

``SimLoadTarget`` runs each step as its own seeded simulation (the same
seed every step, so steps differ only in their rate); the warm-up covers
the first election.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from quorate.bench.histogram import LatencyHistogram
from quorate.bench.resources import SimSampler, Timeline
from quorate.errors import ConfigError
from quorate.runtime.sim import SimConfig, Simulation

GOOD = "good"
DEGRADED = "degraded"
OVERLOADED = "overloaded"


@dataclass(frozen=True)
class RampConfig:
    start_rate_ops: float = 500.0
    probe_factor: float = 2.0
    refine_step: float = 0.05
    """Refinement stops when the limit is known to this share of the good rate."""
    success_min: float = 0.95
    backoff_below: float = 0.80
    max_p99_ms: float = 100.0
    warmup_s: float = 2.5
    step_s: float = 2.0
    soak_s: float = 6.0
    soak_backoff: float = 0.9
    soak_tries: int = 3
    max_steps: int = 16
    max_rate_ops: float = 16_000.0
    min_rate_ops: float = 25.0
    """The lowest rate a back-off below a failing start rate tries."""

    def validate(self) -> RampConfig:
        if not self.start_rate_ops > 0:
            raise ConfigError(f"the start rate must be > 0 ops/s, got {self.start_rate_ops}")
        if not self.probe_factor > 1 or not 0 < self.refine_step < 1:
            raise ConfigError("probe_factor must be > 1 and refine_step within (0, 1)")
        if not 0 < self.backoff_below <= self.success_min <= 1:
            raise ConfigError("need 0 < backoff_below <= success_min <= 1")
        if not self.max_p99_ms > 0:
            raise ConfigError(f"--max-p99-ms must be > 0, got {self.max_p99_ms}")
        if self.warmup_s < 0 or not self.step_s > 0 or not self.soak_s > 0:
            raise ConfigError("warm-up must be >= 0 s, step and soak > 0 s")
        if self.max_steps < 1 or self.soak_tries < 0 or not self.max_rate_ops >= self.start_rate_ops:
            raise ConfigError("need max_steps >= 1, soak_tries >= 0 and max_rate >= start_rate")
        if not 0 < self.min_rate_ops <= self.start_rate_ops:
            raise ConfigError(f"the lowest back-off rate must be within (0, start rate], got {self.min_rate_ops}")
        return self


@dataclass
class StepResult:
    rate_ops: float
    """Offered load (operations invoked per second of the window)."""
    window_s: float
    invoked: int
    ok: int
    failed: int
    """Answered with a definite failure (a compare-and-swap that did not match)."""
    unknown: int
    """Not answered in time."""
    histogram: LatencyHistogram
    resources: Timeline = field(default_factory=dict)
    phase: str = "probe"
    target_rate_ops: float = 0.0
    """The rate the ramp asked for (``rate_ops`` is what arrived)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        return self.ok + self.failed

    @property
    def success(self) -> float:
        return self.answered / self.invoked if self.invoked else 0.0

    @property
    def throughput_ops(self) -> float:
        return self.answered / self.window_s if self.window_s > 0 else 0.0

    def verdict(self, config: RampConfig) -> str:
        p99 = self.histogram.percentile_ms(99.0)
        if self.success < config.backoff_below:
            return OVERLOADED
        if self.success < config.success_min or p99 is None or p99 > config.max_p99_ms:
            return DEGRADED
        return GOOD

    def to_json(self, config: RampConfig) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "target_rate_ops": round(self.target_rate_ops, 1),
            "rate_ops": round(self.rate_ops, 1),
            "throughput_ops": round(self.throughput_ops, 1),
            "window_s": self.window_s,
            "invoked": self.invoked,
            "ok": self.ok,
            "failed": self.failed,
            "unknown": self.unknown,
            "success": round(self.success, 4),
            "verdict": self.verdict(config),
            "latency_ms": self.histogram.summary_ms(),
            "latency_cdf_ms": self.histogram.cdf_ms(),
            "histogram_hdr": self.histogram.encode(),
            "resources": self.resources,
            **self.extra,
        }


class LoadTarget(Protocol):
    """Something that can be loaded at a rate: one step at a time."""

    def step(self, rate_ops: float, warmup_s: float, window_s: float) -> StepResult: ...

    def close(self) -> None: ...


@dataclass
class RampResult:
    config: RampConfig
    steps: list[StepResult]
    optimal: StepResult | None
    soaks: list[StepResult]
    sustainable: StepResult | None
    stopped_because: str

    def to_json(self) -> dict[str, Any]:
        config = self.config
        return {
            "optimal_rate_ops": round(self.optimal.target_rate_ops, 1) if self.optimal else None,
            "optimal_throughput_ops": round(self.optimal.throughput_ops, 1) if self.optimal else None,
            "optimal_latency_ms": self.optimal.histogram.summary_ms() if self.optimal else None,
            "sustainable_rate_ops": round(self.sustainable.target_rate_ops, 1) if self.sustainable else None,
            "sustainable_throughput_ops": round(self.sustainable.throughput_ops, 1) if self.sustainable else None,
            "sustainable_latency_ms": self.sustainable.histogram.summary_ms() if self.sustainable else None,
            "stopped_because": self.stopped_because,
            "rules": {
                "success_min": config.success_min,
                "backoff_below": config.backoff_below,
                "max_p99_ms": config.max_p99_ms,
                "probe_factor": config.probe_factor,
                "refine_step": config.refine_step,
                "warmup_s": config.warmup_s,
                "step_s": config.step_s,
                "soak_s": config.soak_s,
            },
            "steps": [s.to_json(config) for s in self.steps],
            "soaks": [s.to_json(config) for s in self.soaks],
        }


def ramp(
    target: LoadTarget, config: RampConfig, progress: Callable[[StepResult], None] | None = None
) -> RampResult:
    """Probe, refine and soak ``target`` (see the module docstring)."""
    config.validate()
    steps: list[StepResult] = []
    rate = config.start_rate_ops
    phase = "probe"
    good_rate: float | None = None
    bad_rate: float | None = None
    stopped = f"reached {config.max_steps} steps"
    while len(steps) < config.max_steps:
        result = target.step(rate, config.warmup_s, config.step_s)
        result.phase = phase
        result.target_rate_ops = rate
        steps.append(result)
        if progress is not None:
            progress(result)
        verdict = result.verdict(config)
        if verdict == GOOD:
            good_rate = rate if good_rate is None else max(good_rate, rate)
        else:
            bad_rate = rate if bad_rate is None else min(bad_rate, rate)
        if good_rate is None:
            if rate / config.probe_factor < config.min_rate_ops:
                stopped = (
                    f"no rate was good: the start rate ({config.start_rate_ops:,.0f} ops/s) "
                    f"and back-offs down to {rate:,.0f} ops/s were not"
                    if rate < config.start_rate_ops
                    else f"even the start rate ({rate:,.0f} ops/s) was {verdict}"
                )
                break
            # Back off: the start rate was already too much.
            phase = "backoff"
            rate /= config.probe_factor
            continue
        if bad_rate is None:
            if rate >= config.max_rate_ops:
                stopped = f"reached the rate cap ({config.max_rate_ops:g} ops/s) with every step good"
                break
            rate = min(rate * config.probe_factor, config.max_rate_ops)
            continue
        if bad_rate - good_rate <= config.refine_step * good_rate:
            stopped = (
                f"limit found: {good_rate:,.0f} ops/s good, {bad_rate:,.0f} ops/s not "
                f"(within {config.refine_step:.0%})"
            )
            break
        # Back off below the step that failed: halve the gap to the last good rate.
        phase = "refine"
        rate = (good_rate + bad_rate) / 2
    good = [s for s in steps if s.verdict(config) == GOOD]
    optimal = max(good, key=lambda s: s.throughput_ops) if good else None
    soaks: list[StepResult] = []
    sustainable: StepResult | None = None
    if optimal is not None:
        soak_rate = optimal.target_rate_ops
        for _ in range(config.soak_tries + 1):
            soak = target.step(soak_rate, config.warmup_s, config.soak_s)
            soak.phase = "soak"
            soak.target_rate_ops = soak_rate
            soaks.append(soak)
            if progress is not None:
                progress(soak)
            if soak.verdict(config) == GOOD:
                sustainable = soak
                break
            soak_rate *= config.soak_backoff
    return RampResult(config, steps, optimal, soaks, sustainable, stopped)


# ------------------------------------------------------------------ the simulator
SIM_CLIENT_ENDPOINTS = 16
SIM_OP_TIMEOUT_S = 1.0
SIM_SAMPLE_INTERVAL_S = 0.25
"""Simulated time is free to sample: four samples a second."""


@dataclass
class SimLoadTarget:
    """Each step a fresh seeded simulation at the step's rate."""

    protocol: str
    nodes: int
    regions: int = 1
    inter_region_ms: float = 50.0
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 1
    clients: int = SIM_CLIENT_ENDPOINTS
    faults: str = "none"

    def config(self, rate_ops: float, duration_s: float) -> SimConfig:
        return SimConfig(
            protocol=self.protocol,
            nodes=self.nodes,
            regions=self.regions,
            inter_region_ms=self.inter_region_ms,
            clients=self.clients,
            rate_ops=rate_ops,
            duration_s=duration_s,
            op_timeout_s=SIM_OP_TIMEOUT_S,
            faults=self.faults,
            seed=self.seed,
            protocol_options=dict(self.options),
            check_invariants=False,
        )

    def build(self, rate_ops: float, duration_s: float) -> Simulation:
        """The simulation of one step (a subclass may adjust its nodes)."""
        return Simulation(self.config(rate_ops, duration_s))

    def step(self, rate_ops: float, warmup_s: float, window_s: float) -> StepResult:
        simulation = self.build(rate_ops, warmup_s + window_s)
        sampler = SimSampler(simulation, SIM_SAMPLE_INTERVAL_S)
        result = simulation.run(progress=sampler.sample)
        histogram = LatencyHistogram()
        invoked: dict[int, float] = {}
        ok = failed = unknown = 0
        end_s = warmup_s + window_s
        for event in result.history:
            kind = event["type"]
            if kind == "invoke":
                if warmup_s <= event["time"] < end_s:
                    invoked[event["process"]] = event["time"]
                continue
            start = invoked.get(event["process"])
            if start is None:
                continue
            if kind in ("ok", "fail"):
                histogram.record_s(event["time"] - start)
                ok += kind == "ok"
                failed += kind == "fail"
            else:
                unknown += 1
        # The measured window only: not the warm-up, nor the drain after the
        # load stops (its idle samples would understate how busy a node was).
        timeline = {
            node: [s for s in samples if warmup_s < s["t_s"] <= end_s + 1e-9]
            for node, samples in sampler.timeline().items()
        }
        return StepResult(
            rate_ops=len(invoked) / window_s,
            window_s=window_s,
            invoked=len(invoked),
            ok=ok,
            failed=failed,
            unknown=unknown + (len(invoked) - ok - failed - unknown),
            histogram=histogram,
            resources=timeline,
            extra={"trace_sha256": result.trace_sha256},
        )

    def close(self) -> None:
        pass
