"""Strategies: pure functions from ``Observations`` to a ``QuorumPlan``, and
the cost each one gives any configuration (so a manager can tell whether a
plan is worth a change).

Theory of operation
-------------------
Every strategy first keeps the *candidates*: nodes that are up, were up at
least ``MIN_UPTIME`` of the window, lost less than ``MAX_LOSS`` of their
probes, and that no trend marks as degrading (``StrategyParams.degrading``,
filled by the manager's predictions). If too few remain, the best of the
others fill in (never a node that is down, unless nothing else is left).
The voter count is ``StrategyParams.voters`` (at most the candidates); the
rest of the observed nodes are learners. Ties are broken by node id, so a
plan is a function of its inputs alone.

- ``network`` (commit latency). The leader answers a client after a commit
  quorum acknowledged, so a commit costs the client's RTT to the leader plus
  the leader's RTT to the (Q2 - 1)-th nearest other voter. With p =
  ``StrategyParams.failures`` the largest expected partition (in voters),
  both quorums must survive losing p voters: Q1, Q2 <= n - p; the smallest
  commit quorum with Q1 + Q2 > n is then Q2 = p + 1 (Q1 = n - p). For each
  candidate leader the voters are it and its n - 1 nearest candidates; the
  leader with the lowest estimated commit latency wins (and is the preferred
  leader). Weight: ``latency_score``.
- ``performance`` (fast, lightly loaded nodes vote): the n candidates with the
  best ``performance_score`` x ``reliability_score``; majority quorums.
- ``fault_tolerance`` (the loss of any one region, or of any f voters,
  leaves a quorum): n = max(voters, 2f + 1) voters with majority quorums,
  at most n - Q of them per region (so a region's loss leaves Q), chosen by
  ``reliability_score`` within each region, regions taken in turn. When
  there are too few regions for that, the cap is relaxed and the plan says
  so in its reasons. Preferred leader: the most reliable voter closest to
  the clients.
- ``hybrid``: a weighted blend of the three scores, ``HybridWeights``
  (documented defaults: latency 0.5, performance 0.25, reliability 0.25),
  with the fault-tolerance rule's region cap and majority quorums.

Costs (lower is better): ``network`` the estimated commit latency (ms) with
the best leader among the voters; ``performance`` and ``hybrid`` 1 minus the
voters' mean score (plus 1 per region whose loss would stop the cluster,
for ``hybrid``); ``fault_tolerance`` 1 per region whose loss would stop it
plus the shortfall below f failures, plus 1 minus the mean reliability.
A voter that is down costs as much as an unreachable one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from quorate.core.quorum import majority
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.quorum.observations import UNREACHABLE_MS, Observations
from quorate.quorum.plan import QuorumPlan, tolerance

MIN_UPTIME = 0.5
"""Nodes up less than this share of the window are not candidates."""
MAX_LOSS = 0.5
"""Nodes that lost this share of their probes or more are not candidates."""


@dataclass(frozen=True, slots=True)
class HybridWeights:
    """How ``hybrid`` blends the scores (they need not sum to 1)."""

    latency: float = 0.5
    performance: float = 0.25
    reliability: float = 0.25


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """What every strategy is asked for."""

    voters: int = 5
    """Voters wanted (fewer if fewer nodes are candidates)."""
    failures: int = 1
    """Voters whose loss must leave a quorum (network: the largest expected
    partition; fault tolerance: f)."""
    weights: HybridWeights = field(default_factory=HybridWeights)
    degrading: frozenset[NodeId] = frozenset()
    """Nodes a trend says are about to fail: never chosen as voters."""

    def problem(self) -> str | None:
        if not (isinstance(self.voters, int) and self.voters >= 1):
            return f"the voter count must be an integer >= 1, got {self.voters!r}"
        if not (isinstance(self.failures, int) and self.failures >= 0):
            return f"failures must be an integer >= 0, got {self.failures!r}"
        w = self.weights
        if min(w.latency, w.performance, w.reliability) < 0 or not (w.latency + w.performance + w.reliability) > 0:
            return "hybrid weights must be >= 0 and not all 0"
        return None


class Strategy(NamedTuple):
    """A named strategy: ``plan`` proposes, ``cost`` judges any configuration.
    ``judged_on_latency``: a change it made is rolled back when commits got
    slower (its aim is speed); the others trade latency for something clients
    do not see in a window (surviving a region), so only a loss of
    availability rolls their changes back."""

    name: str
    plan: Callable[[Observations, StrategyParams], QuorumPlan]
    cost: Callable[[Observations, Sequence[NodeId], int, int, StrategyParams], float]
    description: str
    judged_on_latency: bool


# ------------------------------------------------------------ shared steps
def candidates(obs: Observations, params: StrategyParams) -> list[NodeId]:
    """Healthy nodes (see the module docstring), sorted by id."""
    return [
        node
        for node, o in sorted(obs.nodes.items())
        if o.alive and o.uptime >= MIN_UPTIME and o.loss < MAX_LOSS and node not in params.degrading
    ]


def _voter_count(obs: Observations, wanted: int) -> int:
    return max(1, min(wanted, len(obs.nodes)))


def _fill(obs: Observations, chosen: list[NodeId], n: int, key: Callable[[NodeId], float]) -> list[NodeId]:
    """Top up ``chosen`` to ``n`` with the best other live nodes, then any."""
    rest = [node for node in sorted(obs.nodes) if node not in chosen]
    rest.sort(key=lambda node: (not obs.nodes[node].alive, -key(node), node))
    return chosen + rest[: max(0, n - len(chosen))]


def _plan(
    obs: Observations,
    name: str,
    voters: Sequence[NodeId],
    election: int,
    commit: int,
    weights: dict[NodeId, float],
    leader: NodeId | None,
    reasons: Sequence[str],
) -> QuorumPlan:
    chosen = tuple(sorted(voters))
    learners = tuple(node for node in sorted(obs.nodes) if node not in chosen)
    return QuorumPlan(name, chosen, learners, election, commit, weights, leader, tuple(reasons))


def _down_penalty(obs: Observations, voters: Sequence[NodeId]) -> int:
    return sum(1 for v in voters if v not in obs.nodes or not obs.nodes[v].alive)


# ------------------------------------------------------------ network
def _commit_latency_ms(obs: Observations, leader: NodeId, voters: Sequence[NodeId], commit: int) -> float:
    others = sorted(obs.rtt_or_unreachable(leader, v) for v in voters if v != leader)
    acks_needed = commit - 1 if leader in voters else commit
    replicate = others[acks_needed - 1] if acks_needed >= 1 else 0.0
    return obs.client_distance_ms(leader) + replicate


def network_plan(obs: Observations, params: StrategyParams) -> QuorumPlan:
    cands = candidates(obs, params) or [n for n in sorted(obs.nodes) if obs.nodes[n].alive] or sorted(obs.nodes)
    n = max(1, min(params.voters, len(cands)))
    p = min(params.failures, (n - 1) // 2)
    commit, election = p + 1, n - p
    best: tuple[float, NodeId, list[NodeId]] | None = None
    for leader in cands:
        nearest = sorted(
            (c for c in cands if c != leader), key=lambda c: (obs.rtt_or_unreachable(leader, c), c)
        )
        voters = [leader, *nearest[: n - 1]]
        latency = _commit_latency_ms(obs, leader, voters, commit)
        if best is None or (latency, leader) < (best[0], best[1]):
            best = (latency, leader, voters)
    assert best is not None
    latency, leader, voters = best
    weights = {node: obs.latency_score(node) for node in obs.nodes}
    reasons = [
        f"estimated commit latency {latency:.1f} ms with leader {leader}",
        f"Q2 = {commit} so any {p} voter(s) may be cut off with both quorums left",
    ]
    if latency >= UNREACHABLE_MS:
        reasons.append("some voters are unreachable: the estimate is a bound, not a figure")
    return _plan(obs, "network", voters, election, commit, weights, leader, reasons)


def network_cost(
    obs: Observations, voters: Sequence[NodeId], election: int, commit: int, params: StrategyParams
) -> float:
    live = [v for v in voters if v in obs.nodes and obs.nodes[v].alive]
    if not live:
        return 2 * UNREACHABLE_MS
    return min(_commit_latency_ms(obs, leader, voters, commit) for leader in live)


# ------------------------------------------------------------ performance
def _performance(obs: Observations, node: NodeId) -> float:
    return obs.performance_score(node) * obs.reliability_score(node)


def performance_plan(obs: Observations, params: StrategyParams) -> QuorumPlan:
    n = _voter_count(obs, params.voters)
    cands = sorted(candidates(obs, params), key=lambda node: (-_performance(obs, node), node))
    voters = _fill(obs, cands[:n], n, lambda node: _performance(obs, node))
    q = majority(len(voters))
    weights = {node: _performance(obs, node) for node in obs.nodes}
    leader = max(voters, key=lambda node: (weights[node], -node))
    reasons = [f"the {len(voters)} fastest, least loaded nodes vote; majority quorums"]
    return _plan(obs, "performance", voters, q, q, weights, leader, reasons)


def performance_cost(
    obs: Observations, voters: Sequence[NodeId], election: int, commit: int, params: StrategyParams
) -> float:
    if not voters:
        return 1.0
    scores = [_performance(obs, v) if v in obs.nodes else 0.0 for v in voters]
    return 1.0 - sum(scores) / len(scores)


# ------------------------------------------------------------ fault tolerance
def _spread(
    obs: Observations, cands: Sequence[NodeId], n: int, cap: int, key: Callable[[NodeId], float]
) -> list[NodeId]:
    """Up to ``n`` of ``cands``, at most ``cap`` per region, taking regions in
    turn (most promising first), best ``key`` first within a region."""
    by_region: dict[str, list[NodeId]] = {}
    for node in cands:
        by_region.setdefault(obs.region(node), []).append(node)
    for nodes in by_region.values():
        nodes.sort(key=lambda node: (-key(node), node))
    order = sorted(by_region, key=lambda r: (-key(by_region[r][0]), r))
    chosen: list[NodeId] = []
    taken = dict.fromkeys(order, 0)
    progress = True
    while len(chosen) < n and progress:
        progress = False
        for region in order:
            if len(chosen) >= n:
                break
            if taken[region] < min(cap, len(by_region[region])):
                chosen.append(by_region[region][taken[region]])
                taken[region] += 1
                progress = True
    return chosen


def _region_map(obs: Observations) -> dict[NodeId, str]:
    return {node: o.region for node, o in obs.nodes.items()}


def fault_tolerance_plan(obs: Observations, params: StrategyParams) -> QuorumPlan:
    n = _voter_count(obs, max(params.voters, 2 * params.failures + 1))
    q = majority(n)
    cap = n - q
    cands = candidates(obs, params)

    def reliability(node: NodeId) -> float:
        return obs.reliability_score(node)

    voters = _spread(obs, cands, n, cap, reliability)
    reasons = []
    if len(voters) < n:
        reasons.append(
            f"only {len(voters)} voters fit {cap} per region; the cap is relaxed, a region's loss may stop the cluster"
        )
        voters = _fill(obs, voters, n, reliability)
    q = majority(len(voters))
    tol = tolerance(voters, q, q, _region_map(obs))
    reasons.append(
        f"{len(voters)} voters, quorum {q}: survives {tol.failures} failure(s)"
        + (" and the loss of any one region" if tol.region_loss else "")
    )
    weights = {node: reliability(node) for node in obs.nodes}
    leader = min(voters, key=lambda node: (-weights[node], obs.client_distance_ms(node), node))
    return _plan(obs, "fault_tolerance", voters, q, q, weights, leader, reasons)


def fault_tolerance_cost(
    obs: Observations, voters: Sequence[NodeId], election: int, commit: int, params: StrategyParams
) -> float:
    if not voters:
        return float(len(obs.regions()) + params.failures + 1)
    region_of = _region_map(obs)
    needed = max(election, commit)
    per_region: dict[str, int] = {}
    alive = [v for v in voters if v in obs.nodes and obs.nodes[v].alive]
    for v in alive:
        per_region[region_of[v]] = per_region.get(region_of[v], 0) + 1
    fatal_regions = sum(1 for count in per_region.values() if len(alive) - count < needed)
    shortfall = max(0, params.failures - max(0, len(alive) - needed))
    mean_reliability = sum(obs.reliability_score(v) if v in obs.nodes else 0.0 for v in voters) / len(voters)
    return fatal_regions + shortfall + (1.0 - mean_reliability)


# ------------------------------------------------------------ hybrid
def _blend(obs: Observations, params: StrategyParams, node: NodeId) -> float:
    w = params.weights
    total = w.latency + w.performance + w.reliability
    return (
        w.latency * obs.latency_score(node)
        + w.performance * obs.performance_score(node)
        + w.reliability * obs.reliability_score(node)
    ) / total


def hybrid_plan(obs: Observations, params: StrategyParams) -> QuorumPlan:
    n = _voter_count(obs, max(params.voters, 2 * params.failures + 1))
    cap = n - majority(n)

    def score(node: NodeId) -> float:
        return _blend(obs, params, node)

    voters = _spread(obs, candidates(obs, params), n, cap, score)
    reasons = [
        f"blend of latency {params.weights.latency}, performance {params.weights.performance}, "
        f"reliability {params.weights.reliability}; at most {cap} voter(s) per region"
    ]
    if len(voters) < n:
        reasons.append("too few regions or candidates for the region cap: relaxed")
        voters = _fill(obs, voters, n, score)
    q = majority(len(voters))
    weights = {node: score(node) for node in obs.nodes}
    leader = max(voters, key=lambda node: (weights[node], -node))
    return _plan(obs, "hybrid", voters, q, q, weights, leader, reasons)


def hybrid_cost(
    obs: Observations, voters: Sequence[NodeId], election: int, commit: int, params: StrategyParams
) -> float:
    if not voters:
        return 2.0
    mean = sum(_blend(obs, params, v) if v in obs.nodes else 0.0 for v in voters) / len(voters)
    region_of = _region_map(obs)
    tol = tolerance(voters, election, commit, region_of)
    return (1.0 - mean) + (0.0 if tol.region_loss else 1.0) + _down_penalty(obs, voters)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("network", network_plan, network_cost, "voters close to each other and to the clients", True),
        Strategy("performance", performance_plan, performance_cost, "fast, lightly loaded nodes vote", True),
        Strategy(
            "fault_tolerance",
            fault_tolerance_plan,
            fault_tolerance_cost,
            "any one region or any f voters may be lost",
            False,
        ),
        Strategy("hybrid", hybrid_plan, hybrid_cost, "a weighted blend of the three, region-safe", False),
    )
}


def strategy(name: str) -> Strategy:
    """The strategy called ``name``; ``ConfigError`` naming the known ones."""
    found = STRATEGIES.get(name.replace("-", "_"))
    if found is None:
        raise ConfigError(f"unknown quorum strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return found


def plan(name: str, obs: Observations, params: StrategyParams | None = None) -> QuorumPlan:
    """Check the inputs, run strategy ``name``, check its plan."""
    params = params or StrategyParams()
    problem = params.problem()
    if problem is not None:
        raise ConfigError(problem)
    obs.check()
    result = strategy(name).plan(obs, params)
    problem = result.problem()
    if problem is not None:  # pragma: no cover - strategies build valid plans
        raise ConfigError(f"strategy {name} built an invalid plan: {problem}")
    return result
