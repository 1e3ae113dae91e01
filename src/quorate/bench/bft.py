"""BFT benchmarks in the simulator: the scaling curve and the flooding test.

Theory of operation. Every figure here comes from seeded simulator runs
(``quorate.runtime.sim.run``) with the cost-model signatures (the CPU time of
real Ed25519 charged per sign/verify), so the numbers are reproducible and
depend on the protocol's message pattern, not on this machine's load.

- ``scaling``: throughput and client latency of PBFT and HotStuff for
  n = 4, 16, 64, 128 replicas, in one region (0.5 ms one way) and in three
  regions 50 ms apart, closed-loop clients. This is the baseline curve of the
  paper's Figure 1. Larger clusters cost the simulator quadratically more
  events (PBFT's all-to-all prepares and commits), so the simulated duration
  shrinks with n (``SCALING_DURATION_S``); throughput is per simulated second.
  Clients behave like the real BFT client: PBFT requests go to the primary
  f + 1 replies named (each client endpoint's first request, and any
  request without a result after half the operation timeout, to every
  replica: ``client_resends``); HotStuff requests go to every replica.
- ``flooding``: honest-client latency p99 of PBFT n = 4 with no attacker,
  with one replica flooding (the ``flood`` behaviour, every message sent
  ``FLOOD_COPIES`` times) and no rate limit, and the same flood with per-peer
  token buckets (``RATE_LIMIT_MSGS_PER_S``) in front of every replica's CPU.
  Target: with limits, p99 <= 2x the no-flood p99.
- ``byzantine``: committed operations of PBFT and HotStuff with f = (n - 1) // 3
  Byzantine replicas of one behaviour (n = 4, 7, 10), against the fault-free
  run of the same seed, with every protocol setting at its default. PBFT's
  Byzantine replicas include the primary of view 0 (``primary_seeds`` picks
  such seeds; HotStuff, whose leader rotates, uses the same seeds). Target:
  a ratio of at least (n - f) / n x ``BYZANTINE_TARGET_FRACTION``, the share of
  the fault-free throughput that the n - f honest replicas could still carry,
  with a margin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quorate.ids import NodeId
from quorate.runtime.sim import SimConfig, Simulation, derive_rng
from quorate.runtime.sim.bft import choose_byzantine, max_byzantine

SCALING_SIZES = (4, 16, 64, 128)
SCALING_PROTOCOLS = ("pbft", "hotstuff")
SCALING_DURATION_S = {4: 2.0, 16: 1.0, 64: 0.5, 128: 0.3}
"""Simulated seconds of load per cluster size (plus one op timeout to drain)."""
SCALING_CLIENTS = 16
INTER_REGION_MS = 50.0
FLOOD_COPIES = 150
"""The flooder sends each message this many times: enough to take a large
share of a victim's CPU (each junk message costs a decode and a rejection)."""
RATE_LIMIT_MSGS_PER_S = 3000.0
"""Per-peer admission rate: above what an honest PBFT peer sends at n = 4
under this load (no honest message was dropped in the runs measured), far
below the flood."""
FLOOD_DURATION_S = 1.0
FLOOD_CLIENTS = 8
SEED = 1


def _summary(sim: Simulation, config: SimConfig) -> dict[str, Any]:
    result = sim.run()
    honest_drops = 0
    for node in sim.nodes:
        if node.limiter is not None:
            honest_drops += sum(c for peer, c in node.limiter.dropped.items() if peer not in sim.byzantine)
    return {
        "protocol": config.protocol,
        "nodes": config.nodes,
        "regions": config.regions,
        "clients": config.clients,
        "sim_seconds_of_load": config.duration_s,
        "throughput_ops": result.throughput_ops,
        "latency_ms": result.latency_ms,
        "committed_ops": result.committed_ops,
        "unknown_ops": result.unknown_ops,
        "messages_sent": result.messages_sent,
        "client_resends": result.client_resends,
        "safety_violations": len(result.safety_violations),
        "rate_limited_drops": result.rate_limited_drops,
        "honest_messages_rate_limited": honest_drops,
        "wall_seconds": result.wall_seconds,
    }


