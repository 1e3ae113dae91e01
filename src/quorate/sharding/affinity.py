"""Agent affinity: one-pass clustering of the interaction stream, with
bounded memory and decay, between full repartitions (issue 13).

Theory of operation. The communities are the shards themselves: each
tracked agent has a shard, and the clustering is a streaming, decaying
label propagation under a load capacity (in the family of the one-pass
graph partitioners LDG and Fennel, which place a vertex where most of its
neighbours are, discounted by how full that place is). Each interaction
(a, b, weight) is seen once, in stream order, and costs O(``sketch_size``).

- **State per agent, bounded.** Its shard, its load, and a sketch of its
  decayed affinity to at most ``sketch_size`` shards (Space-Saving: a full
  sketch replaces its smallest entry, which the newcomer inherits, so an
  entry never under-counts). No edges are stored: memory is O(tracked
  agents × sketch_size), and at most ``max_agents`` agents are tracked;
  past that the least active are forgotten (down to ``FORGET_TO`` of the
  bound, a sort amortised over the agents that filled the gap) and start
  afresh if they return (``forgotten`` counts them).
- **Decay.** Every interaction multiplies all affinities by
  ``2 ** (-1 / half_life_interactions)``, lazily: new weight is counted in a
  growing unit (``_unit``) and the stored numbers are rescaled when it gets
  large, so a step stays O(1) amortised.
- **Placement of a new agent.** In its partner's shard if that stays within
  the capacity ``(1 + capacity_slack)`` × expected total load / shards,
  else on the lightest shard.
- **Moves.** After each interaction both agents reconsider: the score of a
  shard is the agent's affinity to it (as a share of all its affinity)
  minus ``balance_weight`` × that shard's fill (load / capacity). An agent
  moves to the best-scoring shard when it beats its own by more than
  ``move_margin`` and the target stays within capacity. Agents that interact
  often pull each other into one shard, so they end up, and move, together.
- ``seed(placement)`` starts from a full repartition (e.g. METIS's): the
  stream then corrects it between repartitions instead of starting alone.

Nothing here reads a clock or draws randomness: the same stream gives the
same placement; ties are broken by shard number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quorate.errors import ConfigError

__all__ = ["AffinityClustering", "AffinityConfig"]

FORGET_TO = 0.9
"""After an overflow, the share of ``max_agents`` that stays tracked."""
RESCALE_AT = 2.0**64
"""The lazy-decay unit is folded back into the stored numbers past this."""


@dataclass(frozen=True)
class AffinityConfig:
    shards: int
    expected_total_load: int = 0
    """Load of all agents, if known beforehand (capacity is computed from the
    larger of it and the load tracked so far)."""
    max_agents: int = 100_000
    """Tracked agents at most (the memory bound)."""
    sketch_size: int = 4
    """Shards an agent's affinity sketch remembers."""
    half_life_interactions: float = 50_000.0
    """Interactions after which an interaction counts half."""
    capacity_slack: float = 0.05
    """A shard holds at most (1 + slack) × total load / shards."""
    balance_weight: float = 1.0
    """Weight of a shard's fill against an agent's affinity share."""
    move_margin: float = 0.02
    """Score an agent's best shard must win by before it moves (no flapping)."""

    def validate(self) -> AffinityConfig:
        if self.shards < 1:
            raise ConfigError(f"shards is a positive integer, got {self.shards}")
        if self.expected_total_load < 0:
            raise ConfigError(f"expected_total_load is >= 0, got {self.expected_total_load}")
        if self.max_agents < 2:
            raise ConfigError(f"max_agents is at least 2, got {self.max_agents}")
        if self.sketch_size < 1:
            raise ConfigError(f"sketch_size is a positive integer, got {self.sketch_size}")
        if not self.half_life_interactions > 0:
            raise ConfigError(f"half_life_interactions is positive, got {self.half_life_interactions}")
        if not self.capacity_slack >= 0:
            raise ConfigError(f"capacity_slack is >= 0, got {self.capacity_slack}")
        if not self.balance_weight >= 0:
            raise ConfigError(f"balance_weight is >= 0, got {self.balance_weight}")
        if not self.move_margin >= 0:
            raise ConfigError(f"move_margin is >= 0, got {self.move_margin}")
        return self


