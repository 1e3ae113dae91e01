"""The settings advisor: try one setting at a time, keep what beats the noise.

Theory of operation. A *measurement* is the throughput (and p99) of one
closed-loop run: in the simulator ``clients`` closed-loop clients for a few
simulated seconds (repeats use different seeds, so the noise is the spread
over seeds); on real processes ``quorate bench real``'s run
(``quorate.bench.real.run_real_bench``: a local cluster, fsync on), whose
repeats carry the machine's own noise.

1. The current configuration (the protocol's defaults, or what was given) is
   measured ``repeats`` times.
2. For each knob in turn (``KNOBS``: batch size, pipeline window, storage
   engine, MACs against signatures, Casper's epoch length, HRB's shard size
   and core protocol...), each candidate value is measured ``repeats`` times
   with every setting kept so far (a value the cluster's size does not
   allow, a shard larger than the nodes, is skipped).
3. A candidate replaces the current value only if its median throughput is
   at least ``MIN_GAIN`` (5 %) above the current median *and* its worst
   repeat beats the current best repeat: the gain must be larger than the
   noise the repeats showed, not only larger on average. A candidate whose
   median p99 is more than ``MAX_P99_RISE`` worse is refused whatever its
   throughput.

HRB is measured in the simulator only (``hrb_measure``): its own model of
shards, core and ``clients`` closed-loop agents (``quorate.bench.hrb_load``),
the same agents whatever the shard size, so a layout is judged on the same
offered work.

The result lists every trial with its repeats, and the recommended
configuration as ``--option KEY=VALUE`` flags (and ``--storage`` for real runs).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quorate.errors import ConfigError
from quorate.runtime.sim import SimConfig, run

RAMP_WARMUP_S = 2.5
"""Simulated seconds of an HRB run before its measurement (elections, the core's first decisions)."""

MIN_GAIN = 0.05
MAX_P99_RISE = 0.20
DEFAULT_REPEATS = 3


@dataclass(frozen=True)
class Knob:
    name: str
    """A protocol option, or ``storage`` (the node's storage engine)."""
    default: Any
    candidates: tuple[Any, ...]
    what: str
    real_only: bool = False


KNOBS: dict[str, tuple[Knob, ...]] = {
    "raft": (
        Knob("max_batch_entries", 64, (16, 256), "entries per AppendEntries (batch size)"),
        Knob("max_inflight", 64, (8, 256), "AppendEntries in flight per follower (pipeline window)"),
        Knob("storage", "sqlite", ("wal",), "storage engine", real_only=True),
    ),
    "pbft": (
        Knob("batch_max", 128, (32, 512), "commands per pre-prepare (batch size)"),
        Knob("window_size", 0, (16, 256), "sequence numbers in flight above the checkpoint (0: 8K = 64)"),
        Knob("authentication", "signatures", ("macs",), "MAC authenticators instead of signatures"),
        Knob("storage", "sqlite", ("wal",), "storage engine", real_only=True),
    ),
    "hotstuff": (
        Knob("batch_max", 256, (64, 1024), "commands per block (batch size)"),
        Knob("storage", "sqlite", ("wal",), "storage engine", real_only=True),
    ),
    "casper": (
        Knob("batch_max", 256, (64, 1024), "commands per block (batch size)"),
        Knob("epoch_blocks", 2, (1, 4), "blocks per epoch (a checkpoint every epoch_blocks blocks)"),
        Knob("storage", "sqlite", ("wal",), "storage engine", real_only=True),
    ),
    "hrb": (
        Knob("shard_size", 4, (7, 10, 16), "nodes per shard (3f + 1: more shards in parallel, or more faults per shard)"),
        Knob("core_bft", "hotstuff", ("pbft",), "the core's ordering protocol"),
    ),
}
SIM_ONLY = ("hrb",)

Measurement = dict[str, Any]
"""``throughput_ops`` and ``p99_ms`` of one run."""
Measure = Callable[[Mapping[str, Any], int], Measurement]
"""(settings, repeat number) -> measurement."""


@dataclass
class Trial:
    knob: str
    value: Any
    runs: list[Measurement]
    kept: bool = False
    reason: str = ""

    @property
    def median_ops(self) -> float:
        return float(statistics.median(float(r["throughput_ops"]) for r in self.runs))

    @property
    def median_p99_ms(self) -> float | None:
        values = [r["p99_ms"] for r in self.runs if r["p99_ms"] is not None]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "knob": self.knob,
            "value": self.value,
            "throughput_ops": [r["throughput_ops"] for r in self.runs],
            "median_ops": round(self.median_ops, 1),
            "p99_ms": [r["p99_ms"] for r in self.runs],
            "median_p99_ms": self.median_p99_ms,
            "kept": self.kept,
            "reason": self.reason,
        }


