"""The quorum manager: a sans-IO state machine that turns observations into
configuration changes, one at a time, and takes back the ones that hurt.

Theory of operation
-------------------
A runtime feeds the manager and carries out what it decides:

- ``observe(observations, now)``: the latest measurements
  (``quorate.quorum.observations``);
- ``record_op(now, ok, latency_s)``: each client operation that finished
  (its commit latency, or a failure), for the windows below;
- ``configuration(view, leader, now)``: the configuration in force and who
  leads (``quorate.core.binding.MembershipView``);
- ``outcome(accepted, reason, now)``: what the leader answered a proposal;
- ``decide(now)``: ``None`` or a ``Decision`` (a change, a rollback, a
  leadership transfer) for the runtime to propose through consensus.

Phases (one change at a time, never two):

1. **idle** — every ``interval_s`` the strategy plans from the latest
   observations, nodes that a trend says are degrading excluded. A plan is
   proposed when it differs from the configuration in force and either a
   current voter is down or degrading, or the strategy's cost of the plan
   beats the cost of the current configuration by ``min_gain`` (a share of
   it): hysteresis, so noise does not reconfigure the cluster. Nothing is
   planned while a joint configuration is in force, nor within
   ``cooldown_s`` of the last change, nor a plan rolled back less than
   ``reject_for_s`` ago. The commit latency and availability of the last
   ``window_s`` become the *baseline*.
2. **applying** — until the configuration in force is the plan's (joint
   configuration left), or ``apply_timeout_s`` passes (then back to idle).
   A refused proposal ends it at once.
3. **observing** — for ``window_s`` after the change is in force; first the
   leadership goes to the plan's preferred leader if another node leads.
   Then the window is compared with the baseline: when both saw at least
   ``min_window_ops`` operations and the availability (operations answered,
   out of all that finished) fell by more than
   ``rollback_availability_drop`` or, for a strategy that aims at speed
   (``Strategy.judged_on_latency``), the median commit latency grew by more
   than ``rollback_latency_ratio``, the change is rolled back (the previous
   configuration is proposed again, through consensus like any change). A
   fault-tolerance change is expected to cost latency: only availability
   judges it.

Prediction: each node's median RTT to the others, probe loss and CPU load
are kept over the last ``trend_samples`` observations; a least-squares line
through each, projected ``trend_horizon_s`` ahead, that crosses
``degraded_rtt_ratio`` x the cluster's median RTT, ``degraded_loss`` or
``degraded_cpu_load`` (or a node already past them) marks the node
*degrading*. Strategies never choose it as a voter, so a voter on its way
out is replaced before it fails.

Every decision and judgement is appended to ``events`` (simulated or real
time, kind, detail) for reports.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any

from quorate.core.binding import MEMBERSHIP_TRANSITIONS, MembershipChange, MembershipView
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.quorum.observations import Observations
from quorate.quorum.plan import QuorumPlan, plan_change
from quorate.quorum.strategies import StrategyParams, strategy

IDLE = "idle"
APPLYING = "applying"
OBSERVING = "observing"
MIN_RTT_MS = 1.0
"""Floor of the cluster median RTT in the degradation test (a LAN's RTT is
noise around nothing)."""
MAX_OPS_KEPT = 100_000
"""Operation samples kept for the windows (oldest dropped first)."""


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    """How the manager behaves (see the module docstring). Durations in seconds."""

    strategy: str = "hybrid"
    params: StrategyParams = field(default_factory=StrategyParams)
    interval_s: float = 2.0
    window_s: float = 5.0
    cooldown_s: float = 5.0
    apply_timeout_s: float = 10.0
    min_gain: float = 0.1
    rollback_latency_ratio: float = 1.25
    rollback_availability_drop: float = 0.05
    min_window_ops: int = 20
    trend_samples: int = 4
    trend_horizon_s: float = 10.0
    degraded_rtt_ratio: float = 3.0
    degraded_loss: float = 0.3
    degraded_cpu_load: float = 0.9
    reject_for_s: float = 60.0
    transition: str = "auto"

    def validate(self) -> ManagerSettings:
        """Raise ``ConfigError`` naming the first bad setting; return self."""
        strategy(self.strategy)
        problem = self.params.problem()
        if problem is not None:
            raise ConfigError(problem)
        for name in ("interval_s", "window_s", "apply_timeout_s", "trend_horizon_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be > 0 seconds, got {value}")
        for name in ("cooldown_s", "min_gain", "rollback_availability_drop", "reject_for_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if not self.rollback_latency_ratio >= 1.0:
            raise ConfigError(f"rollback_latency_ratio must be >= 1, got {self.rollback_latency_ratio}")
        if self.trend_samples < 2:
            raise ConfigError(f"trend_samples must be >= 2, got {self.trend_samples}")
        if self.min_window_ops < 1:
            raise ConfigError(f"min_window_ops must be >= 1, got {self.min_window_ops}")
        if self.transition not in MEMBERSHIP_TRANSITIONS:
            raise ConfigError(
                f"transition must be one of {', '.join(MEMBERSHIP_TRANSITIONS)}, got {self.transition!r}"
            )
        return self


@dataclass(frozen=True, slots=True)
class Decision:
    """What the runtime should propose now."""

    kind: str
    """``change``, ``rollback`` or ``transfer``."""
    reason: str
    change: MembershipChange | None = None
    target: NodeId | None = None
    """The new leader of a ``transfer``."""
    plan: QuorumPlan | None = None


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """Client operations that finished in a window."""

    ops: int
    ok: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def availability(self) -> float | None:
        return self.ok / self.ops if self.ops else None

    def to_json(self) -> dict[str, Any]:
        return {"ops": self.ops, "ok": self.ok, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "availability": self.availability}


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over t (0 for fewer than two distinct times)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    den = sum((t - mean_t) ** 2 for t, _ in points)
    if den == 0:
        return 0.0
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / den


def _percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _signature(voters: Sequence[NodeId], election: int, commit: int) -> tuple[tuple[int, ...], int, int]:
    return tuple(sorted(int(v) for v in voters)), election, commit


class QuorumManager:
    """See the module docstring."""

    def __init__(self, settings: ManagerSettings) -> None:
        self.settings = settings.validate()
        self._strategy = strategy(settings.strategy)
        self.phase = IDLE
        self.events: list[dict[str, Any]] = []
        self._obs: Observations | None = None
        self._view: MembershipView | None = None
        self._leader: NodeId | None = None
        self._ops: deque[tuple[float, bool, float | None]] = deque(maxlen=MAX_OPS_KEPT)
        self._trends: dict[NodeId, deque[tuple[float, float, float, float]]] = {}
        self._next_plan_at = 0.0
        self._since = 0.0
        self._target: tuple[tuple[int, ...], int, int] | None = None
        self._applying_kind = "change"
        self._plan: QuorumPlan | None = None
        self._previous: MembershipView | None = None
        self._baseline: WindowMetrics | None = None
        self._rejected: dict[tuple[tuple[int, ...], int, int], float] = {}
        self._degrading_since: dict[NodeId, float] = {}

    # ------------------------------------------------------------ inputs
    def observe(self, observations: Observations, now: float) -> None:
        observations.check()
        self._obs = observations
        keep = self.settings.trend_samples
        for node, o in observations.nodes.items():
            trend = self._trends.get(node)
            if trend is None:
                trend = self._trends[node] = deque(maxlen=keep)
            if o.alive:
                trend.append((now, observations.centrality_ms(node), o.loss, o.cpu_load))

    def record_op(self, now: float, ok: bool, latency_s: float | None) -> None:
        self._ops.append((now, ok, latency_s))

    def configuration(self, view: MembershipView, leader: NodeId | None, now: float) -> None:
        self._view = view
        self._leader = leader

    def outcome(self, accepted: bool, reason: str, now: float) -> None:
        """The leader's answer to the last change or rollback proposed."""
        if accepted or self.phase != APPLYING:
            return
        self._log(now, "refused", reason)
        self.phase = IDLE
        self._next_plan_at = now + self.settings.interval_s

    # ------------------------------------------------------------ judgements
    def metrics(self, start: float, end: float) -> WindowMetrics:
        """Operations that finished in [start, end)."""
        latencies = []
        ops = ok = 0
        for at, success, latency in self._ops:
            if start <= at < end:
                ops += 1
                if success:
                    ok += 1
                    if latency is not None:
                        latencies.append(latency * 1e3)
        latencies.sort()
        if not latencies:
            return WindowMetrics(ops, ok, None, None)
        return WindowMetrics(ops, ok, round(_percentile(latencies, 0.5), 3), round(_percentile(latencies, 0.99), 3))

    def degrading(self, now: float) -> frozenset[NodeId]:
        """Nodes whose trend crosses a threshold within the horizon (see the module docstring)."""
        s = self.settings
        latest = [trend[-1][1] for trend in self._trends.values() if trend]
        if not latest:
            return frozenset()
        rtt_limit = s.degraded_rtt_ratio * max(MIN_RTT_MS, float(median(latest)))
        out = set()
        for node, trend in self._trends.items():
            if len(trend) < 2:
                continue
            for column, limit in ((1, rtt_limit), (2, s.degraded_loss), (3, s.degraded_cpu_load)):
                points = [(sample[0], sample[column]) for sample in trend]
                last = points[-1][1]
                projected = last + max(0.0, _slope(points)) * s.trend_horizon_s
                if last > limit or (len(trend) >= s.trend_samples and projected > limit):
                    out.add(node)
                    break
        for node in out - set(self._degrading_since):
            self._degrading_since[node] = now
            self._log(now, "degrading", f"node {node}'s trend crosses a threshold")
        for node in set(self._degrading_since) - out:
            del self._degrading_since[node]
        return frozenset(out)

    # ------------------------------------------------------------ deciding
    def decide(self, now: float) -> Decision | None:
        obs = self._obs
        view = self._view
        if obs is None or view is None:
            return None
        if self.phase == APPLYING:
            return self._while_applying(view, now)
        if self.phase == OBSERVING:
            return self._while_observing(view, now)
        if now < self._next_plan_at:
            return None
        s = self.settings
        self._next_plan_at = now + s.interval_s
        if view.joint:
            return None
        degrading = self.degrading(now)
        params = replace(s.params, degrading=degrading)
        plan = self._strategy.plan(obs, params)
        if plan.problem() is not None:
            self._log(now, "invalid-plan", str(plan.problem()))
            return None
        signature = _signature(plan.voters, plan.election_quorum, plan.commit_quorum)
        if self._rejected.get(signature, -math.inf) > now:
            return None
        change = plan_change(plan, view, s.transition)
        if change is None:
            return self._placement(plan, view, now)
        unhealthy = [v for v in view.voters if v in degrading or v not in obs.nodes or not obs.nodes[v].alive]
        cost_now = self._strategy.cost(obs, view.voters, view.election_quorum, view.commit_quorum, params)
        cost_plan = self._strategy.cost(obs, plan.voters, plan.election_quorum, plan.commit_quorum, params)
        gain = cost_now - cost_plan
        if not unhealthy and not gain > s.min_gain * abs(cost_now):
            return None
        reason = (
            f"voters {sorted(unhealthy)} down or degrading" if unhealthy else f"cost {cost_now:.3f} -> {cost_plan:.3f}"
        )
        self._start(APPLYING, now, signature, "change", plan, view)
        self._log(now, "change", f"{reason}; voters {list(map(int, plan.voters))} Q1={plan.election_quorum} Q2={plan.commit_quorum}")
        return Decision("change", reason, change, None, plan)

    def _placement(self, plan: QuorumPlan, view: MembershipView, now: float) -> Decision | None:
        """A transfer when the plan's leader would commit clearly faster."""
        obs = self._obs
        leader = self._leader
        target = plan.preferred_leader
        if obs is None or leader is None or target is None or leader == target or target not in view.voters:
            return None
        now_cost, target_cost = _leader_cost(obs, leader, view), _leader_cost(obs, target, view)
        if not now_cost > target_cost * (1 + self.settings.min_gain) + MIN_RTT_MS:
            return None
        reason = f"leader {leader} -> {target}: estimated commit {now_cost:.1f} -> {target_cost:.1f} ms"
        self._log(now, "transfer", reason)
        return Decision("transfer", reason, None, target, plan)

    def _start(
        self,
        phase: str,
        now: float,
        signature: tuple[tuple[int, ...], int, int],
        kind: str,
        plan: QuorumPlan | None,
        view: MembershipView,
    ) -> None:
        self.phase = phase
        self._since = now
        self._target = signature
        self._applying_kind = kind
        if kind == "change":
            self._plan = plan
            self._previous = view
            self._baseline = self.metrics(now - self.settings.window_s, now)

    def _while_applying(self, view: MembershipView, now: float) -> Decision | None:
        s = self.settings
        applied = not view.joint and _signature(view.voters, view.election_quorum, view.commit_quorum) == self._target
        if not applied:
            if now - self._since > s.apply_timeout_s:
                self._log(now, "timeout", f"not in force after {s.apply_timeout_s} s")
                self.phase = IDLE
                self._next_plan_at = now + s.cooldown_s
            return None
        if self._applying_kind == "rollback":
            self._log(now, "rolled-back", "the previous configuration is in force")
            self.phase = IDLE
            self._next_plan_at = now + s.cooldown_s
            return None
        self._log(now, "applied", "the planned configuration is in force")
        self.phase = OBSERVING
        self._since = now
        plan = self._plan
        if plan is not None and plan.preferred_leader is not None and self._leader != plan.preferred_leader:
            reason = f"leadership to the plan's preferred leader {plan.preferred_leader}"
            self._log(now, "transfer", reason)
            return Decision("transfer", reason, None, plan.preferred_leader, plan)
        return None

    def _while_observing(self, view: MembershipView, now: float) -> Decision | None:
        s = self.settings
        if now - self._since < s.window_s:
            return None
        after = self.metrics(self._since, now)
        before = self._baseline
        self._next_plan_at = now + s.cooldown_s
        worse = judge_window(before, after, s, self._strategy.judged_on_latency)
        if worse is None or self._previous is None or self._plan is None:
            self._log(now, "kept", f"after {after.to_json()} vs before {before.to_json() if before else None}")
            self.phase = IDLE
            return None
        plan = self._plan
        self._rejected[_signature(plan.voters, plan.election_quorum, plan.commit_quorum)] = now + s.reject_for_s
        previous = self._previous
        back = QuorumPlan(
            "rollback",
            previous.voters,
            previous.learners,
            previous.election_quorum,
            previous.commit_quorum,
        )
        change = plan_change(back, view, s.transition)
        if change is None:
            self.phase = IDLE
            return None
        signature = _signature(previous.voters, previous.election_quorum, previous.commit_quorum)
        self._start(APPLYING, now, signature, "rollback", None, view)
        self._log(now, "rollback", worse)
        return Decision("rollback", worse, change, None, back)

    def _log(self, now: float, event: str, detail: str) -> None:
        self.events.append({"time_s": round(now, 6), "event": event, "detail": detail})


