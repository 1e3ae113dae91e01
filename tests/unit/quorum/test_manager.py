"""The quorum manager as a state machine: one change at a time, judged over a
window, rolled back when it hurt, and acting on trends before a node fails."""

from __future__ import annotations

import pytest
from tests.unit.quorum.observed import cluster

from quorate.core.binding import MembershipView
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.quorum import ManagerSettings, QuorumManager, StrategyParams

N = NodeId
ALL = tuple(N(i) for i in range(9))
SPREAD = MembershipView((N(0), N(1), N(2), N(3), N(4)), tuple(N(i) for i in range(5, 9)), (), 3, 3)
"""Five voters over three regions, majority quorums."""


def view_of(voters: tuple[int, ...], q: tuple[int, int], joint: bool = False) -> MembershipView:
    chosen = tuple(N(v) for v in sorted(voters))
    return MembershipView(chosen, tuple(n for n in ALL if n not in chosen), chosen if joint else (), q[0], q[1], True)


def ops(manager: QuorumManager, start: float, end: float, latency_s: float, ok: bool = True, per_s: int = 20) -> None:
    t = start
    while t < end:
        manager.record_op(t, ok, latency_s if ok else None)
        t += 1.0 / per_s


def test_a_network_plan_is_proposed_applied_kept_and_led_from_the_clients_region() -> None:
    m = QuorumManager(ManagerSettings(strategy="network", params=StrategyParams(voters=5, failures=1)))
    m.observe(cluster(), 0.0)
    m.configuration(SPREAD, N(1), 0.0)
    ops(m, 0.0, 10.0, 0.100)
    decision = m.decide(10.0)
    assert decision is not None and decision.kind == "change" and decision.change is not None
    assert decision.change.quorum == (4, 2) and set(decision.change.add) == {N(6)}
    assert m.decide(10.5) is None  # one change at a time
    # In force: the manager moves leadership to the clients' region.
    m.configuration(view_of((0, 1, 2, 3, 6), (4, 2)), N(1), 12.0)
    transfer = m.decide(12.0)
    assert transfer is not None and transfer.kind == "transfer" and transfer.target == N(0)
    ops(m, 12.0, 17.5, 0.002)
    assert m.decide(17.5) is None and m.phase == "idle"  # faster: kept
    assert [e["event"] for e in m.events] == ["change", "applied", "transfer", "kept"]


def test_a_change_that_made_commits_slower_is_rolled_back_and_not_retried() -> None:
    settings = ManagerSettings(strategy="network", window_s=5.0, cooldown_s=1.0, reject_for_s=30.0)
    m = QuorumManager(settings)
    m.observe(cluster(), 0.0)
    m.configuration(SPREAD, N(0), 0.0)
    ops(m, 0.0, 10.0, 0.050)
    decision = m.decide(10.0)
    assert decision is not None and decision.kind == "change"
    m.configuration(view_of((0, 1, 2, 3, 6), (4, 2)), N(0), 11.0)
    assert m.decide(11.0) is None  # applied; node 0 already leads
    ops(m, 11.0, 16.5, 0.200)  # what the observations promised did not happen
    rollback = m.decide(16.5)
    assert rollback is not None and rollback.kind == "rollback" and rollback.change is not None
    assert "median commit latency" in rollback.reason
    assert set(rollback.change.add) == {N(4)} and rollback.change.quorum == (3, 3)
    m.configuration(SPREAD, N(0), 18.0)
    assert m.decide(18.0) is None and m.phase == "idle"
    # The same plan is not proposed again while it is rejected...
    assert m.decide(20.0) is None
    # ... and may be once that expires.
    again = m.decide(16.5 + 30.0 + 0.1)
    assert again is not None and again.kind == "change"


def test_too_few_operations_to_judge_keep_the_change() -> None:
    m = QuorumManager(ManagerSettings(strategy="network", min_window_ops=50))
    m.observe(cluster(), 0.0)
    m.configuration(SPREAD, N(0), 0.0)
    ops(m, 0.0, 10.0, 0.050, per_s=2)
    assert m.decide(10.0) is not None
    m.configuration(view_of((0, 1, 2, 3, 6), (4, 2)), N(0), 11.0)
    m.decide(11.0)
    ops(m, 11.0, 17.0, 0.500, per_s=2)
    assert m.decide(17.0) is None and m.events[-1]["event"] == "kept"


def test_small_gains_do_not_reconfigure_the_cluster() -> None:
    m = QuorumManager(ManagerSettings(strategy="performance", params=StrategyParams(voters=5), min_gain=0.5))
    obs = cluster(cpu={0: 0.3})  # node 0 a little busier than the others
    m.observe(obs, 0.0)
    m.configuration(SPREAD, N(1), 0.0)
    assert m.decide(0.0) is None


