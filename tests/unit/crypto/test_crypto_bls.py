"""BLS PoP-scheme signatures, quorum-certificate aggregation and its fallback,
and the group arithmetic they rest on."""

from __future__ import annotations

import random

import pytest
from blspy import G1Element, G2Element, PopSchemeMPL

from quorate.crypto.bls import (
    BlsSigner,
    BlsVerifier,
    aggregate,
    bitmap_nodes,
    bls_cluster_keys,
    bls_generate,
    bls_keypair_from_seed,
)
from quorate.crypto.bls12381 import (
    GROUP_ORDER,
    g1_identity,
    g1_mul_generator,
    g2_identity,
    hash_to_scalar,
    lagrange_at_zero,
    multi_scalar_mult,
    private_key,
    scalar_mult,
    small_scalar_mult,
)
from quorate.errors import ConfigError, RemoteProtocolError
from quorate.ids import NodeId

NODES = [NodeId(i) for i in range(7)]
KEYS = bls_cluster_keys(b"bls test cluster", NODES)
SIGNERS = {n: BlsSigner(n, k.secret_key) for n, k in KEYS.items()}
VERIFIER = BlsVerifier({n: k.public_key for n, k in KEYS.items()})
MESSAGE = b"vote: block 0xabc at view 3"


def test_group_order_is_the_order_of_g1() -> None:
    assert scalar_mult(G1Element.generator(), GROUP_ORDER, g1_identity()) == G1Element()
    assert scalar_mult(G1Element.generator(), GROUP_ORDER - 1, g1_identity()) == (
        G1Element.generator().negate()
    )


def test_scalar_mult_matches_blspy_fixed_base_and_signing() -> None:
    rng = random.Random(7)
    for _ in range(3):
        k = rng.randrange(GROUP_ORDER)
        assert scalar_mult(G1Element.generator(), k, g1_identity()) == g1_mul_generator(k)
        hashed = PopSchemeMPL.g2_from_message(b"m")
        assert scalar_mult(hashed, k, g2_identity()) == PopSchemeMPL.sign(private_key(k), b"m")
    assert small_scalar_mult(G1Element.generator(), 0, g1_identity()) == G1Element()
    assert small_scalar_mult(G1Element.generator(), 29, g1_identity()) == g1_mul_generator(29)


def test_multi_scalar_mult_is_the_sum_of_products() -> None:
    rng = random.Random(8)
    points = [g1_mul_generator(rng.randrange(GROUP_ORDER)) for _ in range(5)]
    scalars = [rng.randrange(GROUP_ORDER) for _ in range(5)]
    expected = G1Element()
    for p, s in zip(points, scalars):
        expected = expected + scalar_mult(p, s, g1_identity())
    assert multi_scalar_mult(points, scalars, g1_identity()) == expected
    with pytest.raises(ValueError):
        multi_scalar_mult(points, scalars[:-1], g1_identity())


def test_lagrange_interpolates_a_polynomial_at_zero() -> None:
    rng = random.Random(9)
    coefficients = [rng.randrange(GROUP_ORDER) for _ in range(4)]

    def f(x: int) -> int:
        return sum(a * x**j for j, a in enumerate(coefficients)) % GROUP_ORDER

    indices = [2, 5, 6, 11]
    lambdas = lagrange_at_zero(indices)
    assert sum(lam * f(i) for lam, i in zip(lambdas, indices)) % GROUP_ORDER == coefficients[0]
    with pytest.raises(ValueError):
        lagrange_at_zero([1, 1])
    with pytest.raises(ValueError):
        lagrange_at_zero([0, 1])


def test_hash_to_scalar_separates_domains_and_framing() -> None:
    assert hash_to_scalar(b"d", b"ab", b"c") != hash_to_scalar(b"d", b"a", b"bc")
    assert hash_to_scalar(b"d", b"x") != hash_to_scalar(b"e", b"x")
    assert 0 <= hash_to_scalar(b"d", b"x") < GROUP_ORDER


def test_keys_are_deterministic_from_seed() -> None:
    assert bls_keypair_from_seed(b"s") == bls_keypair_from_seed(b"s")
    assert bls_keypair_from_seed(b"s") != bls_keypair_from_seed(b"t")
    assert len(bls_generate().public_key) == 48


