"""The finality gadget's rules (Buterin & Griffith 2017): supermajority,
finalizing links and the two slashing conditions, with evidence checked
from public keys alone (real Ed25519 keys)."""

from __future__ import annotations

import hashlib
import itertools

import msgspec
import pytest

from quorate.casper import (
    DOUBLE_VOTE,
    GENESIS,
    SURROUND_VOTE,
    Checkpoint,
    Justification,
    SlashingDetector,
    SlashingEvidence,
    Vote,
    link_finalizes,
    slashing_condition,
    supermajority,
    verify_justification,
    verify_slashing,
    vote_bytes,
)
from quorate.casper.messages import CASPER_MESSAGE_TYPES
from quorate.codec import WireCodec
from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_cluster_keys
from quorate.ids import NodeId

VALIDATORS = [NodeId(i) for i in range(1, 5)]
KEYS = ed25519_cluster_keys(b"casper-ffg-test", VALIDATORS)
PUBLIC = Ed25519Verifier({n: k.public_key for n, k in KEYS.items()})
"""Only the public keys: what a third party checking evidence holds."""


def cp(epoch: int) -> Checkpoint:
    return GENESIS if epoch == 0 else Checkpoint(epoch, hashlib.sha256(b"block-at-epoch-%d" % epoch).digest())


def vote(validator: int, source: Checkpoint, target: Checkpoint) -> Vote:
    signer = Ed25519Signer(NodeId(validator), KEYS[NodeId(validator)].signing_key)
    return Vote(validator, source, target, signer.sign(vote_bytes(source, target)))


def test_supermajority_is_two_thirds_of_the_stake() -> None:
    # Reference: §2, "a supermajority link ... at least 2/3 of validators (by deposit)".
    for n in range(1, 40):
        for voters in range(n + 1):
            assert supermajority(voters, n) == (voters / n >= 2 / 3 - 1e-12), (voters, n)
    assert [min(v for v in range(n + 1) if supermajority(v, n)) for n in (3, 4, 7, 10)] == [2, 3, 5, 7]
    # Two supermajorities of n = 3f + 1 share at least f + 1 validators: an honest one.
    for f in range(1, 6):
        n = 3 * f + 1
        q = min(v for v in range(n + 1) if supermajority(v, n))
        assert 2 * q - n >= f + 1


def test_only_a_link_to_the_next_epoch_finalizes() -> None:
    # Reference: §2, "finalized if it is justified and there is a supermajority link c -> c'
    # where c' is a direct child of c".
    assert link_finalizes(cp(3), cp(4))
    assert not link_finalizes(cp(3), cp(5))
    assert link_finalizes(GENESIS, cp(1))


def test_double_vote_is_condition_one() -> None:
    # Reference: §3, commandment I: no two distinct votes with h(t1) = h(t2).
    a = vote(2, cp(1), cp(3))
    b = vote(2, cp(2), Checkpoint(3, hashlib.sha256(b"other").digest()))
    assert slashing_condition(a, b) == slashing_condition(b, a) == DOUBLE_VOTE
    assert slashing_condition(a, a) is None
    assert verify_slashing(SlashingEvidence(a, b), PUBLIC) == DOUBLE_VOTE


def test_surround_vote_is_condition_two() -> None:
    # Reference: §3, commandment II: no h(s1) < h(s2) < h(t2) < h(t1).
    outer = vote(3, cp(1), cp(6))
    inner = vote(3, cp(2), cp(4))
    assert slashing_condition(outer, inner) == slashing_condition(inner, outer) == SURROUND_VOTE
    assert verify_slashing(SlashingEvidence(inner, outer), PUBLIC) == SURROUND_VOTE
    # Sharing an end is not surrounding; nor are consecutive or overlapping links.
    for s1, t1, s2, t2 in ((1, 6, 1, 4), (1, 5, 2, 6), (1, 2, 2, 3), (1, 4, 2, 5), (0, 1, 1, 2)):
        assert slashing_condition(vote(3, cp(s1), cp(t1)), vote(3, cp(s2), cp(t2))) is None


def test_conditions_match_the_definitions_on_every_small_pair() -> None:
    links = [(s, t) for s, t in itertools.combinations(range(6), 2)]
    for (s1, t1), (s2, t2) in itertools.product(links, repeat=2):
        a = Vote(1, cp(s1), cp(t1), b"")
        b = Vote(1, cp(s2), cp(t2), b"")
        expected = None
        if (s1, t1) != (s2, t2):
            if t1 == t2:
                expected = DOUBLE_VOTE
            elif s1 < s2 < t2 < t1 or s2 < s1 < t1 < t2:
                expected = SURROUND_VOTE
        assert slashing_condition(a, b) == expected, ((s1, t1), (s2, t2))
    # Votes of two validators never convict anyone.
    assert slashing_condition(Vote(1, cp(0), cp(2), b""), Vote(2, cp(1), cp(2), b"")) is None


