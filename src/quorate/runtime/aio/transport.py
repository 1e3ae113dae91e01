"""asyncio TCP (optionally TLS 1.3, mutually authenticated) between nodes and
from clients, carrying ``quorate.codec`` frames.

Theory of operation.

*One connection per peer pair, dialed by the lower id.* Node ``a`` dials node
``b`` iff ``a < b``; the connection then carries messages both ways. Nobody
needs to break ties between two simultaneous dials, and a restarted node is
either redialed by its lower peers or redials its higher ones. A node keeps,
per peer, a bounded queue of encoded frames and one sender task that writes
them whenever a connection to that peer is up; messages for a peer that is
down wait in the queue (or are dropped, oldest first, when it is full: a slow
or dead peer never grows memory without bound, and consensus protocols resend
what matters). ``metrics["send_queue_drops"]`` counts them.

*Handshake.* The first frame on every connection is a ``Hello`` saying who
speaks (``role`` ``peer`` or ``client``, and its id). With TLS (the default)
both ends present certificates signed by the cluster CA: the dialer checks the
acceptor's name through ``server_hostname``; the acceptor checks that the
dialer's certificate names the node its ``Hello`` claims. The acceptor answers
a peer's ``Hello`` with its own, so a misrouted address is noticed even
without TLS. Plain TCP is used only with ``insecure=True``.

*Reconnection.* A dialer that fails or loses its connection sleeps a capped
exponential backoff (``backoff_initial_s`` doubling to ``backoff_max_s``) with
jitter (uniform in the upper half) so restarted clusters do not redial in lock
step, then tries again; a successful handshake resets the backoff.

*Groups.* A node hosts many protocol groups (``quorate.core.host``): a frame
carries its group id (``quorate.codec.wire``; absent for group 0), which the
transport hands up with the message and puts on what it sends.

*One frame per peer per turn.* ``send`` encodes a message (and its group) at
once but only queues it; the peer's sender task, which runs after the node's
turn, writes everything queued for that peer as one ``transport.Batch``
frame (``quorate.codec.wire``; cut into several when it would pass the frame
limit), so a turn of many groups costs each peer one frame, one decode and
one read instead of one per message. A peer whose ``Hello`` did not say it
reads batches (``batches``; a node from before them) gets one frame per
message. The receiver hands a batch's messages up one by one, in order, as
if each had come in its own frame; a batch holding a malformed group id
closes the connection like any malformed frame.

*Peers that vanish.* A peer whose host disappears without closing its
connections (a pod rescheduled to another address, a cable pulled) sends no
FIN or RST, and TCP alone would keep writing into the void for many
minutes. Peer sockets therefore get keepalive probes and a
``TCP_USER_TIMEOUT`` (Linux) of ``peer_dead_after_s``: unacknowledged data
or unanswered probes for that long close the connection, and the dialer
dials again — by name, so a peer listed as ``host:port`` with a DNS name is
found at its new address (the name is resolved at every attempt).

*Hostile input.* Oversize frames (refused from the 4-byte header, before the
body is buffered), malformed bytes, unknown message types, wrong field types,
a sender id that is not the authenticated peer, or a message the role may not
send: that one connection is closed, the event counted in ``metrics`` and
logged once (later repeats at debug level). The node keeps serving.

*Round trips to peers.* Every ``PING_INTERVAL_S`` the transport writes a
``Ping`` on each peer connection whose ``Hello`` said it answers pings
(``pings``; a node from before pings says nothing and is never pinged, so
it does not close the connection on an unknown message), and answers a
peer's ``Ping`` with a ``Pong`` at once. Both bypass the send queue (the
figure is the network's and the loops', not the backlog's) and never reach
the node: ``peer_rtt`` (``quorate.runtime.aio.peer_rtt``) keeps a smoothed
round trip and the share of pings lost per peer, which the node reports in
its status.

*Limits at the edge* (``quorate.security.limits``; denial of service and
eclipse attacks). An accepted connection takes a slot of a
``ConnectionGovernor`` before its handshake: too many connections in all,
from its address or from its subnet, or too many handshakes in flight (in
all or from its address), and it is closed at once and counted
(``refused_*``). An address is *known* (the member limit per address, no
subnet limit) when this node or a configured peer listens on it (a node
listening on every address knows its loopback), when a peer's name resolved
to it at a dial, or when a member peer authenticated from it; every other
address is a stranger's (a few connections each). The slot is given back when the connection closes or when
it authenticates as a member peer (members are bounded by the membership,
one connection per pair). A handshake must finish within
``handshake_timeout_s`` (``handshake_timeouts``) and a frame that has begun
within ``frame_timeout_s`` (``frame_timeouts``), so half-open and trickling
connections are cut off. Client messages are admitted at
``client_requests_per_s`` per source address (``client_rate_limited_drops``).

*Who may be a peer* beyond the CA's word: an optional ``peer_check(peer,
certificate)`` (the key registry: a revoked node, a certificate whose
fingerprint is no longer pinned) is asked after every handshake, on both
ends, and ``recheck_peers`` asks it again for every live connection when the
answer may have changed, closing those it now refuses (``peer_refused``).
``set_tls`` replaces this node's certificate for new connections without
touching live ones (certificate rotation).

*Clients* connect to the same listener. Each client connection gets a local
id (``CLIENT_CONNECTION_BASE`` upwards, never a node id) so replies go back on
the connection the request came from. A client that does not read its replies
loses them (the write buffer is bounded by ``client_write_buffer_bytes``).
Replies are coalesced: ``send_to_client`` only queues a frame, and
``flush_clients`` (called by the node after each drive, else scheduled on
the loop's next iteration) hands each connection its frames in one write, so
a batch of proposals committed together costs one system call per client
connection instead of one per reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.codec import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, WireCodec, encode_frame
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.peer_rtt import PING_INTERVAL_S, PeerRtt
from quorate.runtime.aio.tls import TlsConfig, certificate_names
from quorate.security.limits import AddressRateLimiter, ConnectionGovernor, EdgeLimits
from quorate.security.ratelimit import PeerRateLimiter

log = logging.getLogger("quorate.runtime.aio.transport")

ROLE_PEER = "peer"
ROLE_CLIENT = "client"
CLIENT_CONNECTION_BASE = 1 << 40
"""Local ids of client connections start here, far above any node id."""
READ_CHUNK_BYTES = 256 * 1024
DEFAULT_SEND_QUEUE_LIMIT = 4096
"""Frames held per peer while it is slow or unreachable."""
DEFAULT_CLIENT_WRITE_BUFFER_BYTES = 4 * 1024 * 1024
DEFAULT_HANDSHAKE_TIMEOUT_S = 5.0
DEFAULT_BACKOFF_INITIAL_S = 0.05
DEFAULT_BACKOFF_MAX_S = 2.0
DEFAULT_PEER_DEAD_AFTER_S = 10.0
KEEPALIVE_PROBES = 3

Address = tuple[str, int]
_FRAME_OVERHEAD_BYTES = 64
"""Room for a frame body's envelope around its messages (version, sender and
the batch's tag and list header take at most 33 bytes)."""


