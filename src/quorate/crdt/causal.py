"""Causality tracking: dots, version vectors and compact causal contexts.

Theory of operation (Almeida, Shoker, Baquero, "Delta State Replicated Data
Types", §5-6): every event is named by a *dot* ``(replica, counter)``, counters
counting each replica's events from 1. A *version vector* maps each replica to
the number of its events seen; it stands for the downward-closed set of dots
``{(r, c) | 1 <= c <= vv[r]}``. A *causal context* is the set of dots a state
has seen, stored compactly as a version vector plus a *dot cloud* of dots seen
out of order; ``compact()`` moves cloud dots into the vector as soon as they
become contiguous, so after in-order delivery the cloud is empty.

Invariants: no cloud dot is covered by the vector; joins are unions (commutative,
associative, idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import Enum

Dot = tuple[int, int]
"""An event: (replica, counter), counters from 1."""


class Ordering(Enum):
    """How two version vectors relate."""

    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"


class VersionVector(Mapping[int, int]):
    """Events seen per replica; missing replicas count 0. Mutable through
    ``increment``/``merge_in``; ``merge`` returns a new vector."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[int, int] | Iterable[tuple[int, int]] = ()) -> None:
        items = counts.items() if isinstance(counts, Mapping) else counts
        self._counts: dict[int, int] = {r: c for r, c in items if c > 0}

    def __getitem__(self, replica: int) -> int:
        return self._counts[replica]

    def get(self, replica: int, default: int = 0) -> int:  # type: ignore[override]
        return self._counts.get(replica, default)

    def __iter__(self) -> Iterator[int]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._counts == {r: c for r, c in other.items() if c > 0}
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._counts.items()))

    def __repr__(self) -> str:
        return f"VersionVector({dict(sorted(self._counts.items()))})"

    def contains(self, dot: Dot) -> bool:
        """True when event ``dot`` is covered."""
        return dot[1] <= self._counts.get(dot[0], 0)

    def increment(self, replica: int) -> Dot:
        """Record the next event of ``replica`` and return its dot."""
        counter = self._counts.get(replica, 0) + 1
        self._counts[replica] = counter
        return (replica, counter)

    def merge(self, other: Mapping[int, int]) -> VersionVector:
        """Pointwise maximum (the join)."""
        out = VersionVector(self._counts)
        out.merge_in(other)
        return out

    def merge_in(self, other: Mapping[int, int]) -> None:
        counts = self._counts
        for replica, count in other.items():
            if count > counts.get(replica, 0):
                counts[replica] = count

    def compare(self, other: Mapping[int, int]) -> Ordering:
        """``BEFORE`` when every event here is in ``other`` and ``other`` has more."""
        less = greater = False
        for replica in set(self._counts) | set(other):
            a, b = self._counts.get(replica, 0), other.get(replica, 0)
            if a < b:
                less = True
            elif a > b:
                greater = True
        if less and greater:
            return Ordering.CONCURRENT
        if less:
            return Ordering.BEFORE
        if greater:
            return Ordering.AFTER
        return Ordering.EQUAL

    def dominates(self, other: Mapping[int, int]) -> bool:
        """True when this vector has seen everything ``other`` has."""
        return self.compare(other) in (Ordering.EQUAL, Ordering.AFTER)

    def as_pairs(self) -> list[tuple[int, int]]:
        return sorted(self._counts.items())


class CausalContext:
    """A set of dots stored as a version vector plus a dot cloud."""

    __slots__ = ("cloud", "vector")

    def __init__(self, vector: Mapping[int, int] | None = None, cloud: Iterable[Dot] = ()) -> None:
        self.vector: dict[int, int] = {r: c for r, c in (vector or {}).items() if c > 0}
        self.cloud: set[Dot] = set(cloud)
        self.compact()

    @classmethod
    def of(cls, dots: Iterable[Dot]) -> CausalContext:
        """The context holding exactly ``dots``."""
        return cls(None, dots)

    def __contains__(self, dot: object) -> bool:
        if not isinstance(dot, tuple):
            return False
        return dot[1] <= self.vector.get(dot[0], 0) or dot in self.cloud

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalContext):
            return NotImplemented
        return self.vector == other.vector and self.cloud == other.cloud

    def __repr__(self) -> str:
        return f"CausalContext({self.vector}, cloud={sorted(self.cloud)})"

    def copy(self) -> CausalContext:
        out = CausalContext.__new__(CausalContext)
        out.vector = dict(self.vector)
        out.cloud = set(self.cloud)
        return out

    def max_counter(self, replica: int) -> int:
        """The largest counter of ``replica`` seen (vector or cloud)."""
        top = self.vector.get(replica, 0)
        for r, c in self.cloud:
            if r == replica and c > top:
                top = c
        return top

    def next_dot(self, replica: int) -> Dot:
        """A fresh dot for ``replica`` (not yet added)."""
        return (replica, self.max_counter(replica) + 1)

    def add(self, dot: Dot) -> None:
        replica, counter = dot
        have = self.vector.get(replica, 0)
        if counter == have + 1:
            self.vector[replica] = counter
            self.compact()
        elif counter > have:
            self.cloud.add(dot)

    def merge_in(self, other: CausalContext) -> None:
        """Union with ``other`` (the join), in place."""
        vector = self.vector
        for replica, count in other.vector.items():
            if count > vector.get(replica, 0):
                vector[replica] = count
        self.cloud |= other.cloud
        self.compact()

    def compact(self) -> None:
        """Fold cloud dots that became contiguous into the vector."""
        if not self.cloud:
            return
        vector = self.vector
        changed = True
        while changed:
            changed = False
            for dot in list(self.cloud):
                replica, counter = dot
                have = vector.get(replica, 0)
                if counter <= have:
                    self.cloud.discard(dot)
                elif counter == have + 1:
                    vector[replica] = counter
                    self.cloud.discard(dot)
                    changed = True

    def dots(self) -> Iterator[Dot]:
        """Every dot in the context (expands the vector: for tests and debugging)."""
        for replica, count in self.vector.items():
            for counter in range(1, count + 1):
                yield (replica, counter)
        yield from self.cloud

    def to_wire(self) -> tuple[list[tuple[int, int]], list[Dot]]:
        return sorted(self.vector.items()), sorted(self.cloud)

    @classmethod
    def from_wire(cls, wire: tuple[list[tuple[int, int]], list[Dot]]) -> CausalContext:
        vector, cloud = wire
        return cls(dict(vector), (tuple(d) for d in cloud))  # type: ignore[misc]
