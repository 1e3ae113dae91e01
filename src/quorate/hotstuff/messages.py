"""Chained HotStuff's data on the wire and on disk (Yin et al., PODC 2019, §5 and
Algorithm 3; view synchronisation after LibraBFT/DiemBFT's pacemaker).

Theory of operation: every type here is a frozen msgspec struct, so the codec
checks the *shape* of a peer's message; ``HotStuffReplica.step`` still checks
every claim (author, view, hashes, signatures) and drops what does not add up.

- ``Block``: a batch of client commands, its parent's hash, its height, the
  view it was proposed in, ``justify`` (the quorum certificate of its
  parent) and the leaders whose views failed since the parent's. A
  block's hash (``block_hash``) covers all of these fields, so a hash named
  in a certificate pins the whole chain below it.
- ``QuorumCertificate``: ``2f + 1`` votes for (view, block hash), as a signer
  bitmap plus the signatures in the form the ``QuorumSigner`` chose (one per
  signer, or one aggregate). ``TimeoutCertificate`` is the same for 2f + 1
  ``NewView`` messages asking to enter one view.
- ``Proposal`` (leader → all), ``Vote`` (replica → leader of the next view),
  ``NewView`` (replica → all, on a view timeout, carrying its highest QC),
  ``SyncRequest`` (a replica that starts, fresh or from its disk, asks its
  peers what they know), ``SyncInfo`` (the answer, also sent to a replica
  that lags: our highest certificates),
  ``BlockRequest``/``BlockResponse`` (fetch missing ancestors by hash) and
  ``Forward`` (a client command sent on to the leader).
- Signed statements use ``quorate.core.evidence``'s format, so the signature
  of a proposal or a vote doubles as equivocation evidence: an honest leader
  signs one proposal per view, an honest replica one vote per view.
- ``HardState``: what a replica persists before its vote or NewView leaves,
  so that after a restart it never votes twice in one view nor forgets its lock.
"""

from __future__ import annotations

import hashlib

import msgspec

from quorate.core.evidence import Evidence, statement_bytes
from quorate.core.wire import WireMessage

__all__ = [
    "GENESIS_HASH",
    "GENESIS_QC",
    "HOTSTUFF_MESSAGE_TYPES",
    "NEWVIEW_KIND",
    "PROPOSAL_KIND",
    "VOTE_KIND",
    "Block",
    "BlockRequest",
    "BlockResponse",
    "Forward",
    "HardState",
    "NewView",
    "Proposal",
    "QuorumCertificate",
    "ReputationState",
    "SyncInfo",
    "SyncRequest",
    "TimeoutCertificate",
    "Vote",
    "block_hash",
    "newview_bytes",
    "vote_bytes",
]

PROPOSAL_KIND = "hotstuff.proposal"
"""Statement kind of a leader's proposal: slot (view, 0), payload the block hash."""
VOTE_KIND = "hotstuff.vote"
"""Statement kind of a vote: slot (view, 0), payload the block hash."""
NEWVIEW_KIND = "hotstuff.newview"
"""Statement kind of a NewView: slot (view to enter, 0), empty payload."""

GENESIS_HASH = hashlib.sha256(b"quorate.hotstuff.genesis.v1").digest()
"""The hash of the implicit block at height 0, view 0, that every chain extends."""

_encoder = msgspec.msgpack.Encoder()


class QuorumCertificate(msgspec.Struct, array_like=True, frozen=True):
    """2f + 1 votes for ``block_hash`` in ``view``. ``signers`` is a little-endian
    bitmap of node ids; ``signatures`` is the ``QuorumSigner``'s encoding."""

    view: int
    block_hash: bytes
    signers: bytes = b""
    signatures: tuple[bytes, ...] = ()


GENESIS_QC = QuorumCertificate(0, GENESIS_HASH)
"""The certificate of the genesis block: valid by definition, no signatures."""


class TimeoutCertificate(msgspec.Struct, array_like=True, frozen=True):
    """2f + 1 replicas signed ``NewView(view)``: every honest replica may enter ``view``."""

    view: int
    signers: bytes
    signatures: tuple[bytes, ...]


class Block(msgspec.Struct, array_like=True, frozen=True):
    """A node of the chain. ``justify`` certifies the parent (its ``block_hash``
    equals ``parent_hash``); ``commands`` are opaque client commands;
    ``failed_leaders`` is a bitmap of the leaders whose views failed since
    the parent's (``quorate.hotstuff.reputation``), which voters check."""

    parent_hash: bytes
    view: int
    height: int
    proposer: int
    justify: QuorumCertificate
    commands: tuple[bytes, ...] = ()
    failed_leaders: bytes = b""


def block_hash(block: Block) -> bytes:
    """SHA-256 of the block's canonical encoding (every field, justify included)."""
    return hashlib.sha256(_encoder.encode(block)).digest()


