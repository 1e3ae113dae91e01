"""One simulated HRB run: the HRB model (``quorate.hrb.simulation``) on the
simulator of composed systems (``quorate.runtime.sim.composed``), then the
offline checks.

Theory of operation. ``HrbRunConfig`` is every flag of ``quorate sim hrb``
in one flat record (so a sweep replaces the seed, and ``command_line``
writes the command that reproduces a run). ``run_hrb`` builds the model,
runs it, checks the agents' history for linearizability key by key
(``quorate.check``) and says what failed:

- a safety violation (a shard's or the core's online check, or atomicity
  across shards: a transaction decided differently by two shards, a store
  told to break atomicity, a bank total that does not add up);
- a history that is not linearizable;
- after a chaos phase, no transaction completed within
  ``liveness_bound_s`` of the heal.

Detections are measurements: ``detection_gaps`` lists every Byzantine node
that led while misbehaving as leader and was not detected and deposed (and,
when its behaviour leaves evidence, evicted), for the caller to judge.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from quorate.errors import ConfigError
from quorate.runtime.sim.cluster import SimConfig

if TYPE_CHECKING:
    from quorate.hrb.simulation import HrbSimSettings

# HRB (and the signing libraries it needs) is imported when a run is built,
# not with this module: the CLI and the sweeps load without the crypto extra.

__all__ = ["EVIDENCE_BEHAVIOURS", "HrbRunConfig", "command_line", "run_hrb", "verdict"]

CHECK_TIMEOUT_S = 120.0
"""Wall-clock budget of the linearizability check."""
EVIDENCE_BEHAVIOURS = ("equivocating-leader", "forging-leader")
"""Leader behaviours that leave evidence the core can check: they must end evicted.
The others (censoring, slow, silent) are only suspected: deposed, never evicted."""
LEADER_BEHAVIOURS = ("equivocating-leader", "censoring-leader", "forging-leader", "slow-leader", "silent-leader")


@dataclass(frozen=True, slots=True)
class HrbRunConfig:
    """Every setting of one ``quorate sim hrb`` run (the flags' names)."""

    nodes: int = 200
    shard_size: int = 25
    core: int = 7
    regions: int = 3
    inter_region_ms: float = 50.0
    intra_region_ms: float = 0.5
    bandwidth_gbps: float = 1.0
    cross_shard: float = 0.2
    read_ratio: float = 0.2
    txn_bytes: int = 64
    workload: str = "bank"
    quorum: str = "byzantine"
    core_bft: str = "hotstuff"
    byzantine: str = ""
    allow_unsafe: bool = False
    faults: str = "none"
    heal_at_s: float | None = None
    max_crashed: int | None = None
    duration_s: float = 30.0
    agents: int = 0
    op_timeout_s: float = 5.0
    epoch_length: int = 10**9
    liveness_bound_s: float = 10.0
    drain_s: float = 8.0
    """Simulated seconds after the agents stop, for transactions in flight to settle."""
    seed: int = 0
    dynamic_sharding: bool = False
    """Splits, merges and agent moves through the core while agents write."""
    reshard: str = ""
    """With dynamic sharding: changes proposed as they are (``split:S:NEW@T,merge:A:INTO@T``)."""
    partitioner: bool = True
    """With dynamic sharding: run the background partitioner (off: the genesis map stays)."""
    wait_for_leaders: bool = False
    """Agents start once every shard has a leader (throughput counts from then)."""

    @property
    def protocol(self) -> str:
        return "hrb"

    def settings(self) -> HrbSimSettings:
        from quorate.hrb.agents import WorkloadSettings
        from quorate.hrb.simulation import HrbSimSettings

        return HrbSimSettings(
            nodes=self.nodes,
            shard_size=self.shard_size,
            core_size=self.core,
            quorum=self.quorum,
            core_bft=self.core_bft,
            byzantine=self.byzantine,
            allow_unsafe=self.allow_unsafe,
            agents=self.agents,
            epoch_length=self.epoch_length,
            seed=self.seed,
            dynamic_sharding=self.dynamic_sharding,
            partitioner=self.partitioner,
            reshard=tuple(_reshard(self.reshard, self.dynamic_sharding)),
            workload=WorkloadSettings(
                workload=self.workload,
                cross_shard=self.cross_shard,
                read_ratio=self.read_ratio,
                txn_bytes=self.txn_bytes,
                op_timeout_s=self.op_timeout_s,
                wait_for_leaders=self.wait_for_leaders,
            ),
        )

    def sim_config(self) -> SimConfig:
        return SimConfig(
            protocol="hrb",
            nodes=self.nodes,
            regions=self.regions,
            inter_region_ms=self.inter_region_ms,
            intra_region_ms=self.intra_region_ms,
            bandwidth_gbps=self.bandwidth_gbps,
            duration_s=self.duration_s,
            clients=0,
            faults=self.faults,
            heal_at_s=self.heal_at_s,
            max_crashed=self.max_crashed if self.max_crashed is not None else self.default_max_crashed(),
            liveness_bound_s=self.liveness_bound_s,
            seed=self.seed,
        )

    def default_max_crashed(self) -> int:
        """Chaos crashes at most what both tiers tolerate beside the Byzantine
        nodes: a core's f and a shard's f, less the Byzantine ones asked for."""
        from quorate.hrb.scope import third_bound
        from quorate.hrb.simulation import CORE_BEHAVIOURS, parse_hrb_byzantine

        wanted = parse_hrb_byzantine(self.byzantine)
        core_bad = sum(c for c, b in wanted if b in CORE_BEHAVIOURS)
        shard_bad = sum(c for c, b in wanted if b not in CORE_BEHAVIOURS)
        core_f = (self.core - 1) // 3
        shard_f = third_bound(self.shard_size)
        return max(0, min(core_f - core_bad, shard_f - min(shard_bad, shard_f)))

    def validate(self) -> None:
        if not self.drain_s >= 0:
            raise ConfigError(f"drain must be >= 0 seconds, got {self.drain_s}")
        if not self.partitioner and not self.dynamic_sharding:
            raise ConfigError("--no-partitioner needs --dynamic-sharding")
        self.settings().validate()
        self.sim_config().validate()


def _reshard(text: str, dynamic: bool) -> list[tuple[float, Any]]:
    if not text:
        return []
    if not dynamic:
        raise ConfigError("--reshard needs --dynamic-sharding")
    from quorate.hrb.reshard_sim import parse_reshard

    return parse_reshard(text)


def command_line(config: HrbRunConfig) -> str:
    """The ``quorate sim hrb`` command that runs ``config`` again (defaults omitted)."""
    defaults = HrbRunConfig()
    parts = ["quorate", "sim", "hrb"]
    for f in fields(HrbRunConfig):
        value = getattr(config, f.name)
        if value == getattr(defaults, f.name) and f.name != "seed":
            continue
        flag = "--" + f.name.removesuffix("_s").replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def linearizable(history: list[dict[str, Any]]) -> tuple[bool | None, str]:
    """(verdict, its name): None when the check ran out of time."""
    from quorate.check import check_history

    if not history:
        return True, "linearizable"
    result = check_history(history, timeout_s=CHECK_TIMEOUT_S, clock=time.monotonic)
    verdict = str(result.verdict)
    if verdict == "linearizable":
        return True, verdict
    if verdict == "not_linearizable":
        return False, verdict
    return None, verdict


def detection_gaps(detections: list[dict[str, Any]]) -> list[str]:
    """Byzantine nodes that led misbehaving and were not dealt with (see the module docstring)."""
    gaps = []
    for d in detections:
        if d["behaviour"] not in LEADER_BEHAVIOURS or d["led_at_s"] is None:
            continue
        missing = [k for k in ("detected_after_s", "deposed_after_s") if d[k] is None]
        if d["behaviour"] in EVIDENCE_BEHAVIOURS and d["evicted_after_s"] is None:
            missing.append("evicted_after_s")
        if missing:
            gaps.append(f"n{d['offender']} ({d['behaviour']}): no {', '.join(k.removesuffix('_after_s') for k in missing)}")
    return gaps


def run_hrb(
    config: HrbRunConfig,
    progress: Callable[[float, float], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``config`` and check it: (report, history). ``ConfigError`` for an impossible config."""
    from quorate.hrb.simulation import HrbSystem
    from quorate.runtime.sim.composed import SystemSimulation

    config.validate()
    model = HrbSystem(config.settings())
    simulation = SystemSimulation(config.sim_config(), model, drain_s=config.drain_s, name="hrb")
    run = simulation.run(progress, clock)
    report = run.to_json()
    lin, verdict = linearizable(run.history)
    report["linearizable"] = lin
    report["check_verdict"] = verdict
    report["history_ops"] = sum(1 for e in run.history if e["type"] == "invoke")
    report["detection_gaps"] = detection_gaps(report["detections"])
    failures = []
    if report["safety_violations"]:
        failures.append(f"safety violated: {report['safety_violations'][0]['message']}")
    if report["atomicity_violations"]:
        failures.append(f"{report['atomicity_violations']} atomicity violation(s)")
    if lin is False:
        failures.append("the history is not linearizable")
    if report["evicted_honest"]:
        failures.append(f"honest node(s) evicted: {report['evicted_honest']} (an honest member must never be convictable)")
    if report["liveness_ok"] is False:
        failures.append(f"NOT RECOVERED: nothing completed within {config.liveness_bound_s} s of the heal")
    report["ok"] = not failures
    report["failures"] = failures
    report["command"] = command_line(config)
    return report, run.history


def verdict(config: HrbRunConfig) -> dict[str, Any]:
    """One seed of a sweep, judged (``quorate.bench.sweep``'s verdict, no history)."""
    report, _ = run_hrb(config)
    lin = report["linearizable"]
    problem = "; ".join(report["failures"]) or None
    return {
        "seed": config.seed,
        "ok": problem is None and lin is not None,
        "undecided": problem is None and lin is None,
        "problem": problem,
        "trace_sha256": report["trace_sha256"],
        "committed_ops": report["committed_ops"],
        "failed_ops": report["failed_ops"],
        "unknown_ops": report["unknown_ops"],
        "throughput_ops": report["throughput_ops"]["total"],
        "latency_ms": report["latency_ms"],
        "faults_injected": report["faults_injected"],
        "safety_violations": report["safety_violations"],
        "atomicity_violations": report["atomicity_violations"],
        "linearizable": lin,
        "check_verdict": report["check_verdict"],
        "liveness_ok": report["liveness_ok"],
        "recovered_after_s": report["recovered_after_s"],
        "detection_gaps": report["detection_gaps"],
        "wall_seconds": report["wall_seconds"],
    }
