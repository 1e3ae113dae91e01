"""What the MCP server stands on: a running cluster, reached through a pool
of client sessions, or an embedded local one it starts itself.

Theory of operation.

- *Sessions.* A client session has one request outstanding at a time (its
  exactly-once rule), and MCP clients call tools concurrently, so the backend
  keeps ``POOL_SESSIONS`` sessions and lends one per operation. Each session
  follows redirects and retries under the same ``(client, seq)``, so a tool
  call that crosses a leader change is applied once and answered as usual.
- *Embedded cluster.* Without ``--endpoints`` the server runs a local
  3-node Raft cluster of real node processes (TLS, fsync'd SQLite) in its
  data directory, created on first run, started if it is not running, and
  stopped when the server exits. It survives the loss of one node, as any
  three-node cluster does.
- *Figures.* Every operation's latency and outcome is recorded (a window of
  the last ``LATENCY_WINDOW`` operations), so ``metrics_collect`` reports
  measured latency and throughput, never a made-up number; the cluster's
  own view (term, leader, indexes, per-node lag) comes from every node's
  ``Status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorate.client.aio import AsyncClient
from quorate.errors import ConfigError
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.cluster import LocalCluster, wait_for
from quorate.runtime.aio.ports import free_port_block
from quorate.state.kv import READ_OPS, Op, Result

POOL_SESSIONS = 8
LATENCY_WINDOW = 2048
EMBEDDED_NODES = 3
EMBEDDED_START_WAIT_S = 30.0
EMBEDDED_RAFT = {"election_timeout_s": 1.0, "heartbeat_interval_s": 0.1}
STATUS_TIMEOUT_S = 1.0
CLIENT_CERTIFICATE = "client"


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float
    latency_s: float
    write: bool
    ok: bool


class Backend:
    """A pool of sessions with one cluster, and what they measured."""

    def __init__(self, client_options: dict[str, Any], *, sessions: int = POOL_SESSIONS) -> None:
        self.client_options = client_options
        self._pool: asyncio.Queue[AsyncClient] | None = None
        self._sessions = sessions
        self._all: list[AsyncClient] = []
        self.samples: deque[Sample] = deque(maxlen=LATENCY_WINDOW)
        self.started_s = time.monotonic()
        self.operations = 0
        self.failures = 0
        self.embedded: EmbeddedCluster | None = None
        self._status_client: AsyncClient | None = None
        self._watch_client: AsyncClient | None = None

    def _ensure_pool(self) -> asyncio.Queue[AsyncClient]:
        if self._pool is None:
            self._pool = asyncio.Queue()
            for _ in range(self._sessions):
                client = AsyncClient(**self.client_options)
                self._all.append(client)
                self._pool.put_nowait(client)
        return self._pool

    @property
    def endpoints(self) -> list[Any]:
        return AsyncClient(**self.client_options).endpoints

    async def execute(self, op: Op, *, write: bool | None = None) -> Result:
        """Run ``op`` on a free session and record its latency (``write``:
        whether it goes through the log; by default, from its type)."""
        if write is None:
            write = not isinstance(op, READ_OPS)
        pool = self._ensure_pool()
        client = await pool.get()
        started = time.monotonic()
        ok = False
        try:
            result = await client.execute(op)
            ok = True
            return result
        finally:
            pool.put_nowait(client)
            now = time.monotonic()
            self.operations += 1
            if not ok:
                self.failures += 1
            self.samples.append(Sample(now, now - started, write, ok))

    async def watch_execute(self, op: Op) -> Result:
        """For the change follower: its own session, not counted in the figures."""
        if self._watch_client is None:
            self._watch_client = AsyncClient(**self.client_options)
        return await self._watch_client.execute(op)

    async def statuses(self) -> list[StatusReply | None]:
        if self._status_client is None:
            options = dict(self.client_options)
            options["timeout_s"] = STATUS_TIMEOUT_S
            self._status_client = AsyncClient(**options)
        return await self._status_client.cluster_status()

    async def close(self) -> None:
        for client in self._all:
            with contextlib.suppress(Exception):
                await client.close()
        for extra in (self._status_client, self._watch_client):
            if extra is not None:
                with contextlib.suppress(Exception):
                    await extra.close()

    # -- figures -----------------------------------------------------------------
    def latency_ms(self, *, write: bool | None = None) -> dict[str, float | int | None]:
        values = sorted(s.latency_s for s in self.samples if s.ok and (write is None or s.write == write))
        return {"samples": len(values), **percentiles_ms(values)}

    def throughput_ops_per_s(self, window_s: float = 10.0) -> float:
        now = time.monotonic()
        recent = [s for s in self.samples if now - s.at_s <= window_s]
        if not recent:
            return 0.0
        span = max(now - recent[0].at_s, 1e-3)
        return round(len(recent) / span, 3)


def percentiles_ms(sorted_s: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of sorted seconds, in milliseconds (None without samples)."""
    if not sorted_s:
        return {"p50": None, "p99": None, "max": None}

    def at(q: float) -> float:
        return round(sorted_s[min(len(sorted_s) - 1, int(q * len(sorted_s)))] * 1e3, 3)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(sorted_s[-1] * 1e3, 3)}


