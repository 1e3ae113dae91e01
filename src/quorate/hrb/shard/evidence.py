"""Evidence against a shard member: building it from what a member saw, and
verifying it with public keys alone (``docs/hrb.md`` sections 2 and 4).

Theory of operation
-------------------
Three kinds of misbehaviour prove themselves:

- **Equivocation**: the leader of term T signed two digests for one index.
  When both signed ``chain`` statements name that index exactly, the proof is
  ``quorate.core.evidence.Evidence`` (two statements, one slot). Usually they
  do not: a follower's latest statement covers its last index, another's
  covers a different one. A ``ChainProof`` (a signed statement for index h,
  the digest d(s) at an earlier index s and the chain links s + 1..h) shows
  that the signer's log held d(s) at s: recomputing the chain from d(s) must
  give the signed digest, and SHA-256 makes that impossible for any other
  d(s). Two chain proofs of one signer and term naming two digests for one
  index are a ``ChainEquivocation``
  (``SignedMessageEvidence(kind="equivocation")``).
- **Forged commit**: a signed ``CommitAnnouncement`` whose certificate is
  forged under every configuration of the shard (``kind="forged_commit"``,
  ``quorate.hrb.shard.proofs.certificate_forgery``). A certificate that is
  merely short of the verifier's quorum, or counts a node the verifier does
  not take for a voter, proves nothing: the leader may have counted the
  voters of a configuration change the verifier has not seen (or, at the
  core, that later evictions undid). The announcement's signature covers
  the certificate's hash, so nobody can swap in a worse certificate.
- **Invalid entry**: a chain proof that the leader's log held an entry the
  shard's validation refuses (``kind="invalid_entry"``, ``InvalidEntry``):
  the proof's link for that index matches the entry's kind and data hash.

``verify_shard_evidence`` checks any of them for the members of the shard
(and is what the core calls before it orders an eviction); it returns why
evidence does not verify, or ``None``, and never raises on peer input.
Membership matters for a forged commit only: a listed voter's
acknowledgement must verify; ``commit_quorum`` plays no part in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from typing import Any

import msgspec

from quorate.core.evidence import Evidence, SignedStatement, verify_evidence, verify_statement
from quorate.core.signing import Verifier
from quorate.hrb.messages import SignedMessageEvidence
from quorate.hrb.shard.chain import ChainLink, chain_kind, digests_after, statement_kind
from quorate.hrb.shard.messages import CommitAnnouncement
from quorate.hrb.shard.proofs import (
    MAX_CERTIFICATE_LINKS,
    certificate_forgery,
    commit_statement,
)
from quorate.ids import NodeId

__all__ = [
    "EVIDENCE_KINDS",
    "ChainEquivocation",
    "ChainProof",
    "InvalidEntry",
    "chain_equivocation",
    "evidence_offender",
    "forged_commit_evidence",
    "invalid_entry_evidence",
    "verify_shard_evidence",
]

EVIDENCE_KINDS = ("equivocation", "forged_commit", "invalid_entry")
_encode = msgspec.msgpack.Encoder().encode


class ChainProof(msgspec.Struct, array_like=True, frozen=True):
    """``head`` (a signed ``chain`` statement for index h) and the links from
    ``start_index + 1`` to h: the signer's log held ``start_digest`` at
    ``start_index``."""

    head: SignedStatement
    start_index: int
    start_digest: bytes
    links: tuple[ChainLink, ...] = ()

    @property
    def term(self) -> int:
        return self.head.round

    def refusal(self, shard: int, verifier: Verifier) -> str | None:
        head = self.head
        if head.kind != chain_kind(shard):
            return f"the statement is a {head.kind!r}, not shard {shard}'s chain"
        if len(self.links) > MAX_CERTIFICATE_LINKS:
            return "too many links"
        if self.start_index < 0 or self.start_index + len(self.links) != head.height:
            return "the links do not reach the signed index"
        try:
            top = digests_after(self.start_digest, self.start_index, self.links)
        except ValueError as exc:
            return f"bad link: {exc}"
        if (top[-1] if top else self.start_digest) != head.payload:
            return "the links do not lead to the signed digest"
        if not verify_statement(head, verifier):
            return "the signature does not verify"
        return None


class ChainEquivocation(msgspec.Struct, array_like=True, frozen=True):
    first: ChainProof
    second: ChainProof


class InvalidEntry(msgspec.Struct, array_like=True, frozen=True):
    """The entry at ``index`` of ``proof``'s chain has ``kind`` and ``data``."""

    proof: ChainProof
    index: int
    kind: int
    data: bytes


_decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {
    "equivocation": msgspec.msgpack.Decoder(ChainEquivocation),
    "forged_commit": msgspec.msgpack.Decoder(CommitAnnouncement),
    "invalid_entry": msgspec.msgpack.Decoder(InvalidEntry),
}


def evidence_offender(evidence: Evidence | SignedMessageEvidence) -> NodeId:
    if isinstance(evidence, Evidence):
        return evidence.offender
    return NodeId(evidence.signer)


