"""One-pass affinity clustering: communities found, memory bounded, old
interactions decayed, capacity kept, one stream one placement."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.sharding.sharding_graphs import planted

from quorate.errors import ConfigError
from quorate.sharding import (
    AffinityClustering,
    AffinityConfig,
    cut_fraction,
    key_point,
    shard_loads,
)


def _stream(seed: int, repeats: int = 5) -> tuple[list[tuple[str, str]], dict[str, int]]:
    g = planted(seed=seed)
    stream = [(a, b) for a, b, w in g.edges() for _ in range(w * repeats)]
    random.Random(seed).shuffle(stream)
    return stream, {a: g.load(a) for a in g.agents}


def _run(stream: list[tuple[str, str]], loads: dict[str, int], **config: object) -> AffinityClustering:
    c = AffinityClustering(
        AffinityConfig(shards=4, expected_total_load=sum(loads.values()), **config),  # type: ignore[arg-type]
        loads,
    )
    for a, b in stream:
        c.interact(a, b)
    return c


def test_planted_communities_are_found_in_one_pass() -> None:
    stream, loads = _stream(seed=3)
    g = planted(seed=3)
    c = _run(stream, loads)
    placement = c.placement()
    assert set(placement) == set(g.agents)
    planted_cut = cut_fraction(g, {a: int(a[1]) + 1 for a in g.agents})
    hashed_cut = cut_fraction(g, {a: key_point(a) % 4 + 1 for a in g.agents})
    assert cut_fraction(g, placement) < (planted_cut + hashed_cut) / 2
    # Each block's agents mostly share one shard.
    for block in range(4):
        members = [placement[a] for a in g.agents if a.startswith(f"b{block}-")]
        assert max(members.count(s) for s in range(1, 5)) >= 10  # of 16


def test_one_stream_gives_one_placement() -> None:
    stream, loads = _stream(seed=5)
    assert _run(stream, loads).placement() == _run(stream, loads).placement()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 5)), max_size=400),
    st.integers(2, 20),
)
def test_memory_stays_bounded_and_the_placement_is_consistent(
    events: list[tuple[int, int, int]], max_agents: int
) -> None:
    c = AffinityClustering(AffinityConfig(shards=3, max_agents=max_agents, sketch_size=2))
    for a, b, w in events:
        c.interact(f"x{a}", f"x{b}", w)
        assert c.tracked() <= max_agents
        assert all(len(c.affinity(x)) <= 2 for x in (f"x{a}", f"x{b}") if c.shard_of(x) is not None)
    placement = c.placement()
    assert len(placement) == c.tracked()
    assert all(1 <= s <= 3 for s in placement.values())
    seen = {f"x{i}" for e in events for i in e[:2]}
    assert c.forgotten >= len(seen) - max_agents


def test_old_interactions_decay() -> None:
    c = AffinityClustering(AffinityConfig(shards=2, half_life_interactions=10))
    c.interact("a", "b", 8)
    first = c.activity_of("a")
    for i in range(10):
        c.interact(f"c{i}", f"d{i}")
    assert c.activity_of("a") == pytest.approx(first / 2)


def test_decay_survives_the_rescale() -> None:
    c = AffinityClustering(AffinityConfig(shards=2, half_life_interactions=0.5))
    c.interact("a", "b")
    for i in range(200):  # the unit grows 4x per interaction: rescaled several times
        c.interact("a", f"p{i % 3}")
    assert 0 < c.activity_of("a") < 2.0
    assert c.activity_of("b") == pytest.approx(2.0**-400, rel=1e-6, abs=1e-100)


def test_an_agent_follows_its_partners_and_capacity_holds() -> None:
    loads = {"hub1": 1, "hub2": 1, "x": 1}
    c = AffinityClustering(AffinityConfig(shards=2, expected_total_load=3, capacity_slack=1.0), loads)
    c.seed({"hub1": 1, "hub2": 2, "x": 1})
    for _ in range(20):
        c.interact("x", "hub2")
    assert c.shard_of("x") == 2
    cap = c.capacity()
    assert all(load <= cap for load in shard_loads_of(c, loads))


def test_capacity_stops_a_move() -> None:
    loads = {"a": 5, "b": 5, "x": 1}
    c = AffinityClustering(AffinityConfig(shards=2, expected_total_load=11, capacity_slack=0.0), loads)
    c.seed({"a": 1, "b": 2, "x": 1})
    for _ in range(20):
        c.interact("x", "b")
    # Shard 2 holds 5 of a capacity of 5.5: x (load 1) cannot join it.
    assert c.shard_of("x") == 1


def shard_loads_of(c: AffinityClustering, loads: dict[str, int]) -> list[int]:
    from quorate.sharding import InteractionGraph

    g = InteractionGraph()
    for agent in c.placement():
        g.add_agent(agent, loads[agent])
    return shard_loads(g, c.placement(), c.config.shards)


@pytest.mark.parametrize(
    "config",
    [
        AffinityConfig(shards=0),
        AffinityConfig(shards=2, max_agents=1),
        AffinityConfig(shards=2, sketch_size=0),
        AffinityConfig(shards=2, half_life_interactions=0),
        AffinityConfig(shards=2, capacity_slack=-0.1),
        AffinityConfig(shards=2, balance_weight=-1),
        AffinityConfig(shards=2, move_margin=-1),
    ],
)
def test_bad_configs_are_refused(config: AffinityConfig) -> None:
    with pytest.raises(ConfigError):
        AffinityClustering(config)


def test_bad_input_is_refused() -> None:
    c = AffinityClustering(AffinityConfig(shards=2))
    with pytest.raises(ConfigError):
        c.interact("a", "b", 0)
    with pytest.raises(ConfigError):
        c.seed({"a": 3})


def test_seeding_respects_the_memory_bound() -> None:
    c = AffinityClustering(AffinityConfig(shards=2, max_agents=10))
    c.seed({f"a{i}": 1 + i % 2 for i in range(25)})
    assert c.tracked() <= 10 and c.forgotten == 25 - c.tracked()


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.integers(0, 30), st.integers(1, 9), min_size=1),
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=300),
    st.integers(1, 5),
)
def test_shard_loads_stay_within_capacity_or_one_agent_above_the_mean(
    load_of: dict[int, int], pairs: list[tuple[int, int]], shards: int
) -> None:
    loads = {f"x{i}": w for i, w in load_of.items()}
    total = sum(loads.values())
    c = AffinityClustering(AffinityConfig(shards=shards, expected_total_load=total), loads)
    for a, b in pairs:
        if f"x{a}" in loads and f"x{b}" in loads:
            c.interact(f"x{a}", f"x{b}")
    bound = max(1.05 * total / shards, total / shards + max(loads.values()))
    assert all(load <= bound + 1e-9 for load in shard_loads_of(c, loads))
