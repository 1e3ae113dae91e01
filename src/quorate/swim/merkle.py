"""The anti-entropy keyspace and its Merkle tree.

Theory of operation: the keyspace is a map ``key -> (version, value)``. Two
writes of one key are ordered by version, ties broken by the value's bytes, so
any two replicas that have seen the same writes hold the same map, whatever the
order (the merge is a join: commutative, associative, idempotent). A CRDT
replica can ride on it by storing its state under a key with a version that
grows with every local change.

Keys are spread over ``16**depth`` leaf buckets by a prefix of their BLAKE2b
hash (so buckets stay balanced whatever the keys look like). A leaf's hash
covers its entries in key order; an inner node's hash covers its 16
children's. An empty subtree hashes to all zeros, so sparse trees compare
cheaply. Two replicas compare roots, then only the children of nodes that
differ, level by level, and finally ship only the entries of the leaf buckets
that differ (after Merkle 1987; Dynamo §4.7 uses the same idea).

Hashes are recomputed lazily: a write marks its bucket dirty, and the next
read of a hash rehashes dirty leaves and their ancestors only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from quorate.swim.messages import StateEntry

MERKLE_FANOUT = 16
"""Children per inner node: one hex digit of the key hash per level."""
HASH_BYTES = 16
EMPTY_HASH = bytes(HASH_BYTES)


def wins(version: int, value: bytes, other_version: int, other_value: bytes) -> bool:
    """True when ``(version, value)`` replaces ``(other_version, other_value)``."""
    return version > other_version or (version == other_version and value > other_value)


class MerkleTree:
    """A keyspace with a Merkle tree of ``16**depth`` leaf buckets."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.n_buckets: int = 1 << (4 * depth)
        self._buckets: list[dict[str, tuple[int, bytes]]] = [{} for _ in range(self.n_buckets)]
        self._levels: list[list[bytes]] = [[EMPTY_HASH] * (1 << (4 * d)) for d in range(depth + 1)]
        self._dirty: set[int] = set()
        self._size = 0

    def bucket_of(self, key: str) -> int:
        """The leaf bucket of ``key``: the first ``depth`` hex digits of its hash."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest[:4], "big") >> (32 - 4 * self.depth)

    def __len__(self) -> int:
        return self._size

    def get(self, key: str) -> tuple[int, bytes] | None:
        return self._buckets[self.bucket_of(key)].get(key)

    def put(self, key: str, version: int, value: bytes) -> bool:
        """Store the write if it wins over what is stored; True if it did."""
        bucket = self._buckets[self.bucket_of(key)]
        old = bucket.get(key)
        if old is not None and not wins(version, value, old[0], old[1]):
            return False
        if old is None:
            self._size += 1
        bucket[key] = (version, value)
        self._dirty.add(self.bucket_of(key))
        return True

    def items(self) -> Iterator[tuple[str, int, bytes]]:
        """Every ``(key, version, value)``, in key order."""
        merged = sorted((k, v) for b in self._buckets for k, v in b.items())
        for key, (version, value) in merged:
            yield key, version, value

    def bucket_entries(self, bucket: int) -> list[StateEntry]:
        """The entries of one leaf bucket, in key order."""
        return [StateEntry(k, v, val) for k, (v, val) in sorted(self._buckets[bucket].items())]

    def positions_at(self, depth: int) -> int:
        """How many tree nodes there are at ``depth`` (0 is the root)."""
        return len(self._levels[depth])

    def hash_at(self, depth: int, position: int) -> bytes:
        self._rehash()
        return self._levels[depth][position]

    def root(self) -> bytes:
        return self.hash_at(0, 0)

    @staticmethod
    def children(position: int) -> range:
        start = position * MERKLE_FANOUT
        return range(start, start + MERKLE_FANOUT)

    def diff(self, depth: int, positions: Iterable[int], hashes: Iterable[bytes]) -> list[int]:
        """The positions at ``depth`` whose hash differs from ours."""
        self._rehash()
        level = self._levels[depth]
        return [p for p, h in zip(positions, hashes) if level[p] != h]

    def _rehash(self) -> None:
        if not self._dirty:
            return
        touched = self._dirty
        self._dirty = set()
        leaves = self._levels[self.depth]
        for bucket in touched:
            leaves[bucket] = self._leaf_hash(bucket)
        for depth in range(self.depth - 1, -1, -1):
            touched = {p // MERKLE_FANOUT for p in touched}
            below = self._levels[depth + 1]
            level = self._levels[depth]
            for position in touched:
                kids = below[position * MERKLE_FANOUT : (position + 1) * MERKLE_FANOUT]
                if all(h == EMPTY_HASH for h in kids):
                    level[position] = EMPTY_HASH
                else:
                    level[position] = hashlib.blake2b(
                        b"".join(kids), digest_size=HASH_BYTES
                    ).digest()

    def _leaf_hash(self, bucket: int) -> bytes:
        entries = self._buckets[bucket]
        if not entries:
            return EMPTY_HASH
        h = hashlib.blake2b(digest_size=HASH_BYTES)
        for key in sorted(entries):
            version, value = entries[key]
            raw = key.encode("utf-8")
            h.update(len(raw).to_bytes(4, "big"))
            h.update(raw)
            h.update(version.to_bytes(8, "big", signed=True))
            h.update(hashlib.blake2b(value, digest_size=HASH_BYTES).digest())
        return h.digest()