class Hello(WireMessage, tag="transport.Hello", frozen=True):
    """The first frame on a connection: who is speaking and in which role."""

    node: int
    role: str
    pings: bool = False
    """The sender answers ``Ping`` (appended with a default: older nodes
    neither send nor expect it)."""
    batches: bool = False
    """The sender reads ``transport.Batch`` frames (appended with a default,
    as ``pings``)."""


class Ping(WireMessage, tag="transport.Ping", frozen=True):
    """Answer with a ``Pong`` of the same ``seq`` (round-trip measurement)."""

    seq: int


class Pong(WireMessage, tag="transport.Pong", frozen=True):
    """The answer to ``Ping`` ``seq``."""

    seq: int


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Tunables of one transport; sizes in frames or bytes, durations in seconds."""

    send_queue_limit: int = DEFAULT_SEND_QUEUE_LIMIT
    client_write_buffer_bytes: int = DEFAULT_CLIENT_WRITE_BUFFER_BYTES
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    peer_dead_after_s: float = DEFAULT_PEER_DEAD_AFTER_S
    """A peer connection with data unacknowledged (or keepalive probes
    unanswered) this long is closed and redialed."""
    peer_rate_limit_msgs_per_s: float = 0.0
    """Messages per second admitted from each peer before the protocol sees
    them (token bucket, one second of burst); 0 = no limit. A flooding peer
    then costs a decode per message, not a protocol step and its signature
    checks."""
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    """Connection, handshake and request limits at the edge (``quorate.security.limits``)."""

    def validate(self) -> TransportConfig:
        self.limits.validate()
        if self.send_queue_limit < 1:
            raise ConfigError(f"send_queue_limit must be >= 1 frame, got {self.send_queue_limit}")
        if self.max_frame_bytes < 1:
            raise ConfigError(f"max_frame_bytes must be >= 1, got {self.max_frame_bytes}")
        if self.peer_rate_limit_msgs_per_s < 0:
            raise ConfigError(
                f"peer_rate_limit_msgs_per_s must be >= 0 (0 = off), got {self.peer_rate_limit_msgs_per_s}"
            )
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError(
                "backoff_initial_s must be > 0 and <= backoff_max_s, got "
                f"{self.backoff_initial_s} and {self.backoff_max_s}"
            )
        if not self.peer_dead_after_s >= 1:
            raise ConfigError(f"peer_dead_after_s must be >= 1 s, got {self.peer_dead_after_s}")
        if self.handshake_timeout_s <= 0:
            raise ConfigError(f"handshake_timeout_s must be > 0, got {self.handshake_timeout_s}")
        return self


def _detect_dead_peer(writer: asyncio.StreamWriter, dead_after_s: float) -> None:
    """Keepalive probes and ``TCP_USER_TIMEOUT`` on a peer connection's socket
    (see *Peers that vanish*); options the platform lacks are skipped."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    idle_s = max(1, int(dead_after_s / 2))
    interval_s = max(1, int(dead_after_s / 2 / KEEPALIVE_PROBES))
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), idle_s),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), interval_s),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_PROBES),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), int(dead_after_s * 1000)),
    ]
    for level, option, value in options:
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(level, option, value)


