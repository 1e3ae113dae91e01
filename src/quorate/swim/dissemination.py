"""Infection-style dissemination (SWIM §4.1) and the rumour log.

Theory of operation: news (a membership ``Update`` or an application
``Rumour``) waits in a ``TransmitQueue``. Each outgoing message takes the items
transmitted the fewest times first (newest first among equals) until its byte
budget is spent; an item is dropped after ``retransmit_limit(n, λ)``
transmissions, ceil(λ · log10(n + 1)) — after that many rounds of an epidemic
every member has heard it with high probability (SWIM §4.1, memberlist uses the
same base-10 form). Newer news about the same subject (the same member, the
same rumour) replaces the queued item and starts its count again.

``RumourLog`` remembers which rumours were delivered (per origin, the highest
sequence number seen without a gap plus the ones seen above it) and keeps the
last ``retention`` rumours to answer pulls.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from quorate.swim.messages import Rumour

T = TypeVar("T")


def retransmit_limit(n_members: int, multiplier: float) -> int:
    """How many times one update is piggybacked: ceil(λ · log10(n + 1)), at least 1."""
    return max(1, math.ceil(multiplier * math.log10(n_members + 1)))


@dataclass(slots=True)
class _Queued(Generic[T]):
    item: T
    size: int
    transmits: int
    order: int


class TransmitQueue(Generic[T]):
    """News waiting to be piggybacked, least-transmitted first."""

    def __init__(self) -> None:
        self._items: dict[Hashable, _Queued[T]] = {}
        self._order = 0
        # The smallest size ever queued: once less room than this is left in
        # a message, nothing else can fit and the scan stops.
        self._min_size: int | None = None

    def __len__(self) -> int:
        return len(self._items)

    def push(self, subject: Hashable, item: T, size: int) -> None:
        """Queue ``item`` about ``subject``, replacing older news about it."""
        self._order += 1
        self._items[subject] = _Queued(item, size, 0, self._order)
        if self._min_size is None or size < self._min_size:
            self._min_size = size

    def discard(self, subject: Hashable) -> None:
        self._items.pop(subject, None)

    def peek(self, subject: Hashable) -> T | None:
        queued = self._items.get(subject)
        return None if queued is None else queued.item

    def take(self, budget_bytes: int, limit: int) -> tuple[list[T], int]:
        """Items for one message within ``budget_bytes``; returns them and the
        bytes used. Each taken item counts one transmission; items that reach
        ``limit`` transmissions leave the queue."""
        if not self._items or budget_bytes <= 0:
            return [], 0
        ranked = sorted(self._items.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        taken: list[T] = []
        used = 0
        smallest = self._min_size or 0
        for subject, queued in ranked:
            if budget_bytes - used < smallest:
                break
            if used + queued.size > budget_bytes:
                continue
            used += queued.size
            taken.append(queued.item)
            queued.transmits += 1
            if queued.transmits >= limit:
                del self._items[subject]
        return taken, used


class RumourLog:
    """Which rumours were delivered, and the recent ones kept for pulls."""

    def __init__(self, retention: int) -> None:
        self._floor: dict[int, int] = {}
        """origin -> every seq up to this one was seen."""
        self._above: dict[int, set[int]] = {}
        self._kept: deque[Rumour] = deque(maxlen=retention)

    def seen(self, origin: int, seq: int) -> bool:
        return seq <= self._floor.get(origin, 0) or seq in self._above.get(origin, ())

    def add(self, rumour: Rumour) -> bool:
        """Record ``rumour``; True if it is new (deliver it), False if a duplicate."""
        origin, seq = rumour.origin, rumour.seq
        if self.seen(origin, seq):
            return False
        above = self._above.setdefault(origin, set())
        above.add(seq)
        floor = self._floor.get(origin, 0)
        while floor + 1 in above:
            floor += 1
            above.discard(floor)
        self._floor[origin] = floor
        self._kept.append(rumour)
        return True

    def summary(self) -> tuple[tuple[int, int], ...]:
        """Per origin, the highest seq seen with no gap below it."""
        return tuple(sorted(self._floor.items()))

    def missing_for(
        self, summary: dict[int, int], budget_bytes: int, size_of: Callable[[Rumour], int]
    ) -> list[Rumour]:
        """Kept rumours a peer with ``summary`` may lack, oldest first, within budget."""
        out: list[Rumour] = []
        used = 0
        for rumour in self._kept:
            if rumour.seq <= summary.get(rumour.origin, 0):
                continue
            size = size_of(rumour)
            if used + size > budget_bytes:
                break
            used += size
            out.append(rumour)
        return out
