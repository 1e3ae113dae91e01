"""The indexes ``SwimNode`` keeps so that a 1,000-member group costs O(1) or
O(k) per message, checked against the plain scans they replace: the id-ordered
list of up peers (random choices), the Dead list (reconnect), the cached
earliest suspicion deadline (``wake_at``), the cached snapshot, the running
missed-Ack count, the bulk snapshot merge, and ``TransmitQueue.take``'s early
stop. Each test drives a node through random membership news and compares."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.ids import NodeId
from quorate.swim import Gossip, MemberState, SwimConfig, SwimNode, Sync, Update
from quorate.swim.dissemination import TransmitQueue

ME = NodeId(0)
PEERS = 40


def _scan_up(node: SwimNode) -> list[NodeId]:
    return sorted(n for n, (state, _) in node.members().items() if state <= 1 and n != ME)


def _scan_dead(node: SwimNode) -> list[NodeId]:
    return sorted(n for n, (state, _) in node.members().items() if state == MemberState.DEAD)


def _random_news(rng: random.Random, count: int) -> list[Update]:
    news = []
    for _ in range(count):
        member = rng.randrange(1, PEERS)
        news.append(Update(member, rng.randrange(4), rng.randrange(3), rng.randrange(1, PEERS)))
    return news


def _churned_node(seed: int, rounds: int = 30) -> SwimNode:
    rng = random.Random(seed)
    node = SwimNode(ME, [], config=SwimConfig(), rng=random.Random(seed), now=0.0)
    now = 0.0
    for _ in range(rounds):
        now += rng.random()
        sender = NodeId(rng.randrange(1, PEERS))
        if rng.random() < 0.3:
            node.step(sender, Sync(tuple(_random_news(rng, 12))), now)
        else:
            node.step(sender, Gossip(tuple(_random_news(rng, 4))), now)
        node.tick(now)
        node.ready()
    return node


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_up_and_dead_indexes_match_a_scan_of_the_table(seed: int) -> None:
    # Would catch: a state change that forgets to move a member between the
    # up list and the Dead list (gossip would then pick dead members, or
    # reconnect would never offer a Sync to a dead one).
    node = _churned_node(seed)
    assert node._up_sorted == _scan_up(node)
    assert node._up_set == set(_scan_up(node))
    assert node._dead_sorted == _scan_dead(node)
    assert node.up_count == len(node.reachable())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 6), st.lists(st.integers(0, PEERS), max_size=4))
def test_random_up_peers_draws_exactly_what_the_scan_drew(
    seed: int, count: int, exclude: list[int]
) -> None:
    # Would catch: a draw from a differently ordered or filtered pool, which
    # changes which peers are chosen for a seed (traces would differ), or an
    # excluded peer not put back in the list.
    node = _churned_node(seed)
    before = list(node._up_sorted)
    skip = {NodeId(e) for e in exclude}
    reference = random.Random()
    reference.setstate(node._rng.getstate())
    pool = sorted(n for n in _scan_up(node) if n not in skip)
    expected = reference.sample(pool, min(count, len(pool)))
    assert node._random_up_peers(count, exclude=[NodeId(e) for e in exclude]) == expected
    assert node._up_sorted == before


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_cached_suspicion_deadline_is_the_earliest_deadline(seed: int) -> None:
    # Would catch: a confirmation, a refutation or a change of the group size
    # that does not refresh the cache (a suspicion would fire late or early).
    node = _churned_node(seed)
    deadlines = [node._suspicion_deadline(s) for s in node._suspicions.values()]
    assert node._earliest_suspicion_deadline() == (min(deadlines) if deadlines else None)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_cached_snapshot_is_the_current_table(seed: int) -> None:
    # Would catch: a snapshot served from the cache after the table changed.
    node = _churned_node(seed)
    node._snapshot()
    node.step(NodeId(1), Gossip((Update(PEERS + 1, 0, 0, PEERS + 1),)), 100.0)
    expected = tuple(Update(n, int(state), inc, ME) for n, (state, inc) in node.members().items())
    assert node._snapshot() == expected


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_bulk_snapshot_merge_equals_merging_entry_by_entry(seed: int, news_seed: int) -> None:
    # Would catch: the fast path skipping an entry that was news, or a
    # same-incarnation suspicion that should count as a confirmation.
    fast = _churned_node(seed)
    slow = _churned_node(seed)
    snapshot = tuple(_random_news(random.Random(news_seed), 30))
    sender = NodeId(7)
    fast._merge_snapshot(sender, snapshot, 200.0)
    for update in snapshot:
        slow._apply(update, 200.0, sender, snapshot=True)
    assert fast.members() == slow.members()
    assert {m: s.accusers for m, s in fast._suspicions.items()} == {
        m: s.accusers for m, s in slow._suspicions.items()
    }
    assert fast._updates.take(1 << 20, 99)[0] == slow._updates.take(1 << 20, 99)[0]
    assert fast.counters() == slow.counters()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.booleans(), max_size=100))
def test_missed_ack_count_follows_the_window(results: list[bool]) -> None:
    # Would catch: the running count drifting from the window once old
    # samples fall out of it (the adaptive fanout would be wrong for good).
    node = SwimNode(ME, [], config=SwimConfig(), rng=random.Random(1), now=0.0)
    for missed in results:
        node._record_direct_probe(missed=missed)
        assert node._missed_count == sum(node._missed_acks)


def _reference_take(
    items: list[tuple[int, int, int, int]], budget: int, limit: int
) -> tuple[list[int], list[int]]:
    """The plain algorithm: every item ranked, each one that fits taken."""
    ranked = sorted(items, key=lambda it: (it[2], -it[3]))
    taken, left, used = [], [], 0
    for subject, size, transmits, _order in ranked:
        if used + size <= budget:
            used += size
            taken.append(subject)
            if transmits + 1 < limit:
                left.append(subject)
        else:
            left.append(subject)
    return taken, sorted(left)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=40),
    st.integers(0, 200),
    st.integers(1, 3),
)
def test_transmit_queue_early_stop_takes_what_a_full_scan_takes(
    sizes: list[int], budget: int, limit: int
) -> None:
    # Would catch: stopping the scan while a smaller item further down the
    # ranking still fits in the message.
    queue: TransmitQueue[int] = TransmitQueue()
    for subject, size in enumerate(sizes):
        queue.push(subject, subject, size)
    items = [(subject, size, 0, subject + 1) for subject, size in enumerate(sizes)]
    taken, _ = queue.take(budget, limit)
    expected, left = _reference_take(items, budget, limit)
    assert taken == expected
    assert sorted(s for s in range(len(sizes)) if queue.peek(s) is not None) == left
