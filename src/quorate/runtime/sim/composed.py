"""A composed system in the simulator: nodes hosting several kinds of groups, and agents.

Theory of operation. ``SystemSimulation`` runs a system whose nodes host
groups of more than one protocol (HRB: every node its shard's watched-Raft
group, some nodes the core's BFT group) and whose clients are *agents* that
speak the system's own language (transactions to a home shard), not the
key-value ``Workload`` of ``runtime.sim.cluster``. The runtime knows no
protocol: everything system-specific comes from a ``SystemModel`` handed in
at the edge (the CLI builds HRB's, ``quorate.hrb.simulation``), and the
model is sans-IO like a protocol core:

- ``initial_groups(node)`` / ``build_group(node, group, now, recovered)`` /
  ``unknown_group(node, sender, group, message, now)``: what a node hosts
  and how a group's core and service are built (fresh or after a restart);
- ``observe(group, now)``: called after every turn of every group (the
  model's online safety checks raise ``InvariantViolation``);
- agents: ``agent_receive(agent, sender, message, now)``,
  ``agent_tick(now)``, ``agent_wake_at()``, ``take_agent_sends()`` (what the
  agents send, as ``(agent, node, group, message)``), ``stop_agents(now)``;
- ``sample(now, alive)`` every ``SAMPLE_INTERVAL_S`` of simulated time (the
  model's timeline of detections, leaders, epochs);
- ``report(now, alive, group_messages)``: the model's part of the result
  (``group_messages``: how many messages of each type were sent on each group).

Everything else is the simulator's own, shared with ``runtime.sim.cluster``:
one ``EventLoop`` and ``Network`` (regions, latency, bandwidth, jitter),
``SimNode`` hosts with their disk, CPU and clock, the fault schedule
(``none``, ``chaos`` or a SPEC; ``apply_fault``), the progress slices, and
the ``trace_sha256`` of every event, so the same seed gives the same hash.
Nodes are 1..n and spread round robin over the regions; agents are the
endpoints n + 1 ... and are spread the same way.

Safety: an ``InvariantViolation`` from a monitor or a core stops the run and
is reported in ``safety_violations`` with its simulated time, never raised.
Phases (as ``sim raft``): faults until ``heal_at_s`` (chaos: everything then
healed and restarted), and ``recovered_after_s`` is how long after it the
first transaction invoked after the heal completed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from quorate.core.host import HostedGroup
from quorate.ids import NodeId
from quorate.runtime.sim.cluster import (
    SimConfig,
    add_node_kinds,
    apply_fault,
    build_network,
    run_slices,
    schedule_faults,
    stale_wakes,
)
from quorate.runtime.sim.engine import EventLoop
from quorate.runtime.sim.network import Network
from quorate.runtime.sim.node import Grouped, SimNode
from quorate.storage.base import Recovered

__all__ = ["SAMPLE_INTERVAL_S", "SystemModel", "SystemRun", "SystemSimulation"]

SAMPLE_INTERVAL_S = 0.05
"""How often the model samples its timeline (detections, leaders), simulated seconds."""
FSYNC_S = 0.002
"""The modelled disk's fsync, as the HRB tests use."""


