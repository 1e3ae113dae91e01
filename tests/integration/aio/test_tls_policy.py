"""What the wire between real quorate nodes negotiates: TLS 1.3 only, with a
forward-secret (ephemeral key exchange) AEAD suite; an older TLS version and
plain TCP are refused by a TLS node, and plain TCP works only when the nodes
were started insecure on purpose."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aio_harness import LOOPBACK, WAIT_LIMIT_S, free_ports, make_nodes, open_client, put, wait_until
from toy_replication import toy_binding

from quorate.codec import WireCodec, encode_frame
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.aio import AioNode, ClientConnection, Hello, TlsConfig
from quorate.runtime.aio.transport import ROLE_PEER
from quorate.state.service import CLIENT_MESSAGE_TYPES, STATUS_OK

pytestmark = pytest.mark.timeout(60)

TLS13_SUITES = {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}
"""Every TLS 1.3 suite: in 1.3 a full handshake always runs an ephemeral
(EC)DHE exchange, so each of these sessions is forward secret (RFC 8446 §2)."""


def _tls(certs: Path, name: str) -> TlsConfig:
    return TlsConfig.from_directory(certs, name)


async def _started(tmp_path: Path, certs: Path | None, count: int = 2) -> list[AioNode]:
    tls = {i: _tls(certs, f"n{i}") for i in range(1, count + 1)} if certs else None
    nodes = make_nodes(tmp_path, count, toy_binding(), tls=tls)
    for node in nodes:
        await node.start()
    return nodes


def _address(node: AioNode) -> tuple[str, int]:
    assert node.transport is not None
    address = node.transport.listen_address
    return str(address[0]), int(address[1])


def _refusals(node: AioNode) -> int:
    assert node.transport is not None
    metrics = node.transport.metrics
    return int(metrics.get("tls_refused", 0)) + int(metrics.get("handshake_failures", 0))


def test_nodes_negotiate_tls13_with_a_forward_secret_suite(
    tmp_path: Path, cluster_certs: Path
) -> None:
    """n1 dials n2 with the context every node dials with; the session both
    ends agree on is TLS 1.3 with an ephemeral-key AEAD suite."""

    async def scenario() -> None:
        nodes = await _started(tmp_path, cluster_certs)
        try:
            client = await open_client(nodes[0], tls=_tls(cluster_certs, "client-a"))
            assert (await put(client, 1, "k", "v")).status == STATUS_OK
            await wait_until(
                lambda: all(n.counters["entries_applied"] == 1 for n in nodes), "replication"
            )
            await client.close()
            # A peer connection exactly as a node opens one: n1's certificate,
            # n1's client context, n2's name.
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    *_address(nodes[1]),
                    ssl=_tls(cluster_certs, "n1").client_context(),
                    server_hostname="n2",
                ),
                WAIT_LIMIT_S,
            )
            session = writer.get_extra_info("ssl_object")
            assert isinstance(session, ssl.SSLObject)
            assert session.version() == "TLSv1.3"
            name, protocol, secret_bits = session.cipher()
            assert protocol == "TLSv1.3" and name in TLS13_SUITES and secret_bits >= 128
            assert session.getpeercert()["subject"] == ((("commonName", "n2"),),)
            writer.close()
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_an_older_tls_version_is_refused(tmp_path: Path, cluster_certs: Path) -> None:
    """A client that offers at most TLS 1.2 — with a valid cluster certificate — gets no session."""

    async def scenario() -> None:
        nodes = await _started(tmp_path, cluster_certs, count=1)
        try:
            legacy = _tls(cluster_certs, "n1").client_context()
            legacy.minimum_version = ssl.TLSVersion.TLSv1_2
            legacy.maximum_version = ssl.TLSVersion.TLSv1_2
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.wait_for(
                    asyncio.open_connection(*_address(nodes[0]), ssl=legacy, server_hostname="n1"),
                    WAIT_LIMIT_S,
                )
            await wait_until(lambda: _refusals(nodes[0]) >= 1, "the refusal to be counted")
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_plain_tcp_is_refused_by_a_tls_node(tmp_path: Path, cluster_certs: Path) -> None:
    """A plain-TCP peer Hello and a plain-TCP client both get the door shut:
    no answer, connection closed, the attempt counted."""

    async def scenario() -> None:
        nodes = await _started(tmp_path, cluster_certs, count=1)
        try:
            reader, writer = await asyncio.open_connection(*_address(nodes[0]))
            writer.write(encode_frame(WireCodec((Hello,)).encode(NodeId(2), Hello(2, ROLE_PEER))))
            assert await asyncio.wait_for(reader.read(), WAIT_LIMIT_S) == b""
            writer.close()
            client = await ClientConnection.open(
                _address(nodes[0]), 7, CLIENT_MESSAGE_TYPES, insecure=True
            )
            with pytest.raises((EOFError, ConnectionError)):
                await asyncio.wait_for(put(client, 1, "k", "v"), WAIT_LIMIT_S)
            await client.close()
            await wait_until(lambda: _refusals(nodes[0]) >= 2, "both refusals to be counted")
            assert nodes[0].counters["entries_applied"] == 0
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_plain_tcp_only_when_asked_for(tmp_path: Path) -> None:
    """Without certificates a node, a transport or a client must be told
    ``insecure``; so told, plain TCP carries the cluster."""

    async def scenario() -> None:
        address = (LOOPBACK, free_ports(1)[0])
        undecided = AioNode(
            NodeId(1), {NodeId(1): address}, tmp_path / "n0", listen=address, protocol=toy_binding()
        )
        with pytest.raises(ConfigError, match="insecure"):
            await undecided.start()
        await undecided.close()
        with pytest.raises(ConfigError, match="insecure"):
            await ClientConnection.open((LOOPBACK, free_ports(1)[0]), 7, CLIENT_MESSAGE_TYPES)
        nodes = await _started(tmp_path, None)
        try:
            client = await open_client(nodes[0])
            assert (await put(client, 1, "k", "v")).status == STATUS_OK
            await client.close()
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())
