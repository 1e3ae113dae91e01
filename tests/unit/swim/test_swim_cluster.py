"""SWIM + Lifeguard end to end in the deterministic in-memory network.

Each test states the property from the paper it checks; figures a reader may
want (detection time, join spread) are printed as JSON with ``-s``."""

from __future__ import annotations

import json
import math

import pytest
from tests.unit.swim.network import SwimNet

from quorate.ids import NodeId
from quorate.swim import GossipMode, MemberState, SwimConfig


def _everyone_sees(net: SwimNet, member: int, state: MemberState) -> bool:
    return all(net.state_of(m.id, member) is state for m in net.live() if m.id != member)


def test_a_killed_member_is_declared_dead_by_every_live_member() -> None:
    net = SwimNet(seed=11, wire=True)
    net.bootstrap(20)
    net.kill(7)
    took = net.run_until_true(lambda: _everyone_sees(net, 7, MemberState.DEAD), 60.0)
    # Detection: within a round of probes (~n periods worst case, e/(e-1) expected)
    # plus the suspicion timeout at full confirmation: alpha·log10(20)·T = 6.5 s.
    assert took < 30.0
    # Nobody else was declared dead on the way.
    for m in net.live():
        assert m.reachable() == frozenset(NodeId(i) for i in range(20)) - {NodeId(7)}
    print(json.dumps({"n": 20, "detect_all_s": round(took, 2)}))
    # Reference: SWIM §3 (failure detector), §4.2 (suspicion); Lifeguard §IV-B.


def test_events_record_the_suspicion_then_the_death() -> None:
    net = SwimNet(seed=12)
    net.bootstrap(8)
    observer = net.nodes[NodeId(0)]
    observer.take_events()
    net.kill(3)
    net.run_until_true(lambda: _everyone_sees(net, 3, MemberState.DEAD), 60.0)
    about_3 = [e for e in observer.take_events() if e.member == 3]
    assert [e.state for e in about_3][-1] is MemberState.DEAD
    assert MemberState.SUSPECT in [e.state for e in about_3] or about_3[0].state is MemberState.DEAD
    assert all(e.incarnation == 0 for e in about_3)
    assert [e.at for e in about_3] == sorted(e.at for e in about_3)


@pytest.mark.parametrize("seed", [21, 22])
def test_slow_member_refutes_and_is_never_declared_dead_with_lifeguard(seed: int) -> None:
    """A live member whose links are slow (RTT 1 s: twice the probe timeout)
    under 5% loss gets suspected, refutes, and is never declared dead; nor does
    its own slowness get anybody else declared dead."""
    net = SwimNet(seed=seed, loss=0.05)
    net.bootstrap(16)
    for m in net.nodes.values():
        m.take_events()
    net.slow[NodeId(5)] = 0.5
    net.run_for(90.0)
    net.slow.clear()
    net.run_for(20.0)
    deaths = [
        (m.id, e.member) for m in net.live() for e in m.take_events() if e.state is MemberState.DEAD
    ]
    assert deaths == []
    slow = net.nodes[NodeId(5)]
    assert slow.counters().get("refutations", 0) >= 1
    assert slow.incarnation >= 1
    # Reference: Lifeguard §IV (LHM, dynamic suspicion, buddy system).


def test_local_health_rises_on_a_slow_member_and_recovers() -> None:
    net = SwimNet(seed=23)
    net.bootstrap(10)
    slow = net.nodes[NodeId(4)]
    assert slow.local_health == 0
    net.slow[NodeId(4)] = 0.6  # RTT 1.2 s: longer than a whole protocol period
    peak = 0
    for _ in range(40):
        net.run_for(1.0)
        peak = max(peak, slow.local_health)
    assert peak >= 2
    assert all(m.local_health <= 1 for m in net.live() if m.id != 4)
    net.slow.clear()
    net.run_until_true(lambda: slow.local_health == 0, 120.0)
    # Reference: Lifeguard §IV-A (Local Health Multiplier).


def test_without_lifeguard_the_health_multiplier_stays_off() -> None:
    config = SwimConfig(lifeguard=False)
    net = SwimNet(seed=24)
    net.bootstrap(10, config)
    net.slow[NodeId(4)] = 0.35
    net.run_for(20.0)
    assert all(m.local_health == 0 for m in net.live())


def test_join_spreads_to_all_of_200_members_within_log_periods() -> None:
    n = 200
    config = SwimConfig()
    net = SwimNet(seed=31)
    net.bootstrap(n, config)
    net.add(n, (17,), config)
    joiner = NodeId(n)
    took = net.run_until_true(
        lambda: all(m.member(joiner) is not None for m in net.live()), 60.0, step_s=0.05
    )
    periods = took / config.protocol_period_s
    bound = 3 * math.log2(n)
    assert periods <= bound
    net.run_for(3.0)
    assert len(net.nodes[joiner].reachable()) == n + 1
    print(
        json.dumps(
            {"n": n, "join_spread_periods": round(periods, 2), "bound_periods": round(bound, 2)}
        )
    )
    # Reference: SWIM §4.1 (infection-style dissemination, O(log n) rounds).


