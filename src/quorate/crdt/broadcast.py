"""Causal broadcast over an unreliable transport, with stable-history compaction.

Theory of operation
-------------------
Operation-based CRDTs need every replica to apply each operation once, after
the operations that happened before it (Shapiro et al., "Conflict-free
Replicated Data Types", SSS 2011, §2.4). ``CausalBroadcast`` provides this over
a transport that may lose, duplicate and reorder messages (gossip):

- **Sending** (the vector-clock rule of Birman, Schiper & Stephenson, "Lightweight
  causal and atomic group multicast", TOCS 1991). Replica ``r`` numbers its
  messages 1, 2, ... A message carries its *dependencies*: how many messages of
  each other origin ``r`` had delivered when it sent it. Because an origin's
  own messages are delivered in sequence, it only lists the entries that
  changed since its previous message; the receiver rebuilds the full vector
  from the one of that previous message.
- **Receiving.** A message already delivered or already buffered is a
  duplicate and is dropped. Otherwise it is buffered, and every buffered
  message that is the next of its origin and whose dependencies are all
  delivered is delivered -- repeatedly, so one arrival can release a chain.
  ``receive`` returns what it delivered, in a causal order.
- **Acknowledgement and compaction.** Every replica keeps the messages it
  delivered in a *history*, to resend to peers that missed them
  (``missing_for``). Replicas tell each other their delivered vectors
  (``acknowledge``); a message every member has acknowledged is *causally
  stable* (Baquero, Almeida & Shoker, "Making Operation-based CRDTs
  Operation-based", DAIS 2014, §4) and leaves the history. ``members`` is who
  must acknowledge; the application takes a failed member out of it.

Sans-IO: no transport, no clock; a peer's malformed message is dropped and
recorded in ``rejected``, never raised. Invariants: ``delivered[o]`` messages
of origin ``o`` were delivered, in sequence; a message was delivered only
after its dependencies; the history holds exactly the delivered messages that
are not known to be stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from quorate.core.ready import Rejection
from quorate.crdt.encoding import FormatTag, unwrap, wrap
from quorate.errors import LocalProtocolError, RemoteProtocolError
from quorate.ids import NodeId

MAX_BUFFERED = 100_000
"""Messages held back for missing dependencies before new ones are refused."""


class CausalMessage(msgspec.Struct, array_like=True, frozen=True):
    """Message ``seq`` (from 1) of ``origin``; ``deps`` are the ``(replica,
    delivered count)`` entries of its origin's vector that changed since the
    origin's message ``seq - 1``."""

    origin: int
    seq: int
    deps: tuple[tuple[int, int], ...]
    payload: bytes


class CausalBatch(msgspec.Struct, array_like=True, frozen=True):
    """Messages travelling together (a repair, or a transport's frame)."""

    messages: tuple[CausalMessage, ...]

    def encode(self) -> bytes:
        return wrap(FormatTag.CAUSAL_BATCH, _ENCODER.encode(self))

    @classmethod
    def decode(cls, data: bytes) -> CausalBatch:
        body = unwrap(FormatTag.CAUSAL_BATCH, data)
        try:
            return _BATCH_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed causal batch: {exc}") from exc


class _SavedBroadcast(msgspec.Struct, array_like=True):
    replica: int
    delivered: list[tuple[int, int]]
    deps_at: list[tuple[int, list[tuple[int, int]]]]
    sent_at: list[tuple[int, int]]
    history: list[CausalMessage]
    buffer: list[CausalMessage]
    acks: list[tuple[int, list[tuple[int, int]]]]
    members: list[int]


_ENCODER = msgspec.msgpack.Encoder()
_BATCH_DECODER = msgspec.msgpack.Decoder(CausalBatch)
_STATE_DECODER = msgspec.msgpack.Decoder(_SavedBroadcast)
BATCH_OVERHEAD_BYTES = 8
"""Envelope and array headers of an encoded ``CausalBatch``."""


def encoded_size(message: CausalMessage) -> int:
    """Bytes ``message`` takes inside an encoded batch."""
    return len(_ENCODER.encode(message))


