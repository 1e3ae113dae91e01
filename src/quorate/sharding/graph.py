"""The interaction graph and the figures of a placement.

Theory of operation. Agents are vertices; each carries a **load** (its
computational weight, a positive integer in load units, e.g. operations per
observation window). Two agents that transact are joined by an undirected
edge whose **weight** counts their interactions. A **placement** maps every
agent to a shard (1..k, HRB's shard numbering). Two figures judge it:

- ``cut_fraction``: the share of interaction weight whose endpoints sit in
  different shards (each such interaction is a cross-shard transaction,
  ordered by the core instead of by one shard);
- ``load_imbalance``: the heaviest shard's load over the mean shard load
  (1.0 is perfect balance; METIS's ``ufactor`` speaks the same language).

``InteractionGraph`` only accumulates: adding an interaction twice adds its
weight twice. It hands METIS its compressed-sparse-row form (``csr``) with
vertices in insertion order, so a graph built in the same order always gives
the same input, whatever the hash seed of the process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from quorate.errors import ConfigError

__all__ = [
    "CompressedGraph",
    "InteractionGraph",
    "cut_fraction",
    "load_imbalance",
    "shard_loads",
]


@dataclass(frozen=True)
class CompressedGraph:
    """Compressed sparse rows, both directions of every edge stored (METIS's input)."""

    agents: tuple[str, ...]
    adjacency_start: tuple[int, ...]
    adjacent: tuple[int, ...]
    edge_weights: tuple[int, ...]
    vertex_loads: tuple[int, ...]


class InteractionGraph:
    """Agents with loads, and weighted interactions between them."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._agents: list[str] = []
        self._loads: list[int] = []
        self._neighbours: list[dict[int, int]] = []

    def add_agent(self, agent: str, load: int = 1) -> None:
        """Add ``agent`` with ``load`` (a positive integer), or add ``load`` to it."""
        if not isinstance(load, int) or isinstance(load, bool) or load < 1:
            raise ConfigError(f"an agent's load is a positive integer, got {load!r} for {agent!r}")
        index = self._index.get(agent)
        if index is None:
            self._index[agent] = len(self._agents)
            self._agents.append(agent)
            self._loads.append(load)
            self._neighbours.append({})
        else:
            self._loads[index] += load

    def add_interaction(self, a: str, b: str, weight: int = 1) -> None:
        """Record ``weight`` interactions between ``a`` and ``b`` (agents are
        added with load 1 when new). A self-interaction is local work, not an edge."""
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ConfigError(f"an interaction's weight is a positive integer, got {weight!r}")
        for agent in (a, b):
            if agent not in self._index:
                self.add_agent(agent)
        if a == b:
            return
        i, j = self._index[a], self._index[b]
        self._neighbours[i][j] = self._neighbours[i].get(j, 0) + weight
        self._neighbours[j][i] = self._neighbours[j].get(i, 0) + weight

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(self._agents)

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, agent: object) -> bool:
        return agent in self._index

    def load(self, agent: str) -> int:
        return self._loads[self._index[agent]]

    def total_load(self) -> int:
        return sum(self._loads)

    def neighbours(self, agent: str) -> dict[str, int]:
        """The agents ``agent`` interacts with, and how much."""
        return {self._agents[j]: w for j, w in self._neighbours[self._index[agent]].items()}

    def edges(self) -> Iterable[tuple[str, str, int]]:
        """Each undirected edge once, as (a, b, weight), in insertion order of ``a``."""
        for i, row in enumerate(self._neighbours):
            for j, weight in row.items():
                if i < j:
                    yield self._agents[i], self._agents[j], weight

    def total_weight(self) -> int:
        return sum(w for row in self._neighbours for w in row.values()) // 2

    def csr(self) -> CompressedGraph:
        start = [0]
        adjacent: list[int] = []
        weights: list[int] = []
        for row in self._neighbours:
            for j in sorted(row):
                adjacent.append(j)
                weights.append(row[j])
            start.append(len(adjacent))
        return CompressedGraph(
            agents=tuple(self._agents),
            adjacency_start=tuple(start),
            adjacent=tuple(adjacent),
            edge_weights=tuple(weights),
            vertex_loads=tuple(self._loads),
        )


def _check_covers(graph: InteractionGraph, placement: Mapping[str, int], shards: int) -> None:
    missing = [a for a in graph.agents if a not in placement]
    if missing:
        raise ConfigError(f"the placement leaves {len(missing)} agents out, e.g. {missing[0]!r}")
    bad = [s for s in placement.values() if not 1 <= s <= shards]
    if bad:
        raise ConfigError(f"shards are numbered 1..{shards}, the placement names {bad[0]}")


def shard_loads(graph: InteractionGraph, placement: Mapping[str, int], shards: int) -> list[int]:
    """Load per shard, index 0 for shard 1."""
    _check_covers(graph, placement, shards)
    loads = [0] * shards
    for agent in graph.agents:
        loads[placement[agent] - 1] += graph.load(agent)
    return loads


def load_imbalance(graph: InteractionGraph, placement: Mapping[str, int], shards: int) -> float:
    """Heaviest shard's load over the mean shard load (1.0 = balanced)."""
    loads = shard_loads(graph, placement, shards)
    total = sum(loads)
    return max(loads) * shards / total if total else 1.0


def cut_fraction(graph: InteractionGraph, placement: Mapping[str, int]) -> float:
    """Share of interaction weight between agents of different shards."""
    total = cross = 0
    for a, b, weight in graph.edges():
        total += weight
        if placement[a] != placement[b]:
            cross += weight
    return cross / total if total else 0.0
