"""The contract every protocol core keeps: ``Ready``, the ``ProtocolCore``
interface, signing interfaces and quorum maths. Re-exports only."""

from quorate.core.evidence import Evidence, EvidencePool, SignedStatement, verify_evidence
from quorate.core.protocol import (
    Accepted,
    ProposeOutcome,
    ProtocolCore,
    Queued,
    Redirect,
    Refused,
)
from quorate.core.quorum import (
    bft_quorum,
    commit_index,
    joint_commit_index,
    majority,
    max_faulty,
)
from quorate.core.ready import ENTRY_NORMAL, Entry, ReadState, Ready, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage

__all__ = [
    "ENTRY_NORMAL",
    "Accepted",
    "Entry",
    "Evidence",
    "EvidencePool",
    "ProposeOutcome",
    "ProtocolCore",
    "Queued",
    "ReadState",
    "Ready",
    "Redirect",
    "Refused",
    "Rejection",
    "SignedStatement",
    "Signer",
    "Verifier",
    "WireMessage",
    "bft_quorum",
    "commit_index",
    "joint_commit_index",
    "majority",
    "max_faulty",
    "verify_evidence",
]
