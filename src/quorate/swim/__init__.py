"""SWIM gossip membership (Das, Gupta, Motivala 2002) with Lifeguard (Dadgar
et al. 2018), rumour dissemination, Cyclon peer sampling and Merkle
anti-entropy, as a sans-IO core. Re-exports only."""

from quorate.swim.config import GossipMode, SwimConfig
from quorate.swim.dissemination import RumourLog, TransmitQueue, retransmit_limit
from quorate.swim.membership import (
    Member,
    MembershipEvent,
    MemberState,
    ReachabilityReport,
    supersedes,
)
from quorate.swim.merkle import MerkleTree
from quorate.swim.messages import (
    SWIM_MESSAGE_TYPES,
    Ack,
    Gossip,
    MerkleEntries,
    MerkleLevel,
    Nack,
    Ping,
    PingReq,
    PullReply,
    PullRequest,
    Rumour,
    Shuffle,
    ShuffleReply,
    StateEntry,
    Sync,
    SyncReply,
    Update,
    ViewEntry,
)
from quorate.swim.node import Delivered, StateUpdate, SwimNode
from quorate.swim.peer_sampling import PartialView
from quorate.swim.suspicion import Suspicion, suspicion_bounds, suspicion_timeout

__all__ = [
    "SWIM_MESSAGE_TYPES",
    "Ack",
    "Delivered",
    "Gossip",
    "GossipMode",
    "Member",
    "MemberState",
    "MembershipEvent",
    "MerkleEntries",
    "MerkleLevel",
    "MerkleTree",
    "Nack",
    "PartialView",
    "Ping",
    "PingReq",
    "PullReply",
    "PullRequest",
    "ReachabilityReport",
    "Rumour",
    "RumourLog",
    "Shuffle",
    "ShuffleReply",
    "StateEntry",
    "StateUpdate",
    "Suspicion",
    "SwimConfig",
    "SwimNode",
    "Sync",
    "SyncReply",
    "TransmitQueue",
    "Update",
    "ViewEntry",
    "retransmit_limit",
    "supersedes",
    "suspicion_bounds",
    "suspicion_timeout",
]