def judge(current: Trial, candidate: Trial) -> tuple[bool, str]:
    """Whether ``candidate`` beats ``current`` by more than the noise (see the module docstring)."""
    gain = candidate.median_ops / current.median_ops - 1 if current.median_ops > 0 else float("inf")
    best_current = max(r["throughput_ops"] for r in current.runs)
    worst_candidate = min(r["throughput_ops"] for r in candidate.runs)
    p99_now, p99_new = current.median_p99_ms, candidate.median_p99_ms
    if p99_now is not None and p99_new is not None and p99_new > p99_now * (1 + MAX_P99_RISE):
        return False, f"p99 rose {p99_now:.2f} -> {p99_new:.2f} ms"
    if gain < MIN_GAIN:
        return False, f"median gain {gain:+.1%} < {MIN_GAIN:.0%}"
    if worst_candidate <= best_current:
        return False, (
            f"median gain {gain:+.1%} but within the noise (worst repeat {worst_candidate:,.0f} "
            f"<= best current repeat {best_current:,.0f})"
        )
    return True, f"median gain {gain:+.1%}, worst repeat {worst_candidate:,.0f} > best current {best_current:,.0f}"


@dataclass
class Advice:
    protocol: str
    target: str
    baseline: Trial
    trials: list[Trial] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def flags(self) -> list[str]:
        out = []
        for key, value in sorted(self.settings.items()):
            if self.protocol in SIM_ONLY:  # flags of ``quorate sim hrb``
                out += ["--" + key.replace("_", "-"), str(value)]
            elif key == "storage":
                out += ["--storage", str(value)]
            else:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                out += ["--option", f"{key}={text}"]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "target": self.target,
            "rule": f"keep a change only if its median throughput gains >= {MIN_GAIN:.0%} and its worst "
            f"repeat beats the current best repeat; refuse p99 rises > {MAX_P99_RISE:.0%}",
            "baseline": self.baseline.to_json(),
            "trials": [t.to_json() for t in self.trials],
            "recommended": dict(self.settings),
            "recommended_flags": self.flags(),
        }


def advise(
    protocol: str,
    measure: Measure,
    *,
    real: bool = False,
    repeats: int = DEFAULT_REPEATS,
    start: Mapping[str, Any] | None = None,
    progress: Callable[[Trial], None] | None = None,
    allowed: Callable[[Knob, Any], bool] | None = None,
) -> Advice:
    """Try the knobs of ``protocol`` one at a time (see the module docstring);
    ``allowed(knob, value)`` False skips a value."""
    if protocol not in KNOBS:
        raise ConfigError(f"no advisor knobs for {protocol!r}; choose from {', '.join(KNOBS)}")
    if real and protocol in SIM_ONLY:
        raise ConfigError(f"{protocol} is advised in the simulator only (--sim)")
    if repeats < 2:
        raise ConfigError(f"--repeats must be >= 2 (the noise is measured from repeats), got {repeats}")
    settings = dict(start or {})

    def trial(knob: str, value: Any) -> Trial:
        result = Trial(knob, value, [measure(settings | ({knob: value} if knob else {}), i) for i in range(repeats)])
        if progress is not None:
            progress(result)
        return result

    current = trial("", None)
    current.kept, current.reason = True, "baseline"
    advice = Advice(protocol, "real" if real else "sim", current)
    for knob in KNOBS[protocol]:
        if knob.real_only and not real:
            continue
        for value in knob.candidates:
            if allowed is not None and not allowed(knob, value):
                continue
            candidate = trial(knob.name, value)
            candidate.kept, candidate.reason = judge(current, candidate)
            advice.trials.append(candidate)
            if candidate.kept:
                settings[knob.name] = value
                current = candidate
    advice.settings = settings
    return advice


