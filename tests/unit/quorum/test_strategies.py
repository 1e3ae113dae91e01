"""Strategies as tables: observations in, plan out (``quorate.quorum``)."""

from __future__ import annotations

import pytest
from tests.unit.quorum.observed import INTER_MS, INTRA_MS, REGIONS, cluster, region_counts

from quorate.core.binding import MembershipChange, MembershipView
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.quorum import (
    STRATEGIES,
    NodeObservation,
    Observations,
    QuorumPlan,
    StrategyParams,
    plan,
    plan_change,
    strategy,
    tolerance,
)

N = NodeId


# (strategy, observations, params) -> what the plan must satisfy
CASES = [
    pytest.param(
        "network",
        cluster(),
        StrategyParams(voters=5, failures=1),
        {"voters": (0, 1, 2, 3, 6), "quorum": (4, 2), "leader": 0},
        id="network: the clients' region votes, Q2 = 2 of 5, its leader leads",
    ),
    pytest.param(
        "network",
        cluster(clients={"b": 1.0}),
        StrategyParams(voters=5, failures=1),
        {"regions": {"b": 3}, "quorum": (4, 2), "leader": 1},
        id="network: clients in b move the voters to b",
    ),
    pytest.param(
        "network",
        cluster(),
        StrategyParams(voters=5, failures=2),
        {"quorum": (3, 3), "regions": {"a": 3}},
        id="network: a larger expected partition means majorities",
    ),
    pytest.param(
        "network",
        cluster(down=[0, 3]),
        StrategyParams(voters=5, failures=1),
        {"excluded": (0, 3), "leader": 6},
        id="network: dead nodes never vote",
    ),
    pytest.param(
        "fault_tolerance",
        cluster(),
        StrategyParams(voters=5, failures=1),
        {"max_per_region": 2, "quorum": (3, 3), "region_loss": True},
        id="fault tolerance: at most 2 of 5 per region",
    ),
    pytest.param(
        "fault_tolerance",
        cluster(),
        StrategyParams(voters=3, failures=2),
        {"count": 5, "region_loss": True, "failures": 2},
        id="fault tolerance: f = 2 needs 5 voters",
    ),
    pytest.param(
        "fault_tolerance",
        cluster(loss={1: 0.6}, down=[2]),
        StrategyParams(voters=5, failures=1),
        {"excluded": (1, 2), "region_loss": True},
        id="fault tolerance: lossy and dead nodes are left out",
    ),
    pytest.param(
        "performance",
        cluster(cpu={0: 0.95, 3: 0.9}, slow_links={6: 400.0}),
        StrategyParams(voters=5),
        {"excluded": (0, 3, 6), "quorum": (3, 3)},
        id="performance: loaded and slow nodes do not vote",
    ),
    pytest.param(
        "hybrid",
        cluster(),
        StrategyParams(voters=5),
        {"max_per_region": 2, "regions_include": {"a": 2}, "region_loss": True, "leader_region": "a"},
        id="hybrid: close to clients, but region-safe",
    ),
    pytest.param(
        "hybrid",
        cluster(),
        StrategyParams(voters=5, degrading=frozenset({N(0), N(3)})),
        {"excluded": (0, 3)},
        id="hybrid: degrading nodes are replaced",
    ),
]


@pytest.mark.parametrize(("name", "obs", "params", "expect"), CASES)
def test_strategy_table(name: str, obs: Observations, params: StrategyParams, expect: dict[str, object]) -> None:
    result = plan(name, obs, params)
    assert result.problem() is None
    voters = result.voters
    assert set(voters) | set(result.learners) == set(obs.nodes)
    if "voters" in expect:
        assert voters == tuple(N(v) for v in expect["voters"])  # type: ignore[attr-defined]
    if "count" in expect:
        assert len(voters) == expect["count"]
    if "quorum" in expect:
        assert (result.election_quorum, result.commit_quorum) == expect["quorum"]
    if "leader" in expect:
        assert result.preferred_leader == expect["leader"]
    if "leader_region" in expect:
        assert result.preferred_leader is not None
        assert REGIONS[result.preferred_leader % 3] == expect["leader_region"]
    if "excluded" in expect:
        assert not set(voters) & set(expect["excluded"])  # type: ignore[arg-type]
    counts = region_counts(voters)
    if "regions" in expect:
        for region, count in expect["regions"].items():  # type: ignore[attr-defined]
            assert counts.get(region, 0) == count, counts
    if "regions_include" in expect:
        for region, count in expect["regions_include"].items():  # type: ignore[attr-defined]
            assert counts.get(region, 0) >= count, counts
    if "max_per_region" in expect:
        assert max(counts.values()) <= expect["max_per_region"], counts  # type: ignore[operator]
    tol = tolerance(voters, result.election_quorum, result.commit_quorum, {n: o.region for n, o in obs.nodes.items()})
    if "region_loss" in expect:
        assert tol.region_loss is expect["region_loss"]
    if "failures" in expect:
        assert tol.failures >= expect["failures"]  # type: ignore[operator]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_plan_is_a_pure_function_of_its_inputs(name: str) -> None:
    obs = cluster(cpu={4: 0.7}, loss={5: 0.1})
    assert plan(name, obs) == plan(name, obs)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_costs_its_own_plan_no_higher_than_a_bad_configuration(name: str) -> None:
    obs = cluster(cpu={1: 0.95, 4: 0.95}, slow_links={7: 300.0})
    params = StrategyParams(voters=5)
    s = strategy(name)
    chosen = s.plan(obs, params)
    bad = (N(1), N(4), N(7), N(2), N(5))  # loaded, slow, and no voter near the clients
    own = s.cost(obs, chosen.voters, chosen.election_quorum, chosen.commit_quorum, params)
    assert own <= s.cost(obs, bad, 3, 3, params)


