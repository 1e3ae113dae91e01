"""How far to trust the simulator: the same small clusters simulated and real.

Theory of operation. For 3-node Raft and 4-node PBFT and HotStuff (each with
its defaults, the same in both runtimes), ``validate`` loads

- a *real* cluster on loopback (``quorate.bench.real_load.RealLoadTarget``:
  one OS process per node, durable storage with fsync, open-loop Poisson
  arrivals from separate load processes, latency from each arrival's
  intended start), and
- the *simulator* with loopback-like parameters: one region, 0.05 ms one
  way, 10 Gbps, each node's disk fsync set to the median of a small append +
  ``fdatasync`` measured here first (``FsyncProbe``), and the run's CPU model,

at the same offered rates, and reports per protocol and rate the throughput
and the median latency of both and the relative error of the simulator
((sim - real) / real). The real runs' figures are what the machine gave
them, shared with other tenants; the simulator's are deterministic.

HRB is not validated here: its real face is separate (``quorate demo hrb``)
and its simulator face may be absent from the build.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorate.bench.paper_target import PaperSimTarget
from quorate.bench.ramp import StepResult
from quorate.bench.resources import FsyncProbe
from quorate.runtime.sim import Simulation
from quorate.runtime.sim.node import CostModel

CONFIGURATIONS = (("raft", 3), ("pbft", 4), ("hotstuff", 4))
RATES_OPS = (300.0, 1500.0)
RATES_OPS_QUICK = (300.0,)
WARMUP_S = 1.0
WINDOW_S = 3.0
WINDOW_S_QUICK = 2.0
LOOPBACK_ONE_WAY_MS = 0.05
LOOPBACK_GBPS = 10.0
FSYNC_PROBES = 15
BASE_PORT = 17871


def measure_fsync_s() -> float | None:
    """Median seconds of a small append + fdatasync in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="quorate-paper-fsync-") as directory:
        probe = FsyncProbe(Path(directory))
        try:
            samples = [probe.measure_ms() for _ in range(FSYNC_PROBES)]
        finally:
            probe.close()
    measured = [s for s in samples if s is not None]
    return statistics.median(measured) / 1e3 if measured else None


@dataclass
class LoopbackSimTarget(PaperSimTarget):
    """The simulator set up like a cluster on loopback."""

    fsync_s: float = 0.0

    def build(self, rate_ops: float, duration_s: float) -> Simulation:
        simulation = super().build(rate_ops, duration_s)
        for node in simulation.nodes:
            node.fsync_s = self.fsync_s
        return simulation


def _figures(step: StepResult) -> dict[str, Any]:
    return {
        "throughput_ops": round(step.throughput_ops, 1),
        "p50_ms": step.histogram.percentile_ms(50.0),
        "p99_ms": step.histogram.percentile_ms(99.0),
        "success": round(step.success, 4),
    }


def _error(sim: float | None, real: float | None) -> float | None:
    if sim is None or real is None or real == 0:
        return None
    return round((sim - real) / real, 4)


def validate(quick: bool, seed: int, cost: CostModel) -> dict[str, Any]:
    """Sim vs real for the small configurations (see the module docstring)."""
    from quorate.bench.real_load import RealLoadTarget

    fsync_s = measure_fsync_s()
    rates = RATES_OPS_QUICK if quick else RATES_OPS
    window = WINDOW_S_QUICK if quick else WINDOW_S
    rows: list[dict[str, Any]] = []
    for index, (protocol, nodes) in enumerate(CONFIGURATIONS):
        sim_target = LoopbackSimTarget(
            protocol=protocol,
            nodes=nodes,
            regions=1,
            seed=seed,
            clients=16,
            bandwidth_gbps=LOOPBACK_GBPS,
            intra_region_ms=LOOPBACK_ONE_WAY_MS,
            cost=cost,
            fsync_s=fsync_s or 0.0,
        )
        started = time.perf_counter()
        try:
            real_target = RealLoadTarget(protocol, nodes, base_port=BASE_PORT + 20 * index, seed=seed)
        except Exception as exc:  # a cluster that cannot start is a finding, not a crash of the report
            rows.append({"protocol": protocol, "nodes": nodes, "status": "real cluster did not start", "reason": str(exc)})
            continue
        try:
            for rate in rates:
                real = _figures(real_target.step(rate, WARMUP_S, window))
                sim = _figures(sim_target.step(rate, WARMUP_S, window))
                rows.append({
                    "protocol": protocol,
                    "nodes": nodes,
                    "rate_ops": rate,
                    "status": "measured",
                    "real": real,
                    "sim": sim,
                    "throughput_error": _error(sim["throughput_ops"], real["throughput_ops"]),
                    "p50_error": _error(sim["p50_ms"], real["p50_ms"]),
                })
        except Exception as exc:
            rows.append({"protocol": protocol, "nodes": nodes, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        finally:
            real_target.close()
        rows_of = [r for r in rows if r["protocol"] == protocol]
        for r in rows_of:
            r.setdefault("wall_s", round(time.perf_counter() - started, 1))
    measured = [r for r in rows if r["status"] == "measured"]
    throughput_errors = [abs(r["throughput_error"]) for r in measured if r["throughput_error"] is not None]
    p50_errors = [abs(r["p50_error"]) for r in measured if r["p50_error"] is not None]
    return {
        "sim_parameters": {
            "regions": 1,
            "one_way_ms": LOOPBACK_ONE_WAY_MS,
            "bandwidth_gbps": LOOPBACK_GBPS,
            "fsync_ms": round(fsync_s * 1e3, 3) if fsync_s is not None else None,
            "warmup_s": WARMUP_S,
            "window_s": window,
        },
        "rows": rows,
        "median_abs_throughput_error": round(statistics.median(throughput_errors), 4) if throughput_errors else None,
        "median_abs_p50_error": round(statistics.median(p50_errors), 4) if p50_errors else None,
    }
