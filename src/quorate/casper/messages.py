"""Casper FFG's data on the wire and on disk (Buterin & Griffith, "Casper the
Friendly Finality Gadget", 2017, §2-§3).

Theory of operation: every type here is a frozen msgspec struct, so the codec
checks the *shape* of a peer's message; ``CasperValidator.step`` still checks
every claim (proposer, slot, hashes, signatures) and drops what does not add up.

- ``Block``: a batch of client commands on a proposer chain: its parent's
  hash, the slot it was proposed in (which names its proposer), its height
  and, on a checkpoint block (height a multiple of the epoch length), the
  ``Justification`` of the highest checkpoint its proposer knew justified.
  ``block_hash`` covers every field, so a hash pins the whole chain below it.
- ``Checkpoint``: (epoch, block hash), the block at height ``epoch * E``;
  epoch 0 is the genesis (``GENESIS``), justified and finalized by definition.
- ``Vote``: the paper's ⟨ν, s, t, h(s), h(t)⟩ signed by validator ν: a link
  from the source checkpoint to the target checkpoint. Its signature covers
  ``vote_bytes(source, target)`` (``quorate.core.evidence``'s statement
  format, domain-separated by ``VOTE_KIND``), so two votes are self-contained
  evidence against their signer (``quorate.casper.ffg``).
- ``Justification``: the votes of a supermajority link (at least 2/3 of the
  stake for one source → target), as signer ids and their signatures; anyone
  holding the validators' public keys can check it.
- ``Proposal`` (proposer → all), ``Vote`` (validator → all), ``Status`` (a
  validator's justified and finalized checkpoints, sent when it times out),
  ``Sync`` (the proofs a lagging validator lacks), ``BlockRequest`` /
  ``BlockResponse`` (fetch missing ancestors by hash), ``Forward`` (client
  commands sent on to the next proposers), ``SlashingEvidence`` (two votes
  that break a slashing condition) and ``quorate.core.evidence.Evidence``
  (two blocks one proposer signed for one slot).
- ``HardState``: what a validator persists before its vote or block leaves,
  so that a restarted honest validator never signs two votes for one target
  epoch, never surrounds its own vote and never proposes twice in a slot.
"""

from __future__ import annotations

import hashlib

import msgspec

from quorate.core.evidence import Evidence, statement_bytes
from quorate.core.wire import WireMessage

__all__ = [
    "BLOCK_KIND",
    "CASPER_MESSAGE_TYPES",
    "GENESIS",
    "GENESIS_HASH",
    "HASH_BYTES",
    "VOTE_KIND",
    "Block",
    "BlockRequest",
    "BlockResponse",
    "Checkpoint",
    "Forward",
    "HardState",
    "Justification",
    "Proposal",
    "SlashingEvidence",
    "Status",
    "Sync",
    "Vote",
    "block_bytes",
    "block_hash",
    "vote_bytes",
]

VOTE_KIND = "casper.vote"
"""Statement kind of a vote: slot (target epoch, source epoch), payload both hashes."""
BLOCK_KIND = "casper.block"
"""Statement kind of a proposal: slot (slot, 0), payload the block hash."""
HASH_BYTES = 32
"""SHA-256 block hashes."""

GENESIS_HASH = hashlib.sha256(b"quorate.casper.genesis.v1").digest()
"""The hash of the implicit block at height 0, slot 0, that every chain extends."""

_encoder = msgspec.msgpack.Encoder()


class Checkpoint(msgspec.Struct, array_like=True, frozen=True):
    """The block ``hash`` at height ``epoch * E`` (the paper's checkpoint, h(c) = epoch)."""

    epoch: int
    hash: bytes


GENESIS = Checkpoint(0, GENESIS_HASH)
"""The root checkpoint: justified and finalized by definition."""


def vote_bytes(source: Checkpoint, target: Checkpoint) -> bytes:
    """The bytes a validator signs to vote for the link ``source`` → ``target``."""
    return statement_bytes(VOTE_KIND, target.epoch, source.epoch, source.hash + target.hash)


