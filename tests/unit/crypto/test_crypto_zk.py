"""Zero-knowledge votes on Ristretto255: completeness (honest proofs verify),
soundness (forgeries, moved proofs and malformed bytes are refused with a
reason, never a crash), tally correctness, spoiled ballots, and the Schnorr
proof of knowledge of an Ed25519 key."""

from __future__ import annotations

import random

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.crypto import ristretto255 as group
from quorate.crypto.zk import (
    BIT_PROOF_SIZE_BYTES,
    PEDERSEN_H,
    SEALED_OPENING_SIZE_BYTES,
    Ballot,
    Tallier,
    VoteVerifier,
    ballot_context,
    ballot_signing_bytes,
    cast_ballot,
    commit,
    prove_bit,
    prove_dleq,
    prove_ed25519_key,
    prove_tally,
    seal_opening,
    sum_points,
    tally_context,
    verify_bit,
    verify_dleq,
    verify_ed25519_key,
    verify_tally,
)
from quorate.errors import LocalProtocolError

scalars = st.integers(min_value=1, max_value=group.GROUP_ORDER - 1)
contexts = st.binary(max_size=64)
FAST = settings(max_examples=25, deadline=None)


def _rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


CONTEXT = ballot_context("proposal-7", b"v" * 32)


def _scalar(s: int) -> bytes:
    return s.to_bytes(32, "little")


def test_second_generator_is_derived_by_hashing_a_public_string() -> None:
    assert group.hash_to_point(b"quorate/zk/pedersen-generator-H/v1") == PEDERSEN_H
    assert PEDERSEN_H not in (group.GENERATOR, group.IDENTITY)
    assert group.is_point(PEDERSEN_H)


def test_ristretto_rejects_what_is_not_a_canonical_point() -> None:
    assert group.decode(b"\xff" * 32) is None  # not canonical (above p)
    assert group.decode(b"\x01" + bytes(31)) is None  # odd: never canonical
    assert group.decode(b"\x00" * 31) is None  # short
    assert group.decode("not bytes") is None
    assert group.decode(group.GENERATOR) == group.GENERATOR


@FAST
@given(value=st.sampled_from([0, 1]), blinding=scalars, context=contexts, seed=st.integers(0, 99))
def test_completeness_every_honest_bit_proof_verifies(
    value: int, blinding: int, context: bytes, seed: int
) -> None:
    proof = prove_bit(value, blinding, context, _rng(seed).randbytes)
    assert len(proof) == BIT_PROOF_SIZE_BYTES
    assert verify_bit(commit(value, blinding), proof, context)


def test_no_proof_for_two_can_be_made_or_forged() -> None:
    rng = _rng(2).randbytes
    blinding = group.random_scalar(rng)
    two = commit(2, blinding)
    with pytest.raises(LocalProtocolError):
        prove_bit(2, blinding, CONTEXT, rng)
    # A real proof for 1 (or 0) with the same blinding does not carry over.
    for bit in (0, 1):
        verdict = verify_bit(two, prove_bit(bit, blinding, CONTEXT, rng), CONTEXT)
        assert not verdict and verdict.reason == "bit proof does not verify"
    # Simulating both branches: the challenges cannot sum to the hash.
    c0, c1, z0, z1 = (group.random_scalar(rng) for _ in range(4))
    forged = b"".join(_scalar(s) for s in (c0, c1, z0, z1))
    assert not verify_bit(two, forged, CONTEXT)


@FAST
@given(proof=st.binary(min_size=BIT_PROOF_SIZE_BYTES, max_size=BIT_PROOF_SIZE_BYTES))
def test_random_proofs_for_two_fail(proof: bytes) -> None:
    assert not verify_bit(commit(2, 5), proof, CONTEXT)


def test_a_proof_is_bound_to_its_commitment_voter_and_proposal() -> None:
    rng = _rng(3).randbytes
    proof = prove_bit(1, 99, CONTEXT, rng)
    assert verify_bit(commit(1, 99), proof, CONTEXT)
    assert not verify_bit(commit(1, 100), proof, CONTEXT)
    assert not verify_bit(commit(1, 99), proof, ballot_context("proposal-8", b"v" * 32))
    assert not verify_bit(commit(1, 99), proof, ballot_context("proposal-7", b"w" * 32))


def test_malformed_input_is_refused_with_a_reason() -> None:
    good = prove_bit(0, 7, CONTEXT, _rng(4).randbytes)
    commitment = commit(0, 7)
    cases = [
        (b"\xff" * 32, good, "commitment is not a Ristretto255 point"),
        (b"\x01" * 32, good, "commitment is not a Ristretto255 point"),
        ("text", good, "commitment is not a Ristretto255 point"),
        (None, good, "commitment is not a Ristretto255 point"),
        (commitment, good[:-1], "canonical scalars"),
        (commitment, good + b"\x00", "canonical scalars"),
        (commitment, None, "canonical scalars"),
        # a scalar at or above ℓ (non-canonical) is refused, not reduced
        (commitment, _scalar(group.GROUP_ORDER) + good[32:], "canonical scalars"),
    ]
    for c, p, reason in cases:
        verdict = verify_bit(c, p, CONTEXT)
        assert not verdict
        assert reason in verdict.reason


