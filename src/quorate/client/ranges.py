"""A client's calls to a multi-Raft cluster: each key to its range's leader.

Theory of operation. A multi-Raft cluster (``quorate.runtime.aio.multiraft``)
cuts the key space into ranges, each its own Raft group. The client keeps a
``RangeCache`` (``quorate.multiraft.routing``) of the descriptors it has
seen and a leader hint per range, and for each operation:

1. finds the cached range holding the key; on a miss it asks the meta group
   (group 0) with a ``LookupKey`` read, sent to the meta leader it knows or
   to each node in turn (a node outside the meta group answers
   ``wrong_range``, a follower redirects);
2. sends the request in the range's group to the range's leader hint, else
   to one of the range's replicas, at the address the nodes' ``Status``
   gave for that node;
3. on ``ok`` notes the node as the range's leader; on ``redirect`` takes the
   hint; on a wrong-range answer (the range split or the node does not host
   it; also an ``ok`` carrying the error ``wrong range``: the command reached
   the log after its key left the range; ``quorate.multiraft.wrong_range``
   reads all three) takes the descriptors the answer carries, or looks the
   key up again, and resends.

The request keeps its ``(client, seq)`` through every resend, to any range:
a write applied before a split is answered from the session table the split
copied into the new range, so it is applied at most once (``multiraft.range``).
Lookups are reads with no session (client 0).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from quorate.client.contact import RETRY_PAUSE_INITIAL_S, RETRY_PAUSE_MAX_S, ClientError
from quorate.core.wire import WireMessage
from quorate.errors import RemoteProtocolError
from quorate.ids import NodeId
from quorate.multiraft.descriptor import META_GROUP
from quorate.multiraft.routing import RangeCache
from quorate.multiraft.table import LookupKey, decode_meta_result, encode_meta_op
from quorate.multiraft.wrong_range import refresh, stale_range
from quorate.runtime.aio.config import Address, format_address
from quorate.state.kv import Result, decode_result
from quorate.state.service import (
    STATUS_OK,
    STATUS_REDIRECT,
    STATUS_RETRY,
    ClientReply,
    ClientRequest,
)

__all__ = ["LOOKUP_CLIENT", "RangedCalls"]

LOOKUP_CLIENT = 0
"""The client id of range lookups (reads: no session)."""


class _Connection(Protocol):
    def send(self, message: WireMessage, group: int = 0) -> None: ...

    async def receive(self) -> WireMessage: ...


class _Client(Protocol):
    """What ``RangedCalls`` uses of ``quorate.client.aio.AsyncClient``."""

    endpoints: list[Address]
    members: dict[int, Address]
    timeout_s: float
    deadline_s: float
    retries: int

    async def _connect(self, address: Address) -> Any: ...

    def _drop(self, address: Address) -> None: ...

    async def _ask_status(self, address: Address) -> Any: ...


class RangedCalls:
    """One client's routing by range (see the module docstring); ``cache``
    may be shared by clients of one process (they then learn together)."""

    def __init__(self, client: _Client, cache: RangeCache | None = None, rng: random.Random | None = None) -> None:
        self.client = client
        self.cache = cache if cache is not None else RangeCache()
        self._rng = rng or random.Random()
        self._lookup_seq = 0
        self._meta_leader: int | None = None
        self._next_node = 0
        self.lookups = 0
        self.wrong_range = 0

    async def call(self, request: ClientRequest, key: str) -> Result:
        """Run ``request`` (an operation on ``key``) at the range holding the key."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.client.deadline_s
        pause_s = RETRY_PAUSE_INITIAL_S
        last_problem = "no attempt"
        attempts = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no answer within {self.client.deadline_s:g} s ({last_problem})")
            if attempts:
                self.client.retries += 1
            attempts += 1
            descriptor = self.cache.lookup(key)
            if descriptor is None:
                last_problem = f"no range known for key {key!r}"
                if not await self._lookup(key, deadline):
                    pause_s = await self._pause(pause_s, deadline)
                continue
            range_id = descriptor.range_id
            node = self.cache.leader(range_id)
            if node is None:
                node = NodeId(descriptor.replicas[self._rng.randrange(len(descriptor.replicas))])
            address = await self._address(node)
            if address is None:
                last_problem = f"no address known for node {node}"
                self.cache.set_leader(range_id, None)
                pause_s = await self._pause(pause_s, deadline)
                continue
            try:
                reply = await self._ask(address, request, range_id, min(self.client.timeout_s, remaining))
            except (OSError, EOFError, TimeoutError, RemoteProtocolError) as exc:
                last_problem = f"{format_address(address)}: {exc!r}"
                self.client._drop(address)
                self.cache.set_leader(range_id, None)
                pause_s = await self._pause(pause_s, deadline)
                continue
            status = reply.status
            known = stale_range(reply)
            if known is not None:
                # Not executed (``quorate.multiraft.wrong_range``): refresh and send again.
                self.wrong_range += 1
                last_problem = f"range {range_id} moved"
                if refresh(self.cache, key, range_id, known):
                    await self._lookup(key, deadline)
                continue
            if status == STATUS_OK:
                result = decode_result(reply.result)
                self.cache.set_leader(range_id, node)
                return result
            if status == STATUS_REDIRECT:
                hint = reply.leader
                self.cache.set_leader(range_id, None if hint is None or hint == node else NodeId(hint))
                last_problem = f"node {node} redirected to {hint} for range {range_id}"
                if hint is None or hint == node:
                    pause_s = await self._pause(pause_s, deadline)
                continue
            if status == STATUS_RETRY:
                last_problem = f"{format_address(address)}: {reply.error or 'retry'}"
                pause_s = await self._pause(pause_s, deadline)
                continue
            raise ClientError(reply.error or f"the cluster answered {status}")

    async def _lookup(self, key: str, deadline: float) -> bool:
        """Ask the meta group for the range of ``key``; True when the cache took an answer."""
        loop = asyncio.get_running_loop()
        self._lookup_seq += 1
        self.lookups += 1
        request = ClientRequest(LOOKUP_CLIENT, self._lookup_seq, encode_meta_op(LookupKey(key)))
        if not self.client.members:
            await self._learn_members()
        candidates = sorted(self.client.members)
        for _ in range(max(1, len(candidates)) * 2):
            remaining = deadline - loop.time()
            if remaining <= 0 or not candidates:
                return False
            node = self._meta_leader
            if node is None:
                node = candidates[self._next_node % len(candidates)]
                self._next_node += 1
            address = self.client.members.get(node)
            if address is None:
                self._meta_leader = None
                continue
            try:
                reply = await self._ask(address, request, META_GROUP, min(self.client.timeout_s, remaining))
            except (OSError, EOFError, TimeoutError, RemoteProtocolError):
                self.client._drop(address)
                self._meta_leader = None
                continue
            if reply.status == STATUS_OK:
                self._meta_leader = node
                try:
                    result = decode_meta_result(reply.result)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    return False
                if result.ok:
                    self.cache.update(result.ranges)
                    return True
                return False
            if reply.status == STATUS_REDIRECT and reply.leader is not None and reply.leader != node:
                self._meta_leader = reply.leader
            else:
                self._meta_leader = None
                if reply.status == STATUS_REDIRECT:
                    await asyncio.sleep(min(RETRY_PAUSE_INITIAL_S, max(0.0, deadline - loop.time())))
        return False

    async def _learn_members(self) -> None:
        for address in self.client.endpoints:
            try:
                await self.client._ask_status(address)
                return
            except (OSError, EOFError, TimeoutError, RemoteProtocolError):
                continue

    async def _address(self, node: int) -> Address | None:
        if node not in self.client.members:
            await self._learn_members()
        return self.client.members.get(node)

    async def _ask(self, address: Address, request: ClientRequest, group: int, timeout_s: float) -> ClientReply:
        # asyncio.timeout, not wait_for: the same deadlines (each step within
        # timeout_s) without a task and its wake-ups per step of every call.
        client = self.client
        async with asyncio.timeout(timeout_s):
            connection: _Connection = await client._connect(address)
        connection.send(request, group)
        async with asyncio.timeout(timeout_s):
            return await _matching(connection.receive, request)

    async def _pause(self, pause_s: float, deadline: float) -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(min(pause_s, max(0.0, deadline - loop.time())))
        return min(pause_s * 2, RETRY_PAUSE_MAX_S)


async def _matching(receive: Callable[[], Awaitable[WireMessage]], request: ClientRequest) -> ClientReply:
    while True:
        message = await receive()
        if type(message) is ClientReply and message.client == request.client and message.seq == request.seq:
            return message
        # An answer to an earlier, abandoned attempt: not ours any more.

