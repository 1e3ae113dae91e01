"""Raft (Ongaro & Ousterhout 2014; the Raft thesis §§3–6, §9.6) as a sans-IO core.

``RaftNode`` implements ``quorate.core.ProtocolCore``; ``RaftSafetyMonitor``
checks Raft's safety properties online; ``RaftHooks`` and ``QuorumRule``
(``quorate.raft.hooks``) are the seams a watched Raft plugs into.
Re-exports only.
"""

from quorate.core.ready import ChainedEntry
from quorate.raft.confchange import KEEP_QUORUM, RULE_QUORUM, Configuration, VoterQuorum
from quorate.raft.config import RaftConfig
from quorate.raft.hooks import (
    MAJORITY,
    ByzantineQuorum,
    FlexibleQuorum,
    MajorityQuorum,
    QuorumRule,
    RaftHooks,
)
from quorate.raft.invariants import RaftSafetyMonitor
from quorate.raft.messages import (
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    ConfChange,
    ConfChangeKind,
    ConfChangeTransition,
    ConfiguredSnapshot,
    ConfState,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallConfiguredSnapshot,
    InstallSnapshot,
    PreVote,
    PreVoteResponse,
    QuiesceHeartbeat,
    RequestVote,
    RequestVoteResponse,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
    Snapshot,
    TimeoutNow,
)
from quorate.raft.node import RaftNode, RecoveredState, Role, decode_conf_state, encode_conf_state
from quorate.raft.progress import Progress, ProgressState

__all__ = [
    "KEEP_QUORUM",
    "MAJORITY",
    "RAFT_MESSAGE_TYPES",
    "RULE_QUORUM",
    "AppendEntries",
    "AppendEntriesResponse",
    "ByzantineQuorum",
    "ChainedEntry",
    "ConfChange",
    "ConfChangeKind",
    "ConfChangeTransition",
    "ConfState",
    "Configuration",
    "ConfiguredSnapshot",
    "EntryKind",
    "FlexibleQuorum",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallConfiguredSnapshot",
    "InstallSnapshot",
    "MajorityQuorum",
    "PreVote",
    "PreVoteResponse",
    "Progress",
    "ProgressState",
    "QuiesceHeartbeat",
    "QuorumRule",
    "RaftConfig",
    "RaftHooks",
    "RaftNode",
    "RaftSafetyMonitor",
    "RecoveredState",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "SignedAppendEntries",
    "SignedAppendEntriesResponse",
    "Snapshot",
    "TimeoutNow",
    "VoterQuorum",
    "decode_conf_state",
    "encode_conf_state",
]
