"""Limits at a real transport's edge (loopback): one source cannot hold more
than its share of connections or handshakes, half-open and trickling
connections are cut off, client messages are rate-limited per address, and
an authenticated peer is never counted among strangers. Loopback has many
addresses (127.0.0.0/8), so "another host" is another 127.x.y.z."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aio_harness import LOOPBACK, free_ports, make_nodes, wait_until
from toy_replication import toy_binding

from quorate.codec import WireCodec, encode_frame
from quorate.core.wire import WireMessage
from quorate.ids import NodeId
from quorate.runtime.aio import Hello, Transport, TransportConfig
from quorate.runtime.aio.transport import ROLE_CLIENT
from quorate.security.limits import EdgeLimits

pytestmark = pytest.mark.timeout(60)

ATTACKER = "127.0.1.1"
"""Another /24 than the nodes' 127.0.0.1."""
NEIGHBOUR = "127.0.1.2"
"""The attacker's subnet, another address."""
ELSEWHERE = "127.0.2.1"


class Ping(WireMessage, tag="test.Ping", frozen=True):
    n: int


def _transport(port: int, limits: EdgeLimits, received: list[int], **config: float) -> Transport:
    return Transport(
        NodeId(1),
        (LOOPBACK, port),
        {},
        peer_message_types=(),
        client_message_types=(Ping,),
        on_peer_message=lambda *_: None,
        on_client_message=lambda connection, message, group: received.append(connection),
        insecure=True,
        config=TransportConfig(limits=limits, **config),  # type: ignore[arg-type]
    )


async def _connect(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LOOPBACK, port, local_addr=(source, 0))


