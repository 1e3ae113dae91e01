"""A shard's own wire messages (tags ``hrb.shard.*``), beside Raft's.

Theory of operation: these are the watcher's conversation around the Raft
group (``docs/hrb.md`` section 2). Raft's messages keep their own types; a
shard replica adds:

- ``CommitAnnouncement``: the leader's certified commit index and how far a
  quorum is locked (``quorate.hrb.shard.proofs``), signed over the
  certificate's hash; ``Candidacy``: a campaigning member's lock;
- ``SignedVote`` (a granted vote, signed: it replaces Raft's granted
  ``RequestVoteResponse`` on the wire) and ``LeaderProof`` (a new leader's
  collected votes);
- ``ForwardedRequest``: a client's command a follower passes to its leader
  and then watches for in the log;
- ``HeadChallenge`` / ``HeadAnswer`` / ``HeadRelay``: a follower asks its
  leader for its signed head with a nonce, and relays the signed answer to
  the other members, who compare it with their own chain;
- ``Suspicion``: a member's signed suspicion of the leader (slow, censoring,
  unanswered); ``request`` carries the censored command so that others watch
  it too;
- ``EvidenceNotice``: verified evidence against a member, for every member to
  check itself;
- ``PrepareAck``: in byzantine mode, a member's signature over the outcome of
  a prepared transaction, for the leader's ``ShardVote`` proof.

The core's certified decisions reach a shard as ``quorate.hrb.CoreCertificate``
messages of the shard group.
"""

from __future__ import annotations

from quorate.core.evidence import Evidence, SignedStatement
from quorate.core.wire import WireMessage
from quorate.hrb.messages import CoreCertificate, SignedMessageEvidence
from quorate.hrb.shard.proofs import CommitCertificate
from quorate.raft.messages import RAFT_MESSAGE_TYPES

__all__ = [
    "SHARD_MESSAGE_TYPES",
    "WATCHER_MESSAGE_TYPES",
    "Candidacy",
    "CommitAnnouncement",
    "EvidenceNotice",
    "ForwardedRequest",
    "HeadAnswer",
    "HeadChallenge",
    "HeadRelay",
    "LeaderProof",
    "PrepareAck",
    "SignedVote",
    "Suspicion",
]


class CommitAnnouncement(WireMessage, tag="hrb.shard.CommitAnnouncement", frozen=True):
    """``leader``, leading ``term``, certifies an index and proves how far a
    quorum is locked; ``signature`` is its ``commit`` statement over the
    certificate's hash."""

    term: int
    leader: int
    certificate: CommitCertificate
    signature: bytes


class Candidacy(WireMessage, tag="hrb.shard.Candidacy", frozen=True):
    """The sender campaigns; ``certificate`` is the highest it is locked on
    (voters locked higher refuse it), ``None`` if it holds none."""

    certificate: CommitCertificate | None = None


class SignedVote(WireMessage, tag="hrb.shard.SignedVote", frozen=True):
    """A granted vote for the receiver in ``term`` (the ``vote`` statement)."""

    term: int
    signature: bytes


class LeaderProof(WireMessage, tag="hrb.shard.LeaderProof", frozen=True):
    """The sender won ``term``: (voter, signature) for an election quorum."""

    term: int
    votes: tuple[tuple[int, bytes], ...]


class ForwardedRequest(WireMessage, tag="hrb.shard.ForwardedRequest", frozen=True):
    """A client's encoded ``ClientTxn`` (or a ``CoreCertificate``'s bytes,
    ``certificate=True``) that a member passes to its leader."""

    command: bytes
    certificate: bool = False


class HeadChallenge(WireMessage, tag="hrb.shard.HeadChallenge", frozen=True):
    """Show me your signed head in ``term``; ``certified`` is the challenger's
    certified index (a leader further ahead sends its latest announcement)."""

    term: int
    nonce: int
    certified: int


class HeadAnswer(WireMessage, tag="hrb.shard.HeadAnswer", frozen=True):
    """The leader's ``chain`` statement for its last index, answering ``nonce``."""

    nonce: int
    head: SignedStatement
    commit: int


class HeadRelay(WireMessage, tag="hrb.shard.HeadRelay", frozen=True):
    """A leader's signed head, passed on by a member that was given it."""

    head: SignedStatement


class Suspicion(WireMessage, tag="hrb.shard.Suspicion", frozen=True):
    """The sender suspects ``leader`` of ``term`` (``reason``); signed
    ``suspect`` statement. ``request`` is a command it saw censored."""

    term: int
    leader: int
    reason: str
    signature: bytes
    request: bytes = b""
    certificate: bool = False
    """``request`` is an encoded ``CoreCertificate`` (else an encoded ``ClientTxn``)."""


class EvidenceNotice(WireMessage, tag="hrb.shard.EvidenceNotice", frozen=True):
    """Evidence against a member, for every member to verify and act on."""

    evidence: Evidence | SignedMessageEvidence


class PrepareAck(WireMessage, tag="hrb.shard.PrepareAck", frozen=True):
    """The sender applied the certified prepare entry (term, index, digest)
    of ``txn_id`` with outcome ``vote``/``reason``; ``signature`` is over
    ``proofs.shard_vote_bytes``."""

    txn_id: bytes
    vote: bool
    reason: str
    term: int
    index: int
    digest: bytes
    signature: bytes


WATCHER_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    CommitAnnouncement,
    Candidacy,
    SignedVote,
    LeaderProof,
    ForwardedRequest,
    HeadChallenge,
    HeadAnswer,
    HeadRelay,
    Suspicion,
    EvidenceNotice,
    PrepareAck,
)

SHARD_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    *RAFT_MESSAGE_TYPES,
    *WATCHER_MESSAGE_TYPES,
    CoreCertificate,
)
"""Every message of a shard group, for ``quorate.codec.WireCodec``."""