class AffinityClustering:
    """The clustering's state; feed it with ``interact``, read it with ``placement``."""

    def __init__(self, config: AffinityConfig, loads: Mapping[str, int] | None = None) -> None:
        self.config = config.validate()
        self._loads_known = loads or {}
        self._decay = 2.0 ** (1.0 / config.half_life_interactions)
        self._unit = 1.0
        self._shard: dict[str, int] = {}
        self._load: dict[str, int] = {}
        self._sketch: dict[str, dict[int, float]] = {}
        """Per agent: shard -> decayed affinity, in units of ``_unit``."""
        self._activity: dict[str, float] = {}
        self._shard_load = [0] * (config.shards + 1)
        self._tracked_load = 0
        self.interactions = 0
        self.moves = 0
        self.forgotten = 0

    # --- the stream -------------------------------------------------------

    def seed(self, placement: Mapping[str, int]) -> None:
        """Start from a full repartition: agents not yet tracked take its shards."""
        for agent in sorted(placement):
            shard = placement[agent]
            if not 1 <= shard <= self.config.shards:
                raise ConfigError(f"shards are 1..{self.config.shards}, {agent!r} is on {shard}")
            if agent not in self._shard:
                self._place(agent, shard)
        if len(self._shard) > self.config.max_agents:
            self._forget()

    def interact(self, a: str, b: str, weight: int = 1) -> None:
        """One interaction of ``weight`` between ``a`` and ``b``."""
        if weight < 1:
            raise ConfigError(f"an interaction's weight is a positive integer, got {weight}")
        self.interactions += 1
        self._unit *= self._decay
        if self._unit > RESCALE_AT:
            self._rescale()
        for agent, partner in ((a, b), (b, a)):
            if agent not in self._shard:
                home = self._shard.get(partner)
                load = self._agent_load(agent)
                if home is None or self._shard_load[home] + load > self.capacity(load):
                    home = self._lightest()
                self._place(agent, home)
        if a != b:
            added = weight * self._unit
            self._note(a, self._shard[b], added)
            self._note(b, self._shard[a], added)
            self._reconsider(a)
            self._reconsider(b)
        if len(self._shard) > self.config.max_agents:
            self._forget()

    # --- what it has learned ---------------------------------------------

    def capacity(self, extra_load: int = 0) -> float:
        total = max(self.config.expected_total_load, self._tracked_load + extra_load)
        return (1.0 + self.config.capacity_slack) * total / self.config.shards

    def tracked(self) -> int:
        return len(self._shard)

    def shard_of(self, agent: str) -> int | None:
        return self._shard.get(agent)

    def activity_of(self, agent: str) -> float:
        """The agent's decayed interaction weight (0.0 for an untracked agent)."""
        return self._activity.get(agent, 0.0) / self._unit

    def affinity(self, agent: str) -> dict[int, float]:
        """The agent's decayed affinity per shard (the sketch's entries)."""
        return {s: v / self._unit for s, v in self._sketch.get(agent, {}).items()}

    def placement(self) -> dict[str, int]:
        """Every tracked agent's shard (1..shards)."""
        return dict(self._shard)

    # --- internals --------------------------------------------------------

    def _agent_load(self, agent: str) -> int:
        load = self._loads_known.get(agent, 1)
        if load < 1:
            raise ConfigError(f"an agent's load is a positive integer, got {load} for {agent!r}")
        return load

    def _lightest(self) -> int:
        return min(range(1, self.config.shards + 1), key=lambda s: (self._shard_load[s], s))

    def _place(self, agent: str, shard: int) -> None:
        load = self._agent_load(agent)
        self._shard[agent] = shard
        self._load[agent] = load
        self._sketch[agent] = {}
        self._activity[agent] = 0.0
        self._shard_load[shard] += load
        self._tracked_load += load

    def _note(self, agent: str, shard: int, added: float) -> None:
        sketch = self._sketch[agent]
        self._activity[agent] += added
        if shard in sketch or len(sketch) < self.config.sketch_size:
            sketch[shard] = sketch.get(shard, 0.0) + added
            return
        smallest = min(sketch, key=lambda s: (sketch[s], s))
        sketch[shard] = sketch.pop(smallest) + added

    def _reconsider(self, agent: str) -> None:
        sketch = self._sketch[agent]
        total = sum(sketch.values())
        if total <= 0:
            return
        here = self._shard[agent]
        load = self._load[agent]
        capacity = self.capacity()

        def score(shard: int) -> float:
            fill = self._shard_load[shard] - (load if shard == here else 0)
            return sketch.get(shard, 0.0) / total - self.config.balance_weight * fill / capacity

        best = max(sketch, key=lambda s: (score(s), -s))
        if best == here or score(best) <= score(here) + self.config.move_margin:
            return
        if self._shard_load[best] + load > capacity:
            return
        self._shard[agent] = best
        self._shard_load[here] -= load
        self._shard_load[best] += load
        self.moves += 1

    def _drop(self, agent: str) -> None:
        shard = self._shard.pop(agent)
        load = self._load.pop(agent)
        del self._sketch[agent]
        del self._activity[agent]
        self._shard_load[shard] -= load
        self._tracked_load -= load

    def _forget(self) -> None:
        keep = int(self.config.max_agents * FORGET_TO)
        order = sorted(self._activity, key=lambda a: (self._activity[a], a))
        for agent in order[: len(order) - keep]:
            self._drop(agent)
            self.forgotten += 1

    def _rescale(self) -> None:
        for agent, sketch in self._sketch.items():
            for shard in sketch:
                sketch[shard] /= self._unit
            self._activity[agent] /= self._unit
        self._unit = 1.0
