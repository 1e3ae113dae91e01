"""The transport on loopback: mutual TLS refuses strangers and impostors (and
says so), hostile bytes close only their own connection, and queues for an
unreachable peer stay bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import msgspec
import pytest
from aio_harness import (
    FAST_BACKOFF,
    LOOPBACK,
    WAIT_LIMIT_S,
    free_ports,
    make_nodes,
    open_client,
    put,
    wait_until,
)
from toy_replication import toy_binding

from quorate.cli.certs import issue_certificate
from quorate.codec import FrameDecoder, WireCodec, encode_frame
from quorate.core.wire import WireMessage
from quorate.ids import NodeId
from quorate.runtime.aio import Hello, TlsConfig, Transport, TransportConfig
from quorate.state.service import STATUS_OK

pytestmark = pytest.mark.timeout(60)


class Note(WireMessage, tag="test.Note", frozen=True):
    n: int


def tls_for(directory: Path, name: str, ca_directory: Path | None = None) -> TlsConfig:
    """``name``'s certificate from ``directory``, trusting ``ca_directory``'s CA."""
    config = TlsConfig.from_directory(directory, name)
    if ca_directory is not None:
        config = TlsConfig(ca_directory / "ca.crt", config.cert_file, config.key_file)
    return config


def pair(
    tls_1: TlsConfig | None,
    tls_2: TlsConfig | None,
    inbox_2: list[tuple[NodeId, WireMessage]],
    config: TransportConfig = FAST_BACKOFF,
    ports: list[int] | None = None,
) -> tuple[Transport, Transport]:
    ports = ports or free_ports(2)
    addresses = {NodeId(1): (LOOPBACK, ports[0]), NodeId(2): (LOOPBACK, ports[1])}

    def transport(
        node: int, tls: TlsConfig | None, inbox: list[tuple[NodeId, WireMessage]]
    ) -> Transport:
        return Transport(
            NodeId(node),
            addresses[NodeId(node)],
            addresses,
            peer_message_types=(Note,),
            on_peer_message=lambda sender, m, group: inbox.append((sender, m)),
            tls=tls,
            insecure=tls is None,
            config=config,
        )

    return transport(1, tls_1, []), transport(2, tls_2, inbox_2)


def test_tls_cluster_serves_a_tls_client(tmp_path: Path, cluster_certs: Path) -> None:
    async def scenario() -> None:
        tls = {i: tls_for(cluster_certs, f"n{i}") for i in (1, 2, 3)}
        nodes = make_nodes(tmp_path, 3, toy_binding(), tls=tls)
        try:
            for node in nodes:
                await node.start()
            client = await open_client(nodes[0], tls=tls_for(cluster_certs, "client-a"))
            assert (await put(client, 1, "k", "v")).status == STATUS_OK
            await wait_until(
                lambda: all(n.counters["entries_applied"] == 1 for n in nodes), "replication"
            )
            assert all(n.metrics.get("transport.tls_refused", 0) == 0 for n in nodes)
            await client.close()
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_a_certificate_from_another_ca_is_refused_and_logged(
    cluster_certs: Path, foreign_certs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """n1 presents an ``n1`` certificate signed by a stranger's CA: n2 refuses
    the handshake, counts it and logs it; nothing is delivered."""
    issue_certificate(foreign_certs, "n1", force=True)
    received: list[tuple[NodeId, WireMessage]] = []

    async def scenario() -> None:
        one, two = pair(
            tls_for(foreign_certs, "n1", ca_directory=cluster_certs),
            tls_for(cluster_certs, "n2"),
            received,
        )
        await two.start()
        await one.start()
        try:
            one.send(NodeId(2), Note(1))
            await wait_until(lambda: two.metrics["tls_refused"] >= 2, "repeated refusals")
            assert received == []
            assert two.connected_peers() == []
        finally:
            await one.close()
            await two.close()

    with caplog.at_level(logging.WARNING, logger="quorate.runtime.aio.transport"):
        asyncio.run(scenario())
    refusals = [r for r in caplog.records if "tls_refused" in r.getMessage()]
    assert len(refusals) == 1, "logged once, counted every time"


def test_a_node_whose_certificate_names_another_node_is_refused(cluster_certs: Path) -> None:
    """Acceptor side: the dialer says Hello as n1 with n3's certificate."""
    received: list[tuple[NodeId, WireMessage]] = []

    async def scenario() -> None:
        one, two = pair(tls_for(cluster_certs, "n3"), tls_for(cluster_certs, "n2"), received)
        await two.start()
        await one.start()
        try:
            one.send(NodeId(2), Note(1))
            await wait_until(lambda: two.metrics["peer_name_mismatch"] >= 1, "name check")
            assert received == []
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_the_dialer_refuses_an_acceptor_with_the_wrong_name(cluster_certs: Path) -> None:
    """Dialer side: the address of n2 answers with n3's certificate."""
    received: list[tuple[NodeId, WireMessage]] = []

    async def scenario() -> None:
        one, two = pair(tls_for(cluster_certs, "n1"), tls_for(cluster_certs, "n3"), received)
        await two.start()
        await one.start()
        try:
            one.send(NodeId(2), Note(1))
            await wait_until(lambda: one.metrics["tls_refused"] >= 1, "hostname check")
            assert received == []
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_plain_tcp_needs_an_explicit_insecure_flag() -> None:
    from quorate.errors import ConfigError

    with pytest.raises(ConfigError, match="insecure"):
        Transport(NodeId(1), (LOOPBACK, 0), {}, peer_message_types=(Note,), on_peer_message=print)


