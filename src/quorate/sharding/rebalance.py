"""When to repartition, and what a repartition proposes (issue 13).

Theory of operation. A ``RebalancePolicy`` is fed one observation per round
(the interaction graph of the last window and the placement in force) and
answers either nothing or a ``RebalanceProposal``. It never moves anything:
the proposal is a pure value that HRB's core orders like any decision, and
the shards carry out the moves it implies (docs/hrb.md section 6).

The trigger is the spread of shard loads: the coefficient of variation
``load_cv = stddev(shard loads) / mean(shard loads)`` (a variance made
dimensionless, so one threshold fits any load scale). **Hysteresis** keeps it
from flapping:

- the policy is *armed* at the start; armed and ``load_cv > trigger_cv``,
  after at least ``cooldown_rounds`` rounds since the last proposal, it
  proposes and disarms;
- it re-arms only once ``load_cv`` has fallen to ``rearm_cv`` or below
  (``rearm_cv < trigger_cv``), i.e. once a repartition has taken effect;
- a proposal the core refuses (``refused``) re-arms the policy at once;
- a repartition whose predicted ``load_cv`` is not below ``rearm_cv`` is not
  proposed (it could not re-arm the policy, and it would move agents for
  nothing); the round counts as declined.

A proposal names the shard-map version it was computed from
(``based_on_version``): the core refuses it if the map has changed since,
so two proposals computed from one map cannot both apply. Its ``moves`` are
exactly the agents whose shard differs between the placement in force and
the proposed one; shard numbers of the new partition are chosen to keep
most load in place (``partition.relabel_to_keep``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec

from quorate.errors import ConfigError
from quorate.sharding.graph import InteractionGraph, cut_fraction, shard_loads
from quorate.sharding.partition import relabel_to_keep

__all__ = [
    "AgentMove",
    "Partitioner",
    "RebalanceConfig",
    "RebalancePolicy",
    "RebalanceProposal",
    "load_cv",
    "moves_between",
]

Partitioner = Callable[[InteractionGraph, int], dict[str, int]]
"""(graph, shards) -> placement on shards 1..shards; e.g. METIS with a fixed seed."""


class AgentMove(msgspec.Struct, frozen=True, array_like=True):
    """Agent ``agent`` leaves shard ``source`` for shard ``target``."""

    agent: str
    source: int
    target: int


class RebalanceProposal(msgspec.Struct, frozen=True, array_like=True):
    """A proposed placement, the moves it implies and why (a pure value)."""

    based_on_version: int
    shards: int
    placement: tuple[tuple[str, int], ...]
    """(agent, shard) for every agent, sorted by agent."""
    moves: tuple[AgentMove, ...]
    """Sorted by agent."""
    load_cv_before: float
    load_cv_after: float
    cut_fraction_before: float
    cut_fraction_after: float


def load_cv(loads: list[int]) -> float:
    """Coefficient of variation of shard loads (0.0 = equal loads)."""
    if not loads:
        return 0.0
    mean = sum(loads) / len(loads)
    if mean == 0:
        return 0.0
    variance = sum((x - mean) ** 2 for x in loads) / len(loads)
    return math.sqrt(variance) / mean


def moves_between(current: Mapping[str, int], proposed: Mapping[str, int]) -> tuple[AgentMove, ...]:
    """The agents whose shard differs (agents new to ``proposed`` are placements, not moves)."""
    return tuple(
        AgentMove(agent, current[agent], proposed[agent])
        for agent in sorted(proposed)
        if agent in current and current[agent] != proposed[agent]
    )


@dataclass(frozen=True)
class RebalanceConfig:
    trigger_cv: float = 0.25
    """Propose a repartition above this coefficient of variation of shard loads."""
    rearm_cv: float = 0.10
    """Arm again only at or below this one (hysteresis)."""
    cooldown_rounds: int = 3
    """Rounds (observations) at least between two proposals."""

    def validate(self) -> RebalanceConfig:
        if not self.trigger_cv > 0.0:
            raise ConfigError(f"trigger_cv is positive, got {self.trigger_cv}")
        if not 0.0 <= self.rearm_cv < self.trigger_cv:
            raise ConfigError(
                f"rearm_cv must be in [0, trigger_cv) for hysteresis, got {self.rearm_cv} "
                f"with trigger_cv {self.trigger_cv}"
            )
        if self.cooldown_rounds < 0:
            raise ConfigError(f"cooldown_rounds is >= 0, got {self.cooldown_rounds}")
        return self


class RebalancePolicy:
    """Watches shard loads round after round; proposes a repartition with hysteresis."""

    def __init__(self, shards: int, partitioner: Partitioner, config: RebalanceConfig | None = None) -> None:
        if shards < 1:
            raise ConfigError(f"the number of shards is a positive integer, got {shards}")
        self.shards = shards
        self.config = (config or RebalanceConfig()).validate()
        self._partitioner = partitioner
        self.armed = True
        self.round = 0
        self._last_proposal_round: int | None = None
        self.proposals = 0
        self.declined = 0

    def refused(self) -> None:
        """The core refused the last proposal (e.g. the map changed since): arm again."""
        self.armed = True

    def observe(
        self, graph: InteractionGraph, placement: Mapping[str, int], version: int
    ) -> RebalanceProposal | None:
        """One round: the last window's graph and the placement in force (shard map ``version``)."""
        self.round += 1
        before = load_cv(shard_loads(graph, placement, self.shards))
        if not self.armed:
            if before <= self.config.rearm_cv:
                self.armed = True
            return None
        if before <= self.config.trigger_cv:
            return None
        if (
            self._last_proposal_round is not None
            and self.round - self._last_proposal_round < self.config.cooldown_rounds
        ):
            return None
        proposed = self._partitioner(graph, self.shards)
        proposed = relabel_to_keep(
            placement, proposed, self.shards, {a: graph.load(a) for a in graph.agents}
        )
        after = load_cv(shard_loads(graph, proposed, self.shards))
        if after > self.config.rearm_cv:
            self.declined += 1
            return None
        self.armed = False
        self._last_proposal_round = self.round
        self.proposals += 1
        return RebalanceProposal(
            based_on_version=version,
            shards=self.shards,
            placement=tuple(sorted(proposed.items())),
            moves=moves_between(placement, proposed),
            load_cv_before=before,
            load_cv_after=after,
            cut_fraction_before=cut_fraction(graph, placement),
            cut_fraction_after=cut_fraction(graph, proposed),
        )
