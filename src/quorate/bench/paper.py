"""``quorate bench paper``: the HRB paper's experiments, run on our protocol code.

Theory of operation. The paper (HRB, §4) reports figures for up to 1000 nodes
in three regions 50 ms apart on 1 Gbps links. This module runs the same
experiments in the deterministic simulator, on the protocol cores our real
nodes run, and writes what it measures beside what the paper claims
(``quorate.bench.paper_report``):

- **Fig. 1 and Fig. 2** (throughput, latency p50/p99 and a CDF vs n). For
  every protocol of the *runner registry* and every n, an open-loop load is
  stepped up with the benchmarker's ramp (``quorate.bench.ramp``: probe by
  doubling, refine by halving the gap, then hold the best rate once); the
  throughput figure is the highest answered rate of a step whose p99 is
  within ``p99_bound_ms`` (and 95 % of operations answered), reported with
  that bound. The latency figures are those of that step. Each protocol's
  analytic floor (``quorate.bench.paper_floors``) is printed beside them.
- **Runners.** A runner knows how to measure one protocol at one n and says
  whether it is available in this build (``RUNNERS``). Raft, PBFT and
  HotStuff run through ``SimLoadTarget`` with their best settings for this
  network (``SETTINGS``); Casper FFG the same way once its binding is
  registered; HRB through the same ramp with its own open-loop target
  (``quorate.bench.hrb_load.HrbOpenLoopTarget``: Poisson arrivals taken by
  HRB's agents, which start once every shard has a leader). A protocol whose
  runner is not available is reported as such, never replaced by a guess.
- **CPU.** Every simulated node charges CPU for each message it handles
  (``CostModel``: a base per message plus a cost per byte) and its
  signatures and MACs (``CryptoCosts``, charged by the cost-model keyring).
  With ``calibrate`` the constants are measured on this machine at the start
  of the run (``quorate.bench.paper_calibrate``) and used for every cell;
  they are in the report.
- **Budget.** The full run must finish in 20 minutes on a 2-core machine and
  ``--quick`` in 3. Cells share a wall-clock budget: protocols run cheapest
  first (by message complexity), each getting the unspent budget divided by
  the protocols still to run, and each cell the rest of its protocol's
  share divided by its cells still to run, the largest n counting as
  ``LARGEST_N_CELL_WEIGHT`` cells (the claims are judged there; cheap small
  cells and cheap protocols leave more to the large, all-to-all ones). The ramp at each n
  after the first starts at the highest good rate of the n before it (the
  limit moves little between neighbouring n), so it spends its steps near
  the limit instead of climbing to it again. Before a
  cell starts, its first step is estimated from the previous cell of the
  same protocol (wall seconds scale with the offered rate and with n to the
  power of the protocol's message complexity: 1 for leader-based, 2 for
  all-to-all, 0 for HRB, whose transactions cost what their shard's size makes them); when it would take more than ``FIRST_STEP_SHARE`` of the
  cell's budget the ramp starts at a lower rate (said in the report), and a
  cell that would have to start below ``MIN_START_RATE_OPS`` is not run; a ramp the budget
  cuts short keeps its steps and says it was cut. At large n each step is
  shorter (``step_plan``). Every such reduction is listed in the report.
- **Validation** (``quorate.bench.paper_validate``): small configurations in
  the simulator with loopback-like parameters and on real processes on
  loopback at the same rates; the error of throughput and median latency.
- **Other figures** (3, partition, recovery, storage) come from HRB's
  simulator face and the partition and recovery benchmarks; those not in
  this build are reported as not available.

Determinism: with ``calibrate`` off (or the same constants given), the same
seed gives the same measured figures (``trace_sha256`` of every step is in
the JSON); wall times and the budget's choices are the only machine-dependent
parts, and the JSON says when the budget changed a cell.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from quorate.bench.histogram import LatencyHistogram
from quorate.bench.paper_floors import ANALYTIC_LABEL, PATTERNS, Network, floor_ms
from quorate.bench.paper_target import BudgetExhausted as _BudgetExhausted
from quorate.bench.paper_target import PaperSimTarget
from quorate.bench.ramp import StepResult
from quorate.crypto.costmodel import CryptoCosts
from quorate.errors import ConfigError
from quorate.runtime.sim.node import CostModel

PAPER_SIZES = (16, 32, 64, 128, 256, 512, 1000)
QUICK_SIZES = (16, 32)
FIGURES = ("1", "2", "3", "partition", "recovery", "storage")
PROTOCOLS = ("hrb", "raft", "pbft", "hotstuff", "casper")
FULL_BUDGET_S = 880.0
"""Wall seconds the full run gives Fig. 1/2 (the rest of 20 minutes goes to
calibration, validation and the other figures)."""
QUICK_BUDGET_S = 50.0
P99_BOUND_MS = 1000.0
"""A step is good only with p99 within this bound (the paper's PBFT p99 is 1.2 s)."""
START_RATE_OPS = 500.0
MAX_RATE_OPS = 64_000.0
FIRST_STEP_SHARE = 0.4
"""The first step of a cell should take at most this share of the cell's budget."""
LARGEST_N_CELL_WEIGHT = 3.0
"""The largest n's cell gets this many cells' worth of its protocol's budget
(the paper's claims are judged there)."""
MIN_START_RATE_OPS = 50.0
"""A cell whose first step would have to start below this rate is not run."""
PAPER_CLIENT_ENDPOINTS = 30
"""Client endpoints of a cell, ten per region (open-loop arrivals share them)."""


@dataclass(frozen=True, slots=True)
class PaperNetwork:
    """The paper's network."""

    regions: int = 3
    inter_region_ms: float = 50.0
    intra_region_ms: float = 0.5
    bandwidth_gbps: float = 1.0

    def floors(self) -> Network:
        return Network(self.regions, self.inter_region_ms, self.intra_region_ms)


@dataclass(frozen=True, slots=True)
class StepPlan:
    """How long each ramp step simulates at one n (after the runner's warm-up)."""

    step_s: float
    max_steps: int


def step_plan(n: int, quick: bool) -> StepPlan:
    """Shorter steps at large n (a reduction the report lists)."""
    if quick:
        return StepPlan(step_s=1.0, max_steps=4)
    if n <= 64:
        return StepPlan(step_s=1.0, max_steps=6)
    if n <= 256:
        return StepPlan(step_s=0.5, max_steps=5)
    return StepPlan(step_s=0.5, max_steps=3)


@dataclass
class PaperConfig:
    quick: bool = False
    figures: tuple[str, ...] = FIGURES
    seed: int = 1
    sizes: tuple[int, ...] = ()
    """Empty: ``PAPER_SIZES`` (``QUICK_SIZES`` with ``quick``)."""
    protocols: tuple[str, ...] = PROTOCOLS
    p99_bound_ms: float = P99_BOUND_MS
    budget_s: float = 0.0
    """Wall seconds for Fig. 1/2; 0: ``FULL_BUDGET_S`` (``QUICK_BUDGET_S``)."""
    network: PaperNetwork = field(default_factory=PaperNetwork)
    calibrate: bool = True
    """Measure the CPU constants here first (else the defaults, measured earlier)."""
    validate_real: bool = True
    """Run the sim-vs-real validation (real processes on loopback)."""
    max_steps: int = 0
    """Most ramp steps per cell (0: ``step_plan``'s)."""
    step_s: float = 0.0
    """Seconds measured per step (0: ``step_plan``'s)."""

    def validate(self) -> PaperConfig:
        unknown = [f for f in self.figures if f not in FIGURES]
        if unknown:
            raise ConfigError(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)} or all")
        bad = [p for p in self.protocols if p not in RUNNERS]
        if bad:
            raise ConfigError(f"unknown protocol(s) {', '.join(bad)}; choose from {', '.join(RUNNERS)}")
        if any(n < 4 for n in self.sizes):
            raise ConfigError(f"every n must be >= 4, got {list(self.sizes)}")
        if not self.p99_bound_ms > 0:
            raise ConfigError(f"the p99 bound must be > 0 ms, got {self.p99_bound_ms}")
        if self.budget_s < 0 or self.max_steps < 0 or self.step_s < 0:
            raise ConfigError("budget, steps and step length must be >= 0")
        return self

    def effective_sizes(self) -> tuple[int, ...]:
        return self.sizes or (QUICK_SIZES if self.quick else PAPER_SIZES)

    def effective_budget_s(self) -> float:
        return self.budget_s or (QUICK_BUDGET_S if self.quick else FULL_BUDGET_S)

    def plan(self, n: int) -> StepPlan:
        base = step_plan(n, self.quick)
        return StepPlan(self.step_s or base.step_s, self.max_steps or base.max_steps)


