"""``AsyncClient``: the key-value API of a quorate cluster, on asyncio.

Theory of operation.

- *Endpoints and the leader.* The client knows some ``host:port`` endpoints.
  It sends to the node it believes leads; a ``redirect`` names the leader's
  id, and the ``members`` map of a ``Status`` reply says where that id
  listens, so the client follows the hint. With no hint (an election is under
  way) it waits a short, growing pause and tries the next endpoint.
- *Exactly-once retries* (Raft thesis §6.3). Each client has a session id
  (a random 63-bit number from ``secrets`` unless given) and numbers its
  requests 1, 2, 3... A request keeps its ``(client, seq)`` through every
  retry — after a timeout, a lost connection, a ``retry`` answer or a
  redirect — so the replicated store applies it at most once and answers a
  duplicate with the saved result. The store keeps only the latest seq per
  session, so one client has **one request outstanding at a time** (a lock
  serialises callers); run several clients for concurrency.
- *Linearizable reads.* ``get`` and ``list`` go to the leader, which serves
  them through ReadIndex (thesis §6.4): confirmed leadership with a
  heartbeat round, then the state applied up to the commit index.
- *Time.* ``timeout_s`` bounds each attempt on one connection;
  ``deadline_s`` bounds a whole call, retries included. A call that runs out
  raises ``TimeoutError``: the write may or may not have happened (a history
  records it as ``info``).
- *TLS.* With ``tls`` the client presents a certificate of the cluster CA and
  checks each node's certificate against that CA (any node name: a client
  trusts every member of its cluster); ``insecure=True`` uses plain TCP.
  Missing or unreadable TLS files raise ``ConfigError`` at construction,
  naming the file and where the certificates usually are.
- *Finding the cluster.* Without ``endpoints`` the client reads them, with
  the TLS directory and the protocol, from the directory ``quorate cluster
  up`` wrote (``cluster``, default ``./quorate-cluster``), so
  ``Client()`` is enough next to a local cluster.
- *Multi-Raft.* On a multi-Raft cluster an operation on one key goes to
  its range (``quorate.client.ranges``); an ``Extension`` operation (the key
  registry, private votes, DKG) goes to the registry group
  (``REGISTRY_GROUP``, every node a voter), following its leader as above.
- *A cluster that is down.* ``reachable()`` asks every endpoint for its
  ``Status`` once and raises ``ClusterUnreachable`` at once when none
  answers; the ``quorate kv`` commands call it first so they fail fast. A call
  that runs out of time says which endpoints it tried.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quorate.client.bft import bft_delegate
from quorate.client.contact import (
    CLIENT_ID_BITS,
    DEFAULT_DEADLINE_S,
    DEFAULT_TIMEOUT_S,
    READ_CHUNK_BYTES,
    RETRY_PAUSE_INITIAL_S,
    RETRY_PAUSE_MAX_S,
    ClientError,
    ClusterUnreachable,
    KeyValueApi,
    client_ssl_context,
    new_client_id,
    resolve_contact,
    unreachable_message,
)
from quorate.client.ranges import RangedCalls
from quorate.codec import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, WireCodec, encode_frame
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError, RemoteProtocolError
from quorate.ids import NodeId
from quorate.multiraft.descriptor import REGISTRY_GROUP
from quorate.multiraft.messages import MULTIRAFT, RangesReply, RangesStatus
from quorate.multiraft.routing import RangeCache
from quorate.runtime.aio.admin import (
    ADMIN_ACTIONS,
    CLIENT_PROTOCOL_TYPES,
    Admin,
    AdminChange,
    AdminReply,
    Status,
    StatusReply,
)
from quorate.runtime.aio.config import Address, format_address, parse_address
from quorate.runtime.aio.tls import TlsConfig
from quorate.runtime.aio.transport import ROLE_CLIENT, Hello
from quorate.state.backup import BackupChunk, BackupRequest
from quorate.state.kv import Cas, Delete, Extension, Get, Op, Put, Result, decode_result, encode_op
from quorate.state.service import (
    STATUS_OK,
    STATUS_REDIRECT,
    STATUS_RETRY,
    ClientReply,
    ClientRequest,
)


class _NodeConnection:
    """One framed connection to a node, with a reader task that hands every
    incoming message to a queue."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        codec: WireCodec,
        client_id: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.codec = codec
        self.client_id = client_id
        self.decoder = FrameDecoder(DEFAULT_MAX_FRAME_BYTES)
        self.pending: list[bytes] = []

    def send(self, message: WireMessage, group: int = 0) -> None:
        self.writer.write(encode_frame(self.codec.encode(NodeId(self.client_id), message, group)))

    async def receive(self) -> WireMessage:
        while not self.pending:
            data = await self.reader.read(READ_CHUNK_BYTES)
            if not data:
                raise EOFError("the node closed the connection")
            self.pending.extend(self.decoder.feed(data))
        # A reply comes back in the group of its request (a range, say).
        return self.codec.decode_frame(self.pending.pop(0))[1]

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class AsyncClient(KeyValueApi):
    """A session with a quorate cluster (see the module docstring).

    ``endpoints``: ``"host:port"`` strings or ``(host, port)`` pairs; without
    them, those of the local cluster in ``cluster`` (``./quorate-cluster``).
    ``tls``: a ``TlsConfig`` or a directory holding ``ca.crt`` and
    ``<tls_name>.crt/.key`` (``quorate certs issue client``); without it and
    without ``insecure``, the cluster directory's.
    """

    def __init__(
        self,
        endpoints: Iterable[str | Address] | None = None,
        *,
        cluster: str | Path | None = None,
        tls: TlsConfig | str | Path | None = None,
        tls_name: str = "client",
        insecure: bool = False,
        client_id: int | None = None,
        namespace: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        deadline_s: float = DEFAULT_DEADLINE_S,
        range_cache: RangeCache | None = None,
    ) -> None:
        self.endpoints, tls, protocol = resolve_contact(endpoints, cluster, tls, tls_name, insecure)
        if not 0 < timeout_s <= deadline_s:
            raise ConfigError(f"need 0 < timeout_s <= deadline_s, got {timeout_s} and {deadline_s}")
        self._ssl = client_ssl_context(tls) if tls is not None else None
        self.client_id = client_id if client_id is not None else new_client_id()
        if not 0 < self.client_id < 2**CLIENT_ID_BITS:
            raise ConfigError(f"client_id must be in [1, 2**63), got {self.client_id}")
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.seq = 0
        self.members: dict[int, Address] = {}
        self.leader: Address | None = None
        self.retries = 0
        """Attempts beyond the first, over the client's life (for reports)."""
        self._codec = WireCodec((Hello, *CLIENT_PROTOCOL_TYPES, RangesStatus, RangesReply))
        self._connections: dict[Address, _NodeConnection] = {}
        self._lock = asyncio.Lock()
        self._next_endpoint = 0
        self.tls = tls
        self.protocol: str | None = protocol
        """The cluster's protocol: from the cluster directory, else from the
        first ``Status`` reply."""
        self.bft: Any = None
        """A ``quorate.client.bft.BftClient`` serving every call when the
        protocol is Byzantine fault tolerant (f + 1 matching replies)."""
        self.ranged = RangedCalls(self, range_cache)
        """Routing by range, used when the cluster is multi-Raft (``quorate.client.ranges``)."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.bft is not None:
            await self.bft.close()
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    async def execute(self, op: Op) -> Result:
        """Run one operation with a fresh seq and retries under that seq."""
        if (self.protocol is None or self.bft is not None) and (bft := await bft_delegate(self)) is not None:
            result: Result = await bft.execute(op)
            return result
        group = 0
        if self.protocol == MULTIRAFT:
            if not isinstance(op, Extension):
                return await self._execute_ranged(op)
            group = REGISTRY_GROUP  # the key registry, votes and DKG: one group of every node
        async with self._lock:
            self.seq += 1
            request = ClientRequest(self.client_id, self.seq, encode_op(op))
            reply = await self._call(
                request, lambda m: isinstance(m, ClientReply) and m.seq == request.seq, group
            )
            assert isinstance(reply, ClientReply)
            return decode_result(reply.result)

    async def _execute_ranged(self, op: Op) -> Result:
        """One operation at the range of its key (a multi-Raft cluster)."""
        if not isinstance(op, Put | Get | Delete | Cas):
            raise ClientError(
                f"a multi-Raft cluster serves operations on one key; {type(op).__name__} would span ranges"
            )
        async with self._lock:
            self.seq += 1
            return await self.ranged.call(ClientRequest(self.client_id, self.seq, encode_op(op)), op.key)

    # ------------------------------------------------------------ admin
    async def status(self, endpoint: str | Address) -> StatusReply:
        """One node's ``StatusReply`` (no redirect: every node answers)."""
        address = endpoint if isinstance(endpoint, tuple) else parse_address(endpoint, "endpoint")
        async with self._lock:
            return await self._ask_status(address)

    async def _ask_status(self, address: Address) -> StatusReply:
        self.seq += 1
        seq = self.seq

        def matches(message: WireMessage) -> bool:
            return isinstance(message, StatusReply) and message.seq == seq

        try:
            connection = await asyncio.wait_for(self._connect(address), self.timeout_s)
            connection.send(Status(seq))
            reply = await asyncio.wait_for(
                self._receive_matching(connection, matches), self.timeout_s
            )
        except BaseException:
            self._drop(address)
            raise
        assert isinstance(reply, StatusReply)
        self._learn(reply)
        if self.protocol is None:
            self.protocol = reply.protocol
        return reply

    async def ranges_status(self, endpoint: str | Address) -> RangesReply:
        """The range groups one node of a multi-Raft cluster hosts, as it sees them."""
        address = endpoint if isinstance(endpoint, tuple) else parse_address(endpoint, "endpoint")
        async with self._lock:
            self.seq += 1
            seq = self.seq
            try:
                connection = await asyncio.wait_for(self._connect(address), self.timeout_s)
                connection.send(RangesStatus(seq))
                reply = await asyncio.wait_for(
                    self._receive_matching(connection, lambda m: isinstance(m, RangesReply) and m.seq == seq),
                    self.timeout_s,
                )
            except BaseException:
                self._drop(address)
                raise
        assert isinstance(reply, RangesReply)
        return reply

    async def reachable(self) -> StatusReply:
        """The ``Status`` of the first endpoint that answers (one try each);
        ``ClusterUnreachable`` when none does."""
        problems: builtins.list[str] = []
        for address in self.endpoints:
            try:
                return await self.status(address)
            except (OSError, EOFError, TimeoutError, RemoteProtocolError) as exc:
                problems.append(_problem(exc))
        detail = ""
        if any("certificate" in p or "SSL" in p or "TLS" in p for p in problems):
            detail = f" ({problems[0]})"
        raise ClusterUnreachable(unreachable_message(self.endpoints, detail))

    async def cluster_status(self) -> builtins.list[StatusReply | None]:
        """Every endpoint's status (``None`` for a node that did not answer)."""
        out: builtins.list[StatusReply | None] = []
        for address in self.endpoints:
            try:
                out.append(await self.status(address))
            except (OSError, EOFError, TimeoutError, RemoteProtocolError, ssl.SSLError):
                out.append(None)
        return out

    async def cluster_ranges(self) -> builtins.list[RangesReply | None]:
        """Every endpoint's hosted ranges in a multi-Raft cluster (``None``
        for a node that did not answer)."""
        out: builtins.list[RangesReply | None] = []
        for address in self.endpoints:
            try:
                out.append(await self.ranges_status(address))
            except (OSError, EOFError, TimeoutError, RemoteProtocolError, ssl.SSLError):
                out.append(None)
        return out

    async def admin(self, action: str, node: int, address: str = "") -> None:
        """Ask the leader for ``action`` (one of ``ADMIN_ACTIONS``) on ``node``."""
        if action not in ADMIN_ACTIONS:
            raise ConfigError(f"action must be one of {', '.join(ADMIN_ACTIONS)}, got {action!r}")
        async with self._lock:
            self.seq += 1
            request = Admin(self.seq, action, node, address)
            reply = await self._call(
                request, lambda m: isinstance(m, AdminReply) and m.seq == request.seq
            )
            assert isinstance(reply, AdminReply)

    async def change_members(
        self,
        *,
        add: dict[int, str] | None = None,
        remove: Iterable[int] = (),
        add_learners: dict[int, str] | None = None,
        quorum: tuple[int, int] | None = None,
        transition: str = "auto",
    ) -> None:
        """Ask the leader for several members and/or quorum sizes at once
        (``AdminChange``: joint consensus in Raft); ``add``/``add_learners``
        map node ids to ``host:port`` ("" for a node already a member). With
        nothing to change, leaves a joint configuration. A refusal raises
        ``ClientError`` with the leader's reason."""
        async with self._lock:
            self.seq += 1
            request = AdminChange(
                self.seq, dict(add or {}), tuple(remove), dict(add_learners or {}), quorum, transition
            )
            reply = await self._call(
                request, lambda m: isinstance(m, AdminReply) and m.seq == request.seq
            )
            assert isinstance(reply, AdminReply)

    async def backup_chunk(self, image: int = 0, offset: int = 0) -> BackupChunk:
        """One chunk of a backup (``quorate.state.backup``): ``image == 0``
        takes a new linearizable image at the leader; later chunks go to the
        node that answered, which holds the image."""
        async with self._lock:
            self.seq += 1
            request = BackupRequest(self.seq, image, offset)
            reply = await self._call(request, lambda m: isinstance(m, BackupChunk) and m.seq == request.seq)
            assert isinstance(reply, BackupChunk)
            return reply

    # ------------------------------------------------------------ plumbing
    async def _call(self, request: WireMessage, matches: Any, group: int = 0) -> WireMessage:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        pause_s = RETRY_PAUSE_INITIAL_S
        attempts = 0
        answered = False
        last_problem = "no attempt"
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if not answered:
                    raise TimeoutError(
                        unreachable_message(self.endpoints, f" within {self.deadline_s:g} s")
                    )
                raise TimeoutError(f"no answer within {self.deadline_s:g} s ({last_problem})")
            if attempts:
                self.retries += 1
            attempts += 1
            address = self.leader or self._rotate()
            try:
                connection = await asyncio.wait_for(
                    self._connect(address), min(self.timeout_s, remaining)
                )
                connection.send(request, group)
                reply = await asyncio.wait_for(
                    self._receive_matching(connection, matches), min(self.timeout_s, remaining)
                )
            except (OSError, EOFError, TimeoutError, RemoteProtocolError) as exc:
                # ssl.SSLError is an OSError. Same seq next time: exactly-once.
                last_problem = f"{format_address(address)}: {exc!r}"
                self._drop(address)
                self.leader = None
                await asyncio.sleep(min(pause_s, max(0.0, deadline - loop.time())))
                pause_s = min(pause_s * 2, RETRY_PAUSE_MAX_S)
                continue
            answered = True
            status = getattr(reply, "status", STATUS_OK)
            if status == STATUS_OK:
                self.leader = address
                return reply
            if status == STATUS_REDIRECT:
                hint = getattr(reply, "leader", None)
                self.leader = await self._leader_address(hint)
                last_problem = f"{format_address(address)} redirected to {hint}"
                if self.leader is None or self.leader == address:
                    self.leader = None
                    await asyncio.sleep(min(pause_s, max(0.0, deadline - loop.time())))
                    pause_s = min(pause_s * 2, RETRY_PAUSE_MAX_S)
                continue
            if status == STATUS_RETRY:
                last_problem = f"{format_address(address)}: {getattr(reply, 'error', 'retry')}"
                await asyncio.sleep(min(pause_s, max(0.0, deadline - loop.time())))
                pause_s = min(pause_s * 2, RETRY_PAUSE_MAX_S)
                continue
            raise ClientError(getattr(reply, "error", "") or f"the cluster answered {status}")

    def _rotate(self) -> Address:
        address = self.endpoints[self._next_endpoint % len(self.endpoints)]
        self._next_endpoint += 1
        return address

    async def _leader_address(self, leader: int | None) -> Address | None:
        if leader is None:
            return None
        if leader not in self.members:
            # Ask the endpoints where the leader listens (one status round).
            for address in self.endpoints:
                with contextlib.suppress(OSError, EOFError, TimeoutError, RemoteProtocolError):
                    await self._ask_status(address)
                if leader in self.members:
                    break
        return self.members.get(leader)

    def _learn(self, reply: StatusReply) -> None:
        for node, text in reply.members.items():
            with contextlib.suppress(ConfigError):
                host, port = parse_address(text, "member")
                if host in ("0.0.0.0", "::"):
                    continue
                self.members[node] = (host, port)

    async def _receive_matching(self, connection: _NodeConnection, matches: Any) -> WireMessage:
        while True:
            message = await connection.receive()
            if matches(message):
                return message
            # An answer to an earlier, abandoned attempt: not ours any more.

    async def _connect(self, address: Address) -> _NodeConnection:
        connection = self._connections.get(address)
        if connection is not None and not connection.writer.is_closing():
            return connection
        if self._ssl is not None:
            reader, writer = await asyncio.open_connection(*address, ssl=self._ssl)
        else:
            reader, writer = await asyncio.open_connection(*address)
        connection = _NodeConnection(reader, writer, self._codec, self.client_id)
        connection.send(Hello(self.client_id, ROLE_CLIENT))
        self._connections[address] = connection
        return connection

    def _drop(self, address: Address) -> None:
        connection = self._connections.pop(address, None)
        if connection is not None:
            connection.close()


def _problem(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
