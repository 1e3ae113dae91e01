"""Raft (Ongaro & Ousterhout 2014; the Raft thesis §§3–6, §9.6) as a sans-IO core.

``RaftNode`` implements ``quorate.core.ProtocolCore``; ``RaftSafetyMonitor``
checks Raft's safety properties online. Re-exports only.
"""

from quorate.raft.config import RaftConfig
from quorate.raft.invariants import RaftSafetyMonitor
from quorate.raft.messages import (
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    ConfChange,
    ConfChangeKind,
    ConfState,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    PreVote,
    PreVoteResponse,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
)
from quorate.raft.node import RaftNode, RecoveredState, Role, decode_conf_state, encode_conf_state
from quorate.raft.progress import Progress, ProgressState

__all__ = [
    "RAFT_MESSAGE_TYPES",
    "AppendEntries",
    "AppendEntriesResponse",
    "ConfChange",
    "ConfChangeKind",
    "ConfState",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "PreVote",
    "PreVoteResponse",
    "Progress",
    "ProgressState",
    "RaftConfig",
    "RaftNode",
    "RaftSafetyMonitor",
    "RecoveredState",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "Snapshot",
    "TimeoutNow",
    "decode_conf_state",
    "encode_conf_state",
]
