"""Chained HotStuff (Yin et al., PODC 2019): a sans-IO replica, its messages,
quorum certificates, leader reputation (``reputation``) and Byzantine test
behaviours. Re-exports only."""

from quorate.hotstuff.byzantine import BEHAVIOURS, ByzantineReplica
from quorate.hotstuff.config import HotStuffConfig
from quorate.hotstuff.messages import (
    GENESIS_HASH,
    GENESIS_QC,
    HOTSTUFF_MESSAGE_TYPES,
    Block,
    BlockRequest,
    BlockResponse,
    Forward,
    HardState,
    NewView,
    Proposal,
    QuorumCertificate,
    SyncInfo,
    SyncRequest,
    TimeoutCertificate,
    Vote,
    block_hash,
)
from quorate.hotstuff.node import HotStuffReplica
from quorate.hotstuff.qc import (
    AggregateScheme,
    AggregateSignatures,
    IndividualSignatures,
    QuorumSigner,
    decode_signers,
    encode_signers,
)

__all__ = [
    "BEHAVIOURS",
    "GENESIS_HASH",
    "GENESIS_QC",
    "HOTSTUFF_MESSAGE_TYPES",
    "AggregateScheme",
    "AggregateSignatures",
    "Block",
    "BlockRequest",
    "BlockResponse",
    "ByzantineReplica",
    "Forward",
    "HardState",
    "HotStuffConfig",
    "HotStuffReplica",
    "IndividualSignatures",
    "NewView",
    "Proposal",
    "QuorumCertificate",
    "QuorumSigner",
    "SyncInfo",
    "SyncRequest",
    "TimeoutCertificate",
    "Vote",
    "block_hash",
    "decode_signers",
    "encode_signers",
]
