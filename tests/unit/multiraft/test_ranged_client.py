"""The client's routing by range (``quorate.client.ranges``) against scripted nodes.

- A cold cache asks the meta group (group 0) for the key's range, following
  a meta follower's redirect, then sends the request in the range's group.
- A ``wrong_range`` answer carrying the new descriptors (the range split)
  refreshes the cache and the same ``(client, seq)`` goes to the new range
  at once, without another meta lookup.
- A ``wrong_range`` answer without descriptors (the node does not host the
  range) makes the client look the key up again.
- An ``ok`` carrying the error ``wrong range`` (the command reached the log
  after its key left the range) is resent, never returned.
- A node's ``redirect`` hint becomes the range's leader hint.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from quorate.client.ranges import LOOKUP_CLIENT, RangedCalls
from quorate.core.wire import WireMessage
from quorate.multiraft.descriptor import RangeDescriptor
from quorate.multiraft.messages import STATUS_WRONG_RANGE, WRONG_RANGE
from quorate.multiraft.table import MetaResult, decode_meta_op, encode_meta_result
from quorate.state.kv import Put, Result, decode_op, encode_op, encode_result
from quorate.state.service import STATUS_OK, STATUS_REDIRECT, ClientReply, ClientRequest

Answer = Callable[[int, ClientRequest, int], ClientReply]
"""(node, request, group) -> the node's reply."""

OLD = RangeDescriptor(1, "", None, (1, 2, 3), 1)
LEFT = RangeDescriptor(1, "", "m", (1, 2, 3), 2)
RIGHT = RangeDescriptor(2, "m", None, (2, 3, 1), 1)


class _Connection:
    def __init__(self, node: int, script: _Cluster) -> None:
        self.node = node
        self.script = script
        self.inbox: asyncio.Queue[WireMessage] = asyncio.Queue()

    def send(self, message: WireMessage, group: int = 0) -> None:
        assert isinstance(message, ClientRequest)
        self.script.sent.append((self.node, group, message))
        self.inbox.put_nowait(self.script.answer(self.node, message, group))

    async def receive(self) -> WireMessage:
        return await self.inbox.get()


class _Cluster:
    """A fake ``AsyncClient`` whose connections answer from ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.endpoints = [("127.0.0.1", 7000 + n) for n in (1, 2, 3)]
        self.members = {n: ("127.0.0.1", 7000 + n) for n in (1, 2, 3)}
        self.timeout_s = 1.0
        self.deadline_s = 5.0
        self.retries = 0
        self.sent: list[tuple[int, int, ClientRequest]] = []

    async def _connect(self, address: Any) -> _Connection:
        return _Connection(address[1] - 7000, self)

    def _drop(self, address: Any) -> None:
        pass

    async def _ask_status(self, address: Any) -> None:
        pass


def _meta(request: ClientRequest, ranges: list[RangeDescriptor]) -> ClientReply:
    assert request.client == LOOKUP_CLIENT
    decode_meta_op(request.op)
    return ClientReply(request.client, request.seq, STATUS_OK, encode_meta_result(MetaResult(ok=True, ranges=ranges)))


def _ok(request: ClientRequest, result: Result) -> ClientReply:
    return ClientReply(request.client, request.seq, STATUS_OK, encode_result(result))


def _put(key: str) -> ClientRequest:
    return ClientRequest(77, 1, encode_op(Put(key, "v")))


def test_a_cold_cache_looks_up_the_range_through_a_redirect_and_sends_in_its_group() -> None:
    def answer(node: int, request: ClientRequest, group: int) -> ClientReply:
        if group == 0:
            if node != 3:
                return ClientReply(request.client, request.seq, STATUS_REDIRECT, leader=3)
            return _meta(request, [OLD])
        assert group == 1
        return _ok(request, Result(ok=True))

    cluster = _Cluster(answer)
    calls = RangedCalls(cluster, rng=random.Random(1))
    result = asyncio.run(calls.call(_put("q"), "q"))
    assert result.ok and calls.lookups == 1
    assert [g for _, g, _ in cluster.sent][-1] == 1


def test_a_split_answer_refreshes_the_cache_and_resends_the_same_request() -> None:
    def answer(node: int, request: ClientRequest, group: int) -> ClientReply:
        if group == 1:
            known = encode_meta_result(MetaResult(ok=False, ranges=[LEFT, RIGHT], error=WRONG_RANGE))
            return ClientReply(request.client, request.seq, STATUS_WRONG_RANGE, known)
        assert group == 2
        return _ok(request, Result(ok=True))

    cluster = _Cluster(answer)
    calls = RangedCalls(cluster)
    calls.cache.update([OLD])
    request = _put("q")
    assert asyncio.run(calls.call(request, "q")).ok
    assert calls.lookups == 0 and calls.wrong_range == 1
    assert calls.cache.lookup("q") == RIGHT and calls.cache.lookup("a") == LEFT
    assert {(g, r) for _, g, r in cluster.sent} == {(1, request), (2, request)}


def test_a_node_without_the_range_makes_the_client_look_again() -> None:
    looked = []

    def answer(node: int, request: ClientRequest, group: int) -> ClientReply:
        if group == 0:
            looked.append(node)
            return _meta(request, [LEFT, RIGHT])
        if group == 1:
            empty = encode_meta_result(MetaResult(ok=False, error="hosts no group 1"))
            return ClientReply(request.client, request.seq, STATUS_WRONG_RANGE, empty)
        return _ok(request, Result(ok=True))

    cluster = _Cluster(answer)
    calls = RangedCalls(cluster)
    calls.cache.update([OLD])
    assert asyncio.run(calls.call(_put("q"), "q")).ok
    assert calls.lookups == 1 and looked


def test_a_command_applied_after_its_key_left_is_resent_not_returned() -> None:
    results = iter([Result(ok=False, error=WRONG_RANGE), Result(ok=True, value="done")])

    def answer(node: int, request: ClientRequest, group: int) -> ClientReply:
        if group == 0:
            return _meta(request, [LEFT, RIGHT])
        return _ok(request, next(results))

    cluster = _Cluster(answer)
    calls = RangedCalls(cluster)
    calls.cache.update([OLD])
    result = asyncio.run(calls.call(_put("q"), "q"))
    assert result.ok and result.value == "done" and calls.wrong_range == 1


def test_a_redirect_hint_becomes_the_leader_hint() -> None:
    def answer(node: int, request: ClientRequest, group: int) -> ClientReply:
        if node != 2:
            return ClientReply(request.client, request.seq, STATUS_REDIRECT, leader=2)
        assert isinstance(decode_op(request.op), Put)
        return _ok(request, Result(ok=True))

    cluster = _Cluster(answer)
    calls = RangedCalls(cluster)
    calls.cache.update([OLD])
    calls.cache.set_leader(1, 1)  # type: ignore[arg-type]
    assert asyncio.run(calls.call(_put("q"), "q")).ok
    assert calls.cache.leader(1) == 2
    assert [n for n, _, _ in cluster.sent] == [1, 2]
