"""Zero-knowledge proofs: private but verifiable yes/no votes, and proof of
knowledge of a node's Ed25519 secret key.

Theory of operation.

Group and generators. Everything happens in Ristretto255 (prime order ℓ,
``quorate.crypto.ristretto255``). G is the standard generator. The second
generator H is ``hash_to_point("quorate/zk/pedersen-generator-H/v1")``:
SHA-512 of a public string fed through the RFC 9496 one-way map (two
Elligator 2 maps added). Nobody chose a scalar for H, so nobody knows
log_G(H); anyone can recompute H and check it (``PEDERSEN_H``).

Pedersen commitment to a vote v with blinding r: C = v·G + r·H. It is
perfectly hiding (for any v' there is an r' with the same C, so C says
nothing about v) and computationally binding (two openings of one C give
log_G(H)). Commitments add: Σ C_i = (Σ v_i)·G + (Σ r_i)·H, so the product of
the ballots (written additively here) commits to the tally.

Ballot validity (a disjunctive proof; Cramer–Damgård–Schoenmakers 1994 over
Chaum–Pedersen/Schnorr sigma protocols). The voter shows it knows r with
C = r·H (v = 0) *or* C − G = r·H (v = 1) without saying which: it runs the
real Schnorr protocol for its branch and simulates the other with a
challenge it picks itself; the Fiat–Shamir challenge c = Hash(G, H, C, A_0,
A_1, proposal, voter) must equal c_0 + c_1, so it can fake only one branch.
A commitment to 2 (or anything else) has no true branch and no proof. The
hash binds the statement (both generators and C), the proposal id and the
voter's key, so a proof cannot be moved to another commitment, proposal or
voter. Encoding: c_0 ‖ c_1 ‖ z_0 ‖ z_1 (128 bytes); the verifier recomputes
A_b = z_b·H − c_b·T_b with T_0 = C and T_1 = C − G.

Tally. At the deadline the tallier knows Y = Σ v_i and R = Σ r_i and proves
knowledge of R with Σ C_i − Y·G = R·H (a Schnorr proof, c ‖ z, bound to the
proposal and the ballot count). By binding, that proves the count is Y; R
itself stays secret and no single v_i is ever revealed.

How the tallier learns the openings. Each ballot carries its opening (v, r)
sealed to the tallier's key P = x·G: E = e·G, S = e·P, and the 33 bytes
v ‖ r are XORed with SHA-512(E, S, proposal, voter). The tallier computes
S = x·E. A voter that seals garbage cannot block the tally: the tallier
marks its ballot spoiled by publishing S with a Chaum–Pedersen proof that
log_G(P) = log_E(S); anyone then decrypts and sees the plaintext does not
open C, and the tally leaves that ballot out. An honest voter's ballot can
never be spoiled (its plaintext opens C, so the claim is refused).
Trust: the tallier sees the individual votes (it has to, to open the sum);
everyone else, replicas included, learns only the total. A wrong total, a
forged exclusion or a proof for another proposal is rejected by everyone.

Node keys. ``prove_ed25519_key`` is a Schnorr proof of knowledge of the
secret scalar a behind an Ed25519 public key A = a·B (RFC 8032 §5.1.5),
bound to a context (cluster, node), for admission: s·B = R + c·A with
c = Hash(A, R, context). Its nonce is derived from the secret and the
context, as EdDSA's is, so proving is deterministic.

Every ``verify_*`` / ``*_fault`` function returns a reason on bad input —
malformed encodings, points not in the group, non-canonical scalars, wrong
statements — and never raises on peer input.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.signing

from quorate.crypto.ristretto255 import (
    GENERATOR,
    GROUP_ORDER,
    IDENTITY,
    POINT_SIZE_BYTES,
    SCALAR_SIZE_BYTES,
    add,
    decode,
    hash_to_point,
    hash_to_scalar,
    random_scalar,
    scalar_mult,
    scalar_mult_base,
    sub,
)
from quorate.errors import ConfigError, LocalProtocolError

RandomBytes = Callable[[int], bytes]
"""A source of randomness: ``n -> n random bytes`` (``secrets.token_bytes``)."""

PEDERSEN_H = hash_to_point(b"quorate/zk/pedersen-generator-H/v1")
"""H, the second Pedersen generator; log_G(H) is unknown (see the docstring)."""

BIT_PROOF_SIZE_BYTES = 4 * SCALAR_SIZE_BYTES
TALLY_PROOF_SIZE_BYTES = 2 * SCALAR_SIZE_BYTES
DLEQ_PROOF_SIZE_BYTES = 2 * SCALAR_SIZE_BYTES
KEY_PROOF_SIZE_BYTES = 2 * SCALAR_SIZE_BYTES
_SEALED_PLAINTEXT_SIZE_BYTES = 1 + SCALAR_SIZE_BYTES
SEALED_OPENING_SIZE_BYTES = POINT_SIZE_BYTES + _SEALED_PLAINTEXT_SIZE_BYTES
ED25519_KEY_SIZE_BYTES = 32
ED25519_SIGNATURE_SIZE_BYTES = 64

_BIT_DOMAIN = b"quorate/zk/bit-proof/v1"
_TALLY_DOMAIN = b"quorate/zk/tally-proof/v1"
_DLEQ_DOMAIN = b"quorate/zk/dleq-proof/v1"
_SEAL_DOMAIN = b"quorate/zk/sealed-opening/v1"
_BALLOT_DOMAIN = b"quorate/zk/ballot/v1"
_KEY_CHALLENGE_DOMAIN = b"quorate/zk/ed25519-key-proof/v1"
_KEY_NONCE_DOMAIN = b"quorate/zk/ed25519-key-nonce/v1"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check: truthy when it passed, else ``reason`` says why."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


VALID = Verdict(True)


def _refuse(reason: str) -> Verdict:
    return Verdict(False, reason)


def _scalar_bytes(scalar: int) -> bytes:
    return (scalar % GROUP_ORDER).to_bytes(SCALAR_SIZE_BYTES, "little")


def _decode_scalars(data: object, count: int) -> list[int] | None:
    """``count`` canonical (< ℓ) little-endian scalars, or None."""
    if not isinstance(data, bytes) or len(data) != count * SCALAR_SIZE_BYTES:
        return None
    scalars = [
        int.from_bytes(data[i * SCALAR_SIZE_BYTES : (i + 1) * SCALAR_SIZE_BYTES], "little")
        for i in range(count)
    ]
    if any(s >= GROUP_ORDER for s in scalars):
        return None
    return scalars


# -- Pedersen commitments ----------------------------------------------------
def commit(value: int, blinding: int) -> bytes:
    """C = value·G + blinding·H."""
    return add(scalar_mult_base(value), scalar_mult(blinding, PEDERSEN_H))


def sum_points(points: Sequence[bytes]) -> bytes:
    """Σ points (the identity for none): the homomorphic tally of commitments."""
    total = IDENTITY
    for point in points:
        total = add(total, point)
    return total


def ballot_context(proposal_id: str, voter: bytes) -> bytes:
    """What a ballot's proofs are bound to: the proposal and the voter's key."""
    return _frame(_BALLOT_DOMAIN, proposal_id.encode(), voter)


def _frame(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


# -- the 0-or-1 proof ----------------------------------------------------------
def _bit_challenge(commitment: bytes, a0: bytes, a1: bytes, context: bytes) -> int:
    return hash_to_scalar(_BIT_DOMAIN, GENERATOR, PEDERSEN_H, commitment, a0, a1, context)


def prove_bit(
    value: int, blinding: int, context: bytes, random_bytes: RandomBytes = secrets.token_bytes
) -> bytes:
    """A proof that ``commit(value, blinding)`` opens to 0 or 1, bound to ``context``.

    Raises ``LocalProtocolError`` for a value other than 0 or 1: there is no
    such proof to make.
    """
    if value not in (0, 1):
        raise LocalProtocolError(f"a bit proof needs a value of 0 or 1, got {value}")
    commitment = commit(value, blinding)
    targets = (commitment, sub(commitment, GENERATOR))
    other = 1 - value
    challenges = [0, 0]
    responses = [0, 0]
    announcements = [IDENTITY, IDENTITY]
    # The branch we cannot prove is simulated: pick its challenge and
    # response first and solve for the announcement.
    challenges[other] = random_scalar(random_bytes)
    responses[other] = random_scalar(random_bytes)
    announcements[other] = sub(
        scalar_mult(responses[other], PEDERSEN_H), scalar_mult(challenges[other], targets[other])
    )
    nonce = random_scalar(random_bytes)
    announcements[value] = scalar_mult(nonce, PEDERSEN_H)
    c = _bit_challenge(commitment, announcements[0], announcements[1], context)
    challenges[value] = (c - challenges[other]) % GROUP_ORDER
    responses[value] = (nonce + challenges[value] * blinding) % GROUP_ORDER
    return b"".join(_scalar_bytes(s) for s in (*challenges, *responses))


def verify_bit(commitment: object, proof: object, context: bytes) -> Verdict:
    """Does ``proof`` show that ``commitment`` opens to 0 or 1 (for ``context``)?"""
    point = decode(commitment)
    if point is None:
        return _refuse("commitment is not a Ristretto255 point")
    scalars = _decode_scalars(proof, 4)
    if scalars is None:
        return _refuse(f"bit proof is not {BIT_PROOF_SIZE_BYTES} bytes of canonical scalars")
    c0, c1, z0, z1 = scalars
    a0 = sub(scalar_mult(z0, PEDERSEN_H), scalar_mult(c0, point))
    a1 = sub(scalar_mult(z1, PEDERSEN_H), scalar_mult(c1, sub(point, GENERATOR)))
    if (c0 + c1) % GROUP_ORDER != _bit_challenge(point, a0, a1, context):
        return _refuse("bit proof does not verify")
    return VALID


# -- the tally ---------------------------------------------------------------
def _tally_challenge(total: bytes, yes: int, announcement: bytes, context: bytes) -> int:
    return hash_to_scalar(
        _TALLY_DOMAIN, GENERATOR, PEDERSEN_H, total, yes.to_bytes(8, "big"), announcement, context
    )


def tally_context(proposal_id: str, ballots: int) -> bytes:
    """What a tally proof is bound to: the proposal and how many ballots it sums."""
    return _frame(_TALLY_DOMAIN, proposal_id.encode(), ballots.to_bytes(8, "big"))


def prove_tally(
    commitments: Sequence[bytes],
    yes: int,
    blinding_sum: int,
    context: bytes,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> bytes:
    """A proof that Σ ``commitments`` opens to ``yes`` (its blinding is ``blinding_sum``)."""
    total = sum_points(commitments)
    if sub(total, scalar_mult_base(yes)) != scalar_mult(blinding_sum, PEDERSEN_H):
        raise LocalProtocolError("these openings do not open the sum of these commitments")
    nonce = random_scalar(random_bytes)
    announcement = scalar_mult(nonce, PEDERSEN_H)
    c = _tally_challenge(total, yes, announcement, context)
    return _scalar_bytes(c) + _scalar_bytes(nonce + c * blinding_sum)


def verify_tally(commitments: Sequence[bytes], yes: object, proof: object, context: bytes) -> Verdict:
    """Does ``proof`` show that Σ ``commitments`` commits to ``yes``?"""
    if not isinstance(yes, int) or isinstance(yes, bool) or not 0 <= yes <= len(commitments):
        return _refuse(f"a tally of {len(commitments)} ballots must be in 0..{len(commitments)}")
    points = [decode(c) for c in commitments]
    if any(p is None for p in points):
        return _refuse("a commitment is not a Ristretto255 point")
    scalars = _decode_scalars(proof, 2)
    if scalars is None:
        return _refuse(f"tally proof is not {TALLY_PROOF_SIZE_BYTES} bytes of canonical scalars")
    c, z = scalars
    total = sum_points([p for p in points if p is not None])
    statement = sub(total, scalar_mult_base(yes))
    announcement = sub(scalar_mult(z, PEDERSEN_H), scalar_mult(c, statement))
    if c != _tally_challenge(total, yes, announcement, context):
        return _refuse("tally proof does not verify")
    return VALID


# -- equality of discrete logs (Chaum–Pedersen) ------------------------------
def _dleq_challenge(
    public: bytes, base: bytes, result: bytes, a1: bytes, a2: bytes, context: bytes
) -> int:
    return hash_to_scalar(_DLEQ_DOMAIN, GENERATOR, public, base, result, a1, a2, context)


def prove_dleq(
    secret: int, base: bytes, context: bytes, random_bytes: RandomBytes = secrets.token_bytes
) -> tuple[bytes, bytes]:
    """``(secret·base, proof)``: a Chaum–Pedersen proof that log_base of the
    result equals log_G of ``secret·G``, bound to ``context``."""
    public = scalar_mult_base(secret)
    result = scalar_mult(secret, base)
    nonce = random_scalar(random_bytes)
    c = _dleq_challenge(
        public, base, result, scalar_mult_base(nonce), scalar_mult(nonce, base), context
    )
    return result, _scalar_bytes(c) + _scalar_bytes(nonce + c * secret)


def verify_dleq(
    public: object, base: object, result: object, proof: object, context: bytes
) -> Verdict:
    """Does ``proof`` show log_G(public) = log_base(result)?"""
    points = [decode(p) for p in (public, base, result)]
    if any(p is None for p in points):
        return _refuse("a DLEQ point is not a Ristretto255 point")
    p_key, p_base, p_result = (p for p in points if p is not None)
    scalars = _decode_scalars(proof, 2)
    if scalars is None:
        return _refuse(f"DLEQ proof is not {DLEQ_PROOF_SIZE_BYTES} bytes of canonical scalars")
    c, z = scalars
    a1 = sub(scalar_mult_base(z), scalar_mult(c, p_key))
    a2 = sub(scalar_mult(z, p_base), scalar_mult(c, p_result))
    if c != _dleq_challenge(p_key, p_base, p_result, a1, a2, context):
        return _refuse("DLEQ proof does not verify")
    return VALID


# -- openings sealed to the tallier ---------------------------------------------
def _pad(ephemeral: bytes, shared: bytes, context: bytes) -> bytes:
    return hashlib.sha512(_frame(_SEAL_DOMAIN, ephemeral, shared, context)).digest()[
        :_SEALED_PLAINTEXT_SIZE_BYTES
    ]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def seal_opening(
    value: int,
    blinding: int,
    tally_key: bytes,
    context: bytes,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> bytes:
    """E ‖ (value ‖ blinding) ⊕ pad, readable only with the tally secret."""
    if decode(tally_key) is None or tally_key == IDENTITY:
        raise ConfigError("the tally key is not a Ristretto255 point")
    ephemeral = random_scalar(random_bytes)
    e_point = scalar_mult_base(ephemeral)
    shared = scalar_mult(ephemeral, tally_key)
    plaintext = bytes([value]) + _scalar_bytes(blinding)
    return e_point + _xor(plaintext, _pad(e_point, shared, context))


def unseal_with(sealed: bytes, shared: bytes, context: bytes) -> tuple[int, int] | None:
    """The ``(value, blinding)`` in ``sealed`` given the shared point, or None
    if the plaintext is not a vote and a canonical scalar."""
    if not isinstance(sealed, bytes) or len(sealed) != SEALED_OPENING_SIZE_BYTES:
        return None
    plaintext = _xor(sealed[POINT_SIZE_BYTES:], _pad(sealed[:POINT_SIZE_BYTES], shared, context))
    blinding = int.from_bytes(plaintext[1:], "little")
    if plaintext[0] not in (0, 1) or blinding >= GROUP_ORDER:
        return None
    return plaintext[0], blinding


def _opens(commitment: bytes, opening: tuple[int, int] | None) -> bool:
    return opening is not None and commit(*opening) == commitment


# -- ballots ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ballot:
    """What a voter publishes: nothing in it reveals the vote to anyone but
    the tallier (``sealed_opening``). ``voter`` is its Ed25519 public key."""

    proposal_id: str
    voter: bytes
    commitment: bytes
    proof: bytes
    sealed_opening: bytes
    signature: bytes


def ballot_signing_bytes(
    proposal_id: str, voter: bytes, commitment: bytes, proof: bytes, sealed_opening: bytes
) -> bytes:
    """The bytes a voter signs: every field of its ballot."""
    return _frame(_BALLOT_DOMAIN, proposal_id.encode(), voter, commitment, proof, sealed_opening)


def cast_ballot(
    proposal_id: str,
    vote: int,
    signing_key: bytes,
    tally_key: bytes,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> Ballot:
    """A signed ballot for ``vote`` (0 or 1) by the holder of the Ed25519
    ``signing_key`` (32-byte seed), its opening sealed to ``tally_key``."""
    if vote not in (0, 1):
        raise LocalProtocolError(f"a vote is 0 or 1, got {vote}")
    key = nacl.signing.SigningKey(signing_key)
    voter = bytes(key.verify_key)
    blinding = random_scalar(random_bytes)
    context = ballot_context(proposal_id, voter)
    commitment = commit(vote, blinding)
    proof = prove_bit(vote, blinding, context, random_bytes)
    sealed = seal_opening(vote, blinding, tally_key, context, random_bytes)
    signature = key.sign(
        ballot_signing_bytes(proposal_id, voter, commitment, proof, sealed)
    ).signature
    return Ballot(proposal_id, voter, commitment, proof, sealed, bytes(signature))


def _signature_ok(voter: bytes, message: bytes, signature: object) -> bool:
    if not isinstance(signature, bytes) or len(signature) != ED25519_SIGNATURE_SIZE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(voter).verify(message, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class SpoiledBallot:
    """The tallier's claim that ``voter``'s sealed opening does not open its
    commitment: the shared point and a proof it was computed honestly."""

    voter: bytes
    shared: bytes
    proof: bytes


@dataclass(frozen=True, slots=True)
class TallyOpening:
    """The tally of the ballots not spoiled, and the proof that it is right."""

    yes: int
    proof: bytes
    spoiled: tuple[SpoiledBallot, ...]

    @property
    def spoiled_fields(self) -> tuple[tuple[bytes, bytes, bytes], ...]:
        """``spoiled`` as (voter, shared point, proof) triples, as a tally command carries them."""
        return tuple((s.voter, s.shared, s.proof) for s in self.spoiled)


class Tallier:
    """Holds a tally secret x; publishes P = x·G; opens tallies."""

    __slots__ = ("_secret", "tally_key")

    def __init__(self, secret: int) -> None:
        if not 0 < secret < GROUP_ORDER:
            raise ConfigError("a tally secret is a scalar in 1..ℓ-1")
        self._secret = secret
        self.tally_key = scalar_mult_base(secret)

    @classmethod
    def generate(cls, random_bytes: RandomBytes = secrets.token_bytes) -> Tallier:
        return cls(random_scalar(random_bytes))

    def unseal(self, proposal_id: str, voter: bytes, sealed: bytes) -> tuple[int, int] | None:
        """The (vote, blinding) sealed in ``voter``'s ballot, or None if the
        seal holds no vote. Only the tallier can do this."""
        ephemeral = decode(sealed[:POINT_SIZE_BYTES]) if isinstance(sealed, bytes) else None
        if ephemeral is None:
            return None
        shared = scalar_mult(self._secret, ephemeral)
        return unseal_with(sealed, shared, ballot_context(proposal_id, voter))

    def open_tally(
        self,
        proposal_id: str,
        ballots: Mapping[bytes, tuple[bytes, bytes]],
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> TallyOpening:
        """Open the sum of ``ballots`` (voter -> (commitment, sealed opening)).

        Ballots whose sealed opening does not open their commitment are
        spoiled, with a proof; the rest are summed and the sum is proven.
        """
        counted: list[bytes] = []
        spoiled: list[SpoiledBallot] = []
        yes = 0
        blinding_sum = 0
        for voter in sorted(ballots):
            commitment, sealed = ballots[voter]
            context = ballot_context(proposal_id, voter)
            ephemeral = decode(sealed[:POINT_SIZE_BYTES])
            if ephemeral is None:
                raise LocalProtocolError("a ballot with a malformed sealed opening was accepted")
            opening = self.unseal(proposal_id, voter, sealed)
            if opening is not None and commit(*opening) == commitment:
                counted.append(commitment)
                yes += opening[0]
                blinding_sum = (blinding_sum + opening[1]) % GROUP_ORDER
                continue
            shared, proof = prove_dleq(self._secret, ephemeral, context, random_bytes)
            spoiled.append(SpoiledBallot(voter, shared, proof))
        proof = prove_tally(
            counted, yes, blinding_sum, tally_context(proposal_id, len(counted)), random_bytes
        )
        return TallyOpening(yes, proof, tuple(spoiled))


class VoteVerifier:
    """Checks ballots and tally openings for the private-vote state machine.

    Every method returns None when the input is good and a reason otherwise;
    none raises on peer input.
    """

    def ballot_fault(
        self,
        proposal_id: str,
        voter: bytes,
        commitment: bytes,
        proof: bytes,
        sealed_opening: bytes,
        signature: bytes,
    ) -> str | None:
        if not isinstance(voter, bytes) or len(voter) != ED25519_KEY_SIZE_BYTES:
            return "voter is not an Ed25519 public key"
        message = ballot_signing_bytes(proposal_id, voter, commitment, proof, sealed_opening)
        if not _signature_ok(voter, message, signature):
            return "ballot signature does not verify"
        if not isinstance(sealed_opening, bytes) or len(sealed_opening) != SEALED_OPENING_SIZE_BYTES:
            return f"sealed opening is not {SEALED_OPENING_SIZE_BYTES} bytes"
        if decode(sealed_opening[:POINT_SIZE_BYTES]) is None:
            return "sealed opening's ephemeral key is not a Ristretto255 point"
        verdict = verify_bit(commitment, proof, ballot_context(proposal_id, voter))
        return None if verdict else verdict.reason

    def tally_key_fault(self, tally_key: bytes) -> str | None:
        if decode(tally_key) is None or tally_key == IDENTITY:
            return "tally key is not a Ristretto255 point"
        return None

    def tally_fault(
        self,
        proposal_id: str,
        tally_key: bytes,
        ballots: Mapping[bytes, tuple[bytes, bytes]],
        yes: int,
        proof: bytes,
        spoiled: Sequence[tuple[bytes, bytes, bytes]],
    ) -> str | None:
        """Check a tally opening over ``ballots`` (voter -> (commitment, sealed)),
        with ``spoiled`` as (voter, shared point, DLEQ proof)."""
        left_out: set[bytes] = set()
        for voter, shared, dleq in spoiled:
            entry = ballots.get(voter)
            if entry is None:
                return "a spoiled ballot names no accepted ballot"
            if voter in left_out:
                return "a ballot is spoiled twice"
            commitment, sealed = entry
            context = ballot_context(proposal_id, voter)
            verdict = verify_dleq(tally_key, sealed[:POINT_SIZE_BYTES], shared, dleq, context)
            if not verdict:
                return f"spoiled ballot: {verdict.reason}"
            if isinstance(shared, bytes) and _opens(commitment, unseal_with(sealed, shared, context)):
                return "a ballot claimed spoiled opens correctly"
            left_out.add(voter)
        counted = [ballots[v][0] for v in sorted(ballots) if v not in left_out]
        verdict = verify_tally(counted, yes, proof, tally_context(proposal_id, len(counted)))
        return None if verdict else verdict.reason


# -- Schnorr proof of knowledge of an Ed25519 secret key -------------------------------
def _ed25519_secret(signing_key: bytes) -> tuple[int, bytes]:
    """(secret scalar a mod ℓ, nonce prefix) of an RFC 8032 seed."""
    digest = hashlib.sha512(signing_key).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8  # clamp: clear the 3 low bits and bit 255 ...
    scalar |= 1 << 254  # ... and set bit 254
    return scalar % GROUP_ORDER, digest[32:]


def _key_challenge(public_key: bytes, commitment: bytes, context: bytes) -> int:
    return hash_to_scalar(_KEY_CHALLENGE_DOMAIN, public_key, commitment, context)


def prove_ed25519_key(signing_key: bytes, context: bytes) -> bytes:
    """R ‖ s: proof of knowledge of the secret behind ``signing_key``'s
    public key, bound to ``context`` (e.g. cluster and node id)."""
    if not isinstance(signing_key, bytes) or len(signing_key) != ED25519_KEY_SIZE_BYTES:
        raise ConfigError(f"an Ed25519 signing key (seed) is {ED25519_KEY_SIZE_BYTES} bytes")
    secret, prefix = _ed25519_secret(signing_key)
    public_key = bytes(nacl.signing.SigningKey(signing_key).verify_key)
    nonce = hash_to_scalar(_KEY_NONCE_DOMAIN, prefix, public_key, context) or 1
    commitment = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(_scalar_bytes(nonce))
    c = _key_challenge(public_key, commitment, context)
    return commitment + _scalar_bytes(nonce + c * secret)


def verify_ed25519_key(public_key: object, proof: object, context: bytes) -> Verdict:
    """Does ``proof`` show knowledge of the secret key of ``public_key``?"""
    if not isinstance(public_key, bytes) or len(public_key) != ED25519_KEY_SIZE_BYTES:
        return _refuse("public key is not 32 bytes")
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(public_key):
        return _refuse("public key is not a point of the Ed25519 prime-order subgroup")
    if not isinstance(proof, bytes) or len(proof) != KEY_PROOF_SIZE_BYTES:
        return _refuse(f"key proof is not {KEY_PROOF_SIZE_BYTES} bytes")
    commitment = proof[:ED25519_KEY_SIZE_BYTES]
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(commitment):
        return _refuse("key proof's commitment is not a point of the prime-order subgroup")
    scalars = _decode_scalars(proof[ED25519_KEY_SIZE_BYTES:], 1)
    if scalars is None or scalars[0] == 0:
        return _refuse("key proof's response is not a canonical non-zero scalar")
    c = _key_challenge(public_key, commitment, context)
    try:
        left = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(_scalar_bytes(scalars[0]))
        right = nacl.bindings.crypto_core_ed25519_add(
            commitment, nacl.bindings.crypto_scalarmult_ed25519_noclamp(_scalar_bytes(c), public_key)
        )
    except (nacl.exceptions.CryptoError, RuntimeError, ValueError, TypeError):
        return _refuse("key proof does not verify")
    if left != right:
        return _refuse("key proof does not verify")
    return VALID