async def _client(port: int, source: str, client_id: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await _connect(port, source)
    codec = WireCodec((Hello, Ping))
    writer.write(encode_frame(codec.encode(NodeId(client_id), Hello(client_id, ROLE_CLIENT))))
    return reader, writer


async def _closed(reader: asyncio.StreamReader) -> bool:
    with contextlib.suppress(ConnectionError):
        return await asyncio.wait_for(reader.read(), 10) == b""
    return True


def test_one_source_holds_at_most_its_share_of_connections() -> None:
    limits = EdgeLimits(max_connections=20, max_connections_per_address=4, max_connections_per_subnet=6)
    received: list[int] = []

    async def scenario() -> None:
        [port] = free_ports(1)
        transport = _transport(port, limits, received)
        await transport.start()
        held = []
        try:
            for i in range(10):
                held.append(await _client(port, ATTACKER, 100 + i))
            await wait_until(lambda: transport.metrics["refused_connections_per_address"] == 6, "refusals")
            for i in range(3):
                held.append(await _client(port, NEIGHBOUR, 200 + i))
            await wait_until(lambda: transport.metrics["refused_connections_per_subnet"] == 1, "the subnet limit")
            assert transport.connections_held == 6
            # Someone elsewhere is served as usual.
            reader, writer = await _client(port, ELSEWHERE, 300)
            codec = WireCodec((Hello, Ping))
            writer.write(encode_frame(codec.encode(NodeId(300), Ping(1))))
            await wait_until(lambda: len(received) == 1, "the honest client's message")
            held.append((reader, writer))
        finally:
            for _, writer in held:
                writer.close()
            await transport.close()

    asyncio.run(scenario())


def test_by_default_a_stranger_holds_three_connections_and_the_nodes_host_many() -> None:
    """The defaults: the transport listens on 127.0.0.1, so clients on that
    address (a local cluster's) get the member limit; another address gets three."""
    received: list[int] = []

    async def scenario() -> None:
        [port] = free_ports(1)
        transport = _transport(port, EdgeLimits(), received)
        await transport.start()
        held = []
        try:
            for i in range(6):
                held.append(await _client(port, ATTACKER, 100 + i))
            await wait_until(lambda: transport.metrics["refused_connections_per_address"] == 3, "refusals")
            for i in range(20):
                held.append(await _client(port, LOOPBACK, 200 + i))
            await wait_until(lambda: transport.connections_held == 23, "the local clients held")
            assert transport.metrics["refused_connections_per_address"] == 3
        finally:
            for _, writer in held:
                writer.close()
            await transport.close()

    asyncio.run(scenario())


def test_half_open_and_trickling_connections_are_cut_off() -> None:
    limits = EdgeLimits(max_connections_per_address=10, max_handshakes_per_address=3, frame_timeout_s=0.3)
    received: list[int] = []

    async def scenario() -> None:
        [port] = free_ports(1)
        transport = _transport(port, limits, received, handshake_timeout_s=0.3)
        await transport.start()
        try:
            # Silent connections: three wait for their handshake, the rest are refused at once.
            silent = [await _connect(port, ATTACKER) for _ in range(5)]
            await wait_until(lambda: transport.metrics["refused_handshakes_per_address"] == 2, "refusals")
            assert all([await _closed(reader) for reader, _ in silent])
            await wait_until(lambda: transport.metrics["handshake_timeouts"] == 3, "handshake timeouts")
            assert transport.handshakes_in_flight == 0 and transport.connections_held == 0
            # A client that starts a frame and never finishes it.
            reader, writer = await _client(port, ATTACKER, 9)
            writer.write(b"\x00\x00")
            assert await _closed(reader)
            await wait_until(lambda: transport.metrics["frame_timeouts"] == 1, "the frame timeout")
            assert transport.connections_held == 0
        finally:
            await transport.close()

    asyncio.run(scenario())


def test_client_messages_are_rate_limited_per_address() -> None:
    limits = EdgeLimits(client_requests_per_s=20.0)
    received: list[int] = []

    async def scenario() -> None:
        [port] = free_ports(1)
        transport = _transport(port, limits, received)
        await transport.start()
        try:
            codec = WireCodec((Hello, Ping))
            _, writer = await _client(port, ATTACKER, 5)
            writer.write(b"".join(encode_frame(codec.encode(NodeId(5), Ping(i))) for i in range(500)))
            await wait_until(
                lambda: len(received) + transport.metrics["client_rate_limited_drops"] == 500, "every message read"
            )
            assert 20 <= len(received) < 500
            # Another address has its own bucket.
            _, other = await _client(port, ELSEWHERE, 6)
            other.write(encode_frame(codec.encode(NodeId(6), Ping(0))))
            await wait_until(lambda: len(set(received)) == 2, "the other client")
            writer.close()
            other.close()
        finally:
            await transport.close()

    asyncio.run(scenario())


def test_peers_are_not_counted_among_strangers(tmp_path: Path) -> None:
    """With one connection allowed per address, the nodes (all on 127.0.0.1)
    still connect to each other: an authenticated member leaves the strangers'
    accounting as soon as its handshake is done."""

    async def scenario() -> None:
        nodes = make_nodes(tmp_path, 3, toy_binding())
        for node in nodes:
            node.transport_config = TransportConfig(
                backoff_initial_s=0.01, backoff_max_s=0.2, limits=EdgeLimits(max_connections_per_address=1)
            )
        try:
            for node in nodes:
                await node.start()
            await wait_until(
                lambda: all(n.transport is not None and len(n.transport.connected_peers()) == 2 for n in nodes),
                "a full mesh",
            )
            assert all(n.transport is not None and n.transport.connections_held == 0 for n in nodes)
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_a_full_inbox_drops_and_counts(tmp_path: Path) -> None:
    async def scenario() -> None:
        [node] = make_nodes(tmp_path, 1, toy_binding())
        node.max_inbox = 10
        await node.start()
        try:
            for i in range(25):  # in one loop iteration: nothing is processed in between
                node._enqueue(1 << 41, Ping(i), 0, True)
            assert node.counters["inbox_drops"] == 15
        finally:
            await node.close()

    asyncio.run(scenario())
