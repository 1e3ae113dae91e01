"""A protocol recommendation from the requirements a user states.

Theory of operation. The requirements are the fault model (``crash`` or
``byzantine``), the number of nodes, the number of regions (50 ms apart,
as in the simulator's default), a p99 latency bound and a throughput floor.

1. *Fit*: a protocol fits if it tolerates the fault model with at least one
   faulty node at that size. Raft tolerates ⌊(n - 1) / 2⌋ crashes and no
   Byzantine node; PBFT, HotStuff and Casper FFG tolerate ⌊(n - 1) / 3⌋
   faults of either kind, so they need n ≥ 4 (3f + 1). HRB splits the nodes
   into Byzantine shards of s = 3f + 1 (about √n shards of about √n nodes,
   at least 4: ``hrb_layout``) under a core: it tolerates f faults *in each
   shard* (and the core's), so it needs two shards at least (n ≥ 8). Its
   shards order transactions in parallel and only cross-shard ones go
   through the core, while every node of a flat BFT group takes part in
   every decision (messages growing as n²): HRB is the choice for many
   nodes, Byzantine faults and regions, where a flat group's latency or
   throughput no longer meets the bounds.
2. *Measure*: every protocol that fits is run in the simulator with those
   nodes and regions at the throughput floor (open-loop), after a warm-up,
   and its p99 and success rate are read from the run — measured, not
   looked up in a table (HRB: its own model with closed-loop agents sized
   to offer the floor, ``quorate.bench.hrb_load``).
3. *Choose*: among the protocols that met both bounds, the one tolerating
   the most faults at this size, then the lowest p99. Every protocol gets a
   line saying why it was chosen, passed over or excluded; HRB's also says
   how it was laid out and when it fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from quorate.bench.ramp import LoadTarget, RampConfig, SimLoadTarget, StepResult
from quorate.errors import ConfigError

FAULT_MODELS = ("crash", "byzantine")
CANDIDATES = ("raft", "pbft", "hotstuff", "casper", "hrb")
HRB_MIN_SHARDS = 2
SUCCESS_MIN = 0.95
WARMUP_S = RampConfig.warmup_s
MEASURE_S = 3.0


@dataclass(frozen=True)
class Requirements:
    faults: str
    nodes: int
    regions: int = 1
    max_latency_ms: float = 100.0
    min_throughput_ops: float = 1000.0

    def validate(self) -> Requirements:
        if self.faults not in FAULT_MODELS:
            raise ConfigError(f"--faults takes crash or byzantine, got {self.faults!r}")
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be >= 1, got {self.nodes}")
        if not 1 <= self.regions <= self.nodes:
            raise ConfigError(f"--regions must be within 1..{self.nodes} (one node per region at least)")
        if not self.max_latency_ms > 0 or not self.min_throughput_ops > 0:
            raise ConfigError("--max-latency-ms and --min-throughput must be > 0")
        return self


def hrb_layout(nodes: int) -> tuple[int, int]:
    """(shard size, core size) for ``nodes``: shards of 3f + 1 close to √n
    (at least 4), a core of 4 below 32 nodes and of 7 from there."""
    shard = max(4, 3 * round(math.sqrt(nodes) / 3) + 1)
    return shard, (4 if nodes < 32 else 7)


def tolerated(protocol: str, nodes: int, faults: str) -> int:
    """How many faulty nodes of that kind ``protocol`` survives with
    ``nodes`` (HRB: in each shard; 0 below two shards)."""
    if protocol == "raft":
        return (nodes - 1) // 2 if faults == "crash" else 0
    if protocol == "hrb":
        shard, _ = hrb_layout(nodes)
        return (shard - 1) // 3 if nodes // shard >= HRB_MIN_SHARDS else 0
    return (nodes - 1) // 3


def _target(protocol: str, req: Requirements, seed: int) -> LoadTarget:
    if protocol == "hrb":
        from quorate.bench.hrb_load import HrbLoadTarget

        shard, core = hrb_layout(req.nodes)
        return HrbLoadTarget(req.nodes, shard_size=shard, core=core, regions=req.regions, seed=seed).validate()
    return SimLoadTarget(protocol, req.nodes, regions=req.regions, seed=seed)


def hrb_note(nodes: int) -> str:
    shard, core = hrb_layout(nodes)
    return (
        f"HRB as {nodes // shard} shards of {shard} (each tolerates {(shard - 1) // 3} Byzantine) under a core "
        f"of {core}: shards order in parallel, only cross-shard transactions go through the core; it fits many "
        "nodes, Byzantine faults and regions, where a flat group of all the nodes runs out of latency or throughput"
    )


def recommend_protocol(
    requirements: Requirements,
    *,
    seed: int = 1,
    progress: Callable[[str, StepResult], None] | None = None,
    candidates: Sequence[str] = CANDIDATES,
) -> dict[str, Any]:
    """Fit, measure, choose (see the module docstring)."""
    req = requirements.validate()
    rows: list[dict[str, Any]] = []
    for protocol in candidates:
        if protocol not in CANDIDATES:
            raise ConfigError(f"unknown protocol {protocol!r}; choose from {', '.join(CANDIDATES)}")
        f = tolerated(protocol, req.nodes, req.faults)
        row: dict[str, Any] = {"protocol": protocol, "tolerates": f}
        if protocol == "hrb":
            row["note"] = hrb_note(req.nodes)
        if f < 1:
            need = "n >= 3f + 1 = 4 nodes" if protocol != "raft" else (
                "a Byzantine-tolerant protocol" if req.faults == "byzantine" else "n >= 3 nodes"
            )
            if protocol == "hrb":
                need = f"two shards of 4 at least, n >= {HRB_MIN_SHARDS * 4}"
            row["fits"] = False
            row["why"] = f"tolerates no {req.faults} fault with {req.nodes} nodes (needs {need})"
            rows.append(row)
            continue
        row["fits"] = True
        target = _target(protocol, req, seed)
        try:
            step = target.step(req.min_throughput_ops, WARMUP_S, MEASURE_S)
        finally:
            target.close()
        step.phase, step.target_rate_ops = "fixed", req.min_throughput_ops
        if progress is not None:
            progress(protocol, step)
        p99 = step.histogram.percentile_ms(99.0)
        row.update(
            {
                "rate_ops": round(step.rate_ops, 1),
                "throughput_ops": round(step.throughput_ops, 1),
                "success": round(step.success, 4),
                "latency_ms": step.histogram.summary_ms(),
            }
        )
        problems = []
        if step.success < SUCCESS_MIN:
            problems.append(f"answered only {step.success:.1%} at {req.min_throughput_ops:,.0f} ops/s")
        if p99 is None or p99 > req.max_latency_ms:
            problems.append(f"p99 {p99} ms > {req.max_latency_ms:g} ms")
        row["meets"] = not problems
        row["why"] = "; ".join(problems) if problems else (
            f"p99 {p99} ms <= {req.max_latency_ms:g} ms at {step.throughput_ops:,.0f} ops/s answered, "
            f"tolerates {f} {req.faults} fault(s)" + (" in each shard" if protocol == "hrb" else "")
        )
        rows.append(row)
    meeting = [r for r in rows if r.get("meets")]
    choice = None
    if meeting:
        best = sorted(meeting, key=lambda r: (-r["tolerates"], r["latency_ms"]["p99"]))[0]
        choice = best["protocol"]
        for r in meeting:
            if r is not best:
                r["why"] += (
                    f"; passed over: {best['protocol']} tolerates {best['tolerates']}"
                    if r["tolerates"] < best["tolerates"]
                    else f"; passed over: {best['protocol']} has the lower p99 ({best['latency_ms']['p99']} ms)"
                )
    return {
        "requirements": {
            "faults": req.faults,
            "nodes": req.nodes,
            "regions": req.regions,
            "max_latency_ms": req.max_latency_ms,
            "min_throughput_ops": req.min_throughput_ops,
        },
        "measured_with": "the simulator (seeded; regions 50 ms apart), open-loop at the throughput floor",
        "recommendation": choice,
        "candidates": rows,
    }
