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
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import WAIT_LIMIT_S, free_base_port

from quorate.cli.certs import ensure_certificates
from quorate.client import ClientError
from quorate.client.aio import AsyncClient
from quorate.client.keys import describe, submit
from quorate.crypto.keyfiles import key_file
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.cluster import LocalCluster, wait_for
from quorate.security.keyregistry import make_revocation, public_key_of
from quorate.state.kv import Put

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PBFT_OPTIONS = {"view_change_timeout_s": 10.0, "retransmit_interval_s": 0.5}
SECURITY = {"retire_after_s": 0.5, "relay_retry_s": 0.3}


def _cluster(tmp_path: Path) -> LocalCluster:
    cluster = LocalCluster(
        tmp_path / "pbft",
        nodes=4,
        base_port=free_base_port(4),
        insecure=False,
        protocol="pbft",
        options=dict(PBFT_OPTIONS),
        node_keys=True,
    )
    cluster.write_configs()
    for node in cluster.ids:
        config = dataclasses.replace(cluster.node_config(node), security=dict(SECURITY))
        cluster.config_path(node).write_text(config.to_toml())
    assert cluster.tls_dir is not None
    ensure_certificates(cluster.tls_dir, [*(node_name(n) for n in cluster.ids), "client"])
    cluster.start_all()
    return cluster


def _client(cluster: LocalCluster) -> AsyncClient:
    return AsyncClient(cluster=cluster.directory, timeout_s=3.0, deadline_s=60.0)


async def _quorate(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quorate", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    return process.returncode or 0, out.decode(), err.decode()


def _logged(cluster: LocalCluster, node: NodeId, words: str) -> bool:
    return any(words in str(record.get("msg", "")) for record in cluster.log_records(node))


def test_keys_and_certificates_rotate_under_load_without_a_failed_operation(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)

    async def scenario() -> None:
        client = _client(cluster)
        await client.put("ready", "1")
        writers = [_client(cluster) for _ in range(3)]
        done = asyncio.Event()
        acknowledged: list[tuple[str, str]] = []
        failures: list[str] = []

        async def load(writer: AsyncClient, w: int) -> None:
            i = 0
            while not done.is_set():
                try:
                    result = await writer.execute(Put(f"w{w}/{i}", str(i)))
                except (ClientError, TimeoutError) as exc:
                    failures.append(repr(exc))
                else:
                    assert result.ok
                    acknowledged.append((f"w{w}/{i}", str(i)))
                i += 1

        tasks = [asyncio.create_task(load(w, i)) for i, w in enumerate(writers)]
        try:
            code, out, err = await _quorate("keys", "rotate", "n2", "--dir", str(cluster.directory))
            assert code == 0, err
            assert "new signing key active from log index" in out
            code, out, err = await _quorate("certs", "rotate", "n3", "--cluster", str(cluster.directory))
            assert code == 0, err
            assert "new certificate" in out
            during = len(acknowledged)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_LIMIT_S
            while len(acknowledged) < during + 30:
                assert loop.time() < deadline, "writes stopped after the rotations"
                await asyncio.sleep(0.1)
        finally:
            done.set()
            await asyncio.gather(*tasks)
            for writer in writers:
                await writer.close()
        assert failures == []
        assert len(acknowledged) > 30
        for key, value in acknowledged:
            assert await client.get(key) == value
        await client.close()

    try:
        asyncio.run(scenario())
        assert _logged(cluster, NodeId(2), "now signing with its new key")
        assert _logged(cluster, NodeId(3), "presenting its new certificate")
    finally:
        cluster.stop_all()


def test_a_revoked_replica_is_cut_off_at_one_log_index(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)

    async def scenario() -> None:
        client = _client(cluster)
        await client.put("before", "1")
        code, out, err = await _quorate(
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
            lambda: _logged(cluster, NodeId(4), "stops serving") or not _logged(cluster, NodeId(4), "n4 revoked"),
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
        client = _client(cluster)
        await client.put("before", "1")
        code, out, err = await _quorate("keys", "rotate", "n2", "--dir", str(cluster.directory))
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
