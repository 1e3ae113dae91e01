"""Genesis: the first shards, the first core and its key (docs/hrb.md section 1).

Theory of operation. A deployment starts from a seed everybody is given
(the **genesis beacon** is a hash of it):

- ``deal_shards``: the nodes in the order of SHA-256(beacon ‖ node) — a
  permutation nobody chooses — dealt round robin into S = ⌈N / shard_size⌉
  shards numbered 1..S (sizes differ by at most one);
- epoch 0's core: ``select_core`` with no facts recorded yet (every node
  ties; the beacon decides, at most ⌈C/S⌉ per shard);
- epoch 0's threshold key: **dealt** by whoever runs the bootstrap (the only
  trusted setup of HRB: a real deployment runs it where the operator already
  holds every node's secrets, e.g. ``cluster up``); every later epoch's key
  is made by a distributed key generation with no dealer
  (``quorate.hrb.core.state``'s epoch change).

``CoreGenesis`` holds the starting ``CoreSnapshot`` and each epoch-0
member's share; ``start_for(node)`` is what that member's core replica is
built from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from quorate.errors import ConfigError
from quorate.hrb.core.config import CoreRules
from quorate.hrb.core.snapshot import (
    CoreSnapshot,
    CoreStart,
    NodeRecord,
    ShardRecord,
    encode_snapshot,
)
from quorate.hrb.core.state import bft_threshold
from quorate.hrb.core.threshold import ThresholdSuite
from quorate.hrb.reputation import beacon_rank, select_core
from quorate.ids import NodeId

__all__ = ["CoreGenesis", "deal_shards", "genesis", "genesis_beacon"]


def genesis_beacon(seed: bytes) -> bytes:
    return hashlib.sha256(b"quorate/hrb/genesis-beacon/v1" + seed).digest()


def deal_shards(nodes: Sequence[int], shard_size: int, beacon: bytes) -> dict[int, tuple[NodeId, ...]]:
    """Shard (1..S) -> its members, sorted (see the module docstring)."""
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
    if not nodes or len(set(nodes)) != len(nodes):
        raise ConfigError("genesis needs distinct nodes, at least one")
    order = sorted(nodes, key=lambda n: beacon_rank(beacon, n))
    count = -(-len(order) // shard_size)
    return {k + 1: tuple(sorted(NodeId(n) for n in order[k::count])) for k in range(count)}


@dataclass(frozen=True, slots=True)
class CoreGenesis:
    """The deployment's starting point (see the module docstring)."""

    snapshot: CoreSnapshot
    shares: Mapping[NodeId, tuple[int, bytes]]
    """Epoch-0 member -> (share index, share secret)."""

    @property
    def shards(self) -> dict[int, tuple[int, ...]]:
        return {k: r.members for k, r in self.snapshot.shards.items()}

    @property
    def members(self) -> tuple[int, ...]:
        return self.snapshot.members

    @property
    def group_public_key(self) -> bytes:
        return self.snapshot.commitments[0]

    def start_for(self, node: NodeId) -> CoreStart:
        """What epoch-0 member ``node`` builds its core replica from."""
        if node not in self.shares:
            raise ConfigError(f"node {node} is not in epoch 0's core")
        index, secret = self.shares[node]
        return CoreStart(0, 0, encode_snapshot(self.snapshot), index, secret)


def genesis(
    encryption_keys: Mapping[NodeId, bytes],
    *,
    shard_size: int,
    seed: bytes,
    suite: ThresholdSuite,
    rules: CoreRules | None = None,
) -> CoreGenesis:
    """Deal shards, choose epoch 0's core and deal its key.
    ``encryption_keys``: every node's X25519 public key (for key generation)."""
    rules = (rules or CoreRules()).validate()
    beacon = genesis_beacon(seed)
    nodes = sorted(encryption_keys)
    shards = deal_shards(nodes, shard_size, beacon)
    shard_of: dict[int, int] = {int(n): k for k, members in shards.items() for n in members}
    members = select_core(nodes, {}, shard_of, rules.core_size, len(shards), beacon, rules.weights)
    threshold = bft_threshold(len(members))
    commitments, shares = suite.deal(threshold, members, hashlib.sha256(b"quorate/hrb/genesis-key/v1" + seed).digest())
    snapshot = CoreSnapshot(
        epoch=0,
        members=members,
        threshold=threshold,
        commitments=commitments,
        rules=rules,
        beacon=beacon,
        nodes={n: NodeRecord(shard_of[n], encryption_keys[NodeId(n)]) for n in nodes},
        shards={k: ShardRecord(tuple(int(m) for m in ms)) for k, ms in shards.items()},
    )
    return CoreGenesis(snapshot, shares)