def test_network_latency_estimate_orders_configurations() -> None:
    obs = cluster()
    params = StrategyParams()
    s = strategy("network")
    local = s.cost(obs, (N(0), N(3), N(6), N(1), N(4)), 4, 2, params)
    spread = s.cost(obs, tuple(N(i) for i in range(9)), 5, 5, params)
    assert local == pytest.approx(2 * INTRA_MS)
    assert spread == pytest.approx(INTRA_MS + INTER_MS)


def test_unknown_strategy_and_bad_input_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="unknown quorum strategy 'fastest'; choose one of network, performance, fault_tolerance, hybrid"):
        strategy("fastest")
    assert strategy("fault-tolerance").name == "fault_tolerance"
    bad = Observations({N(0): NodeObservation(N(0), "a", loss=1.5)})
    with pytest.raises(ConfigError, match="loss must be in"):
        plan("network", bad)
    with pytest.raises(ConfigError, match="no node was observed"):
        plan("network", Observations({}))
    with pytest.raises(ConfigError, match="voter count"):
        plan("network", cluster(), StrategyParams(voters=0))


@pytest.mark.parametrize(
    ("voters", "learners", "q", "problem"),
    [
        ((), (), (1, 1), "empty voter set"),
        ((0, 1, 2), (), (1, 2), "Q1 + Q2 > n"),
        ((0, 1, 2), (), (4, 2), "1..3"),
        ((0, 1), (1,), (2, 1), "both voters and learners"),
        ((0, 1, 2), (3,), (2, 2), None),
    ],
)
def test_plan_problems(voters: tuple[int, ...], learners: tuple[int, ...], q: tuple[int, int], problem: str | None) -> None:
    p = QuorumPlan("t", tuple(map(N, voters)), tuple(map(N, learners)), *q)
    found = p.problem()
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("voters", "q", "failures", "region_loss"),
    [
        ((0, 1, 2, 3, 4), (3, 3), 2, True),  # a:0,3 b:1,4 c:2
        ((0, 3, 6, 1, 4), (3, 3), 2, False),  # a holds 3 of 5
        ((0, 3, 6, 1, 4), (4, 2), 1, False),
        ((0, 1, 2), (2, 2), 1, True),
        ((0,), (1, 1), 0, False),
    ],
)
def test_tolerance_table(voters: tuple[int, ...], q: tuple[int, int], failures: int, region_loss: bool) -> None:
    regions = {N(i): REGIONS[i % 3] for i in range(9)}
    tol = tolerance(map(N, voters), q[0], q[1], regions)
    assert (tol.failures, tol.region_loss) == (failures, region_loss)


@pytest.mark.parametrize(
    ("view", "plan_voters", "plan_learners", "q", "change"),
    [
        # Same voters and sizes: nothing to do.
        (MembershipView((N(0), N(1), N(2)), (N(3),), (), 2, 2), (0, 1, 2), (3,), (2, 2), None),
        # Two voters swapped, the old ones kept as learners.
        (
            MembershipView((N(0), N(1), N(2)), (N(3), N(4)), (), 2, 2),
            (0, 3, 4),
            (1, 2),
            (2, 2),
            MembershipChange(add=(N(3), N(4)), add_learners=(N(1), N(2))),
        ),
        # Sizes only.
        (MembershipView(tuple(map(N, range(5))), (), (), 3, 3), (0, 1, 2, 3, 4), (), (4, 2), MembershipChange(quorum=(4, 2))),
        # A member the plan does not name is removed; a new learner added; the
        # voter count changes, so the sizes are named.
        (
            MembershipView((N(0), N(1), N(2)), (N(7),), (), 2, 2),
            (0, 1, 2, 5),
            (6,),
            (3, 2),
            MembershipChange(add=(N(5),), remove=(N(7),), add_learners=(N(6),), quorum=(3, 2)),
        ),
    ],
)
def test_plan_change_table(
    view: MembershipView,
    plan_voters: tuple[int, ...],
    plan_learners: tuple[int, ...],
    q: tuple[int, int],
    change: MembershipChange | None,
) -> None:
    p = QuorumPlan("t", tuple(map(N, plan_voters)), tuple(map(N, plan_learners)), *q)
    assert plan_change(p, view) == change
