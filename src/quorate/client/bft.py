"""``BftClient``: the key-value API of a Byzantine fault tolerant cluster
(PBFT, HotStuff) on asyncio.

Theory of operation (Castro & Liskov, OSDI '99, §4.1 and §4.2; HotStuff uses
the same client model).

- *Believe f + 1.* Up to f = (n - 1) // 3 replicas may lie, the primary
  among them. A client accepts a result only when f + 1 *distinct* replicas
  returned the same one: at least one of them is honest, and an honest
  replica answers only with what the cluster executed. Answers that are not
  results (``retry``, ``redirect``) count for nothing. ``error`` answers
  count like results: f + 1 matching errors are the cluster's refusal
  (``ClientError``).
- *Ask the primary, then everyone* (§4.1). Every replica executes every
  command and answers every client it knows, so a request needs to reach
  only the primary: the client sends it there once it knows the primary
  (PBFT replies name it; the client follows a name while f + 1 replicas'
  latest replies agree on it). When f + 1 matching replies have not arrived within ``timeout_s``
  — a faulty or deposed primary — the client resends to **every** replica;
  backups forward it to the primary and start their view-change timers.
  Without a hint (HotStuff, whose leader rotates; a fresh client) it sends
  to every replica from the start.
- *Replies find the client.* A backup that never saw the request must
  still answer it, so a channel tells every replica, once per connection,
  which sessions it carries (``ClientAttach``); replicas answer an executed
  command on the connection its session attached, or on the one the
  request came in on.
- *Many sessions, few connections* (``BftChannel``). Sessions of one
  process share one connection per replica; what they send within one turn
  of the event loop leaves in one write per replica, and replies are
  matched to calls by ``(client, seq)``. A channel is what a process with
  hundreds of concurrent sessions (an agent pool, a benchmark) needs: a
  connection per session per replica would cost one system call per
  message. A ``BftClient`` made without a channel gets one of its own.
- *Distinct replicas.* With TLS each connection is tied to the node name in
  the replica's certificate (issued by the cluster CA), so one replica cannot
  answer under two names; two endpoints of one node count once. Without TLS
  (loopback tests and benchmarks) a replica is its endpoint.
- *Exactly-once retries.* A request keeps its ``(client, seq)`` across
  resends. The store applies a session's seq once and replicas answer
  duplicates from the session's saved result
  (``quorate.runtime.aio.bft``). One request is outstanding per session;
  run several sessions for concurrency.
- *Reads* are ordered through the protocol like writes (BFT cores have no
  ReadIndex), so ``get`` is linearizable once f + 1 replicas agree.
- ``bft_delegate`` lets ``AsyncClient`` hand its calls to a ``BftClient``
  when the cluster's ``Status`` names a BFT protocol, so ``quorate kv`` and
  every ``AsyncClient`` user work against PBFT and HotStuff clusters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from quorate.client.contact import (
    ClientError,
    KeyValueApi,
    client_ssl_context,
    new_client_id,
    resolve_contact,
    unreachable_message,
)
from quorate.codec import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, WireCodec, encode_frame
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError, RemoteProtocolError
from quorate.ids import NodeId, node_name, parse_node_name
from quorate.protocols import byzantine_fault_tolerant
from quorate.runtime.aio.admin import CLIENT_PROTOCOL_TYPES, Status, StatusReply
from quorate.runtime.aio.config import Address, format_address
from quorate.runtime.aio.tls import TlsConfig, certificate_names
from quorate.runtime.aio.transport import ROLE_CLIENT, Hello
from quorate.state.kv import Op, Result, decode_result, encode_op
from quorate.state.service import (
    STATUS_ERROR,
    STATUS_OK,
    ClientAttach,
    ClientReply,
    ClientRequest,
)

if TYPE_CHECKING:
    from quorate.client.aio import AsyncClient

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_DEADLINE_S = 15.0
RETRY_PAUSE_S = 0.05
"""Pause before resending after every replica answered without a result."""
CLIENT_ID_BITS = 63
RECONNECT_PAUSE_S = 0.2
"""Least time between two connection attempts to one replica."""


def max_faulty_replicas(n: int) -> int:
    """f: the Byzantine replicas ``n`` replicas tolerate (n >= 3f + 1)."""
    return (n - 1) // 3


class _Wire(asyncio.Protocol):
    """One TCP (or TLS) connection of a ``_Link``; stale connections of a
    link that reconnected are ignored."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(DEFAULT_MAX_FRAME_BYTES)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.link.channel._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link.wire is self:
            self.link.wire = None
        self.transport = None


