"""The rebalancing policy: trigger on load spread, hysteresis, cooldown, and
a proposal that is a pure value naming exactly the moves it implies."""

from __future__ import annotations

import msgspec
import pytest

from quorate.errors import ConfigError
from quorate.sharding import (
    AgentMove,
    InteractionGraph,
    RebalanceConfig,
    RebalancePolicy,
    RebalanceProposal,
    load_cv,
    moves_between,
    repair_balance,
)


def _graph(loads: dict[str, int]) -> InteractionGraph:
    g = InteractionGraph()
    for agent, load in loads.items():
        g.add_agent(agent, load)
    g.add_interaction("a0", "a1")
    return g


def _balancer(g: InteractionGraph, shards: int) -> dict[str, int]:
    # A partitioner that sees only loads: everything starts on shard 1, then the repair spreads it.
    return repair_balance(g, dict.fromkeys(g.agents, 1), shards, 0.01)


EVEN = {f"a{i}": 1 for i in range(8)}
SKEWED = {"a0": 1, "a1": 1, "a2": 1, "a3": 1, "a4": 1, "a5": 1, "a6": 1, "a7": 9}


def test_load_cv() -> None:
    assert load_cv([5, 5, 5]) == 0.0
    assert load_cv([0, 10]) == pytest.approx(1.0)
    assert load_cv([]) == 0.0 and load_cv([0, 0]) == 0.0


def test_balanced_loads_propose_nothing() -> None:
    policy = RebalancePolicy(2, _balancer)
    placement = {a: 1 + i % 2 for i, a in enumerate(EVEN)}
    assert all(policy.observe(_graph(EVEN), placement, version=v) is None for v in range(5))
    assert policy.proposals == 0


def test_a_skewed_placement_gets_a_proposal_with_exactly_its_moves() -> None:
    policy = RebalancePolicy(2, _balancer, RebalanceConfig(trigger_cv=0.2, rearm_cv=0.1))
    g = _graph(EVEN)
    placement = dict.fromkeys(EVEN, 1)
    proposal = policy.observe(g, placement, version=7)
    assert proposal is not None
    assert proposal.based_on_version == 7 and proposal.shards == 2
    assert proposal.load_cv_before == pytest.approx(1.0) and proposal.load_cv_after <= 0.1
    proposed = dict(proposal.placement)
    assert set(proposed) == set(EVEN)
    assert proposal.moves == moves_between(placement, proposed)
    assert {m.agent for m in proposal.moves} == {a for a in EVEN if proposed[a] != 1}
    assert all(m.source == 1 and m.target == 2 for m in proposal.moves)
    # A pure value: it crosses the wire unchanged.
    wire = msgspec.msgpack.encode(proposal)
    assert msgspec.msgpack.decode(wire, type=RebalanceProposal) == proposal


def test_hysteresis_no_second_proposal_until_the_spread_has_fallen() -> None:
    config = RebalanceConfig(trigger_cv=0.2, rearm_cv=0.1, cooldown_rounds=0)
    policy = RebalancePolicy(2, _balancer, config)
    g = _graph(EVEN)
    skewed = dict.fromkeys(EVEN, 1)
    assert policy.observe(g, skewed, 1) is not None
    # The move has not happened yet: the spread is still high, but no new proposal.
    assert [policy.observe(g, skewed, 1) for _ in range(5)] == [None] * 5
    assert not policy.armed
    balanced = {a: 1 + i % 2 for i, a in enumerate(EVEN)}
    assert policy.observe(g, balanced, 2) is None and policy.armed
    assert policy.observe(g, skewed, 3) is not None
    assert policy.proposals == 2


def test_a_spread_between_the_thresholds_neither_triggers_nor_rearms() -> None:
    config = RebalanceConfig(trigger_cv=0.5, rearm_cv=0.1, cooldown_rounds=0)
    policy = RebalancePolicy(2, _balancer, config)
    g = _graph(EVEN)
    assert policy.observe(g, dict.fromkeys(EVEN, 1), 1) is not None
    middling = {a: 1 if i < 5 else 2 for i, a in enumerate(EVEN)}  # loads 5 / 3: cv 0.25
    assert 0.1 < load_cv([5, 3]) < 0.5
    assert policy.observe(g, middling, 2) is None and not policy.armed


def test_cooldown_and_refusal() -> None:
    config = RebalanceConfig(trigger_cv=0.2, rearm_cv=0.1, cooldown_rounds=3)
    policy = RebalancePolicy(2, _balancer, config)
    g = _graph(EVEN)
    skewed = dict.fromkeys(EVEN, 1)
    assert policy.observe(g, skewed, 1) is not None  # round 1
    policy.refused()  # the core refused it: armed again, but the cooldown holds
    assert policy.observe(g, skewed, 1) is None  # round 2
    assert policy.observe(g, skewed, 1) is None  # round 3
    assert policy.observe(g, skewed, 1) is not None  # round 4


def test_a_repartition_that_cannot_settle_is_declined() -> None:
    # One agent carries 9 of 16 units: no placement on 2 shards gets the cv under 0.1.
    policy = RebalancePolicy(2, _balancer, RebalanceConfig(trigger_cv=0.2, rearm_cv=0.1))
    assert policy.observe(_graph(SKEWED), dict.fromkeys(SKEWED, 1), 1) is None
    assert policy.declined == 1 and policy.armed


@pytest.mark.parametrize(
    "config",
    [
        RebalanceConfig(trigger_cv=0.0),
        RebalanceConfig(trigger_cv=0.2, rearm_cv=0.2),
        RebalanceConfig(trigger_cv=0.2, rearm_cv=-0.1),
        RebalanceConfig(cooldown_rounds=-1),
    ],
)
def test_bad_configs_are_refused(config: RebalanceConfig) -> None:
    with pytest.raises(ConfigError):
        RebalancePolicy(2, _balancer, config)


def test_moves_between_ignores_new_agents() -> None:
    assert moves_between({"a": 1, "b": 2}, {"a": 2, "b": 2, "c": 1}) == (AgentMove("a", 1, 2),)
