"""The fault proxy's stream mode (for TLS): bytes pass untouched and in order,
late by the link's delay; a lossy link stalls the stream a retransmission
timeout instead of corrupting it; dropping bytes is refused."""

from __future__ import annotations

import asyncio
import random

import pytest

from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.aio.faultproxy import RETRANSMIT_S, FaultProxy, LinkFault

DELAY_S = 0.2
A, B = NodeId(1), NodeId(2)


async def _echo_through(fault: LinkFault, chunks: int) -> tuple[bytes, float, FaultProxy]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = FaultProxy({A: ("127.0.0.1", 1), B: ("127.0.0.1", port)}, frames=False, rng=random.Random(1))
    proxy.set_link(A, B, fault)
    await proxy.start()
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(*proxy.address_for(A, B))
    sent = b"".join(bytes([i]) * 100 for i in range(chunks))
    started = loop.time()
    for i in range(chunks):
        writer.write(bytes([i]) * 100)
        await writer.drain()
        await asyncio.sleep(0.01)
    received = b""
    while len(received) < len(sent):
        received += await asyncio.wait_for(reader.read(65536), 10)
    elapsed = loop.time() - started
    writer.close()
    await proxy.close()
    server.close()
    assert received == sent
    return received, elapsed, proxy


def test_a_stream_passes_in_order_late_by_the_delay() -> None:
    _, elapsed, proxy = asyncio.run(_echo_through(LinkFault(delay_s=DELAY_S), 5))
    assert elapsed >= DELAY_S
    assert proxy.metrics["passed.n1>n2"] >= 1


def test_loss_stalls_the_stream_and_keeps_it_whole() -> None:
    _, elapsed, proxy = asyncio.run(_echo_through(LinkFault(loss=1.0), 3))
    assert elapsed >= RETRANSMIT_S
    assert proxy.metrics["stalled.n1>n2"] >= 1


def test_dropping_bytes_of_a_stream_is_refused() -> None:
    proxy = FaultProxy({A: ("127.0.0.1", 1), B: ("127.0.0.1", 2)}, frames=False)
    with pytest.raises(ConfigError, match="cannot drop"):
        proxy.cut(A, B)
    with pytest.raises(ConfigError, match="probability"):
        LinkFault(loss=1.5)
