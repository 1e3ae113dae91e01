"""Merkle anti-entropy of the key -> (version, value) keyspace."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.swim.network import SwimNet

from quorate.ids import NodeId
from quorate.swim import MerkleTree, SwimConfig

writes = st.lists(
    st.tuples(
        st.sampled_from([f"k{i}" for i in range(40)]), st.integers(0, 5), st.binary(max_size=3)
    ),
    max_size=60,
)


@given(writes)
def test_same_writes_in_any_order_give_the_same_root(ws: list[tuple[str, int, bytes]]) -> None:
    a, b = MerkleTree(2), MerkleTree(2)
    for w in ws:
        a.put(*w)
    shuffled = list(ws)
    random.Random(len(ws)).shuffle(shuffled)
    for w in shuffled:
        b.put(*w)
    assert a.root() == b.root()
    assert list(a.items()) == list(b.items())


def test_higher_version_wins_and_ties_break_on_value() -> None:
    t = MerkleTree(1)
    assert t.put("x", 2, b"b")
    assert not t.put("x", 1, b"z")
    assert t.put("x", 2, b"c")
    assert not t.put("x", 2, b"a")
    assert t.get("x") == (2, b"c")


def test_diff_finds_exactly_the_changed_buckets() -> None:
    a, b = MerkleTree(2), MerkleTree(2)
    for i in range(500):
        a.put(f"key{i}", 1, b"v")
        b.put(f"key{i}", 1, b"v")
    assert a.root() == b.root()
    b.put("key7", 2, b"w")
    leaf = b.bucket_of("key7")
    assert a.root() != b.root()
    top = a.diff(1, range(16), [b.hash_at(1, p) for p in range(16)])
    assert top == [leaf // 16]
    leaves = list(MerkleTree.children(top[0]))
    assert a.diff(2, leaves, [b.hash_at(2, p) for p in leaves]) == [leaf]


def _pair(config: SwimConfig) -> SwimNet:
    net = SwimNet(seed=5, wire=True)
    net.add(0, (), config)
    net.add(1, (0,), config)
    net.run_for(1.0)
    return net


def test_sync_ships_only_the_differing_buckets_and_converges() -> None:
    config = SwimConfig(anti_entropy_interval_s=2.0)
    net = _pair(config)
    a, b = net.nodes[NodeId(0)], net.nodes[NodeId(1)]
    for i in range(2000):
        a.local_state_put(f"key{i}", 1, b"same")
        b.local_state_put(f"key{i}", 1, b"same")
    a.local_state_put("only-a", 3, b"A")
    b.local_state_put("key42", 2, b"newer-on-b")
    b.local_state_put("only-b", 1, b"B")
    differing = {a._state.bucket_of(k) for k in ("only-a", "key42", "only-b")}
    shipped_to_sync = sum(len(a._state.bucket_entries(x)) for x in differing) + 1
    net.run_for(4.0)
    assert a.state_root() == b.state_root()
    assert a.state_items() == b.state_items()
    assert a.state_get("key42") == (2, b"newer-on-b")
    assert b.state_get("only-a") == (3, b"A")
    sent = a.counters().get("merkle_entries_sent", 0) + b.counters().get("merkle_entries_sent", 0)
    buckets = a.counters().get("merkle_buckets_sent", 0) + b.counters().get(
        "merkle_buckets_sent", 0
    )
    # Only whole differing buckets travel (each exchanged once or twice), far
    # from the 2000+ keys of the keyspace.
    assert 0 < sent <= 2 * shipped_to_sync
    assert buckets <= 4 * len(differing)
    updates_a = {u.key for u in a.take_state_updates()}
    assert updates_a == {"key42", "only-b"}
    # In sync now: the next round compares roots only.
    before = sent
    net.run_for(6.0)
    after = a.counters().get("merkle_entries_sent", 0) + b.counters().get("merkle_entries_sent", 0)
    assert after == before
    assert a.counters().get("merkle_in_sync", 0) + b.counters().get("merkle_in_sync", 0) >= 1


@settings(max_examples=15, deadline=None)
@given(writes, writes)
def test_any_two_keyspaces_converge(
    wa: list[tuple[str, int, bytes]], wb: list[tuple[str, int, bytes]]
) -> None:
    net = _pair(SwimConfig(anti_entropy_interval_s=1.0))
    a, b = net.nodes[NodeId(0)], net.nodes[NodeId(1)]
    for w in wa:
        a.local_state_put(*w)
    for w in wb:
        b.local_state_put(*w)
    expected = MerkleTree(2)
    for w in wa + wb:
        expected.put(*w)
    net.run_for(3.0)
    assert a.state_items() == b.state_items() == list(expected.items())
