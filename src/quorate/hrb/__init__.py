"""HRB, the Hierarchical Raft-Byzantine protocol: watched Raft shards under a
threshold-signed BFT core (``docs/hrb.md``). Re-exports only."""

from quorate.hrb.messages import (
    CORE_GROUP_BASE,
    CoreCertificate,
    EpochChange,
    Evict,
    RemovalProposal,
    ShardProof,
    ShardVote,
    SignedMessageEvidence,
    Transaction,
    TxnBegin,
    TxnDecision,
    TxnOp,
    TxnRequest,
)

__all__ = [
    "CORE_GROUP_BASE",
    "CoreCertificate",
    "EpochChange",
    "Evict",
    "RemovalProposal",
    "ShardProof",
    "ShardVote",
    "SignedMessageEvidence",
    "Transaction",
    "TxnBegin",
    "TxnDecision",
    "TxnOp",
    "TxnRequest",
]
