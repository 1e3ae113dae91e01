"""Key rotation and revocation on a multi-Raft cluster of real processes.

A multi-Raft node hosts the meta group only when it is a meta voter; the key
registry lives in a group of its own on every node (``REGISTRY_GROUP``), so
``quorate keys rotate`` works for a node outside the meta group too, and a
revocation is applied at one index of that group's log on every node.

- Under a steady write load spread over the ranges, a node that is not a
  meta voter rotates its signing key and another its certificate: no client
  operation fails (retries are allowed) and every acknowledged write reads
  back.
- A revoked node (again not a meta voter) is cut off at one registry index
  on every other node; the cluster keeps committing and the revoked key's
  signature no longer counts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import WAIT_LIMIT_S, free_base_port
from tests.e2e.keys_scenario import client_of, logged, quorate, rotate_under_load, start_keyed

from quorate.client import ClientError
from quorate.client.keys import describe, submit
from quorate.crypto.keyfiles import key_file
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.cluster import LocalCluster
from quorate.security.keyregistry import make_revocation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NODES = 5


def _cluster(tmp_path: Path) -> LocalCluster:
    return start_keyed(
        LocalCluster(
            tmp_path / "multiraft",
            nodes=NODES,
            base_port=free_base_port(NODES),
            insecure=False,
            node_keys=True,
            ranges=4,
            replicas=3,
        )
    )


def test_multiraft_keys_rotate_and_a_node_is_revoked_at_one_index(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)

    async def scenario() -> None:
        client = client_of(cluster)
        await client.put("ready", "1")
        # n5 and n4 host no replica of the meta group (n1-n3 do).
        await rotate_under_load(
            cluster,
            client,
            signing="n5",
            certificate="n4",
            key_of=lambda w, i: f"{(w * 7919 + i * 104729) % 65536:04x}/{w}/{i}",  # spread over the four ranges
        )
        state = await describe(client)
        assert sorted(state["nodes"]) == [node_name(n) for n in cluster.ids]

        # Revoke n4, signed by n1, n2 and n5 (n5 with its rotated key).
        code, out, err = await quorate(
            "keys", "revoke", "n4", "--as", "n1,n2,n5", "--reason", "test", "--dir", str(cluster.directory)
        )
        assert code == 0, err
        index = int(out.strip().rsplit(" ", 1)[1])
        others = [NodeId(1), NodeId(2), NodeId(3), NodeId(5)]

        async def revoked_at() -> list[Any]:
            statuses = {s.node: s for s in await client.cluster_status() if s is not None}
            return [statuses[n].metrics.get("keys.revoked_at.n4") if n in statuses else None for n in others]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_LIMIT_S
        while await revoked_at() != [index] * len(others):
            assert loop.time() < deadline, await revoked_at()
            await asyncio.sleep(0.2)
        # Every range keeps a majority of its three replicas: writes go on.
        for i in range(8):
            await client.put(f"{i * 0x2000:04x}/after", str(i))
        assert await client.get("e000/after") == "7"
        seed4 = bytes.fromhex(key_file(cluster.directory / "keys", NodeId(4)).read_text().strip())
        with pytest.raises(ClientError, match="approver is revoked"):
            await submit(client, make_revocation(bytes.fromhex(state["cluster"]), 1, 4, "", seed4))
        await client.close()

    try:
        asyncio.run(scenario())
        assert logged(cluster, NodeId(5), "now signing with its new key")
        assert logged(cluster, NodeId(4), "presenting its new certificate")
    finally:
        cluster.stop_all()
