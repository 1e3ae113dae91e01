"""``BftClient``: the key-value API of a Byzantine fault tolerant cluster
(PBFT, HotStuff) on asyncio.

Theory of operation (Castro & Liskov, OSDI '99, §4.1 and §4.2; HotStuff uses
the same client model).

- *Ask everyone, believe f + 1.* Up to f = (n - 1) // 3 replicas may lie, the
  primary among them. The client sends each request to **every** replica
  (``ClientConnection``, one per replica) and accepts a result only when
  f + 1 *distinct* replicas returned the same one: at least one of them is
  honest, and an honest replica answers only with what the cluster executed.
  Answers that are not results (``retry``, ``redirect``) count for nothing.
  ``error`` answers count like results: f + 1 matching errors are the
  cluster's refusal (``ClientError``).
- *Distinct replicas.* With TLS each connection is tied to the node name in
  the replica's certificate (issued by the cluster CA), so one replica cannot
  answer under two names; two endpoints of one node count once. Without TLS
  (loopback tests and benchmarks) a replica is its endpoint.
- *Exactly-once retries.* A request keeps its ``(client, seq)``; when f + 1
  matching replies have not arrived within ``timeout_s`` the client resends
  it to every replica (reconnecting where a connection broke). The store
  applies a session's seq once and replicas answer duplicates from the
  session's saved result (``quorate.runtime.aio.bft``). One request is
  outstanding per client; run several clients for concurrency.
- *Reads* are ordered through the protocol like writes (BFT cores have no
  ReadIndex), so ``get`` is linearizable once f + 1 replicas agree.
- ``bft_delegate`` lets ``AsyncClient`` hand its calls to a ``BftClient``
  when the cluster's ``Status`` names a BFT protocol, so ``quorate kv`` and
  every ``AsyncClient`` user work against PBFT and HotStuff clusters.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from pathlib import Path

from quorate.client.aio import AsyncClient, ClientError
from quorate.codec import DEFAULT_MAX_FRAME_BYTES, WireCodec, encode_frame
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError, RemoteProtocolError
from quorate.ids import NodeId, node_name, parse_node_name
from quorate.runtime.aio.admin import CLIENT_PROTOCOL_TYPES
from quorate.runtime.aio.bft import BFT_PROTOCOLS
from quorate.runtime.aio.config import Address, format_address, parse_address
from quorate.runtime.aio.tls import TlsConfig, certificate_names
from quorate.runtime.aio.transport import ROLE_CLIENT, ClientConnection, Hello
from quorate.state.kv import Cas, Delete, Get, List, Op, Put, Result, decode_result, encode_op
from quorate.state.service import STATUS_ERROR, STATUS_OK, ClientReply, ClientRequest

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_DEADLINE_S = 15.0
RETRY_PAUSE_S = 0.05
"""Pause before resending after every replica answered without a result."""
CLIENT_ID_BITS = 63


def max_faulty_replicas(n: int) -> int:
    """f: the Byzantine replicas ``n`` replicas tolerate (n >= 3f + 1)."""
    return (n - 1) // 3


class _Replica:
    """One replica's endpoint, its identity and its live connection."""

    __slots__ = ("address", "connection", "identity", "reader")

    def __init__(self, address: Address) -> None:
        self.address = address
        self.identity = format_address(address)
        """Who answers on this endpoint: the certificate's node name with TLS."""
        self.connection: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None


