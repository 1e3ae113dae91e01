"""Wrong-range answers (``quorate.multiraft.wrong_range``) and the simulated
clients' reading of them (``runtime.sim.multiraft.RangeRouter``).

- Every kind of wrong-range answer is read as one: ``wrong_range`` with
  descriptors, ``wrong_range`` without (the node hosts no such group), and
  ``ok`` carrying the error ``wrong range``; other answers are not.
- Descriptors that move the key to another range refresh the cache with no
  meta lookup; none, or ones that leave the key where it was, forget the
  range's leader and ask for a lookup.
- A simulated client counts a stale-range answer, looks the key up at the
  meta group and retries the request (a ``redirect`` to the workload).
"""

from __future__ import annotations

import random
from typing import Any

from quorate.multiraft.descriptor import RangeDescriptor
from quorate.multiraft.messages import STATUS_WRONG_RANGE, WRONG_RANGE
from quorate.multiraft.routing import RangeCache
from quorate.multiraft.table import LookupKey, decode_meta_op
from quorate.multiraft.wrong_range import refresh, stale_range, wrong_range_reply
from quorate.runtime.sim.multiraft import LOOKUP_CLIENT, RangeRouter, unknown_group_reply
from quorate.runtime.sim.node import Grouped
from quorate.state.kv import Result, encode_result
from quorate.state.service import STATUS_OK, STATUS_REDIRECT, ClientReply, ClientRequest

OLD = RangeDescriptor(1, "", None, (1, 2, 3), 1)
LEFT = RangeDescriptor(1, "", "m", (1, 2, 3), 2)
RIGHT = RangeDescriptor(2, "m", None, (2, 3, 1), 1)
REQUEST = ClientRequest(7, 3, b"op")


def test_every_kind_of_wrong_range_answer_is_read_as_one() -> None:
    assert stale_range(wrong_range_reply(REQUEST, [LEFT, RIGHT])) == [LEFT, RIGHT]
    assert stale_range(wrong_range_reply(REQUEST)) == []
    assert stale_range(unknown_group_reply(5, REQUEST)) == []
    applied_too_late = ClientReply(7, 3, STATUS_OK, encode_result(Result(ok=False, error=WRONG_RANGE)))
    assert stale_range(applied_too_late) == []
    assert stale_range(ClientReply(7, 3, STATUS_WRONG_RANGE, b"\xc1")) == []  # malformed: no descriptors


def test_other_answers_are_not_wrong_range() -> None:
    assert stale_range(ClientReply(7, 3, STATUS_OK, encode_result(Result(ok=True)))) is None
    assert stale_range(ClientReply(7, 3, STATUS_OK, encode_result(Result(ok=False, error="cas mismatch")))) is None
    assert stale_range(ClientReply(7, 3, STATUS_REDIRECT, b"", leader=2)) is None
    assert unknown_group_reply(5, "not a request") is None


def test_descriptors_that_move_the_key_need_no_lookup() -> None:
    cache = RangeCache([OLD])
    cache.set_leader(1, 1)  # type: ignore[arg-type]
    assert not refresh(cache, "x", 1, [LEFT, RIGHT])
    assert cache.lookup("x") == RIGHT


def test_no_descriptors_forget_the_leader_and_ask_for_a_lookup() -> None:
    cache = RangeCache([OLD])
    cache.set_leader(1, 1)  # type: ignore[arg-type]
    assert refresh(cache, "x", 1, [])
    assert cache.leader(1) is None
    assert cache.lookup("x") == OLD
    # Descriptors that leave the key in the range asked: a lookup too.
    assert refresh(cache, "a", 1, [LEFT, RIGHT])


def test_a_simulated_client_counts_a_stale_range_answer_and_refreshes() -> None:
    sent: list[tuple[int, int, Any]] = []
    router = RangeRouter(
        RangeCache([OLD]), (1, 2, 3), lambda src, dst, message, now: sent.append((src, dst, message)), random.Random(1)
    )
    endpoint = 6
    request = ClientRequest(2, 1, b"op")
    router.send(endpoint, "x", request, 0.0)
    ((_, node, message),) = sent
    assert message == Grouped(1, request)
    answer = unknown_group_reply(1, request)
    view = router.reply((0.1, 0, 0, endpoint, node, Grouped(1, answer), 0))
    assert view is not None and view.status == "redirect" and view.client == 1 and view.seq == 1
    assert router.wrong_range == 1
    assert router.cache.leader(1) is None
    # It asked the meta group where the key lives now.
    assert router.lookups == 1
    lookup = sent[-1][2]
    assert type(lookup) is ClientRequest and lookup.client == LOOKUP_CLIENT
    assert decode_meta_op(lookup.op) == LookupKey("x")