class CountingNetwork(Network):
    """A ``Network`` that counts the messages sent on each group, by type
    (``group_messages[(group, type name)]``; a bare message is group 0)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group_messages: dict[tuple[int, str], int] = {}

    def send_all(self, src: int, messages: Iterable[tuple[int, Any]], depart_s: float) -> None:
        batch = messages if isinstance(messages, list | tuple) else list(messages)
        counts = self.group_messages
        for _, message in batch:
            if type(message) is Grouped:
                key = (message.group, type(message.message).__name__)
            else:
                key = (0, type(message).__name__)
            counts[key] = counts.get(key, 0) + 1
        super().send_all(src, batch, depart_s)


class SystemModel(Protocol):
    """What a composed system tells the simulator (see the module docstring)."""

    agents: int

    def initial_groups(self, node: NodeId) -> list[int]: ...

    def build_group(self, node: NodeId, group: int, now: float, recovered: Recovered | None) -> HostedGroup | None: ...

    def unknown_group(self, node: NodeId, sender: NodeId, group: int, message: Any, now: float) -> HostedGroup | None: ...

    def observe(self, group: HostedGroup, now: float) -> None: ...

    def agent_receive(self, agent: int, sender: int, message: Any, now: float) -> None: ...

    def agent_tick(self, now: float) -> None: ...

    def agent_wake_at(self) -> float | None: ...

    def take_agent_sends(self) -> list[tuple[int, int, int, Any]]: ...

    def stop_agents(self, now: float) -> None: ...

    def sample(self, now: float, alive: Sequence[bool]) -> None: ...

    def report(
        self, now: float, alive: Sequence[bool], group_messages: Mapping[tuple[int, str], int]
    ) -> dict[str, Any]: ...

    def liveness(self, heal_at_s: float) -> float | None: ...


@dataclass(slots=True)
class SystemRun:
    """What a run measured: the simulator's fields, then the model's."""

    fields: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.fields)


class SystemSimulation:
    """A built, not yet run, simulation of ``model`` under ``config``'s
    network, faults, duration and seed (``config.clients`` is ignored: the
    model's agents are the clients)."""

    def __init__(self, config: SimConfig, model: SystemModel, *, drain_s: float, name: str) -> None:
        self.config = config
        self.model = model
        self.name = name
        self.drain_s = drain_s
        self.loop = loop = EventLoop()
        n = config.nodes
        agents = model.agents
        self.replicas = tuple(NodeId(i) for i in range(1, n + 1))
        region_of = [0] + [i % config.regions for i in range(n)] + [a % config.regions for a in range(agents)]
        deliver_kinds = [0] * (1 + n + agents)
        self.network = build_network(CountingNetwork, config, loop, region_of, deliver_kinds)
        self.violations: list[dict[str, Any]] = []
        self.faults_injected = 0
        self.nodes: list[SimNode] = []
        for i in range(1, n + 1):
            node = SimNode(
                NodeId(i),
                group_factory=model.build_group,
                initial_groups=model.initial_groups(NodeId(i)),
                unknown_group=model.unknown_group,
                cost=config.cost,
                send=self.network.send,
                schedule=loop.schedule,
                wake_kind=-1,
                cpu_kind=-1,
                first_client_id=n + 1,
                monitor=model.observe,
                fsync_s=FSYNC_S,
            )
            add_node_kinds(loop, node, deliver_kinds)
            self.nodes.append(node)
        agent_kind = loop.add_kind(self._on_agent_message)
        for a in range(agents):
            deliver_kinds[n + 1 + a] = agent_kind
        self.network.deliver_kind_of = deliver_kinds
        self._agent_timer_kind = loop.add_kind(self._on_agent_timer)
        self._agent_timer_at: float | None = None
        self._agents_stopped = False
        self._sample_kind = loop.add_kind(self._on_sample)
        self._fault_kind = loop.add_kind(self._on_fault)
        self.schedule = config.fault_schedule()
        self.heal_at_s = config.effective_heal_at_s()

    # -- events -----------------------------------------------------------------------------------
    def _on_agent_message(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        now = event[0]
        message = event[5]
        if type(message) is Grouped:
            message = message.message
        self.model.agent_receive(event[3] - self.config.nodes - 1, event[4], message, now)
        self._flush_agents(now)

    def _on_agent_timer(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        now = event[0]
        if event[5] != self._agent_timer_at:
            return  # superseded by an earlier deadline
        self._agent_timer_at = None
        self.model.agent_tick(now)
        self._flush_agents(now)

    def _flush_agents(self, now: float) -> None:
        n = self.config.nodes
        send = self.network.send
        for agent, node, group, message in self.model.take_agent_sends():
            send(n + 1 + agent, node, Grouped(group, message) if group else message, now)
        wake = self.model.agent_wake_at()
        if wake is not None and (self._agent_timer_at is None or wake < self._agent_timer_at):
            at = max(wake, now)
            self._agent_timer_at = at
            self.loop.schedule(at, self._agent_timer_kind, -1, -1, at, 0)

    def _on_sample(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        now = event[0]
        self.model.sample(now, [node.alive for node in self.nodes])
        self.loop.schedule(now + SAMPLE_INTERVAL_S, self._sample_kind, -1, -1, None, 0)

    def _on_fault(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        self.faults_injected += 1
        apply_fault(event[5], event[0], self.nodes, self.network, self.replicas)

    def _start_agents(self, now: float) -> None:
        self.model.agent_tick(now)
        self._flush_agents(now)

    def _stop_agents(self, now: float) -> None:
        self.model.stop_agents(now)
        self._agents_stopped = True

    # -- running -----------------------------------------------------------------------------------
    def run(
        self,
        progress: Callable[[float, float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> SystemRun:
        config, loop, model = self.config, self.loop, self.model
        wall_start = clock()
        schedule_faults(loop, self.schedule, self._fault_kind)
        loop.schedule(SAMPLE_INTERVAL_S, self._sample_kind, -1, -1, None, 0)
        end_s = config.duration_s + self.drain_s
        violation = run_slices(
            loop, self.nodes, end_s, self._start_agents, progress, pause_at_s=config.duration_s, on_pause=self._stop_agents
        )
        if violation is not None:
            self.violations.append({"time_s": round(loop.now, 6), "message": str(violation)})
        wall = clock() - wall_start
        alive = [node.alive for node in self.nodes]
        if not self._agents_stopped:
            self._stop_agents(loop.now)
        report = model.report(loop.now, alive, self.network.group_messages)
        history = report.pop("history", [])
        stale = stale_wakes(self.nodes)
        events = loop.events - stale
        recovered_after_s = model.liveness(self.heal_at_s) if self.heal_at_s is not None else None
        fields: dict[str, Any] = {
            "protocol": self.name,
            "nodes": config.nodes,
            "regions": config.regions,
            "clients": model.agents,
            "seed": config.seed,
            "sim_seconds": round(loop.now, 6),
            "wall_seconds": round(wall, 6),
            "events": events,
            "events_per_second": round(events / wall, 1) if wall > 0 else 0.0,
            "stale_timer_events": stale,
            "faults_injected": self.faults_injected,
            "safety_violations": self.violations + report.pop("safety_violations", []),
            "trace_sha256": loop.trace_sha256(),
            "messages_sent": self.network.sent,
            "messages_dropped": self.network.dropped,
            "heal_at_s": self.heal_at_s,
            "recovered_after_s": recovered_after_s,
            "liveness_ok": None
            if self.heal_at_s is None
            else recovered_after_s is not None and recovered_after_s <= config.liveness_bound_s,
            **report,
        }
        return SystemRun(fields, history if config.record_history else [])
