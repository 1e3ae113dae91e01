"""The simulator's cost-model crypto: charges the measured cost, still rejects forgeries."""

from __future__ import annotations

import pytest

from quorate.crypto.costmodel import (
    CostModelKeys,
    CostModelSigner,
    CostModelThreshold,
    CostModelVerifier,
    CpuMeter,
    CryptoCosts,
    Scheme,
)
from quorate.errors import LocalProtocolError
from quorate.ids import NodeId

KEYS = CostModelKeys(b"sim seed 42")
COSTS = CryptoCosts()
A, B, C = NodeId(0), NodeId(1), NodeId(2)


def test_sign_and_verify_charge_the_real_schemes_cost() -> None:
    signer = CostModelSigner(A, KEYS, COSTS, Scheme.ED25519)
    verifier = CostModelVerifier(KEYS, COSTS, Scheme.ED25519)
    signature = signer.sign(b"m")
    assert len(signature) == 64
    assert signer.spent_s == pytest.approx(COSTS.ed25519_sign_s)
    assert verifier.verify(A, b"m", signature)
    assert not verifier.verify(A, b"m2", signature)
    assert verifier.spent_s == pytest.approx(2 * COSTS.ed25519_verify_s)
    assert verifier.meter.take() == pytest.approx(2 * COSTS.ed25519_verify_s)
    assert verifier.spent_s == 0.0
    bls = CostModelSigner(A, KEYS, COSTS, Scheme.BLS)
    assert len(bls.sign(b"m")) == 96
    assert bls.spent_s == pytest.approx(COSTS.bls_sign_s)


def test_a_shared_meter_collects_one_nodes_costs() -> None:
    meter = CpuMeter()
    signer = CostModelSigner(A, KEYS, COSTS, Scheme.BLS, meter=meter)
    verifier = CostModelVerifier(KEYS, COSTS, Scheme.BLS, meter=meter)
    verifier.verify(A, b"m", signer.sign(b"m"))
    assert meter.take() == pytest.approx(COSTS.bls_sign_s + COSTS.bls_verify_s)
    signer.spent_s = 0.5
    assert meter.spent_s == 0.5


def test_forgeries_and_misattribution_are_rejected() -> None:
    verifier = CostModelVerifier(KEYS)
    signature = CostModelSigner(A, KEYS).sign(b"m")
    assert not verifier.verify(B, b"m", signature)  # claimed to be B's
    other_cluster = CostModelSigner(A, CostModelKeys(b"another seed")).sign(b"m")
    assert not verifier.verify(A, b"m", other_cluster)  # a key the node does not hold
    for bad in (b"", signature[:-1], signature + b"\x00", bytes(64), signature[:32] + b"\x01" * 32, "s", None):
        assert verifier.verify(A, b"m", bad) is False  # type: ignore[arg-type]
    assert verifier.spent_s > 0  # failed checks cost the same work


def test_aggregates_verify_like_bls_and_charge_by_size() -> None:
    signers = {n: CostModelSigner(n, KEYS, scheme=Scheme.BLS) for n in (A, B, C)}
    verifier = CostModelVerifier(KEYS, COSTS, Scheme.BLS)
    partials = {n: s.sign(b"block") for n, s in signers.items()}
    bitmap, signature = verifier.aggregate(partials)
    assert bitmap == 0b111
    assert verifier.spent_s == pytest.approx(3 * COSTS.bls_aggregate_per_signature_s)
    verifier.meter.take()
    assert verifier.verify_aggregate(bitmap, b"block", signature)
    assert verifier.spent_s == pytest.approx(COSTS.aggregate_verify_s(3))
    assert not verifier.verify_aggregate(0b011, b"block", signature)
    assert not verifier.verify_aggregate(0b1111, b"block", signature)
    assert not verifier.verify_aggregate(bitmap, b"other", signature)
    assert not verifier.verify_aggregate(0, b"block", signature)
    # Partials from a subset cannot be stretched to claim a signer who did not sign.
    two_bitmap, two = verifier.aggregate({A: partials[A], B: partials[B]})
    assert not verifier.verify_aggregate(two_bitmap | 0b100, b"block", two)


def test_certify_names_bad_partials() -> None:
    verifier = CostModelVerifier(KEYS, scheme=Scheme.BLS)
    partials = {n: CostModelSigner(n, KEYS, scheme=Scheme.BLS).sign(b"v") for n in (A, B, C)}
    partials[B] = CostModelSigner(B, KEYS, scheme=Scheme.BLS).sign(b"equivocation")
    bitmap, signature, bad = verifier.certify(b"v", partials)
    assert bad == [B]
    assert bitmap == 0b101 and verifier.verify_aggregate(bitmap, b"v", signature)
    with pytest.raises(LocalProtocolError):
        verifier.aggregate({})


def test_threshold_combines_only_with_t_valid_partials() -> None:
    scheme = CostModelThreshold(KEYS, threshold=3, n=4)
    partials = {i: scheme.sign_partial(i, b"m") for i in (1, 2, 3, 4)}
    assert all(scheme.verify_partial(i, b"m", p) for i, p in partials.items())
    assert not scheme.verify_partial(1, b"m", partials[2])
    scheme.meter.take()
    group = scheme.combine(b"m", partials)
    assert scheme.spent_s == pytest.approx(COSTS.threshold_combine_s(3))
    assert scheme.verify(b"m", group)
    assert scheme.combine(b"m", {2: partials[2], 3: partials[3], 4: partials[4]}) == group
    assert not scheme.verify(b"m2", group)
    bad = {1: partials[2], 2: partials[2], 3: partials[3]}
    assert not scheme.verify(b"m", scheme.combine(b"m", bad))
    with pytest.raises(LocalProtocolError):
        scheme.combine(b"m", {1: partials[1], 2: partials[2]})
    with pytest.raises(LocalProtocolError):
        scheme.sign_partial(5, b"m")
    for junk in (b"", b"\x00" * 96, "x"):
        assert scheme.verify(b"m", junk) is False  # type: ignore[arg-type]


def test_cost_formulas_are_linear_in_size() -> None:
    costs = CryptoCosts(bls_aggregate_verify_base_s=1.0, bls_aggregate_verify_per_signer_s=0.5,
                        threshold_combine_base_s=2.0, threshold_combine_per_share_s=0.25)
    assert costs.aggregate_verify_s(4) == 3.0
    assert costs.threshold_combine_s(8) == 4.0


def test_keys_are_deterministic_per_seed_and_node() -> None:
    assert CostModelKeys(b"s").secret(3) == CostModelKeys(b"s").secret(3)
    assert CostModelKeys(b"s").secret(3) != CostModelKeys(b"s").secret(4)
    assert CostModelKeys(b"s").secret(3) != CostModelKeys(b"t").secret(3)