def test_hostile_frames_close_only_their_connection(tmp_path: Path) -> None:
    """Garbage, oversize announcements, unknown types, wrong field types and a
    spoofed sender each close one connection and are counted; the node keeps
    serving clients."""
    hello_codec = WireCodec((Hello,))

    def hello(node: int, role: str) -> bytes:
        return encode_frame(hello_codec.encode(NodeId(node), Hello(node, role)))

    def raw(obj: object) -> bytes:
        return encode_frame(msgspec.msgpack.encode(obj))

    attacks = {
        "malformed_messages": [b"\x00\x00\x00\x03abc"],
        "oversize_frames": [b"\xff\xff\xff\xff"],
        "handshake_failures": [raw((1, 9, ["client.Request", 9, 1, b"x"]))],  # no Hello first
        "unexpected_messages": [hello(9, "client"), raw((1, 9, ["toy.Ack", 3]))],
    }
    attacks_after = {
        "malformed_messages": [hello(9, "client"), raw((1, 9, ["nope.Unknown", 1]))],
        "wrong_types": [hello(9, "client"), raw((1, 9, ["client.Request", "x", "y", 3]))],
        "sender_spoofed": [hello(1, "peer"), raw((1, 3, ["toy.Ack", 1]))],
    }

    async def attack(address: tuple[str, int], frames: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection(*address)
        writer.writelines(frames)
        # The node closes the connection: read until end of stream.
        while await asyncio.wait_for(reader.read(65536), 15):
            pass
        writer.close()

    async def scenario() -> None:
        # n2 (a follower of n1) accepts a "peer" Hello from n1 and checks senders.
        nodes = make_nodes(tmp_path, 2, toy_binding())
        try:
            for node in nodes:
                await node.start()
            target = nodes[1]
            assert target.transport is not None
            address = target.transport.listen_address
            for frames in attacks.values():
                await attack(address, frames)
            for frames in attacks_after.values():
                await attack(address, frames)
            m = target.transport.metrics
            assert m["malformed_messages"] == 3  # garbage, unknown tag, wrong field types
            assert m["oversize_frames"] == 1
            assert m["handshake_failures"] == 1
            assert m["unexpected_messages"] == 1
            assert m["sender_spoofed"] == 1
            # Still serving: the cluster commits a client's write.
            client = await open_client(nodes[0])
            assert (await put(client, 1, "k", "v")).status == STATUS_OK
            await wait_until(lambda: target.counters["entries_applied"] == 1, "n2 to apply")
            await client.close()
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(scenario())


def test_queue_for_an_unreachable_peer_is_bounded_and_keeps_the_newest() -> None:
    limit = 10
    sent = 100
    received: list[tuple[NodeId, WireMessage]] = []
    config = TransportConfig(send_queue_limit=limit, backoff_initial_s=0.01, backoff_max_s=0.05)

    async def scenario() -> None:
        ports = free_ports(2)
        one, two = pair(None, None, received, config=config, ports=ports)
        await one.start()  # n2 is not listening yet: n1's dials fail
        try:
            for n in range(sent):
                one.send(NodeId(2), Note(n))
            assert one.queued(NodeId(2)) == limit
            assert one.metrics["send_queue_drops"] == sent - limit
            await wait_until(lambda: one.metrics["dial_failures"] >= 2, "redials")
            await two.start()
            await wait_until(lambda: len(received) == limit, "delivery after the peer starts")
            assert [m.n for _, m in received] == list(range(sent - limit, sent))  # type: ignore[attr-defined]
            assert {s for s, _ in received} == {NodeId(1)}
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_a_flooding_peer_is_rate_limited_before_the_protocol_sees_it() -> None:
    """With a per-peer limit of 50 messages/s (one second of burst), a peer
    that sends 2,000 messages at once gets about 50 through; the rest are
    dropped and counted, and the limit refills with time."""
    rate = 50.0
    received: list[tuple[NodeId, WireMessage]] = []
    config = TransportConfig(
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        send_queue_limit=4096,
        peer_rate_limit_msgs_per_s=rate,
    )

    async def scenario() -> None:
        one, two = pair(None, None, received, config=config)
        await one.start()
        await two.start()
        loop = asyncio.get_running_loop()
        try:
            # The buckets refill from the first frame on; the limiter and the
            # loop both read the monotonic clock.
            sent_at = loop.time()
            for n in range(2000):
                one.send(NodeId(2), Note(n))
            await wait_until(
                lambda: len(received) + two.metrics["rate_limited_drops"] >= 2000, "all frames read"
            )
            reading_s = loop.time() - sent_at
            admitted = len(received)
            # The burst plus what refilled while the frames were read, however
            # long a loaded machine took to read them.
            assert admitted >= rate
            assert admitted <= rate + rate * reading_s + 5, (admitted, reading_s)
            assert two.metrics["rate_limited_drops"] == 2000 - admitted
            await asyncio.sleep(0.5)
            one.send(NodeId(2), Note(-1))
            await wait_until(lambda: any(m.n == -1 for _, m in received), "refilled")  # type: ignore[attr-defined]
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_a_negative_rate_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="peer_rate_limit"):
        TransportConfig(peer_rate_limit_msgs_per_s=-1).validate()


