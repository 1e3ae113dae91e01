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
"""

from __future__ import annotations

import random

from quorate.ids import NodeId
from quorate.swim.messages import ViewEntry


class PartialView:
    """A Cyclon view: at most ``size`` peers with their ages (in shuffles)."""

    def __init__(self, me: NodeId, size: int, shuffle_length: int, rng: random.Random) -> None:
        self._me = me
        self._size = size
        self._length = shuffle_length
        self._rng = rng
        self._ages: dict[NodeId, int] = {}
        self._sent: dict[NodeId, list[NodeId]] = {}

    def __len__(self) -> int:
        return len(self._ages)

    def __contains__(self, node: object) -> bool:
        return node in self._ages

    def nodes(self) -> list[NodeId]:
        return sorted(self._ages)

    def add(self, node: NodeId) -> None:
        """Take ``node`` in with age 0 if there is room."""
        if node != self._me and node not in self._ages and len(self._ages) < self._size:
            self._ages[node] = 0

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
                self._ages[node] = max(entry.age, 0)
            elif spare:
                del self._ages[spare.pop()]
                self._ages[node] = max(entry.age, 0)
