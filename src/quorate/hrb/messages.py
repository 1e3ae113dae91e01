"""What crosses between HRB's tiers: transactions, shard votes with their
proofs, certified core decisions, and evidence (``docs/hrb.md``).

Theory of operation. The two tiers are separate protocol groups (a shard's
watched Raft group, the epoch's core group) that talk only through the
messages here, so each tier can be built, tested and replaced on its own:

- an agent's **transaction** (``Transaction``: key operations with
  conditions) reaches its home shard; a cross-shard one goes to the core as
  a ``TxnRequest``;
- the core's **decisions** (``TxnBegin``, ``TxnDecision``, ``Evict``,
  ``EpochChange``) leave it as a ``CoreCertificate``: the encoded decision,
  where it was ordered (epoch, core index) and one threshold signature of
  the epoch's core over ``certificate_bytes`` — a shard checks it with the
  epoch's group public key alone;
- a shard's **vote** on a prepared transaction (``ShardVote``) carries a
  ``ShardProof``: the leader's signature over the prepare entry's chain digest
  (majority mode), plus 2f + 1 members' signed acknowledgements of that
  digest (byzantine mode: a commit certificate);
- **evidence** against a node: the protocol's signed statements, checkable by
  anyone with the offender's public key (``quorate.core.evidence`` for two
  conflicting signed statements; ``SignedMessageEvidence`` for one signed
  message that is itself the proof: a forged commit, an invalid entry).

Every struct is typed and bounded on decode like every wire message; the
tiers check semantics (signatures, membership, bounds) themselves.
"""

from __future__ import annotations

import hashlib

import msgspec

from quorate.core.evidence import Evidence
from quorate.core.wire import WireMessage
from quorate.hrb.reshard import ReshardAbort, ReshardBegin, ReshardCommit

__all__ = [
    "ACTIONS",
    "CORE_GROUP_BASE",
    "DECISION_TYPES",
    "TXN_ID_BYTES",
    "CoreCertificate",
    "Decision",
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
    "certificate_bytes",
    "decision_digest",
    "decode_decision",
    "encode_decision",
    "is_core_group",
    "removal_bytes",
    "shard_vote_bytes",
    "txn_request_bytes",
]

CORE_GROUP_BASE = 1 << 32
"""Epoch e's core group has id ``CORE_GROUP_BASE + e``; shards have ids 1..S."""
TXN_ID_BYTES = 16
ACTIONS = ("put", "get", "add", "cas")
"""``TxnOp.action``: set a value; read one; add an integer (``delta``), failing
the transaction if the result would fall below ``minimum`` (a bank debit);
compare-and-set."""


def is_core_group(group: int) -> bool:
    return group >= CORE_GROUP_BASE