def test_sign_verify_round_trip_and_rejections() -> None:
    signature = SIGNERS[NodeId(0)].sign(MESSAGE)
    assert len(signature) == 96
    assert VERIFIER.verify(NodeId(0), MESSAGE, signature)
    assert not VERIFIER.verify(NodeId(1), MESSAGE, signature)
    assert not VERIFIER.verify(NodeId(0), MESSAGE + b"!", signature)
    assert not VERIFIER.verify(NodeId(42), MESSAGE, signature)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x00" * 96, b"\xff" * 96, b"\xc0" + b"\x00" * 95, b"\x01" * 95, "x", None],
)
def test_garbage_signatures_are_false_never_raise(bad: object) -> None:
    assert VERIFIER.verify(NodeId(0), MESSAGE, bad) is False  # type: ignore[arg-type]
    assert VERIFIER.verify_aggregate(0b11, MESSAGE, bad) is False  # type: ignore[arg-type]


def test_truncated_signature_is_rejected() -> None:
    signature = SIGNERS[NodeId(0)].sign(MESSAGE)
    assert not VERIFIER.verify(NodeId(0), MESSAGE, signature[:-1])


def test_aggregate_with_bitmap_verifies_and_names_the_signers() -> None:
    partials = {n: SIGNERS[n].sign(MESSAGE) for n in (NodeId(0), NodeId(2), NodeId(5))}
    bitmap, signature = aggregate(partials)
    assert bitmap == 0b100101
    assert bitmap_nodes(bitmap) == [0, 2, 5]
    assert VERIFIER.verify_aggregate(bitmap, MESSAGE, signature)
    # Claiming an extra signer, dropping one, or another message all fail.
    assert not VERIFIER.verify_aggregate(bitmap | 0b10, MESSAGE, signature)
    assert not VERIFIER.verify_aggregate(0b100001, MESSAGE, signature)
    assert not VERIFIER.verify_aggregate(bitmap, b"other", signature)
    # A bitmap naming nobody, a negative one, or an unknown node never verifies.
    assert not VERIFIER.verify_aggregate(0, MESSAGE, signature)
    assert not VERIFIER.verify_aggregate(-1, MESSAGE, signature)
    assert not VERIFIER.verify_aggregate(bitmap | 1 << 60, MESSAGE, signature)


def test_aggregate_refuses_malformed_partials_by_name() -> None:
    with pytest.raises(RemoteProtocolError, match=r"\[3\]"):
        aggregate({NodeId(0): SIGNERS[NodeId(0)].sign(MESSAGE), NodeId(3): b"junk"})
    with pytest.raises(ValueError):
        aggregate({})


def test_fallback_finds_the_bad_partials() -> None:
    partials = {n: SIGNERS[n].sign(MESSAGE) for n in NODES[:5]}
    partials[NodeId(1)] = SIGNERS[NodeId(1)].sign(b"a different block")  # equivocation
    partials[NodeId(3)] = SIGNERS[NodeId(4)].sign(MESSAGE)  # someone else's signature
    bitmap, signature = aggregate(partials)
    assert not VERIFIER.verify_aggregate(bitmap, MESSAGE, signature)
    assert VERIFIER.find_bad_partials(MESSAGE, partials) == [1, 3]


def test_certify_drops_bad_partials_and_keeps_the_rest() -> None:
    partials = {n: SIGNERS[n].sign(MESSAGE) for n in NODES[:5]}
    partials[NodeId(2)] = b"\x00" * 96
    partials[NodeId(9)] = SIGNERS[NodeId(0)].sign(MESSAGE)  # not a member
    bitmap, signature, bad = VERIFIER.certify(MESSAGE, partials)
    assert bad == [2, 9]
    assert bitmap_nodes(bitmap) == [0, 1, 3, 4]
    assert VERIFIER.verify_aggregate(bitmap, MESSAGE, signature)
    honest = {n: SIGNERS[n].sign(MESSAGE) for n in NODES[:3]}
    assert VERIFIER.certify(MESSAGE, honest)[2] == []
    assert VERIFIER.certify(MESSAGE, {NodeId(0): b"x"}) == (0, b"", [0])


def test_bad_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        BlsSigner(NodeId(0), b"\xff" * 32)  # above the group order
    with pytest.raises(ConfigError):
        BlsVerifier({NodeId(0): bytes(G1Element())})  # the identity is no key
    with pytest.raises(ConfigError):
        BlsVerifier({NodeId(0): b"\x00" * 48})
    assert bytes(G2Element()) != SIGNERS[NodeId(0)].sign(MESSAGE)
