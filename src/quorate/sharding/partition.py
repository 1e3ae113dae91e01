"""Load-based partitioning: a balanced k-way placement of agents that cuts
little interaction weight (issue 13, "load-based partitioning").

Theory of operation. ``metis_partition`` hands the interaction graph to METIS
(pymetis, multilevel k-way): vertex weights are agent loads, edge weights are
interaction counts, ``imbalance_tolerance`` becomes METIS's ``ufactor``
(tolerance 0.03 = ``ufactor`` 30 = no shard above 1.03 × the mean load) and
the seed is METIS's own seed, so one seed gives one placement.

METIS treats the balance constraint as a goal, not a promise (a heavy vertex
or a tiny graph can defeat it). ``repair_balance`` makes it a promise of this
module: while the heaviest shard is above ``(1 + tolerance)`` × mean, it moves
from that shard to the lightest one the agent whose move loses the least
interaction weight among those whose move lowers the maximum. Each move
strictly lowers the sum of squared shard loads, so it stops, and when it
stops without reaching the tolerance no agent of the heaviest shard is lighter
than the gap to the lightest, hence:

    max shard load <= max((1 + tolerance) × mean, mean + heaviest agent load)

``relabel_to_keep`` renames a new placement's shards to match the current
placement as far as it can (greedy matching on shared load), because METIS's
shard numbers are arbitrary and every agent whose number changes is a move.

pymetis is imported when a partition is asked for (the ``sharding`` extra);
without it the ImportError names the package.
"""

from __future__ import annotations

from collections.abc import Mapping

from quorate.errors import ConfigError
from quorate.sharding.graph import InteractionGraph

__all__ = [
    "DEFAULT_IMBALANCE_TOLERANCE",
    "balance_bound",
    "metis_partition",
    "relabel_to_keep",
    "repair_balance",
]

DEFAULT_IMBALANCE_TOLERANCE = 0.03
"""Allowed excess of the heaviest shard over the mean load (a fraction)."""
METIS_UFACTOR_PER_UNIT = 1000
"""METIS's ``ufactor`` counts the allowed imbalance in thousandths."""


def _check(shards: int, tolerance: float) -> None:
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ConfigError(f"the number of shards is a positive integer, got {shards!r}")
    if not 0.0 < tolerance <= 1.0:
        raise ConfigError(f"the imbalance tolerance is in (0, 1], got {tolerance!r}")


def balance_bound(graph: InteractionGraph, shards: int, tolerance: float) -> float:
    """The largest shard load ``metis_partition`` may leave (see the module doc)."""
    mean = graph.total_load() / shards
    heaviest = max((graph.load(a) for a in graph.agents), default=0)
    return max((1.0 + tolerance) * mean, mean + heaviest)


def metis_partition(
    graph: InteractionGraph,
    shards: int,
    *,
    seed: int,
    imbalance_tolerance: float = DEFAULT_IMBALANCE_TOLERANCE,
) -> dict[str, int]:
    """A placement of every agent on shards 1..``shards``: METIS, then ``repair_balance``."""
    _check(shards, imbalance_tolerance)
    if len(graph) == 0:
        return {}
    if shards == 1:
        return dict.fromkeys(graph.agents, 1)
    import pymetis

    csr = graph.csr()
    options = pymetis.Options(
        seed=seed, ufactor=max(1, round(imbalance_tolerance * METIS_UFACTOR_PER_UNIT))
    )
    result = pymetis.part_graph(
        shards,
        pymetis.CSRAdjacency(list(csr.adjacency_start), list(csr.adjacent)),
        eweights=list(csr.edge_weights) if csr.adjacent else None,
        vweights=list(csr.vertex_loads),
        options=options,
    )
    placement = {agent: int(part) + 1 for agent, part in zip(csr.agents, result.vertex_part)}
    return repair_balance(graph, placement, shards, imbalance_tolerance)


def repair_balance(
    graph: InteractionGraph,
    placement: Mapping[str, int],
    shards: int,
    tolerance: float = DEFAULT_IMBALANCE_TOLERANCE,
) -> dict[str, int]:
    """Move agents off the heaviest shard until it is within ``tolerance`` of
    the mean or no single move lowers it (module doc)."""
    _check(shards, tolerance)
    out = dict(placement)
    loads = [0] * (shards + 1)
    for agent in graph.agents:
        loads[out[agent]] += graph.load(agent)
    limit = (1.0 + tolerance) * graph.total_load() / shards
    while True:
        heavy = max(range(1, shards + 1), key=lambda s: (loads[s], -s))
        light = min(range(1, shards + 1), key=lambda s: (loads[s], s))
        if loads[heavy] <= limit:
            return out
        gap = loads[heavy] - loads[light]
        best: tuple[int, int, str] | None = None
        for agent in graph.agents:
            if out[agent] != heavy or graph.load(agent) >= gap:
                continue
            lost = 0
            for other, weight in graph.neighbours(agent).items():
                if out[other] == heavy:
                    lost += weight
                elif out[other] == light:
                    lost -= weight
            # Least lost weight first, then the agent that evens the loads most.
            key = (lost, abs(gap - 2 * graph.load(agent)), agent)
            if best is None or key < best:
                best = key
        if best is None:
            return out
        agent = best[2]
        out[agent] = light
        loads[heavy] -= graph.load(agent)
        loads[light] += graph.load(agent)


def relabel_to_keep(
    current: Mapping[str, int],
    proposed: Mapping[str, int],
    shards: int,
    loads: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """``proposed`` with its shard numbers permuted so that as much load as
    possible stays on the shard it is on in ``current`` (greedy on shared load)."""
    outside = sorted({s for s in proposed.values() if not 1 <= s <= shards})
    if outside:
        raise ConfigError(f"shards are numbered 1..{shards}, the proposal names {outside[0]}")
    shared: dict[tuple[int, int], int] = {}
    for agent, new in proposed.items():
        old = current.get(agent)
        if old is not None:
            shared[(new, old)] = shared.get((new, old), 0) + (loads or {}).get(agent, 1)
    rename: dict[int, int] = {}
    taken: set[int] = set()
    for (new, old), _ in sorted(shared.items(), key=lambda kv: (-kv[1], kv[0])):
        if new not in rename and old not in taken and 1 <= old <= shards:
            rename[new] = old
            taken.add(old)
    free = iter(s for s in range(1, shards + 1) if s not in taken)
    for new in sorted(set(proposed.values())):
        if new not in rename:
            rename[new] = next(free)
    return {agent: rename[new] for agent, new in proposed.items()}
