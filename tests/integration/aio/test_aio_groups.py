"""One node process hosting two protocol groups side by side (the shape of an
HRB shard manager: its shard's Raft group and the core's BFT group): a Raft
group 0 and a PBFT group 1 on the same four real nodes, one transport and one
store each, every frame carrying its group.

- Writes to each group commit in that group only: the Raft group's store and
  the PBFT group's store hold different keys.
- A PBFT client's request (group 1) gets f + 1 = 2 matching answers; a Raft
  request to the leader of group 0 gets its answer.
- Both groups' durable writes share the node's store and its fsyncs; after a
  restart every node recovers both groups from one data directory.
- A request for a group the node does not host is refused in one reply, and
  the node keeps serving.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from aio_harness import FAST_BACKOFF, LOOPBACK, WAIT_LIMIT_S, free_ports, wait_until

from quorate.ids import NodeId
from quorate.runtime.aio import AioNode, ClientConnection
from quorate.runtime.aio.node import GroupConfig
from quorate.state.kv import Get, Put, decode_result, encode_op
from quorate.state.service import (
    CLIENT_MESSAGE_TYPES,
    STATUS_ERROR,
    STATUS_OK,
    ClientReply,
    ClientRequest,
)

NODES = 4
PBFT_GROUP = 1
PBFT_OPTIONS = {"view_change_timeout_s": 10.0, "batch_timeout_s": 0.001}


def _nodes(tmp_path: Path, ports: list[int]) -> list[AioNode]:
    addresses = {NodeId(i + 1): (LOOPBACK, ports[i]) for i in range(NODES)}
    members = tuple(addresses)
    return [
        AioNode(
            node_id,
            addresses,
            tmp_path / f"n{node_id}",
            listen=address,
            protocol="raft",
            insecure=True,
            transport_config=FAST_BACKOFF,
            groups=[GroupConfig(PBFT_GROUP, "pbft", members, PBFT_OPTIONS)],
        )
        for node_id, address in addresses.items()
    ]


async def _connect(node: AioNode, client_id: int) -> ClientConnection:
    assert node.transport is not None
    return await ClientConnection.open(
        node.transport.listen_address, client_id, CLIENT_MESSAGE_TYPES, insecure=True
    )


async def _bft_call(connections: list[ClientConnection], client_id: int, seq: int, op: bytes) -> bytes:
    """Send to every replica of the PBFT group; the result f + 1 of them agree on."""
    request = ClientRequest(client_id, seq, op)
    for connection in connections:
        connection.send(request, PBFT_GROUP)
    votes: Counter[bytes] = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_S
    pending = {asyncio.ensure_future(c.receive_grouped()): c for c in connections}
    try:
        while loop.time() < deadline:
            done, _ = await asyncio.wait(pending, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                connection = pending.pop(task)
                reply, group = task.result()
                assert group == PBFT_GROUP
                if isinstance(reply, ClientReply) and reply.status == STATUS_OK and reply.seq == seq:
                    votes[reply.result] += 1
                    if votes[reply.result] >= 2:
                        return reply.result
                pending[asyncio.ensure_future(connection.receive_grouped())] = connection
        raise AssertionError(f"no 2 matching PBFT answers: {votes}")
    finally:
        for task in pending:
            task.cancel()


async def _raft_put(nodes: list[AioNode], client_id: int, seq: int, key: str, value: str) -> None:
    leader = next(n for n in nodes if n.core is not None and n.core.is_leader)
    connection = await _connect(leader, client_id)
    try:
        connection.send(ClientRequest(client_id, seq, encode_op(Put(key, value))))
        reply = await asyncio.wait_for(connection.receive(), WAIT_LIMIT_S)
        assert isinstance(reply, ClientReply) and reply.status == STATUS_OK, reply
    finally:
        await connection.close()


def test_a_raft_group_and_a_pbft_group_share_the_nodes(tmp_path: Path) -> None:
    ports = free_ports(NODES)

    async def run_once(first: bool) -> None:
        nodes = _nodes(tmp_path, ports)
        for node in nodes:
            await node.start()
        connections: list[ClientConnection] = []
        try:
            await wait_until(lambda: any(n.core.is_leader for n in nodes), "a Raft leader in group 0")
            connections = [await _connect(n, 900) for n in nodes]
            if first:
                await _raft_put(nodes, 500, 1, "raft-key", "r")
                result = decode_result(await _bft_call(connections, 900, 1, encode_op(Put("pbft-key", "p"))))
                assert result.ok
            # Each group holds its own key and not the other's.
            got = decode_result(await _bft_call(connections, 901 if first else 902, 1, encode_op(Get("pbft-key"))))
            assert got.value == "p"
            missing = decode_result(await _bft_call(connections, 903 if first else 904, 1, encode_op(Get("raft-key"))))
            assert missing.value is None
            await wait_until(
                lambda: all(n.service is not None and n.service.kv.get("raft-key") == "r" for n in nodes),
                "the Raft write applied on every node",
            )
            assert all(n.service.kv.get("pbft-key") is None for n in nodes)  # type: ignore[union-attr]
            # One store per node holds both groups.
            for node in nodes:
                groups = {record.group: record.protocol for record in node.storage_or_raise().groups()}
                assert groups == {0: "raft", PBFT_GROUP: "pbft"}
            # A group nobody hosts: refused in one reply, the node keeps serving.
            stray = connections[0]
            stray.send(ClientRequest(900, 99, encode_op(Get("x"))), 7)
            reply, group = await asyncio.wait_for(stray.receive_grouped(), WAIT_LIMIT_S)
            assert group == 7 and isinstance(reply, ClientReply) and reply.status == STATUS_ERROR
            assert nodes[0].metrics["client_requests_unknown_group"] == 1
        finally:
            for connection in connections:
                await connection.close()
            for node in nodes:
                await node.close()

    async def main() -> None:
        await run_once(first=True)
        await run_once(first=False)  # restarted from the same data directories

    asyncio.run(main())