@FAST
@given(commitment=st.binary(max_size=40), proof=st.binary(max_size=140))
def test_arbitrary_bytes_never_crash(commitment: bytes, proof: bytes) -> None:
    assert not verify_bit(commitment, proof, CONTEXT)
    assert not verify_tally([commitment], 1, proof, CONTEXT)
    assert not verify_dleq(commitment, commitment, commitment, proof, CONTEXT)
    assert not verify_ed25519_key(commitment, proof, CONTEXT)


@FAST
@given(votes=st.lists(st.sampled_from([0, 1]), min_size=0, max_size=12), seed=st.integers(0, 99))
def test_tally_of_commitments_opens_to_the_sum_of_votes(votes: list[int], seed: int) -> None:
    rng = _rng(seed).randbytes
    blindings = [group.random_scalar(rng) for _ in votes]
    commitments = [commit(v, r) for v, r in zip(votes, blindings)]
    assert sum_points(commitments) == commit(sum(votes), sum(blindings))
    context = tally_context("p", len(votes))
    proof = prove_tally(commitments, sum(votes), sum(blindings), context, rng)
    assert verify_tally(commitments, sum(votes), proof, context)
    for wrong in {sum(votes) + 1, sum(votes) - 1} & set(range(len(votes) + 1)):
        assert not verify_tally(commitments, wrong, proof, context)
    assert not verify_tally(commitments, sum(votes), proof, tally_context("q", len(votes)))
    if votes:
        assert not verify_tally(commitments[1:], sum(votes), proof, context)


def test_a_false_tally_cannot_be_proven() -> None:
    commitments = [commit(1, 3), commit(0, 4)]
    with pytest.raises(LocalProtocolError):
        prove_tally(commitments, 2, 7, b"ctx")
    verdict = verify_tally(commitments, 3, bytes(64), b"ctx")
    assert not verdict and "must be in 0..2" in verdict.reason
    assert not verify_tally(commitments, True, bytes(64), b"ctx")


def test_dleq_proves_the_shared_point() -> None:
    rng = _rng(5).randbytes
    secret = group.random_scalar(rng)
    base = group.scalar_mult_base(group.random_scalar(rng))
    shared, proof = prove_dleq(secret, base, b"ctx", rng)
    public = group.scalar_mult_base(secret)
    assert verify_dleq(public, base, shared, proof, b"ctx")
    assert not verify_dleq(public, base, group.add(shared, group.GENERATOR), proof, b"ctx")
    assert not verify_dleq(public, base, shared, proof, b"other")


def _voter(i: int) -> bytes:
    return random.Random(1000 + i).randbytes(32)


def _entries(ballots: list[Ballot]) -> dict[bytes, tuple[bytes, bytes]]:
    return {b.voter: (b.commitment, b.sealed_opening) for b in ballots}


def _fault(verifier: VoteVerifier, b: Ballot) -> str | None:
    return verifier.ballot_fault(
        b.proposal_id, b.voter, b.commitment, b.proof, b.sealed_opening, b.signature
    )


def test_ballots_verify_and_the_tallier_opens_the_right_total() -> None:
    rng = _rng(6).randbytes
    tallier = Tallier.generate(rng)
    votes = [1, 0, 1, 1, 0, 1, 0]
    ballots = [cast_ballot("p", v, _voter(i), tallier.tally_key, rng) for i, v in enumerate(votes)]
    verifier = VoteVerifier()
    assert [_fault(verifier, b) for b in ballots] == [None] * len(votes)
    opening = tallier.open_tally("p", _entries(ballots), rng)
    assert opening.yes == sum(votes) and opening.spoiled == ()
    assert (
        verifier.tally_fault("p", tallier.tally_key, _entries(ballots), 4, opening.proof, [])
        is None
    )
    assert verifier.tally_fault("p", tallier.tally_key, _entries(ballots), 3, opening.proof, [])


def test_ballot_faults_are_named() -> None:
    rng = _rng(7).randbytes
    tallier = Tallier.generate(rng)
    verifier = VoteVerifier()
    ballot = cast_ballot("p", 1, _voter(0), tallier.tally_key, rng)
    other = cast_ballot("p", 1, _voter(1), tallier.tally_key, rng)
    assert verifier.ballot_fault("q", *_fields(ballot)[1:]) == "ballot signature does not verify"
    assert (
        verifier.ballot_fault("p", other.voter, *_fields(ballot)[2:])
        == "ballot signature does not verify"
    )
    assert verifier.ballot_fault("p", b"short", *_fields(ballot)[2:]) == (
        "voter is not an Ed25519 public key"
    )
    # Re-signed by the voter but with a proof made for another voter.
    key = nacl.signing.SigningKey(_voter(0))
    moved = _signed(key, "p", other.commitment, other.proof, ballot.sealed_opening)
    assert verifier.ballot_fault(*moved) == "bit proof does not verify"
    # Re-signed garbage: the signature is fine, the content is not.
    not_point = _signed(key, "p", b"\xff" * 32, ballot.proof, ballot.sealed_opening)
    assert verifier.ballot_fault(*not_point) == "commitment is not a Ristretto255 point"
    short_seal = _signed(key, "p", ballot.commitment, ballot.proof, b"x")
    assert "sealed opening is not" in (verifier.ballot_fault(*short_seal) or "")
    bad_seal = _signed(
        key, "p", ballot.commitment, ballot.proof, b"\xff" * SEALED_OPENING_SIZE_BYTES
    )
    assert "ephemeral key" in (verifier.ballot_fault(*bad_seal) or "")


