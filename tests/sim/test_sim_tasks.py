"""The task queue under chaos in the simulator: every task completes exactly once.

Simulated agents (client endpoints driven by this test) submit a DAG of
tasks to a 5-replica Raft group, then claim, heartbeat and complete them
while the seed's chaos schedule crashes and restarts replicas, partitions
and slows the network. One agent dies holding a task; its lease runs out
and another agent completes the task. The dead agent comes back later and
tries to complete it with its old fencing token: refused. At the end every
live replica holds the same agent state, and each task has exactly one
accepted completion, by the holder of its last token.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from quorate.runtime.sim.cluster import SimConfig, Simulation
from quorate.runtime.sim.faults import FaultAction
from quorate.state.agents import (
    TaskClaim,
    TaskComplete,
    TaskHeartbeat,
    TaskList,
    TaskSpec,
    TaskSubmit,
)
from quorate.state.kv import decode_result, encode_op
from quorate.state.service import ClientReply, ClientRequest

NODES = 5
AGENTS = 4
TASKS = 30
LEASE_S = 1.5
REQUEST_TIMEOUT_S = 0.4
STEP_S = 0.02
CHAOS_UNTIL_S = 20.0
RUN_UNTIL_S = 60.0


@dataclass
class Agent:
    """One simulated agent: a session, one request outstanding, retried under the same seq."""

    endpoint: int
    name: str
    rng: random.Random
    seq: int = 0
    target: int = 1
    outstanding: tuple[int, Any, float] | None = None  # seq, op, sent at
    holding: dict[str, Any] | None = None
    work_until: float = 0.0
    next_heartbeat: float = 0.0
    dead: bool = False
    completions: list[tuple[str, int]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


class Swarm:
    def __init__(self, seed: int) -> None:
        self.sim = Simulation(
            SimConfig(
                protocol="raft", nodes=NODES, clients=AGENTS + 1, seed=seed, faults="chaos",
                duration_s=CHAOS_UNTIL_S / 0.6, check_invariants=True,
            )
        )
        loop = self.sim.loop
        for action in self.sim.schedule:
            if action.at_s < CHAOS_UNTIL_S:
                loop.schedule(action.at_s, self.sim._fault_kind, -1, -1, action, 0)
        for kind in ("heal", "restart-all"):
            loop.schedule(CHAOS_UNTIL_S, self.sim._fault_kind, -1, -1, FaultAction(CHAOS_UNTIL_S, kind), 0)
        self.agents = [
            Agent(NODES + 1 + i, f"agent-{i}", random.Random(seed * 100 + i)) for i in range(AGENTS + 1)
        ]
        kind = loop.add_kind(self._deliver)
        for agent in self.agents:
            self.sim.network.deliver_kind_of[agent.endpoint] = kind
        for node in self.sim.nodes:
            node.start(0.0)

    @property
    def now(self) -> float:
        return self.sim.loop.now

    def _deliver(self, event: tuple[Any, ...]) -> None:
        reply = event[5]
        if not isinstance(reply, ClientReply):
            return
        destination = event[3]  # (arrival, seq, kind, destination, source, message, size)
        agent = next(a for a in self.agents if a.endpoint == destination)
        self._on_reply(agent, reply)

    def send(self, agent: Agent, op: Any) -> None:
        agent.seq += 1
        agent.outstanding = (agent.seq, op, self.now)
        self._transmit(agent)

    def _transmit(self, agent: Agent) -> None:
        assert agent.outstanding is not None
        seq, op, _ = agent.outstanding
        agent.outstanding = (seq, op, self.now)
        request = ClientRequest(agent.endpoint * 1000, seq, encode_op(op))
        self.sim.network.send(agent.endpoint, agent.target, request, self.now)

    def _on_reply(self, agent: Agent, reply: ClientReply) -> None:
        if agent.outstanding is None or reply.seq != agent.outstanding[0]:
            return
        if reply.status == "redirect":
            agent.target = reply.leader if reply.leader else agent.rng.randint(1, NODES)
            self._transmit(agent)
            return
        if reply.status != "ok":
            agent.target = agent.rng.randint(1, NODES)
            self._transmit(agent)
            return
        _, op, _ = agent.outstanding
        agent.outstanding = None
        result = decode_result(reply.result)
        self._on_result(agent, op, result)

    def _on_result(self, agent: Agent, op: Any, result: Any) -> None:
        value = json.loads(result.value) if result.value else None
        if isinstance(op, TaskClaim) and result.ok and value and value["task"]:
            agent.holding = value["task"]
            agent.work_until = self.now + agent.rng.uniform(0.05, 0.6)
            agent.next_heartbeat = self.now + LEASE_S / 3
        elif isinstance(op, TaskComplete):
            if result.ok:
                agent.completions.append((op.task_id, op.token))
            else:
                agent.refusals.append(result.error)
            agent.holding = None
        elif isinstance(op, TaskHeartbeat) and not result.ok:
            agent.holding = None  # lost the lease: drop the work

    def step(self) -> None:
        for agent in self.agents:
            if agent.dead:
                continue
            if agent.outstanding is not None:
                if self.now - agent.outstanding[2] > REQUEST_TIMEOUT_S:
                    agent.target = agent.rng.randint(1, NODES)
                    self._transmit(agent)
                continue
            if agent.holding is None:
                if agent.endpoint != self.agents[-1].endpoint:  # the last agent only submits
                    self.send(agent, TaskClaim(agent.name, LEASE_S))
            elif self.now >= agent.work_until:
                task = agent.holding
                self.send(agent, TaskComplete(task["id"], task["token"], f"{task['id']} by {agent.name}"))
            elif self.now >= agent.next_heartbeat:
                agent.next_heartbeat = self.now + LEASE_S / 3
                self.send(agent, TaskHeartbeat(agent.holding["id"], agent.holding["token"], LEASE_S))
        self.sim.loop.run(self.now + STEP_S)

    def stores(self) -> list[Any]:
        return [n.replica.kv for n in self.sim.nodes if n.alive]  # type: ignore[union-attr]




def _tasks() -> tuple[TaskSpec, ...]:
    specs = []
    for i in range(TASKS):
        deps = tuple(f"t{j}" for j in (i - 1, i - 7) if j >= 0 and i % 3 == 0)
        specs.append(TaskSpec(f"task {i}", f"t{i}", priority=i % 4, dependencies=deps, max_attempts=20))
    return tuple(specs)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_task_completes_exactly_once_under_chaos(seed: int) -> None:
    swarm = Swarm(seed)
    submitter = swarm.agents[-1]
    swarm.send(submitter, TaskSubmit(_tasks()))
    victim = swarm.agents[0]
    stale: tuple[str, int] | None = None
    while swarm.now < RUN_UNTIL_S:
        swarm.step()
        if stale is None and victim.holding is not None and victim.outstanding is None and swarm.now > 2.0:
            # The victim dies holding a task: no heartbeat, no completion.
            victim.dead = True
            stale = (victim.holding["id"], victim.holding["token"])
        if stale is not None and victim.dead and swarm.now > CHAOS_UNTIL_S + 5:
            # ...and comes back long after its lease, trying to complete it.
            victim.dead = False
            victim.holding = None
            swarm.send(victim, TaskComplete(stale[0], stale[1], "late result"))
            stale = (stale[0], -stale[1])  # sent once
        done = all(_task_states(kv) == {"completed": TASKS} for kv in swarm.stores())
        if done and stale is not None and stale[1] < 0 and victim.outstanding is None:
            break
    assert swarm.sim.violations == [], swarm.sim.violations
    stores = swarm.stores()
    assert len(stores) == NODES  # chaos healed and every replica restarted
    for kv in stores:
        assert _task_states(kv) == {"completed": TASKS}, f"seed={seed}"
    # Exactly once: one accepted completion per task, by the holder of its last token.
    accepted: dict[str, list[tuple[str, int]]] = {}
    for agent in swarm.agents:
        for task_id, token in agent.completions:
            accepted.setdefault(task_id, []).append((agent.name, token))
    assert sorted(accepted) == sorted(f"t{i}" for i in range(TASKS))
    tasks = stores[0].agents.tasks.tasks
    for task_id, winners in accepted.items():
        assert len(set(winners)) == 1, (task_id, winners)
        name, token = winners[0]
        assert tasks[task_id].token == token and tasks[task_id].result == f"{task_id} by {name}"
    # The dead agent's stale completion was refused, with the reason.
    assert stale is not None and any("stale fencing token" in r or "already completed" in r for r in victim.refusals)
    assert tasks[stale[0]].attempts >= 2
    # Every replica holds the same agent state.
    snapshots = {kv.agents.snapshot() for kv in stores}
    assert len(snapshots) == 1, f"replicas disagree; reproduce with seed={seed}"


def _task_states(kv: Any) -> dict[str, int]:
    listing = kv.agents.read(TaskList(limit=1))
    counts = json.loads(listing.value)["counts"]
    return {state: n for state, n in counts.items() if n}
