"""Configuration changes in the simulator: measuring the nodes, the quorum
manager, a starting voter set, and random joint changes for chaos sweeps.

Theory of operation
-------------------
``QuorumControl`` is one periodic event of the run (every
``CONTROL_INTERVAL_S``), added only when a run asks for one of its modes, so
a run without them keeps its event trace.

- **Measuring**, as a runtime's transport would: every period each live node
  probes every other node once. A probe from a to b takes the network's
  one-way latency both ways plus jitter, waits behind what is queued on each
  sender's link and on the answering node's CPU (a slow or saturated node
  answers late), and is lost when either node is down, a partition or cut
  separates them, or with the network's loss probability. Probes draw from
  their own random stream and schedule no events: measuring changes nothing
  in the run. Per node, over the last ``WINDOW_PERIODS`` periods: the RTT to
  each peer (an exponentially weighted mean, weight ``RTT_EWMA_WEIGHT``),
  the share of its probes lost, the share of periods it was up, its CPU's
  busy share. Clients' regions come from where the run placed them.
- **Applying**: a change goes to the current leader (the live node whose
  core leads the highest term) through its binding's ``membership`` role, as
  an operator's request reaching that node (``SimNode.run_local``). Nothing
  here knows which protocol runs.
- **Modes** (``SimConfig``):
  ``voters`` (and ``quorum``): once a leader exists, the cluster moves to
  those voters (the other nodes become learners) and quorum sizes, retried
  until in force; ``quorum_manager``: a ``quorate.quorum.QuorumManager`` with
  that strategy gets observations every ``OBSERVE_EVERY`` periods and every
  finished client operation, and its decisions are proposed as they come;
  ``reconfigure_every_s``: until the heal, a random change (a random voter
  set, the rest learners or removed, random flexible quorum sizes, a random
  transition; or leaving an explicit joint configuration) is proposed that
  often, for chaos sweeps of joint consensus.

What happened is reported in ``SimResult.quorum``: every proposal with its
outcome, the manager's events, and the configuration in force at the end.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from quorate.core.binding import Binding, MembershipChange, MembershipView
from quorate.core.host import HostedGroup
from quorate.core.protocol import Accepted, ProposeOutcome
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.quorum import (
    ManagerSettings,
    NodeObservation,
    Observations,
    QuorumManager,
    StrategyParams,
)
from quorate.runtime.sim.engine import EventLoop
from quorate.runtime.sim.network import Network
from quorate.runtime.sim.node import SimNode

CONTROL_INTERVAL_S = 0.5
"""Between two probe rounds (and control decisions)."""
OBSERVE_EVERY = 2
"""Probe rounds per observation handed to the manager."""
WINDOW_PERIODS = 10
"""Periods the loss, uptime and CPU shares are measured over."""
RTT_EWMA_WEIGHT = 0.3
"""Weight of the newest probe in a peer's RTT."""
TRANSITIONS = ("auto", "joint", "joint_explicit")


