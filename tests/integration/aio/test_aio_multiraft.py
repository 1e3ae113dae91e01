"""Multi-Raft on real nodes (in-process asyncio nodes on loopback, SQLite, fsync on).

- The nodes host the meta group and 8 range groups; a client routes each
  key to its range's leader through its range cache (lookups in the meta
  group), and every write reads back.
- On four nodes, ranges split while clients write (``split_at_ops``): the
  right-hand range groups are spawned on their replicas at run time (the
  range leaders ask the meta group, service to service, across nodes), each
  new range moves a replica (the target node joins on the leader's first
  message; the source is retired and leaves a tombstone), every
  acknowledged write still reads back, and a restart recovers the spawned
  groups and the tombstones from the store.
- Bad input: a message of an unknown group, of a retired group and a client
  request for a group the node does not host are dropped and counted or
  answered ``wrong_range``; the node keeps serving.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aio_harness import FAST_BACKOFF, LOOPBACK, WAIT_LIMIT_S, free_ports, wait_until

from quorate.client.aio import AsyncClient
from quorate.ids import NodeId
from quorate.multiraft.descriptor import META_GROUP
from quorate.multiraft.messages import MULTIRAFT, STATUS_WRONG_RANGE, RangesReply, RangesStatus
from quorate.runtime.aio import ClientConnection
from quorate.runtime.aio.admin import CLIENT_PROTOCOL_TYPES
from quorate.runtime.aio.multiraft import TOMBSTONE, MultiRaftNode, RangeLayout
from quorate.state.kv import Get, encode_op
from quorate.state.service import ClientReply, ClientRequest

RAFT_OPTIONS = {"election_timeout_s": 0.5, "heartbeat_interval_s": 0.05}


def _nodes(tmp_path: Path, ports: list[int], layout: RangeLayout) -> list[MultiRaftNode]:
    addresses = {NodeId(i + 1): (LOOPBACK, ports[i]) for i in range(len(ports))}
    return [
        MultiRaftNode(
            node_id,
            addresses,
            tmp_path / f"n{node_id}",
            listen=address,
            protocol="raft",
            protocol_options=RAFT_OPTIONS,
            insecure=True,
            transport_config=FAST_BACKOFF,
            layout=layout,
        )
        for node_id, address in addresses.items()
    ]


def _client(ports: list[int], client_id: int) -> AsyncClient:
    return AsyncClient(
        [(LOOPBACK, p) for p in ports], insecure=True, client_id=client_id, deadline_s=WAIT_LIMIT_S
    )


def _leaders(nodes: list[MultiRaftNode]) -> set[int]:
    """Range groups with a leader on some node."""
    led = set()
    for node in nodes:
        for view in node.ranges_status().ranges:
            if view.role == "leader":
                led.add(view.range_id)
    return led


def test_ranges_on_four_nodes_route_split_move_and_recover(tmp_path: Path) -> None:
    ports = free_ports(4)
    layout = RangeLayout(ranges=8, replicas=3, split_at_ops=12)

    async def run_once(first: bool) -> None:
        nodes = _nodes(tmp_path, ports, layout)
        for node in nodes:
            await node.start()
        try:
            assert all(node.status().protocol == MULTIRAFT for node in nodes)
            await wait_until(lambda: len(_leaders(nodes)) >= 8, "a leader in each range group")
            clients = [_client(ports, 100 + i) for i in range(4)]
            try:
                if first:
                    async def writer(i: int, client: AsyncClient) -> None:
                        for n in range(30):
                            await client.put(f"{(i * 37 + n * 11) % 256:02x}-{i}-{n}", f"v{i}.{n}")

                    await asyncio.gather(*(writer(i, c) for i, c in enumerate(clients)))
                    assert sum(c.ranged.lookups for c in clients) > 0
                for i, client in enumerate(clients):
                    for n in range(30):
                        assert await client.get(f"{(i * 37 + n * 11) % 256:02x}-{i}-{n}") == f"v{i}.{n}"
            finally:
                for client in clients:
                    await client.close()
            hosted = {g.id for node in nodes for g in node.host_or_raise()}
            # Splits made new range groups beyond the first eight, at run time or recovered.
            assert any(8 < g < 1000 for g in hosted), hosted
            if first:
                # Each new range moves a replica to the fourth node: the moved-away
                # replica is retired (the leader's Retire) and leaves a tombstone.
                await wait_until(lambda: any(node.tombstones for node in nodes), "a replica moved away")
                assert sum(node.metrics.get("groups.joined", 0) for node in nodes) > 0
            else:
                assert any(node.tombstones for node in nodes)
                assert all(
                    node.tombstones == {r.group for r in node.storage_or_raise().groups() if r.protocol == TOMBSTONE}
                    for node in nodes
                )
        finally:
            for node in nodes:
                await node.close()

    async def main() -> None:
        await run_once(True)
        await run_once(False)

    asyncio.run(main())


def test_unknown_and_retired_groups_are_dropped_and_counted(tmp_path: Path) -> None:
    ports = free_ports(3)

    async def main() -> None:
        nodes = _nodes(tmp_path, ports, RangeLayout(ranges=2, replicas=3))
        for node in nodes:
            await node.start()
        connection = None
        try:
            await wait_until(lambda: len(_leaders(nodes)) >= 2, "a leader in each range group")
            node = nodes[0]
            # A follower's message of a group nobody hosts: dropped and counted, no group made.
            node._on_peer_message(NodeId(2), ClientRequest(1, 1, b""), 777)
            await wait_until(lambda: node.metrics.get("rejected.unknown group", 0) >= 1, "the drop counted")
            assert 777 not in node.host_or_raise()
            # A client request for a group this node does not host: wrong_range.
            connection = await ClientConnection.open(
                (LOOPBACK, ports[0]), 900, (*CLIENT_PROTOCOL_TYPES, RangesStatus, RangesReply), insecure=True
            )
            connection.send(ClientRequest(900, 1, encode_op(Get("k"))), 555)
            reply, group = await asyncio.wait_for(connection.receive_grouped(), WAIT_LIMIT_S)
            assert group == 555 and isinstance(reply, ClientReply) and reply.status == STATUS_WRONG_RANGE
            connection.send(RangesStatus(2))
            listing = await asyncio.wait_for(connection.receive(), WAIT_LIMIT_S)
            assert isinstance(listing, RangesReply) and [v.range_id for v in listing.ranges] == [1, 2]
            # A retired group is never hosted again, whatever arrives for it.
            node._retire(2)
            node._drive()
            assert 2 not in node.host_or_raise() and 2 in node.tombstones
            before = node.metrics.get("rejected.unknown group", 0)
            other = next(n for n in nodes[1:] if n.host_or_raise().get(2) is not None)
            core = other.host_or_raise().get(2)
            assert core is not None
            other.host_or_raise().touch(core)
            await wait_until(
                lambda: node.metrics.get("rejected.unknown group", 0) > before, "a message of the retired group dropped"
            )
            assert 2 not in node.host_or_raise()
            assert node.host_or_raise().get(META_GROUP) is not None  # still serving
        finally:
            if connection is not None:
                await connection.close()
            for node in nodes:
                await node.close()
        # The tombstone is durable: after a restart the group stays retired.
        again = _nodes(tmp_path, ports, RangeLayout(ranges=2, replicas=3))[0]
        await again.start()
        try:
            assert again.tombstones == {2} and 2 not in again.host_or_raise() and 1 in again.host_or_raise()
        finally:
            await again.close()

    asyncio.run(main())
