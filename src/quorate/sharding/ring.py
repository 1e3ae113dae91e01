"""Consistent hashing with explicit tokens: the key -> shard map that can
split one hot shard and merge two (issue 13, "elastic scaling").

Theory of operation. Keys hash to points on a ring of ``RING_POINTS``
(SHA-256, first 8 bytes, big-endian). The ring holds **tokens** (point,
shard); a key belongs to the shard of the first token at or after its point,
wrapping past the end. A shard's *arcs* are the intervals (previous token,
its token]. The map is a pure value (``HashRing``, a sorted tuple of tokens):
the core can order it, and every member computes the same owner of a key.

- ``HashRing.initial(shards, tokens_per_shard)``: each shard gets
  ``tokens_per_shard`` tokens hashed from (shard, i), so shares of the ring
  are even up to O(1/sqrt(tokens)).
- ``split(shard, new_shard)``: every arc of ``shard`` is cut at its midpoint
  and the first half goes to ``new_shard`` (a new token at the midpoint).
  Exactly half of ``shard``'s ring moves, and only keys of ``shard`` move,
  all of them to ``new_shard``: ideally a split moves ``share(shard) / 2``
  of all keys, and nothing else changes owner.
- ``merge(absorbed, into)``: ``absorbed``'s tokens now name ``into``; only
  ``absorbed``'s keys move, all to ``into``.
- ``add_shard(new_shard)``: scale-out without choosing a victim: fresh tokens
  for the new shard, which takes ~1/(k+1) of every shard's keys.

Relation to ``quorate.hrb.txn.shard_of_key`` (rendezvous hashing, HRB's map
today): adding a shard to rendezvous hashing also moves only keys that go to
the new shard, ~1/(k+1) of them, but takes them from *every* shard; it cannot
target a hot one. Splitting one shard is what the ring's arcs allow.
Rendezvous hashing can be made to split by nesting (a key of the split shard
is re-hashed among {shard, new_shard}), which is the same idea with a tree
of hash choices instead of arcs; the ring keeps the whole map in one sorted
list the core can certify.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

import msgspec

from quorate.errors import ConfigError

__all__ = ["RING_POINTS", "HashRing", "key_point"]

RING_POINTS = 2**64
"""Points on the ring."""
DEFAULT_TOKENS_PER_SHARD = 64


def key_point(key: str) -> int:
    """A key's point on the ring."""
    return int.from_bytes(hashlib.sha256(b"key\x00" + key.encode()).digest()[:8], "big")


def _token_point(shard: int, index: int) -> int:
    data = b"token\x00" + shard.to_bytes(8, "big") + index.to_bytes(4, "big")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


class HashRing(msgspec.Struct, frozen=True, array_like=True):
    """Sorted (point, shard) tokens; points are distinct."""

    tokens: tuple[tuple[int, int], ...]

    @classmethod
    def initial(cls, shards: Iterable[int], tokens_per_shard: int = DEFAULT_TOKENS_PER_SHARD) -> HashRing:
        if tokens_per_shard < 1:
            raise ConfigError(f"tokens_per_shard is a positive integer, got {tokens_per_shard}")
        ring = cls(())
        for shard in sorted(set(shards)):
            ring = ring.add_shard(shard, tokens_per_shard)
        if not ring.tokens:
            raise ConfigError("a ring needs at least one shard")
        return ring

    def shards(self) -> tuple[int, ...]:
        return tuple(sorted({shard for _, shard in self.tokens}))

    def owner(self, key: str) -> int:
        """The shard that owns ``key``."""
        if not self.tokens:
            raise ConfigError("the ring has no shard")
        i = bisect.bisect_left(self.tokens, (key_point(key), -1))
        return self.tokens[i % len(self.tokens)][1]

    def share(self, shard: int) -> float:
        """Fraction of the ring ``shard`` owns."""
        owned = 0
        for i, (point, owner) in enumerate(self.tokens):
            if owner == shard:
                owned += (point - self.tokens[i - 1][0]) % RING_POINTS or RING_POINTS
        return owned / RING_POINTS

    def add_shard(self, shard: int, tokens: int = DEFAULT_TOKENS_PER_SHARD) -> HashRing:
        if shard in self.shards():
            raise ConfigError(f"shard {shard} is already on the ring")
        taken = {point for point, _ in self.tokens}
        new: list[tuple[int, int]] = []
        index = 0
        while len(new) < tokens:
            point = _token_point(shard, index)
            index += 1
            if point not in taken:
                taken.add(point)
                new.append((point, shard))
        return HashRing(tuple(sorted(self.tokens + tuple(new))))

    def split(self, shard: int, new_shard: int) -> HashRing:
        """Cut each arc of ``shard`` at its midpoint; the first halves go to ``new_shard``."""
        present = self.shards()
        if shard not in present:
            raise ConfigError(f"cannot split shard {shard}: it is not on the ring {list(present)}")
        if new_shard in present:
            raise ConfigError(f"cannot split into shard {new_shard}: it is already on the ring")
        taken = {point for point, _ in self.tokens}
        new = []
        for i, (point, owner) in enumerate(self.tokens):
            if owner != shard:
                continue
            length = (point - self.tokens[i - 1][0]) % RING_POINTS or RING_POINTS
            middle = (point - length // 2) % RING_POINTS
            if length >= 2 and middle not in taken:
                taken.add(middle)
                new.append((middle, new_shard))
        if not new:
            raise ConfigError(f"shard {shard}'s arcs are too short to split")
        return HashRing(tuple(sorted(self.tokens + tuple(new))))

    def merge(self, absorbed: int, into: int) -> HashRing:
        """``absorbed``'s arcs go to ``into``."""
        present = self.shards()
        for shard in (absorbed, into):
            if shard not in present:
                raise ConfigError(f"cannot merge shard {shard}: it is not on the ring {list(present)}")
        if absorbed == into:
            raise ConfigError(f"cannot merge shard {absorbed} into itself")
        return HashRing(tuple((p, into if s == absorbed else s) for p, s in self.tokens))