def pack_batches(messages: Iterable[CausalMessage], max_bytes: int) -> list[bytes]:
    """Encode ``messages`` (in order) as batches of at most ``max_bytes`` each.
    ``LocalProtocolError`` if one message alone does not fit."""
    out: list[bytes] = []
    current: list[CausalMessage] = []
    size = BATCH_OVERHEAD_BYTES
    for message in messages:
        n = encoded_size(message)
        if n + BATCH_OVERHEAD_BYTES > max_bytes:
            raise LocalProtocolError(
                f"a causal message of {n} bytes does not fit in {max_bytes} bytes"
            )
        if current and size + n > max_bytes:
            out.append(CausalBatch(tuple(current)).encode())
            current, size = [], BATCH_OVERHEAD_BYTES
        current.append(message)
        size += n
    if current:
        out.append(CausalBatch(tuple(current)).encode())
    return out


class CausalBroadcast:
    """One replica's end of causal broadcast among ``members``."""

    __slots__ = (
        "_buffer",
        "_deps_at",
        "_history",
        "_sent_at",
        "acks",
        "delivered",
        "duplicates",
        "members",
        "rejected",
        "replica",
    )

    def __init__(self, replica: int, members: Iterable[int] = ()) -> None:
        if replica < 0:
            raise LocalProtocolError(f"replica id must be >= 0, got {replica}")
        self.replica = replica
        self.delivered: dict[int, int] = {}
        """Messages delivered per origin."""
        self.members: set[int] = set(members) | {replica}
        """Who must acknowledge a message before it leaves the history."""
        self.acks: dict[int, dict[int, int]] = {}
        """Each member's latest acknowledged delivered vector."""
        self.duplicates = 0
        self.rejected: list[Rejection] = []
        self._buffer: dict[int, dict[int, CausalMessage]] = {}
        self._history: dict[int, dict[int, CausalMessage]] = {}
        self._deps_at: dict[int, dict[int, int]] = {}
        """Per origin: the full dependencies of its last delivered message."""
        self._sent_at: dict[int, int] = {}
        """This replica's delivered vector (others' entries) at its last send."""

    # ------------------------------------------------------------ state
    @property
    def buffered(self) -> int:
        """Messages received but waiting for their dependencies."""
        return sum(len(b) for b in self._buffer.values())

    @property
    def history_size(self) -> int:
        """Delivered messages kept for repair (not known to be stable)."""
        return sum(len(h) for h in self._history.values())

    def acknowledgement(self) -> dict[int, int]:
        """This replica's delivered vector, to tell the others."""
        return dict(self.delivered)

    # ------------------------------------------------------------ sending
    def broadcast(self, payload: bytes) -> CausalMessage:
        """A new message (already delivered here); send it to every member."""
        me = self.replica
        delivered = self.delivered
        sent_at = self._sent_at
        deps = tuple(
            sorted((r, n) for r, n in delivered.items() if r != me and n != sent_at.get(r, 0))
        )
        self._sent_at = {r: n for r, n in delivered.items() if r != me}
        message = CausalMessage(me, delivered.get(me, 0) + 1, deps, bytes(payload))
        self._deliver(message, {r: n for r, n in delivered.items() if r != me})
        return message

    # ------------------------------------------------------------ receiving
    def receive(self, sender: NodeId | int, message: object) -> list[CausalMessage]:
        """Take a message from the transport; return the messages now
        delivered, in a causal order (possibly none, possibly several)."""
        reason = _check(message)
        if reason is not None:
            self._reject(sender, message, reason)
            return []
        assert isinstance(message, CausalMessage)
        origin, seq = message.origin, message.seq
        if seq <= self.delivered.get(origin, 0):
            self.duplicates += 1
            return []
        waiting = self._buffer.setdefault(origin, {})
        if seq in waiting:
            self.duplicates += 1
            return []
        if self.buffered >= MAX_BUFFERED:
            self._reject(sender, message, "buffer full")
            return []
        waiting[seq] = message
        return self._release(origin)

    def _release(self, origin: int) -> list[CausalMessage]:
        out: list[CausalMessage] = []
        candidates = [origin]
        while candidates:
            o = candidates.pop()
            waiting = self._buffer.get(o)
            if not waiting:
                continue
            message = waiting.get(self.delivered.get(o, 0) + 1)
            if message is None:
                continue
            deps = dict(self._deps_at.get(o, {}))
            deps.update(message.deps)
            delivered = self.delivered
            if any(delivered.get(r, 0) < n for r, n in deps.items()):
                continue
            del waiting[message.seq]
            if not waiting:
                del self._buffer[o]
            self._deliver(message, deps)
            out.append(message)
            # This delivery may release the origin's next message or any
            # origin's message that waited for it.
            candidates.extend(self._buffer)
        return out

    def _deliver(self, message: CausalMessage, deps: dict[int, int]) -> None:
        origin = message.origin
        self.delivered[origin] = message.seq
        self._deps_at[origin] = deps
        self._history.setdefault(origin, {})[message.seq] = message

    # ------------------------------------------------------------ stability
    def acknowledge(self, member: int, vector: Mapping[int, int]) -> None:
        """Record ``member``'s delivered vector (``compact`` then drops what
        became stable; batch acknowledgements and compact once)."""
        known = self.acks.setdefault(member, {})
        for origin, n in vector.items():
            if n > known.get(origin, 0):
                known[origin] = n

    def set_members(self, members: Iterable[int]) -> int:
        """Change who must acknowledge (e.g. without a failed member); compacts."""
        self.members = set(members) | {self.replica}
        return self.compact()

    def stable(self) -> dict[int, int]:
        """Per origin, the messages every member has delivered."""
        floor: dict[int, int] = {}
        for origin, n in self.delivered.items():
            for member in self.members:
                if member == self.replica:
                    continue
                n = min(n, self.acks.get(member, {}).get(origin, 0))
                if n == 0:
                    break
            if n:
                floor[origin] = n
        return floor

    def compact(self) -> int:
        """Drop every causally stable message from the history."""
        dropped = 0
        for origin, n in self.stable().items():
            history = self._history.get(origin)
            if not history:
                continue
            for seq in [s for s in history if s <= n]:
                del history[seq]
                dropped += 1
        return dropped

    def missing_for(self, vector: Mapping[int, int]) -> list[CausalMessage]:
        """Messages in the history that a replica which delivered ``vector``
        lacks, each origin's in sequence."""
        out: list[CausalMessage] = []
        for origin, history in self._history.items():
            have = vector.get(origin, 0)
            out += [history[s] for s in sorted(history) if s > have]
        return out

    # ------------------------------------------------------------ durability
    def encode(self) -> bytes:
        """Everything needed to resume after a restart, in versioned binary form."""
        saved = _SavedBroadcast(
            self.replica,
            sorted(self.delivered.items()),
            sorted((o, sorted(d.items())) for o, d in self._deps_at.items()),
            sorted(self._sent_at.items()),
            [m for h in self._history.values() for m in h.values()],
            [m for b in self._buffer.values() for m in b.values()],
            sorted((m, sorted(v.items())) for m, v in self.acks.items()),
            sorted(self.members),
        )
        return wrap(FormatTag.CAUSAL_STATE, _ENCODER.encode(saved))

    @classmethod
    def decode(cls, data: bytes) -> CausalBroadcast:
        try:
            saved = _STATE_DECODER.decode(unwrap(FormatTag.CAUSAL_STATE, data))
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed causal broadcast state: {exc}") from exc
        if saved.replica < 0:
            raise RemoteProtocolError("causal broadcast state with a negative replica id")
        out = cls(saved.replica, saved.members)
        out.delivered = dict(saved.delivered)
        out._deps_at = {o: dict(d) for o, d in saved.deps_at}
        out._sent_at = dict(saved.sent_at)
        for m in saved.history:
            out._history.setdefault(m.origin, {})[m.seq] = m
        for m in saved.buffer:
            out._buffer.setdefault(m.origin, {})[m.seq] = m
        out.acks = {m: dict(v) for m, v in saved.acks}
        return out

    def _reject(self, sender: NodeId | int, message: object, reason: str) -> None:
        self.rejected.append(Rejection(NodeId(int(sender)), type(message).__name__, reason))


def _check(message: object) -> str | None:
    if not isinstance(message, CausalMessage):
        return "not a causal message"
    if message.origin < 0 or message.seq < 1:
        return "origin must be >= 0 and seq >= 1"
    for entry in message.deps:
        if len(entry) != 2 or entry[0] < 0 or entry[1] < 0 or entry[0] == message.origin:
            return "malformed dependency entry"
    return None
