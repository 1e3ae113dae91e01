"""SWIM's messages on the wire.

Theory of operation: every message is a frozen msgspec struct, so the codec
checks field *types* on decode; ``SwimNode.step`` still checks their *values*
(states in range, tree positions inside the tree) and drops what does not fit.

- Failure detection (SWIM §3): ``Ping`` / ``Ack`` for the direct probe,
  ``PingReq`` asks a helper to probe a target for us; Lifeguard §IV-A adds the
  helper's ``Nack`` ("I asked, no answer yet"), which tells the requester that
  its own links work.
- Dissemination (SWIM §4.1): ``Update`` records ride on every probe message
  (``updates``), least-retransmitted first, within a size budget. Application
  ``Rumour`` records ride the same way, and on ``Gossip`` pushes; a
  ``PullRequest`` carries a summary of the rumours seen (per origin, the highest
  sequence number seen without gaps) and is answered with a ``PullReply``.
- Join and membership anti-entropy: ``Sync`` carries the sender's whole member
  list and is answered by ``SyncReply`` with the receiver's (a joiner sends it
  to its seeds).
- Peer sampling (Cyclon): ``Shuffle`` / ``ShuffleReply`` swap view entries.
- State anti-entropy: ``MerkleLevel`` carries one side's tree hashes at one
  depth for some positions; the other side answers with the hashes of the
  children of the positions that differ, and at the leaves with
  ``MerkleEntries``: only the entries of differing buckets travel.
"""

from __future__ import annotations

import msgspec

from quorate.core.wire import WireMessage

__all__ = [
    "SWIM_MESSAGE_TYPES",
    "Ack",
    "Gossip",
    "MerkleEntries",
    "MerkleLevel",
    "Nack",
    "Ping",
    "PingReq",
    "PullReply",
    "PullRequest",
    "Rumour",
    "Shuffle",
    "ShuffleReply",
    "StateEntry",
    "Sync",
    "SyncReply",
    "Update",
    "ViewEntry",
]


class Update(msgspec.Struct, frozen=True, array_like=True):
    """ "``member`` is ``state`` at ``incarnation``", as said by ``origin``
    (for a suspicion: the accuser, so confirmations can be counted)."""

    member: int
    state: int
    incarnation: int
    origin: int


class Rumour(msgspec.Struct, frozen=True, array_like=True):
    """An application payload broadcast by ``origin``, its ``seq``-th."""

    origin: int
    seq: int
    payload: bytes


class ViewEntry(msgspec.Struct, frozen=True, array_like=True):
    """A Cyclon view entry: a peer and how many shuffles ago it was heard of."""

    node: int
    age: int


class StateEntry(msgspec.Struct, frozen=True, array_like=True):
    """One key of the anti-entropy keyspace."""

    key: str
    version: int
    value: bytes


class Ping(WireMessage, tag="swim.Ping", frozen=True):
    seq: int
    updates: tuple[Update, ...] = ()
    rumours: tuple[Rumour, ...] = ()


class Ack(WireMessage, tag="swim.Ack", frozen=True):
    seq: int
    updates: tuple[Update, ...] = ()
    rumours: tuple[Rumour, ...] = ()


class PingReq(WireMessage, tag="swim.PingReq", frozen=True):
    seq: int
    target: int
    updates: tuple[Update, ...] = ()
    rumours: tuple[Rumour, ...] = ()


class Nack(WireMessage, tag="swim.Nack", frozen=True):
    seq: int


class Gossip(WireMessage, tag="swim.Gossip", frozen=True):
    updates: tuple[Update, ...] = ()
    rumours: tuple[Rumour, ...] = ()


class PullRequest(WireMessage, tag="swim.PullRequest", frozen=True):
    seen: tuple[tuple[int, int], ...]
    """(origin, highest seq seen with no gap below it), per origin."""


class PullReply(WireMessage, tag="swim.PullReply", frozen=True):
    rumours: tuple[Rumour, ...]


class Sync(WireMessage, tag="swim.Sync", frozen=True):
    members: tuple[Update, ...]
    join: bool = False


class SyncReply(WireMessage, tag="swim.SyncReply", frozen=True):
    members: tuple[Update, ...]


class Shuffle(WireMessage, tag="swim.Shuffle", frozen=True):
    entries: tuple[ViewEntry, ...]


class ShuffleReply(WireMessage, tag="swim.ShuffleReply", frozen=True):
    entries: tuple[ViewEntry, ...]


class MerkleLevel(WireMessage, tag="swim.MerkleLevel", frozen=True):
    depth: int
    positions: tuple[int, ...]
    hashes: tuple[bytes, ...]


class MerkleEntries(WireMessage, tag="swim.MerkleEntries", frozen=True):
    buckets: tuple[int, ...]
    entries: tuple[StateEntry, ...]
    reply_wanted: bool


SWIM_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    Ping,
    Ack,
    PingReq,
    Nack,
    Gossip,
    PullRequest,
    PullReply,
    Sync,
    SyncReply,
    Shuffle,
    ShuffleReply,
    MerkleLevel,
    MerkleEntries,
)