def _fields(b: Ballot) -> tuple[str, bytes, bytes, bytes, bytes, bytes]:
    return (b.proposal_id, b.voter, b.commitment, b.proof, b.sealed_opening, b.signature)


def _signed(
    key: nacl.signing.SigningKey, proposal: str, commitment: bytes, proof: bytes, sealed: bytes
) -> tuple[str, bytes, bytes, bytes, bytes, bytes]:
    voter = bytes(key.verify_key)
    message = ballot_signing_bytes(proposal, voter, commitment, proof, sealed)
    return (proposal, voter, commitment, proof, sealed, bytes(key.sign(message).signature))


def test_a_garbage_seal_is_spoiled_with_proof_and_an_honest_one_cannot_be() -> None:
    rng = _rng(8).randbytes
    tallier = Tallier.generate(rng)
    verifier = VoteVerifier()
    honest = [
        cast_ballot("p", v, _voter(i), tallier.tally_key, rng) for i, v in enumerate([1, 1, 0])
    ]
    # A voter whose sealed opening says 0 although it committed to 1.
    key = nacl.signing.SigningKey(_voter(9))
    voter = bytes(key.verify_key)
    blinding = group.random_scalar(rng)
    context = ballot_context("p", voter)
    fields = _signed(
        key,
        "p",
        commit(1, blinding),
        prove_bit(1, blinding, context, rng),
        seal_opening(0, blinding, tallier.tally_key, context, rng),
    )
    assert verifier.ballot_fault(*fields) is None  # nobody but the tallier can tell
    cheat = Ballot(*fields)
    entries = _entries([*honest, cheat])
    opening = tallier.open_tally("p", entries, rng)
    assert opening.yes == 2
    assert [s.voter for s in opening.spoiled] == [voter]
    spoiled = [(s.voter, s.shared, s.proof) for s in opening.spoiled]
    assert verifier.tally_fault("p", tallier.tally_key, entries, 2, opening.proof, spoiled) is None
    # Without the exclusion the sum is not what was proven.
    assert verifier.tally_fault("p", tallier.tally_key, entries, 2, opening.proof, [])
    # The tallier cannot spoil an honest ballot, even with an honest DLEQ.
    target = honest[0]
    shared, dleq = prove_dleq(
        tallier._secret, target.sealed_opening[:32], ballot_context("p", target.voter), rng
    )
    fault = verifier.tally_fault(
        "p", tallier.tally_key, entries, 2, opening.proof, [*spoiled, (target.voter, shared, dleq)]
    )
    assert fault == "a ballot claimed spoiled opens correctly"
    # A forged shared point does not pass the DLEQ check.
    forged = [(voter, group.GENERATOR, spoiled[0][2])]
    assert "DLEQ proof does not verify" in (
        verifier.tally_fault("p", tallier.tally_key, entries, 2, opening.proof, forged) or ""
    )


@FAST
@given(seed=st.binary(min_size=32, max_size=32), context=contexts)
def test_ed25519_key_proof_is_complete(seed: bytes, context: bytes) -> None:
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    proof = prove_ed25519_key(seed, context)
    assert verify_ed25519_key(public, proof, context)
    assert prove_ed25519_key(seed, context) == proof  # deterministic nonce


def test_ed25519_key_proof_is_sound() -> None:
    seed, other = _voter(1), _voter(2)
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    other_public = bytes(nacl.signing.SigningKey(other).verify_key)
    proof = prove_ed25519_key(seed, b"cluster/n1")
    assert not verify_ed25519_key(public, proof, b"cluster/n2")
    assert not verify_ed25519_key(other_public, proof, b"cluster/n1")
    assert not verify_ed25519_key(public, prove_ed25519_key(other, b"cluster/n1"), b"cluster/n1")
    small_order = b"\x01" + bytes(31)  # the identity: order 1
    verdict = verify_ed25519_key(small_order, proof, b"cluster/n1")
    assert not verdict and "prime-order subgroup" in verdict.reason
    non_canonical = proof[:32] + _scalar(group.GROUP_ORDER + 1)
    assert "canonical" in verify_ed25519_key(public, non_canonical, b"cluster/n1").reason
    assert (
        "commitment" in verify_ed25519_key(public, small_order + proof[32:], b"cluster/n1").reason
    )
