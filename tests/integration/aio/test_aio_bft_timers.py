"""Timers of a BFT core on a real node: a deadline that moves while an fsync
is in flight is honoured when it comes, not at the next unrelated wake-up.

A PBFT primary whose batch does not fill sends it when ``batch_timeout_s``
ends. Requests that arrive while the node waits for an fsync move that
deadline, and the core reports deadlines only in its Readies; the node must
ask for a fresh Ready once the fsync is done, or the batch waits for the
retransmission timer (here 30 s, beyond the clients' deadline)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aio_harness import FAST_BACKOFF, LOOPBACK, free_ports

from quorate.client.bft import BftChannel, BftClient
from quorate.ids import NodeId
from quorate.runtime.aio import AioNode

NODES = 4
SESSIONS = 32
"""Enough that executed batches are persisted on the worker thread, so new
requests arrive while an fsync is in flight."""
PUTS = 10
OPTIONS = {
    "batch_max": 1000,  # never full: every batch leaves on its timer
    "batch_timeout_s": 0.005,
    "retransmit_interval_s": 30.0,
    "view_change_timeout_s": 60.0,
}
CLIENT_DEADLINE_S = 20.0


def test_partial_batches_leave_on_their_timer(tmp_path: Path) -> None:
    ports = free_ports(NODES)
    addresses = {NodeId(i + 1): (LOOPBACK, ports[i]) for i in range(NODES)}

    async def main() -> None:
        nodes = [
            AioNode(
                node_id,
                addresses,
                tmp_path / f"n{node_id}",
                listen=address,
                protocol="pbft",
                protocol_options=OPTIONS,
                insecure=True,
                transport_config=FAST_BACKOFF,
            )
            for node_id, address in addresses.items()
        ]
        for node in nodes:
            await node.start()
        channel = BftChannel([f"{LOOPBACK}:{p}" for p in ports], insecure=True)
        try:
            sessions = [
                BftClient(
                    channel=channel,
                    client_id=100 + i,
                    timeout_s=CLIENT_DEADLINE_S,  # no resend: it would wake the primary
                    deadline_s=CLIENT_DEADLINE_S,
                )
                for i in range(SESSIONS)
            ]

            async def run(i: int, session: BftClient) -> None:
                for k in range(PUTS):
                    await session.put(f"s{i}/k{k}", str(k))

            await asyncio.gather(*(run(i, s) for i, s in enumerate(sessions)))
            assert channel.retries == 0
            assert await sessions[0].get("s7/k9") == "9"
        finally:
            await channel.close()
            for node in nodes:
                await node.close()

    asyncio.run(main())