def test_a_rising_trend_replaces_a_voter_before_it_fails() -> None:
    settings = ManagerSettings(
        strategy="hybrid", params=StrategyParams(voters=5), trend_samples=4, trend_horizon_s=10.0, min_gain=10.0
    )
    m = QuorumManager(settings)
    hybrid_view = view_of((0, 1, 2, 3, 4), (3, 3))
    m.configuration(hybrid_view, N(0), 0.0)
    decision = None
    # Node 3's CPU load climbs 10 points every 2 s from 0.3: still below 0.9
    # when the line through it crosses 0.9 within 10 s.
    for step in range(5):
        now = 2.0 * step
        m.observe(cluster(cpu={3: 0.3 + 0.1 * step}), now)
        decision = m.decide(now)
        if decision is not None:
            break
    assert decision is not None and decision.change is not None, m.events
    assert N(3) not in decision.plan.voters  # type: ignore[union-attr]
    assert "down or degrading" in decision.reason
    assert 0.3 + 0.1 * step < settings.degraded_cpu_load  # before it crossed
    assert any(e["event"] == "degrading" for e in m.events)


def test_nothing_is_planned_while_joint_or_after_a_refusal() -> None:
    m = QuorumManager(ManagerSettings(strategy="network", interval_s=1.0))
    m.observe(cluster(), 0.0)
    m.configuration(view_of((0, 1, 2, 3, 4), (3, 3), joint=True), N(0), 0.0)
    assert m.decide(0.0) is None
    m.configuration(SPREAD, N(0), 1.0)
    assert m.decide(1.0) is not None and m.phase == "applying"
    m.outcome(False, "a configuration change is still being committed", 1.1)
    assert m.phase == "idle" and m.events[-1]["event"] == "refused"
    assert m.decide(1.5) is None  # waits an interval
    assert m.decide(2.2) is not None


def test_a_change_not_in_force_in_time_is_given_up() -> None:
    m = QuorumManager(ManagerSettings(strategy="network", apply_timeout_s=3.0, cooldown_s=2.0))
    m.observe(cluster(), 0.0)
    m.configuration(SPREAD, N(0), 0.0)
    assert m.decide(0.0) is not None
    assert m.decide(2.0) is None and m.phase == "applying"
    assert m.decide(3.5) is None and m.phase == "idle" and m.events[-1]["event"] == "timeout"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ManagerSettings(strategy="nearest"), "unknown quorum strategy"),
        (ManagerSettings(window_s=0.0), "window_s"),
        (ManagerSettings(rollback_latency_ratio=0.5), "rollback_latency_ratio"),
        (ManagerSettings(transition="sometimes"), "transition"),
        (ManagerSettings(params=StrategyParams(failures=-1)), "failures"),
    ],
)
def test_bad_settings_are_refused(settings: ManagerSettings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        QuorumManager(settings)


def test_a_fault_tolerance_change_is_judged_on_availability_not_latency() -> None:
    m = QuorumManager(ManagerSettings(strategy="fault_tolerance", window_s=5.0))
    m.observe(cluster(), 0.0)
    latency_minded = view_of((0, 3, 6, 1, 4), (3, 3))  # region a holds a quorum's worth
    m.configuration(latency_minded, N(0), 0.0)
    ops(m, 0.0, 10.0, 0.003)
    decision = m.decide(10.0)
    assert decision is not None and decision.kind == "change" and decision.plan is not None
    spread = decision.plan.voters
    m.configuration(view_of(tuple(spread), (3, 3)), decision.plan.preferred_leader, 11.0)
    m.decide(11.0)
    ops(m, 11.0, 16.5, 0.100)  # slower, as spreading voters over regions is
    assert m.decide(16.5) is None and m.events[-1]["event"] == "kept"
    # ... but losing availability rolls it back.
    m2 = QuorumManager(ManagerSettings(strategy="fault_tolerance", window_s=5.0))
    m2.observe(cluster(), 0.0)
    m2.configuration(latency_minded, N(0), 0.0)
    ops(m2, 0.0, 10.0, 0.003)
    decision = m2.decide(10.0)
    assert decision is not None and decision.plan is not None
    m2.configuration(view_of(tuple(decision.plan.voters), (3, 3)), decision.plan.preferred_leader, 11.0)
    m2.decide(11.0)
    ops(m2, 11.0, 16.5, 0.003, ok=False)
    rollback = m2.decide(16.5)
    assert rollback is not None and rollback.kind == "rollback" and "availability" in rollback.reason
