"""``quorate bench sharding``: placements of agents on shards, and key moves
of a split, measured against plain hashing in the same run.

Theory of operation. Each graph is an interaction stream and the graph it
adds up to; the three placements see the same interactions:

- **METIS** (``quorate.sharding.metis_partition``) on the aggregated graph
  (vertex weights = agent loads, edge weights = interaction counts);
- **stream** (``quorate.sharding.AffinityClustering``): one pass over the
  shuffled stream, bounded memory, nothing aggregated beforehand;
- **hash**: HRB's placement today, ``quorate.hrb.txn.shard_of_key`` of the
  agent's name (rendezvous hashing), blind to the interactions.

For each: the cross-shard fraction of interaction weight, the load
imbalance (heaviest shard / mean) and the time of the partition, wall and
process CPU (medians of ``repeat`` runs; the stream's time is its whole
pass; on a shared machine the CPU time is the steadier figure).

Graphs:

- ``sbm``: a planted-community graph, a stochastic block model seeded by
  ``seed``: ``SBM_BLOCKS`` blocks of ``SBM_BLOCK_SIZE`` agents, an edge
  inside a block with probability ``SBM_P_IN``, across blocks
  ``SBM_P_OUT``; each edge carries 1..``SBM_MAX_RATE`` interactions per
  window and each agent a load of 1..``SBM_MAX_LOAD`` units; sharded into
  as many shards as blocks, so the planted blocks are a perfect answer.
- ``les-miserables``: Knuth's co-appearance network of the characters of
  *Les Misérables* as networkx ships it (77 agents, 254 weighted edges,
  weight = chapters in which the two appear together): a small real
  social graph with known community structure, carried by a PyPI package
  (networkx), so the run needs no download; loads are weighted degrees (an
  agent's interaction volume); ``REAL_SHARDS`` shards.
- ``karate``: Zachary's karate club (34 members, 78 weighted edges, same
  source), 2 shards: the club really split in two.

The stream of a graph repeats each edge (weight × ``STREAM_REPEATS``) times,
shuffled by the seed; the aggregated graph uses the same counts.

Drift (``measure_drift``): between two windows ``DRIFT`` of the SBM's agents
join another block; on the new window, the old METIS placement (stale), the
old placement corrected by one pass of the stream clustering seeded with
it, and a fresh METIS run are compared by cut, imbalance and agents moved.

Split: ``keys`` keys on a consistent-hash ring (``HashRing``) of
``RING_SHARDS`` shards; the shard with most keys is split in two. The
measured moved fraction is set beside the ideal (half the hot shard's keys)
and every moved key's route is checked (only hot -> new). Merge: the
first step of ``merge_plan`` over the ring's shards (loads = keys, no
traffic: the two coldest), checked the same way. Scale-out: one
shard added to the ring, and one added to rendezvous hashing, each against
the ideal 1/(k+1).

In the simulator (``measure_sim``, ``sim_seeds`` seeds, 0 to skip): an HRB
deployment (``SIM_NODES`` nodes in shards of 4, one of them empty at
genesis, a core of 4, 3 regions) runs the dynamic-sharding workload
(transfers within communities of agents, ``SIM_CROSS`` of them to another
agent) for ``SIM_DURATION_S`` simulated seconds with ``--dynamic-sharding``:
the cross-shard share of committed transactions and the throughput
before the first committed change and after the last one (the map
settled), and, as the plain alternative in the same run of the bench, the
same seed with the partitioner off (the genesis map throughout) over the
same late window. The safety, atomicity and linearizability checks of
``quorate sim hrb`` run on both.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quorate.errors import ConfigError
from quorate.hrb.txn import shard_of_key
from quorate.sharding import (
    AffinityClustering,
    AffinityConfig,
    HashRing,
    InteractionGraph,
    cut_fraction,
    load_imbalance,
    merge_plan,
    metis_partition,
    moved_keys,
    relabel_to_keep,
)

SBM_BLOCKS = 8
SBM_BLOCK_SIZE = 64
SBM_P_IN = 0.15
SBM_P_OUT = 0.005
SBM_MAX_RATE = 3
"""Interactions per window of one edge, at most (uniform 1..this)."""
SBM_MAX_LOAD = 10
"""Load units of one agent, at most (uniform 1..this)."""
DRIFT = 0.25
"""Share of agents that change block between two windows (``measure_drift``)."""
DRIFT_SEED_OFFSET = 1_000_003
REAL_SHARDS = 4
STREAM_REPEATS = 5
RING_SHARDS = 8
DEFAULT_KEYS = 20_000
DEFAULT_REPEAT = 5
ROUND = 4


SIM_NODES = 20
SIM_CROSS = 0.5
SIM_DURATION_S = 60.0


@dataclass(frozen=True)
class ShardingSettings:
    seed: int = 1
    repeat: int = DEFAULT_REPEAT
    keys: int = DEFAULT_KEYS
    sim_seeds: int = 0
    """HRB simulations with dynamic sharding (0: none; each is two runs of ``SIM_DURATION_S``)."""

    def validate(self) -> ShardingSettings:
        if self.repeat < 1:
            raise ConfigError(f"--repeat is at least 1, got {self.repeat}")
        if self.keys < 100:
            raise ConfigError(f"--keys is at least 100, got {self.keys}")
        if not 0 <= self.sim_seeds <= 100:
            raise ConfigError(f"--sim-seeds is within 0..100, got {self.sim_seeds}")
        return self


@dataclass(frozen=True)
class Workload:
    name: str
    source: str
    shards: int
    graph: InteractionGraph
    stream: list[tuple[str, str]]


def sbm_workload(seed: int, drifted: float = 0.0) -> Workload:
    """The seeded stochastic block model (module doc); with ``drifted`` > 0,
    that share of the agents (drawn by the seed) has joined another block."""
    rng = random.Random(seed)
    agents = [f"agent-{i}" for i in range(SBM_BLOCKS * SBM_BLOCK_SIZE)]
    loads = {a: rng.randint(1, SBM_MAX_LOAD) for a in agents}
    block = [i // SBM_BLOCK_SIZE for i in range(len(agents))]
    if drifted:
        drift = random.Random(seed + DRIFT_SEED_OFFSET)
        for i in drift.sample(range(len(agents)), round(drifted * len(agents))):
            block[i] = (block[i] + drift.randint(1, SBM_BLOCKS - 1)) % SBM_BLOCKS
        rng = drift
    edges: list[tuple[str, str, int]] = []
    for i, a in enumerate(agents):
        for j in range(i + 1, len(agents)):
            p = SBM_P_IN if block[i] == block[j] else SBM_P_OUT
            if rng.random() < p:
                edges.append((a, agents[j], rng.randint(1, SBM_MAX_RATE)))
    source = (
        f"stochastic block model: {SBM_BLOCKS} blocks x {SBM_BLOCK_SIZE} agents, "
        f"p_in {SBM_P_IN}, p_out {SBM_P_OUT}, seed {seed}"
        + (f", {drifted:.0%} of agents moved to another block" if drifted else "")
    )
    return _workload("sbm", source, SBM_BLOCKS, agents, loads, edges, rng)


def networkx_workload(name: str, seed: int) -> Workload:
    """A real graph networkx ships (module doc); loads = weighted degree."""
    import networkx as nx

    builders: dict[str, tuple[Callable[[], Any], int, str]] = {
        "les-miserables": (
            nx.les_miserables_graph,
            REAL_SHARDS,
            "networkx les_miserables_graph (Knuth's character co-appearances)",
        ),
        "karate": (nx.karate_club_graph, 2, "networkx karate_club_graph (Zachary 1977)"),
    }
    build, shards, source = builders[name]
    g = build()
    agents = sorted(str(v) for v in g.nodes)
    edges = sorted((str(u), str(v), int(d.get("weight", 1))) for u, v, d in g.edges(data=True))
    loads = dict.fromkeys(agents, 0)
    for u, v, w in edges:
        loads[u] += w
        loads[v] += w
    loads = {a: max(1, x) for a, x in loads.items()}
    return _workload(name, source, shards, agents, loads, edges, random.Random(seed))


def _workload(
    name: str,
    source: str,
    shards: int,
    agents: list[str],
    loads: dict[str, int],
    edges: list[tuple[str, str, int]],
    rng: random.Random,
) -> Workload:
    graph = InteractionGraph()
    for agent in agents:
        graph.add_agent(agent, loads[agent])
    stream: list[tuple[str, str]] = []
    for a, b, rate in edges:
        graph.add_interaction(a, b, rate * STREAM_REPEATS)
        stream += [(a, b)] * (rate * STREAM_REPEATS)
    rng.shuffle(stream)
    return Workload(name, source, shards, graph, stream)


def _timed(repeat: int, run: Callable[[], dict[str, int]]) -> tuple[dict[str, int], tuple[float, float]]:
    """The last placement, and the medians of (wall, process CPU) seconds."""
    wall: list[float] = []
    cpu: list[float] = []
    placement: dict[str, int] = {}
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        placement = run()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return placement, (statistics.median(wall), statistics.median(cpu))


def _figures(w: Workload, placement: dict[str, int], seconds: tuple[float, float]) -> dict[str, Any]:
    return {
        "cut_fraction": round(cut_fraction(w.graph, placement), ROUND),
        "load_imbalance": round(load_imbalance(w.graph, placement, w.shards), ROUND),
        "seconds_median": round(seconds[0], 6),
        "cpu_seconds_median": round(seconds[1], 6),
    }


def measure_placements(w: Workload, settings: ShardingSettings) -> dict[str, Any]:
    loads = {a: w.graph.load(a) for a in w.graph.agents}
    metis, metis_s = _timed(settings.repeat, lambda: metis_partition(w.graph, w.shards, seed=settings.seed))
    clustering: list[AffinityClustering] = []

    def stream_pass() -> dict[str, int]:
        c = AffinityClustering(
            AffinityConfig(shards=w.shards, expected_total_load=w.graph.total_load()), loads
        )
        for a, b in w.stream:
            c.interact(a, b)
        clustering[:] = [c]
        return c.placement()

    streamed, stream_s = _timed(settings.repeat, stream_pass)
    hashed, hash_s = _timed(settings.repeat, lambda: {a: shard_of_key(a, w.shards) for a in w.graph.agents})
    out: dict[str, Any] = {
        "source": w.source,
        "agents": len(w.graph),
        "edges": sum(1 for _ in w.graph.edges()),
        "interactions": len(w.stream),
        "shards": w.shards,
        "metis": _figures(w, metis, metis_s),
        "stream": {
            **_figures(w, streamed, stream_s),
            "tracked_agents": clustering[0].tracked(),
            "moves": clustering[0].moves,
        },
        "hash": _figures(w, hashed, hash_s),
    }
    metis_cut = out["metis"]["cut_fraction"]
    out["cut_vs_metis"] = {
        kind: (round(out[kind]["cut_fraction"] / metis_cut, 2) if metis_cut else None)
        for kind in ("stream", "hash")
    }
    return out


def measure_split(keys: int) -> dict[str, Any]:
    names = [f"key-{i}" for i in range(keys)]
    ring = HashRing.initial(range(1, RING_SHARDS + 1))
    owners = {k: ring.owner(k) for k in names}
    counts: dict[int, int] = {}
    for shard in owners.values():
        counts[shard] = counts.get(shard, 0) + 1
    hot = max(counts, key=lambda s: (counts[s], -s))
    new = RING_SHARDS + 1
    split = ring.split(hot, new)
    moves = moved_keys(names, owners.__getitem__, split.owner)
    ideal = counts[hot] / 2
    only_to_new = set(moves.by_route) <= {f"{hot}->{new}"}
    grown = ring.add_shard(new)
    ring_add = moved_keys(names, owners.__getitem__, grown.owner)
    rendezvous = moved_keys(
        names, lambda k: shard_of_key(k, RING_SHARDS), lambda k: shard_of_key(k, RING_SHARDS + 1)
    )
    ideal_add = 1 / (RING_SHARDS + 1)
    # Merge: with no traffic between ring shards, the plan merges the two
    # least-loaded shards; only the absorbed shard's keys may move.
    step = merge_plan(counts, {}, capacity=2 * max(counts.values()))[0]
    merged = moved_keys(names, owners.__getitem__, ring.merge(step.absorbed, step.into).owner)
    return {
        "keys": keys,
        "shards_before": RING_SHARDS,
        "split": {
            "hot_shard": hot,
            "hot_shard_keys": counts[hot],
            "new_shard": new,
            "moved_keys": moves.moved,
            "moved_fraction": round(moves.moved_fraction, ROUND),
            "ideal_fraction": round(ideal / keys, ROUND),
            "moved_vs_ideal": round(moves.moved / ideal, 3) if ideal else None,
            "moved_only_to_new_shard": only_to_new,
            "routes": moves.by_route,
        },
        "merge": {
            "absorbed": step.absorbed,
            "into": step.into,
            "moved_fraction": round(merged.moved_fraction, ROUND),
            "ideal_fraction": round(counts[step.absorbed] / keys, ROUND),
            "moved_only_to_merged_shard": set(merged.by_route) <= {f"{step.absorbed}->{step.into}"},
        },
        "scale_out": {
            "ideal_fraction": round(ideal_add, ROUND),
            "ring_moved_fraction": round(ring_add.moved_fraction, ROUND),
            "ring_moved_only_to_new_shard": set(ring_add.by_route)
            <= {f"{s}->{new}" for s in range(1, RING_SHARDS + 1)},
            "rendezvous_moved_fraction": round(rendezvous.moved_fraction, ROUND),
            "rendezvous_moved_only_to_new_shard": set(rendezvous.by_route)
            <= {f"{s}->{new}" for s in range(1, RING_SHARDS + 1)},
        },
    }


def measure_drift(settings: ShardingSettings) -> dict[str, Any]:
    """Between full repartitions: the communities drift, and the placement
    METIS made for the old window is stale. Compared on the new window:
    keeping it, correcting it with one pass of the stream clustering seeded
    with it, and a fresh METIS run (shard numbers matched to the old
    placement so that only real moves count)."""
    before = sbm_workload(settings.seed)
    after = sbm_workload(settings.seed, drifted=DRIFT)
    old = metis_partition(before.graph, before.shards, seed=settings.seed)
    loads = {a: after.graph.load(a) for a in after.graph.agents}

    def corrected() -> dict[str, int]:
        c = AffinityClustering(
            AffinityConfig(shards=after.shards, expected_total_load=after.graph.total_load()), loads
        )
        c.seed(old)
        for a, b in after.stream:
            c.interact(a, b)
        return c.placement()

    streamed, stream_s = _timed(settings.repeat, corrected)
    fresh, fresh_s = _timed(
        settings.repeat, lambda: metis_partition(after.graph, after.shards, seed=settings.seed)
    )
    fresh = relabel_to_keep(old, fresh, after.shards, loads)

    def moved(placement: dict[str, int]) -> int:
        return sum(1 for a in placement if placement[a] != old[a])

    return {
        "source": after.source,
        "drifted_agents": round(DRIFT * len(after.graph)),
        "stale_metis": {
            "cut_fraction": round(cut_fraction(after.graph, old), ROUND),
            "load_imbalance": round(load_imbalance(after.graph, old, after.shards), ROUND),
            "agents_moved": 0,
        },
        "stream_corrected": {**_figures(after, streamed, stream_s), "agents_moved": moved(streamed)},
        "fresh_metis": {**_figures(after, fresh, fresh_s), "agents_moved": moved(fresh)},
    }


GRAPHS = ("sbm", "les-miserables", "karate")


def measure_sim(settings: ShardingSettings) -> dict[str, Any]:
    """HRB in the simulator with dynamic sharding vs the genesis map (module doc)."""
    import dataclasses

    from quorate.bench.hrb_sim import HrbRunConfig, run_hrb
    from quorate.hrb.reshard_sim import SPARE_SHARDS, window_of

    runs = []
    for seed in range(settings.seed, settings.seed + settings.sim_seeds):
        config = HrbRunConfig(
            nodes=SIM_NODES, shard_size=4, core=4, cross_shard=SIM_CROSS, duration_s=SIM_DURATION_S, drain_s=4.0,
            dynamic_sharding=True, seed=seed,
        )
        started = time.perf_counter()
        dynamic, _ = run_hrb(config)
        static, _ = run_hrb(dataclasses.replace(config, partitioner=False))
        d = dynamic["dynamic_sharding"]
        after = d["after"]
        start = after["from_s"] if after is not None else SIM_DURATION_S
        runs.append({
            "seed": seed,
            "changes": [p["detail"] for p in d["proposals"]],
            "committed_changes": len(d["commits"]),
            "aborted_changes": d["aborts"],
            "settled_at_s": after["from_s"] if after is not None else None,
            "before": d["before"],
            "after": after,
            "static_same_window": window_of(static["dynamic_sharding"], start, SIM_DURATION_S),
            "keys_moved": d["keys_installed"],
            "shards_in_use": {"genesis": dynamic["shards"]["count"] - SPARE_SHARDS, "end": d["shards_in_use"]},
            "ok": dynamic["ok"] and static["ok"],
            "failures": dynamic["failures"] + static["failures"],
            "wall_seconds": round(time.perf_counter() - started, 2),
        })
    return {
        "nodes": SIM_NODES, "shard_size": 4, "core": 4, "cross_shard": SIM_CROSS, "duration_s": SIM_DURATION_S,
        "runs": runs,
    }


def run(settings: ShardingSettings) -> dict[str, Any]:
    settings = settings.validate()
    workloads = [sbm_workload(settings.seed)]
    workloads += [networkx_workload(name, settings.seed) for name in GRAPHS[1:]]
    return {
        "seed": settings.seed,
        "repeat": settings.repeat,
        "graphs": {w.name: measure_placements(w, settings) for w in workloads},
        "drift": measure_drift(settings),
        "keys": measure_split(settings.keys),
        "sim": measure_sim(settings) if settings.sim_seeds else None,
    }
