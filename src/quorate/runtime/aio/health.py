"""A node's readiness and liveness endpoints: plain HTTP on a port of its own.

Theory of operation: orchestrators (Docker's ``HEALTHCHECK``, Kubernetes
probes) speak HTTP, the protocol port speaks length-prefixed (TLS) frames,
so the node answers them on a separate listener (``health_listen`` in its
config) that carries nothing but these two paths:

- ``GET /livez``  — 200 while the event loop runs (it answered at all);
- ``GET /readyz`` — 200 when the node can serve clients: it knows a leader
  (Raft) or a view with a primary (PBFT, HotStuff) *and* it is connected to
  enough peers to make a quorum with itself (a majority for Raft, 2f + 1 of
  3f + 1 for the BFT protocols); 503 with the reason otherwise (still
  electing, cut off from a quorum).

Anything else is 404, a request that is not ``GET`` 405. The answer is read
from the node's own ``status()`` (what ``quorate cluster status`` shows),
so the endpoint holds no state of its own. Requests are read with a size
cap and a timeout, and every connection is closed after one answer
(HTTP/1.0), so a probe can never hold the node's loop or memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from quorate.runtime.aio.config import Address

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
READY_PATH = "/readyz"
LIVE_PATH = "/livez"
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}


def peers_needed(members: int, bft: bool) -> int:
    """Peers a node must reach to be in a quorum: 2f of 3f + 1 others (BFT), a
    majority less itself (Raft)."""
    return 2 * ((members - 1) // 3) if bft else members // 2


def readiness(status: Any, connected_peers: int) -> tuple[bool, str]:
    """(ready, why) from a ``StatusReply`` and how many peers are connected."""
    bft = "bft.view" in status.metrics
    members = len(status.voters) or len(status.members)
    need = peers_needed(members, bft)
    if connected_peers < need:
        return False, f"connected to {connected_peers} of the {need} peers a quorum needs"
    if status.leader is not None:
        return True, f"leader n{status.leader}, {status.role}, {connected_peers} peers connected"
    leader = status.metrics.get("bft.leader")
    if bft and leader is not None:
        return True, f"view {status.metrics.get('bft.view')} with primary n{leader}, {connected_peers} peers connected"
    return False, f"no leader known yet ({status.role})"


class HealthServer:
    """Serves ``/readyz`` and ``/livez`` for ``status`` (a node's ``status``
    method) and ``connected_peers`` (how many peer connections are up)."""

    def __init__(self, listen: Address, status: Callable[[], Any], connected_peers: Callable[[], int]) -> None:
        self.listen = listen
        self.status = status
        self.connected_peers = connected_peers
        self._server: asyncio.Server | None = None

    async def start(self) -> Address:
        self._server = await asyncio.start_server(self._handle, *self.listen, limit=MAX_REQUEST_BYTES)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.listen = (host, int(port))
        return self.listen

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            code, body = self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            code, body = 400, {"error": "bad request"}
        payload = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.0 {code} {_REASONS[code]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _answer(self, head: bytes) -> tuple[int, dict[str, Any]]:
        if len(head) > MAX_REQUEST_BYTES:
            return 400, {"error": "request too large"}
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3:
            return 400, {"error": "bad request line"}
        method, path = parts[0], parts[1].split("?", 1)[0]
        if path not in (READY_PATH, LIVE_PATH):
            return 404, {"error": f"no such path; try {READY_PATH} or {LIVE_PATH}"}
        if method != "GET":
            return 405, {"error": "GET only"}
        if path == LIVE_PATH:
            return 200, {"live": True}
        ready, why = readiness(self.status(), self.connected_peers())
        return (200 if ready else 503), {"ready": ready, "why": why}
