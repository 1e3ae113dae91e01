"""A PN-Counter and an OR-Set replicated through a gossip keyspace.

Theory of operation. A gossip layer with anti-entropy (SWIM's Merkle sync in
``quorate.swim``) replicates a keyspace ``key -> (version, value)`` in which a
higher version wins. That is a last-writer-wins map, not a CRDT; it becomes
one when every key has a single writer. So each replica owns one key,
``state_key(replica)``, and writes its *whole* state there (Almeida et al.,
"Delta State Replicated Data Types", §2: state-based replication ships full
states and joins them). When anti-entropy brings a peer's key, the replica
joins that state into its own; if the join changed anything, it publishes its
state again under a higher version. Once every replica holds the join of all
states, nothing changes any more and the keyspace is quiet: the group has
converged.

``GossipReplica`` owns the two CRDTs, the version of its own key and the
encoding used both on the wire and on disk (``to_bytes``/``from_bytes``). A
runtime that keeps the replica durable (writes ``to_bytes`` atomically after
every change, before acknowledging a client) may restart it without losing an
acknowledged operation, and without ever minting an OR-Set dot twice: the
dots and counter totals a replica hands out only grow.

A replica restarted *without* its disk learns its own earlier state back from
peers: a copy of its own key newer than what it holds is joined in and its
version moves past it. Operations made before the crash and not yet gossiped
are lost in that case, which is why the runtimes keep the state durable.

Invariants: ``version`` only grows; a published value always decodes; a peer's
malformed value is refused with ``RemoteProtocolError`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Hashable

import msgspec

from quorate.crdt.counters import PNCounter
from quorate.crdt.orset import ORSet
from quorate.errors import RemoteProtocolError

STATE_KEY_PREFIX = "crdt/"
"""Keys of the gossip keyspace that hold replica states."""

_BODY_DECODER = msgspec.msgpack.Decoder(tuple[int, int, bytes, bytes])


def state_key(replica: int) -> str:
    """The one key ``replica`` writes its state under."""
    return f"{STATE_KEY_PREFIX}{replica}"


def replica_of_key(key: str) -> int | None:
    """The replica owning ``key``, or None when ``key`` is not a state key."""
    if not key.startswith(STATE_KEY_PREFIX):
        return None
    digits = key[len(STATE_KEY_PREFIX) :]
    if not digits.isdigit():
        return None
    return int(digits)


class GossipReplica:
    """One replica's PN-Counter and OR-Set, published as one keyspace entry."""

    __slots__ = ("counter", "replica", "set", "version")

    def __init__(self, replica: int) -> None:
        if replica < 0:
            raise ValueError(f"replica id must be >= 0, got {replica}")
        self.replica = replica
        self.counter = PNCounter()
        self.set = ORSet(replica)
        self.version = 0
        """Version of this replica's key: bumped on every change."""

    # ------------------------------------------------------------ local operations
    def increment(self, amount: int = 1) -> None:
        """Add ``amount`` to the counter (negative subtracts)."""
        self.counter.increment(self.replica, amount)
        self.version += 1

    def add(self, element: Hashable) -> None:
        self.set.add(element)
        self.version += 1

    def remove(self, element: Hashable) -> None:
        """Remove the adds of ``element`` seen here (a concurrent add wins)."""
        self.set.remove(element)
        self.version += 1

    # ------------------------------------------------------------ reading
    @property
    def value(self) -> int:
        return self.counter.value

    @property
    def elements(self) -> frozenset[Hashable]:
        return frozenset(self.set.elements)

    def snapshot(self) -> tuple[int, list[Hashable]]:
        """``(counter value, sorted set elements)``: what clients read."""
        return self.counter.value, sorted(self.set.elements, key=repr)

    # ------------------------------------------------------------ the keyspace
    def entry(self) -> tuple[str, int, bytes]:
        """``(key, version, value)`` to write into the gossip keyspace."""
        return state_key(self.replica), self.version, self.to_bytes()

    def merge_entry(self, key: str, version: int, value: bytes) -> bool:
        """Join a keyspace entry a peer wrote; True when this state changed (and
        so must be published again). Keys that are not replica states are ignored."""
        owner = replica_of_key(key)
        if owner is None:
            return False
        _, counter, orset = _decode_body(value)
        before_value, before_set = self.counter.copy(), self.set.copy()
        self.counter.merge(counter)
        self.set.merge(orset)
        changed = self.counter != before_value or self.set != before_set
        if owner == self.replica and version >= self.version:
            # Our own earlier state, seen by peers after we lost ours: publish
            # past it so our next write wins.
            self.version = version + 1
            return True
        if changed:
            self.version += 1
        return changed

    # ------------------------------------------------------------ encoding
    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode(
            (self.replica, self.version, self.counter.encode(), self.set.encode())
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> GossipReplica:
        replica, counter, orset = _decode_body(data)
        out = cls(replica)
        out.version = _decode_version(data)
        out.counter = counter
        out.set = orset
        return out


def _decode_body(data: bytes) -> tuple[int, PNCounter, ORSet]:
    try:
        replica, _version, counter_bytes, set_bytes = _BODY_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"malformed replica state: {exc}") from exc
    if replica < 0:
        raise RemoteProtocolError(f"replica state with a negative replica id {replica}")
    return replica, PNCounter.decode(counter_bytes), ORSet.decode(set_bytes, replica)


def _decode_version(data: bytes) -> int:
    return _BODY_DECODER.decode(data)[1]
