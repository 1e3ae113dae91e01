"""Graphs the sharding tests share: a seeded planted-community graph and a
hypothesis strategy of small interaction graphs."""

from __future__ import annotations

import random

from hypothesis import strategies as st

from quorate.sharding import InteractionGraph


def planted(
    seed: int, blocks: int = 4, size: int = 16, p_in: float = 0.5, p_out: float = 0.02, max_load: int = 4
) -> InteractionGraph:
    """``blocks`` dense blocks of ``size`` agents, sparse between them; agent
    ``b{block}-{i}`` is in block ``block``."""
    rng = random.Random(seed)
    g = InteractionGraph()
    names = [f"b{b}-{i}" for b in range(blocks) for i in range(size)]
    for name in names:
        g.add_agent(name, rng.randint(1, max_load))
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = a.split("-")[0] == b.split("-")[0]
            if rng.random() < (p_in if same else p_out):
                g.add_interaction(a, b, rng.randint(1, 3))
    return g


@st.composite
def graphs(draw: st.DrawFn, max_agents: int = 30) -> InteractionGraph:
    n = draw(st.integers(1, max_agents))
    g = InteractionGraph()
    for i in range(n):
        g.add_agent(f"a{i}", draw(st.integers(1, 20)))
    pairs = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(1, 9)), max_size=4 * n)
    )
    for i, j, w in pairs:
        g.add_interaction(f"a{i}", f"a{j}", w)
    return g