@dataclass
class CellContext:
    """What a runner gets to measure one cell."""

    n: int
    seed: int
    network: PaperNetwork
    plan: StepPlan
    p99_bound_ms: float
    budget_s: float
    cost: CostModel
    crypto: CryptoCosts
    on_step: Callable[[str], None] = lambda text: None
    start_rate_ops: float = 0.0
    """Where the ramp starts (0: the runner's own start): the previous n's limit."""


class ProtocolRunner(Protocol):
    """Measures one protocol at one n (the registry's interface)."""

    name: str
    title: str
    complexity: int
    """Messages per decision grow as n to this power (1 leader-based, 2 all-to-all)."""
    budget_weight: float
    """This protocol's share of the budget relative to the others' (1: an equal share)."""

    def unavailable(self) -> str | None:
        """Why this build cannot run the protocol, or None when it can."""
        ...

    def settings(self) -> dict[str, Any]:
        """The configuration it runs, and why it is the fair one."""
        ...

    def measure(self, context: CellContext) -> dict[str, Any]:
        """One cell: ``throughput_ops``, ``latency_ms``, ``status`` and the evidence."""
        ...




def _step_summary(step: StepResult, bound_ms: float) -> dict[str, Any]:
    latency = step.histogram.summary_ms()
    return {
        "target_rate_ops": round(step.target_rate_ops, 1),
        "throughput_ops": round(step.throughput_ops, 1),
        "success": round(step.success, 4),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "good": _good(step, bound_ms),
        "sim_s": step.extra.get("sim_s"),
        "wall_s": step.extra.get("wall_s"),
        "events": step.extra.get("events"),
        "trace_sha256": step.extra.get("trace_sha256"),
        **{key: step.extra[key] for key in STEP_DETAILS if key in step.extra},
    }


