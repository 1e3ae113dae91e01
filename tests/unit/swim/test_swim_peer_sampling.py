"""Cyclon partial views (Voulgaris et al. 2005)."""

from __future__ import annotations

import random
from collections import Counter

from quorate.ids import NodeId
from quorate.swim import PartialView, ViewEntry


def test_view_never_holds_itself_and_never_overflows() -> None:
    view = PartialView(NodeId(0), size=3, shuffle_length=2, rng=random.Random(1))
    for n in range(5):
        view.add(NodeId(n))
    assert view.nodes() == [1, 2, 3]
    reply = view.answer_shuffle(NodeId(9), [ViewEntry(0, 0), ViewEntry(8, 1), ViewEntry(9, 0)])
    assert len(reply) <= 3
    assert 0 not in view.nodes() and len(view) <= 3


def test_shuffle_sends_self_and_replaces_what_was_sent() -> None:
    view = PartialView(NodeId(0), size=4, shuffle_length=3, rng=random.Random(2))
    for n in (1, 2, 3, 4):
        view.add(NodeId(n))
    started = view.start_shuffle()
    assert started is not None
    target, entries = started
    assert target not in view
    assert entries[0] == ViewEntry(0, 0)
    sent = [e.node for e in entries[1:]]
    view.finish_shuffle(target, [ViewEntry(10, 0), ViewEntry(11, 0)])
    assert {10, 11} <= set(view.nodes())
    assert len(view) == 4
    # What was kept of the old entries is what was not sent away (or the free slot).
    assert len(set(view.nodes()) & set(sent)) <= len(sent)


def test_views_mix_into_a_balanced_overlay() -> None:
    """After many shuffles in a ring-shaped start, in-degrees even out."""
    n, size = 60, 6
    rng = random.Random(3)
    views = {
        i: PartialView(NodeId(i), size, 3, random.Random(rng.getrandbits(32))) for i in range(n)
    }
    for i in range(n):
        for d in range(1, size + 1):
            views[i].add(NodeId((i + d) % n))
    for _ in range(40):
        for i in range(n):
            started = views[i].start_shuffle()
            if started is None:
                continue
            target, entries = started
            reply = views[target].answer_shuffle(NodeId(i), entries)
            views[i].finish_shuffle(target, reply)
    indegree = Counter(p for v in views.values() for p in v.nodes())
    assert len(indegree) == n  # nobody dropped out of the overlay
    assert max(indegree.values()) <= 3 * size
    # The ring's neighbourhoods are gone: views reach far away nodes.
    far = sum(
        1 for i, v in views.items() for p in v.nodes() if min((p - i) % n, (i - p) % n) > size
    )
    assert far > n * size // 2
