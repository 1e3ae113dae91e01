"""The key registry on running nodes (in this process, real TCP and TLS):
rotation of signing keys and certificates with an overlap, revocation at one
log index on every node, and bad registry input refused with a reason."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import pytest
from aio_harness import FAST_BACKOFF, LOOPBACK, free_ports, wait_until

from quorate.cli.certs import issue_certificate
from quorate.client import AsyncClient, ClientError
from quorate.client.keys import (
    announce_certificate,
    approve,
    describe,
    request_admission,
    revoke,
    rotate_signing_key,
    submit,
    wait_until_retired,
)
from quorate.codec import WireCodec, encode_frame
from quorate.crypto.keyfiles import issue_node_key, key_file
from quorate.ids import NodeId
from quorate.runtime.aio import AioNode, Hello, TlsConfig
from quorate.runtime.aio.security import SecuritySettings, certificate_fingerprint_file
from quorate.runtime.aio.transport import ROLE_PEER
from quorate.security.keyregistry import (
    KIND_SIGNING,
    KIND_TLS,
    MACHINE_NAME,
    make_announcement,
    make_revocation,
)
from quorate.state.kv import Extension, Put

pytestmark = pytest.mark.timeout(180)

SETTINGS = SecuritySettings(retire_after_s=0.3, relay_retry_s=0.3)


def _cluster(tmp_path: Path, certs: Path, protocol: str, count: int) -> tuple[list[AioNode], Path, Path]:
    keys = tmp_path / "keys"
    for i in range(1, count + 1):
        issue_node_key(keys, NodeId(i))
    tls_dir = tmp_path / "certs"
    shutil.copytree(certs, tls_dir)
    for i in range(4, count + 1):
        issue_certificate(tls_dir, f"n{i}")
    ports = free_ports(count)
    addresses = {NodeId(i + 1): (LOOPBACK, ports[i]) for i in range(count)}
    options: dict[str, object] = {"keys_dir": str(keys)}
    if protocol == "raft":
        options |= {"election_timeout_s": 0.5, "heartbeat_interval_s": 0.05}
    nodes = [
        AioNode(
            n,
            addresses,
            tmp_path / f"n{n}",
            listen=addresses[n],
            protocol=protocol,
            protocol_options=options,
            tls=TlsConfig.from_directory(tls_dir, f"n{n}"),
            transport_config=FAST_BACKOFF,
            security=SETTINGS,
        )
        for n in addresses
    ]
    return nodes, keys, tls_dir


def _client(nodes: list[AioNode], tls_dir: Path) -> AsyncClient:
    endpoints = [node.listen for node in nodes]
    return AsyncClient(endpoints, tls=tls_dir, tls_name="client-a", timeout_s=2.0, deadline_s=30.0)


async def _close(nodes: list[AioNode], client: AsyncClient | None = None) -> None:
    if client is not None:
        await client.close()
    for node in nodes:
        await node.close()


def test_a_signing_key_rotates_on_a_running_raft_cluster(tmp_path: Path, cluster_certs: Path) -> None:
    async def scenario() -> None:
        nodes, keys, tls_dir = _cluster(tmp_path, cluster_certs, "raft", 3)
        for node in nodes:
            await node.start()
        client = _client(nodes, tls_dir)
        try:
            await client.put("before", "1")
            old_key = nodes[1].keyring.own_signer.public_key  # type: ignore[union-attr]
            decided = await rotate_signing_key(client, keys, NodeId(2))
            assert decided.index is not None
            signer = nodes[1].keyring.own_signer  # type: ignore[union-attr]
            await wait_until(lambda: signer.public_key != old_key, "n2 to apply the activation and switch")
            new_key = signer.public_key
            # n2 retires its old key itself once the overlap is over.
            retired_at = await wait_until_retired(client, NodeId(2), KIND_SIGNING)
            assert retired_at > decided.index
            await wait_until(
                lambda: all(n.keyring.registry.valid_keys(2) == (new_key,) for n in nodes),  # type: ignore[union-attr]
                "every node to hold only n2's new key",
            )
            assert key_file(keys, NodeId(2)).read_text().strip() == nodes[1].keyring.own_signer.seed.hex()  # type: ignore[union-attr]
            assert not key_file(keys, NodeId(2)).with_name("n2.key.next").exists()
            await client.put("after", "2")
            assert await client.get("before") == "1"
            # Every node activated it at the same log index.
            states = [n.keyring.registry.describe()["nodes"]["n2"] for n in nodes]  # type: ignore[union-attr]
            assert len({str(s) for s in states}) == 1
        finally:
            await _close(nodes, client)

    asyncio.run(scenario())


def test_revocation_cuts_a_node_off_at_one_log_index_everywhere(tmp_path: Path, cluster_certs: Path) -> None:
    async def scenario() -> None:
        nodes, keys, tls_dir = _cluster(tmp_path, cluster_certs, "raft", 3)
        for node in nodes:
            await node.start()
        client = _client(nodes, tls_dir)
        try:
            await client.put("k", "v")
            decided = await revoke(client, keys, NodeId(3), [NodeId(1), NodeId(2)], "key leaked")
            assert decided.index is not None
            at = decided.index
            await wait_until(
                lambda: all(n.metrics.get("keys.revoked_at.n3") == at for n in nodes[:2]),
                "n1 and n2 to apply the revocation",
            )
            # n3 is cut off at once, so it may never hear that index committed;
            # if it applied that far, it was revoked at the same index (and stopped).
            n3 = nodes[2]
            assert n3.service is not None
            if n3.service.applied >= at:
                assert n3.metrics.get("keys.revoked_at.n3") == at
                assert n3._failed
            else:
                assert "keys.revoked_at.n3" not in n3.metrics
            # Its peers refuse it from now on (they dial it and turn it away).
            await wait_until(
                lambda: all(n.transport is not None and n.transport.metrics["peer_refused"] > 0 for n in nodes[:2])
                or all(n.transport is not None and not n.transport.connected_peers().count(NodeId(3)) for n in nodes[:2]),
                "n1 and n2 to drop n3",
            )
            # The cluster keeps committing with the other two.
            await client.put("k", "w")
            assert await client.get("k") == "w"
            # n3's signature no longer counts, with a reason, on every node.
            state = await describe(client)
            cluster = bytes.fromhex(state["cluster"])
            seed3 = bytes.fromhex(key_file(keys, NodeId(3)).read_text().strip())
            with pytest.raises(ClientError, match="approver is revoked"):
                await submit(client, make_revocation(cluster, 1, 3, "revenge", seed3))
            await wait_until(
                lambda: all(n.keyring.registry.refused.get("approver is revoked") == 1 for n in nodes[:2]),  # type: ignore[union-attr]
                "n1 and n2 to refuse n3's signature",
            )
        finally:
            await _close(nodes, client)

    asyncio.run(scenario())


def test_bad_registry_input_is_refused_with_a_reason_on_every_node(tmp_path: Path, cluster_certs: Path) -> None:
    async def scenario() -> None:
        nodes, keys, tls_dir = _cluster(tmp_path, cluster_certs, "raft", 3)
        for node in nodes:
            await node.start()
        client = _client(nodes, tls_dir)
        try:
            garbage = await client.execute(Extension(MACHINE_NAME, b"\x93\xff\x00"))
            assert (garbage.ok, garbage.error) == (False, "malformed registry command")
            cluster = bytes.fromhex((await describe(client))["cluster"])
            wrong = bytes.fromhex(key_file(keys, NodeId(1)).read_text().strip())
            forged = make_announcement(cluster, 2, KIND_TLS, hashlib.sha256(b"mine").digest(), 1, wrong)
            with pytest.raises(ClientError, match="not signed by the node's current key"):
                await submit(client, forged)
            await client.put("still", "serving")
            await wait_until(
                lambda: all(
                    n.keyring.registry.refused  # type: ignore[union-attr]
                    == {"malformed registry command": 1, "announcement not signed by the node's current key": 1}
                    for n in nodes
                ),
                "every node to count both refusals",
            )
        finally:
            await _close(nodes, client)

    asyncio.run(scenario())


def test_a_certificate_rotates_without_dropping_the_cluster(tmp_path: Path, cluster_certs: Path) -> None:
    async def scenario() -> None:
        nodes, keys, tls_dir = _cluster(tmp_path, cluster_certs, "raft", 3)
        for node in nodes:
            await node.start()
        client = _client(nodes, tls_dir)
        try:
            await client.put("a", "1")
            old_fp = certificate_fingerprint_file(tls_dir / "n1.crt")
            shutil.copy(tls_dir / "n1.crt", tls_dir / "old-n1.crt")
            shutil.copy(tls_dir / "n1.key", tls_dir / "old-n1.key")
            issue_certificate(tls_dir, "n1", stem="n1.next")
            new_fp = certificate_fingerprint_file(tls_dir / "n1.next.crt")
            await announce_certificate(client, keys, NodeId(1), new_fp)
            await wait_until_retired(client, NodeId(1), KIND_TLS)
            assert certificate_fingerprint_file(tls_dir / "n1.crt") == new_fp
            for node in nodes:
                registry = node.keyring.registry  # type: ignore[union-attr]
                assert registry.certificate_allowed(1, new_fp) and not registry.certificate_allowed(1, old_fp)
            # n1 redials its peers with the new certificate; the cluster keeps going.
            await wait_until(
                lambda: nodes[0].transport is not None and len(nodes[0].transport.connected_peers()) == 2,
                "n1 to be connected to both peers again",
            )
            await client.put("b", "2")
            assert await client.get("a") == "1"
            # Someone presenting the retired certificate is refused: it is still
            # signed by the CA and names n1, but it is no longer pinned.
            old = TlsConfig(tls_dir / "ca.crt", tls_dir / "old-n1.crt", tls_dir / "old-n1.key")
            assert nodes[1].transport is not None
            refused_before = nodes[1].transport.metrics["peer_refused"]
            reader, writer = await asyncio.open_connection(
                *nodes[1].listen, ssl=old.client_context(), server_hostname="n2"
            )
            codec = WireCodec((Hello,))
            writer.write(encode_frame(codec.encode(NodeId(1), Hello(1, ROLE_PEER))))
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed on us
            writer.close()
            assert nodes[1].transport.metrics["peer_refused"] == refused_before + 1
        finally:
            await _close(nodes, client)

    asyncio.run(scenario())


def test_pbft_signing_keys_rotate_under_load_without_a_failed_operation(tmp_path: Path, cluster_certs: Path) -> None:
    async def scenario() -> None:
        nodes, keys, tls_dir = _cluster(tmp_path, cluster_certs, "pbft", 4)
        for node in nodes:
            await node.start()
        client = _client(nodes, tls_dir)
        writers = [_client(nodes, tls_dir) for _ in range(3)]
        done = asyncio.Event()
        acknowledged: list[tuple[str, str]] = []
        failures: list[str] = []

        async def load(writer: AsyncClient, w: int) -> None:
            i = 0
            while not done.is_set():
                key, value = f"w{w}/{i}", str(i)
                try:
                    result = await writer.execute(Put(key, value))
                except (ClientError, TimeoutError) as exc:
                    failures.append(repr(exc))
                else:
                    if result.ok:
                        acknowledged.append((key, value))
                i += 1

        tasks = [asyncio.create_task(load(w, i)) for i, w in enumerate(writers)]
        try:
            await wait_until(lambda: len(acknowledged) >= 20, "the load to be running")
            before = len(acknowledged)
            for node in (NodeId(1), NodeId(2)):
                await rotate_signing_key(client, keys, node)
                await wait_until_retired(client, node, KIND_SIGNING)
            await wait_until(lambda: len(acknowledged) >= before + 40, "writes to go on after the rotations")
            done.set()
            await asyncio.gather(*tasks)
            assert failures == []
            for key, value in acknowledged[-10:]:
                assert await client.get(key) == value
            for node in nodes:
                assert node.metrics.get("keys.rotation_problems", 0) == 0
        finally:
            done.set()
            for writer in writers:
                await writer.close()
            await _close(nodes, client)

    asyncio.run(scenario())


def test_with_quorum_admission_nobody_joins_without_approvals(tmp_path: Path, cluster_certs: Path) -> None:
    async def scenario() -> None:
        nodes, keys, tls_dir = _cluster(tmp_path, cluster_certs, "raft", 3)
        for node in nodes:
            node.security_settings = SecuritySettings(admission="quorum", retire_after_s=0.3, admission_requests_per_s=0.5)
            await node.start()
        client = _client(nodes, tls_dir)
        try:
            address = f"{LOOPBACK}:{free_ports(1)[0]}"
            with pytest.raises(ClientError, match="n4 has not been admitted"):
                await client.admin("add_learner", 4, address)
            subject = await request_admission(client, keys, NodeId(4))
            assert len(subject) == 64
            # A member alone is not a quorum, and n4 cannot approve itself.
            decided = await approve(client, keys, NodeId(4), [NodeId(1)])
            assert decided.index is None
            with pytest.raises(ClientError, match="approver is not a member"):
                await approve(client, keys, NodeId(4), [NodeId(4)])
            decided = await approve(client, keys, NodeId(4), [NodeId(2)])
            assert decided.index is not None
            await client.admin("add_learner", 4, address)
            # A flood of join requests from one address is cut off at the edge
            # (a burst of 5, then 0.5 per second), before it reaches the log.
            refused = 0
            for node in range(10, 30):
                try:
                    await request_admission(client, keys, NodeId(node))
                except ClientError as exc:
                    assert "rate-limited" in str(exc)
                    refused += 1
            assert refused >= 10
            assert sum(n.metrics.get("security.admission_rate_limited", 0) for n in nodes) == refused
        finally:
            await _close(nodes, client)

    asyncio.run(scenario())
