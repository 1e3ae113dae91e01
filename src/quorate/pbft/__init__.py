"""PBFT (Castro & Liskov, OSDI '99 / TOCS 2002) as a sans-IO core.
Re-exports only; see ``quorate.pbft.replica`` for the theory of operation."""

from quorate.pbft.byzantine import BEHAVIOURS, ByzantineReplica, Coalition
from quorate.pbft.config import PbftConfig
from quorate.pbft.messages import (
    PBFT_MESSAGE_TYPES,
    Checkpoint,
    Commit,
    CommittedBatch,
    FetchState,
    NewView,
    PbftHardState,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    StateTransfer,
    Status,
    ViewChange,
)
from quorate.pbft.replica import CommitAuthenticator, PbftReplica, pbft_factory

__all__ = [
    "BEHAVIOURS",
    "PBFT_MESSAGE_TYPES",
    "ByzantineReplica",
    "Checkpoint",
    "Coalition",
    "Commit",
    "CommitAuthenticator",
    "CommittedBatch",
    "FetchState",
    "NewView",
    "PbftConfig",
    "PbftHardState",
    "PbftReplica",
    "PrePrepare",
    "Prepare",
    "PreparedCertificate",
    "Request",
    "StateTransfer",
    "Status",
    "ViewChange",
    "pbft_factory",
]
