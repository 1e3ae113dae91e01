"""Threshold BLS (t-of-n) and the Feldman dealing: any t shares make the group
signature, t−1 do not, and a dealer handing out a bad share is caught."""

from __future__ import annotations

import itertools
import random

import pytest
from blspy import PopSchemeMPL, PrivateKey

from quorate.crypto.bls12381 import GROUP_ORDER, private_key
from quorate.crypto.threshold import (
    Blame,
    Complaint,
    FeldmanDealing,
    KeyShare,
    ThresholdPublicKey,
    ThresholdSigner,
    deal,
    interpolate,
    judge_complaint,
    reconstruct_secret_key,
    verify_share,
)
from quorate.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from quorate.ids import NodeId

T, N = 3, 5
DEALING = deal(T, N, seed=b"threshold test")
PUBLIC = DEALING.public_key()
MESSAGE = b"checkpoint 128"
PARTIALS = {
    s.index: ThresholdSigner(NodeId(s.index), s).sign(MESSAGE) for s in DEALING.shares
}


def test_dealing_is_deterministic_from_seed() -> None:
    assert deal(T, N, seed=b"threshold test") == DEALING
    assert deal(T, N, seed=b"another").group_public_key != DEALING.group_public_key
    assert [s.index for s in DEALING.shares] == [1, 2, 3, 4, 5]


def test_every_t_subset_combines_to_the_same_valid_signature() -> None:
    signatures = set()
    for subset in itertools.combinations(sorted(PARTIALS), T):
        combined = PUBLIC.combine({i: PARTIALS[i] for i in subset})
        assert PUBLIC.verify(MESSAGE, combined)
        signatures.add(combined)
    assert len(signatures) == 1
    # It is an ordinary BLS signature under the group key.
    secret = PrivateKey.from_bytes(reconstruct_secret_key(DEALING.shares[:T]))
    assert signatures == {bytes(PopSchemeMPL.sign(secret, MESSAGE))}
    assert bytes(secret.get_g1()) == DEALING.group_public_key


def test_t_minus_one_shares_do_not_suffice() -> None:
    for subset in itertools.combinations(sorted(PARTIALS), T - 1):
        attempt = interpolate({i: PARTIALS[i] for i in subset})
        assert not PUBLIC.verify(MESSAGE, attempt)
    with pytest.raises(LocalProtocolError):
        PUBLIC.combine({1: PARTIALS[1], 2: PARTIALS[2]})


def test_existing_key_can_be_shared() -> None:
    key = private_key(random.Random(3).randrange(1, GROUP_ORDER))
    dealing = deal(2, 3, seed=b"x", secret_key=bytes(key))
    assert dealing.group_public_key == bytes(key.get_g1())
    assert reconstruct_secret_key(dealing.shares[1:]) == bytes(key)


def test_partials_verify_under_share_keys_from_the_commitments() -> None:
    for index, partial in PARTIALS.items():
        assert PUBLIC.verify_partial(index, MESSAGE, partial)
        assert PUBLIC.share_public_key(index) == bytes(
            PrivateKey.from_bytes(DEALING.shares[index - 1].secret_key).get_g1()
        )
    assert not PUBLIC.verify_partial(1, MESSAGE, PARTIALS[2])
    assert not PUBLIC.verify_partial(1, b"other", PARTIALS[1])
    assert not PUBLIC.verify_partial(0, MESSAGE, PARTIALS[1])
    assert not PUBLIC.verify_partial(N + 1, MESSAGE, PARTIALS[1])
    for bad in (b"", b"\x00" * 96, b"\xff" * 96, PARTIALS[1][:-1]):
        assert PUBLIC.verify_partial(1, MESSAGE, bad) is False
        assert PUBLIC.verify(MESSAGE, bad) is False