def test_close_ends_a_dial_that_completes_as_it_is_cancelled() -> None:
    """On Python 3.11 ``asyncio.wait_for`` may hand back a connection that
    opened just as the task was cancelled, swallowing the cancellation (the
    race behind a node whose ``close`` hung on a loaded machine). The dial
    below always does that; ``close`` must still end while the peer stays up."""
    received: list[tuple[NodeId, WireMessage]] = []

    async def scenario() -> None:
        one, two = pair(None, None, received)
        dialing = asyncio.Event()
        gate = asyncio.Event()  # never set: the dial waits until cancelled
        real_dial = one._dial

        async def dial_that_swallows_cancellation(peer: NodeId, address: tuple[str, int]) -> object:
            dialing.set()
            # What wait_for does when its inner future completes as it is cancelled.
            with contextlib.suppress(asyncio.CancelledError):
                await gate.wait()
            return await real_dial(peer, address)

        one._dial = dial_that_swallows_cancellation  # type: ignore[assignment,method-assign]
        await two.start()
        await one.start()
        try:
            await asyncio.wait_for(dialing.wait(), WAIT_LIMIT_S)
            await asyncio.wait_for(one.close(), WAIT_LIMIT_S)
            assert one.connected_peers() == []
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_a_turns_messages_to_one_peer_travel_as_one_batch_in_order() -> None:
    """Messages of many groups queued for a peer in one turn leave as one
    ``transport.Batch`` frame and arrive one by one, in order, with their groups."""
    arrived: list[tuple[int, int]] = []

    async def scenario() -> None:
        ports = free_ports(2)
        addresses = {NodeId(1): (LOOPBACK, ports[0]), NodeId(2): (LOOPBACK, ports[1])}

        def transport(node: int) -> Transport:
            return Transport(
                NodeId(node),
                addresses[NodeId(node)],
                addresses,
                peer_message_types=(Note,),
                on_peer_message=lambda sender, m, group: arrived.append((group, m.n)),  # type: ignore[attr-defined]
                insecure=True,
                config=FAST_BACKOFF,
            )

        one, two = transport(1), transport(2)
        await one.start()
        await two.start()
        try:
            one.send(NodeId(2), Note(-1))
            await wait_until(lambda: len(arrived) == 1, "the connection")
            frames = one.metrics["frames_sent"]
            for n in range(50):
                one.send(NodeId(2), Note(n), n % 7)
            await wait_until(lambda: len(arrived) == 51, "the batch")
            assert arrived[1:] == [(n % 7, n) for n in range(50)]
            assert one.metrics["frames_sent"] == frames + 1
            assert one.metrics["messages_sent"] == 51
            assert two.metrics["batches_received"] == 1
            assert two.metrics["messages_received"] == 51
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_a_batch_that_would_pass_the_frame_limit_is_cut_into_frames_within_it() -> None:
    """Messages queued together that do not fit one frame leave in several
    batch frames, each within the limit, and arrive whole and in order."""
    received: list[tuple[NodeId, WireMessage]] = []
    config = TransportConfig(max_frame_bytes=1000, backoff_initial_s=0.01, backoff_max_s=0.05)

    async def scenario() -> None:
        one, two = pair(None, None, received, config=config)
        await one.start()
        await two.start()
        try:
            one.send(NodeId(2), Note(-1))
            await wait_until(lambda: len(received) == 1, "the connection")
            frames = one.metrics["frames_sent"]
            for n in range(200):  # about 10 bytes each: 2,000 bytes in all
                one.send(NodeId(2), Note(1000 + n))
            await wait_until(lambda: len(received) == 201, "every message")
            assert [m.n for _, m in received[1:]] == [1000 + n for n in range(200)]  # type: ignore[attr-defined]
            assert 3 <= one.metrics["frames_sent"] - frames <= 4
            assert two.metrics["oversize_frames"] == 0
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_a_batch_with_a_bad_group_closes_its_connection() -> None:
    """A batch holding a group id out of range is malformed: the connection
    closes (counted) and none of its messages reaches the node."""
    received: list[tuple[NodeId, WireMessage]] = []

    async def scenario() -> None:
        one, two = pair(None, None, received)
        await two.start()
        try:
            hello_codec = WireCodec((Hello,))
            reader, writer = await asyncio.open_connection(*two.listen_address)
            writer.write(encode_frame(hello_codec.encode(NodeId(1), Hello(1, "peer", batches=True))))
            batch = ["transport.Batch", [[3, ["test.Note", 1]], [-5, ["test.Note", 2]]]]
            writer.write(encode_frame(msgspec.msgpack.encode((1, 1, batch))))
            while await asyncio.wait_for(reader.read(65536), 15):
                pass
            writer.close()
            assert two.metrics["malformed_messages"] == 1
            assert received == []
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_a_peer_that_reads_no_batches_gets_one_frame_per_message() -> None:
    """A peer whose ``Hello`` does not offer batches (a node from before
    them) is sent plain frames, which it decodes without knowing batches."""

    async def scenario() -> None:
        ports = free_ports(2)
        addresses = {NodeId(1): (LOOPBACK, ports[0]), NodeId(2): (LOOPBACK, ports[1])}
        one = Transport(
            NodeId(1),
            addresses[NodeId(1)],
            addresses,
            peer_message_types=(Note,),
            on_peer_message=lambda sender, m, group: None,
            insecure=True,
            config=FAST_BACKOFF,
        )
        old_codec = WireCodec((Hello, Note))
        got: list[tuple[int, int]] = []
        done = asyncio.Event()

        async def old_node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = FrameDecoder()
            writer.write(encode_frame(old_codec.encode(NodeId(2), Hello(2, "peer"))))
            while not done.is_set():
                data = await reader.read(65536)
                if not data:
                    return
                for body in decoder.feed(data):
                    _, message, group = old_codec.decode_frame(body)
                    if isinstance(message, Note):
                        got.append((group, message.n))
                if len(got) == 20:
                    done.set()

        old = await asyncio.start_server(old_node, LOOPBACK, ports[1])
        await one.start()
        try:
            for n in range(20):
                one.send(NodeId(2), Note(n), n % 3)
            await asyncio.wait_for(done.wait(), WAIT_LIMIT_S)
            assert got == [(n % 3, n) for n in range(20)]
            assert one.metrics["frames_sent"] == one.metrics["messages_sent"] == 20
        finally:
            await one.close()
            old.close()

    asyncio.run(scenario())
