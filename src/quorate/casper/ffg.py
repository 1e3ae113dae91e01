"""The finality gadget's rules as pure functions, and the slashing detector.

Theory of operation (Buterin & Griffith 2017, §2 and §3):

- **Supermajority.** Validators have equal stake here; a link s → t is a
  supermajority link when validators holding at least 2/3 of the stake voted
  for it (``supermajority``: 3 · voters ≥ 2 · n). Two such sets share at
  least 1/3 of the stake, so while less than 1/3 is Byzantine they share an
  honest validator.
- **Justified / finalized.** The genesis checkpoint is justified; a
  checkpoint t is justified when a supermajority link s → t leaves a
  justified s; s is finalized when it is justified and a supermajority link
  leaves it for a direct child (epoch(t) = epoch(s) + 1). An honest validator
  only votes from a justified source to one of its descendants, so a
  verified supermajority link, which carries the votes of honest validators
  while less than 1/3 is Byzantine, proves its source justified too
  (``link_finalizes``).
- **Slashing conditions (§3).** A validator must not publish two distinct
  votes (s1, t1), (s2, t2) with (I) epoch(t1) = epoch(t2) — a double vote —
  or (II) epoch(s1) < epoch(s2) < epoch(t2) < epoch(t1) — a surround vote.
  ``slashing_condition`` names which one two votes break; ``verify_slashing``
  checks evidence with nothing but the validators' public keys.
  Accountable safety: two conflicting finalized checkpoints imply that at
  least 1/3 of the stake broke one of the two.
- **Proposer equivocation.** Not one of FFG's conditions but the proposer
  chain's own: two blocks signed by one proposer for one slot
  (``quorate.core.evidence.Evidence`` over ``BLOCK_KIND`` statements). A
  proposer that shows different checkpoint blocks to different validators
  splits their votes for that epoch; convicting it lets the others skip
  its slots.
- **Detection** (``SlashingDetector``). Every honest validator keeps, per
  validator, the verified votes it saw (the most recent ``window_epochs``
  target epochs) and checks each new vote against them; a violation gives
  ``SlashingEvidence``, which it publishes and which convicts the offender
  (its votes are no longer counted, its messages dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import pairwise

from quorate.casper.messages import (
    BLOCK_KIND,
    GENESIS_HASH,
    HASH_BYTES,
    Checkpoint,
    Justification,
    SlashingEvidence,
    Vote,
    vote_bytes,
)
from quorate.core.evidence import Evidence, SignedStatement, verify_evidence
from quorate.core.signing import Verifier
from quorate.ids import NodeId

__all__ = [
    "BLOCK_EQUIVOCATION",
    "DOUBLE_VOTE",
    "SURROUND_VOTE",
    "SlashingDetector",
    "link_finalizes",
    "slashing_condition",
    "supermajority",
    "valid_link_shape",
    "verify_justification",
    "verify_slashing",
    "verify_vote",
]

DOUBLE_VOTE = "double_vote"
"""Slashing condition I: two distinct votes for the same target epoch."""
SURROUND_VOTE = "surround_vote"
"""Slashing condition II: one vote's link strictly inside another's."""
BLOCK_EQUIVOCATION = "block_equivocation"
"""Two blocks signed by one proposer for one slot."""


def supermajority(voters: int, validators: int) -> bool:
    """True when ``voters`` of ``validators`` equal-stake validators hold at
    least 2/3 of the stake."""
    return validators > 0 and 3 * voters >= 2 * validators


def valid_link_shape(source: Checkpoint, target: Checkpoint) -> bool:
    """A link any honest validator could vote for: target epoch above the
    source's, hashes of the right size, and the genesis hash at epoch 0 only."""
    if not (0 <= source.epoch < target.epoch):
        return False
    if len(source.hash) != HASH_BYTES or len(target.hash) != HASH_BYTES:
        return False
    return (source.epoch == 0) == (source.hash == GENESIS_HASH)


def link_finalizes(source: Checkpoint, target: Checkpoint) -> bool:
    """A supermajority link to a direct child finalizes its source."""
    return target.epoch == source.epoch + 1


def slashing_condition(a: Vote, b: Vote) -> str | None:
    """Which slashing condition the two votes of one validator break, or None."""
    if a.validator != b.validator or (a.source, a.target) == (b.source, b.target):
        return None
    if a.target.epoch == b.target.epoch:
        return DOUBLE_VOTE
    sa, ta, sb, tb = a.source.epoch, a.target.epoch, b.source.epoch, b.target.epoch
    if sa < sb < tb < ta or sb < sa < ta < tb:
        return SURROUND_VOTE
    return None


def verify_vote(vote: Vote, verifier: Verifier) -> bool:
    """The vote's signature is its validator's over ``vote_bytes``."""
    return verifier.verify(NodeId(vote.validator), vote_bytes(vote.source, vote.target), vote.signature)