class QuorumControl:
    """See the module docstring."""

    def __init__(
        self,
        *,
        loop: EventLoop,
        network: Network,
        nodes: Sequence[SimNode],
        binding: Binding,
        leader_term: Callable[[Any], int | None],
        rng: random.Random,
        region_of: Sequence[int],
        client_regions: Sequence[int],
        end_s: float,
        voters: Sequence[int] = (),
        quorum: tuple[int, int] | None = None,
        manager: ManagerSettings | None = None,
        reconfigure_every_s: float = 0.0,
        reconfigure_until_s: float | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        membership = binding.membership
        if membership is None:
            raise ConfigError(f"protocol {binding.name!r} has no membership changes; quorum control needs raft")
        self.membership = membership
        self.loop = loop
        self.network = network
        self.nodes = nodes
        self.leader_term = leader_term
        self.rng = rng
        self.region_of = list(region_of)
        self.end_s = end_s
        ids = {node.id for node in nodes}
        self.target_voters = tuple(sorted(NodeId(v) for v in voters))
        if any(v not in ids for v in self.target_voters):
            raise ConfigError(f"voters must be node ids of the run ({min(ids)}..{max(ids)}), got {list(voters)}")
        n = len(nodes)
        self.target_quorum = quorum
        self.pending_start = bool(self.target_voters) or quorum is not None
        self.manager = QuorumManager(manager) if manager is not None else None
        self.reconfigure_every_s = reconfigure_every_s
        self.reconfigure_until_s = reconfigure_until_s
        self.next_random_s = reconfigure_every_s
        self.history = history
        self.history_at = 0
        self.invoked: dict[int, float] = {}
        shares: dict[str, float] = {}
        for region in client_regions:
            shares[f"r{region}"] = shares.get(f"r{region}", 0.0) + 1.0
        self.client_regions = shares
        self.rtt_ms: list[dict[int, float]] = [{} for _ in range(n)]
        self.probes: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        """Per node, per period: (probes sent, probes answered)."""
        self.up: list[list[bool]] = [[] for _ in range(n)]
        self.busy: list[list[float]] = [[] for _ in range(n)]
        self.work_seen = [0.0] * n
        self.ticks = 0
        self.proposals: list[dict[str, Any]] = []
        self.kind = loop.add_kind(self._on_tick)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.loop.schedule(CONTROL_INTERVAL_S, self.kind, -1, -1, None, 0)

    def _on_tick(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        now = event[0]
        self.ticks += 1
        self._probe(now)
        leader = self._leader()
        if self.manager is not None:
            self._feed_ops()
            if self.ticks % OBSERVE_EVERY == 0:
                self.manager.observe(self.observations(), now)
        if leader is not None:
            if self.pending_start:
                self._start_voters(leader, now)
            elif self.manager is not None:
                self._manage(leader, now)
            if self.reconfigure_every_s and now >= self.next_random_s:
                self.next_random_s = now + self.reconfigure_every_s
                if self.reconfigure_until_s is None or now < self.reconfigure_until_s:
                    self._random_change(leader, now)
        if now + CONTROL_INTERVAL_S <= self.end_s:
            self.loop.schedule(now + CONTROL_INTERVAL_S, self.kind, -1, -1, None, 0)

    # ------------------------------------------------------------ measuring
    def _probe(self, now: float) -> None:
        nodes = self.nodes
        net = self.network
        rng = self.rng
        n = len(nodes)
        for a in range(n):
            node = nodes[a]
            self.up[a].append(node.alive)
            spent = node.work_s - self.work_seen[a]
            self.work_seen[a] = node.work_s
            self.busy[a].append(min(1.0, max(0.0, spent / CONTROL_INTERVAL_S)))
            for series in (self.up[a], self.busy[a]):
                del series[:-WINDOW_PERIODS]
            if not node.alive:
                continue
            sent = answered = 0
            for b in range(n):
                if b == a:
                    continue
                sent += 1
                rtt = self._probe_once(a, b, now, net, rng)
                if rtt is None:
                    continue
                answered += 1
                known = self.rtt_ms[a].get(b)
                rtt_ms = rtt * 1e3
                self.rtt_ms[a][b] = rtt_ms if known is None else known + RTT_EWMA_WEIGHT * (rtt_ms - known)
            self.probes[a].append((sent, answered))
            del self.probes[a][:-WINDOW_PERIODS]

    def _probe_once(self, a: int, b: int, now: float, net: Network, rng: random.Random) -> float | None:
        """One probe from the node at position ``a`` to the one at ``b`` (its
        RTT in seconds, or None if lost); the network knows them by node id."""
        nodes = self.nodes
        src, dst = nodes[a].id, nodes[b].id
        if not nodes[b].alive or not net.connected(src, dst) or not net.connected(dst, src):
            return None
        if net.loss and (rng.random() < net.loss or rng.random() < net.loss):
            return None
        region = self.region_of
        there = net.latency_s[region[a]][region[b]] + rng.random() * net.jitter_s
        back = net.latency_s[region[b]][region[a]] + rng.random() * net.jitter_s
        queued_out = max(0.0, net.link_free_at[src] - now)
        arrive = now + queued_out + there
        answering = nodes[b]
        served = max(arrive, answering.busy_until) + answering.cost.tick_s * answering.cpu_factor
        queued_back = max(0.0, net.link_free_at[dst] - served)
        return served + queued_back + back - now

    def observations(self) -> Observations:
        out = {}
        nodes = self.nodes
        for a, node in enumerate(nodes):
            sent = sum(s for s, _ in self.probes[a])
            answered = sum(r for _, r in self.probes[a])
            up = self.up[a]
            out[node.id] = NodeObservation(
                node.id,
                f"r{self.region_of[a]}",
                {nodes[b].id: round(ms, 3) for b, ms in self.rtt_ms[a].items() if nodes[b].alive},
                loss=1.0 - answered / sent if sent else (0.0 if node.alive else 1.0),
                uptime=sum(up) / len(up) if up else 1.0,
                cpu_load=sum(self.busy[a]) / len(self.busy[a]) if self.busy[a] else 0.0,
                alive=node.alive,
            )
        return Observations(out, self.client_regions)

    def _feed_ops(self) -> None:
        manager = self.manager
        history = self.history
        if manager is None or history is None:
            return
        invoked = self.invoked
        for event in history[self.history_at :]:
            kind = event["type"]
            process = event["process"]
            if kind == "invoke":
                invoked[process] = event["time"]
            else:
                # An answer (ok, or a compare-and-set that found another
                # value) is availability; only a timeout ("info") is not.
                start = invoked.pop(process, None)
                answered = kind != "info"
                latency = event["time"] - start if answered and start is not None else None
                manager.record_op(event["time"], answered, latency)
        self.history_at = len(history)

    # ------------------------------------------------------------ applying
    def _leader(self) -> SimNode | None:
        best: tuple[int, SimNode] | None = None
        for node in self.nodes:
            core = node.core if node.alive else None
            if core is None:
                continue
            term = self.leader_term(core)
            if term is not None and (best is None or term > best[0]):
                best = (term, node)
        return None if best is None else best[1]

    def _view(self, leader: SimNode) -> MembershipView:
        core = leader.core
        assert core is not None
        return self.membership.configuration(core)

    def _propose(self, leader: SimNode, change: MembershipChange, now: float, why: str) -> ProposeOutcome | None:
        membership = self.membership

        def act(group: HostedGroup, local: float) -> ProposeOutcome:
            return membership.change(group.core, change, b"", local)

        outcome: ProposeOutcome | None = leader.run_local(now, act)
        self.proposals.append(
            {
                "time_s": round(now, 6),
                "why": why,
                "leader": int(leader.id),
                "add": [int(v) for v in change.add],
                "remove": [int(v) for v in change.remove],
                "add_learners": [int(v) for v in change.add_learners],
                "quorum": list(change.quorum) if change.quorum is not None else None,
                "transition": change.transition,
                "outcome": type(outcome).__name__ if outcome is not None else None,
                "reason": getattr(outcome, "reason", ""),
            }
        )
        return outcome

    def _start_voters(self, leader: SimNode, now: float) -> None:
        view = self._view(leader)
        target = self.target_voters or view.voters
        sizes = self.target_quorum
        in_force = (
            not view.joint
            and tuple(view.voters) == tuple(target)
            and (sizes is None or sizes == (view.election_quorum, view.commit_quorum))
        )
        if in_force:
            self.pending_start = False
            return
        core = leader.core
        if view.joint or core is None or self.membership.busy(core):
            return
        change = MembershipChange(
            add=tuple(v for v in target if v not in view.voters),
            add_learners=tuple(v for v in view.voters if v not in target),
            quorum=sizes,
        )
        self._propose(leader, change, now, "starting voters")

    def _manage(self, leader: SimNode, now: float) -> None:
        manager = self.manager
        assert manager is not None
        manager.configuration(self._view(leader), leader.id, now)
        decision = manager.decide(now)
        if decision is None:
            return
        if decision.kind == "transfer":
            target = decision.target
            assert target is not None
            membership = self.membership
            leader.run_local(now, lambda group, local: membership.transfer_leadership(group.core, target, local))
            return
        assert decision.change is not None
        outcome = self._propose(leader, decision.change, now, decision.kind)
        accepted = isinstance(outcome, Accepted)
        manager.outcome(accepted, getattr(outcome, "reason", "no leader"), now)

    def _random_change(self, leader: SimNode, now: float) -> None:
        rng = self.rng
        view = self._view(leader)
        if view.joint:
            if not view.auto_leave and rng.random() < 0.7:
                self._propose(leader, MembershipChange(), now, "random leave")
            return
        n = len(self.nodes)
        everyone = [node.id for node in self.nodes]
        size = rng.choice([k for k in range(1, n + 1) for _ in range(1 if k < 3 else 3)])
        voters = sorted(rng.sample(everyone, size))
        members = set(view.voters) | set(view.learners)
        add_learners = []
        remove = []
        for node in everyone:
            if node in voters:
                continue
            if rng.random() < 0.5:
                add_learners.append(node)
            elif node in members:
                remove.append(node)
        quorum = None
        if rng.random() < 0.5:
            election = rng.randint(size // 2 + 1, size)
            quorum = (election, rng.randint(size + 1 - election, size))
        change = MembershipChange(
            add=tuple(v for v in voters if v not in view.voters),
            remove=tuple(v for v in remove if v in members),
            add_learners=tuple(v for v in add_learners if v not in view.learners),
            quorum=quorum,
            transition=rng.choice(TRANSITIONS),
        )
        if change.empty:
            return
        self._propose(leader, change, now, "random")

    # ------------------------------------------------------------ report
    def report(self) -> dict[str, Any]:
        leader = self._leader()
        final: dict[str, Any] | None = None
        if leader is not None:
            view = self._view(leader)
            final = {
                "leader": int(leader.id),
                "voters": [int(v) for v in view.voters],
                "learners": [int(v) for v in view.learners],
                "outgoing": [int(v) for v in view.outgoing],
                "election_quorum": view.election_quorum,
                "commit_quorum": view.commit_quorum,
            }
        accepted = sum(1 for p in self.proposals if p["outcome"] == "Accepted")
        return {
            "strategy": self.manager.settings.strategy if self.manager is not None else None,
            "proposals": len(self.proposals),
            "accepted": accepted,
            "changes": self.proposals,
            "manager_events": self.manager.events if self.manager is not None else [],
            "final": final,
        }


def parse_quorum(text: str) -> tuple[int, int]:
    """``Q1:Q2`` (election:commit) as two integers; ``ConfigError`` otherwise."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise ConfigError(f"quorum sizes are written Q1:Q2 (election:commit), got {text!r}") from None


def manager_settings(strategy: str, voters: int, failures: int) -> ManagerSettings:
    """The manager's settings for a simulated run (validated)."""
    return ManagerSettings(strategy=strategy, params=StrategyParams(voters=voters, failures=failures)).validate()