STEP_DETAILS = ("agents", "agents_started_at_s", "not_started", "unanswered_cross_shard", "unanswered_intra_shard")
"""A target's own step details the report keeps (HRB's open-loop target has these)."""


def _good(step: StepResult, bound_ms: float) -> bool:
    p99 = step.histogram.percentile_ms(99.0)
    return step.success >= 0.95 and p99 is not None and p99 <= bound_ms


def _best(steps: list[StepResult], bound_ms: float) -> StepResult | None:
    """The good step with the highest answered rate (None: no step was good)."""
    good_steps = [s for s in steps if _good(s, bound_ms)]
    return max(good_steps, key=lambda s: s.throughput_ops) if good_steps else None


def _cdf(histogram: LatencyHistogram) -> list[list[float]]:
    return [[float(x), float(y)] for x, y in histogram.cdf_ms()]


@dataclass
class SimRampRunner:
    """A protocol with a simulator binding, measured with the open-loop ramp."""

    name: str
    title: str
    options: Mapping[str, Any]
    why: str
    complexity: int = 1
    budget_weight: float = 1.0
    warmup_s: float = 1.0
    """Simulated seconds before the measurement (a Raft election; BFT's first view needs none)."""
    large_n_warmup_s: tuple[int, float] = (0, 0.0)
    """(from n, seconds): a longer warm-up from that size on (0: none)."""
    start_rate_ops: float = START_RATE_OPS
    bootstrap_campaign: bool = False
    """Node 1 campaigns at time 0 (``PaperSimTarget.bootstrap_campaign``)."""
    p99_bound_ms: float = 0.0
    """This protocol's own p99 bound (0: the run's): for a protocol whose
    message pattern alone exceeds the run's bound, stated in the report."""
    options_from_n: tuple[tuple[int, Mapping[str, Any]], ...] = ()
    """(from n, options): settings that replace ``options``' from that size
    on (the best configuration changes with n; in the report's settings)."""

    def options_for(self, n: int) -> dict[str, Any]:
        """The options of a cell of ``n`` replicas."""
        options = dict(self.options)
        for from_n, overrides in self.options_from_n:
            if n >= from_n:
                options.update(overrides)
        return options

    def unavailable(self) -> str | None:
        from quorate.protocols import binding

        try:
            binding(self.name)
        except ConfigError as exc:
            return f"not available in this build ({exc})"
        return None

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"options": dict(self.options), "why": self.why}
        if self.options_from_n:
            out["options_from_n"] = {str(n): dict(o) for n, o in self.options_from_n}
        return out

    def measure(self, context: CellContext) -> dict[str, Any]:
        start = context.start_rate_ops or self.start_rate_ops
        target = PaperSimTarget(
            protocol=self.name,
            nodes=context.n,
            regions=context.network.regions,
            inter_region_ms=context.network.inter_region_ms,
            options=self.options_for(context.n),
            seed=context.seed,
            clients=PAPER_CLIENT_ENDPOINTS,
            bandwidth_gbps=context.network.bandwidth_gbps,
            intra_region_ms=context.network.intra_region_ms,
            cost=context.cost,
            crypto=context.crypto,
            deadline=time.perf_counter() + context.budget_s,
            budget_s=context.budget_s,
            bootstrap_campaign=self.bootstrap_campaign,
        )
        if self.p99_bound_ms:
            context = replace(context, p99_bound_ms=self.p99_bound_ms)
        from_n, long_warmup_s = self.large_n_warmup_s
        warmup_s = long_warmup_s if from_n and context.n >= from_n else self.warmup_s
        cell = ramp_cell(target, context, start, warmup_s)
        cell["options"] = target.options
        return cell