def test_combine_verified_skips_a_bad_partial() -> None:
    partials = dict(PARTIALS)
    partials[1] = PARTIALS[2]  # share 1 sends share 2's partial
    partials[2] = b"\x00" * 96  # share 2 sends garbage
    signature, bad = PUBLIC.combine_verified(MESSAGE, partials)
    assert bad == [1, 2]
    assert signature is not None and PUBLIC.verify(MESSAGE, signature)
    too_few = {1: PARTIALS[1], 2: b"junk", 3: PARTIALS[3]}
    assert PUBLIC.combine_verified(MESSAGE, too_few) == (None, [2])
    with pytest.raises(RemoteProtocolError):
        PUBLIC.combine(too_few)


def test_feldman_accepts_honest_shares() -> None:
    assert all(verify_share(DEALING.commitments, s) for s in DEALING.shares)


def test_feldman_detects_a_corrupted_share_and_blames_the_dealer() -> None:
    good = DEALING.shares[2]
    corrupted = KeyShare(
        good.index, bytes(private_key(int.from_bytes(good.secret_key, "big") + 1))
    )
    assert not verify_share(DEALING.commitments, corrupted)
    assert not verify_share(DEALING.commitments, KeyShare(good.index + 1, good.secret_key))
    complaint = Complaint(dealer=NodeId(0), index=good.index)
    # The dealer reveals the bad share (or nothing, or another index): dealer at fault.
    assert judge_complaint(DEALING.commitments, complaint, corrupted) is Blame.DEALER
    assert judge_complaint(DEALING.commitments, complaint, None) is Blame.DEALER
    assert judge_complaint(DEALING.commitments, complaint, DEALING.shares[0]) is Blame.DEALER
    # The dealer reveals a share that checks: the complaint was false.
    assert judge_complaint(DEALING.commitments, complaint, good) is Blame.COMPLAINER


def test_feldman_rejects_malformed_shares_and_commitments() -> None:
    share = DEALING.shares[0]
    assert not verify_share(DEALING.commitments, KeyShare(1, b"\xff" * 32))
    assert not verify_share(DEALING.commitments, KeyShare(1, b"short"))
    assert not verify_share(DEALING.commitments, KeyShare(0, share.secret_key))
    assert not verify_share((b"\x00" * 48, *DEALING.commitments[1:]), share)
    assert not verify_share((), share)


def test_a_dealer_committing_to_another_polynomial_is_caught() -> None:
    other = deal(T, N, seed=b"other polynomial")
    forged = FeldmanDealing(T, DEALING.commitments, other.shares)
    assert not any(verify_share(forged.commitments, s) for s in forged.shares)


def test_parameters_are_validated() -> None:
    with pytest.raises(ConfigError):
        deal(0, 3)
    with pytest.raises(ConfigError):
        deal(4, 3)
    with pytest.raises(ConfigError):
        ThresholdPublicKey(T, N, DEALING.commitments[:-1])
    with pytest.raises(ConfigError):
        ThresholdPublicKey(T, N, (b"\x00" * 48,) * T)
    with pytest.raises(LocalProtocolError):
        PUBLIC.share_public_key(N + 1)


def test_random_21_of_31_subsets_combine_to_the_group_signature() -> None:
    """The paper-scale setting (n = 3f + 1 = 31, t = 2f + 1 = 21), a few seeded subsets."""
    rng = random.Random(2024)
    dealing = deal(21, 31, seed=b"large")
    public = dealing.public_key()
    signers = {s.index: ThresholdSigner(NodeId(s.index), s) for s in dealing.shares}
    results = set()
    for _ in range(2):
        chosen = rng.sample(sorted(signers), 21)
        combined = public.combine({i: signers[i].sign(MESSAGE) for i in chosen})
        assert public.verify(MESSAGE, combined)
        results.add(combined)
    assert len(results) == 1
    short = rng.sample(sorted(signers), 20)
    assert not public.verify(MESSAGE, interpolate({i: signers[i].sign(MESSAGE) for i in short}))
