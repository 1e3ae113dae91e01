"""Schnorr proofs of possession, and the rogue-key attack they stop."""

from __future__ import annotations

import pytest
from blspy import G1Element, PopSchemeMPL

from quorate.crypto.bls import BlsSigner, BlsVerifier, aggregate, bls_keypair_from_seed
from quorate.crypto.bls12381 import GROUP_ORDER, decode_g1, g1_mul_generator, private_key
from quorate.crypto.pop import (
    PROOF_SIZE_BYTES,
    BlsKeyRegistry,
    prove_possession,
    registration_context,
    verify_possession,
)
from quorate.errors import ConfigError
from quorate.ids import NodeId

VICTIM, ROGUE = NodeId(1), NodeId(2)
VICTIM_KEYS = bls_keypair_from_seed(b"victim")
CLUSTER = b"cluster-7"
MESSAGE = b"commit block 0xdead at height 9"


def _rogue_key() -> tuple[int, bytes]:
    """x and pk_rogue = g1^x − pk_victim: the attacker knows x, not log(pk_rogue)."""
    x = 0x1234567890ABCDEF % GROUP_ORDER
    victim_point = decode_g1(VICTIM_KEYS.public_key)
    assert victim_point is not None
    return x, bytes(g1_mul_generator(x) + victim_point.negate())


def test_honest_proof_round_trip() -> None:
    context = registration_context(CLUSTER, VICTIM)
    proof = prove_possession(VICTIM_KEYS.secret_key, context)
    assert len(proof) == PROOF_SIZE_BYTES
    assert proof == prove_possession(VICTIM_KEYS.secret_key, context)  # deterministic
    assert verify_possession(VICTIM_KEYS.public_key, proof, context)


def test_proof_is_bound_to_key_and_context() -> None:
    context = registration_context(CLUSTER, VICTIM)
    proof = prove_possession(VICTIM_KEYS.secret_key, context)
    other = bls_keypair_from_seed(b"other")
    assert not verify_possession(other.public_key, proof, context)
    assert not verify_possession(VICTIM_KEYS.public_key, proof, registration_context(CLUSTER, ROGUE))
    assert not verify_possession(VICTIM_KEYS.public_key, proof, registration_context(b"c2", VICTIM))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p[:-1],
        lambda p: p + b"\x00",
        lambda p: b"\x00" * len(p),
        lambda p: p[:48] + (GROUP_ORDER + 1).to_bytes(32, "big"),
        lambda p: p[:47] + bytes([p[47] ^ 1]) + p[48:],
        lambda p: p[:-1] + bytes([p[-1] ^ 1]),
        lambda p: "text",
    ],
)
def test_mangled_proofs_are_false_never_raise(mangle: object) -> None:
    context = registration_context(CLUSTER, VICTIM)
    proof = prove_possession(VICTIM_KEYS.secret_key, context)
    assert verify_possession(VICTIM_KEYS.public_key, mangle(proof), context) is False  # type: ignore[operator]


def test_identity_and_garbage_public_keys_are_refused() -> None:
    context = b"c"
    zero_proof = prove_possession(bytes(32), context)  # the secret 0 has public key "identity"
    assert not verify_possession(bytes(G1Element()), zero_proof, context)
    assert not verify_possession(b"\x00" * 48, zero_proof, context)
    with pytest.raises(ConfigError):
        prove_possession(b"short", context)


def test_rogue_key_forges_an_aggregate_without_pop() -> None:
    """Without proofs of possession the attack works (Boneh–Drijvers–Neven §1)."""
    x, rogue_public = _rogue_key()
    naive = BlsVerifier({VICTIM: VICTIM_KEYS.public_key, ROGUE: rogue_public})
    forged = bytes(PopSchemeMPL.sign(private_key(x), MESSAGE))  # made by the attacker alone
    bitmap = 1 << VICTIM | 1 << ROGUE
    assert naive.verify_aggregate(bitmap, MESSAGE, forged)  # "the victim signed": a forgery


def test_registry_refuses_the_rogue_key() -> None:
    x, rogue_public = _rogue_key()
    registry = BlsKeyRegistry(CLUSTER)
    victim_proof = prove_possession(VICTIM_KEYS.secret_key, registry.context(VICTIM))
    assert registry.register(VICTIM, VICTIM_KEYS.public_key, victim_proof)
    # Every proof the attacker can make fails: with x (the log of pk_rogue + pk_victim),
    # a proof copied from the victim, or the rogue's own honest key's proof.
    attempts = [
        prove_possession(bytes(private_key(x)), registry.context(ROGUE)),
        victim_proof,
        prove_possession(bls_keypair_from_seed(b"rogue").secret_key, registry.context(ROGUE)),
        b"",
    ]
    for proof in attempts:
        assert not registry.register(ROGUE, rogue_public, proof)
    assert dict(registry.public_keys) == {VICTIM: VICTIM_KEYS.public_key}
    # And the verifier built from the registry does not know the rogue at all.
    forged = bytes(PopSchemeMPL.sign(private_key(x), MESSAGE))
    assert not registry.verifier().verify_aggregate(1 << VICTIM | 1 << ROGUE, MESSAGE, forged)


def test_registry_admits_honest_keys_for_aggregation() -> None:
    registry = BlsKeyRegistry(CLUSTER)
    signers = {}
    for node in (NodeId(0), NodeId(1), NodeId(2)):
        pair = bls_keypair_from_seed(b"honest" + bytes([node]))
        assert registry.register(node, pair.public_key, prove_possession(pair.secret_key, registry.context(node)))
        signers[node] = BlsSigner(node, pair.secret_key)
    bitmap, signature = aggregate({n: s.sign(MESSAGE) for n, s in signers.items()})
    assert registry.verifier().verify_aggregate(bitmap, MESSAGE, signature)
    # Re-registering the same key is idempotent; replacing it is refused.
    pair = bls_keypair_from_seed(b"honest" + bytes([0]))
    assert registry.register(NodeId(0), pair.public_key, prove_possession(pair.secret_key, registry.context(NodeId(0))))
    newcomer = bls_keypair_from_seed(b"replacement")
    proof = prove_possession(newcomer.secret_key, registry.context(NodeId(0)))
    assert not registry.register(NodeId(0), newcomer.public_key, proof)
