"""Schnorr proofs of possession of BLS secret keys, and the key registry that
demands them.

Theory of operation. Aggregate verification on a common message adds public
keys: Σ pk_i. A node that announces pk_rogue = g1^x − pk_victim without knowing
its discrete log makes pk_victim + pk_rogue = g1^x, so a signature made with x
alone passes as "victim and rogue both signed" (the rogue-key attack, Boneh–
Drijvers–Neven 2018 §1; Ristenpart–Yilek 2007). The defence is to accept a key
into the aggregation set only with a proof that its owner knows the secret.

The proof is Schnorr's identification protocol made non-interactive with
Fiat–Shamir, over G1 (public key pk = g1^x):

    prover:   k = nonce, R = g1^k, c = H(pk, R, context), s = k + c·x  (mod r)
    proof:    R (48 bytes) || s (32 bytes)
    verifier: g1^s == R + c·pk

``context`` binds the proof to its use (a cluster id, the node id), so a proof
cannot be replayed for another node or cluster. The nonce k is derived from
the secret key, the public key and the context (in the spirit of RFC 6979), so
proving is deterministic and never reuses a nonce across different inputs.

Invariant: ``BlsKeyRegistry`` holds only keys whose proof verified; a refused
registration leaves it unchanged. Verification never raises on peer input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from blspy import G1Element, PrivateKey

from quorate.crypto.bls import BlsVerifier
from quorate.crypto.bls12381 import (
    G1_SIZE_BYTES,
    GROUP_ORDER,
    SCALAR_SIZE_BYTES,
    decode_g1,
    g1_identity,
    g1_mul_generator,
    hash_to_scalar,
    scalar_mult,
    scalar_of,
)
from quorate.errors import ConfigError
from quorate.ids import NodeId

PROOF_SIZE_BYTES = G1_SIZE_BYTES + SCALAR_SIZE_BYTES

_CHALLENGE_DOMAIN = b"quorate/pop/schnorr-challenge/v1"
_NONCE_DOMAIN = b"quorate/pop/schnorr-nonce/v1"


def registration_context(cluster: bytes, node: NodeId) -> bytes:
    """The context a node's proof is bound to: its cluster and its id."""
    return hashlib.sha256(cluster).digest() + int(node).to_bytes(8, "big")


def prove_possession(secret_key: bytes, context: bytes) -> bytes:
    """A proof that the caller knows ``secret_key`` (32 bytes), bound to ``context``."""
    if not isinstance(secret_key, bytes) or len(secret_key) != SCALAR_SIZE_BYTES:
        raise ConfigError(f"a BLS secret key is {SCALAR_SIZE_BYTES} bytes")
    x = scalar_of(PrivateKey.from_bytes(secret_key))
    public = bytes(g1_mul_generator(x))
    k = hash_to_scalar(_NONCE_DOMAIN, secret_key, public, context)
    if k == 0:  # probability 1/r; a zero nonce would reveal x = s / c
        k = 1
    commitment = bytes(g1_mul_generator(k))
    c = hash_to_scalar(_CHALLENGE_DOMAIN, public, commitment, context)
    s = (k + c * x) % GROUP_ORDER
    return commitment + s.to_bytes(SCALAR_SIZE_BYTES, "big")


def verify_possession(public_key: bytes, proof: bytes, context: bytes) -> bool:
    """True iff ``proof`` shows knowledge of the secret behind ``public_key``."""
    if not isinstance(proof, bytes) or len(proof) != PROOF_SIZE_BYTES:
        return False
    if not isinstance(context, bytes):
        return False
    pk = decode_g1(public_key)
    commitment_bytes = proof[:G1_SIZE_BYTES]
    commitment = decode_g1(commitment_bytes)
    if pk is None or commitment is None or pk == G1Element():
        return False
    s = int.from_bytes(proof[G1_SIZE_BYTES:], "big")
    if s >= GROUP_ORDER:
        return False
    c = hash_to_scalar(_CHALLENGE_DOMAIN, bytes(pk), commitment_bytes, context)
    return bool(g1_mul_generator(s) == commitment + scalar_mult(pk, c, g1_identity()))


class BlsKeyRegistry:
    """The BLS public keys admitted to aggregation, each with a verified proof.

    ``cluster`` names the cluster; a proof made for another cluster or another
    node id is refused.
    """

    __slots__ = ("_cluster", "_keys")

    def __init__(self, cluster: bytes) -> None:
        self._cluster = cluster
        self._keys: dict[NodeId, bytes] = {}

    def context(self, node: NodeId) -> bytes:
        """What ``node``'s proof must be bound to."""
        return registration_context(self._cluster, node)

    def register(self, node: NodeId, public_key: bytes, proof: bytes) -> bool:
        """Admit ``public_key`` for ``node`` iff ``proof`` verifies; False otherwise.

        A node already registered with a different key is refused too: keys are
        replaced by reconfiguration, not by whoever asks.
        """
        current = self._keys.get(node)
        if current is not None and current != public_key:
            return False
        if not verify_possession(public_key, proof, self.context(node)):
            return False
        self._keys[node] = bytes(public_key)
        return True

    @property
    def public_keys(self) -> Mapping[NodeId, bytes]:
        """A copy of the admitted keys."""
        return dict(self._keys)

    def verifier(self) -> BlsVerifier:
        """A verifier over exactly the admitted keys."""
        return BlsVerifier(self._keys)
