"""Tier 2 of HRB: the watched-Raft shard (``docs/hrb.md`` sections 2 and 4).

``ShardReplica`` composes ``quorate.raft.RaftNode`` with a hash chain,
signatures, commit certificates and a watcher; ``ShardStore`` is the shard's
state machine and its side of cross-shard transactions. Re-exports only.

Theory of operation
-------------------
A shard is a Raft group whose leader cannot lie undetected. The nearest
published design is Tangaroa (Copeland & Zhong, "Tangaroa: a Byzantine
Fault Tolerant Raft", 2014), and the shard follows it where it can:

- every message is signed, and the leader's log is a hash chain, so a
  follower checks that a batch continues its own log and two signed digests
  for one (term, index) are evidence (Tangaroa's incremental hashes;
  ``chain``, ``evidence``);
- a new leader proves its election with the signed votes it won
  (Tangaroa's election verification; ``election``);
- voters are lazy: they support an election only when they themselves find
  their leader faulty or silent, so a Byzantine member cannot churn leaders
  (Tangaroa's lazy voters; ``election``);
- commit needs 2f + 1 signed acknowledgements of 3f + 1 in
  ``quorum = "byzantine"`` (Tangaroa's commit verification; ``proofs``).

Where it departs, and why:

- Tangaroa's members broadcast their acknowledgements to each other (n²
  messages per round); here the leader collects them into a **commit
  certificate** it must show (n messages), and a certificate that does not
  verify is itself ``forged_commit`` evidence. Because the leader chooses
  who sees a certificate, commitment takes two steps: a certificate *locks*
  its holders, and entries are applied only once a certificate proves a
  commit quorum locked (``commit``), as in PBFT's prepared/committed.
- Tangaroa relies on clients to notice a leader that drops their requests
  and to call an election. HRB's agents may be far away, so the followers
  watch for them: a request a follower received must reach the log within a
  bound, and followers challenge the leader for its signed head and cross-
  check heads among themselves (``watcher``).
- Proven misbehaviour deposes at once and goes to the core as a removal
  proposal; unproven suspicion deposes only with f + 1 signers (byzantine
  mode) or a majority (majority mode) (``watcher``).
- ``quorum = "majority"`` is a lighter variant Tangaroa does not have:
  Byzantine leaders are detected, followers are assumed crash-only, and
  commit needs the leader plus a majority of the other voters. It is never
  Byzantine-safe against lying followers.
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
