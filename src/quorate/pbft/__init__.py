"""PBFT (Castro & Liskov, OSDI '99 / TOCS 2002) as a sans-IO core.
Re-exports only; see ``quorate.pbft.replica`` for the theory of operation."""

from quorate.pbft.byzantine import BEHAVIOURS, ByzantineReplica, Coalition
from quorate.pbft.config import PbftConfig
from quorate.pbft.messages import (
    PBFT_MESSAGE_TYPES,
    Checkpoint,
    ClaimedBatch,
    Commit,
    CommittedBatch,
    FetchState,
    NewView,
    PbftHardState,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    SlotClaim,
    StateTransfer,
    Status,
    ViewChange,
)
from quorate.pbft.replica import MacAuthenticator, PbftReplica
from quorate.pbft.view_change import NewViewDecision, decide_new_view

__all__ = [
    "BEHAVIOURS",
    "PBFT_MESSAGE_TYPES",
    "ByzantineReplica",
    "Checkpoint",
    "ClaimedBatch",
    "Coalition",
    "Commit",
    "CommittedBatch",
    "FetchState",
    "MacAuthenticator",
    "NewView",
    "NewViewDecision",
    "PbftConfig",
    "PbftHardState",
    "PbftReplica",
    "PrePrepare",
    "Prepare",
    "PreparedCertificate",
    "Request",
    "SlotClaim",
    "StateTransfer",
    "Status",
    "ViewChange",
    "decide_new_view",
]
