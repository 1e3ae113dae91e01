"""Casper FFG (Buterin & Griffith 2017): a finality gadget over a simple
proposer chain, as a sans-IO validator; its messages, the supermajority and
slashing rules, and Byzantine test behaviours. Re-exports only."""

from quorate.casper.byzantine import BEHAVIOURS, ByzantineValidator
from quorate.casper.config import CasperConfig
from quorate.casper.ffg import (
    DOUBLE_VOTE,
    SURROUND_VOTE,
    SlashingDetector,
    link_finalizes,
    slashing_condition,
    supermajority,
    verify_justification,
    verify_slashing,
    verify_vote,
)
from quorate.casper.messages import (
    CASPER_MESSAGE_TYPES,
    GENESIS,
    GENESIS_HASH,
    Block,
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Forward,
    HardState,
    Justification,
    Proposal,
    SlashingEvidence,
    Status,
    Sync,
    Vote,
    block_hash,
    vote_bytes,
)
from quorate.casper.validator import CasperValidator

__all__ = [
    "BEHAVIOURS",
    "CASPER_MESSAGE_TYPES",
    "DOUBLE_VOTE",
    "GENESIS",
    "GENESIS_HASH",
    "SURROUND_VOTE",
    "Block",
    "BlockRequest",
    "BlockResponse",
    "ByzantineValidator",
    "CasperConfig",
    "CasperValidator",
    "Checkpoint",
    "Forward",
    "HardState",
    "Justification",
    "Proposal",
    "SlashingDetector",
    "SlashingEvidence",
    "Status",
    "Sync",
    "Vote",
    "block_hash",
    "link_finalizes",
    "slashing_condition",
    "supermajority",
    "verify_justification",
    "verify_slashing",
    "verify_vote",
    "vote_bytes",
]
