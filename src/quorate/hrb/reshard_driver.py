"""The background partitioner of a core member under dynamic sharding
(docs/hrb.md section 10; issue 13).

Theory of operation. ``Repartitioner`` is sans-IO and off the protocol's
critical path: it watches the transactions agents complete (who transacted
with whom, how often: an ``InteractionGraph`` gathered since the map in
force took effect, and the same stream fed to the one-pass affinity
clustering), and once a round (``round_s``) decides whether to propose a
change of the shard map through the core, as core member ``proposer``
(signed ``ReshardRequest``, sent to every member of the core like any
command; the core orders it or refuses it, and this class learns which
from the map it sees next). A map is judged only after ``settle_rounds``
rounds in force, on everything observed under it, so a change is never
judged on the traffic of the map before it.

Per round, with the map ``current`` in force and nothing in flight:

1. **Split**: a shard whose load is above ``split_factor`` × the mean of the
   shards in use, while a shard of the deployment is unused (owns no ring
   arc and no agent): ``SplitShard(hot, unused)``.
2. **Merge**: a shard in use whose load is under ``merge_factor`` × the mean
   merges into the shard it exchanges most transactions with
   (``quorate.sharding.merge_plan``, coldest first).
3. **Repartition**: ``RebalancePolicy`` (load spread with hysteresis and a
   cooldown) over the shards in use, with METIS (pymetis) as the partitioner;
   its moves become ``MoveAgents``.
4. **Affinity**: when the share of interactions across shards is above
   ``cut_trigger`` and the affinity clustering's placement (seeded with the
   map's, fed with the stream) would cut it by at least ``min_gain`` with
   loads within ``max_imbalance``, its moves become ``MoveAgents``: agents
   that interact a lot end up on one shard, which lowers the share of
   cross-shard transactions.

Flapping: a split needs two agents or more and leaves halves near 0.8 ×
the mean (far above the merge threshold); a merge must leave the merged
shard at most 1.2 × the mean after it (under the split threshold); a split
or merge must lower the spread of loads by ``min_gain``; and every decision
waits for the settle rounds of the map before it.

A request can be lost (a core changing epoch drops what reaches its closed
epoch): while the map stays at the version a request was computed from and
nothing is in flight, the same signed request is sent again every
``round_s``, at most ``MAX_RESENDS`` times; a refusal the core orders, or
any change of the map, settles it.

``scripted`` changes (``(time, change)``, for tests and the CLI's
``--reshard``) are proposed at their time as they are (a move whose source is
0 from the agent's home then), and the policy is off. With
``queue_scripted`` a scripted change that falls due while another change is
in flight, or while a request is sent and not settled, waits until it
settles (polling every ``QUEUE_POLL_S``) and is then proposed on the map in
force; without it, it is proposed at once and the core refuses it as busy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quorate.core.signing import Signer
from quorate.errors import ConfigError
from quorate.hrb.reshard import (
    MapChange,
    MergeShards,
    MoveAgents,
    ReshardRequest,
    ShardMap,
    SplitShard,
    reshard_request_bytes,
)
from quorate.sharding import (
    AffinityClustering,
    AffinityConfig,
    AgentMove,
    InteractionGraph,
    RebalanceConfig,
    RebalancePolicy,
    cut_fraction,
    load_cv,
    load_imbalance,
    merge_plan,
    metis_partition,
    shard_traffic,
)

__all__ = ["MAX_RESENDS", "QUEUE_POLL_S", "Repartitioner", "RepartitionerSettings", "describe"]

MAX_RESENDS = 3
QUEUE_POLL_S = 0.25
"""A queued scripted change looks this often whether the change before it settled."""


@dataclass(frozen=True, slots=True)
class RepartitionerSettings:
    round_s: float = 2.0
    split_factor: float = 1.6
    merge_factor: float = 0.2
    trigger_cv: float = 0.25
    rearm_cv: float = 0.10
    cooldown_rounds: int = 2
    settle_rounds: int = 3
    """Rounds to wait after the map changed before judging it (the window must show the new map)."""
    cut_trigger: float = 0.25
    min_gain: float = 0.3
    max_imbalance: float = 1.5
    seed: int = 0
    queue_scripted: bool = False
    """A scripted change due while another is in flight waits for it (module docstring)."""


@dataclass(slots=True)
class Repartitioner:
    """See the module docstring."""

    shards: tuple[int, ...]
    """Every shard of the deployment."""
    proposer: int
    signer: Signer
    current: Callable[[], tuple[ShardMap, bool]]
    """The map in force and whether a change is in flight (the proposer's core state)."""
    settings: RepartitionerSettings = field(default_factory=RepartitionerSettings)
    scripted: list[tuple[float, MapChange]] = field(default_factory=list)
    graph: InteractionGraph = field(default_factory=InteractionGraph)
    next_round_at: float = 0.0
    proposals: list[dict[str, Any]] = field(default_factory=list)
    policy: RebalancePolicy | None = None
    stopped: bool = False
    scripted_only: bool = False
    affinity: AffinityClustering | None = None
    outstanding: ReshardRequest | None = None
    """The last request sent and not yet settled (see the module docstring)."""
    _outstanding_at: float = 0.0
    _resends: int = 0
    _affinity_shards: tuple[int, ...] = ()
    _seen_version: int = -1
    _affinity_index: dict[str, int] = field(default_factory=dict)
    _quiet_until_round: int = 0
    _round: int = 0
    _queued_until: float = 0.0

    def __post_init__(self) -> None:
        self.next_round_at = self.settings.round_s
        self.scripted.sort(key=lambda x: x[0])
        self.scripted_only = bool(self.scripted)

    def observe(self, agents: tuple[str, ...]) -> None:
        """A completed transaction between ``agents`` (one: its own)."""
        first = agents[0]
        self.graph.add_agent(first, 1)
        for other in agents[1:]:
            if other != first:
                self.graph.add_interaction(first, other)
                if self.affinity is not None and first in self._affinity_index and other in self._affinity_index:
                    self.affinity.interact(first, other)

    def wake_at(self) -> float | None:
        if self.stopped:
            return None
        times = [] if self.scripted_only else [self.next_round_at]
        if self.outstanding is not None:
            times.append(self._outstanding_at + self.settings.round_s)
        if self.scripted:
            times.append(max(self.scripted[0][0], self._queued_until))
        return min(times) if times else None

    def tick(self, now: float) -> list[ReshardRequest]:
        if self.stopped:
            return []
        out: list[ReshardRequest] = []
        current, busy = self.current()
        request = self.outstanding
        if request is not None and current.version != request.based_on_version:
            self.outstanding = None
        elif request is not None and busy:
            self._outstanding_at = now  # a change is in flight: wait a round after it settles
        elif request is not None and now >= self._outstanding_at + self.settings.round_s:
            if self._resends < MAX_RESENDS:
                self._resends += 1
                self._outstanding_at = now
                out.append(request)
            else:
                self.outstanding = None
        while self.scripted and self.scripted[0][0] <= now:
            if self.settings.queue_scripted and (busy or out or self.outstanding is not None):
                self._queued_until = now + QUEUE_POLL_S
                break
            _, change = self.scripted.pop(0)
            out.append(self._request(current, change, now, "scripted"))
        if now < self.next_round_at or self.scripted_only:
            return out
        self.next_round_at = now + self.settings.round_s
        self._round += 1
        if current.version != self._seen_version or self.affinity is None:
            # The map changed: judge it only on what is observed under it.
            self._seen_version = current.version
            self._quiet_until_round = self._round + self.settings.settle_rounds
            self.graph = InteractionGraph()
            self._reseed(current)
        graph = self.graph
        if busy or out or len(graph) == 0 or self._round < self._quiet_until_round:
            return out
        planned = self._plan(current, graph)
        if planned is not None:
            out.append(self._request(current, planned, now, type(planned).__name__))
        return out

    def _request(self, current: ShardMap, change: MapChange, now: float, why: str) -> ReshardRequest:
        if isinstance(change, MoveAgents):
            change = MoveAgents(tuple(
                AgentMove(m.agent, m.source or (current.home(m.agent) or 0), m.target) for m in change.moves
            ))
        unsigned = ReshardRequest(self.proposer, current.version, change, b"")
        self.proposals.append({"at_s": round(now, 3), "based_on": current.version, "change": why,
                               "detail": describe(change)})
        request = ReshardRequest(self.proposer, current.version, change, self.signer.sign(reshard_request_bytes(unsigned)))
        self.outstanding, self._outstanding_at, self._resends = request, now, 0
        return request

    def _plan(self, current: ShardMap, graph: InteractionGraph) -> MapChange | None:
        s = self.settings
        homes = dict(current.homes)
        for agent in graph.agents:
            homes.setdefault(agent, current.owner("@" + agent))
        used = sorted(set(current.shards()))
        unused = [k for k in self.shards if k not in used]
        loads = {k: 0 for k in used}
        for agent in graph.agents:
            if homes[agent] in loads:
                loads[homes[agent]] += graph.load(agent)
        mean = sum(loads.values()) / max(1, len(loads))
        if mean <= 0:
            return None
        agents_on = {k: sum(1 for a in homes if homes[a] == k) for k in used}
        hot = sorted(
            (k for k in used if loads[k] > s.split_factor * mean and agents_on[k] > 1), key=lambda k: (-loads[k], k)
        )
        if hot and unused and self._improves(current, graph, SplitShard(hot[0], unused[0])):
            return SplitShard(hot[0], unused[0])
        placement = {a: homes[a] for a in graph.agents}
        cold = [k for k in used if loads[k] < s.merge_factor * mean]
        if cold and len(used) > 1:
            # Hysteresis against a split: the merged shard carries at most 1.2 x the mean
            # load after the merge, well under the split threshold (1.6 x).
            capacity = max(1, int(1.2 * sum(loads.values()) / (len(used) - 1)))
            plan = merge_plan(loads, shard_traffic(graph, placement), capacity)
            step = next((p for p in plan if p.absorbed in cold or p.into in cold), None)
            if step is not None:
                absorbed, into = (step.absorbed, step.into) if step.absorbed in cold else (step.into, step.absorbed)
                if self._improves(current, graph, MergeShards(absorbed, into)):
                    return MergeShards(absorbed, into)
        # Repartition over the shards in use, numbered 1..k for the policy.
        index = {k: i + 1 for i, k in enumerate(used)}
        back = {i: k for k, i in index.items()}
        if self.policy is None or self.policy.shards != len(used):
            self.policy = RebalancePolicy(
                len(used),
                lambda g, k: metis_partition(g, k, seed=s.seed),
                RebalanceConfig(trigger_cv=s.trigger_cv, rearm_cv=s.rearm_cv, cooldown_rounds=s.cooldown_rounds),
            )
        local = {a: index[k] for a, k in placement.items() if k in index}
        if len(local) != len(placement):
            return None
        proposal = self.policy.observe(graph, local, current.version)
        if proposal is not None and proposal.moves:
            return self._moves(current, proposal.moves, back)
        return self._affinity_moves(current, graph, local, index, back)

    def _improves(self, current: ShardMap, graph: InteractionGraph, change: MapChange) -> bool:
        """A split or merge must lower the spread of loads over the shards in
        use by ``min_gain`` of itself (so a change is never undone by the next)."""
        try:
            after = current.after(change)
        except ConfigError:
            return False
        return _spread(after, graph) <= (1.0 - self.settings.min_gain) * _spread(current, graph)

    def _moves(self, current: ShardMap, moves: tuple[AgentMove, ...], back: dict[int, int]) -> MoveAgents | None:
        out = tuple(
            AgentMove(m.agent, back[m.source], back[m.target]) for m in moves if current.home(m.agent) == back[m.source]
        )
        return MoveAgents(out) if out else None

    def _reseed(self, current: ShardMap) -> None:
        used = tuple(sorted(set(current.shards())))
        index = {k: i + 1 for i, k in enumerate(used)}
        self._affinity_shards = used
        homes = {a: index[k] for a, k in current.homes if k in index}
        self._affinity_index = homes
        self.affinity = AffinityClustering(
            AffinityConfig(
                shards=max(1, len(used)), expected_total_load=len(homes),
                capacity_slack=self.settings.max_imbalance - 1.0, half_life_interactions=500.0,
            )
        )
        self.affinity.seed(homes)

    def _affinity_moves(
        self,
        current: ShardMap,
        graph: InteractionGraph,
        local: dict[str, int],
        index: dict[int, int],
        back: dict[int, int],
    ) -> MoveAgents | None:
        s = self.settings
        if self.affinity is None or len(index) < 2:
            return None
        now_cut = cut_fraction(graph, local)
        if now_cut < s.cut_trigger:
            return None
        found = self.affinity.placement()
        proposed = {a: found.get(a, k) for a, k in local.items()}
        if cut_fraction(graph, proposed) > (1.0 - s.min_gain) * now_cut:
            return None
        if load_imbalance(graph, proposed, len(index)) > s.max_imbalance:
            return None
        moves = tuple(AgentMove(a, k, proposed[a]) for a, k in sorted(local.items()) if proposed[a] != k)
        return self._moves(current, moves, back) if moves else None

    def refused(self) -> None:
        """The core refused or aborted the last request: arm the policy again, send it no more."""
        self.outstanding = None
        if self.policy is not None:
            self.policy.refused()


def _spread(shard_map: ShardMap, graph: InteractionGraph) -> float:
    """Coefficient of variation of the loads of the shards ``shard_map`` uses."""
    loads = dict.fromkeys(shard_map.shards(), 0)
    for agent in graph.agents:
        home = shard_map.home(agent)
        if home in loads:
            loads[home] += graph.load(agent)
    return load_cv(list(loads.values()))


def describe(change: MapChange) -> str:
    """``split 3 -> 4``, ``merge 2 into 1``, ``move 5 agents``."""
    if isinstance(change, SplitShard):
        return f"split {change.shard} -> {change.new_shard}"
    if isinstance(change, MergeShards):
        return f"merge {change.absorbed} into {change.into}"
    return f"move {len(change.moves)} agents"
