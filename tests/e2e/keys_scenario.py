"""What the key-rotation tests on real processes share: a cluster with
per-node keys and TLS, the operator commands, and a rotation of one node's
signing key and another's certificate under a steady write load."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable

from tests.e2e.conftest import WAIT_LIMIT_S

from quorate.cli.certs import ensure_certificates
from quorate.client import ClientError
from quorate.client.aio import AsyncClient
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.cluster import LocalCluster
from quorate.state.kv import Put

SECURITY = {"retire_after_s": 0.5, "relay_retry_s": 0.3}
WRITERS = 3


def start_keyed(cluster: LocalCluster) -> LocalCluster:
    """Write the cluster's configs with ``SECURITY``, issue its certificates, start every node."""
    cluster.write_configs()
    for node in cluster.ids:
        config = dataclasses.replace(cluster.node_config(node), security=dict(SECURITY))
        cluster.config_path(node).write_text(config.to_toml())
    assert cluster.tls_dir is not None
    ensure_certificates(cluster.tls_dir, [*(node_name(n) for n in cluster.ids), "client"])
    cluster.start_all()
    return cluster


def client_of(cluster: LocalCluster) -> AsyncClient:
    return AsyncClient(cluster=cluster.directory, timeout_s=3.0, deadline_s=60.0)


async def quorate(*args: str) -> tuple[int, str, str]:
    """``quorate ARGS`` as a subprocess: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quorate", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    return process.returncode or 0, out.decode(), err.decode()


def logged(cluster: LocalCluster, node: NodeId, words: str) -> bool:
    return any(words in str(record.get("msg", "")) for record in cluster.log_records(node))


async def rotate_under_load(
    cluster: LocalCluster, client: AsyncClient, *, signing: str, certificate: str, key_of: Callable[[int, int], str]
) -> None:
    """While ``WRITERS`` clients write (writer w's i-th key is ``key_of(w, i)``),
    rotate node ``signing``'s signing key and node ``certificate``'s
    certificate with the operator commands; no operation may fail, writes
    must go on after the rotations, and every acknowledged write reads back."""
    writers = [client_of(cluster) for _ in range(WRITERS)]
    done = asyncio.Event()
    acknowledged: list[tuple[str, str]] = []
    failures: list[str] = []

    async def load(writer: AsyncClient, w: int) -> None:
        i = 0
        while not done.is_set():
            key = key_of(w, i)
            try:
                result = await writer.execute(Put(key, str(i)))
            except (ClientError, TimeoutError) as exc:
                failures.append(repr(exc))
            else:
                assert result.ok
                acknowledged.append((key, str(i)))
            i += 1

    tasks = [asyncio.create_task(load(w, i)) for i, w in enumerate(writers)]
    try:
        code, out, err = await quorate("keys", "rotate", signing, "--dir", str(cluster.directory))
        assert code == 0, err
        assert "new signing key active from log index" in out
        code, out, err = await quorate("certs", "rotate", certificate, "--cluster", str(cluster.directory))
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
