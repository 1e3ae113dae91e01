"""METIS placement with the balance repair: coverage, the balance bound,
determinism by seed, and a planted partition found."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.sharding.sharding_graphs import graphs, planted

from quorate.errors import ConfigError
from quorate.sharding import (
    InteractionGraph,
    balance_bound,
    cut_fraction,
    relabel_to_keep,
    repair_balance,
    shard_loads,
)

pytest.importorskip("pymetis", reason="needs the sharding extra: pip install '.[sharding]'")

from quorate.sharding import metis_partition


@settings(max_examples=60, deadline=None)
@given(graphs(), st.integers(1, 6), st.integers(0, 2**16))
def test_every_agent_is_placed_once_within_the_balance_bound(g: InteractionGraph, shards: int, seed: int) -> None:
    placement = metis_partition(g, shards, seed=seed)
    assert set(placement) == set(g.agents)
    assert all(1 <= s <= shards for s in placement.values())
    assert max(shard_loads(g, placement, shards)) <= balance_bound(g, shards, 0.03) + 1e-9


@settings(max_examples=30, deadline=None)
@given(graphs(), st.integers(2, 5), st.integers(0, 2**16))
def test_one_seed_gives_one_placement(g: InteractionGraph, shards: int, seed: int) -> None:
    assert metis_partition(g, shards, seed=seed) == metis_partition(g, shards, seed=seed)


@settings(max_examples=60, deadline=None)
@given(graphs(), st.integers(1, 6), st.data())
def test_the_repair_keeps_its_bound_from_any_placement(g: InteractionGraph, shards: int, data: st.DataObject) -> None:
    start = {a: data.draw(st.integers(1, shards)) for a in g.agents}
    repaired = repair_balance(g, start, shards, 0.05)
    assert set(repaired) == set(g.agents)
    assert max(shard_loads(g, repaired, shards)) <= balance_bound(g, shards, 0.05) + 1e-9


def test_metis_finds_the_planted_blocks() -> None:
    g = planted(seed=7, max_load=1)  # equal loads: the planted blocks are balanced
    placement = metis_partition(g, 4, seed=1)
    # The planted blocks cut only the sparse edges between blocks.
    planted_cut = cut_fraction(g, {a: int(a[1]) + 1 for a in g.agents})
    assert cut_fraction(g, placement) <= planted_cut * 1.2
    blocks = {a.split("-")[0] for a in g.agents}
    majority = [
        max(sum(1 for a in g.agents if a.startswith(b + "-") and placement[a] == s) for s in range(1, 5))
        for b in blocks
    ]
    assert min(majority) >= 14  # of 16 agents per block


def test_one_shard_and_an_empty_graph() -> None:
    g = planted(seed=1, blocks=2, size=4)
    assert set(metis_partition(g, 1, seed=0).values()) == {1}
    assert metis_partition(InteractionGraph(), 3, seed=0) == {}


@pytest.mark.parametrize(("shards", "tolerance"), [(0, 0.03), (2, 0.0), (2, 1.5)])
def test_bad_settings_are_refused(shards: int, tolerance: float) -> None:
    with pytest.raises(ConfigError):
        metis_partition(planted(seed=1, blocks=2, size=4), shards, seed=0, imbalance_tolerance=tolerance)


def test_relabelling_undoes_a_permutation_of_shard_numbers() -> None:
    current = {f"a{i}": i % 3 + 1 for i in range(12)}
    permuted = {a: {1: 3, 2: 1, 3: 2}[s] for a, s in current.items()}
    assert relabel_to_keep(current, permuted, 3) == current


def test_relabelling_keeps_the_heaviest_overlap() -> None:
    current = {"a": 1, "b": 1, "c": 2}
    proposed = {"a": 2, "b": 1, "c": 1}
    loads = {"a": 10, "b": 1, "c": 1}
    kept = relabel_to_keep(current, proposed, 2, loads)
    assert kept["a"] == 1  # the heavy agent stays; the light ones move


def test_relabelling_refuses_shards_out_of_range() -> None:
    with pytest.raises(ConfigError, match="proposal names 4"):
        relabel_to_keep({"a": 1}, {"a": 4}, 3)