def chain_equivocation(first: ChainProof, second: ChainProof, shard: int) -> Evidence | SignedMessageEvidence:
    """The evidence for two chain proofs that disagree at their start index:
    core ``Evidence`` when both are plain statements for that index."""
    if not first.links and not second.links:
        return Evidence(first.head, second.head)
    return SignedMessageEvidence(
        "equivocation", first.head.signer, shard, _encode(ChainEquivocation(first, second))
    )


def forged_commit_evidence(announcement: CommitAnnouncement, leader: NodeId, shard: int) -> SignedMessageEvidence:
    return SignedMessageEvidence("forged_commit", int(leader), shard, _encode(announcement))


def invalid_entry_evidence(proof: ChainProof, index: int, kind: int, data: bytes, shard: int) -> SignedMessageEvidence:
    return SignedMessageEvidence(
        "invalid_entry", proof.head.signer, shard, _encode(InvalidEntry(proof, index, kind, data))
    )


def verify_shard_evidence(
    evidence: Evidence | SignedMessageEvidence,
    *,
    shard: int,
    voters: Collection[NodeId],
    commit_quorum: int,
    verifier: Verifier,
    entry_refusal: Callable[[int, bytes], str | None],
) -> str | None:
    """Why ``evidence`` does not prove misbehaviour by a member of ``shard``
    (``voters``, whose commit quorum is ``commit_quorum``), or ``None``.
    ``entry_refusal(kind, data)`` is the shard's entry validation
    (``EntryRules.entry_refusal``)."""
    if isinstance(evidence, Evidence):
        kinds = (chain_kind(shard), statement_kind(shard, "vote"))
        if evidence.first.kind not in kinds:
            return f"statements of kind {evidence.first.kind!r} are not equivocation slots of shard {shard}"
        if NodeId(evidence.first.signer) not in voters:
            return f"node {evidence.first.signer} is not a member of shard {shard}"
        return None if verify_evidence(evidence, verifier) else "the two statements do not conflict validly"
    if not isinstance(evidence, SignedMessageEvidence):
        return "not evidence"
    if evidence.shard != shard:
        return f"evidence about shard {evidence.shard}, not {shard}"
    if NodeId(evidence.signer) not in voters:
        return f"node {evidence.signer} is not a member of shard {shard}"
    decoder = _decoders.get(evidence.kind)
    if decoder is None:
        return f"unknown evidence kind {evidence.kind!r}; one of {', '.join(EVIDENCE_KINDS)}"
    try:
        proof = decoder.decode(evidence.message)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return f"the {evidence.kind} evidence does not decode"
    try:
        if isinstance(proof, ChainEquivocation):
            return _equivocation_refusal(proof, evidence.signer, shard, verifier)
        if isinstance(proof, CommitAnnouncement):
            return _forged_commit_refusal(proof, evidence.signer, shard, voters, verifier)
        assert isinstance(proof, InvalidEntry)
        return _invalid_entry_refusal(proof, evidence.signer, shard, verifier, entry_refusal)
    except (TypeError, ValueError, OverflowError) as exc:
        return f"malformed evidence: {exc}"


def _equivocation_refusal(proof: ChainEquivocation, signer: int, shard: int, verifier: Verifier) -> str | None:
    a, b = proof.first, proof.second
    if a.head.signer != signer or b.head.signer != signer:
        return "the chain proofs are not both by the accused"
    if a.term != b.term or a.start_index != b.start_index:
        return "the chain proofs are about different terms or indices"
    if a.start_digest == b.start_digest:
        return "the chain proofs agree"
    return a.refusal(shard, verifier) or b.refusal(shard, verifier)


def _forged_commit_refusal(
    announcement: CommitAnnouncement,
    signer: int,
    shard: int,
    voters: Collection[NodeId],
    verifier: Verifier,
) -> str | None:
    cert = announcement.certificate
    if cert.term != announcement.term:
        return "the announcement's term is not its certificate's"
    if not verifier.verify(NodeId(signer), commit_statement(shard, cert), announcement.signature):
        return "the announcement's signature does not verify"
    if certificate_forgery(cert, shard=shard, voters=voters, verifier=verifier) is None:
        return "the announced certificate is not forged (it may be valid for the leader's voters)"
    return None


def _invalid_entry_refusal(
    proof: InvalidEntry,
    signer: int,
    shard: int,
    verifier: Verifier,
    entry_refusal: Callable[[int, bytes], str | None],
) -> str | None:
    chain = proof.proof
    if chain.head.signer != signer:
        return "the chain proof is not by the accused"
    if not chain.start_index < proof.index <= chain.head.height:
        return "the entry is outside the proven chain"
    link = chain.links[proof.index - chain.start_index - 1]
    if link.kind != proof.kind or link.data_hash != hashlib.sha256(proof.data).digest():
        return "the entry is not the one the chain holds"
    reason = chain.refusal(shard, verifier)
    if reason is not None:
        return reason
    if entry_refusal(proof.kind, proof.data) is None:
        return "the entry is valid"
    return None
