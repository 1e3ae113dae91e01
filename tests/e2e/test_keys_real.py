"""Key rotation and revocation on real node processes (TLS, per-node keys),
driven by the operator commands: ``quorate keys rotate``, ``quorate certs
rotate``, ``quorate keys revoke``.

- Under a steady write load, a PBFT replica's signing key and another's
  certificate are replaced without a restart: no client operation fails
  (retries are allowed), every acknowledged write reads back, and the nodes
  say they switched.
- A revoked replica is cut off at one log index on every node that applied
  it; its signature stops counting, and the other three keep committing.
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
from quorate.ids import NodeId
from quorate.runtime.aio.cluster import LocalCluster, wait_for
from quorate.security.keyregistry import make_revocation, public_key_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PBFT_OPTIONS = {"view_change_timeout_s": 10.0, "retransmit_interval_s": 0.5}


def _cluster(tmp_path: Path) -> LocalCluster:
    return start_keyed(
        LocalCluster(
            tmp_path / "pbft",
            nodes=4,
            base_port=free_base_port(4),
            insecure=False,
            protocol="pbft",
            options=dict(PBFT_OPTIONS),
            node_keys=True,
        )
    )


def test_keys_and_certificates_rotate_under_load_without_a_failed_operation(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)

    async def scenario() -> None:
        client = client_of(cluster)
        await client.put("ready", "1")
        await rotate_under_load(cluster, client, signing="n2", certificate="n3", key_of=lambda w, i: f"w{w}/{i}")
        await client.close()

    try:
        asyncio.run(scenario())
        assert logged(cluster, NodeId(2), "now signing with its new key")
        assert logged(cluster, NodeId(3), "presenting its new certificate")
    finally:
        cluster.stop_all()


def test_a_revoked_replica_is_cut_off_at_one_log_index(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)

    async def scenario() -> None:
        client = client_of(cluster)
        await client.put("before", "1")
        code, out, err = await quorate(
            "keys", "revoke", "n4", "--as", "n1,n2,n3", "--reason", "test", "--dir", str(cluster.directory)
        )
        assert code == 0, err
        index = int(out.strip().rsplit(" ", 1)[1])
        honest = [NodeId(1), NodeId(2), NodeId(3)]

        async def revoked_at() -> list[Any]:
            statuses = await client.cluster_status()
            return [s.metrics.get("keys.revoked_at.n4") if s is not None else None for s in statuses[:3]]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_LIMIT_S
        while await revoked_at() != [index] * 3:
            assert loop.time() < deadline, await revoked_at()
            await asyncio.sleep(0.2)
        # The three others keep committing (n = 4 tolerates one faulty replica).
        for i in range(5):
            await client.put(f"after{i}", str(i))
        assert await client.get("after4") == "4"
        # n4's signature no longer counts, on every replica, with a reason.
        state = await describe(client)
        seed4 = bytes.fromhex(key_file(cluster.directory / "keys", NodeId(4)).read_text().strip())
        with pytest.raises(ClientError, match="approver is revoked"):
            await submit(client, make_revocation(bytes.fromhex(state["cluster"]), 1, 4, "", seed4))
        statuses = [s for s in await client.cluster_status() if s is not None and NodeId(s.node) in honest]
        assert all(s.metrics.get("keys.refused", 0) >= 1 for s in statuses)
        await client.close()

    try:
        asyncio.run(scenario())
        # n4 either applied its own revocation (and stopped serving) or never heard of it.
        assert wait_for(
            lambda: logged(cluster, NodeId(4), "stops serving") or not logged(cluster, NodeId(4), "n4 revoked"),
            WAIT_LIMIT_S,
        )
    finally:
        cluster.stop_all()


def test_a_replica_restarts_with_its_rotated_key(tmp_path: Path) -> None:
    """After a rotation n2's key file holds the new seed while public-keys.toml
    (the genesis) still lists the old key: n2 restarts all the same, replays
    the log to where its new key is active, and takes part again."""
    cluster = _cluster(tmp_path)

    async def scenario() -> None:
        client = client_of(cluster)
        await client.put("before", "1")
        code, out, err = await quorate("keys", "rotate", "n2", "--dir", str(cluster.directory))
        assert code == 0, err
        assert "the old key retired" in out
        cluster.stop(NodeId(2))
        cluster.start(NodeId(2))
        for i in range(5):
            await client.put(f"after{i}", str(i))

        async def n2_caught_up() -> bool:
            statuses = await client.cluster_status()
            applied = [s.applied_index if s is not None else None for s in statuses]
            return applied[1] is not None and applied[1] == max(a for a in applied if a is not None)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_LIMIT_S
        while not await n2_caught_up():
            assert loop.time() < deadline, await client.cluster_status()
            await asyncio.sleep(0.2)
        state = await describe(client)
        [live] = [r["key"] for r in state["nodes"]["n2"]["signing"] if r["retired_at"] is None]
        seed2 = bytes.fromhex(key_file(cluster.directory / "keys", NodeId(2)).read_text().strip())
        assert live == public_key_of(seed2).hex()
        await client.close()

    try:
        asyncio.run(scenario())
        assert cluster.exit_reason(NodeId(2)) is None
    finally:
        cluster.stop_all()