def _leader_cost(obs: Observations, leader: NodeId, view: MembershipView) -> float:
    """Estimated commit latency (ms) with ``leader`` leading ``view``'s voters."""
    others = sorted(obs.rtt_or_unreachable(leader, v) for v in view.voters if v != leader)
    acks = view.commit_quorum - 1
    replicate = others[acks - 1] if 1 <= acks <= len(others) else 0.0
    return obs.client_distance_ms(leader) + replicate


def judge_window(
    before: WindowMetrics | None, after: WindowMetrics, s: ManagerSettings, judge_latency: bool
) -> str | None:
    """Why ``after`` is worse than ``before`` (None if it is not, or if either
    window saw too few operations to tell): the manager's rollback rule, also
    used by ``quorate quorum apply --judge``."""
    if before is None or before.ops < s.min_window_ops or after.ops < s.min_window_ops:
        return None
    if (
        judge_latency
        and before.p50_ms is not None
        and after.p50_ms is not None
        and after.p50_ms > before.p50_ms * s.rollback_latency_ratio
    ):
        return f"median commit latency {before.p50_ms} -> {after.p50_ms} ms"
    a_before, a_after = before.availability, after.availability
    if a_before is not None and a_after is not None and a_after < a_before - s.rollback_availability_drop:
        return f"availability {a_before:.3f} -> {a_after:.3f}"
    return None
