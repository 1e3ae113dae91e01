"""CRDTs replicated through a gossip layer: state-based or operation-based.

Theory of operation (state-based, ``GossipReplica``). A gossip layer with anti-entropy (SWIM's Merkle sync in
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

Operation-based (``OpGossipReplica``). Operations of ``opbased.OpReplica``
objects travel by causal broadcast (``broadcast``) over the gossip layer's
rumours: each operation is a ``CausalBatch`` of one message, pushed to every
member by infection-style dissemination. Rumours are best effort, so each
replica also writes its *acknowledgement* (its delivered vector) under its
own key, ``ack_key(replica)``, and anti-entropy spreads these. An
acknowledgement tells the others what the replica has, so (1) messages every
member acknowledged leave their histories (compaction), and (2) a replica that
sees a peer lacking one of *its own* messages -- or one of a member the
application has taken out as failed -- sends it again as a rumour, at most once
per ``repair_interval_s`` per message. Duplicates are dropped by causal
broadcast.

Invariants: ``version`` only grows; a published value always decodes; a peer's
malformed value is refused with ``RemoteProtocolError`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import msgspec

from quorate.core.ready import Rejection
from quorate.crdt.broadcast import CausalBatch, CausalMessage, pack_batches
from quorate.crdt.counters import PNCounter
from quorate.crdt.encoding import FORMAT_VERSION, FormatTag
from quorate.crdt.opbased import OpReplica
from quorate.crdt.orset import ORSet
from quorate.errors import LocalProtocolError, RemoteProtocolError
from quorate.ids import NodeId

STATE_KEY_PREFIX = "crdt/"
"""Keys of the gossip keyspace that hold replica states."""
ACK_KEY_PREFIX = "crdt-ack/"
"""Keys of the gossip keyspace that hold operation-based acknowledgements."""
REPAIR_AFTER_S = 3.0
"""A message is resent only after it has been held this long (its rumour had
time to spread: acknowledgements lag behind it)."""
REPAIR_INTERVAL_S = 10.0
"""A message is resent to peers lacking it at most this often."""

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


_ACK_DECODER = msgspec.msgpack.Decoder(list[tuple[int, int]])


def is_operation_rumour(payload: bytes) -> bool:
    """True when a rumour's payload is a causal batch (an operation-based CRDT
    message), by its format header."""
    return payload[:2] == bytes((FORMAT_VERSION, FormatTag.CAUSAL_BATCH))


def ack_key(replica: int) -> str:
    """The key ``replica`` writes its acknowledgement under."""
    return f"{ACK_KEY_PREFIX}{replica}"


def replica_of_ack_key(key: str) -> int | None:
    if not key.startswith(ACK_KEY_PREFIX):
        return None
    digits = key[len(ACK_KEY_PREFIX) :]
    return int(digits) if digits.isdigit() else None


class OpGossipReplica:
    """Operation-based objects of one replica, carried by gossip rumours, with
    acknowledgements in the gossip keyspace (see the module docstring)."""

    __slots__ = (
        "_resent_at",
        "_seen_at",
        "ack_version",
        "max_rumour_bytes",
        "ops",
        "repair_after_s",
        "repair_interval_s",
        "repairs",
    )

    def __init__(
        self,
        replica: int,
        members: Iterable[int],
        max_rumour_bytes: int,
        repair_interval_s: float = REPAIR_INTERVAL_S,
        repair_after_s: float = REPAIR_AFTER_S,
    ) -> None:
        if max_rumour_bytes < 64:
            raise LocalProtocolError(f"max_rumour_bytes must be >= 64, got {max_rumour_bytes}")
        if not (repair_interval_s > 0 and repair_after_s >= 0):
            raise LocalProtocolError(
                f"repair_interval_s must be > 0 and repair_after_s >= 0, got "
                f"{repair_interval_s} and {repair_after_s}"
            )
        self.ops = OpReplica(replica, members)
        self.max_rumour_bytes = max_rumour_bytes
        self.repair_interval_s = repair_interval_s
        self.repair_after_s = repair_after_s
        self.ack_version = 0
        self.repairs = 0
        """Messages sent again to peers that lacked them."""
        self._seen_at: dict[tuple[int, int], float] = {}
        """When each message in the history was sent or delivered here."""
        self._resent_at: dict[tuple[int, int], float] = {}

    @property
    def replica(self) -> int:
        return self.ops.replica

    def rumours(self, message: CausalMessage, now: float) -> list[bytes]:
        """The rumour payloads that carry a new local operation (which also
        changed this replica's acknowledgement)."""
        self.ack_version += 1
        self._seen_at[(message.origin, message.seq)] = now
        return pack_batches([message], self.max_rumour_bytes)

    def deliver(self, sender: int, payload: bytes, now: float) -> bool:
        """A rumour arrived; True if it delivered operations (so the
        acknowledgement changed). A malformed rumour is recorded and dropped."""
        try:
            batch = CausalBatch.decode(payload)
        except RemoteProtocolError as exc:
            self.ops.broadcast.rejected.append(Rejection(NodeId(sender), "rumour", str(exc)))
            return False
        delivered = 0
        for message in batch.messages:
            for m in self.ops.receive(sender, message):
                self._seen_at[(m.origin, m.seq)] = now
                delivered += 1
        if delivered:
            self.ack_version += 1
        return bool(delivered)

    def ack_entry(self) -> tuple[str, int, bytes]:
        """``(key, version, value)`` of this replica's acknowledgement."""
        vector = sorted(self.ops.broadcast.acknowledgement().items())
        return ack_key(self.replica), self.ack_version, msgspec.msgpack.encode(vector)

    def merge_acks(self, entries: Iterable[tuple[str, bytes]], now: float) -> list[bytes]:
        """Peers' acknowledgements arrived through anti-entropy (``(key, value)``
        pairs; other keys are ignored): record them, drop what became stable,
        and return repair rumours for what they lack.

        Acknowledgements arrive late, so a message is resent only once it has
        been here ``repair_after_s`` (its rumour had time to spread), and not
        again within ``repair_interval_s``. A replica resends its own messages; those of
        a member taken out as failed are resent by the lowest-numbered member
        known to hold them. A malformed value is refused with
        ``RemoteProtocolError`` after the others are handled."""
        broadcast = self.ops.broadcast
        me = self.replica
        lacking: dict[tuple[int, int], CausalMessage] = {}
        bad: str | None = None
        for key, value in entries:
            member = replica_of_ack_key(key)
            if member is None or member == me:
                continue
            try:
                vector = dict(_ACK_DECODER.decode(value))
            except msgspec.DecodeError as exc:
                bad = f"malformed acknowledgement under {key!r}: {exc}"
                continue
            broadcast.acknowledge(member, vector)
            for message in broadcast.missing_for(vector):
                lacking.setdefault((message.origin, message.seq), message)
        due = [m for name, m in lacking.items() if self._repairs(name, now)]
        broadcast.compact()
        floor = broadcast.stable()

        def unstable(name: tuple[int, int]) -> bool:
            return name[1] > floor.get(name[0], 0)

        self._seen_at = {k: t for k, t in self._seen_at.items() if unstable(k)}
        self._resent_at = {k: t for k, t in self._resent_at.items() if unstable(k)}
        for m in due:
            self._resent_at[(m.origin, m.seq)] = now
        self.repairs += len(due)
        if bad is not None:
            raise RemoteProtocolError(bad)
        return pack_batches(due, self.max_rumour_bytes) if due else []

    def _repairs(self, name: tuple[int, int], now: float) -> bool:
        """Whether this replica resends message ``name`` now."""
        if now - self._seen_at.get(name, now) < self.repair_after_s:
            return False
        last = self._resent_at.get(name)
        if last is not None and now - last < self.repair_interval_s:
            return False
        origin, seq = name
        broadcast = self.ops.broadcast
        if origin == self.replica:
            return True
        if origin in broadcast.members:
            return False  # its origin is up and repairs it
        holders = [
            m
            for m in broadcast.members
            if m == self.replica or broadcast.acks.get(m, {}).get(origin, 0) >= seq
        ]
        return min(holders) == self.replica

    def set_members(self, members: Iterable[int]) -> None:
        """Who must acknowledge (the application drops failed members)."""
        self.ops.broadcast.set_members(members)
