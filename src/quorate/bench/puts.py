"""Closed-loop puts from client processes against a local cluster, and what
they cost: the machinery both real benchmarks share (``quorate.bench.real``
for crash-fault clusters and etcd, ``quorate.bench.real_bft`` for PBFT and
HotStuff), with the CPU accounting ``quorate.bench.real``'s docstring
describes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from quorate.bench.etcd import (
    EtcdHttpClient,
)
from quorate.client.aio import AsyncClient
from quorate.ids import NodeId, node_name
from quorate.multiraft.routing import RangeCache
from quorate.runtime.aio.cluster import LocalCluster
from quorate.runtime.aio.config import load_node_config
from quorate.storage.sqlite import DB_FILE_NAME
from quorate.storage.wal import WAL_DIR_NAME

LEADER_WAIT_S = 20.0
WARMUP_S = 1.0
MS_PER_S = 1000.0
CLIENT_DEADLINE_S = 10.0
QUORATE = "quorate"
ETCD = "etcd"
ETCD_PORT_OFFSET = 1000
"""etcd's client ports start this far above ours, so both fit in one run."""


@dataclass(frozen=True, slots=True)
class RealBenchConfig:
    protocol: str = "raft"
    nodes: int = 3
    clients: int = 64
    duration_s: float = 10.0
    value_size: int = 100
    client_processes: int = 2
    base_port: int = 17501
    storage: str = "sqlite"
    """The nodes' storage engine (``runtime.aio.config.STORAGE_KINDS``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Protocol options for every node (``quorate bench real --option k=v``)."""
    spread_keys: bool = False
    """Begin every key with four hex digits of its hash, so keys spread over
    the ranges of a multi-Raft cluster (``multiraft.descriptor.hex_split_keys``)."""


_STAT_CPU_FIELDS = slice(11, 15)
"""utime, stime, cutime, cstime in ``/proc/<pid>/stat``, counted from the
field after the command name (which may hold spaces, hence the split at ')')."""


def process_tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds ``pid`` used (all its threads, user + system) plus those of
    the children it waited for; ``None`` when it is gone or not on Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[_STAT_CPU_FIELDS])
    return ticks / os.sysconf("SC_CLK_TCK")


def host_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, from
    ``/proc/stat`` (busy is everything but idle and iowait)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is already inside user time: count the first 8 columns only.
    total = sum(values[:8])
    ticks = os.sysconf("SC_CLK_TCK")
    return (total - idle) / ticks, total / ticks


