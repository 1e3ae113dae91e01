"""Peer sampling: a Cyclon partial view (Voulgaris, Gavidia, van Steen 2005).

Theory of operation: besides SWIM's full member list, each node keeps a small
*partial view* of ``size`` peers with ages, and draws its gossip, pull and
anti-entropy partners from it. Every shuffle period the node ages its entries,
picks the oldest peer Q, drops it, and sends Q a random ``length - 1`` entries
plus a fresh entry for itself; Q answers with as many random entries of its
own. Each side keeps what it received, filling empty slots first and then
replacing the entries it sent away. Old entries are thus pushed out (a dead
peer cannot keep being chosen), every node's in-degree stays close to the
view size, and the views form a well-mixed random overlay: sampling from the
view approximates sampling from the whole group without any node scanning it.

The view never holds this node itself. Members that SWIM declares Dead or
Left are removed at once; while the view is not full, newly seen members are
added to it (this bootstraps a joiner's view from its seeds' snapshots).

Eclipse resistance. An attacker who controls many identities in one place
(one host, one provider's subnet, one region) tries to fill a victim's view
with them, so that everything the victim hears passes through the attacker.
Given a ``locality`` for each peer (its subnet or region), the view keeps at
most ``max_per_locality`` entries from one locality while the members span
several (``diverse``), whatever shuffles bring. And the owner can measure the
view: ``entropy_ratio`` is the Shannon entropy of the view's localities over
that of the up members' localities (1 when the view is as mixed as the
population, near 0 when one locality dominates it). A node whose ratio falls
below its threshold ``refresh``-es the view: it keeps a fair share from each
locality and refills from its trusted seeds first, then from members of the
localities the view lacks (``quorate.swim.node``).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from quorate.ids import NodeId
from quorate.swim.messages import ViewEntry

Locality = Callable[[NodeId], str]
"""A peer's subnet or region (for eclipse resistance)."""


def locality_entropy(localities: Iterable[str]) -> float:
    """Shannon entropy (bits) of the distribution of ``localities``."""
    counts = Counter(localities)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in counts.values())


class PartialView:
    """A Cyclon view: at most ``size`` peers with their ages (in shuffles)."""

    def __init__(
        self,
        me: NodeId,
        size: int,
        shuffle_length: int,
        rng: random.Random,
        *,
        locality: Locality | None = None,
        max_per_locality: int | None = None,
    ) -> None:
        self._me = me
        self._size = size
        self._length = shuffle_length
        self._rng = rng
        self._ages: dict[NodeId, int] = {}
        self._sent: dict[NodeId, list[NodeId]] = {}
        self._locality = locality
        self._max_per_locality = max_per_locality if max_per_locality is not None else size
        self.diverse = False
        """The members span several localities: the per-locality cap applies."""
        self.capped = 0
        """Entries turned away because their locality had its share."""

    def __len__(self) -> int:
        return len(self._ages)

    def __contains__(self, node: object) -> bool:
        return node in self._ages

    def nodes(self) -> list[NodeId]:
        return sorted(self._ages)

    def add(self, node: NodeId) -> None:
        """Take ``node`` in with age 0 if there is room (and its locality has room)."""
        if node != self._me and node not in self._ages and len(self._ages) < self._size and self._room_for(node):
            self._ages[node] = 0

    def _room_for(self, node: NodeId) -> bool:
        locality = self._locality
        if locality is None or not self.diverse:
            return True
        place = locality(node)
        if sum(1 for n in self._ages if locality(n) == place) < self._max_per_locality:
            return True
        self.capped += 1
        return False

    def entropy_ratio(self, members: Sequence[NodeId]) -> float:
        """The view's locality entropy over the up ``members``' (1.0 when the
        members offer no diversity or there is no locality)."""
        locality = self._locality
        if locality is None:
            return 1.0
        population = locality_entropy(locality(n) for n in members)
        if population == 0:
            return 1.0
        return locality_entropy(locality(n) for n in self._ages) / population

    def refresh(self, trusted: Sequence[NodeId], members: Sequence[NodeId]) -> None:
        """Rebuild a view one locality dominates: keep each locality's fair
        share, then refill from ``trusted`` peers, then from ``members`` of the
        localities the view holds least of."""
        locality = self._locality
        if locality is None:
            return
        places = {locality(n) for n in members} or {""}
        fair = max(1, self._size // len(places))
        kept: dict[NodeId, int] = {}
        per_place: Counter[str] = Counter()
        for node in sorted(self._ages, key=lambda n: self._ages[n]):  # the freshest first
            place = locality(node)
            if per_place[place] < fair:
                kept[node] = self._ages[node]
                per_place[place] += 1
        self._ages = kept
        for node in trusted:
            self.add(node)
        candidates = [n for n in sorted(members) if n != self._me and n not in self._ages]
        self._rng.shuffle(candidates)
        candidates.sort(key=lambda n: per_place[locality(n)])
        for node in candidates:
            if len(self._ages) >= self._size:
                break
            if per_place[locality(node)] < fair:
                self.add(node)
                per_place[locality(node)] += 1

    def remove(self, node: NodeId) -> None:
        self._ages.pop(node, None)

    def start_shuffle(self) -> tuple[NodeId, list[ViewEntry]] | None:
        """Age the view and pick the oldest peer; the entries to send it."""
        if not self._ages:
            return None
        for node in self._ages:
            self._ages[node] += 1
        oldest = max(self._ages.values())
        target = min(n for n, a in self._ages.items() if a == oldest)
        del self._ages[target]
        others = sorted(self._ages)
        chosen = self._rng.sample(others, min(self._length - 1, len(others)))
        self._sent[target] = chosen
        entries = [ViewEntry(self._me, 0)] + [ViewEntry(n, self._ages[n]) for n in chosen]
        return target, entries

    def answer_shuffle(self, sender: NodeId, received: list[ViewEntry]) -> list[ViewEntry]:
        """Entries to send back to ``sender``; then keep what it sent."""
        candidates = sorted(n for n in self._ages if n != sender)
        chosen = self._rng.sample(candidates, min(len(received), len(candidates)))
        reply = [ViewEntry(n, self._ages[n]) for n in chosen]
        self._merge(received, chosen)
        return reply

    def finish_shuffle(self, sender: NodeId, received: list[ViewEntry]) -> None:
        """``sender`` answered our shuffle with ``received``."""
        self._merge(received, self._sent.pop(sender, []))

    def sample(self, count: int, usable: set[NodeId]) -> list[NodeId]:
        """Up to ``count`` random view peers among ``usable``."""
        pool = sorted(n for n in self._ages if n in usable)
        return self._rng.sample(pool, min(count, len(pool)))

    def _merge(self, received: list[ViewEntry], replaceable: list[NodeId]) -> None:
        spare = [n for n in replaceable if n in self._ages]
        for entry in received:
            node = NodeId(entry.node)
            if node == self._me or node in self._ages:
                continue
            if len(self._ages) < self._size:
                if self._room_for(node):
                    self._ages[node] = max(entry.age, 0)
            elif spare:
                replaced = spare.pop()
                age = self._ages.pop(replaced)
                if self._room_for(node):
                    self._ages[node] = max(entry.age, 0)
                else:
                    self._ages[replaced] = age