def vote_bytes(view: int, block_hash: bytes) -> bytes:
    """The bytes every voter for ``block_hash`` in ``view`` signs (one message per
    (view, block), so the signatures can be aggregated)."""
    return statement_bytes(VOTE_KIND, view, 0, block_hash)


def newview_bytes(view: int) -> bytes:
    """The bytes a replica signs to ask to enter ``view``."""
    return statement_bytes(NEWVIEW_KIND, view, 0, b"")


class Proposal(WireMessage, tag="hotstuff.Proposal", frozen=True):
    """The leader of ``block.view`` proposes ``block``. ``signature`` is the
    proposer's statement over (PROPOSAL_KIND, view, block hash). ``tc`` justifies
    the view when the parent's QC is not from the view just before."""

    block: Block
    signature: bytes
    tc: TimeoutCertificate | None = None


class Vote(WireMessage, tag="hotstuff.Vote", frozen=True):
    """``voter`` votes for ``block_hash`` proposed in ``view``. Carries the
    proposer's signature so the collector can detect a leader's equivocation."""

    view: int
    block_hash: bytes
    voter: int
    signature: bytes
    proposer_signature: bytes


class NewView(WireMessage, tag="hotstuff.NewView", frozen=True):
    """``author`` timed out and asks to enter ``view``; ``high_qc`` and ``high_tc``
    are its highest certificates (they let the next leader extend the highest
    certified block and let lagging replicas catch up)."""

    view: int
    author: int
    signature: bytes
    high_qc: QuorumCertificate
    high_tc: TimeoutCertificate | None = None


class SyncRequest(WireMessage, tag="hotstuff.SyncRequest", frozen=True):
    """Sent by a replica that starts (an empty disk looks like a first boot,
    so every start sends it): "send me your certificates". Peers answer with
    ``SyncInfo``; an idle core would otherwise send a restarted replica
    nothing, and it would never learn what was committed without it."""


class SyncInfo(WireMessage, tag="hotstuff.SyncInfo", frozen=True):
    """Our highest certificates, sent to a replica that asked (``SyncRequest``)
    or whose NewView showed it lagging: ``commit_qc`` is the QC whose 3-chain committed our root (a
    replica that missed it may have no other way to commit that far, if the
    chain moved on along another branch)."""

    high_qc: QuorumCertificate
    high_tc: TimeoutCertificate | None = None
    commit_qc: QuorumCertificate | None = None


class BlockRequest(WireMessage, tag="hotstuff.BlockRequest", frozen=True):
    """Send ``block_hash`` and up to ``count - 1`` of its ancestors."""

    block_hash: bytes
    count: int


class BlockResponse(WireMessage, tag="hotstuff.BlockResponse", frozen=True):
    """Blocks answering a ``BlockRequest``, newest first."""

    blocks: tuple[Block, ...]


class Forward(WireMessage, tag="hotstuff.Forward", frozen=True):
    """Client commands a replica passes on to the leader it expects to order them."""

    commands: tuple[bytes, ...]


class ReputationState(msgspec.Struct, array_like=True, frozen=True):
    """The durable part of ``quorate.hotstuff.reputation.LeaderReputation``:
    the leader sets still in use, each with the first view it leads (as
    bitmaps of node ids; ``b""`` means every replica), what the current epoch
    of committed blocks showed so far, who proposed the committed root, and
    each replica's strikes and bench."""

    leader_sets: tuple[tuple[int, bytes], ...]
    proposed: bytes
    signed: bytes
    failed: bytes
    root_proposer: int
    strikes: tuple[int, ...]
    benched_until_epoch: tuple[int, ...]


class HardState(msgspec.Struct, array_like=True, frozen=True):
    """Durable replica state (persisted before any vote or NewView leaves).

    ``root_*`` name the last committed block and ``committed_index`` the global
    index of its last command; ``last_voted_view`` and ``last_newview`` keep a
    restarted replica from signing twice in a slot; ``high_qc``/``high_tc``
    justify ``view`` to peers after a restart; ``commit_qc`` is the QC that
    committed the root (shown to lagging peers); ``reputation`` is the leader
    reputation as of the committed root (``None``: none kept yet)."""

    view: int
    last_voted_view: int
    locked_qc: QuorumCertificate
    high_qc: QuorumCertificate
    root_hash: bytes
    root_view: int
    root_height: int
    committed_index: int
    last_newview: int = 0
    high_tc: TimeoutCertificate | None = None
    commit_qc: QuorumCertificate | None = None
    reputation: ReputationState | None = None


HOTSTUFF_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    Proposal,
    Vote,
    NewView,
    SyncRequest,
    SyncInfo,
    BlockRequest,
    BlockResponse,
    Forward,
    Evidence,
)
"""Every message a HotStuff replica sends or accepts (for ``quorate.codec.WireCodec``)."""