def host_cpu_report(
    before: tuple[float, float] | None,
    after: tuple[float, float] | None,
    ours_s: float,
    wall_s: float,
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    report: dict[str, Any] = {
        "cores": cores,
        "available_s": round(cores * wall_s, 3),
        "ours_s": round(ours_s, 3),
    }
    if before is not None and after is not None:
        report["busy_s"] = round(after[0] - before[0], 3)
        report["others_s"] = round(after[0] - before[0] - ours_s, 3)
    return report


class _Putter(Protocol):
    async def put(self, key: str, value: str) -> Any: ...

    async def close(self) -> None: ...


def _make_putter(system: str, endpoints: list[str], cache: RangeCache | None = None) -> _Putter:
    if system == ETCD:
        host, _, port = endpoints[0].rpartition(":")
        return EtcdHttpClient(host, int(port))
    return AsyncClient(endpoints, insecure=True, deadline_s=CLIENT_DEADLINE_S, range_cache=cache)


def bench_key(name: str, spread: bool) -> str:
    """``name``, or with ``spread`` ``name`` behind four hex digits of its CRC-32."""
    return f"{zlib.crc32(name.encode()) & 0xFFFF:04x}/{name}" if spread else name


async def drive_puts(
    clients: Sequence[_Putter], duration_s: float, value_size: int, start_at: float, spread_keys: bool = False
) -> tuple[list[float], int]:
    """Closed-loop puts: each client puts a fresh key, waits for the answer,
    and puts the next, from wall time ``start_at`` for ``duration_s``.
    Returns the latency of every acknowledged put (seconds) and the errors."""
    latencies: list[float] = []
    errors = 0
    value = "x" * value_size
    await asyncio.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + duration_s

    async def loop(i: int, client: _Putter) -> None:
        nonlocal errors
        n = 0
        while time.monotonic() < end:
            n += 1
            # Latency is taken around the put only: the call, the cluster's
            # fsyncs and replication, the acknowledgement.
            t0 = time.perf_counter()
            try:
                await client.put(bench_key(f"bench/{os.getpid()}/{i}/{n}", spread_keys), value)
            except (TimeoutError, OSError, EOFError, RuntimeError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(loop(i, c) for i, c in enumerate(clients)))
    return latencies, errors


def _client_process(
    system: str,
    endpoints: list[str],
    sessions: int,
    duration_s: float,
    value_size: int,
    start_at: float,
    spread_keys: bool = False,
) -> dict[str, Any]:
    """One client process: ``sessions`` concurrent put loops until the deadline,
    against quorate (``AsyncClient``) or etcd (``EtcdHttpClient``)."""

    async def main() -> tuple[list[float], int]:
        cache = RangeCache()  # one per process: its sessions learn the ranges together
        clients = [_make_putter(system, endpoints, cache) for _ in range(sessions)]
        latencies, errors = await drive_puts(clients, duration_s, value_size, start_at, spread_keys)
        for c in clients:
            await c.close()
        return latencies, errors

    # RUSAGE_SELF covers every thread of this process; the loop spawns no
    # child processes.
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


async def wait_leader(cluster: LocalCluster) -> str:
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


def drive_clients(
    system: str, endpoints: list[str], config: RealBenchConfig
) -> tuple[list[dict[str, Any]], int]:
    """Run the client processes to the end; return their results and count."""
    processes = max(1, min(config.client_processes, config.clients))
    shares = [
        config.clients // processes + (i < config.clients % processes) for i in range(processes)
    ]
    start_at = time.time() + WARMUP_S + 0.5 * processes
    with ProcessPoolExecutor(max_workers=processes) as pool:
        futures = [
            pool.submit(
                _client_process,
                system,
                endpoints,
                share,
                config.duration_s,
                config.value_size,
                start_at,
                config.spread_keys,
            )
            for share in shares
        ]
        return [f.result() for f in futures], processes


def put_summary(
    results: list[dict[str, Any]], config: RealBenchConfig, processes: int
) -> dict[str, Any]:
    """The report's client-side fields from the client processes' results
    (each: ``latencies`` in seconds, ``errors``, ``cpu_s``)."""
    latencies = sorted(x for r in results for x in r["latencies"])
    return {
        "clients": config.clients,
        "client_processes": processes,
        "duration_s": config.duration_s,
        "value_size": config.value_size,
        "fsync": True,
        "ops": len(latencies),
        "throughput_ops": round(len(latencies) / config.duration_s, 1),
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.50) * MS_PER_S, 3),
            "p90": round(_percentile(latencies, 0.90) * MS_PER_S, 3),
            "p99": round(_percentile(latencies, 0.99) * MS_PER_S, 3),
            "max": round((latencies[-1] if latencies else 0.0) * MS_PER_S, 3),
        },
        "errors": sum(r["errors"] for r in results),
        "cpu_s_per_client_process": [round(r["cpu_s"], 3) for r in results],
    }


def cpu_used(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float]:
    """CPU seconds per process between two readings (processes read both times)."""
    return {
        name: round(a - b, 3)
        for name, b in before.items()
        if b is not None and (a := after.get(name)) is not None
    }


def select_storage(cluster: LocalCluster, storage: str) -> None:
    """Rewrite the written node configs to use ``storage``."""
    for node in cluster.ids:
        path = cluster.config_path(node)
        node_config = load_node_config(path)
        path.write_text(dataclasses.replace(node_config, storage=storage).to_toml())


def storage_found(data_dir: Path) -> str | None:
    """Which engine's files a node's data directory holds."""
    if (data_dir / WAL_DIR_NAME).is_dir() and any((data_dir / WAL_DIR_NAME).iterdir()):
        return "wal"
    if (data_dir / DB_FILE_NAME).exists():
        return "sqlite"
    return None


