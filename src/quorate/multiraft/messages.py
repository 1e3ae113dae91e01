"""What multi-Raft's services say to each other (inside ``ServiceMessage``).

- ``MetaCall``: a range leader's request to the meta group's service, with
  the group its answer goes back to (the range's own);
- ``MetaAnswer``: that answer;
- ``Retire``: a range leader tells a node that its replica of the range was
  removed (the removed replica may never see the configuration entry that
  removed it: the leader stops sending to it once the entry is appended).

Client-facing answers reuse ``quorate.state.service.ClientReply`` with one
more status, ``wrong_range``, whose ``result`` is an encoded
``quorate.multiraft.table.MetaResult`` carrying the descriptors the replica
knows (its own, and the right-hand side of its latest split), so a client
can refresh its range cache without asking the meta group.

On a client connection, ``RangesStatus`` asks a node for the range groups
it hosts; ``RangesReply`` lists them (``RangeView``: bounds and replicas as
the replica knows them, its role, term, leader and indexes), which is what
``quorate cluster status`` shows of a multi-Raft cluster.
"""

from __future__ import annotations

import msgspec

from quorate.core.wire import WireMessage
from quorate.state.service import ClientReply, ClientRequest

__all__ = [
    "MULTIRAFT",
    "SERVICE_MESSAGE_TYPES",
    "STATUS_WRONG_RANGE",
    "WRONG_RANGE",
    "MetaAnswer",
    "MetaCall",
    "RangeView",
    "RangesReply",
    "RangesStatus",
    "Retire",
    "leading_views",
]

MULTIRAFT = "multiraft"
"""The protocol a multi-Raft node names in its status (a client then routes by range)."""
STATUS_WRONG_RANGE = "wrong_range"
WRONG_RANGE = "wrong range"
"""The error of a command applied after its key left the range (a split
trigger came first in the log): certainly not executed, so a client sends it
again, to the range that holds the key now."""


class MetaCall(WireMessage, tag="multiraft.MetaCall", frozen=True):
    reply_group: int
    request: ClientRequest


class MetaAnswer(WireMessage, tag="multiraft.MetaAnswer", frozen=True):
    reply: ClientReply


class Retire(WireMessage, tag="multiraft.Retire", frozen=True):
    """Range ``range_id`` now lives on ``replicas``; a node not among them drops its replica."""

    range_id: int
    replicas: tuple[int, ...]


SERVICE_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (MetaCall, MetaAnswer, Retire)
"""What one node's range or meta service sends another's (``ServiceMessage``)."""


class RangesStatus(WireMessage, tag="multiraft.RangesStatus", frozen=True):
    """A client asks a node which range groups it hosts."""

    seq: int


class RangeView(msgspec.Struct, array_like=True, frozen=True):
    """One replica's view of its range (``start``/``end`` None: not yet known)."""

    range_id: int
    start: str | None
    end: str | None
    replicas: tuple[int, ...]
    generation: int
    role: str
    term: int
    leader: int | None
    commit_index: int
    applied_index: int
    quiesced: bool = False


class RangesReply(WireMessage, tag="multiraft.RangesReply", frozen=True):
    seq: int
    node: int
    ranges: list[RangeView]
    tombstones: int = 0


def leading_views(replies: list[RangesReply | None]) -> dict[int, RangeView]:
    """Range id -> the view of the replica that leads it, from every node's
    ``RangesReply`` (``None``: the node did not answer). When two replicas
    both claim a range (an old leader not yet told), the higher term wins."""
    best: dict[int, RangeView] = {}
    for reply in replies:
        if reply is None:
            continue
        for view in reply.ranges:
            if view.role != "leader":
                continue
            known = best.get(view.range_id)
            if known is None or view.term > known.term:
                best[view.range_id] = view
    return dict(sorted(best.items()))
