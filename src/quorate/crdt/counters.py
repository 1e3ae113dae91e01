"""Grow-only and positive-negative counters as delta-state CRDTs.

Theory of operation (Almeida et al., "Delta State Replicated Data Types", §4.1):
a G-Counter maps each replica to the number of increments it made; the value is
the sum, the join the pointwise maximum. The delta of an increment is the
one-entry map holding the replica's new total, so applying it twice changes
nothing. A PN-Counter pairs two G-Counters, one for increments, one for
decrements.

Invariants: entries only grow; ``merge`` is commutative, associative and
idempotent; a delta ``d`` of a mutation satisfies ``x.merge(d) == x after the
mutation``.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from quorate.crdt.encoding import FormatTag, unwrap, wrap
from quorate.errors import LocalProtocolError, RemoteProtocolError

_COUNTS_DECODER = msgspec.msgpack.Decoder(list[tuple[int, int]])
_PN_DECODER = msgspec.msgpack.Decoder(tuple[list[tuple[int, int]], list[tuple[int, int]]])


class GCounter:
    """A counter that only grows: one total per replica."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = {r: c for r, c in (counts or {}).items() if c > 0}

    @property
    def value(self) -> int:
        return sum(self.counts.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GCounter) and self.counts == other.counts

    def __repr__(self) -> str:
        return f"GCounter({self.counts})"

    def copy(self) -> GCounter:
        return GCounter(self.counts)

    def increment(self, replica: int, amount: int = 1) -> GCounter:
        """Add ``amount`` (>= 0) on behalf of ``replica``; return the delta."""
        if amount < 0:
            raise LocalProtocolError(f"a G-Counter cannot decrease (amount {amount})")
        total = self.counts.get(replica, 0) + amount
        delta = GCounter({replica: total})
        self.merge(delta)
        return delta

    def merge(self, other: GCounter) -> None:
        """Join ``other`` into this counter (pointwise maximum)."""
        counts = self.counts
        for replica, count in other.counts.items():
            if count > counts.get(replica, 0):
                counts[replica] = count

    def difference(self, known: GCounter) -> GCounter:
        """The part of this state that ``known`` lacks (``None`` part dropped)."""
        return GCounter({r: c for r, c in self.counts.items() if c > known.counts.get(r, 0)})

    def is_bottom(self) -> bool:
        return not self.counts

    def encode(self) -> bytes:
        return wrap(FormatTag.G_COUNTER, msgspec.msgpack.encode(sorted(self.counts.items())))

    @classmethod
    def decode(cls, data: bytes) -> GCounter:
        try:
            pairs = _COUNTS_DECODER.decode(unwrap(FormatTag.G_COUNTER, data))
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed G-Counter: {exc}") from exc
        return cls(dict(pairs))


class PNCounter:
    """A counter that goes both ways: increments and decrements as G-Counters."""

    __slots__ = ("decrements", "increments")

    def __init__(
        self, increments: GCounter | None = None, decrements: GCounter | None = None
    ) -> None:
        self.increments = increments if increments is not None else GCounter()
        self.decrements = decrements if decrements is not None else GCounter()

    @property
    def value(self) -> int:
        return self.increments.value - self.decrements.value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PNCounter)
            and self.increments == other.increments
            and self.decrements == other.decrements
        )

    def __repr__(self) -> str:
        return f"PNCounter(value={self.value})"

    def copy(self) -> PNCounter:
        return PNCounter(self.increments.copy(), self.decrements.copy())

    def increment(self, replica: int, amount: int = 1) -> PNCounter:
        """Add ``amount`` (negative subtracts); return the delta."""
        if amount >= 0:
            delta = PNCounter(
                increments=GCounter({replica: self.increments.counts.get(replica, 0) + amount})
            )
        else:
            delta = PNCounter(
                decrements=GCounter({replica: self.decrements.counts.get(replica, 0) - amount})
            )
        self.merge(delta)
        return delta

    def decrement(self, replica: int, amount: int = 1) -> PNCounter:
        return self.increment(replica, -amount)

    def merge(self, other: PNCounter) -> None:
        self.increments.merge(other.increments)
        self.decrements.merge(other.decrements)

    def difference(self, known: PNCounter) -> PNCounter:
        return PNCounter(
            self.increments.difference(known.increments),
            self.decrements.difference(known.decrements),
        )

    def is_bottom(self) -> bool:
        return self.increments.is_bottom() and self.decrements.is_bottom()

    def encode(self) -> bytes:
        body = (sorted(self.increments.counts.items()), sorted(self.decrements.counts.items()))
        return wrap(FormatTag.PN_COUNTER, msgspec.msgpack.encode(body))

    @classmethod
    def decode(cls, data: bytes) -> PNCounter:
        try:
            inc, dec = _PN_DECODER.decode(unwrap(FormatTag.PN_COUNTER, data))
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed PN-Counter: {exc}") from exc
        return cls(GCounter(dict(inc)), GCounter(dict(dec)))