class RampTarget(Protocol):
    """What ``ramp_cell`` steps: ``PaperSimTarget`` or HRB's open-loop target."""

    protocol: str

    def step(self, rate_ops: float, warmup_s: float, window_s: float) -> StepResult: ...


def ramp_cell(target: RampTarget, context: CellContext, start_rate_ops: float, warmup_s: float) -> dict[str, Any]:
    """Step the rate up (doubling, then halving the gap) until p99 breaks the bound."""
    plan = context.plan
    bound = context.p99_bound_ms
    steps: list[StepResult] = []
    cut = False
    rate = start_rate_ops
    good_rate: float | None = None
    bad_rate: float | None = None
    stopped = f"reached {plan.max_steps} steps"
    try:
        while len(steps) < plan.max_steps:
            step = target.step(rate, warmup_s, plan.step_s)
            step.target_rate_ops = rate
            steps.append(step)
            good = _good(step, bound)
            context.on_step(
                f"{target.protocol} n={context.n}: {rate:,.0f} ops/s offered -> {step.throughput_ops:,.0f} answered, "
                f"p99 {step.histogram.percentile_ms(99.0)} ms ({'good' if good else 'over the bound'})"
            )
            if good:
                good_rate = rate if good_rate is None else max(good_rate, rate)
            else:
                bad_rate = rate if bad_rate is None else min(bad_rate, rate)
            if good_rate is None:
                if rate / 2 < 25.0:
                    stopped = "no rate was good"
                    break
                rate /= 2
            elif bad_rate is None:
                if rate >= MAX_RATE_OPS:
                    stopped = f"reached the rate cap ({MAX_RATE_OPS:g} ops/s)"
                    break
                rate = min(rate * 2, MAX_RATE_OPS)
            elif bad_rate - good_rate <= 0.1 * good_rate:
                stopped = f"limit found within 10 %: {good_rate:,.0f} good, {bad_rate:,.0f} not"
                break
            else:
                rate = (good_rate + bad_rate) / 2
    except _BudgetExhausted:
        cut = True
        stopped = (
            f"the cell's wall-clock budget ({context.budget_s:.0f} s) ran out after {len(steps)} complete step(s) "
            "(a step still running well past it is abandoned)"
        )
    best = _best(steps, bound)
    wall = sum(float(s.extra.get("wall_s", 0.0)) for s in steps)
    cell: dict[str, Any] = {
        "status": "measured" if best is not None else "no good step",
        "cut_by_budget": cut,
        "limit_reached": bad_rate is not None,
        "stopped_because": stopped,
        "p99_bound_ms": bound,
        "throughput_ops": round(best.throughput_ops, 1) if best else None,
        "offered_rate_ops": round(best.target_rate_ops, 1) if best else None,
        "latency_ms": best.histogram.summary_ms() if best else None,
        "latency_cdf_ms": _cdf(best.histogram) if best else [],
        "lowest_rate_latency_ms": steps[0].histogram.summary_ms() if steps else None,
        "steps": [_step_summary(s, bound) for s in steps],
        "first_step_wall_s": float(steps[0].extra.get("wall_s", 0.0)) if steps else None,
        "wall_s": round(wall, 2),
        "warmup_s": warmup_s,
        "sim_s_per_step": warmup_s + context.plan.step_s,
    }
    if best is None and steps:
        cell["reason"] = f"no step kept p99 within {bound:g} ms with 95 % answered ({stopped})"
    return cell


