"""Dynamic sharding: where agents and keys live, and when that changes.

- ``graph``: the interaction graph (agents with loads, weighted interactions)
  and the figures of a placement (cross-shard fraction, load imbalance);
- ``partition``: balanced k-way min-cut placement by METIS (pymetis, the
  ``sharding`` extra), with a balance repair that makes the bound a promise;
- ``rebalance``: when to repartition (load spread with hysteresis) and the
  proposal HRB's core would order;
- ``affinity``: one-pass stream clustering with decay and bounded memory;
- ``ring``: consistent hashing that splits a hot shard and merges two;
- ``elastic``: which shard to split, which to merge, keys moved by a change.

Pure: no I/O, no clock, no randomness (callers pass seeds).
"""

from quorate.sharding.affinity import AffinityClustering, AffinityConfig
from quorate.sharding.elastic import (
    KeyMoves,
    MergeStep,
    hot_shards,
    merge_plan,
    moved_keys,
    shard_traffic,
)
from quorate.sharding.graph import InteractionGraph, cut_fraction, load_imbalance, shard_loads
from quorate.sharding.partition import (
    balance_bound,
    metis_partition,
    relabel_to_keep,
    repair_balance,
)
from quorate.sharding.rebalance import (
    AgentMove,
    RebalanceConfig,
    RebalancePolicy,
    RebalanceProposal,
    load_cv,
    moves_between,
)
from quorate.sharding.ring import HashRing, key_point

__all__ = [
    "AffinityClustering",
    "AffinityConfig",
    "AgentMove",
    "HashRing",
    "InteractionGraph",
    "KeyMoves",
    "MergeStep",
    "RebalanceConfig",
    "RebalancePolicy",
    "RebalanceProposal",
    "balance_bound",
    "cut_fraction",
    "hot_shards",
    "key_point",
    "load_cv",
    "load_imbalance",
    "merge_plan",
    "metis_partition",
    "moved_keys",
    "moves_between",
    "relabel_to_keep",
    "repair_balance",
    "shard_loads",
    "shard_traffic",
]
