"""Multi-Raft on real processes: puts across ranges against one Raft group, and idle ranges.

Theory of operation.

- ``compare_multiraft`` runs, in one invocation, the put benchmark of
  ``quorate.bench.real`` twice on the same machine with the same clients:
  first against one Raft group (every put in group 0), then against a
  multi-Raft cluster of ``groups`` ranges (each client process shares one
  range cache; each put goes to its key's range leader). Keys begin with
  four hex digits of their hash in both runs, so they spread over the
  ranges (``multiraft.descriptor.hex_split_keys``) and cost the same bytes
  in both. Before the load starts, every range has a leader and (within
  ``BALANCE_WAIT_S``) is led by its preferred replica, so no hand-over of
  leadership falls into the measured window. The report holds both runs and
  the ratios multi-Raft / single (throughput: higher is better; latency:
  lower is better), and each run's CPU milliseconds per put (nodes and
  clients) with the nodes' ratio; and, for each run's shape, what the
  Raft cores, node hosts and drivers alone cost per put in the benchmark's
  own process (``core_cost_per_put``: no codec, transport, storage or state
  machine), the floor of the protocol's share.
- ``idle_real`` starts a multi-Raft cluster of ``groups`` ranges and no
  clients, waits until every range has a leader and then ``settle_s``
  (quiescence: idle Raft groups stop heartbeating after
  ``quiesce_after_s``), and measures over ``duration_s`` each node
  process's CPU (``/proc/<pid>/stat``, as a percentage of one core) and the
  peer messages the nodes sent (their ``transport.messages_sent`` counters,
  read by ``Status`` before and after; a turn's messages to one peer share a
  frame, so ``transport.frames_sent`` may count fewer). The same is measured for a cluster of one
  Raft group (no ranges, no quiescence: the plain ``quorate cluster up``
  cluster) in the same invocation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from quorate.bench.puts import (
    RealBenchConfig,
    cpu_used,
    process_tree_cpu_seconds,
    wait_leader,
)
from quorate.bench.real import run_real_bench
from quorate.client.aio import AsyncClient
from quorate.core.host import GroupReady, HostedGroup, NodeHost
from quorate.core.ready import Entry, ReadState, Rejection
from quorate.ids import NodeId, node_name
from quorate.raft.config import RaftConfig
from quorate.raft.node import RaftNode
from quorate.runtime.aio.cluster import LocalCluster
from quorate.runtime.driver import HostDriver

__all__ = ["compare_multiraft", "core_cost_per_put", "cpu_ms_per_put", "idle_real", "wait_ranges"]

RANGES_WAIT_S = 120.0
"""How long a benchmark waits for every range to elect a leader (1,000 ranges start slowly)."""
BALANCE_WAIT_S = 30.0
"""How long a benchmark waits, once every range has a leader, for each to be led by its preferred replica."""
DEFAULT_SETTLE_S = 5.0
IDLE_RAFT_OPTIONS = {"election_timeout_s": 1.0, "heartbeat_interval_s": 0.1}
"""What ``quorate cluster up`` gives Raft nodes (``cli.cluster.cluster_options``)."""


async def wait_ranges(cluster: LocalCluster, timeout_s: float = RANGES_WAIT_S, *, settle_s: float = BALANCE_WAIT_S) -> int:
    """Wait until every one of the cluster's ranges has a leader, then up to
    ``settle_s`` more until each is led by its preferred replica (the first of
    its replicas: ranges hand leadership over to it once it has caught up,
    and a hand-over during the load would stall that range's clients); the
    count of ranges led."""
    client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=2.0)
    led: dict[int, bool] = {}
    try:
        deadline = time.monotonic() + timeout_s
        settled_by: float | None = None
        while time.monotonic() < deadline:
            led = {}
            for address in client.endpoints:
                try:
                    reply = await client.ranges_status(address)
                except (OSError, EOFError, TimeoutError):
                    continue
                for v in reply.ranges:
                    if v.role == "leader":
                        led[v.range_id] = bool(v.replicas) and v.leader == v.replicas[0]
            if len(led) >= cluster.ranges:
                if settled_by is None:
                    settled_by = min(deadline, time.monotonic() + settle_s)
                if all(led.values()) or time.monotonic() >= settled_by:
                    return len(led)
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise TimeoutError(f"{len(led)} of {cluster.ranges} ranges elected a leader within {timeout_s:g} s")


def compare_multiraft(config: RealBenchConfig, groups: int) -> dict[str, Any]:
    """One Raft group, then ``groups`` ranges, with the same clients (module docstring)."""
    base = dataclasses.replace(config, protocol="raft", spread_keys=True)
    single = run_real_bench(base)
    multi = run_real_bench(base, ranges=groups, wait_ranges=lambda cluster: asyncio.run(wait_ranges(cluster)))
    multi["protocol"] = "multiraft"
    multi["groups"] = groups
    for run in (single, multi):
        run["cpu_ms_per_put"] = cpu_ms_per_put(run)
    # What the Raft cores, the node host and the driver alone cost per put,
    # in this process, for the two runs' shapes: one group taking a round of
    # (at most) every client's put, and many groups taking one put each.
    single["core_us_per_put"] = core_cost_per_put(groups=1, puts_per_round=config.clients)
    multi["core_us_per_put"] = core_cost_per_put(groups=groups, puts_per_round=1)
    return {
        "benchmark": "real-multiraft",
        "multiraft": multi,
        "single_group": single,
        "ratio": {
            "throughput": _ratio(multi["throughput_ops"], single["throughput_ops"]),
            "p50": _ratio(multi["latency_ms"]["p50"], single["latency_ms"]["p50"]),
            "p99": _ratio(multi["latency_ms"]["p99"], single["latency_ms"]["p99"]),
            "node_cpu_per_put": _ratio(multi["cpu_ms_per_put"]["nodes"] or 0.0, single["cpu_ms_per_put"]["nodes"] or 0.0),
        },
    }


def cpu_ms_per_put(run: dict[str, Any]) -> dict[str, float | None]:
    """CPU milliseconds per acknowledged put of one run: the node processes'
    (all of them, from the clients' start to their end, client start-up
    included) and the client processes'. On a machine whose cores the nodes, the clients and other
    tenants share, this is the figure throughput follows."""
    ops = run["ops"]
    nodes = sum(run["cpu_s_per_node"].values())
    clients = sum(run["cpu_s_per_client_process"])
    return {
        "nodes": round(1000.0 * nodes / ops, 3) if ops else None,
        "clients": round(1000.0 * clients / ops, 3) if ops else None,
    }


CORE_COST_PUTS = 20_000
"""Puts ``core_cost_per_put`` runs (about a second of CPU at the many-groups shape)."""
CORE_COST_COMMAND = b"k" * 120
"""About the size of a benchmark put's command."""


class _InProcessEffects:
    """``HostEffects`` of one node in ``core_cost_per_put``: nothing is
    written (every write is durable at once), messages go to a shared list."""

    def __init__(self, node: NodeId, network: list[tuple[NodeId, NodeId, int, Any]]) -> None:
        self.node = node
        self.network = network

    def persist(self, writes: list[GroupReady], sync: bool) -> bool:
        return True

    def send(self, group: HostedGroup, messages: list[tuple[NodeId, Any]]) -> None:
        for to, message in messages:
            self.network.append((to, self.node, group.id, message))

    def restore(self, group: HostedGroup, snapshot: Any) -> None:
        pass

    def apply(self, group: HostedGroup, entries: list[Entry]) -> None:
        pass

    def read_ready(self, group: HostedGroup, read: ReadState) -> None:
        pass

    def rejected(self, group: HostedGroup, rejection: Rejection) -> None:
        pass


def core_cost_per_put(*, groups: int, puts_per_round: int, nodes: int = 3, puts: int = CORE_COST_PUTS) -> float:
    """CPU microseconds per put of ``nodes`` node hosts' Raft cores, hosts
    and drivers alone (no codec, transport, storage or state machine), in
    this process: ``groups`` groups of all the nodes (each with a multi-Raft
    range's options), each leader proposing ``puts_per_round`` puts per
    round, every round's messages delivered at once until all is committed
    and acknowledged. A floor of what the real nodes spend on the protocol
    per put, for comparison with their CPU per put."""
    config = RaftConfig(
        election_timeout_s=1.0, heartbeat_interval_s=0.1, lazy_commit=True, elide_heartbeats=True
    ).validate()
    members = [NodeId(n) for n in range(1, nodes + 1)]
    network: list[tuple[NodeId, NodeId, int, Any]] = []
    hosts = {n: NodeHost(n) for n in members}
    drivers = [HostDriver(hosts[n], _InProcessEffects(n, network)) for n in members]
    rng = random.Random(0)
    now = 0.0
    for g in range(groups):
        for n in members:
            core = RaftNode(n, members, config=config, rng=random.Random(rng.random()), now=now)
            hosts[n].add(HostedGroup(g, core, None))

    def deliver(at: float) -> None:
        for driver in drivers:
            driver.drive()
        while network:
            batch = network[:]
            network.clear()
            for to, sender, group, message in batch:
                hosts[to].step(sender, group, message, at)
            for driver in drivers:
                driver.drive()

    leaders: dict[int, NodeHost] = {}
    for _ in range(1000):  # elections: time jumps to the next deadline
        deadlines = [d for h in hosts.values() if (d := h.wake_at()) is not None]
        now = max(now, min(deadlines)) if deadlines else now + config.heartbeat_interval_s
        for host in hosts.values():
            host.tick(now)
        deliver(now)
        leaders = {g.id: h for h in hosts.values() for g in h if isinstance(g.core, RaftNode) and g.core.is_leader}
        if len(leaders) == groups:
            break
    if len(leaders) != groups:
        raise RuntimeError(f"{len(leaders)} of {groups} groups elected a leader")
    rounds = max(1, puts // (groups * puts_per_round))
    started = time.process_time()
    for _ in range(rounds):
        now += 0.001  # the hosts are not ticked: no timer fires while measuring
        for g, host in leaders.items():
            for _ in range(puts_per_round):
                host.propose(g, CORE_COST_COMMAND, now)
        deliver(now)
    spent_s = time.process_time() - started
    return round(1e6 * spent_s / (rounds * groups * puts_per_round), 1)


def _ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 3) if theirs else None


def idle_real(
    *, nodes: int = 3, groups: int = 1000, duration_s: float = 20.0, base_port: int = 17601, settle_s: float = DEFAULT_SETTLE_S
) -> dict[str, Any]:
    """Idle cost of ``groups`` ranges and of one Raft group on real processes (module docstring)."""
    hosted = _idle_cluster(nodes, groups, duration_s, base_port, settle_s)
    single = _idle_cluster(nodes, 0, duration_s, base_port, settle_s)
    return {
        "benchmark": "idle-real",
        "nodes": nodes,
        "duration_s": duration_s,
        "settle_s": settle_s,
        "hosted": hosted,
        "single": single,
    }


def _idle_cluster(nodes: int, groups: int, duration_s: float, base_port: int, settle_s: float) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="quorate-idle-"))
    cluster = LocalCluster(
        directory,
        nodes=nodes,
        base_port=base_port,
        insecure=True,
        options=dict(IDLE_RAFT_OPTIONS),
        ranges=groups,
        replicas=min(3, nodes),
    )
    try:
        cluster.write_configs()
        started = time.monotonic()
        cluster.start_all()
        asyncio.run(wait_leader(cluster))
        if groups:
            asyncio.run(wait_ranges(cluster))
        ready_s = time.monotonic() - started
        time.sleep(settle_s)
        pids = {node_name(n): cluster.pid(n) for n in cluster.ids}
        frames_before = asyncio.run(_messages_sent(cluster))
        cpu_before = {n: process_tree_cpu_seconds(p) if p else None for n, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(duration_s)
        wall_s = time.monotonic() - t0
        cpu_after = {n: process_tree_cpu_seconds(p) if p else None for n, p in pids.items()}
        frames_after = asyncio.run(_messages_sent(cluster))
        quiesced = asyncio.run(_quiesced(cluster)) if groups else None
    finally:
        cluster.kill_all()
        shutil.rmtree(directory, ignore_errors=True)
    cpu = cpu_used(cpu_before, cpu_after)
    percent = {n: round(100.0 * s / wall_s, 2) for n, s in cpu.items()}
    frames = sum(frames_after.values()) - sum(frames_before.values())
    return {
        "groups": groups + 1 if groups else 1,
        "ranges": groups,
        "quiescence": bool(groups),
        "ready_s": round(ready_s, 1),
        "cpu_percent_per_node": percent,
        "cpu_percent_per_node_max": max(percent.values()) if percent else None,
        "messages_per_second": round(frames / wall_s, 1),
        "quiesced_range_replicas": quiesced,
        "wall_s": round(wall_s, 3),
    }


async def _messages_sent(cluster: LocalCluster) -> dict[int, int]:
    """Peer messages each node sent so far (the status request itself travels on a client connection)."""
    client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=5.0)
    try:
        out = {}
        for status in await client.cluster_status():
            if status is not None:
                metrics = status.metrics
                out[status.node] = metrics.get("transport.messages_sent", metrics.get("transport.frames_sent", 0))
        return out
    finally:
        await client.close()


async def _quiesced(cluster: LocalCluster) -> int:
    client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=5.0)
    try:
        total = 0
        for address in client.endpoints:
            reply = await client.ranges_status(address)
            total += sum(1 for v in reply.ranges if v.quiesced)
        return total
    finally:
        await client.close()