@dataclass
class HrbRampRunner:
    """HRB under the same open-loop ramp as the baselines
    (``quorate.bench.hrb_load.HrbOpenLoopTarget``).

    Each step is a fresh seeded run of the HRB model (shards of
    ``shard_size``, a core of ``core``, byzantine shard quorums) in which
    transactions arrive as a Poisson process at the step's rate, each taken
    by a free agent (a key-value put or get of 64 bytes, 20 % reads, 20 % of
    the writes also touching another shard's key). The agents start once
    every shard has a leader (learnt once per cell from an unloaded run),
    and not before the warm-up: the measurement is of a led deployment, as
    the baselines' warm-up gives theirs. The ramp's p99 bound judges the
    intra-shard transactions (a cross-shard one waits for a core round by
    design; its latency is in the cell beside), and the throughput counts
    every transaction answered."""

    name: str = "hrb"
    title: str = "HRB"
    complexity: int = 0
    """A transaction's messages grow with the shard's size, not with n (a step's
    wall time is estimated from the rate alone)."""
    budget_weight: float = 2.0
    """The paper's own protocol: twice a baseline's share, so its 1000-node cell runs."""
    shard_size: int = 25
    core: int = 7
    warmup_s: float = 1.0
    """At least this long before the agents start (they also wait for every shard's leader)."""
    start_rate_ops: float = START_RATE_OPS

    def unavailable(self) -> str | None:
        try:
            import quorate.hrb.simulation  # noqa: F401
        except ImportError as exc:
            return f"not available in this build ({exc})"
        return None

    def settings(self) -> dict[str, Any]:
        return {
            "options": {"shard_size": self.shard_size, "core": self.core, "quorum": "byzantine", "core_bft": "hotstuff",
                        "workload": "kv", "cross_shard": 0.2, "read_ratio": 0.2, "txn_bytes": 64},
            "why": "the paper's shard (20-50) and core (7-11) ranges; open-loop Poisson arrivals stepped up like the "
            "baselines', each transaction taken by a free agent that sends it to every member of its home shard and "
            "waits for f + 1 matching answers; the agents start once every shard has a leader; the p99 bound judges "
            "intra-shard transactions, the throughput counts every answered transaction (cross-shard ones included)",
        }

    def measure(self, context: CellContext) -> dict[str, Any]:
        from quorate.bench.hrb_load import HrbOpenLoopTarget
        from quorate.bench.paper_target import STEP_OVERRUN_SHARE

        deadline = time.perf_counter() + context.budget_s
        network = context.network
        target = HrbOpenLoopTarget(
            nodes=context.n,
            shard_size=min(self.shard_size, context.n),
            core=min(self.core, context.n),
            regions=network.regions,
            inter_region_ms=network.inter_region_ms,
            intra_region_ms=network.intra_region_ms,
            bandwidth_gbps=network.bandwidth_gbps,
            seed=context.seed,
            deadline=deadline,
            hard_deadline=deadline + STEP_OVERRUN_SHARE * context.budget_s,
            crypto=context.crypto,
        )
        results: list[StepResult] = []
        step = target.step

        def recorded(rate_ops: float, warmup_s: float, window_s: float) -> StepResult:
            result = step(rate_ops, warmup_s, window_s)
            results.append(result)
            return result

        target.step = recorded  # type: ignore[method-assign]
        cell = ramp_cell(target, context, context.start_rate_ops or self.start_rate_ops, self.warmup_s)
        best = _best(results, context.p99_bound_ms)
        cell["latency_kind"] = "intra_shard"
        cell["workload"] = "open-loop Poisson arrivals, each taken by a free agent (kv, 20 % reads, 20 % cross-shard writes)"
        cell["agents_started_at_s"] = target.leaders_at_s
        cell["shards"] = max(1, context.n // min(self.shard_size, context.n))
        if results:
            cell["sim_s_per_step"] = results[0].extra.get("sim_s")
        if best is not None:
            cell["cross_shard_latency_ms"] = best.extra.get("cross_shard_latency_ms")
            cell["agents_in_best_step"] = best.extra.get("agents")
            cell["cpu_in_best_step"] = best.extra.get("cpu")
        return cell


RUNNERS: dict[str, ProtocolRunner] = {
    "hrb": HrbRampRunner(),
    "raft": SimRampRunner(
        "raft",
        "Raft (flat group)",
        {"max_batch_entries": 256, "max_inflight": 64, "election_timeout_s": 0.5},
        "one flat group of n voters; batches of up to 256 entries per AppendEntries and 64 in flight per follower "
        "(pipelining), the leader sending before its own write; a 500 ms election timeout (5 inter-region round trips); "
        "node 1 campaigns at time 0, as an operator bootstrapping a group does: left to the randomized timeouts, a flat "
        "group of 128 or more voters over three regions splits its votes round after round (each region's candidate "
        "collects its own region's votes before another region hears of it; 11 rounds, 6.8 s, at n = 128, seed 1)",
        warmup_s=1.0,
        bootstrap_campaign=True,
    ),
    "pbft": SimRampRunner(
        "pbft",
        "PBFT",
        {"authentication": "macs", "batch_max": 256, "batch_timeout_s": 0.02, "checkpoint_interval": 128},
        "MAC authenticators in the normal case, batches of up to 256 commands closed after 20 ms "
        "(a fifth of the 100 ms inter-region round trip), a checkpoint every 128 sequence numbers "
        "(K = 128 as in Castro and Liskov's evaluation; checkpoints are all-to-all too); "
        "f = floor((n - 1) / 3), so n >= 3f + 1 at every n of the figure (the paper's '4f + 1' would mean "
        "fewer faults tolerated at the same n, not a different protocol). From n = 256 on: signatures and "
        "100 ms batches (200 ms from n = 512). An authenticator carries n - 1 MACs of 32 bytes, so at n = 256 "
        "every prepare and commit is about 9.5 KB and a replica's two broadcasts of a batch hold its 1 Gbps link "
        "for about 39 ms, while signatures cost it 2(n - 1) verifications of about 36 us (about 20 ms of CPU); "
        "measured at n = 256, 200 ops/s, 100 ms batches, seed 1: p50 240 ms with signatures vs 274 ms with MACs. "
        "Longer batches at large n keep each replica's per-batch work (2(n - 1) messages) within its CPU, and "
        "the simulator's events per simulated second proportional to batches. From n = 512 a replica re-sends "
        "after 500 ms without progress instead of 250 ms: a healthy round (the 200 ms batch, the primary's "
        "pre-prepares serialized on its link, three message delays) outlasts 250 ms there, and a re-send from "
        "every replica to every peer per round is n^2 messages more; and a backup suspects a slow primary only "
        "past 600 ms of ordering (a healthy primary's ordering there is the batch wait, two message delays and "
        "its pre-prepares serialized on its link, about 0.4 s at n = 1000 and 500 ops/s, while a backup far from "
        "the primary prepares within milliseconds of its pre-prepare: 237 of 1000 backups asked for a view change)",
        complexity=2,
        warmup_s=0.5,
        options_from_n=(
            (256, {"authentication": "signatures", "batch_timeout_s": 0.1}),
            (512, {"batch_timeout_s": 0.2, "retransmit_interval_s": 0.5, "slow_primary_min_delay_s": 0.6}),
        ),
    ),
    "hotstuff": SimRampRunner(
        "hotstuff",
        "HotStuff",
        {"scheme": "bls", "quorum_certificates": "aggregate", "batch_max": 800, "startup_sync": False,
         "forward_commands": False, "batch_verify_votes": True},
        "chained HotStuff with BLS-aggregated quorum certificates (one signature checked per QC), blocks of up to 800 commands "
        "(the largest batch of the HotStuff paper's evaluation: one block per view of about 110 ms here, so 256 "
        "capped it near 2,300 ops/s at every n; at n = 256 and 4,000 ops/s p99 was 1,424 ms with 256 and 618 ms "
        "with 800, seed 1); "
        "no start-up sync (every replica of a cell boots at time 0 from an empty disk, so each of the n * (n - 1) "
        "requests would be answered with the genesis certificate); a leader checks the 2f + 1 votes it collects as one "
        "BLS aggregate (each vote on its own only if that fails), not one by one: at 0.9 ms a verification, one by one "
        "cost a leader 0.15 s per view at n = 256 and 0.6 s at n = 1000; the clients send every command to every "
        "replica (the leader rotates), so replicas do not forward commands to the leaders (libhotstuff's way: each leader "
        "proposes from its own queue): forwarding brought each leader n - 1 copies of every command, about 0.6 s of "
        "a leader's CPU per second at n = 256 and 500 ops/s",
        warmup_s=0.5,
    ),
    "casper": SimRampRunner(
        "casper",
        "Casper FFG",
        {"forward_commands": False},
        "the finality gadget over its proposer chain, 2 blocks per epoch below n = 512; an operation is answered "
        "once its block is finalized, two rounds of all-to-all checkpoint votes after its inclusion, so its p99 is "
        "judged against 3 s instead of the run's bound (at n = 16 and 250 ops/s its p99 was 1.6 s). The clients send "
        "every command to every validator, so validators do not forward commands to the proposers (each proposer "
        "puts its own queue in its blocks; forwarding brought each proposer n - 1 copies of every command). From "
        "n = 512 an epoch is 8 blocks, from n = 1000 16 (the paper's checkpoints are 100 blocks apart): every epoch "
        "is a round of n^2 signed votes (a million messages at n = 1000), so longer epochs make finality cost fewer "
        "rounds per block, at the price of latency that stays within the 3 s bound (measured, seed 1, 100 ops/s: "
        "n = 512 with 8 p50 829 ms, p99 990 ms; n = 1000 with 16 p50 1,760 ms, p99 1,993 ms)",
        complexity=2,
        p99_bound_ms=3000.0,
        options_from_n=((512, {"epoch_blocks": 8}), (1000, {"epoch_blocks": 16})),
    ),
}
"""The per-protocol runners; a protocol not available in this build says why."""


# ------------------------------------------------------------------ the run
def peak_rss_mb() -> float:
    """Peak resident memory of this process (and of waited-for children), MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def git_revision() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=_source_dir())
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    dirty = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           timeout=10, cwd=_source_dir())
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _source_dir() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parent)


def _batch_rate_ratio(runner: ProtocolRunner, from_n: int, to_n: int) -> float:
    """How many fewer timer-closed batches per second ``runner`` runs at
    ``to_n`` than at ``from_n`` (its ``batch_timeout_s`` at each; 1 without one)."""
    options_for = getattr(runner, "options_for", None)
    if options_for is None:
        return 1.0
    before = options_for(from_n).get("batch_timeout_s")
    after = options_for(to_n).get("batch_timeout_s")
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or before <= 0 or after <= 0:
        return 1.0
    return float(before) / float(after)


Progress = Callable[[str, float], None]
"""``(what, done share 0..1)``."""


def figures_1_2(config: PaperConfig, cost: CostModel, crypto: CryptoCosts, progress: Progress) -> dict[str, Any]:
    """Throughput and latency vs n for every protocol of the registry."""
    sizes = config.effective_sizes()
    budget = config.effective_budget_s()
    protocols: dict[str, Any] = {}
    available = []
    for name in config.protocols:
        runner = RUNNERS[name]
        reason = runner.unavailable()
        protocols[name] = {"title": runner.title, "settings": runner.settings(), "pattern": PATTERNS.get(name),
                           "available": reason is None, "cells": {}}
        if reason is not None:
            protocols[name]["reason"] = reason
        else:
            available.append(name)
    reductions: list[str] = []
    total_cells = max(1, len(available) * len(sizes))
    done_cells = 0
    network = config.network
    used = 0.0
    # Cheap protocols first: what they leave of their share goes to the all-to-all ones.
    order = sorted(available, key=lambda name: RUNNERS[name].complexity)
    for position, name in enumerate(order):
        runner = RUNNERS[name]
        weights = [RUNNERS[other].budget_weight for other in order[position:]]
        per_protocol = max(0.0, budget - used) * runner.budget_weight / sum(weights)
        spent = 0.0
        start_rate = 0.0
        previous: tuple[int, float, float] | None = None
        """(n, wall seconds, offered rate) of the last cell's first step."""
        # The largest n is the one the paper's claims are judged at: its cell
        # gets LARGEST_N_CELL_WEIGHT cells' worth of what is left.
        cell_weights = [1.0] * (len(sizes) - 1) + [LARGEST_N_CELL_WEIGHT]
        for index, n in enumerate(sizes):
            cell_budget = max(0.0, (per_protocol - spent) * cell_weights[index] / sum(cell_weights[index:]))
            plan = config.plan(n)
            floor = floor_ms(name, network.floors(), n if name != "hrb" else min(n, 25))
            progress(f"fig 1/2: {runner.title} n={n}", done_cells / total_cells)
            # A step's wall time grows with n (to the protocol's message
            # complexity) and with the offered rate: start low enough that the
            # first step fits the cell's budget.
            fitted_note = ""
            if previous is not None and previous[1] > 0:
                wanted = start_rate or previous[2]
                estimate = previous[1] * (n / previous[0]) ** runner.complexity * wanted / previous[2]
                # A protocol whose batches close on a timer runs at least one
                # batch per timeout: a longer timeout at this n (its options
                # change with n) means proportionally fewer batches to simulate.
                estimate *= _batch_rate_ratio(runner, previous[0], n)
                if estimate > FIRST_STEP_SHARE * cell_budget:
                    start_rate = wanted * FIRST_STEP_SHARE * cell_budget / estimate
                    fitted_note = (
                        f"ramp started at {start_rate:,.0f} ops/s instead of {wanted:,.0f} to fit its first step in the "
                        f"cell's budget ({cell_budget:,.0f} s; estimated from n={previous[0]}, scaling as n^{runner.complexity} x rate)"
                    )
            cell: dict[str, Any]
            if cell_budget <= 0:
                cell = {"status": "not run", "reason": "the protocol's share of the wall-clock budget is spent"}
                reductions.append(f"{runner.title} n={n}: not run (its share of the budget is spent)")
            elif start_rate and start_rate < MIN_START_RATE_OPS:
                # Also when the rate came down from a smaller n that was not run
                # (or whose limit was below it): a larger n would not do better.
                cell = {
                    "status": "not run",
                    "reason": f"even {MIN_START_RATE_OPS:g} ops/s would not fit this cell's budget ({cell_budget:,.0f} s) "
                    f"by the estimate from n={previous[0]}" if fitted_note and previous is not None else
                    f"the rate carried from the n before ({start_rate:,.0f} ops/s) is below {MIN_START_RATE_OPS:g} ops/s",
                }
                reductions.append(f"{runner.title} n={n}: not run ({cell['reason']})")
            else:
                if fitted_note:
                    reductions.append(f"{runner.title} n={n}: {fitted_note}")
                started = time.perf_counter()
                share = done_cells / total_cells

                def on_step(text: str, share: float = share) -> None:
                    progress(text, share)

                context = CellContext(
                    n=n, seed=config.seed, network=network, plan=plan, p99_bound_ms=config.p99_bound_ms,
                    budget_s=cell_budget, cost=cost, crypto=crypto,
                    on_step=on_step, start_rate_ops=start_rate,
                )
                cell = runner.measure(context)
                wall = time.perf_counter() - started
                spent += wall
                cell["cell_wall_s"] = round(wall, 2)
                cell["peak_rss_mb"] = peak_rss_mb()
                if fitted_note:
                    cell["start_reduced"] = fitted_note
                if isinstance(cell.get("offered_rate_ops"), (int, float)):
                    start_rate = float(cell["offered_rate_ops"])
                steps = cell.get("steps") or []
                if steps and isinstance(steps[0].get("wall_s"), (int, float)) and steps[0]["wall_s"] > 0:
                    previous = (n, float(steps[0]["wall_s"]), float(steps[0]["target_rate_ops"]))
                if cell.get("cut_by_budget"):
                    reductions.append(f"{runner.title} n={n}: ramp cut short by the budget ({cell['stopped_because']})")
            cell["n"] = n
            cell["plan"] = asdict(plan)
            cell["floor_ms"] = floor
            protocols[name]["cells"][str(n)] = cell
            done_cells += 1
        used += spent
    step_reductions = sorted({(config.plan(n).step_s, config.plan(n).max_steps) for n in sizes})
    if len(step_reductions) > 1 or config.quick:
        for n in sizes:
            plan = config.plan(n)
            reductions.append(f"n={n}: {plan.step_s:g} simulated seconds per ramp step, at most {plan.max_steps} steps")
    return {
        "sizes": list(sizes),
        "network": asdict(network),
        "p99_bound_ms": config.p99_bound_ms,
        "budget_s": budget,
        "floor_label": ANALYTIC_LABEL,
        "protocols": protocols,
        "reductions": reductions,
        "seeds": [config.seed],
    }


def largest_cdf(fig: Mapping[str, Any]) -> dict[str, Any]:
    """Per protocol, the latency CDF at the largest n it measured."""
    out: dict[str, Any] = {}
    for name, p in fig["protocols"].items():
        measured = [(int(n), c) for n, c in p["cells"].items() if c.get("latency_cdf_ms")]
        if measured:
            n, cell = max(measured, key=lambda item: item[0])
            out[name] = {"n": n, "cdf_ms": cell["latency_cdf_ms"]}
    return out


def other_figures(config: PaperConfig, progress: Progress) -> dict[str, Any]:
    """Fig. 3, partition, recovery and storage, from the benchmarks that own them when this build has them."""
    from quorate.bench.paper_others import run_other_figure

    out: dict[str, Any] = {}
    for figure in ("3", "partition", "recovery", "storage"):
        if figure in config.figures:
            progress(f"figure {figure}", 0.95)
            if figure == "storage" and "recovery" in out:
                out[figure] = out["recovery"]  # one run of the recovery benchmark measures both
                continue
            out[figure] = run_other_figure(figure, config.quick, config.seed)
    return out


def run_paper(config: PaperConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The whole experiment; returns the JSON-ready report (see the module docstring)."""
    from quorate.bench.paper_calibrate import calibrate
    from quorate.bench.paper_claims import claims_table

    config.validate()
    report_progress: Progress = progress or (lambda what, share: None)
    started = time.perf_counter()
    report_progress("calibrating the CPU model", 0.0)
    calibration = calibrate(measure=config.calibrate, quick=config.quick)
    cost = calibration["cost_model"]
    crypto = calibration["crypto_costs"]
    report: dict[str, Any] = {
        "benchmark": "paper",
        "git_revision": git_revision(),
        "seed": config.seed,
        "quick": config.quick,
        "figures_requested": list(config.figures),
        "cpu_model": calibration["report"],
    }
    if "1" in config.figures or "2" in config.figures:
        fig = figures_1_2(config, cost, crypto, report_progress)
        report["figure_1_2"] = fig
        report["figure_2_cdf"] = largest_cdf(fig)
    report["other_figures"] = other_figures(config, report_progress)
    if config.validate_real:
        from quorate.bench.paper_validate import validate

        report_progress("validating the simulator against real processes", 0.97)
        report["validation"] = validate(config.quick, config.seed, cost)
    report["claims"] = claims_table(report)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["peak_rss_mb"] = peak_rss_mb()
    report_progress("done", 1.0)
    return report


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--sizes takes comma-separated counts (16,32,64), got {text!r}") from None


def parse_figures(text: str) -> tuple[str, ...]:
    if text.strip() == "all":
        return FIGURES
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_protocols(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


__all__ = [
    "FIGURES",
    "PAPER_SIZES",
    "RUNNERS",
    "CellContext",
    "PaperConfig",
    "PaperNetwork",
    "ProtocolRunner",
    "run_paper",
]

