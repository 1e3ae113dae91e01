"""Multi-Raft: a key space cut into ranges, each range its own Raft group.

Sans-IO parts, used by the simulator and meant for the real node:

- ``descriptor``: range descriptors, the tiling rule, initial placement and
  the bootstrap state every replica of a new range group starts from;
- ``table``: the range table, the meta group's state machine;
- ``meta``: the meta group's replica service;
- ``range``: a range group's store and service (bounds, wrong-range
  answers, online split and replica move, leaders spread);
- ``liveness``: the node-level failure detector that wakes quiesced groups;
- ``routing``: the client's range cache.
"""

from quorate.multiraft.descriptor import (
    META_GROUP,
    RangeDescriptor,
    check_tiling,
    contains,
    initial_ranges,
)
from quorate.multiraft.liveness import LIVENESS_GROUP, NodeAlive, NodeLiveness
from quorate.multiraft.meta import MetaService
from quorate.multiraft.range import RangeService, RangeStore, bootstrap_state
from quorate.multiraft.routing import RangeCache
from quorate.multiraft.table import RangeTable

__all__ = [
    "LIVENESS_GROUP",
    "META_GROUP",
    "MetaService",
    "NodeAlive",
    "NodeLiveness",
    "RangeCache",
    "RangeDescriptor",
    "RangeService",
    "RangeStore",
    "RangeTable",
    "bootstrap_state",
    "check_tiling",
    "contains",
    "initial_ranges",
]
