"""``AsyncHrbClient``: an agent of an HRB deployment (``docs/hrb.md`` tier 3), on asyncio.

Theory of operation.

- *Finding the deployment.* The client knows some node endpoints. It asks
  one for its ``Status`` (the addresses of every node, ``members``) and for
  the layout (``LayoutRequest``: the shards, the core, the quorum mode),
  which every node derives identically from the cluster's configuration.
- *A transaction* is a list of ``TxnOp``s (put, get, add with a minimum,
  compare-and-set) with a home shard (by default the shard of its first
  key). The client numbers its transactions 1, 2, 3... under its session id;
  ``txn_id_of(client, seq)`` names one everywhere. It sends the transaction
  to every member of the home shard and waits for ``reply_quorum`` matching
  outcomes from distinct members (f + 1 in a ``byzantine`` shard, so one
  lying member cannot make it accept a forged outcome; one in a
  ``majority`` shard). A transaction keeps its id through every resend
  (after ``timeout_s`` without enough answers it is sent again to every
  member), so the shards apply it at most once; answers gathered before a
  resend still count. When ``deadline_s`` runs out the call raises
  ``TimeoutError``: the transaction may or may not have been applied.
- *One at a time.* A client runs one transaction at a time (a lock); run
  several clients for concurrency.
- *Reads* are transactions of ``get`` operations, ordered through the
  shard's log like writes (linearizable); ``read`` sends one per shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from quorate.client.aio import _NodeConnection
from quorate.client.contact import (
    DEFAULT_TIMEOUT_S,
    ClientError,
    ClusterUnreachable,
    client_ssl_context,
    new_client_id,
    resolve_contact,
    unreachable_message,
)
from quorate.codec import WireCodec
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError
from quorate.hrb.messages import CORE_GROUP_BASE, Transaction, TxnOp
from quorate.hrb.node import (
    CLIENT_MESSAGE_TYPES,
    REPLY_MESSAGE_TYPES,
    AgentOutcome,
    AgentTxn,
    CorruptFragment,
    CorruptFragmentReply,
    LayoutReply,
    LayoutRequest,
    TurnByzantine,
    TurnByzantineReply,
    reply_quorum,
    txn_id_of,
)
from quorate.hrb.txn import shard_of_key
from quorate.runtime.aio.admin import Status, StatusReply
from quorate.runtime.aio.config import Address, parse_address
from quorate.runtime.aio.tls import TlsConfig
from quorate.runtime.aio.transport import ROLE_CLIENT, Hello

__all__ = ["DEFAULT_TXN_DEADLINE_S", "AsyncHrbClient", "transfer_ops"]

READY_POLL_S = 0.2
READ_BATCH_KEYS = 32
"""Keys per read transaction (a shard refuses more than ``max_txn_ops``, 64 by default)."""
DEFAULT_TXN_DEADLINE_S = 30.0
"""A cross-shard transaction waits on the core and two shards: a longer default."""


def transfer_ops(source: str, target: str, amount: int, minimum: int = 0) -> tuple[TxnOp, ...]:
    """A bank transfer: debit ``source`` unless its balance would fall below
    ``minimum`` (the transaction then aborts everywhere), credit ``target``."""
    if amount <= 0:
        raise ConfigError(f"a transfer moves a positive amount, got {amount}")
    if source == target:
        raise ConfigError("a transfer needs two different accounts")
    return (TxnOp(source, "add", delta=-amount, minimum=minimum), TxnOp(target, "add", delta=amount))


class AsyncHrbClient:
    """An agent's session with an HRB deployment (see the module docstring)."""

    def __init__(
        self,
        endpoints: Iterable[str | Address] | None = None,
        *,
        cluster: str | Path | None = None,
        tls: TlsConfig | str | Path | None = None,
        insecure: bool = False,
        client_id: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        deadline_s: float = DEFAULT_TXN_DEADLINE_S,
    ) -> None:
        self.endpoints, tls_config, _ = resolve_contact(endpoints, cluster, tls, "client", insecure)
        if not 0 < timeout_s <= deadline_s:
            raise ConfigError(f"need 0 < timeout_s <= deadline_s, got {timeout_s} and {deadline_s}")
        self._ssl = client_ssl_context(tls_config) if tls_config is not None else None
        self.client_id = client_id if client_id is not None else new_client_id()
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.seq = 0
        self.resends = 0
        self.addresses: dict[int, Address] = {}
        self.layout: LayoutReply | None = None
        self._codec = WireCodec((Hello, Status, StatusReply, *CLIENT_MESSAGE_TYPES, *REPLY_MESSAGE_TYPES))
        self._connections: dict[Address, _NodeConnection] = {}
        self._readers: dict[Address, asyncio.Task[None]] = {}
        self._answers: dict[bytes, dict[int, AgentOutcome]] = defaultdict(dict)
        self._arrived = asyncio.Event()
        self._calls: dict[int, asyncio.Future[WireMessage]] = {}
        self._call_seq = 0
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> AsyncHrbClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in self._readers.values():
            task.cancel()
        for connection in self._connections.values():
            connection.close()
        self._readers.clear()
        self._connections.clear()

    # ------------------------------------------------------------ the deployment
    async def discover(self) -> LayoutReply:
        """Learn the nodes' addresses and the layout from the first endpoint that answers."""
        problems = []
        for address in self.endpoints:
            try:
                status = await self._ask(address, 0, lambda seq: Status(seq))
                layout = await self._ask(address, 0, lambda seq: LayoutRequest(seq))
            except (OSError, TimeoutError, EOFError) as exc:
                problems.append(str(exc) or type(exc).__name__)
                continue
            if not isinstance(status, StatusReply) or not isinstance(layout, LayoutReply):
                continue
            for node, text in status.members.items():
                host, port = parse_address(text, "member address")
                self.addresses[int(node)] = (address[0] if host in ("0.0.0.0", "::") else host, port)
            self.layout = layout
            return layout
        raise ClusterUnreachable(unreachable_message(self.endpoints, f" ({'; '.join(problems)})" if problems else ""))

    async def _layout(self) -> LayoutReply:
        return self.layout if self.layout is not None else await self.discover()

    async def shard_of(self, key: str) -> int:
        layout = await self._layout()
        return shard_of_key(key, len(layout.shards))

    async def status(self, node: int, group: int = 0) -> StatusReply:
        """Node ``node``'s view of ``group`` (a shard's id, or the core's)."""
        await self._layout()
        reply = await self._ask(self._address(node), group, lambda seq: Status(seq))
        if not isinstance(reply, StatusReply):
            raise ClientError(f"n{node} answered {type(reply).__name__}, not a status")
        return reply

    async def layout_of(self, node: int) -> LayoutReply:
        """The layout as node ``node`` sees it now (its shard's voters, the core epoch it learned)."""
        await self._layout()
        reply = await self._ask(self._address(node), 0, lambda seq: LayoutRequest(seq))
        if not isinstance(reply, LayoutReply):
            raise ClientError(f"n{node} answered {type(reply).__name__}, not a layout")
        return reply

    async def leaders(self) -> dict[int, int | None]:
        """Shard -> the leader its answering members name (None: none agreed yet)."""
        layout = await self._layout()
        out: dict[int, int | None] = {}
        for shard, members in sorted(layout.shards.items()):
            named: set[int | None] = set()
            for node in members:
                try:
                    named.add((await self.status(node, shard)).leader)
                except (OSError, TimeoutError, EOFError, ClientError):
                    continue
            out[shard] = named.pop() if len(named) == 1 else None
        return out

    async def core_leader(self) -> int | None:
        """The core's leader as its answering members agree on, or None."""
        layout = await self._layout()
        named: set[int | None] = set()
        for node in layout.core:
            try:
                named.add((await self.status(node, CORE_GROUP_BASE)).leader)
            except (OSError, TimeoutError, EOFError, ClientError):
                continue
        return named.pop() if len(named) == 1 else None

    async def wait_ready(self, timeout_s: float) -> dict[int, int]:
        """Every shard's leader once every shard and the core have one;
        ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                leaders = await self.leaders()
                if all(leader is not None for leader in leaders.values()) and await self.core_leader() is not None:
                    return {k: v for k, v in leaders.items() if v is not None}
            except (ClusterUnreachable, OSError, TimeoutError, EOFError):
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the shards and the core did not all elect a leader within {timeout_s:g} s")
            await asyncio.sleep(READY_POLL_S)

    async def turn_byzantine(self, node: int, behaviour: str) -> None:
        """Fault injection: make ``node``'s shard member misbehave from now on."""
        layout = await self._layout()
        shard = next((k for k, members in layout.shards.items() if node in members), None)
        if shard is None:
            raise ConfigError(f"n{node} is in no shard of this deployment")
        reply = await self._ask(self._address(node), shard, lambda seq: TurnByzantine(seq, behaviour))
        if not isinstance(reply, TurnByzantineReply) or not reply.ok:
            raise ClientError(f"n{node} refused: {getattr(reply, 'error', reply)}")

    async def corrupt_fragment(self, node: int) -> int:
        """Fault injection: flip one byte of ``node``'s stored checkpoint
        fragment; the index of the checkpoint it belongs to."""
        layout = await self._layout()
        shard = next((k for k, members in layout.shards.items() if node in members), None)
        if shard is None:
            raise ConfigError(f"n{node} is in no shard of this deployment")
        reply = await self._ask(self._address(node), shard, lambda seq: CorruptFragment(seq))
        if not isinstance(reply, CorruptFragmentReply) or not reply.ok:
            raise ClientError(f"n{node} refused: {getattr(reply, 'error', reply)}")
        return reply.log_index

    # ------------------------------------------------------------ transactions
    async def transact(self, ops: Sequence[TxnOp], *, home_shard: int | None = None) -> AgentOutcome:
        """Run one transaction (see the module docstring); its outcome."""
        if not ops:
            raise ConfigError("a transaction has at least one operation")
        layout = await self._layout()
        home = home_shard if home_shard is not None else shard_of_key(ops[0].key, len(layout.shards))
        if home not in layout.shards:
            raise ConfigError(f"no shard {home}; the shards are 1..{len(layout.shards)}")
        async with self._lock:
            self.seq += 1
            txn = Transaction(txn_id_of(self.client_id, self.seq), self.client_id, self.seq, home, tuple(ops))
            return await self._run(txn, layout.shards[home], reply_quorum(len(layout.shards[home]), layout.quorum))

    async def _run(self, txn: Transaction, members: Sequence[int], need: int) -> AgentOutcome:
        deadline = time.monotonic() + self.deadline_s
        answers = self._answers[txn.txn_id]
        try:
            while True:
                await self._send_all(members, AgentTxn(txn), txn.home_shard)
                resend_at = min(deadline, time.monotonic() + self.timeout_s)
                while True:
                    agreed = _agreed(answers, need)
                    if agreed is not None:
                        return agreed
                    left = resend_at - time.monotonic()
                    if left <= 0:
                        break
                    self._arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), left)
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"transaction {txn.seq} of client {txn.client}: {len(answers)} answer(s), "
                        f"{need} matching needed, within {self.deadline_s:g} s (it may or may not apply)"
                    )
                self.resends += 1
        finally:
            self._answers.pop(txn.txn_id, None)

    async def transfer(self, source: str, target: str, amount: int, *, minimum: int = 0) -> AgentOutcome:
        """Move ``amount`` from ``source`` to ``target`` unless ``source`` would fall below ``minimum``."""
        return await self.transact(transfer_ops(source, target, amount, minimum))

    async def put(self, values: dict[str, str]) -> AgentOutcome:
        """Set every key of ``values`` in one transaction."""
        return await self.transact([TxnOp(k, "put", v) for k, v in values.items()])

    async def read(self, keys: Iterable[str]) -> dict[str, str | None]:
        """The values of ``keys``, one linearizable read transaction per shard."""
        layout = await self._layout()
        by_shard: dict[int, list[str]] = defaultdict(list)
        for key in dict.fromkeys(keys):
            by_shard[shard_of_key(key, len(layout.shards))].append(key)
        out: dict[str, str | None] = {}
        for shard, shard_keys in sorted(by_shard.items()):
            for start in range(0, len(shard_keys), READ_BATCH_KEYS):
                batch = shard_keys[start : start + READ_BATCH_KEYS]
                outcome = await self.transact([TxnOp(k, "get") for k in batch], home_shard=shard)
                if not outcome.committed:
                    raise ClientError(f"reading shard {shard} failed: {outcome.reason}")
                out.update(dict(outcome.reads))
        return {k: out.get(k) for k in dict.fromkeys(keys)}

    # ------------------------------------------------------------ connections
    def _address(self, node: int) -> Address:
        address = self.addresses.get(node)
        if address is None:
            raise ConfigError(f"no address known for n{node}")
        return address

    async def _send_all(self, members: Sequence[int], message: WireMessage, group: int) -> None:
        for node in members:
            address = self.addresses.get(node)
            if address is None:
                continue
            try:
                connection = await asyncio.wait_for(self._connect(address), self.timeout_s)
                connection.send(message, group)
            except (OSError, TimeoutError):
                self._drop(address)  # a member that is down: the others answer

    async def _ask(self, address: Address, group: int, make: Any) -> WireMessage:
        self._call_seq += 1
        seq = self._call_seq
        future: asyncio.Future[WireMessage] = asyncio.get_running_loop().create_future()
        self._calls[seq] = future
        try:
            connection = await asyncio.wait_for(self._connect(address), self.timeout_s)
            connection.send(make(seq), group)
            return await asyncio.wait_for(future, self.timeout_s)
        except (OSError, TimeoutError):
            self._drop(address)
            raise
        finally:
            self._calls.pop(seq, None)

    async def _connect(self, address: Address) -> _NodeConnection:
        connection = self._connections.get(address)
        if connection is not None and not connection.writer.is_closing():
            return connection
        reader, writer = await asyncio.open_connection(*address, ssl=self._ssl)
        connection = _NodeConnection(reader, writer, self._codec, self.client_id)
        connection.send(Hello(self.client_id, ROLE_CLIENT))
        self._connections[address] = connection
        self._readers[address] = asyncio.ensure_future(self._read(address, connection))
        return connection

    async def _read(self, address: Address, connection: _NodeConnection) -> None:
        try:
            while True:
                message = await connection.receive()
                if type(message) is AgentOutcome:
                    if message.client == self.client_id and message.txn_id in self._answers:
                        self._answers[message.txn_id][message.node] = message
                        self._arrived.set()
                    continue
                seq = getattr(message, "seq", None)
                future = self._calls.get(seq) if isinstance(seq, int) else None
                if future is not None and not future.done():
                    future.set_result(message)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            if self._connections.get(address) is connection:
                self._drop(address)

    def _drop(self, address: Address) -> None:
        connection = self._connections.pop(address, None)
        task = self._readers.pop(address, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if connection is not None:
            connection.close()


def _agreed(answers: dict[int, AgentOutcome], need: int) -> AgentOutcome | None:
    """An outcome ``need`` distinct members agree on, or None."""
    counts: dict[Any, list[AgentOutcome]] = defaultdict(list)
    for outcome in answers.values():
        counts[outcome.verdict()].append(outcome)
    for agreeing in counts.values():
        if len(agreeing) >= need:
            return agreeing[0]
    return None
