"""Which shard to split, which shards to merge first."""

from __future__ import annotations

import pytest

from quorate.errors import ConfigError
from quorate.sharding import InteractionGraph, MergeStep, hot_shards, merge_plan, shard_traffic


def test_shard_traffic_counts_only_cross_shard_weight() -> None:
    g = InteractionGraph()
    g.add_interaction("a", "b", 3)
    g.add_interaction("b", "c", 2)
    g.add_interaction("c", "d", 7)
    assert shard_traffic(g, {"a": 1, "b": 2, "c": 1, "d": 1}) == {(1, 2): 5}


def test_hot_shards_hottest_first() -> None:
    assert hot_shards({1: 10, 2: 50, 3: 10, 4: 45}, split_factor=1.5) == [2, 4]
    assert hot_shards({1: 10, 2: 10}) == []
    with pytest.raises(ConfigError):
        hot_shards({1: 1}, split_factor=1.0)


def test_the_coldest_shard_merges_first_with_its_busiest_partner() -> None:
    loads = {1: 100, 2: 5, 3: 12, 4: 15}
    traffic = {(2, 3): 1, (2, 4): 6, (1, 2): 2, (1, 3): 5, (1, 4): 30}
    plan = merge_plan(loads, traffic, capacity=40)
    # Shard 2 is the least used (load 5 + traffic 9, shard 3: 12 + 6); of the
    # shards it fits with, it exchanges most with 4.
    assert plan[0] == MergeStep(absorbed=2, into=4, combined_load=20, traffic_between=6)
    # A shard takes part in one merge; shard 1 fits with no one.
    used = [s for step in plan for s in (step.absorbed, step.into)]
    assert len(used) == len(set(used)) and 1 not in used
    assert all(step.combined_load <= 40 for step in plan)


def test_nothing_merges_when_nothing_fits() -> None:
    assert merge_plan({1: 30, 2: 30}, {}, capacity=50) == []
    with pytest.raises(ConfigError):
        merge_plan({1: 1}, {}, capacity=0)