class Vote(WireMessage, tag="casper.Vote", frozen=True):
    """Validator ``validator`` votes for the link ``source`` → ``target``."""

    validator: int
    source: Checkpoint
    target: Checkpoint
    signature: bytes

    # The statement view of a vote (what evidence logs show):
    # signer, kind, and the slot (target epoch, source epoch).
    @property
    def signer(self) -> int:
        return self.validator

    @property
    def kind(self) -> str:
        return VOTE_KIND

    @property
    def height(self) -> int:
        return self.target.epoch

    @property
    def round(self) -> int:
        return self.source.epoch


class Justification(msgspec.Struct, array_like=True, frozen=True):
    """A supermajority link ``source`` → ``target``: the votes of ``signers``
    (ascending validator ids), ``signatures[i]`` by ``signers[i]``."""

    source: Checkpoint
    target: Checkpoint
    signers: tuple[int, ...]
    signatures: tuple[bytes, ...]


class Block(msgspec.Struct, array_like=True, frozen=True):
    """A block of the proposer chain; ``justification`` only on checkpoint blocks."""

    parent_hash: bytes
    slot: int
    height: int
    proposer: int
    commands: tuple[bytes, ...] = ()
    justification: Justification | None = None


def block_hash(block: Block) -> bytes:
    """SHA-256 of the block's canonical encoding (every field)."""
    return hashlib.sha256(_encoder.encode(block)).digest()


def block_bytes(slot: int, digest: bytes) -> bytes:
    """The bytes a proposer signs for the block ``digest`` in ``slot``."""
    return statement_bytes(BLOCK_KIND, slot, 0, digest)


class Proposal(WireMessage, tag="casper.Proposal", frozen=True):
    """The proposer of ``block.slot`` proposes ``block``; ``signature`` over ``block_bytes``."""

    block: Block
    signature: bytes


class Status(WireMessage, tag="casper.Status", frozen=True):
    """A validator's view, sent to all when its slot timer fires: peers that
    know more answer with ``Sync``, peers that know less get our ``Sync``."""

    slot: int
    justified: Checkpoint
    finalized: Checkpoint


class Sync(WireMessage, tag="casper.Sync", frozen=True):
    """Proofs for a lagging validator: the link that justified our highest
    justified checkpoint and the link that finalized our finalized one."""

    justified: Justification | None = None
    finalized: Justification | None = None


class BlockRequest(WireMessage, tag="casper.BlockRequest", frozen=True):
    """Send ``block_hash`` and up to ``count - 1`` of its ancestors."""

    block_hash: bytes
    count: int


class BlockResponse(WireMessage, tag="casper.BlockResponse", frozen=True):
    """Blocks answering a ``BlockRequest``, newest first, each with its
    proposer's signature (so a fetched block can still convict a proposer
    that signed two blocks for one slot)."""

    proposals: tuple[Proposal, ...]


class Forward(WireMessage, tag="casper.Forward", frozen=True):
    """Client commands a validator passes on to the proposers it expects next."""

    commands: tuple[bytes, ...]


class SlashingEvidence(WireMessage, tag="casper.SlashingEvidence", frozen=True):
    """Two votes by one validator that break a slashing condition
    (``quorate.casper.ffg.slashing_condition``); valid iff ``verify_slashing``."""

    first: Vote
    second: Vote

    @property
    def offender(self) -> int:
        return self.first.validator


class HardState(msgspec.Struct, array_like=True, frozen=True):
    """Durable validator state (persisted before any vote or block leaves).

    ``last_vote`` is this validator's latest vote (its epochs bound every
    later vote: target strictly higher, source not lower); ``last_proposed_slot``
    keeps a restarted proposer from signing two blocks in one slot;
    ``justified``/``finalized`` are the proofs of the highest justified and
    the finalized checkpoint (``None``: genesis); ``root_*`` name the last
    executed checkpoint block and ``committed_index`` the index of its last
    command."""

    slot: int
    last_proposed_slot: int
    last_vote: Vote | None
    justified: Justification | None
    finalized: Justification | None
    root_hash: bytes
    root_height: int
    root_slot: int
    committed_index: int


CASPER_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    Proposal,
    Vote,
    Status,
    Sync,
    BlockRequest,
    BlockResponse,
    Forward,
    SlashingEvidence,
    Evidence,
)
"""Every message a Casper validator sends or accepts (for ``quorate.codec.WireCodec``)."""
