"""Raft on real nodes: three AioNodes on loopback elect a leader, commit a
client's writes through SQLite, survive the leader's crash, and a restarted
node catches up from its own disk plus the new leader."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aio_harness import (
    POLL_INTERVAL_S,
    WAIT_LIMIT_S,
    free_ports,
    make_nodes,
    open_client,
    put,
    wait_until,
)

from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.aio import AioNode, protocol_binding
from quorate.state.kv import Get
from quorate.state.service import STATUS_OK, STATUS_REDIRECT, STATUS_RETRY

pytest.importorskip("quorate.raft")
pytestmark = pytest.mark.timeout(60)

RAFT_TIMING = {"election_timeout_s": 0.3, "heartbeat_interval_s": 0.03}


def leaders(nodes: list[AioNode]) -> list[AioNode]:
    return [n for n in nodes if n.core is not None and n.core.is_leader]


def value_of(node: AioNode, key: str) -> str | None:
    assert node.service is not None
    return node.service.kv.read(Get(key)).value  # type: ignore[no-any-return]


async def put_through_leader(live: list[AioNode], client_id: int, seq: int, key: str, value: str) -> None:
    """Put through whichever node leads now, retrying with the same session
    and number (exactly-once) when leadership moves: with a 0.3 s election
    timeout a loaded machine may elect a new leader at any moment."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_S
    while True:
        await wait_until(lambda: len(leaders(live)) == 1, "a leader")
        client = await open_client(leaders(live)[0], client_id=client_id)
        try:
            reply = await put(client, seq, key, value)
        finally:
            await client.close()
        if reply.status == STATUS_OK:
            return
        assert reply.status in (STATUS_REDIRECT, STATUS_RETRY), reply
        assert loop.time() < deadline, f"no leader took {key!r}: {reply}"
        await asyncio.sleep(POLL_INTERVAL_S)


def test_unknown_protocol_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown protocol"):
        protocol_binding("paxos-made-complicated")


def test_raft_cluster_commits_survives_leader_crash_and_recovers(tmp_path: Path) -> None:
    async def scenario() -> None:
        binding = protocol_binding("raft")
        ports = free_ports(3)
        nodes = make_nodes(tmp_path, 3, binding, ports=ports)
        for node in nodes:
            node.protocol_options = dict(RAFT_TIMING)
        live = list(nodes)
        try:
            for node in nodes:
                await node.start()
            await wait_until(lambda: len(leaders(live)) == 1, "a leader")
            for seq in range(1, 4):
                await put_through_leader(live, 7, seq, f"k{seq}", "v1")
            await wait_until(lambda: all(value_of(n, "k3") == "v1" for n in live), "replication")

            # The leader crashes; the other two elect a new one and keep committing.
            await wait_until(lambda: len(leaders(live)) == 1, "a leader")
            first = leaders(live)[0]
            await first.close()
            live.remove(first)
            await put_through_leader(live, 8, 1, "k4", "v2")

            # The old leader restarts from its disk and catches up.
            index = first.id - 1
            restarted = make_nodes(tmp_path, 3, binding, ports=ports)[index]
            restarted.protocol_options = dict(RAFT_TIMING)
            await restarted.start()
            live.append(restarted)
            assert restarted.storage is not None
            assert restarted.storage.last_index() >= 4  # no-op + three writes, from disk
            await wait_until(lambda: value_of(restarted, "k4") == "v2", "the restarted node")
            assert value_of(restarted, "k1") == "v1"
            assert restarted.core.id == NodeId(index + 1)
        finally:
            for node in live:
                await node.close()

    asyncio.run(scenario())
