"""The contract every protocol core keeps: ``Ready``, the ``ProtocolCore``
interface, signing interfaces and quorum maths. Re-exports only."""

from quorate.core.protocol import (
    Accepted,
    ProposeOutcome,
    ProtocolCore,
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
from quorate.core.ready import Entry, ReadState, Ready, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage

__all__ = [
    "Accepted",
    "Entry",
    "ProposeOutcome",
    "ProtocolCore",
    "ReadState",
    "Ready",
    "Redirect",
    "Refused",
    "Rejection",
    "Signer",
    "Verifier",
    "WireMessage",
    "bft_quorum",
    "commit_index",
    "joint_commit_index",
    "majority",
    "max_faulty",
]
