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
  clients) with the nodes' ratio.
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
from quorate.ids import node_name
from quorate.runtime.aio.cluster import LocalCluster

__all__ = ["compare_multiraft", "cpu_ms_per_put", "idle_real", "wait_ranges"]

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

