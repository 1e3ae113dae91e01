"""The interaction graph and the figures of a placement."""

from __future__ import annotations

import pytest

from quorate.errors import ConfigError
from quorate.sharding import InteractionGraph, cut_fraction, load_imbalance, shard_loads


def _triangle_and_tail() -> InteractionGraph:
    g = InteractionGraph()
    g.add_agent("a", 2)
    g.add_interaction("a", "b", 3)
    g.add_interaction("b", "c")
    g.add_interaction("c", "a")
    g.add_interaction("c", "d", 5)
    g.add_interaction("b", "a")  # accumulates onto a-b
    return g


def test_interactions_accumulate_and_new_agents_get_load_one() -> None:
    g = _triangle_and_tail()
    assert g.agents == ("a", "b", "c", "d")
    assert g.neighbours("a") == {"b": 4, "c": 1}
    assert g.load("a") == 2 and g.load("d") == 1
    assert g.total_weight() == 4 + 1 + 1 + 5
    assert sorted(g.edges()) == [("a", "b", 4), ("a", "c", 1), ("b", "c", 1), ("c", "d", 5)]


def test_a_self_interaction_is_not_an_edge() -> None:
    g = InteractionGraph()
    g.add_interaction("a", "a", 4)
    assert len(g) == 1 and g.total_weight() == 0 and list(g.edges()) == []


def test_csr_stores_both_directions() -> None:
    csr = _triangle_and_tail().csr()
    assert len(csr.adjacent) == 2 * 4
    assert csr.adjacency_start[-1] == len(csr.adjacent) == len(csr.edge_weights)
    assert sum(csr.edge_weights) == 2 * 11
    assert csr.vertex_loads == (2, 1, 1, 1)


def test_figures_of_a_placement() -> None:
    g = _triangle_and_tail()
    placement = {"a": 1, "b": 1, "c": 2, "d": 2}
    assert cut_fraction(g, placement) == pytest.approx(2 / 11)
    assert shard_loads(g, placement, 2) == [3, 2]
    assert load_imbalance(g, placement, 2) == pytest.approx(3 / 2.5)
    assert cut_fraction(g, dict.fromkeys(g.agents, 1)) == 0.0


@pytest.mark.parametrize("load", [0, -1, 1.5, True])
def test_bad_loads_are_refused(load: object) -> None:
    with pytest.raises(ConfigError, match="load"):
        InteractionGraph().add_agent("a", load)  # type: ignore[arg-type]


def test_a_placement_must_cover_every_agent_on_a_real_shard() -> None:
    g = _triangle_and_tail()
    with pytest.raises(ConfigError, match="leaves 1 agents out"):
        shard_loads(g, {"a": 1, "b": 1, "c": 1}, 2)
    with pytest.raises(ConfigError, match=r"numbered 1\.\.2"):
        shard_loads(g, {"a": 1, "b": 1, "c": 1, "d": 3}, 2)