def test_evidence_with_a_forged_or_foreign_signature_proves_nothing() -> None:
    a, b = vote(2, cp(0), cp(2)), vote(2, cp(1), Checkpoint(2, bytes(32)))
    forged = msgspec.structs.replace(b, signature=bytes(64))
    assert verify_slashing(SlashingEvidence(a, forged), PUBLIC) is None
    # A vote signed by validator 4 but claimed for 2.
    stolen = msgspec.structs.replace(vote(4, cp(1), Checkpoint(2, bytes(32))), validator=2)
    assert verify_slashing(SlashingEvidence(a, stolen), PUBLIC) is None
    # Two honest votes in a row prove nothing.
    assert verify_slashing(SlashingEvidence(vote(2, cp(0), cp(1)), vote(2, cp(1), cp(2))), PUBLIC) is None


def test_evidence_survives_the_wire() -> None:
    codec = WireCodec(CASPER_MESSAGE_TYPES)
    evidence = SlashingEvidence(vote(1, cp(1), cp(5)), vote(1, cp(2), cp(3)))
    decoded = codec.decode_message(codec.encode_message(evidence))
    assert decoded == evidence
    assert verify_slashing(decoded, PUBLIC) == SURROUND_VOTE


def test_detector_convicts_once_and_keeps_honest_validators() -> None:
    detector = SlashingDetector(PUBLIC, window_epochs=64)
    honest = [vote(1, cp(e), cp(e + 1)) for e in range(5)]
    assert all(detector.observe(v) is None for v in honest)
    assert all(detector.observe(v) is None for v in honest)  # repeats are not evidence
    assert detector.observe(vote(2, cp(1), cp(2))) is None
    assert detector.observe(vote(2, cp(2), cp(3))) is None
    evidence = detector.observe(vote(2, cp(0), cp(4)))  # surrounds (2, 3)
    assert evidence is not None and verify_slashing(evidence, PUBLIC) == SURROUND_VOTE
    assert detector.excluded == {NodeId(2)}
    assert detector.observe(vote(2, cp(0), cp(9))) is None  # already convicted
    assert detector.conditions() == {2: SURROUND_VOTE}
    # Another detector is convinced by the evidence alone.
    other = SlashingDetector(PUBLIC, window_epochs=64)
    assert other.receive(evidence) and other.excluded == {NodeId(2)}
    assert not other.receive(evidence)
    fake = SlashingEvidence(honest[0], honest[1])
    assert not SlashingDetector(PUBLIC, window_epochs=64).receive(fake)


def test_detector_finds_a_vote_that_is_surrounded_after_the_fact() -> None:
    detector = SlashingDetector(PUBLIC, window_epochs=64)
    assert detector.observe(vote(3, cp(0), cp(7))) is None
    evidence = detector.observe(vote(3, cp(2), cp(4)))  # inside (0, 7), arriving later
    assert evidence is not None and slashing_condition(evidence.first, evidence.second) == SURROUND_VOTE


def _link(source: Checkpoint, target: Checkpoint, signers: list[int]) -> Justification:
    votes = [vote(s, source, target) for s in signers]
    return Justification(source, target, tuple(signers), tuple(v.signature for v in votes))


def test_a_justification_needs_a_supermajority_of_valid_votes() -> None:
    assert verify_justification(_link(cp(1), cp(2), [1, 2, 3]), VALIDATORS, PUBLIC)
    assert not verify_justification(_link(cp(1), cp(2), [1, 2]), VALIDATORS, PUBLIC)
    assert not verify_justification(_link(cp(1), cp(2), [1, 1, 2]), VALIDATORS, PUBLIC)  # repeated signer
    link = _link(cp(1), cp(2), [1, 2, 3])
    other_target = msgspec.structs.replace(link, target=cp(3))
    assert not verify_justification(other_target, VALIDATORS, PUBLIC)
    backwards = _link(cp(2), cp(1), [1, 2, 3])
    assert not verify_justification(backwards, VALIDATORS, PUBLIC)
    # Valid votes, but the validator set does not hold one of the signers.
    assert not verify_justification(link, [NodeId(1), NodeId(2), NodeId(4), NodeId(5)], PUBLIC)


@pytest.mark.parametrize("bad", [b"", bytes(64)])
def test_a_justification_with_one_bad_signature_is_refused(bad: bytes) -> None:
    link = _link(cp(0), cp(1), [1, 2, 4])
    broken = msgspec.structs.replace(link, signatures=(link.signatures[0], bad, link.signatures[2]))
    assert not verify_justification(broken, VALIDATORS, PUBLIC)
