"""Helpers for the asyncio runtime tests: loopback clusters of AioNode running
the toy replication core, and bounded waits. (Fixtures are in conftest.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from quorate.ids import NodeId
from quorate.runtime.aio import AioNode, ClientConnection, TlsConfig, TransportConfig
from quorate.runtime.aio.ports import free_port_block
from quorate.state.kv import Put, encode_op
from quorate.state.service import CLIENT_MESSAGE_TYPES, ClientReply, ClientRequest

LOOPBACK = "127.0.0.1"
WAIT_LIMIT_S = 15.0
"""Generous bound on how long a test waits for a condition (a shared, noisy
machine); reaching it fails the test, it is not a speed assertion."""
POLL_INTERVAL_S = 0.01
FAST_BACKOFF = TransportConfig(backoff_initial_s=0.01, backoff_max_s=0.2, handshake_timeout_s=5.0)


def free_ports(count: int) -> list[int]:
    """Loopback ports that were free a moment ago, below the ephemeral range so
    a restarted node finds its port free (``quorate.runtime.aio.ports``)."""
    base = free_port_block(count)
    return list(range(base, base + count))


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


def make_nodes(
    tmp_path: Path,
    count: int,
    binding: object,
    tls: dict[int, TlsConfig] | None = None,
    ports: list[int] | None = None,
) -> list[AioNode]:
    ports = ports or free_ports(count)
    addresses = {NodeId(i + 1): (LOOPBACK, ports[i]) for i in range(count)}
    nodes = []
    for i in range(count):
        node_id = NodeId(i + 1)
        nodes.append(
            AioNode(
                node_id,
                addresses,
                tmp_path / f"n{node_id}",
                listen=addresses[node_id],
                protocol=binding,  # type: ignore[arg-type]
                tls=tls[node_id] if tls else None,
                insecure=tls is None,
                transport_config=FAST_BACKOFF,
            )
        )
    return nodes


async def put(client: ClientConnection, seq: int, key: str, value: str) -> ClientReply:
    client.send(ClientRequest(client.client_id, seq, encode_op(Put(key, value))))
    reply = await asyncio.wait_for(client.receive(), WAIT_LIMIT_S)
    assert isinstance(reply, ClientReply)
    return reply


async def open_client(
    node: AioNode, client_id: int = 7, tls: TlsConfig | None = None
) -> ClientConnection:
    assert node.transport is not None
    return await ClientConnection.open(
        node.transport.listen_address,
        client_id,
        CLIENT_MESSAGE_TYPES,
        tls=tls,
        node=node.id,
        insecure=tls is None,
    )
