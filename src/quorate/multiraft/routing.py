"""The client's range cache: which range (and which replica) holds a key.

Theory of operation. A client keeps the descriptors it has seen, sorted by
start key, and a leader hint per range. It routes a key to the cached range
holding it and sends to the hinted leader (else to a replica of the range).
The cache is only a guess: a replica that no longer holds the key answers
``wrong_range`` with the descriptors it knows, a node that does not host the
range says so, and either makes the client refresh — from the descriptors
in the answer, or by asking the meta group (``LookupKey``). Ranges only
ever get smaller (splits), so a descriptor of a range already cached at a
higher generation is stale and ignored; a descriptor replaces every cached
one it overlaps, and what it does not cover of those stays cached with
their old range, so the cache always covers the whole key space.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from quorate.ids import NodeId
from quorate.multiraft.descriptor import RangeDescriptor, contains

__all__ = ["RangeCache"]


class RangeCache:
    """Cached descriptors and leader hints (see the module docstring)."""

    __slots__ = ("_leaders", "_ranges", "_starts", "refreshes")

    def __init__(self, descriptors: Iterable[RangeDescriptor] = ()) -> None:
        self._ranges: list[RangeDescriptor] = []
        self._starts: list[str] = []
        self._leaders: dict[int, NodeId] = {}
        self.refreshes = 0
        """Descriptors taken in after the initial ones."""
        self.update(descriptors)
        self.refreshes = 0

    def __len__(self) -> int:
        return len(self._ranges)

    def lookup(self, key: str) -> RangeDescriptor | None:
        """The cached range holding ``key``, or None."""
        i = bisect.bisect_right(self._starts, key) - 1
        if i >= 0 and contains(self._ranges[i], key):
            return self._ranges[i]
        return None

    def update(self, descriptors: Iterable[RangeDescriptor]) -> None:
        """Take in fresher descriptors (stale ones are ignored)."""
        for d in descriptors:
            i = bisect.bisect_right(self._starts, d.start) - 1
            lo = i if i >= 0 and _overlap(self._ranges[i], d) else i + 1
            hi = lo
            while hi < len(self._ranges) and _overlap(self._ranges[hi], d):
                hi += 1
            if any(c.range_id == d.range_id and c.generation > d.generation for c in self._ranges[lo:hi]):
                continue
            if hi - lo == 1 and self._ranges[lo] == d:
                continue
            covered = self._ranges[lo:hi]
            for gone in covered:
                if gone.range_id != d.range_id or gone.replicas != d.replicas:
                    self._leaders.pop(gone.range_id, None)
            # What ``d`` does not cover of the ranges it overlaps stays where
            # it was (a guess, refreshed when a replica says it is wrong).
            pieces = [d]
            if covered:
                first, last = covered[0], covered[-1]
                if first.start < d.start:
                    pieces.insert(0, _trimmed(first, first.start, d.start))
                if d.end is not None and (last.end is None or d.end < last.end):
                    pieces.append(_trimmed(last, d.end, last.end))
            self._ranges[lo:hi] = pieces
            self._starts[lo:hi] = [p.start for p in pieces]
            self.refreshes += 1

    def leader(self, range_id: int) -> NodeId | None:
        return self._leaders.get(range_id)

    def set_leader(self, range_id: int, node: NodeId | None) -> None:
        if node is None:
            self._leaders.pop(range_id, None)
        else:
            self._leaders[range_id] = node


def _trimmed(d: RangeDescriptor, start: str, end: str | None) -> RangeDescriptor:
    return RangeDescriptor(d.range_id, start, end, d.replicas, d.generation)


def _overlap(a: RangeDescriptor, b: RangeDescriptor) -> bool:
    return (a.end is None or b.start < a.end) and (b.end is None or a.start < b.end)