# ------------------------------------------------------------------ measurements
SIM_ADVISE_CLIENTS = 64
SIM_ADVISE_DURATION_S = 3.0


def sim_measure(
    protocol: str,
    nodes: int,
    regions: int = 1,
    seed: int = 1,
    clients: int = SIM_ADVISE_CLIENTS,
    duration_s: float = SIM_ADVISE_DURATION_S,
) -> Measure:
    """Closed-loop simulated runs; repeat ``i`` uses seed ``seed + i``."""

    def measure(settings: Mapping[str, Any], repeat: int) -> Measurement:
        result = run(
            SimConfig(
                protocol=protocol,
                nodes=nodes,
                regions=regions,
                clients=clients,
                duration_s=duration_s,
                seed=seed + repeat,
                protocol_options={k: v for k, v in settings.items() if k != "storage"},
                check_invariants=False,
                record_history=False,
            )
        )
        return {"throughput_ops": result.throughput_ops, "p99_ms": result.latency_ms["p99"]}

    return measure


def hrb_measure(
    nodes: int,
    regions: int = 1,
    seed: int = 1,
    agents: int = SIM_ADVISE_CLIENTS,
    duration_s: float = SIM_ADVISE_DURATION_S,
) -> Measure:
    """Simulated HRB runs with ``agents`` closed-loop agents; repeat ``i`` uses seed ``seed + i``."""
    from quorate.bench.hrb_load import DEFAULT_CORE, DEFAULT_SHARD_SIZE, HrbLoadTarget

    def measure(settings: Mapping[str, Any], repeat: int) -> Measurement:
        target = HrbLoadTarget(
            nodes,
            shard_size=int(settings.get("shard_size", DEFAULT_SHARD_SIZE)),
            core=int(settings.get("core", DEFAULT_CORE)),
            regions=regions,
            seed=seed + repeat,
            core_bft=str(settings.get("core_bft", "hotstuff")),
        ).validate()
        step = target.run_agents(agents, RAMP_WARMUP_S, duration_s)
        return {"throughput_ops": round(step.throughput_ops, 1), "p99_ms": step.histogram.percentile_ms(99.0)}

    return measure


def hrb_allows(nodes: int) -> Callable[[Knob, Any], bool]:
    """HRB layouts that fit ``nodes``: a shard no larger than the nodes."""

    def allowed(knob: Knob, value: Any) -> bool:
        return knob.name != "shard_size" or int(value) <= nodes

    return allowed


def real_measure(protocol: str, nodes: int, duration_s: float, clients: int, base_port: int) -> Measure:
    """``quorate bench real`` runs (closed-loop puts on a local cluster, fsync on)."""
    from quorate.bench.puts import RealBenchConfig
    from quorate.bench.real import run_real_bench

    def measure(settings: Mapping[str, Any], repeat: int) -> Measurement:
        options = {k: v for k, v in settings.items() if k != "storage"}
        report = run_real_bench(
            RealBenchConfig(
                protocol=protocol,
                nodes=nodes,
                clients=clients,
                duration_s=duration_s,
                base_port=base_port,
                storage=str(settings.get("storage", "sqlite")),
                options=options,
            )
        )
        return {"throughput_ops": report["throughput_ops"], "p99_ms": report["latency_ms"]["p99"]}

    return measure


def knobs_of(protocol: str, real: bool) -> Sequence[Knob]:
    return [k for k in KNOBS.get(protocol, ()) if real or not k.real_only]
