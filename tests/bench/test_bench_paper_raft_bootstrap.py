"""The first election of a flat Raft group over three regions, as ``quorate
bench paper`` runs it: left to the randomized timeouts, 128 voters split
their votes by region round after round; node 1 campaigning at time 0 (the
bench's bootstrap) elects a leader in one round."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("hdrh", reason="needs the bench extra: pip install '.[bench]'")

from quorate.bench.paper import RUNNERS
from quorate.bench.paper_target import PaperSimTarget
from quorate.raft import Role
from quorate.runtime.sim import Simulation

N = 128


def _target(bootstrap: bool) -> PaperSimTarget:
    options = dict(RUNNERS["raft"].options)  # type: ignore[attr-defined]
    return PaperSimTarget(
        protocol="raft", nodes=N, regions=3, inter_region_ms=50.0, options=options, seed=1, clients=0,
        bootstrap_campaign=bootstrap,
    )


def _roles(simulation: Simulation) -> list[tuple[int, Role]]:
    out = []
    for node in simulation.nodes:
        assert node.host is not None
        group = node.host.get(0)
        assert group is not None
        out.append(((int(node.id) - 1) % 3, group.core.role))
    return out


def test_without_a_bootstrap_every_round_has_a_candidate_in_each_region_and_no_leader() -> None:
    simulation = _target(bootstrap=False).build(0.0, 2.0)
    for node in simulation.nodes:
        node.start(0.0)
    regions_with_candidates: list[set[int]] = []
    t = 0.0
    while t < 1.5:
        t = round(t + 0.05, 2)
        simulation.loop.run(t)
        roles = _roles(simulation)
        assert not any(role is Role.LEADER for _, role in roles), f"a leader at {t} s"
        candidates = {region for region, role in roles if role is Role.CANDIDATE}
        if candidates:
            regions_with_candidates.append(candidates)
    # Two election rounds in 1.5 s, each with candidates in all three regions
    # (each collects its own region's votes first: no majority).
    assert regions_with_candidates and all(c == {0, 1, 2} for c in regions_with_candidates)


def test_the_bootstrap_campaign_elects_node_1_within_half_a_second() -> None:
    simulation = _target(bootstrap=True).build(0.0, 1.0)
    for node in simulation.nodes:
        node.start(0.0)
    simulation.loop.run(0.5)
    leaders = [i for i, (_, role) in enumerate(_roles(simulation)) if role is Role.LEADER]
    assert leaders == [0]
    assert Counter(role for _, role in _roles(simulation))[Role.FOLLOWER] == N - 1
