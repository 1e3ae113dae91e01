"""The wrong-range answer: how a node says it, how a client reads it and what the client does.

Theory of operation. A client's range cache (``routing.RangeCache``) is a
guess, and a request can reach a node for a key outside the range it asked:

- the replica's range no longer holds the key (it split, or the key moved):
  the replica answers ``wrong_range`` with the descriptors it knows (its
  own and the right-hand side of its latest split);
- the node does not host the range at all (a replica moved away, a stale
  leader hint): it answers ``wrong_range`` with no descriptors;
- the command reached the log only after a split trigger took its key
  away: the range answers ``ok`` with the result error ``wrong range`` —
  certainly not executed, so safe to send again.

All three mean the same to a client (``stale_range``): count the answer,
take the descriptors it carries, and when they do not move the key to
another range (or there are none), forget the range's leader and ask the
meta group (``refresh``). The request then goes again, with its session
unchanged. The simulated clients (``runtime.sim.multiraft``) and the real
ones (``client.ranges``) both read answers through this module, so they
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from quorate.multiraft.descriptor import RangeDescriptor
from quorate.multiraft.messages import STATUS_WRONG_RANGE, WRONG_RANGE
from quorate.multiraft.routing import RangeCache
from quorate.multiraft.table import MetaResult, decode_meta_result, encode_meta_result
from quorate.state.kv import decode_result
from quorate.state.service import STATUS_OK, ClientReply, ClientRequest

__all__ = ["refresh", "stale_range", "wrong_range_reply"]


def wrong_range_reply(
    request: ClientRequest, known: Sequence[RangeDescriptor] = (), error: str = WRONG_RANGE
) -> ClientReply:
    """A node's ``wrong_range`` answer to ``request``, carrying the descriptors it knows (``known``)."""
    result = encode_meta_result(MetaResult(ok=False, ranges=list(known), error=error))
    return ClientReply(request.client, request.seq, STATUS_WRONG_RANGE, result)


def stale_range(reply: ClientReply) -> list[RangeDescriptor] | None:
    """None when ``reply`` is not a wrong-range answer of any of the three
    kinds (see the module docstring); else the descriptors it carries
    (perhaps none)."""
    if reply.status == STATUS_WRONG_RANGE:
        try:
            return list(decode_meta_result(reply.result).ranges)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return []
    if reply.status == STATUS_OK:
        try:
            result = decode_result(reply.result)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if not result.ok and result.error == WRONG_RANGE:
            return []
    return None


def refresh(cache: RangeCache, key: str, range_id: int, known: Sequence[RangeDescriptor]) -> bool:
    """Take what a wrong-range answer from range ``range_id`` about ``key``
    carried into ``cache``; True when the key must be looked up in the meta
    group (the answer moved it to no other range; the range's leader hint
    is then forgotten)."""
    cache.update(known)
    held = cache.lookup(key)
    if held is None or held.range_id == range_id:
        cache.set_leader(range_id, None)
        return True
    return False