class TxnOp(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """One key operation of a transaction (see ``ACTIONS``)."""

    key: str
    action: str
    value: str = ""
    expected: str | None = None
    delta: int = 0
    minimum: int | None = None


class Transaction(msgspec.Struct, array_like=True, frozen=True):
    """An agent's transaction: exactly-once by (client, seq), like a key-value
    command; ``txn_id`` names it everywhere (16 bytes, e.g. a hash of
    client and seq)."""

    txn_id: bytes
    client: int
    seq: int
    home_shard: int
    ops: tuple[TxnOp, ...]


class TxnRequest(WireMessage, tag="hrb.TxnRequest", frozen=True):
    """A home shard's leader asks the core to order a cross-shard transaction
    (a message of the core group); ``signature`` is the leader's over
    ``txn_request_bytes`` (the shard, the leader's term and the encoded
    transaction), so the core knows which member spoke for the shard."""

    shard: int
    leader: int
    term: int
    txn: Transaction
    signature: bytes


class ShardProof(msgspec.Struct, array_like=True, frozen=True):
    """That a shard's log holds ``digest`` at (term, index): the leader's
    signature (majority mode) and, in byzantine mode, 2f + 1 members' signed
    acknowledgements (member id -> signature over the same bytes). The bytes
    are ``shard_vote_bytes`` of the vote: each signer states that applying
    the prepare entry at (term, index, digest) gave this outcome."""

    term: int
    index: int
    digest: bytes
    leader: int
    leader_signature: bytes
    acks: dict[int, bytes] = msgspec.field(default_factory=dict)


class ShardVote(WireMessage, tag="hrb.ShardVote", frozen=True):
    """A shard's outcome of preparing ``txn_id`` (a message of the core group)."""

    txn_id: bytes
    shard: int
    vote: bool
    reason: str
    proof: ShardProof


class SignedMessageEvidence(WireMessage, tag="hrb.SignedMessageEvidence", frozen=True):
    """One signed message that proves misbehaviour by itself: ``kind`` is
    ``forged_commit`` (a commit index without the certificate the shard's
    mode requires) or ``invalid_entry`` (an entry the shard's validation
    refuses); ``message`` is the encoded signed message, ``signer`` who
    signed it."""

    kind: str
    signer: int
    shard: int
    message: bytes


class RemovalProposal(WireMessage, tag="hrb.RemovalProposal", frozen=True):
    """A node asks the core to evict ``evidence``'s offender (a message of the
    core group); refused, and counted against ``accuser``, if the evidence
    does not verify. ``signature`` is the accuser's over ``removal_bytes``:
    without it nobody could tell who accused (a failed accusation counts
    against its signer only)."""

    accuser: int
    evidence: Evidence | SignedMessageEvidence
    signature: bytes = b""


# -- decisions of the core ----------------------------------------------------


class TxnBegin(msgspec.Struct, tag="txn_begin", array_like=True, frozen=True):
    """The core ordered ``txn``; each shard in ``shards`` prepares its ops."""

    txn: Transaction
    shards: tuple[int, ...]


class MappedTxnBegin(TxnBegin, tag="txn_begin_mapped", array_like=True, frozen=True):
    """A ``TxnBegin`` under dynamic sharding: ``shards`` were computed from
    shard map ``map_version`` (``quorate.hrb.reshard``); a shard on another
    map votes no."""

    map_version: int = 0


class TxnDecision(msgspec.Struct, tag="txn_decision", array_like=True, frozen=True):
    """The outcome of ``txn_id``: every involved shard applies or drops its ops."""

    txn_id: bytes
    commit: bool
    reason: str = ""


class Evict(msgspec.Struct, tag="evict", array_like=True, frozen=True):
    """``node`` is removed from its shard (and from every future core)."""

    node: int
    evidence_digest: bytes


class EpochChange(msgspec.Struct, tag="epoch", array_like=True, frozen=True):
    """Epoch ``epoch`` begins with core ``members`` and threshold key
    ``group_public_key`` (a ``quorate.crypto.threshold`` public key, encoded)."""

    epoch: int
    members: tuple[int, ...]
    threshold: int
    group_public_key: bytes


Decision = TxnBegin | TxnDecision | Evict | EpochChange | MappedTxnBegin | ReshardBegin | ReshardCommit | ReshardAbort
DECISION_TYPES = (TxnBegin, TxnDecision, Evict, EpochChange, MappedTxnBegin, ReshardBegin, ReshardCommit, ReshardAbort)

_decision_encoder = msgspec.msgpack.Encoder()
_decision_decoder = msgspec.msgpack.Decoder(Decision)


def encode_decision(decision: Decision) -> bytes:
    return _decision_encoder.encode(decision)


def decode_decision(data: bytes) -> Decision:
    """``msgspec.DecodeError`` / ``ValidationError`` on malformed bytes."""
    decision: Decision = _decision_decoder.decode(data)
    return decision


def decision_digest(decision: bytes) -> bytes:
    return hashlib.sha256(decision).digest()


class CoreCertificate(WireMessage, tag="hrb.CoreCertificate", frozen=True):
    """A core decision, certified: the ``index``-th decision (1, 2, ...) that
    epoch ``epoch``'s core log produced; ``signature`` is the epoch's
    threshold signature over ``certificate_bytes(epoch, index, decision)``."""

    epoch: int
    index: int
    decision: bytes
    signature: bytes


def txn_request_bytes(shard: int, leader: int, term: int, txn: Transaction) -> bytes:
    """What a ``TxnRequest``'s signature covers (domain-separated)."""
    return _decision_encoder.encode(("quorate.hrb.txn-request.v1", shard, leader, term, txn))


def shard_vote_bytes(txn_id: bytes, shard: int, vote: bool, reason: str, term: int, index: int, digest: bytes) -> bytes:
    """What every signature of a ``ShardVote``'s proof covers (the leader's
    and, in byzantine mode, each acknowledging member's): the outcome of the
    prepare entry of ``txn_id`` at (term, index) whose chain digest is ``digest``."""
    return _decision_encoder.encode(
        ("quorate.hrb.shard-vote.v1", txn_id, shard, vote, reason, term, index, digest)
    )


def removal_bytes(accuser: int, evidence: Evidence | SignedMessageEvidence) -> bytes:
    """What a ``RemovalProposal``'s signature covers (domain-separated)."""
    return _decision_encoder.encode(("quorate.hrb.removal.v1", accuser, evidence))


def certificate_bytes(epoch: int, index: int, decision: bytes) -> bytes:
    """What a core certificate's threshold signature covers (domain-separated)."""
    return _decision_encoder.encode(("quorate.hrb.decision.v1", epoch, index, decision_digest(decision)))
