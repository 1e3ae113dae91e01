"""Ed25519 signer/verifier: round trips and rejection of every malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.crypto.ed25519 import (
    Ed25519Signer,
    Ed25519Verifier,
    ed25519_cluster_keys,
    ed25519_generate,
    ed25519_keypair_from_seed,
)
from quorate.errors import ConfigError
from quorate.ids import NodeId

A, B = NodeId(1), NodeId(2)
KEYS = ed25519_cluster_keys(b"test cluster", [A, B])
SIGNER_A = Ed25519Signer(A, KEYS[A].signing_key)
VERIFIER = Ed25519Verifier({n: k.public_key for n, k in KEYS.items()})


def test_seeded_keys_are_deterministic_and_distinct() -> None:
    assert ed25519_keypair_from_seed(b"s") == ed25519_keypair_from_seed(b"s")
    assert ed25519_keypair_from_seed(b"s") != ed25519_keypair_from_seed(b"t")
    assert KEYS[A].public_key != KEYS[B].public_key
    assert ed25519_generate() != ed25519_generate()


def test_round_trip() -> None:
    signature = SIGNER_A.sign(b"prepare v=1 n=7")
    assert len(signature) == 64
    assert SIGNER_A.node == A
    assert SIGNER_A.public_key == KEYS[A].public_key
    assert VERIFIER.verify(A, b"prepare v=1 n=7", signature)


def test_rejects_wrong_key_wrong_message_unknown_node() -> None:
    signature = SIGNER_A.sign(b"m")
    assert not VERIFIER.verify(B, b"m", signature)
    assert not VERIFIER.verify(A, b"m'", signature)
    assert not VERIFIER.verify(NodeId(99), b"m", signature)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x00" * 64, b"\xff" * 64, b"\x01" * 63, b"\x01" * 65, "not bytes", None, 12],
)
def test_garbage_signatures_are_false_never_raise(bad: object) -> None:
    assert VERIFIER.verify(A, b"m", bad) is False  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=200), flip=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_any_bit_flip_breaks_the_signature(data: bytes, flip: int) -> None:
    signature = bytearray(SIGNER_A.sign(data))
    signature[flip // 8] ^= 1 << (flip % 8)
    assert VERIFIER.verify(A, data, bytes(signature)) is False
    assert VERIFIER.verify(A, data, bytes(signature[:-1])) is False


def test_bad_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Ed25519Signer(A, b"short")
    with pytest.raises(ConfigError):
        Ed25519Verifier({A: b"\x00" * 31})


def test_signed_by_any_accepts_any_listed_key_and_never_raises() -> None:
    from quorate.crypto.ed25519 import ed25519_keypair_from_seed, signed_by_any

    old, new, other = (ed25519_keypair_from_seed(s) for s in (b"old", b"new", b"other"))
    import nacl.signing

    signature = bytes(nacl.signing.SigningKey(new.signing_key).sign(b"data").signature)
    assert signed_by_any([old.public_key, new.public_key], b"data", signature)
    assert not signed_by_any([old.public_key, other.public_key], b"data", signature)
    assert not signed_by_any([new.public_key], b"other data", signature)
    assert not signed_by_any([b"short", new.public_key[:5]], b"data", signature)
    assert not signed_by_any([new.public_key], b"data", b"not a signature")
    assert not signed_by_any([], b"data", signature)