class BftClient:
    """A session with a BFT cluster (see the module docstring).

    ``endpoints`` must list **every** replica: a client that knows fewer than
    f + 1 honest ones cannot collect a result. ``faulty`` overrides f.
    """

    def __init__(
        self,
        endpoints: Iterable[str | Address],
        *,
        tls: TlsConfig | str | Path | None = None,
        tls_name: str = "client",
        insecure: bool = False,
        client_id: int,
        namespace: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        deadline_s: float = DEFAULT_DEADLINE_S,
        faulty: int | None = None,
        first_seq: int = 0,
    ) -> None:
        addresses = [e if isinstance(e, tuple) else parse_address(e, "endpoint") for e in endpoints]
        if not addresses:
            raise ConfigError("give every replica's endpoint (host:port)")
        if len(set(addresses)) != len(addresses):
            raise ConfigError("an endpoint is listed twice; list each replica once")
        if isinstance(tls, str | Path):
            tls = TlsConfig.from_directory(tls, tls_name)
        if tls is None and not insecure:
            raise ConfigError("give a TLS directory (--tls-dir) or choose insecure plain TCP")
        if tls is not None and insecure:
            raise ConfigError("choose TLS or insecure, not both")
        if not 0 < timeout_s <= deadline_s:
            raise ConfigError(f"need 0 < timeout_s <= deadline_s, got {timeout_s} and {deadline_s}")
        if not 0 < client_id < 2**CLIENT_ID_BITS:
            raise ConfigError(f"client_id must be in [1, 2**63), got {client_id}")
        f = max_faulty_replicas(len(addresses)) if faulty is None else faulty
        if not f >= 0 or len(addresses) < 2 * f + 1:
            raise ConfigError(f"{len(addresses)} endpoints cannot outvote f = {f} faulty replicas")
        self.replicas = [_Replica(a) for a in addresses]
        self.faulty = f
        self.client_id = client_id
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.seq = first_seq
        self.retries = 0
        """Resends to all replicas beyond the first send, over the client's life."""
        self._tls = tls
        self._replies: asyncio.Queue[tuple[_Replica, ClientReply]] = asyncio.Queue()
        self._lock = asyncio.Lock()

    @property
    def matching_needed(self) -> int:
        """f + 1: matching replies from distinct replicas that make a result."""
        return self.faulty + 1

    async def __aenter__(self) -> BftClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for replica in self.replicas:
            await self._disconnect(replica)

    # ------------------------------------------------------------ the KV API
    async def put(
        self, key: str, value: str, *, namespace: str | None = None, ttl_s: float | None = None
    ) -> None:
        result = await self.execute(Put(key, value, self._ns(namespace), ttl_s))
        if not result.ok:
            raise ClientError(result.error or "the write was refused")

    async def get(self, key: str, *, namespace: str | None = None) -> str | None:
        return (await self.execute(Get(key, self._ns(namespace)))).value

    async def delete(self, key: str, *, namespace: str | None = None) -> bool:
        return (await self.execute(Delete(key, self._ns(namespace)))).ok

    async def cas(
        self, key: str, expected: str | None, new: str, *, namespace: str | None = None
    ) -> tuple[bool, str | None]:
        result = await self.execute(Cas(key, expected, new, self._ns(namespace)))
        return result.ok, None if result.ok else result.value

    async def list(
        self, prefix: str = "", *, namespace: str | None = None, limit: int = 1000
    ) -> list[tuple[str, str]]:
        result = await self.execute(List(prefix, self._ns(namespace), limit))
        return list(result.items or [])

    def _ns(self, namespace: str | None) -> str:
        return self.namespace if namespace is None else namespace

    async def execute(self, op: Op) -> Result:
        """Run one operation under a fresh seq; resend under that seq until
        f + 1 replicas agree or ``deadline_s`` passes (``TimeoutError``)."""
        async with self._lock:
            self.seq += 1
            request = ClientRequest(self.client_id, self.seq, encode_op(op))
            reply = await self._agreed_reply(request)
        if reply.status == STATUS_ERROR:
            raise ClientError(reply.error or "the cluster refused the operation")
        return decode_result(reply.result)

    # ------------------------------------------------------------ plumbing
    async def _agreed_reply(self, request: ClientRequest) -> ClientReply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        # Latest answer per replica identity: a replica may change its mind
        # (retry, then ok), never count twice.
        answers: dict[str, tuple[str, bytes, str]] = {}
        sent = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no {self.matching_needed} matching replies within {self.deadline_s} s "
                    f"({len(answers)} replicas answered)"
                )
            if sent:
                self.retries += 1
            sent += 1
            await self._send_to_all(request, min(self.timeout_s, remaining))
            attempt_end = loop.time() + min(self.timeout_s, remaining)
            refused: set[str] = set()
            while (wait_s := attempt_end - loop.time()) > 0:
                try:
                    replica, reply = await asyncio.wait_for(self._replies.get(), wait_s)
                except TimeoutError:
                    break
                if reply.seq != request.seq or reply.client != request.client:
                    continue  # an answer to an earlier request
                if reply.status not in (STATUS_OK, STATUS_ERROR):
                    answers.pop(replica.identity, None)
                    refused.add(replica.identity)
                    if len(refused) >= len(self.replicas):
                        break  # every replica said "not now" (busy): resend soon
                    continue
                refused.discard(replica.identity)
                key = (reply.status, reply.result, reply.error if reply.status == STATUS_ERROR else "")
                answers[replica.identity] = key
                if sum(1 for a in answers.values() if a == key) >= self.matching_needed:
                    return reply
            await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - loop.time())))

    async def _send_to_all(self, request: ClientRequest, connect_timeout_s: float) -> None:
        async def one(replica: _Replica) -> None:
            try:
                if replica.connection is None:
                    await asyncio.wait_for(self._connect(replica), connect_timeout_s)
                assert replica.connection is not None
                replica.connection.send(request)
            except (OSError, EOFError, TimeoutError, RemoteProtocolError, ConfigError):
                # ssl.SSLError is an OSError. This replica is down or not
                # who it claims: the others may still make f + 1.
                await self._disconnect(replica)

        await asyncio.gather(*(one(r) for r in self.replicas))

    async def _connect(self, replica: _Replica) -> None:
        tls = self._tls
        if tls is None:
            connection = await ClientConnection.open(
                replica.address, self.client_id, CLIENT_PROTOCOL_TYPES, insecure=True
            )
        else:
            connection = await self._open_tls(replica, tls)
        replica.connection = connection
        replica.reader = asyncio.create_task(self._read(replica, connection))

    async def _open_tls(self, replica: _Replica, tls: TlsConfig) -> ClientConnection:
        """Connect, then learn which replica answered from its certificate:
        the CA vouches for the name, so the name is the replica's identity."""
        context = tls.client_context()
        context.check_hostname = False  # any member; the name is read below
        reader, writer = await asyncio.open_connection(*replica.address, ssl=context)
        names = certificate_names(writer.get_extra_info("peercert"))
        nodes = set()
        for name in names:
            with contextlib.suppress(ValueError):
                nodes.add(NodeId(parse_node_name(name)))
        if len(nodes) != 1:
            writer.close()
            raise ConfigError(
                f"{format_address(replica.address)} presented no single node name ({sorted(names)})"
            )
        replica.identity = node_name(nodes.pop())
        codec = WireCodec((Hello, *CLIENT_PROTOCOL_TYPES))
        client = NodeId(self.client_id)
        writer.write(encode_frame(codec.encode(client, Hello(self.client_id, ROLE_CLIENT))))
        return ClientConnection(reader, writer, codec, self.client_id, DEFAULT_MAX_FRAME_BYTES)

    async def _read(self, replica: _Replica, connection: ClientConnection) -> None:
        try:
            while True:
                message: WireMessage = await connection.receive()
                if isinstance(message, ClientReply):
                    self._replies.put_nowait((replica, message))
        except (OSError, EOFError, RemoteProtocolError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            if replica.connection is connection:
                replica.connection = None
                replica.reader = None
                await connection.close()

    async def _disconnect(self, replica: _Replica) -> None:
        connection, reader = replica.connection, replica.reader
        replica.connection = None
        replica.reader = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if connection is not None:
            await connection.close()


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
                raise TimeoutError(f"no node answered Status within {client.deadline_s} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(client.timeout_s, remaining)):
                    client.protocol = await _ask_protocol(client)
            if client.protocol is None:
                await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - loop.time())))
        if isinstance(client.bft, BftClient):
            return client.bft  # a concurrent call got here first
    if client.protocol not in BFT_PROTOCOLS:
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