class _Refused(Exception):
    """A connection is closed on purpose; ``metric`` names the counter."""

    def __init__(self, metric: str, detail: str) -> None:
        super().__init__(detail)
        self.metric = metric


class _Slot:
    """A connection's place in the ``ConnectionGovernor``, given back once."""

    __slots__ = ("address", "connected", "governor", "handshaking")

    def __init__(self, governor: ConnectionGovernor, address: str) -> None:
        self.governor = governor
        self.address = address
        self.handshaking = True
        self.connected = True

    def handshake_over(self) -> None:
        if self.handshaking:
            self.handshaking = False
            self.governor.handshake_over(self.address)

    def release(self) -> None:
        self.handshake_over()
        if self.connected:
            self.connected = False
            self.governor.release(self.address)


class _Connection:
    """One stream plus its frame decoder."""

    __slots__ = (
        "address",
        "batches",
        "decoder",
        "frame_timeout_s",
        "label",
        "outgoing",
        "pending",
        "pings",
        "reader",
        "writer",
    )

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        label: str,
        max_frame: int,
        frame_timeout_s: float | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.label = label
        self.address = label
        """The source address (host) of an accepted connection."""
        self.decoder = FrameDecoder(max_frame)
        self.frame_timeout_s = frame_timeout_s
        self.pending: deque[bytes] = deque()  # complete frame bodies not yet decoded
        self.outgoing: list[bytes] = []  # frames queued by send_to_client, not yet written
        self.pings = False  # the peer's Hello said it answers Ping
        self.batches = False  # the peer's Hello said it reads batches

    async def next_body(self) -> bytes | None:
        """The next frame body, or ``None`` at end of stream. A frame that has
        begun must complete within ``frame_timeout_s`` (slow senders are cut off)."""
        while not self.pending:
            if self.frame_timeout_s is not None and self.decoder.in_frame:
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_CHUNK_BYTES), self.frame_timeout_s)
                except TimeoutError:
                    raise _Refused(
                        "frame_timeouts", f"a frame stayed incomplete for {self.frame_timeout_s:g} s"
                    ) from None
            else:
                data = await self.reader.read(READ_CHUNK_BYTES)
            if not data:
                return None
            try:
                self.pending.extend(self.decoder.feed(data))
            except RemoteProtocolError as exc:
                raise _Refused("oversize_frames", str(exc)) from None
        return self.pending.popleft()

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class _TlsPendingProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that reads nothing until TLS is started on it.

    The acceptor upgrades to TLS itself (``StreamWriter.start_tls``) so that
    it can count and log refused handshakes. Were the socket read before the
    upgrade, the dialer's ClientHello would land in the plain stream buffer
    and be lost to the TLS layer; pausing at ``connection_made`` leaves it in
    the kernel until ``start_tls`` resumes reading.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's transports read but do not subclass ReadTransport.
        transport.pause_reading()  # type: ignore[attr-defined]
        super().connection_made(transport)


class _PeerLink:
    """Outbound state for one peer: a bounded queue of encoded messages and the connection."""

    __slots__ = ("connection", "peer", "queue", "wakeup")

    def __init__(self, peer: NodeId) -> None:
        self.peer = peer
        self.queue: deque[tuple[msgspec.Raw, WireMessage, int]] = deque()
        """(the encoded ``[group, message]`` pair, the message, its group), oldest first."""
        self.connection: _Connection | None = None
        self.wakeup = asyncio.Event()


