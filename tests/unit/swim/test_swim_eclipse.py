"""Eclipse resistance of the Cyclon view: a locality (subnet, region) holds
at most its share of the view, a view one locality dominates is noticed
(entropy) and refreshed from the trusted seeds, and in a running group the
victim of a Sybil swarm from one subnet keeps honest peers in its view."""

from __future__ import annotations

import random

from tests.unit.swim.network import SwimNet

from quorate.ids import NodeId
from quorate.swim import PartialView, SwimConfig, ViewEntry
from quorate.swim.peer_sampling import locality_entropy

HONEST = range(0, 10)
SYBILS = range(100, 130)


def subnet(node: NodeId) -> str:
    if node >= 100:
        return "66.6.6.0/24"
    return "10.0.0.0/24" if node % 2 == 0 else "10.0.1.0/24"


def test_a_locality_holds_at_most_its_share() -> None:
    view = PartialView(NodeId(0), size=8, shuffle_length=4, rng=random.Random(1), locality=subnet, max_per_locality=4)
    view.diverse = True
    for node in SYBILS:
        view.add(NodeId(node))
    assert len(view) == 4 and view.capped == len(SYBILS) - 4
    for node in (1, 2, 3, 4):
        view.add(NodeId(node))
    assert len(view) == 8
    # A shuffle full of sybils changes nothing about the cap.
    started = view.start_shuffle()
    assert started is not None
    target, _ = started
    view.finish_shuffle(target, [ViewEntry(n, 0) for n in range(110, 118)])
    assert sum(1 for n in view.nodes() if n >= 100) <= 4


def test_the_cap_applies_only_when_members_offer_diversity() -> None:
    view = PartialView(NodeId(0), size=8, shuffle_length=4, rng=random.Random(1), locality=lambda n: "one", max_per_locality=4)
    for node in range(1, 20):
        view.add(NodeId(node))
    assert len(view) == 8  # a group on one subnet still fills its view


def test_a_dominated_view_is_noticed_and_refreshed_from_trusted_seeds() -> None:
    view = PartialView(NodeId(0), size=8, shuffle_length=4, rng=random.Random(2), locality=subnet, max_per_locality=4)
    for node in list(SYBILS)[:8]:  # filled before the members were known
        view.add(NodeId(node))
    members = [NodeId(n) for n in (*HONEST[1:], *SYBILS)]
    assert locality_entropy(subnet(n) for n in view.nodes()) == 0.0
    assert view.entropy_ratio(members) == 0.0
    view.diverse = True
    view.refresh(trusted=[NodeId(1), NodeId(2)], members=members)
    assert {1, 2} <= set(view.nodes())
    assert sum(1 for n in view.nodes() if n >= 100) <= 8 // 3
    assert view.entropy_ratio(members) > 1.0  # now more mixed than the population


def _sybils_in_view(net: SwimNet, victim: int) -> int:
    return sum(1 for n in net.nodes[NodeId(victim)].view() if n >= 100)


def _run_group(locality: object) -> tuple[int, int]:
    """A group of 10 honest members on two subnets and 30 joining from one
    subnet; the victim (0) knows localities when ``locality`` is given.
    Returns the most sybils seen in its view and its refresh count."""
    config = SwimConfig(view_size=8, shuffle_length=4, shuffle_interval_s=0.5)
    net = SwimNet(seed=5)
    net.add(0, (), config, locality=locality)  # type: ignore[arg-type]
    for i in HONEST[1:]:
        net.add(i, (0,), config)
    net.run_for(5.0)
    for i in SYBILS:
        net.add(i, (0,), config)
    worst = 0
    for _ in range(40):
        net.run_for(1.0)
        worst = max(worst, _sybils_in_view(net, 0))
    return worst, net.nodes[NodeId(0)].counters().get("view_refreshes", 0)


def test_the_victim_of_a_sybil_swarm_keeps_honest_peers_in_its_view() -> None:
    unprotected, _ = _run_group(None)
    protected, _ = _run_group(subnet)
    cap = 4  # ceil(view_size 8 x view_max_share 0.5)
    assert protected <= cap
    assert unprotected > cap  # without localities the swarm takes most of the view