class _Link:
    """One replica: its endpoint, identity and current connection."""

    __slots__ = ("address", "channel", "connecting", "identity", "next_attempt", "node", "wire")

    def __init__(self, channel: BftChannel, address: Address) -> None:
        self.channel = channel
        self.address = address
        self.identity = format_address(address)
        """Who answers on this endpoint: the certificate's node name with TLS."""
        self.node: int | None = None
        """The node id this replica reports in ``Status`` (for primary hints only)."""
        self.wire: _Wire | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.next_attempt = 0.0

    @property
    def up(self) -> bool:
        return self.wire is not None and self.wire.transport is not None


class _Call:
    """One request waiting for f + 1 matching replies."""

    __slots__ = (
        "answers", "deadline", "frame", "future", "key", "owner", "refused", "request", "sends", "timer",
    )

    def __init__(
        self,
        request: ClientRequest,
        frame: bytes,
        future: asyncio.Future[ClientReply],
        deadline: float,
        owner: BftClient | None,
    ) -> None:
        self.request = request
        self.owner = owner
        self.key = (request.client, request.seq)
        self.frame = frame
        self.future = future
        self.deadline = deadline
        # Latest answer per replica identity: a replica may change its mind
        # (retry, then ok), never count twice.
        self.answers: dict[str, tuple[str, bytes, str]] = {}
        self.refused: set[str] = set()
        self.sends = 0
        self.timer: asyncio.TimerHandle | None = None


