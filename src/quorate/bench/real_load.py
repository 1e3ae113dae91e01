"""Open-loop load on a live local cluster, one ramp step at a time.

Theory of operation. ``RealLoadTarget`` starts the cluster the way ``quorate
bench real`` does (``LocalCluster``: one OS process per node, durable storage
with fsync, plain TCP on loopback), waits until it serves (a Raft leader, or
every BFT replica in one view), and starts ``client_processes`` load
processes that stay up for the whole ramp with their sessions connected.

For a step the parent tells every load process its share of the rate and a
common wall-clock start. Each load process draws Poisson arrivals from its
own seeded generator and queues them; ``sessions`` worker tasks take the
next arrival and put a fresh key (``AsyncClient`` for Raft; for PBFT and
HotStuff ``BftClient`` sessions sharing one ``BftChannel``, a put counting
once f + 1 replicas agree). A latency is measured from the arrival's
*intended* time, so time spent queued behind a slow cluster counts (no
coordinated omission). An arrival that waited longer than ``OP_TIMEOUT_S``
before a session was free, or whose put failed or timed out, counts as not
answered. Only arrivals in the measurement window (after the warm-up) are
counted; the process then reports its counts, its HDR histogram (encoded)
and its CPU seconds.

Meanwhile a ``ProcessSampler`` samples every node process and every load
process once a second, with the nodes' fsync counts from ``Status`` and an
fsync probe on the cluster's file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import resource
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorate.bench.histogram import LatencyHistogram
from quorate.bench.puts import select_storage
from quorate.bench.ramp import StepResult
from quorate.bench.resources import ProcessSampler
from quorate.client.aio import AsyncClient
from quorate.client.bft import BftChannel, BftClient
from quorate.client.contact import ClientError, new_client_id
from quorate.ids import node_name
from quorate.protocols import byzantine_fault_tolerant
from quorate.runtime.aio.cluster import LocalCluster
from quorate.runtime.aio.node import event_loop_factory

READY_WAIT_S = 30.0
READY_POLL_S = 0.1
OP_TIMEOUT_S = 2.0
"""An operation not answered this long after its intended start is not answered."""
START_DELAY_S = 0.3
"""Lead time between telling the load processes and their common start."""
ARRIVAL_TICK_S = 0.001
STEP_REPLY_GRACE_S = 30.0
CLIENT_LABEL = "client"


async def _statuses(endpoints: list[str]) -> list[Any]:
    client = AsyncClient(endpoints, insecure=True, timeout_s=1.0)
    try:
        return await client.cluster_status()
    finally:
        await client.close()


async def wait_serving(cluster: LocalCluster) -> None:
    """Until a Raft leader is known, or every BFT replica answers in one view."""
    deadline = time.monotonic() + READY_WAIT_S
    bft = byzantine_fault_tolerant(cluster.protocol)
    while time.monotonic() < deadline:
        statuses = await _statuses(cluster.endpoints)
        if bft:
            views = {s.metrics.get("bft.view") for s in statuses if s is not None}
            if None not in statuses and len(views) == 1 and None not in views:
                return
        elif any(s is not None and s.role == "leader" for s in statuses):
            return
        await asyncio.sleep(READY_POLL_S)
    raise TimeoutError(f"the {cluster.protocol} cluster was not serving within {READY_WAIT_S} s")


# ------------------------------------------------------------------ load processes
class _Load:
    """One load process's sessions and its open-loop step."""

    def __init__(self, protocol: str, endpoints: list[str], sessions: int, value_size: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.value = "x" * value_size
        self.channel: BftChannel | None = None
        self.clients: list[Any]
        if byzantine_fault_tolerant(protocol):
            self.channel = BftChannel(endpoints, insecure=True)
            self.clients = [
                BftClient(channel=self.channel, client_id=new_client_id(), deadline_s=OP_TIMEOUT_S)
                for _ in range(sessions)
            ]
        else:
            self.clients = [
                AsyncClient(endpoints, insecure=True, timeout_s=OP_TIMEOUT_S / 2, deadline_s=OP_TIMEOUT_S)
                for _ in range(sessions)
            ]
        self.prefix = f"ramp/{multiprocessing.current_process().pid}/{seed}"
        self.n = 0

    async def step(self, rate_ops: float, warmup_s: float, window_s: float, start_at: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        origin = loop.time()
        window_start, window_end = origin + warmup_s, origin + warmup_s + window_s
        queue: deque[float] = deque()
        wakeup = asyncio.Event()
        histogram = LatencyHistogram()
        counts = {"invoked": 0, "ok": 0, "failed": 0, "unknown": 0}
        producing = True

        async def produce() -> None:
            nonlocal producing
            next_at = origin + self.rng.expovariate(rate_ops)
            while next_at < window_end:
                now = loop.time()
                while next_at <= now and next_at < window_end:
                    queue.append(next_at)
                    if window_start <= next_at:
                        counts["invoked"] += 1
                    next_at += self.rng.expovariate(rate_ops)
                wakeup.set()
                await asyncio.sleep(min(ARRIVAL_TICK_S, max(0.0, next_at - loop.time())))
            producing = False
            wakeup.set()

        async def work(client: Any) -> None:
            while True:
                if not queue:
                    if not producing:
                        return
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                intended = queue.popleft()
                counted = window_start <= intended
                if loop.time() - intended > OP_TIMEOUT_S:
                    counts["unknown"] += counted
                    continue
                self.n += 1
                try:
                    await client.put(f"{self.prefix}/{self.n}", self.value)
                except (TimeoutError, ClientError, OSError, EOFError, RuntimeError):
                    counts["unknown"] += counted
                    continue
                if counted:
                    latency_s = loop.time() - intended
                    if latency_s <= OP_TIMEOUT_S:
                        counts["ok"] += 1
                        histogram.record_s(latency_s)
                    else:
                        counts["unknown"] += 1

        await asyncio.gather(produce(), *(work(c) for c in self.clients))
        return {**counts, "histogram": histogram.encode()}

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        if self.channel is not None:
            await self.channel.close()


def _load_process(connection: Any, protocol: str, endpoints: list[str], sessions: int, value_size: int, seed: int) -> None:
    """Serve step requests from the parent until told to stop."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        load = runner.run(_make_load(protocol, endpoints, sessions, value_size, seed))
        try:
            while True:
                request = connection.recv()
                if request[0] != "step":
                    break
                _, rate_ops, warmup_s, window_s, start_at = request
                cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                result = runner.run(load.step(rate_ops, warmup_s, window_s, start_at))
                cpu1 = resource.getrusage(resource.RUSAGE_SELF)
                result["cpu_s"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
                connection.send(result)
        finally:
            runner.run(load.close())
            connection.close()


async def _make_load(protocol: str, endpoints: list[str], sessions: int, value_size: int, seed: int) -> _Load:
    return _Load(protocol, endpoints, sessions, value_size, seed)


@dataclass
class RealLoadTarget:
    """A live local cluster and its load processes (see the module docstring)."""

    protocol: str = "raft"
    nodes: int = 3
    storage: str = "sqlite"
    options: Mapping[str, Any] = field(default_factory=dict)
    client_processes: int = 2
    sessions_per_process: int = 64
    value_size: int = 100
    base_port: int = 17601
    seed: int = 1

    def __post_init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix=f"quorate-ramp-{self.protocol}-"))
        self.cluster = LocalCluster(
            self._directory,
            nodes=self.nodes,
            base_port=self.base_port,
            insecure=True,
            protocol=self.protocol,
            options=dict(self.options),
        )
        self._workers: list[tuple[Any, Any]] = []
        try:
            self.cluster.write_configs()
            select_storage(self.cluster, self.storage)
            self.cluster.start_all()
            asyncio.run(wait_serving(self.cluster))
            context = multiprocessing.get_context("spawn")
            for i in range(self.client_processes):
                parent, child = context.Pipe()
                process = context.Process(
                    target=_load_process,
                    args=(child, self.protocol, self.cluster.endpoints, self.sessions_per_process,
                          self.value_size, self.seed * 1000 + i),
                    daemon=True,
                )
                process.start()
                self._workers.append((process, parent))
        except BaseException:
            self.close()
            raise

    def step(self, rate_ops: float, warmup_s: float, window_s: float) -> StepResult:
        start_at = time.time() + START_DELAY_S
        share = rate_ops / len(self._workers)
        for _, connection in self._workers:
            connection.send(("step", share, warmup_s, window_s, start_at))
        pids = {node_name(n): pid for n in self.cluster.ids if (pid := self.cluster.pid(n)) is not None}
        pids.update({f"{CLIENT_LABEL}{i + 1}": p.pid for i, (p, _) in enumerate(self._workers)})
        endpoints = self.cluster.endpoints
        names = [node_name(n) for n in self.cluster.ids]

        def poll_status() -> dict[str, dict[str, int]]:
            statuses = asyncio.run(_statuses(endpoints))
            return {
                name: {**s.metrics, "applied_index": s.applied_index}
                for name, s in zip(names, statuses)
                if s is not None
            }

        time.sleep(max(0.0, start_at + warmup_s - time.time()))
        sampler = ProcessSampler(pids, probe_dir=self._directory, poll_status=poll_status)
        with sampler:
            time.sleep(max(0.0, start_at + warmup_s + window_s - time.time()))
        replies = []
        for process, connection in self._workers:
            if not connection.poll(OP_TIMEOUT_S + STEP_REPLY_GRACE_S):
                raise RuntimeError(f"load process {process.pid} did not report its step")
            replies.append(connection.recv())
        histogram = LatencyHistogram()
        for reply in replies:
            histogram.add(LatencyHistogram.decode(reply["histogram"]))
        invoked = sum(r["invoked"] for r in replies)
        return StepResult(
            rate_ops=invoked / window_s,
            window_s=window_s,
            invoked=invoked,
            ok=sum(r["ok"] for r in replies),
            failed=sum(r["failed"] for r in replies),
            unknown=sum(r["unknown"] for r in replies),
            histogram=histogram,
            resources=sampler.timeline(),
            extra={
                "client_cpu_s": [round(r["cpu_s"], 3) for r in replies],
                "fsync_probe_ms": sampler.fsync_probe_ms,
            },
        )

    def close(self) -> None:
        for process, connection in self._workers:
            with contextlib.suppress(OSError):
                connection.send(("stop",))
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        self._workers = []
        self.cluster.kill_all()
        shutil.rmtree(self._directory, ignore_errors=True)
