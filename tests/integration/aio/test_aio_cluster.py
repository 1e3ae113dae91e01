"""Real nodes on loopback: three AioNodes running the toy replication core
answer clients, replicate through SQLite-backed storage, batch many proposals
into one fsync, and recover their state after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aio_harness import make_nodes, open_client, put, wait_until
from toy_replication import toy_binding

from quorate.state.kv import Get, Put, encode_op
from quorate.state.service import STATUS_OK, STATUS_REDIRECT, ClientReply, ClientRequest

pytestmark = pytest.mark.timeout(60)


def value_of(node: object, key: str) -> str | None:
    result = node.service.kv.read(Get(key))  # type: ignore[attr-defined]
    return result.value  # type: ignore[no-any-return]


def test_three_nodes_replicate_client_writes(tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = make_nodes(tmp_path, 3, toy_binding())
        try:
            for node in nodes:
                await node.start()
            client = await open_client(nodes[0])
            for seq in range(1, 6):
                reply = await put(client, seq, f"k{seq}", f"v{seq}")
                assert reply.status == STATUS_OK, reply
            await wait_until(
                lambda: all(value_of(n, "k5") == "v5" for n in nodes), "followers to apply"
            )
            assert [value_of(n, "k1") for n in nodes] == ["v1"] * 3
            # Every node persisted the five entries before acknowledging them.
            for node in nodes:
                assert node.storage is not None
                assert node.storage.last_index() == 5
            await client.close()
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_a_follower_redirects_clients_to_the_leader(tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = make_nodes(tmp_path, 3, toy_binding())
        try:
            for node in nodes:
                await node.start()
            client = await open_client(nodes[2])
            reply = await put(client, 1, "k", "v")
            assert (reply.status, reply.leader) == (STATUS_REDIRECT, 1)
            await client.close()
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_a_burst_of_proposals_shares_few_fsyncs(tmp_path: Path) -> None:
    """Requests that arrive together are stepped in one batch and persisted in
    one transaction (group commit), not one fsync each."""
    requests = 200

    async def scenario() -> None:
        nodes = make_nodes(tmp_path, 3, toy_binding())
        try:
            for node in nodes:
                await node.start()
            leader = nodes[0]
            await wait_until(lambda: len(leader.transport.connected_peers()) == 2, "peers")  # type: ignore[union-attr]
            client = await open_client(leader)
            before = leader.counters["persists"]
            for seq in range(1, requests + 1):
                client.send(ClientRequest(client.client_id, seq, encode_op(Put(f"k{seq}", "v"))))
            replies = [await asyncio.wait_for(client.receive(), 15) for _ in range(requests)]
            assert all(isinstance(r, ClientReply) and r.status == STATUS_OK for r in replies)
            persists = leader.counters["persists"] - before
            assert persists < requests // 4, f"{persists} persists for {requests} proposals"
            await client.close()
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_a_restarted_node_recovers_its_log_from_disk(tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = make_nodes(tmp_path, 3, toy_binding())
        ports = [n.listen[1] for n in nodes]
        try:
            for node in nodes:
                await node.start()
            client = await open_client(nodes[0])
            for seq in range(1, 4):
                assert (await put(client, seq, f"k{seq}", "before")).status == STATUS_OK
            await wait_until(lambda: value_of(nodes[2], "k3") == "before", "n3 to apply")
            await nodes[2].close()
            # Written while n3 is down: a majority (n1, n2) still commits.
            assert (await put(client, 4, "k4", "while-down")).status == STATUS_OK
            restarted = make_nodes(tmp_path, 3, toy_binding(), ports=ports)[2]
            nodes[2] = restarted
            await restarted.start()
            # The log on disk rebuilds the state machine; the leader fills the gap.
            await wait_until(lambda: value_of(restarted, "k4") == "while-down", "n3 to catch up")
            assert value_of(restarted, "k1") == "before"
            assert restarted.storage is not None and restarted.storage.last_index() == 4
            await client.close()
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())