def scaling(
    sizes: tuple[int, ...] = SCALING_SIZES,
    protocols: tuple[str, ...] = SCALING_PROTOCOLS,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (protocol, n, regions)."""
    rows = []
    for protocol in protocols:
        for regions in (1, 3):
            for n in sizes:
                config = SimConfig(
                    protocol=protocol,
                    nodes=n,
                    regions=regions,
                    inter_region_ms=INTER_REGION_MS,
                    clients=SCALING_CLIENTS,
                    duration_s=SCALING_DURATION_S.get(n, 0.3),
                    op_timeout_s=2.0,
                    seed=SEED,
                    record_history=False,
                )
                rows.append(_summary(Simulation(config), config))
                if progress is not None:
                    progress(f"{protocol} n={n} regions={regions}")
    return rows


def flooding(progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """p99 without flood, with flood, with flood and rate limits; and ratios."""
    base: dict[str, Any] = {
        "protocol": "pbft",
        "nodes": 4,
        "clients": FLOOD_CLIENTS,
        "duration_s": FLOOD_DURATION_S,
        "seed": SEED,
        "record_history": False,
    }
    flood: dict[str, Any] = {"byzantine": "1:flood", "flood_copies": FLOOD_COPIES}
    cases = {
        "no_flood": SimConfig(**base),
        "flood_no_limit": SimConfig(**base, **flood),
        "flood_rate_limited": SimConfig(**base, **flood, rate_limit_msgs_per_s=RATE_LIMIT_MSGS_PER_S),
        "no_flood_rate_limited": SimConfig(**base, rate_limit_msgs_per_s=RATE_LIMIT_MSGS_PER_S),
    }
    out: dict[str, Any] = {"flood_copies": FLOOD_COPIES, "rate_limit_msgs_per_s": RATE_LIMIT_MSGS_PER_S}
    for name, config in cases.items():
        out[name] = _summary(Simulation(config), config)
        if progress is not None:
            progress(name)
    p99 = {name: out[name]["latency_ms"]["p99"] for name in cases}
    out["p99_ms"] = p99
    baseline = p99["no_flood"]
    if baseline:
        out["ratio_flood_no_limit"] = round(p99["flood_no_limit"] / baseline, 3)
        out["ratio_flood_rate_limited"] = round(p99["flood_rate_limited"] / baseline, 3)
        out["target_met"] = out["ratio_flood_rate_limited"] <= 2.0
    return out


BYZANTINE_SIZES = (4, 7, 10)
BYZANTINE_BEHAVIOURS: dict[str, tuple[str, ...]] = {
    "pbft": ("equivocate", "silent", "slow"),
    "hotstuff": ("equivocate", "silent", "withhold_votes"),
}
"""What the f Byzantine replicas do. PBFT: a lying, a mute and a slow primary
(the primary of view 0 is one of them). HotStuff: replicas that equivocate,
say nothing, or never vote, as leaders and as voters."""
BYZANTINE_DURATION_S = 20.0
"""Simulated seconds of closed-loop load per run. The first faulty leaders
cost a view timeout each (1 s by default) before the leader sets drop them,
so shorter runs weigh that start more."""
BYZANTINE_CLIENTS = 4
"""Closed-loop clients: the ratio does not need many, and each costs events."""
BYZANTINE_SEEDS = 2
BYZANTINE_TARGET_FRACTION = 0.8
"""The target: committed ops >= (n - f) / n x this x the fault-free ops of the same seed."""


FIRST_PRIMARY = NodeId(1)
"""Replicas are numbered 1..n: replica 1 is PBFT's primary of view 0 and
HotStuff's first leader."""


def primary_seeds(nodes: int, count: int, first: int = 1) -> list[int]:
    """The first ``count`` seeds from ``first`` on whose f Byzantine replicas
    include ``FIRST_PRIMARY``."""
    f = max_byzantine(nodes)
    seeds: list[int] = []
    seed = first
    while len(seeds) < count:
        chosen = choose_byzantine(derive_rng(seed, "byzantine"), nodes, [(f, "silent")], ("silent",))
        if FIRST_PRIMARY in chosen:
            seeds.append(seed)
        seed += 1
    return seeds


def _committed(protocol: str, nodes: int, seed: int, duration_s: float, clients: int, faulty: str) -> dict[str, Any]:
    config = SimConfig(
        protocol=protocol,
        nodes=nodes,
        clients=clients,
        duration_s=duration_s,
        seed=seed,
        byzantine=faulty,
        record_history=False,
    )
    result = Simulation(config).run()
    return {
        "committed_ops": result.committed_ops,
        "byzantine": result.byzantine,
        "safety_violations": len(result.safety_violations),
        "latency_ms": result.latency_ms,
        "wall_seconds": result.wall_seconds,
    }


def byzantine(
    sizes: tuple[int, ...] = BYZANTINE_SIZES,
    protocols: tuple[str, ...] = SCALING_PROTOCOLS,
    seeds: int = BYZANTINE_SEEDS,
    duration_s: float = BYZANTINE_DURATION_S,
    clients: int = BYZANTINE_CLIENTS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One row per (protocol, n, seed, behaviour): committed ops with f
    Byzantine replicas, the fault-free committed ops of the same seed, their
    ratio and the target; a summary per (protocol, n, behaviour) with the
    lowest ratio over the seeds."""
    rows: list[dict[str, Any]] = []
    for n in sizes:
        f = max_byzantine(n)
        target = round((n - f) / n * BYZANTINE_TARGET_FRACTION, 3)
        for seed in primary_seeds(n, seeds):
            for protocol in protocols:
                base = _committed(protocol, n, seed, duration_s, clients, "")
                if progress is not None:
                    progress(f"{protocol} n={n} seed={seed} fault-free")
                for behaviour in BYZANTINE_BEHAVIOURS[protocol]:
                    run = _committed(protocol, n, seed, duration_s, clients, f"{f}:{behaviour}")
                    ratio = round(run["committed_ops"] / base["committed_ops"], 3) if base["committed_ops"] else 0.0
                    rows.append(
                        {
                            "protocol": protocol,
                            "nodes": n,
                            "f": f,
                            "seed": seed,
                            "behaviour": behaviour,
                            "byzantine_replicas": sorted(int(r) for r in run["byzantine"]),
                            "fault_free_ops": base["committed_ops"],
                            "committed_ops": run["committed_ops"],
                            "ratio": ratio,
                            "target_ratio": target,
                            "target_met": ratio >= target,
                            "safety_violations": base["safety_violations"] + run["safety_violations"],
                            "latency_ms": run["latency_ms"],
                            "wall_seconds": round(base["wall_seconds"] + run["wall_seconds"], 3),
                        }
                    )
                    if progress is not None:
                        progress(f"{protocol} n={n} seed={seed} {behaviour}")
    summary: dict[tuple[str, int, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["protocol"], row["nodes"], row["behaviour"])
        entry = summary.setdefault(
            key,
            {
                "protocol": key[0],
                "nodes": key[1],
                "f": row["f"],
                "behaviour": key[2],
                "target_ratio": row["target_ratio"],
                "min_ratio": row["ratio"],
                "fault_free_ops": [],
                "committed_ops": [],
                "seeds": [],
            },
        )
        entry["min_ratio"] = min(entry["min_ratio"], row["ratio"])
        entry["fault_free_ops"].append(row["fault_free_ops"])
        entry["committed_ops"].append(row["committed_ops"])
        entry["seeds"].append(row["seed"])
    for entry in summary.values():
        entry["target_met"] = entry["min_ratio"] >= entry["target_ratio"]
    return {
        "duration_s": duration_s,
        "clients": clients,
        "target_fraction": BYZANTINE_TARGET_FRACTION,
        "rows": rows,
        "summary": list(summary.values()),
        "safety_violations": sum(row["safety_violations"] for row in rows),
        "target_met": all(entry["target_met"] for entry in summary.values()),
    }
