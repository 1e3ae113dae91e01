"""Tier 2 of HRB: the watched-Raft shard (``docs/hrb.md`` sections 2 and 4).

``ShardReplica`` composes ``quorate.raft.RaftNode`` with a hash chain,
signatures, commit certificates and a watcher; ``ShardStore`` is the shard's
state machine and its side of cross-shard transactions. Re-exports only.
"""

from quorate.hrb.shard.chain import ChainHooks, ChainLink, entry_digest
from quorate.hrb.shard.config import QUORUM_MODES, ShardConfig
from quorate.hrb.shard.evidence import (
    ChainEquivocation,
    ChainProof,
    InvalidEntry,
    verify_shard_evidence,
)
from quorate.hrb.shard.messages import SHARD_MESSAGE_TYPES
from quorate.hrb.shard.proofs import CommitCertificate, verify_commit_certificate, verify_shard_vote
from quorate.hrb.shard.replica import CoreMessage, ShardReplica
from quorate.hrb.shard.state import (
    CertificateCheck,
    ClientTxn,
    EntryRules,
    KeyShard,
    ShardStore,
    TxnOutcome,
    hash_key_shard,
)

__all__ = [
    "QUORUM_MODES",
    "SHARD_MESSAGE_TYPES",
    "CertificateCheck",
    "ChainEquivocation",
    "ChainHooks",
    "ChainLink",
    "ChainProof",
    "ClientTxn",
    "CommitCertificate",
    "CoreMessage",
    "EntryRules",
    "InvalidEntry",
    "KeyShard",
    "ShardConfig",
    "ShardReplica",
    "ShardStore",
    "TxnOutcome",
    "entry_digest",
    "hash_key_shard",
    "verify_commit_certificate",
    "verify_shard_evidence",
    "verify_shard_vote",
]