class BftChannel:
    """Connections to every replica of one BFT cluster, shared by the
    ``BftClient`` sessions of a process (see the module docstring).

    ``endpoints`` must list **every** replica: a client that knows fewer than
    f + 1 honest ones cannot collect a result. Without them (and TLS
    settings) the channel reads the local cluster in ``cluster``
    (``./quorate-cluster``), as ``AsyncClient`` does. ``faulty`` overrides f.
    """

    def __init__(
        self,
        endpoints: Iterable[str | Address] | None = None,
        *,
        cluster: str | Path | None = None,
        tls: TlsConfig | str | Path | None = None,
        tls_name: str = "client",
        insecure: bool = False,
        faulty: int | None = None,
    ) -> None:
        addresses, tls, _ = resolve_contact(endpoints, cluster, tls, tls_name, insecure)
        if len(set(addresses)) != len(addresses):
            raise ConfigError("an endpoint is listed twice; list each replica once")
        f = max_faulty_replicas(len(addresses)) if faulty is None else faulty
        if not f >= 0 or len(addresses) < 2 * f + 1:
            raise ConfigError(f"{len(addresses)} endpoints cannot outvote f = {f} faulty replicas")
        self.links = [_Link(self, a) for a in addresses]
        self.faulty = f
        self.channel_id = new_client_id()
        self.retries = 0
        """Resends to all replicas beyond the first send, over the channel's life."""
        self.primary: int | None = None
        """The node id f + 1 replicas last named as primary (None: send to all)."""
        self._ssl = None if tls is None else client_ssl_context(tls)
        self._codec = WireCodec((Hello, *CLIENT_PROTOCOL_TYPES))
        self._sender = NodeId(self.channel_id)
        self._calls: dict[tuple[int, int], _Call] = {}
        self._hints: dict[str, int | None] = {}
        """Replica identity -> the primary its latest result named."""
        self._sessions: dict[int, None] = {}
        self._outgoing: dict[int, list[bytes]] = {}  # link index -> frames this turn
        self._flush_scheduled = False
        self._closed = False

    @property
    def matching_needed(self) -> int:
        """f + 1: matching replies from distinct replicas that make a result."""
        return self.faulty + 1

    # ------------------------------------------------------------ sessions
    def attach(self, client_id: int) -> None:
        """Carry session ``client_id``: replicas learn to answer it here."""
        if client_id in self._sessions:
            return
        self._sessions[client_id] = None
        frame = self._frame(ClientAttach((client_id,)))
        for index, link in enumerate(self.links):
            if link.up:
                self._queue(index, frame)

    def detach(self, client_id: int) -> None:
        self._sessions.pop(client_id, None)

    async def close(self) -> None:
        self._closed = True
        for call in list(self._calls.values()):
            if not call.future.done():
                call.future.set_exception(ConnectionError("the client was closed"))
        for link in self.links:
            task, link.connecting = link.connecting, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            wire, link.wire = link.wire, None
            if wire is not None and wire.transport is not None:
                wire.transport.close()

    # ------------------------------------------------------------ calls
    async def call(
        self, request: ClientRequest, timeout_s: float, deadline_s: float, owner: BftClient | None = None
    ) -> ClientReply:
        """The reply f + 1 replicas agree on; ``TimeoutError`` after
        ``deadline_s``. Resends are counted in ``retries`` here and in ``owner``."""
        if self._closed:
            raise ConnectionError("the client was closed")
        loop = asyncio.get_running_loop()
        if not any(link.up for link in self.links):
            await self._connect_all(min(timeout_s, deadline_s))
        call = _Call(request, self._frame(request), loop.create_future(), loop.time() + deadline_s, owner)
        if call.key in self._calls:
            raise ClientError(f"request {call.key} is already outstanding")
        self._calls[call.key] = call
        try:
            self._send(call, timeout_s, to_primary=True)
            return await call.future
        finally:
            if call.timer is not None:
                call.timer.cancel()
            self._calls.pop(call.key, None)

    def _send(self, call: _Call, timeout_s: float, *, to_primary: bool) -> None:
        loop = asyncio.get_running_loop()
        remaining = call.deadline - loop.time()
        if remaining <= 0:
            if not call.future.done():
                if not call.answers and not any(link.up for link in self.links):
                    problem = unreachable_message([link.address for link in self.links], " in time")
                else:
                    problem = (
                        f"no {self.matching_needed} matching replies within the deadline "
                        f"({len(call.answers)} replicas answered)"
                    )
                call.future.set_exception(TimeoutError(problem))
            return
        if call.sends:
            self.retries += 1
            if call.owner is not None:
                call.owner.retries += 1
        call.sends += 1
        call.refused.clear()
        targets = self._targets(to_primary)
        for index in targets:
            link = self.links[index]
            if link.up:
                self._queue(index, call.frame)
            else:
                self._reconnect(index)
        call.timer = loop.call_later(min(timeout_s, remaining), self._timed_out, call, timeout_s)

    def _targets(self, to_primary: bool) -> list[int]:
        primary = self.primary
        if to_primary and primary is not None:
            for index, link in enumerate(self.links):
                if link.node == primary and link.up:
                    return [index]
        return list(range(len(self.links)))

    def _timed_out(self, call: _Call, timeout_s: float) -> None:
        if not call.future.done():
            self._send(call, timeout_s, to_primary=False)

    # ------------------------------------------------------------ replies
    def _received(self, wire: _Wire, data: bytes) -> None:
        link = wire.link
        transport = wire.transport
        try:
            bodies = wire.decoder.feed(data)
            for body in bodies:
                message = self._codec.decode(body)[1]
                if isinstance(message, ClientReply):
                    self._on_reply(link, message)
                elif isinstance(message, StatusReply):
                    link.node = message.node
        except RemoteProtocolError:
            # A replica speaking nonsense: drop it; the others may make f + 1.
            if transport is not None:
                transport.close()

    def _on_reply(self, link: _Link, reply: ClientReply) -> None:
        if reply.status in (STATUS_OK, STATUS_ERROR) and self._hints.get(link.identity, -1) != reply.leader:
            self._learn_hint(link.identity, reply.leader)
        call = self._calls.get((reply.client, reply.seq))
        if call is None or call.future.done():
            return  # an answer to an earlier request, or one already decided
        identity = link.identity
        if reply.status not in (STATUS_OK, STATUS_ERROR):
            call.answers.pop(identity, None)
            call.refused.add(identity)
            if len(call.refused) >= len(self.links) and call.timer is not None:
                # Every replica said "not now" (busy): resend soon.
                call.timer.cancel()
                loop = asyncio.get_running_loop()
                call.timer = loop.call_later(RETRY_PAUSE_S, self._timed_out, call, RETRY_PAUSE_S)
            return
        call.refused.discard(identity)
        key = (reply.status, reply.result, reply.error if reply.status == STATUS_ERROR else "")
        call.answers[identity] = key
        if sum(1 for a in call.answers.values() if a == key) >= self.matching_needed:
            call.future.set_result(reply)

    def _learn_hint(self, identity: str, leader: int | None) -> None:
        """Each replica's latest word on the primary, from every result it
        sends (late answers to decided calls too). Requests go to a primary
        only while f + 1 replicas name it (one of them is honest), otherwise
        to everyone, so a lying replica cannot steer requests to a replica
        that ignores them, nor keep the others' agreement from counting."""
        hints = self._hints
        hints.pop(identity, None)  # re-insert: the dict stays ordered by recency
        hints[identity] = leader
        named = [p for p in hints.values() if p is not None]
        # While a view change spreads two names may both have f + 1 votes
        # (old words for the old primary, new ones for the new): the name
        # heard most recently wins.
        self.primary = next(
            (p for p in reversed(named) if named.count(p) >= self.matching_needed), None
        )

    # ------------------------------------------------------------ sending
    def _frame(self, message: WireMessage) -> bytes:
        return encode_frame(self._codec.encode(self._sender, message))

    def _queue(self, index: int, frame: bytes) -> None:
        frames = self._outgoing.get(index)
        if frames is None:
            self._outgoing[index] = [frame]
        else:
            frames.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """One write per replica for everything queued this turn."""
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, {}
        for index, frames in outgoing.items():
            wire = self.links[index].wire
            if wire is not None and wire.transport is not None and not wire.transport.is_closing():
                wire.transport.write(b"".join(frames))

    # ------------------------------------------------------------ connecting
    async def _connect_all(self, timeout_s: float) -> None:
        for index in range(len(self.links)):
            self._reconnect(index, force=True)
        tasks = [link.connecting for link in self.links if link.connecting is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    def _reconnect(self, index: int, *, force: bool = False) -> None:
        link = self.links[index]
        if self._closed or link.up or link.connecting is not None:
            return
        loop = asyncio.get_running_loop()
        if not force and loop.time() < link.next_attempt:
            return
        link.next_attempt = loop.time() + RECONNECT_PAUSE_S
        link.connecting = loop.create_task(self._connect(index))

    async def _connect(self, index: int) -> None:
        link = self.links[index]
        loop = asyncio.get_running_loop()
        try:
            wire = _Wire(link)
            host, port = link.address
            if self._ssl is None:
                await asyncio.wait_for(loop.create_connection(lambda: wire, host, port), DEFAULT_TIMEOUT_S)
            else:
                # Any member's certificate from the CA; the name is read below.
                await asyncio.wait_for(
                    loop.create_connection(lambda: wire, host, port, ssl=self._ssl), DEFAULT_TIMEOUT_S
                )
                self._learn_identity(link, wire)
            transport = wire.transport
            if transport is None:
                return
            link.wire = wire
            hello = self._frame(Hello(self.channel_id, ROLE_CLIENT))
            frames = [hello, self._frame(Status(0))]
            if self._sessions:
                frames.append(self._frame(ClientAttach(tuple(self._sessions))))
            transport.write(b"".join(frames))
        except (OSError, TimeoutError, ConfigError):
            # ssl.SSLError is an OSError. This replica is down or not who it
            # claims: the others may still make f + 1.
            pass
        finally:
            link.connecting = None

    def _learn_identity(self, link: _Link, wire: _Wire) -> None:
        """With TLS, the CA vouches for the name in the certificate: that
        name, not the endpoint, is the replica's identity."""
        transport = wire.transport
        assert transport is not None
        names = certificate_names(transport.get_extra_info("peercert"))
        nodes = set()
        for name in names:
            with contextlib.suppress(ValueError):
                nodes.add(NodeId(parse_node_name(name)))
        if len(nodes) != 1:
            transport.close()
            raise ConfigError(
                f"{format_address(link.address)} presented no single node name ({sorted(names)})"
            )
        link.identity = node_name(nodes.pop())


class BftClient(KeyValueApi):
    """A session with a BFT cluster (see the module docstring).

    Either give ``endpoints`` (and TLS settings), or nothing to reach the
    local cluster in ``cluster`` (``./quorate-cluster``): the session gets a
    channel of its own, closed with it; or give a shared ``channel``.
    """

    def __init__(
        self,
        endpoints: Iterable[str | Address] | None = None,
        *,
        cluster: str | Path | None = None,
        tls: TlsConfig | str | Path | None = None,
        tls_name: str = "client",
        insecure: bool = False,
        client_id: int,
        namespace: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        deadline_s: float = DEFAULT_DEADLINE_S,
        faulty: int | None = None,
        first_seq: int = 0,
        channel: BftChannel | None = None,
    ) -> None:
        if not 0 < timeout_s <= deadline_s:
            raise ConfigError(f"need 0 < timeout_s <= deadline_s, got {timeout_s} and {deadline_s}")
        if not 0 < client_id < 2**CLIENT_ID_BITS:
            raise ConfigError(f"client_id must be in [1, 2**63), got {client_id}")
        self._owns_channel = channel is None
        if channel is None:
            channel = BftChannel(
                endpoints, cluster=cluster, tls=tls, tls_name=tls_name, insecure=insecure, faulty=faulty
            )
        self.channel = channel
        self.client_id = client_id
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.seq = first_seq
        self.retries = 0
        """Resends to all replicas beyond the first send, over the client's life."""
        self._lock = asyncio.Lock()
        self._attached = False

    @property
    def faulty(self) -> int:
        return self.channel.faulty

    @property
    def matching_needed(self) -> int:
        """f + 1: matching replies from distinct replicas that make a result."""
        return self.channel.matching_needed

    async def __aenter__(self) -> BftClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.channel.detach(self.client_id)
        if self._owns_channel:
            await self.channel.close()

    async def execute(self, op: Op) -> Result:
        """Run one operation under a fresh seq; resend under that seq until
        f + 1 replicas agree or ``deadline_s`` passes (``TimeoutError``)."""
        async with self._lock:
            if not self._attached:
                self.channel.attach(self.client_id)
                self._attached = True
            self.seq += 1
            request = ClientRequest(self.client_id, self.seq, encode_op(op))
            reply = await self.channel.call(request, self.timeout_s, self.deadline_s, self)
        if reply.status == STATUS_ERROR:
            raise ClientError(reply.error or "the cluster refused the operation")
        return decode_result(reply.result)


async def bft_delegate(client: AsyncClient) -> BftClient | None:
    """The ``BftClient`` that serves ``client``'s calls when its cluster runs a
    BFT protocol, else ``None``. The protocol is learnt once from the first
    endpoint that answers ``Status``; the delegate shares the client's
    session id, TLS and timeouts and continues its seq numbers."""
    if isinstance(client.bft, BftClient):
        return client.bft
    if client.protocol is None:
        # Until the protocol is known no path is safe to take: a BFT cluster
        # must not be trusted on one replica's word. Nodes still starting
        # refuse connections, so ask again until the call's deadline.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + client.deadline_s
        while client.protocol is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    unreachable_message(client.endpoints, f" within {client.deadline_s:g} s")
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(client.timeout_s, remaining)):
                    client.protocol = await _ask_protocol(client)
            if client.protocol is None:
                await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - loop.time())))
        if isinstance(client.bft, BftClient):
            return client.bft  # a concurrent call got here first
    if client.protocol is None or not byzantine_fault_tolerant(client.protocol):
        return None
    bft = client.bft = BftClient(
        client.endpoints,
        tls=client.tls,
        insecure=client.tls is None,
        client_id=client.client_id,
        namespace=client.namespace,
        timeout_s=client.timeout_s,
        deadline_s=client.deadline_s,
        first_seq=client.seq,
    )
    return bft


async def _ask_protocol(client: AsyncClient) -> str | None:
    for address in client.endpoints:
        with contextlib.suppress(OSError, EOFError, TimeoutError, RemoteProtocolError):
            return (await client.status(address)).protocol
    return None
