"""Judging a removal proposal: the core's side of eviction (docs/hrb.md section 4).

Theory of operation. A node holding evidence against another sends a signed
``RemovalProposal``; the core orders it and **every member judges it again
when it applies it** (``judge``), with nothing but public keys and the
replicated state, so all members reach the same verdict:

- the proposal must be signed by its accuser (``removal_bytes``), a known,
  not evicted node that has not exhausted its failed accusations — otherwise
  nobody can be blamed and the proposal is just dropped;
- ``Evidence`` (two conflicting signed statements, ``quorate.core.evidence``)
  proves its offender's misbehaviour by itself: same signer, same slot,
  different payloads, both signatures valid; its statement kind must be one
  the rules accept (``CoreRules.evidence_kinds``; empty accepts all);
- ``SignedMessageEvidence`` (one signed message that is its own proof: a
  forged commit, an invalid entry) needs the shard tier's knowledge of what
  its messages mean: a ``SignedMessageChecker`` the shard tier provides
  (injected; it must be deterministic). The signer must be, or have been, a
  member of the named shard. A kind no checker knows is refused without
  blaming the accuser (this core cannot judge it).

Choices the design left open, and why these: only self-contained,
signature-checkable evidence evicts (never votes of suspicion), so a
coalition of Byzantine accusers cannot evict an honest node; a failed
accusation counts against its signed accuser, and an accuser that keeps
failing is no longer heard (``max_failed_accusations``), so accusing is not
a free way to fill the core's log; an unsigned accusation is dropped
without blame, since blaming the node it names would let anyone frame it.

The verdict is a ``Verdict``: the offender to evict, or a refusal with its
reason and whether it counts against the accuser (a failed accusation: an
unknown node, evidence that does not verify, malformed evidence).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec

from quorate.core.evidence import Evidence, verify_evidence
from quorate.core.signing import Verifier
from quorate.hrb.messages import RemovalProposal, SignedMessageEvidence, removal_bytes
from quorate.ids import NodeId

__all__ = [
    "SIGNED_MESSAGE_KINDS",
    "NoSignedMessageChecker",
    "SignedMessageChecker",
    "Verdict",
    "evidence_digest",
    "judge",
]

SIGNED_MESSAGE_KINDS = ("forged_commit", "invalid_entry")

_encoder = msgspec.msgpack.Encoder()


class SignedMessageChecker(Protocol):
    """The shard tier's judgement of one signed message (deterministic).

    Returns True if ``evidence.message`` is a message ``evidence.signer``
    signed that proves ``evidence.kind`` in a shard of ``members`` under the
    commit rule ``shard_quorum``; False if it does not (forged, not signed by
    the signer, no misbehaviour); None if this checker cannot judge the kind.
    Never raises on malformed input.
    """

    def __call__(
        self,
        evidence: SignedMessageEvidence,
        members: tuple[int, ...],
        shard_quorum: str,
        verifier: Verifier,
    ) -> bool | None: ...


class NoSignedMessageChecker:
    """The checker of a core that has not been given the shard tier's: it
    judges nothing (every ``SignedMessageEvidence`` is refused, unblamed)."""

    def __call__(
        self,
        evidence: SignedMessageEvidence,
        members: tuple[int, ...],
        shard_quorum: str,
        verifier: Verifier,
    ) -> bool | None:
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The core's verdict on a removal proposal."""

    offender: NodeId | None
    """Evict this node (None: refused)."""
    reason: str
    """Why it was refused ('' when the offender is convicted)."""
    blame_accuser: bool
    """The refusal counts against the accuser (a failed accusation)."""
    accuser: NodeId | None
    """The accuser, if the proposal's signature proved who it is."""
    digest: bytes = b""
    """SHA-256 of the encoded evidence (what ``Evict`` names)."""


def evidence_digest(evidence: Evidence | SignedMessageEvidence) -> bytes:
    return hashlib.sha256(_encoder.encode(evidence)).digest()


def judge(
    proposal: RemovalProposal,
    *,
    known: Mapping[int, object],
    evicted: frozenset[int] | set[int],
    failed_accusations: Mapping[int, int],
    max_failed_accusations: int,
    shard_members: Mapping[int, tuple[int, ...]],
    former_shard: Mapping[int, int],
    shard_quorum: str,
    evidence_kinds: tuple[str, ...],
    verifier: Verifier,
    checker: SignedMessageChecker,
) -> Verdict:
    """Judge ``proposal`` (see the module docstring). ``known``: every node of
    the deployment; ``former_shard``: the shard each node belongs or belonged
    to (an evicted node's too)."""
    accuser = proposal.accuser
    if not isinstance(accuser, int) or accuser not in known:
        return Verdict(None, "accuser is not a node of the deployment", False, None)
    if not verifier.verify(NodeId(accuser), removal_bytes(accuser, proposal.evidence), proposal.signature):
        return Verdict(None, "removal proposal not signed by its accuser", False, None)
    who = NodeId(accuser)
    if accuser in evicted:
        return Verdict(None, "accuser is evicted", False, who)
    if failed_accusations.get(accuser, 0) >= max_failed_accusations:
        return Verdict(None, "accuser exhausted its failed accusations", False, who)
    evidence = proposal.evidence
    digest = evidence_digest(evidence)

    def refuse(reason: str, blame: bool = True) -> Verdict:
        return Verdict(None, reason, blame, who, digest)

    if isinstance(evidence, Evidence):
        offender = evidence.first.signer
        if offender not in known:
            return refuse("unknown node")
        if offender in evicted:
            return refuse("already evicted", blame=False)
        if evidence_kinds and evidence.first.kind not in evidence_kinds:
            return refuse(f"statement kind {evidence.first.kind!r} is not evidence here")
        if not verify_evidence(evidence, verifier):
            return refuse("equivocation evidence does not verify")
        return Verdict(NodeId(offender), "", False, who, digest)
    if isinstance(evidence, SignedMessageEvidence):
        offender = evidence.signer
        if offender not in known:
            return refuse("unknown node")
        if offender in evicted:
            return refuse("already evicted", blame=False)
        if evidence.kind not in SIGNED_MESSAGE_KINDS:
            return refuse(f"unknown evidence kind {evidence.kind!r}")
        members = shard_members.get(evidence.shard)
        if members is None:
            return refuse(f"unknown shard {evidence.shard}")
        if former_shard.get(offender) != evidence.shard:
            return refuse(f"node {offender} is not a member of shard {evidence.shard}")
        judged = checker(evidence, members, shard_quorum, verifier)
        if judged is None:
            return refuse(f"no checker for {evidence.kind} evidence", blame=False)
        if not judged:
            return refuse(f"{evidence.kind} evidence does not verify")
        return Verdict(NodeId(offender), "", False, who, digest)
    return refuse("malformed evidence")
