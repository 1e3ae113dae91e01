"""Delta synchronisation between neighbours, without back-propagation.

Theory of operation (Almeida et al., "Delta State Replicated Data Types",
Algorithm 2, with the two fixes of Enes et al., "Efficient Synchronization of
State-based CRDTs", ICDE 2019, §IV):

- Each replica keeps its full state and a *delta buffer*: deltas numbered by a
  local sequence, each tagged with where it came from (this replica or a
  neighbour). Per neighbour it remembers the sequence the neighbour has
  acknowledged.
- ``sync()`` sends each neighbour the join of the buffered deltas it has not
  acknowledged, **leaving out the deltas that neighbour sent us** (BP: no
  back-propagation). A neighbour whose acknowledgement predates the buffer
  (garbage collected, or new) gets the full state instead.
- On receipt, **only the part of the delta that is not already in the state**
  is kept (RR: remove redundant state) -- via the type's ``difference(known)``
  when it has one, else by checking whether the join changes the state. A fully
  redundant delta is acknowledged but not buffered, so it travels no further.
- Acknowledged prefixes of the buffer are dropped.

Sans-IO: ``sync`` and ``receive`` return the messages to send; a malformed
message is dropped and recorded in ``rejected``. Delivery may lose, duplicate or
reorder messages: joins are idempotent and unacknowledged deltas are resent on
every ``sync``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from quorate.core.ready import Rejection
from quorate.core.wire import WireMessage
from quorate.errors import QuorateError
from quorate.ids import NodeId


class DeltaCRDT(Protocol):
    """What delta synchronisation needs from a CRDT state."""

    def merge(self, other: Any) -> None: ...
    def copy(self) -> Any: ...
    def encode(self) -> bytes: ...
    def is_bottom(self) -> bool: ...


T = TypeVar("T", bound=DeltaCRDT)


class DeltaGroup(WireMessage, tag="crdt.DeltaGroup", frozen=True):
    """A join of deltas (or a full state); ``sequence`` is the sender's buffer
    position the receiver acknowledges."""

    sequence: int
    payload: bytes


class DeltaAck(WireMessage, tag="crdt.DeltaAck", frozen=True):
    """The receiver has joined everything up to ``sequence``."""

    sequence: int


class DeltaBuffer(Generic[T]):
    """Numbered deltas with their origin, and per-neighbour acknowledgements."""

    def __init__(self, neighbours: Iterable[NodeId]) -> None:
        self.entries: list[tuple[int, T, NodeId | None]] = []
        self.next_sequence = 0
        self.acked: dict[NodeId, int] = {n: 0 for n in neighbours}

    @property
    def first_sequence(self) -> int:
        """Sequence of the oldest buffered delta (``next_sequence`` when empty)."""
        return self.entries[0][0] if self.entries else self.next_sequence

    def append(self, delta: T, origin: NodeId | None) -> int:
        sequence = self.next_sequence
        self.entries.append((sequence, delta, origin))
        self.next_sequence += 1
        return sequence

    def unacked_for(self, neighbour: NodeId) -> list[T]:
        """Deltas ``neighbour`` has not acknowledged and did not send us."""
        since = self.acked[neighbour]
        return [d for s, d, origin in self.entries if s >= since and origin != neighbour]

    def acknowledge(self, neighbour: NodeId, sequence: int) -> None:
        if sequence > self.acked[neighbour]:
            self.acked[neighbour] = min(sequence, self.next_sequence)

    def collect_garbage(self) -> None:
        """Drop deltas every neighbour has acknowledged."""
        if not self.acked:
            self.entries.clear()
            return
        floor = min(self.acked.values())
        keep = 0
        while keep < len(self.entries) and self.entries[keep][0] < floor:
            keep += 1
        del self.entries[:keep]


class DeltaSync(Generic[T]):
    """One replica's delta synchronisation with its neighbours."""

    def __init__(
        self,
        replica: NodeId,
        state: T,
        neighbours: Iterable[NodeId],
        bottom: Callable[[], T],
        decode: Callable[[bytes], T],
    ) -> None:
        self.replica = replica
        self.state = state
        self.bottom = bottom
        self.decode = decode
        self.buffer: DeltaBuffer[T] = DeltaBuffer(n for n in neighbours if n != replica)
        self.rejected: list[Rejection] = []
        self.redundant_received = 0
        """Deltas received that added nothing (RR dropped them)."""

    @property
    def neighbours(self) -> list[NodeId]:
        return list(self.buffer.acked)

    def local(self, delta: T) -> None:
        """Record a delta a local mutator returned (the state already holds it)."""
        self.buffer.append(delta, None)

    def sync(self) -> list[tuple[NodeId, DeltaGroup]]:
        """Messages to bring every neighbour up to date."""
        out: list[tuple[NodeId, DeltaGroup]] = []
        buffer = self.buffer
        for neighbour, acked in buffer.acked.items():
            if acked >= buffer.next_sequence:
                continue
            if acked < buffer.first_sequence:
                group = self.state
            else:
                deltas = buffer.unacked_for(neighbour)
                if not deltas:
                    # Everything pending came from this neighbour: nothing to send.
                    buffer.acked[neighbour] = buffer.next_sequence
                    continue
                group = self.bottom()
                for delta in deltas:
                    group.merge(delta)
            out.append((neighbour, DeltaGroup(buffer.next_sequence, group.encode())))
        buffer.collect_garbage()
        return out

    def receive(self, sender: NodeId, message: Any) -> list[tuple[NodeId, DeltaAck]]:
        """Handle a neighbour's message; return the acknowledgement to send."""
        if sender not in self.buffer.acked:
            self._reject(sender, message, "not a neighbour")
            return []
        if isinstance(message, DeltaAck):
            if message.sequence < 0:
                self._reject(sender, message, "negative sequence")
            else:
                self.buffer.acknowledge(sender, message.sequence)
            return []
        if not isinstance(message, DeltaGroup):
            self._reject(sender, message, "unknown message type")
            return []
        try:
            delta = self.decode(message.payload)
        except (QuorateError, ValueError, TypeError) as exc:
            self._reject(sender, message, f"undecodable delta: {exc}")
            return []
        fresh = self._irredundant(delta)
        if fresh is None:
            self.redundant_received += 1
        else:
            self.state.merge(fresh)
            self.buffer.append(fresh, sender)
        return [(sender, DeltaAck(message.sequence))]

    def _irredundant(self, delta: T) -> T | None:
        """The part of ``delta`` the state lacks, or ``None`` if it adds nothing."""
        difference = getattr(delta, "difference", None)
        if difference is not None:
            fresh: T = difference(self.state)
            return None if fresh.is_bottom() else fresh
        probe = self.state.copy()
        probe.merge(delta)
        return None if probe == self.state else delta

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self.rejected.append(Rejection(sender, type(message).__name__, reason))
