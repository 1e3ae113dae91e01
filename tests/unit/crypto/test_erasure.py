"""Erasure-coded checkpoints: any k of k + m fragments rebuild the state, a
corrupt fragment is caught by its checksum, a root without a member's valid
signature is refused."""

from __future__ import annotations

import hashlib
import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_cluster_keys
from quorate.crypto.erasure import (
    CODECS,
    CheckpointFragment,
    available_codecs,
    checkpoint_root,
    cosign,
    encode_checkpoint,
    fragment_refusal,
    make_codec,
    manifest_refusal,
    merkle_root,
    rebuild_state,
)
from quorate.errors import ConfigError
from quorate.ids import NodeId

INSTALLED = available_codecs()
pytestmark = pytest.mark.skipif(not INSTALLED, reason="no Reed-Solomon codec installed (pip install pyeclib)")

KEYS = ed25519_cluster_keys(b"erasure-test", [NodeId(n) for n in range(1, 8)])
VERIFIER = Ed25519Verifier({n: kp.public_key for n, kp in KEYS.items()})
MEMBERS = list(range(1, 7))


def signer(node: int) -> Ed25519Signer:
    return Ed25519Signer(NodeId(node), KEYS[NodeId(node)].signing_key)


@settings(max_examples=40, deadline=None)
@given(
    codec_name=st.sampled_from(INSTALLED or ("zfec",)),
    k=st.integers(1, 6),
    m=st.integers(1, 4),
    state=st.binary(max_size=3000),
    data=st.data(),
)
def test_any_k_fragments_rebuild_the_state(codec_name: str, k: int, m: int, state: bytes, data: st.DataObject) -> None:
    codec = make_codec(codec_name, k, m)
    manifest, fragments = encode_checkpoint(state, shard=3, log_index=17, signer=signer(1), codec=codec)
    assert len(fragments) == k + m
    chosen = data.draw(st.lists(st.sampled_from(range(k + m)), min_size=k, max_size=k, unique=True))
    rebuilt = rebuild_state(manifest, [fragments[i] for i in chosen])
    assert rebuilt.state == state, rebuilt.reason
    assert sorted(rebuilt.used) == sorted(chosen)


@pytest.mark.parametrize("codec_name", INSTALLED)
def test_every_k_subset_rebuilds_exhaustively(codec_name: str) -> None:
    k, m = 4, 3
    state = bytes(range(256)) * 37 + b"tail"
    manifest, fragments = encode_checkpoint(state, shard=1, log_index=1, signer=signer(1), codec=make_codec(codec_name, k, m))
    for subset in itertools.combinations(range(k + m), k):
        assert rebuild_state(manifest, [fragments[i] for i in subset]).state == state


@settings(max_examples=40, deadline=None)
@given(
    codec_name=st.sampled_from(INSTALLED or ("zfec",)),
    state=st.binary(min_size=1, max_size=2000),
    victim=st.integers(0, 5),
    position=st.integers(0, 10**6),
    flip=st.integers(1, 255),
)
def test_any_corrupt_fragment_is_detected_and_the_rest_rebuild(
    codec_name: str, state: bytes, victim: int, position: int, flip: int
) -> None:
    manifest, fragments = encode_checkpoint(state, shard=2, log_index=9, signer=signer(2), codec=make_codec(codec_name, 4, 2))
    raw = bytearray(fragments[victim].data)
    raw[position % len(raw)] ^= flip
    bad = msgspec.structs.replace(fragments[victim], data=bytes(raw))
    assert fragment_refusal(manifest, bad) is not None
    offered = [bad] + [f for i, f in enumerate(fragments) if i != victim]
    rebuilt = rebuild_state(manifest, offered)
    assert rebuilt.state == state
    assert [index for index, _ in rebuilt.rejected] == [victim]
    assert victim not in rebuilt.used


