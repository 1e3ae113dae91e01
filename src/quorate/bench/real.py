"""Throughput and latency of a real local cluster (processes, fsync on).

Theory of operation: ``run_real_bench`` starts a ``LocalCluster`` (one OS
process per node, SQLite with ``synchronous=FULL``: every acknowledged write
was fsynced by a quorum), waits for a leader, then runs ``clients``
concurrent client sessions issuing puts of ``value_size`` bytes for
``duration_s``. The sessions are spread over ``client_processes`` separate
OS processes, each an asyncio loop with many ``AsyncClient`` connections, so
the client side is not one GIL; each client process reports its own CPU
seconds so the report shows whether the clients, not the cluster, were the
limit. CPU per node comes from ``/proc/<pid>/stat`` before and after.
Latency is measured per put (call to acknowledgement, retries included).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorate.client.aio import AsyncClient
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.cluster import LocalCluster, process_cpu_seconds

LEADER_WAIT_S = 20.0
WARMUP_S = 1.0
MS_PER_S = 1000.0


@dataclass(frozen=True, slots=True)
class RealBenchConfig:
    protocol: str = "raft"
    nodes: int = 3
    clients: int = 64
    duration_s: float = 10.0
    value_size: int = 100
    client_processes: int = 2
    base_port: int = 17501


def _client_process(
    endpoints: list[str], sessions: int, duration_s: float, value_size: int, start_at: float
) -> dict[str, Any]:
    """One client process: ``sessions`` concurrent put loops until the deadline."""

    async def main() -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        value = "x" * value_size
        clients = [AsyncClient(endpoints, insecure=True, deadline_s=10.0) for _ in range(sessions)]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = time.monotonic() + duration_s

        async def loop(i: int, client: AsyncClient) -> None:
            nonlocal errors
            n = 0
            while time.monotonic() < end:
                n += 1
                t0 = time.perf_counter()
                try:
                    await client.put(f"bench/{os.getpid()}/{i}/{n}", value)
                except (TimeoutError, OSError, EOFError, RuntimeError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(loop(i, c) for i, c in enumerate(clients)))
        for c in clients:
            await c.close()
        return latencies, errors

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    latencies, errors = asyncio.run(main())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"latencies": latencies, "errors": errors, "cpu_s": cpu_s}


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _wait_leader(cluster: LocalCluster) -> str:
    client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=1.0)
    try:
        deadline = time.monotonic() + LEADER_WAIT_S
        while time.monotonic() < deadline:
            for status in await client.cluster_status():
                if status is not None and status.role == "leader":
                    return node_name(NodeId(status.node))
            await asyncio.sleep(0.1)
    finally:
        await client.close()
    raise TimeoutError(f"no leader within {LEADER_WAIT_S} s")


def run_real_bench(config: RealBenchConfig) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="quorate-bench-"))
    cluster = LocalCluster(
        directory,
        nodes=config.nodes,
        base_port=config.base_port,
        insecure=True,
        protocol=config.protocol,
    )
    try:
        cluster.write_configs()
        cluster.start_all()
        leader = asyncio.run(_wait_leader(cluster))
        pids = {n: cluster.pid(n) for n in cluster.ids}
        cpu_before = {n: process_cpu_seconds(p) if p else None for n, p in pids.items()}
        processes = max(1, min(config.client_processes, config.clients))
        shares = [
            config.clients // processes + (i < config.clients % processes) for i in range(processes)
        ]
        start_at = time.time() + WARMUP_S + 0.5 * processes
        t0 = time.monotonic()
        with ProcessPoolExecutor(max_workers=processes) as pool:
            futures = [
                pool.submit(
                    _client_process,
                    cluster.endpoints,
                    share,
                    config.duration_s,
                    config.value_size,
                    start_at,
                )
                for share in shares
            ]
            results = [f.result() for f in futures]
        wall_s = time.monotonic() - t0
        cpu_after = {n: process_cpu_seconds(p) if p else None for n, p in pids.items()}
    finally:
        cluster.kill_all()
        shutil.rmtree(directory, ignore_errors=True)
    latencies = sorted(x for r in results for x in r["latencies"])
    errors = sum(r["errors"] for r in results)
    cpu_per_node = {
        node_name(n): round(cpu_after[n] - cpu_before[n], 3)  # type: ignore[operator]
        for n in cluster.ids
        if cpu_before[n] is not None and cpu_after[n] is not None
    }
    return {
        "benchmark": "real",
        "protocol": config.protocol,
        "nodes": config.nodes,
        "clients": config.clients,
        "client_processes": processes,
        "duration_s": config.duration_s,
        "value_size": config.value_size,
        "fsync": True,
        "leader": leader,
        "ops": len(latencies),
        "throughput_ops": round(len(latencies) / config.duration_s, 1),
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.50) * MS_PER_S, 3),
            "p90": round(_percentile(latencies, 0.90) * MS_PER_S, 3),
            "p99": round(_percentile(latencies, 0.99) * MS_PER_S, 3),
            "max": round((latencies[-1] if latencies else 0.0) * MS_PER_S, 3),
        },
        "errors": errors,
        "cpu_s_per_node": cpu_per_node,
        "cpu_s_per_client_process": [round(r["cpu_s"], 3) for r in results],
        "wall_s": round(wall_s, 3),
    }