def test_graceful_leave_is_seen_as_left_not_dead() -> None:
    net = SwimNet(seed=41, wire=True)
    net.bootstrap(12)
    leaver = net.nodes[NodeId(6)]
    leaver.leave(net.now)
    net._flush(leaver)
    net.run_until_true(lambda: _everyone_sees(net, 6, MemberState.LEFT), 30.0)
    net.run_for(30.0)
    assert _everyone_sees(net, 6, MemberState.LEFT)
    assert all(NodeId(6) not in m.reachable() for m in net.live())
    assert leaver.wake_at() is None


@pytest.mark.parametrize("mode", list(GossipMode))
def test_every_gossip_mode_reaches_everyone(mode: GossipMode) -> None:
    config = SwimConfig(gossip_mode=mode)
    net = SwimNet(seed=51, loss=0.1)
    net.bootstrap(40, config)
    origin = net.nodes[NodeId(3)]
    payloads = [f"rumour-{i}".encode() for i in range(5)]
    for p in payloads:
        origin.broadcast(p, net.now)
    net._flush(origin)
    got: dict[NodeId, list[bytes]] = {m.id: [] for m in net.live()}

    def done() -> bool:
        for m in net.live():
            got[m.id] += [d.payload for d in m.take_delivered()]
        return all(sorted(v) == sorted(payloads) for k, v in got.items() if k != 3)

    took = net.run_until_true(done, 30.0)
    assert got[NodeId(3)] == []  # not delivered back to its origin
    print(json.dumps({"mode": mode.value, "n": 40, "loss": 0.1, "all_delivered_s": round(took, 2)}))


def test_propose_broadcasts_and_refuses_oversize() -> None:
    net = SwimNet(seed=52)
    net.bootstrap(5)
    node = net.nodes[NodeId(1)]
    outcome = node.propose(b"hello", net.now)
    assert outcome.__class__.__name__ == "Accepted"
    assert (
        node.propose(b"x" * (node.config.max_rumour_bytes + 1), net.now).__class__.__name__
        == "Refused"
    )
    net._flush(node)
    net.run_for(3.0)
    assert [d.payload for d in net.nodes[NodeId(2)].take_delivered()] == [b"hello"]


def test_partition_each_side_sees_its_side_then_heals() -> None:
    net = SwimNet(seed=61)
    n = 16
    net.bootstrap(n)
    left = frozenset(NodeId(i) for i in range(n // 2))
    right = frozenset(NodeId(i) for i in range(n // 2, n))
    net.partition(left, right)
    net.run_until_true(
        lambda: all(m.reachable() == (left if m.id in left else right) for m in net.live()), 120.0
    )
    report = net.nodes[NodeId(0)].reachability_report(net.now, 120.0)
    assert report.reachable == left
    assert report.lost == right
    net.heal()
    everyone = left | right
    took = net.run_until_true(lambda: all(m.reachable() == everyone for m in net.live()), 180.0)
    report = net.nodes[NodeId(0)].reachability_report(net.now, took + 1.0)
    assert report.reachable == everyone
    assert report.regained == right
    print(json.dumps({"n": n, "heal_s": round(took, 2)}))


def test_adaptive_fanout_grows_with_observed_loss() -> None:
    net = SwimNet(seed=71, loss=0.3)
    net.bootstrap(10, SwimConfig(suspicion_alpha=20.0))
    net.run_for(40.0)
    node = net.nodes[NodeId(0)]
    assert node.observed_loss() > 0.2
    assert node.effective_fanout() > node.config.fanout
    assert node.effective_retransmit_mult() > node.config.retransmit_mult
    quiet = SwimNet(seed=71)
    quiet.bootstrap(10)
    quiet.run_for(20.0)
    assert quiet.nodes[NodeId(0)].effective_fanout() == quiet.nodes[NodeId(0)].config.fanout


def test_same_seed_same_history() -> None:
    def run() -> list[tuple[int, int, int, float]]:
        net = SwimNet(seed=81, loss=0.05)
        net.bootstrap(10)
        net.kill(2)
        net.run_for(20.0)
        return [
            (e.member, int(e.state), e.incarnation, e.at)
            for e in net.nodes[NodeId(0)].take_events()
        ]

    assert run() == run()


@pytest.mark.slow
def test_lifeguard_cuts_false_suspicions_of_slow_members() -> None:
    """Lifeguard §V's comparison in small: 32 members, three of them slow
    (0.8 s each way), 15% loss, 120 s, three seeds; with and without Lifeguard."""
    results = {}
    for lifeguard in (True, False):
        false_dead = suspects = 0
        for seed in range(3):
            net = SwimNet(seed=seed, loss=0.15)
            net.bootstrap(32, SwimConfig(lifeguard=lifeguard))
            for m in net.nodes.values():
                m.take_events()
            for s in (3, 9, 17):
                net.slow[NodeId(s)] = 0.8
            net.run_for(120.0)
            events = [e for m in net.live() for e in m.take_events()]
            false_dead += sum(e.state is MemberState.DEAD for e in events)
            suspects += sum(e.state is MemberState.SUSPECT for e in events)
        results[lifeguard] = (false_dead, suspects)
        print(
            json.dumps(
                {
                    "lifeguard": lifeguard,
                    "false_dead_events": false_dead,
                    "suspect_events": suspects,
                }
            )
        )
    assert results[True][0] == 0
    assert results[True][1] < results[False][1]