def test_too_few_good_fragments_rebuild_nothing_and_say_why() -> None:
    codec = make_codec(INSTALLED[0], 3, 2)
    manifest, fragments = encode_checkpoint(b"x" * 1000, shard=1, log_index=4, signer=signer(1), codec=codec)
    corrupt = [msgspec.structs.replace(f, data=f.data[:-1] + bytes([f.data[-1] ^ 1])) for f in fragments[:3]]
    rebuilt = rebuild_state(manifest, [*corrupt, fragments[3]])
    assert rebuilt.state is None
    assert "1 good fragment(s), 3 needed" in rebuilt.reason
    assert len(rebuilt.rejected) == 3


def test_a_fragment_of_another_checkpoint_or_index_is_refused() -> None:
    codec = make_codec(INSTALLED[0], 2, 1)
    manifest, fragments = encode_checkpoint(b"abc" * 100, shard=1, log_index=4, signer=signer(1), codec=codec)
    swapped = CheckpointFragment(1, 4, 0, fragments[1].data)
    assert "checksum" in (fragment_refusal(manifest, swapped) or "")
    assert "outside" in (fragment_refusal(manifest, CheckpointFragment(1, 4, 9, b"")) or "")
    assert "expected shard 1 at 4" in (fragment_refusal(manifest, CheckpointFragment(1, 5, 0, fragments[0].data)) or "")


def test_the_root_needs_valid_member_signatures() -> None:
    codec = make_codec(INSTALLED[0], 4, 2)
    manifest, _ = encode_checkpoint(b"state" * 50, shard=1, log_index=10, signer=signer(1), codec=codec)
    assert manifest_refusal(manifest, VERIFIER, MEMBERS) is None
    # Two signatures needed: one is not enough, a co-signature makes two.
    assert "1 valid member signature(s), 2 required" in (manifest_refusal(manifest, VERIFIER, MEMBERS, 2) or "")
    assert manifest_refusal(cosign(manifest, signer(2)), VERIFIER, MEMBERS, 2) is None
    # A second signature of the same node counts once.
    assert cosign(manifest, signer(1)) == manifest
    # A signer outside the shard does not count.
    outsider, _ = encode_checkpoint(b"state" * 50, shard=1, log_index=10, signer=signer(7), codec=codec)
    assert manifest_refusal(outsider, VERIFIER, MEMBERS) is not None
    # Any change to what the root covers breaks the signature.
    for change in ({"log_index": 11}, {"state_size": 1}, {"shard": 2}, {"log_digest": b"x"}):
        tampered = msgspec.structs.replace(manifest, **change)
        assert checkpoint_root(tampered) != checkpoint_root(manifest)
        assert "0 valid member signature(s)" in (manifest_refusal(tampered, VERIFIER, MEMBERS) or "")
    # A forged signature is refused.
    forged = msgspec.structs.replace(
        manifest, signatures=(msgspec.structs.replace(manifest.signatures[0], signature=bytes(64)),)
    )
    assert manifest_refusal(forged, VERIFIER, MEMBERS) is not None


def test_a_signer_that_encoded_inconsistent_fragments_is_caught() -> None:
    codec = make_codec(INSTALLED[0], 2, 1)
    honest, fragments = encode_checkpoint(b"A" * 600, shard=1, log_index=3, signer=signer(1), codec=codec)
    _, other = encode_checkpoint(b"B" * 600, shard=1, log_index=3, signer=signer(1), codec=codec)
    mixed = [fragments[0], other[1], fragments[2]]
    lying = msgspec.structs.replace(
        honest, fragment_hashes=tuple(hashlib.sha256(f.data).digest() for f in mixed), signatures=()
    )
    lying = cosign(lying, signer(1))
    rebuilt = rebuild_state(lying, mixed[:2])
    assert rebuilt.state is None
    assert "signed state digest" in rebuilt.reason


def test_merkle_root_is_order_sensitive_and_domain_separated() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert merkle_root([a, b]) != merkle_root([b, a])
    assert merkle_root([a]) != a
    assert merkle_root([a, b, a]) != merkle_root([a, b])


def test_bad_codec_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown erasure codec"):
        make_codec("rot13", 2, 1)
    with pytest.raises(ConfigError, match="m >= 1"):
        make_codec(CODECS[0], 2, 0)
    with pytest.raises(ConfigError, match="at most 32"):
        make_codec(CODECS[0], 30, 5)
