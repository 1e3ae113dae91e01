"""The consistent-hash ring: a split moves only the split shard's keys, all
to the new shard, about half of them; a merge moves only the absorbed
shard's keys; adding a shard moves about 1/(k+1), only to it."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.errors import ConfigError
from quorate.sharding import HashRing, moved_keys

KEYS = [f"key-{i}" for i in range(4000)]


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 8), st.integers(1, 16), st.data())
def test_a_split_moves_keys_only_from_the_split_shard_to_the_new_one(
    shards: int, tokens: int, data: st.DataObject
) -> None:
    ring = HashRing.initial(range(1, shards + 1), tokens)
    hot = data.draw(st.integers(1, shards))
    split = ring.split(hot, shards + 1)
    moves = moved_keys(KEYS[:500], ring.owner, split.owner)
    assert set(moves.by_route) <= {f"{hot}->{shards + 1}"}
    assert split.share(hot) + split.share(shards + 1) == pytest.approx(ring.share(hot))
    assert split.share(shards + 1) == pytest.approx(ring.share(hot) / 2, rel=1e-6)


def test_a_split_moves_about_half_of_the_hot_shard() -> None:
    ring = HashRing.initial(range(1, 9))
    owned = sum(1 for k in KEYS if ring.owner(k) == 3)
    moves = moved_keys(KEYS, ring.owner, ring.split(3, 9).owner)
    assert moves.by_route == {"3->9": moves.moved}
    assert abs(moves.moved - owned / 2) < 4 * (owned / 4) ** 0.5  # four binomial std devs


def test_a_single_token_shard_splits_its_whole_ring() -> None:
    ring = HashRing.initial([1], 1)
    split = ring.split(1, 2)
    assert split.share(1) == pytest.approx(0.5) and split.share(2) == pytest.approx(0.5)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 8), st.data())
def test_a_merge_moves_only_the_absorbed_shard(shards: int, data: st.DataObject) -> None:
    ring = HashRing.initial(range(1, shards + 1), 8)
    absorbed = data.draw(st.integers(1, shards))
    into = data.draw(st.integers(1, shards).filter(lambda s: s != absorbed))
    merged = ring.merge(absorbed, into)
    moves = moved_keys(KEYS[:500], ring.owner, merged.owner)
    assert set(moves.by_route) <= {f"{absorbed}->{into}"}
    assert moves.moved == sum(1 for k in KEYS[:500] if ring.owner(k) == absorbed)
    assert absorbed not in merged.shards()


def test_adding_a_shard_moves_about_one_in_k_plus_one_only_to_it() -> None:
    ring = HashRing.initial(range(1, 9))
    moves = moved_keys(KEYS, ring.owner, ring.add_shard(9).owner)
    assert all(route.endswith("->9") for route in moves.by_route)
    assert 0.06 < moves.moved_fraction < 0.17  # ideal 1/9 = 0.111, 64 tokens per shard


def test_shares_add_up_and_the_ring_is_a_wire_value() -> None:
    ring = HashRing.initial(range(1, 6), 16).split(2, 6).merge(4, 1)
    assert sum(ring.share(s) for s in ring.shards()) == pytest.approx(1.0)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(ring), type=HashRing) == ring
    assert ring == HashRing.initial(range(1, 6), 16).split(2, 6).merge(4, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.split(7, 9), "not on the ring"),
        (lambda r: r.split(1, 2), "already on the ring"),
        (lambda r: r.merge(1, 1), "into itself"),
        (lambda r: r.merge(9, 1), "not on the ring"),
        (lambda r: r.add_shard(2), "already on the ring"),
    ],
)
def test_impossible_changes_are_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        change(HashRing.initial([1, 2, 3], 4))


def test_an_empty_ring_is_refused() -> None:
    with pytest.raises(ConfigError):
        HashRing.initial([])
    with pytest.raises(ConfigError):
        HashRing.initial([1], 0)