class Transport:
    """Frames between this node and its peers, and from clients.

    ``on_peer_message(sender, message, group)`` receives every valid message
    from an authenticated peer; ``on_client_message(connection_id, message,
    group)`` every message from a client connection (reply with
    ``send_to_client``).
    """

    def __init__(
        self,
        node_id: NodeId,
        listen: Address,
        peers: Mapping[NodeId, Address],
        *,
        peer_message_types: Iterable[type[WireMessage]],
        client_message_types: Iterable[type[WireMessage]] = (),
        on_peer_message: Callable[[NodeId, WireMessage, int], None],
        on_client_message: Callable[[int, WireMessage, int], None] | None = None,
        tls: TlsConfig | None = None,
        insecure: bool = False,
        config: TransportConfig | None = None,
        rng: random.Random | None = None,
        peer_check: Callable[[NodeId, bytes | None], str | None] | None = None,
    ) -> None:
        if tls is None and not insecure:
            raise ConfigError("a TLS configuration is required (pass insecure=True for plain TCP)")
        if tls is not None and insecure:
            raise ConfigError("choose TLS or insecure=True, not both")
        self.id = node_id
        self.listen_address = listen
        self.config = (config or TransportConfig()).validate()
        self._peer_types = tuple(peer_message_types)
        self._client_types = tuple(client_message_types)
        self.codec = WireCodec((Hello, Ping, Pong, *self._peer_types, *self._client_types), batch_types=self._peer_types)
        self._batch_type = self.codec.batch_type
        self._on_peer_message = on_peer_message
        self._on_client_message = on_client_message
        self._server_ssl = tls.server_context() if tls is not None else None
        self._client_ssl = tls.client_context() if tls is not None else None
        self._rng = rng or random.Random()
        self._addresses: dict[NodeId, Address] = {p: a for p, a in peers.items() if p != node_id}
        self._links: dict[NodeId, _PeerLink] = {}
        self._clients: dict[int, _Connection] = {}
        self._clients_to_flush: dict[int, _Connection] = {}
        self._flush_scheduled = False
        self._next_client = CLIENT_CONNECTION_BASE
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closed = False
        self._logged: set[tuple[str, str]] = set()
        self.metrics: Counter[str] = Counter()
        """Event counters: drops, refusals, malformed input, connections."""
        self.peer_rtt = PeerRtt()
        """Smoothed round trip and ping loss per peer (see *Round trips to peers*)."""
        rate = self.config.peer_rate_limit_msgs_per_s
        self._limiter = PeerRateLimiter(rate, max(rate, 1.0)) if rate > 0 else None
        limits = self.config.limits
        # Known sources: where this node and its configured peers listen (by
        # IP; a name is learned when it is dialed), later where members
        # authenticate from.
        self._governor = ConnectionGovernor(
            limits, [listen[0], *(address[0] for address in self._addresses.values())]
        )
        self._client_limiter = (
            AddressRateLimiter(limits.client_requests_per_s) if limits.client_requests_per_s > 0 else None
        )
        self.peer_check = peer_check
        """``(peer, DER certificate or None) -> refusal reason or None``: who may be a peer now."""

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> Address:
        """Listen, start the dialers; return the bound address (port 0 → ephemeral)."""
        host, port = self.listen_address
        loop = asyncio.get_running_loop()
        pause = self._server_ssl is not None

        def protocol_factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(loop=loop)
            if pause:
                return _TlsPendingProtocol(reader, self._accept, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._accept, loop=loop)

        self._server = await loop.create_server(protocol_factory, host, port)
        bound = self._server.sockets[0].getsockname()
        self.listen_address = (bound[0], bound[1])
        for sock in self._server.sockets:  # a name ("localhost") as it resolved
            own = str(sock.getsockname()[0])
            self._governor.trust(own)
            if own in ("0.0.0.0", "::"):  # every address of this machine: its loopback too
                self._governor.trust("127.0.0.1")
                self._governor.trust("::1")
        for peer in self._addresses:
            self._link(peer)
        self._spawn(self._ping_loop())
        return self.listen_address

    def set_peer_address(self, peer: NodeId, address: Address) -> None:
        """Add a peer or change its address (the dialer uses it at its next attempt)."""
        if peer == self.id:
            return
        self._addresses[peer] = address
        self._governor.trust(address[0])
        if self._server is not None:
            self._link(peer)

    def set_tls(self, tls: TlsConfig) -> None:
        """Present ``tls``'s certificate from the next connection on (live ones keep theirs)."""
        if self._server_ssl is None:
            raise ConfigError("this transport runs without TLS (insecure)")
        server, client = tls.server_context(), tls.client_context()
        self._server_ssl, self._client_ssl = server, client
        self.metrics["tls_reloads"] += 1

    def recheck_peers(self) -> int:
        """Ask ``peer_check`` again about every live peer connection; close the
        refused ones (their dialer retries, with whatever it holds now). Returns
        how many were closed."""
        if self.peer_check is None:
            return 0
        closed = 0
        for peer, link in self._links.items():
            connection = link.connection
            if connection is None:
                continue
            reason = self.peer_check(peer, _peer_certificate(connection.writer))
            if reason is not None:
                self._count("peer_refused", node_name(peer), f"{node_name(peer)}: {reason}")
                connection.close()
                closed += 1
        return closed

    @property
    def connections_held(self) -> int:
        """Client and not-yet-authenticated connections open now."""
        return self._governor.connections

    @property
    def handshakes_in_flight(self) -> int:
        return self._governor.handshakes_in_flight

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        for link in self._links.values():
            if link.connection is not None:
                link.connection.close()
            link.wakeup.set()
        for connection in self._clients.values():
            connection.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _link(self, peer: NodeId) -> _PeerLink:
        link = self._links.get(peer)
        if link is None:
            link = self._links[peer] = _PeerLink(peer)
            self._spawn(self._send_loop(link))
            if self.id < peer:
                self._spawn(self._dial_loop(link))
        return link

    # ------------------------------------------------------------ sending
    def send(self, to: NodeId, message: WireMessage, group: int = 0) -> None:
        """Queue ``message`` of ``group`` for peer ``to``; never blocks. Drops
        the oldest queued message when the peer's queue is full. A message
        the peer would refuse as oversize raises ``LocalProtocolError`` here."""
        link = self._links.get(to)
        if link is None:
            self._count("unknown_destination", node_name(to), "no address for this peer")
            return
        item = self.codec.encode_item(message, group)
        if len(item) + _FRAME_OVERHEAD_BYTES > self.config.max_frame_bytes:
            raise LocalProtocolError(
                f"a {type(message).__name__} of {len(item)} bytes does not fit a frame of "
                f"at most {self.config.max_frame_bytes} bytes"
            )
        queue = link.queue
        if len(queue) >= self.config.send_queue_limit:
            queue.popleft()
            self.metrics["send_queue_drops"] += 1
        queue.append((item, message, group))
        if len(queue) == 1:
            link.wakeup.set()

    def send_to_client(self, connection_id: int, message: WireMessage, group: int = 0) -> None:
        """Write ``message`` to a client connection; dropped (and counted) if
        the client is gone or is not reading."""
        connection = self._clients.get(connection_id)
        if connection is None or connection.writer.is_closing():
            self.metrics["client_gone_drops"] += 1
            return
        transport = connection.writer.transport
        if transport.get_write_buffer_size() > self.config.client_write_buffer_bytes:
            self.metrics["client_buffer_drops"] += 1
            return
        connection.outgoing.append(
            encode_frame(self.codec.encode(self.id, message, group), self.config.max_frame_bytes)
        )
        self._clients_to_flush[connection_id] = connection
        if not self._flush_scheduled:
            # Whoever queued this may not call flush_clients(): make sure the
            # frames leave on the loop's next iteration at the latest.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_clients)

    def flush_clients(self) -> None:
        """Write every queued client reply, one ``writelines`` per connection."""
        self._flush_scheduled = False
        if not self._clients_to_flush:
            return
        dirty, self._clients_to_flush = self._clients_to_flush, {}
        for connection in dirty.values():
            frames, connection.outgoing = connection.outgoing, []
            if frames and not connection.writer.is_closing():
                connection.writer.writelines(frames)

    def client_address(self, connection_id: int) -> str:
        """The source address of a client connection (``"?"`` once it is gone)."""
        connection = self._clients.get(connection_id)
        return connection.address if connection is not None else "?"

    def queued(self, peer: NodeId) -> int:
        """Messages waiting for ``peer``."""
        link = self._links.get(peer)
        return len(link.queue) if link is not None else 0

    def peer_rtt_ms(self) -> dict[NodeId, float]:
        """Smoothed round trip in ms to each peer connected now that answered a ping."""
        connected = set(self.connected_peers())
        return {peer: ms for peer, ms in self.peer_rtt.rtt_ms().items() if peer in connected}

    def connected_peers(self) -> list[NodeId]:
        return sorted(p for p, link in self._links.items() if link.connection is not None)

    async def _ping_loop(self) -> None:
        """Ping every connected peer that answers pings, every ``PING_INTERVAL_S``."""
        while not self._closed:
            await asyncio.sleep(PING_INTERVAL_S)
            now = time.monotonic()
            self.peer_rtt.expire(now)
            for peer, link in self._links.items():
                connection = link.connection
                if connection is None or not connection.pings or connection.writer.is_closing():
                    continue
                seq = self.peer_rtt.sent(peer, now)
                connection.writer.write(encode_frame(self.codec.encode(self.id, Ping(seq))))
                self.metrics["pings_sent"] += 1

    async def _send_loop(self, link: _PeerLink) -> None:
        while not self._closed:
            await link.wakeup.wait()
            link.wakeup.clear()
            connection = link.connection
            if connection is None or not link.queue:
                continue
            queued = list(link.queue)
            link.queue.clear()
            frames = self._frames(queued, connection.batches)
            try:
                connection.writer.writelines(frames)
                self.metrics["frames_sent"] += len(frames)
                self.metrics["messages_sent"] += len(queued)
                # drain() waits while the socket buffer is above its high-water
                # mark; meanwhile new frames wait in the bounded queue.
                await connection.writer.drain()
            except (ConnectionError, OSError):
                connection.close()
            if link.queue:
                link.wakeup.set()

    def _frames(self, queued: list[tuple[msgspec.Raw, WireMessage, int]], batches: bool) -> list[bytes]:
        """The frames that carry ``queued`` to a peer: batches of them when it
        reads batches (each within the frame limit), else one frame each."""
        codec = self.codec
        limit = self.config.max_frame_bytes
        if not batches or len(queued) == 1:
            return [encode_frame(codec.encode(self.id, message, group), limit) for _, message, group in queued]
        frames: list[bytes] = []
        items: list[msgspec.Raw] = []
        size = _FRAME_OVERHEAD_BYTES
        for item, _, _ in queued:
            if items and size + len(item) > limit:
                frames.append(encode_frame(codec.encode_batch(self.id, items), limit))
                items = []
                size = _FRAME_OVERHEAD_BYTES
            items.append(item)
            size += len(item)
        frames.append(encode_frame(codec.encode_batch(self.id, items), limit))
        return frames

    # ------------------------------------------------------------ dialing
    async def _dial_loop(self, link: _PeerLink) -> None:
        failures = 0
        while not self._closed:
            address = self._addresses[link.peer]
            try:
                connection = await self._dial(link.peer, address)
            except _Refused as refusal:
                self._count(refusal.metric, node_name(link.peer), str(refusal))
                connection = None
            except (OSError, EOFError) as exc:  # ssl.SSLError and TimeoutError are OSErrors
                self.metrics["dial_failures"] += 1
                if isinstance(exc, ssl.SSLError):
                    self._count("tls_refused", node_name(link.peer), f"TLS: {exc}")
                else:
                    log.debug("dial %s at %s failed: %r", node_name(link.peer), address, exc)
                connection = None
            except Exception:
                # A bug must not silence this peer for good: log it, back off, retry.
                self.metrics["dial_errors"] += 1
                log.exception(
                    "%s: dialing %s failed unexpectedly", node_name(self.id), node_name(link.peer)
                )
                connection = None
            if connection is not None:
                failures = 0
                self.metrics["connections_dialed"] += 1
                await self._serve_peer(link, connection)
            else:
                failures += 1
            if self._closed:
                break
            delay_s = min(
                self.config.backoff_max_s,
                self.config.backoff_initial_s * 2 ** min(failures, 30),
            )
            await asyncio.sleep(self._rng.uniform(delay_s / 2, delay_s))

    async def _dial(self, peer: NodeId, address: Address) -> _Connection:
        timeout_s = self.config.handshake_timeout_s
        if self._client_ssl is not None:
            opened = asyncio.open_connection(
                *address,
                ssl=self._client_ssl,
                server_hostname=node_name(peer),
                ssl_handshake_timeout=timeout_s,
            )
        else:
            opened = asyncio.open_connection(*address)
        reader, writer = await asyncio.wait_for(opened, timeout_s)
        _detect_dead_peer(writer, self.config.peer_dead_after_s)
        peername = writer.get_extra_info("peername")
        if peername:
            self._governor.trust(str(peername[0]))  # a peer's host, as its name resolved
        connection = _Connection(
            reader, writer, node_name(peer), self.config.max_frame_bytes, self.config.limits.frame_timeout_s
        )
        try:
            writer.write(self._hello(ROLE_PEER))
            _, hello, _ = await asyncio.wait_for(self._receive(connection), timeout_s)
            if not isinstance(hello, Hello) or hello.role != ROLE_PEER or hello.node != peer:
                raise _Refused(
                    "wrong_peer", f"expected {node_name(peer)} at {address}, got {hello!r}"
                )
            connection.pings = hello.pings
            connection.batches = hello.batches
            if self.peer_check is not None:
                reason = self.peer_check(peer, _peer_certificate(writer))
                if reason is not None:
                    raise _Refused("peer_refused", f"{node_name(peer)}: {reason}")
        except BaseException:
            connection.close()
            raise
        return connection

    def _hello(self, role: str) -> bytes:
        return encode_frame(self.codec.encode(self.id, Hello(self.id, role, pings=role == ROLE_PEER, batches=role == ROLE_PEER)))

    # ------------------------------------------------------------ accepting
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Tracked like our own tasks so that close() ends accepted connections too.
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._closed:
            writer.close()
            return
        try:
            await self._handle_accepted(reader, writer)
        except asyncio.CancelledError:
            # close() cancels us; this is the top of the task, and asyncio's
            # stream server logs a cancelled handler as an error.
            writer.close()

    async def _handle_accepted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.metrics["connections_accepted"] += 1
        peername = writer.get_extra_info("peername")
        # Keyed by host, not port: one log line per refusing party, not per attempt.
        label = str(peername[0]) if peername else "?"
        refusal = self._governor.admit(label)
        if refusal is not None:
            self._count(refusal.metric, label, refusal.detail)
            transport = writer.transport
            transport.abort()  # no TLS, no goodbye: the cheapest way out
            return
        slot = _Slot(self._governor, label)
        try:
            await self._handshake_accepted(reader, writer, label, slot)
        finally:
            slot.release()

    async def _handshake_accepted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str, slot: _Slot
    ) -> None:
        timeout_s = self.config.handshake_timeout_s
        try:
            if self._server_ssl is not None:
                await asyncio.wait_for(
                    writer.start_tls(self._server_ssl, ssl_handshake_timeout=timeout_s), timeout_s
                )
            connection = _Connection(
                reader, writer, label, self.config.max_frame_bytes, self.config.limits.frame_timeout_s
            )
            _, hello, _ = await asyncio.wait_for(self._receive(connection), timeout_s)
        except TimeoutError:
            self._count("handshake_timeouts", label, f"no handshake within {timeout_s:g} s")
            writer.close()
            return
        except _Refused as refusal:
            self._count(refusal.metric, label, str(refusal))
            writer.close()
            return
        except ssl.SSLError as exc:
            self._count("tls_refused", label, f"TLS handshake refused: {exc}")
            writer.close()
            return
        except (OSError, EOFError) as exc:
            self._count("handshake_failures", label, f"no handshake: {exc!r}")
            writer.close()
            return
        slot.handshake_over()
        if not isinstance(hello, Hello):
            self._count(
                "handshake_failures", label, f"first frame is {type(hello).__name__}, not Hello"
            )
            connection.close()
            return
        if hello.role == ROLE_PEER:
            connection.pings = hello.pings
            connection.batches = hello.batches
            await self._accept_peer(connection, NodeId(hello.node), slot)
        elif hello.role == ROLE_CLIENT and self._on_client_message is not None:
            await self._serve_client(connection)
        else:
            self._count("handshake_failures", label, f"unsupported role {hello.role!r}")
            connection.close()

    async def _accept_peer(self, connection: _Connection, peer: NodeId, slot: _Slot | None = None) -> None:
        label = connection.label
        if peer not in self._addresses or peer >= self.id:
            # Only known peers, and only those with a lower id dial us.
            self._count(
                "unknown_peer", label, f"{node_name(peer)} may not dial {node_name(self.id)}"
            )
            connection.close()
            return
        if self._server_ssl is not None:
            names = certificate_names(connection.writer.get_extra_info("peercert"))
            if node_name(peer) not in names:
                self._count(
                    "peer_name_mismatch",
                    label,
                    f"Hello claims {node_name(peer)} but the certificate names {sorted(names)}",
                )
                connection.close()
                return
        if self.peer_check is not None:
            reason = self.peer_check(peer, _peer_certificate(connection.writer))
            if reason is not None:
                self._count("peer_refused", label, f"{node_name(peer)}: {reason}")
                connection.close()
                return
        if slot is not None:
            slot.release()  # a member's connection: no longer a stranger's slot
        self._governor.trust(label)  # a member's host: its clients and agents get the member limit
        connection.label = node_name(peer)
        _detect_dead_peer(connection.writer, self.config.peer_dead_after_s)
        connection.writer.write(self._hello(ROLE_PEER))
        await self._serve_peer(self._link(peer), connection)

    # ------------------------------------------------------------ serving
    async def _receive(self, connection: _Connection) -> tuple[NodeId, WireMessage, int]:
        body = await connection.next_body()
        if body is None:
            raise EOFError("connection closed")
        try:
            return self.codec.decode_frame(body)
        except RemoteProtocolError as exc:
            raise _Refused("malformed_messages", str(exc)) from None

    async def _serve_peer(self, link: _PeerLink, connection: _Connection) -> None:
        """Read from a handshaken peer connection until it ends; it carries
        this link's outbound frames meanwhile.

        A connection that completes once ``close`` has begun is dropped here:
        ``close`` closes only the connections it sees, and on Python 3.11
        ``asyncio.wait_for`` returns the result of a dial or handshake that
        finishes just as it is cancelled, swallowing the cancellation. Served,
        such a connection would keep ``close`` waiting until the peer hung up."""
        if self._closed:
            connection.close()
            return
        previous = link.connection
        if previous is not None:
            previous.close()  # the peer restarted and dialed again
        link.connection = connection
        link.wakeup.set()
        peer = link.peer
        batch_type = self._batch_type
        on_peer_message = self._on_peer_message
        try:
            while True:
                sender, message, group = await self._receive(connection)
                if sender != peer:
                    raise _Refused(
                        "sender_spoofed",
                        f"frame claims sender {sender} on {node_name(peer)}'s connection",
                    )
                if type(message) is batch_type:
                    try:
                        items = self.codec.batch_items(message)
                    except RemoteProtocolError as exc:
                        raise _Refused("malformed_messages", str(exc)) from None
                    self.metrics["messages_received"] += len(items)
                    self.metrics["batches_received"] += 1
                    limiter = self._limiter
                    for item_group, item in items:
                        if limiter is not None and not limiter.allow(peer, time.monotonic()):
                            self.metrics["rate_limited_drops"] += 1
                            continue
                        on_peer_message(peer, item, item_group)
                    continue
                if type(message) is Ping:
                    connection.writer.write(encode_frame(self.codec.encode(self.id, Pong(message.seq))))
                    continue
                if type(message) is Pong:
                    if self.peer_rtt.answered(peer, message.seq, time.monotonic()) is None:
                        self.metrics["late_pongs"] += 1
                    continue
                if not isinstance(message, self._peer_types):
                    raise _Refused("unexpected_messages", f"peer sent {type(message).__name__}")
                self.metrics["messages_received"] += 1
                limiter = self._limiter
                if limiter is not None and not limiter.allow(peer, time.monotonic()):
                    self.metrics["rate_limited_drops"] += 1
                    continue
                self._on_peer_message(peer, message, group)
        except _Refused as refusal:
            self._count(refusal.metric, node_name(peer), str(refusal))
        except (EOFError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            connection.close()
            if link.connection is connection:
                link.connection = None

    async def _serve_client(self, connection: _Connection) -> None:
        if self._closed:  # as in _serve_peer
            connection.close()
            return
        connection_id = self._next_client
        self._next_client += 1
        self._clients[connection_id] = connection
        assert self._on_client_message is not None
        limiter = self._client_limiter
        address = connection.address
        try:
            while True:
                _, message, group = await self._receive(connection)
                if not isinstance(message, self._client_types):
                    raise _Refused("unexpected_messages", f"client sent {type(message).__name__}")
                self.metrics["client_messages_received"] += 1
                if limiter is not None and not limiter.allow(address, time.monotonic()):
                    self.metrics["client_rate_limited_drops"] += 1
                    continue
                self._on_client_message(connection_id, message, group)
        except _Refused as refusal:
            self._count(refusal.metric, connection.label, str(refusal))
        except (EOFError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            connection.close()
            del self._clients[connection_id]

    def _count(self, metric: str, who: str, detail: str) -> None:
        """Count a refusal or drop; log the first of each kind per party."""
        self.metrics[metric] += 1
        key = (metric, who)
        if key in self._logged:
            log.debug("%s: %s: %s", node_name(self.id), metric, detail)
        else:
            self._logged.add(key)
            log.warning("%s: %s (%s): %s", node_name(self.id), who, metric, detail)


def _peer_certificate(writer: asyncio.StreamWriter) -> bytes | None:
    """The DER certificate the other end presented (None without TLS)."""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    try:
        certificate: bytes | None = ssl_object.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None
    return certificate


class ClientConnection:
    """A client's connection to one node: send requests, await replies."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        codec: WireCodec,
        client_id: int,
        max_frame_bytes: int,
    ) -> None:
        self._connection = _Connection(reader, writer, "client", max_frame_bytes)
        self._codec = codec
        self.client_id = client_id

    @classmethod
    async def open(
        cls,
        address: Address,
        client_id: int,
        message_types: Iterable[type[WireMessage]],
        *,
        tls: TlsConfig | None = None,
        node: NodeId | None = None,
        insecure: bool = False,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> ClientConnection:
        """Connect to the node at ``address`` (named ``node`` for the TLS check)."""
        if tls is None and not insecure:
            raise ConfigError("a TLS configuration is required (pass insecure=True for plain TCP)")
        codec = WireCodec((Hello, *message_types))
        if tls is not None:
            if node is None:
                raise ConfigError("with TLS, name the node to connect to (node=...)")
            reader, writer = await asyncio.open_connection(
                *address, ssl=tls.client_context(), server_hostname=node_name(node)
            )
        else:
            reader, writer = await asyncio.open_connection(*address)
        writer.write(encode_frame(codec.encode(NodeId(client_id), Hello(client_id, ROLE_CLIENT))))
        return cls(reader, writer, codec, client_id, max_frame_bytes)

    def send(self, message: WireMessage, group: int = 0) -> None:
        self._connection.writer.write(
            encode_frame(self._codec.encode(NodeId(self.client_id), message, group))
        )

    async def receive(self) -> WireMessage:
        """The next message from the node; ``EOFError`` when it closed."""
        return (await self.receive_grouped())[0]

    async def receive_grouped(self) -> tuple[WireMessage, int]:
        """The next message from the node and its group; ``EOFError`` when it closed."""
        body = await self._connection.next_body()
        if body is None:
            raise EOFError("the node closed the connection")
        _, message, group = self._codec.decode_frame(body)
        return message, group

    async def close(self) -> None:
        self._connection.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._connection.writer.wait_closed()