def verify_slashing(evidence: SlashingEvidence, verifier: Verifier) -> str | None:
    """The condition the evidence proves (``DOUBLE_VOTE``/``SURROUND_VOTE``),
    or None if it proves nothing: both signatures must be the offender's,
    checked with ``verifier`` (public keys only)."""
    condition = slashing_condition(evidence.first, evidence.second)
    if condition is None:
        return None
    if not (verify_vote(evidence.first, verifier) and verify_vote(evidence.second, verifier)):
        return None
    return condition


def verify_justification(link: Justification, validators: Iterable[NodeId], verifier: Verifier) -> bool:
    """The link carries valid votes of a supermajority of ``validators``."""
    members = frozenset(validators)
    signers = link.signers
    if len(signers) != len(link.signatures) or not valid_link_shape(link.source, link.target):
        return False
    if any(b <= a for a, b in pairwise(signers)) or not all(NodeId(s) in members for s in signers):
        return False
    if not supermajority(len(signers), len(members)):
        return False
    data = vote_bytes(link.source, link.target)
    return all(verifier.verify(NodeId(s), data, sig) for s, sig in zip(signers, link.signatures))


class SlashingDetector:
    """The verified votes seen per validator, the evidence found, and the
    convicted (excluded) validators."""

    __slots__ = ("_blocks", "_highest", "_votes", "detections", "excluded", "verifier", "window_epochs")

    def __init__(self, verifier: Verifier, window_epochs: int) -> None:
        self.verifier = verifier
        self.window_epochs = window_epochs
        self._votes: dict[int, dict[int, Vote]] = {}
        """validator -> target epoch -> the first vote seen for it."""
        self._highest: dict[int, tuple[int, int]] = {}
        """validator -> (highest target epoch, highest source epoch) among its
        votes seen: a vote above both breaks no condition with them (honest
        validators' votes arrive so), so only others are checked one by one."""
        self._blocks: dict[int, SignedStatement] = {}
        """slot -> the first block statement seen for it."""
        self.excluded: set[NodeId] = set()
        self.detections: list[SlashingEvidence | Evidence] = []

    def observe(self, vote: Vote) -> SlashingEvidence | None:
        """Record a vote whose signature the caller verified; evidence if it
        breaks a slashing condition with a vote seen before."""
        if NodeId(vote.validator) in self.excluded:
            return None
        seen = self._votes.setdefault(vote.validator, {})
        same = seen.get(vote.target.epoch)
        if same is not None:
            if same == vote:
                return None
            evidence = SlashingEvidence(same, vote)
            self._convict(evidence)
            return evidence
        top_target, top_source = self._highest.get(vote.validator, (-1, -1))
        if not (vote.target.epoch > top_target and vote.source.epoch >= top_source):
            for earlier in seen.values():
                if slashing_condition(earlier, vote) is not None:
                    evidence = SlashingEvidence(earlier, vote)
                    self._convict(evidence)
                    return evidence
        self._highest[vote.validator] = (max(top_target, vote.target.epoch), max(top_source, vote.source.epoch))
        seen[vote.target.epoch] = vote
        if len(seen) > self.window_epochs:
            del seen[min(seen)]
        return None

    def observe_block(self, statement: SignedStatement) -> Evidence | None:
        """Record a proposer's verified block statement for its slot;
        evidence if the proposer signed another block for that slot."""
        first = self._blocks.setdefault(statement.height, statement)
        if first.payload == statement.payload or NodeId(statement.signer) in self.excluded:
            return None
        evidence = Evidence(first, statement)
        self._convict(evidence)
        return evidence

    def forget_blocks_below(self, slot: int) -> None:
        """Drop block statements of slots under ``slot`` (finalized history)."""
        if self._blocks and min(self._blocks) < slot:
            self._blocks = {k: v for k, v in self._blocks.items() if k >= slot}

    def receive(self, evidence: SlashingEvidence | Evidence) -> bool:
        """A peer's evidence: verify it from the public keys, convict. True if new."""
        if NodeId(evidence.offender) in self.excluded:
            return False
        if isinstance(evidence, Evidence):
            if evidence.first.kind != BLOCK_KIND or not verify_evidence(evidence, self.verifier):
                return False
        elif verify_slashing(evidence, self.verifier) is None:
            return False
        self._convict(evidence)
        return True

    def _convict(self, evidence: SlashingEvidence | Evidence) -> None:
        self.excluded.add(NodeId(evidence.offender))
        self.detections.append(evidence)
        self._votes.pop(evidence.offender, None)
        self._highest.pop(evidence.offender, None)

    def conditions(self) -> Mapping[int, str]:
        """Offender -> the condition its first evidence proves."""
        out: dict[int, str] = {}
        for ev in self.detections:
            if isinstance(ev, Evidence):
                out.setdefault(int(ev.offender), BLOCK_EQUIVOCATION)
                continue
            condition = slashing_condition(ev.first, ev.second)
            if condition is not None:
                out.setdefault(ev.offender, condition)
        return out