class EmbeddedCluster:
    """The local 3-node cluster ``quorate mcp`` runs when given no endpoints."""

    def __init__(self, directory: str | Path, *, nodes: int = EMBEDDED_NODES) -> None:
        self.directory = Path(directory)
        self.nodes = nodes
        self.cluster: LocalCluster | None = None
        self.started_here: list[int] = []

    def start(self) -> LocalCluster:
        """Create the cluster on first use, start the nodes that are not
        running, and wait until every node answers; ``ConfigError`` if not."""
        from quorate.cli.certs import ensure_certificates
        from quorate.ids import node_name

        if (self.directory / "cluster.json").exists():
            cluster = LocalCluster.open(self.directory)
        else:
            cluster = LocalCluster(
                self.directory, nodes=self.nodes, base_port=free_port_block(self.nodes), options=dict(EMBEDDED_RAFT)
            )
            cluster.write_configs()
        if cluster.tls_dir is not None:
            ensure_certificates(cluster.tls_dir, [*(node_name(n) for n in cluster.ids), CLIENT_CERTIFICATE])
        for node in cluster.ids:
            if not cluster.running(node):
                cluster.start(node)
                self.started_here.append(int(node))
        self.cluster = cluster
        if not wait_for(lambda: self._answering(cluster), EMBEDDED_START_WAIT_S, 0.1):
            reasons = [r for r in (cluster.exit_reason(n) for n in cluster.ids) if r]
            self.stop()
            raise ConfigError(
                f"the embedded cluster in {self.directory} did not start"
                + (f": {reasons[0]}" if reasons else f" within {EMBEDDED_START_WAIT_S:g} s (see its n*.log)")
            )
        return cluster

    def _answering(self, cluster: LocalCluster) -> bool:
        client = AsyncClient(cluster.endpoints, tls=cluster.tls_dir, insecure=cluster.insecure, timeout_s=0.5)

        async def ask() -> bool:
            try:
                statuses = await client.cluster_status()
            finally:
                await client.close()
            return all(s is not None for s in statuses) and any(s.role == "leader" for s in statuses if s)

        for node in cluster.ids:
            if cluster.exit_reason(node) is not None:
                return True  # a node died: stop waiting, start() reports it
        return asyncio.run(ask())

    def client_options(self) -> dict[str, Any]:
        cluster = self.cluster
        assert cluster is not None
        return {"endpoints": cluster.endpoints, "tls": cluster.tls_dir, "insecure": cluster.insecure}

    def stop(self) -> None:
        """Stop the nodes this process started (others were running before it)."""
        cluster = self.cluster
        if cluster is None:
            return
        from quorate.ids import NodeId

        for node in self.started_here:
            cluster.stop(NodeId(node))
        self.started_here.clear()


__all__ = ["POOL_SESSIONS", "Backend", "EmbeddedCluster", "percentiles_ms"]
