"""Casper FFG's slashing evidence as a kind of evidence anyone can check
(``quorate.core.evidence.EvidenceKind``).

Theory of operation. ``SlashingEvidence`` (two votes of one validator that
break a slashing condition, §3 of the paper) is self-contained: the
condition follows from the two links alone (``ffg.slashing_condition``),
and each vote's signature covers ``vote_bytes`` of its link, so whoever
holds the validators' public keys can check it — the replicated evidence
record (``quorate.security.evidence_log``) does, and records the offender
in the audit trail as ``evidence.slashing``, with the condition broken and
the two votes' links as ``[source epoch, target epoch]``. A proposer's two
blocks for one slot are the core's own ``Evidence`` (``EQUIVOCATION``),
already known. The binding registers ``SLASHING`` when it is loaded.
"""

from __future__ import annotations

from typing import Any

from quorate.casper.ffg import slashing_condition
from quorate.casper.messages import VOTE_KIND, SlashingEvidence, vote_bytes
from quorate.core.evidence import EvidenceKind, SignedPart

__all__ = ["SLASHING"]


def _problem(evidence: SlashingEvidence) -> str | None:
    if slashing_condition(evidence.first, evidence.second) is None:
        return "the votes break no slashing condition"
    return None


def _signatures(evidence: SlashingEvidence) -> tuple[SignedPart, ...]:
    return tuple((vote.validator, vote_bytes(vote.source, vote.target), vote.signature) for vote in (evidence.first, evidence.second))


def _describe(evidence: SlashingEvidence) -> dict[str, Any]:
    return {
        "condition": slashing_condition(evidence.first, evidence.second),
        "statement": VOTE_KIND,
        "links": [[vote.source.epoch, vote.target.epoch] for vote in (evidence.first, evidence.second)],
    }


SLASHING = EvidenceKind(
    type=SlashingEvidence,
    record="evidence.slashing",
    offender=lambda evidence: evidence.first.validator,
    problem=_problem,
    signatures=_signatures,
    describe=_describe,
)
"""Two votes of one validator breaking a slashing condition (``SlashingEvidence``)."""
