"""Ed25519 identities (RFC 8032) through PyNaCl/libsodium.

Theory of operation. Each node holds a 32-byte Ed25519 *seed* (its signing key)
and the cluster knows every node's 32-byte public key. ``Ed25519Signer`` and
``Ed25519Verifier`` implement ``quorate.core.Signer``/``Verifier``; PBFT's view
change and HotStuff's votes sign through them on real nodes.

Keys come either from the operating system's randomness
(``ed25519_generate``) or, for tests and the simulator, deterministically from a
seed (``ed25519_keypair_from_seed``, ``ed25519_cluster_keys``) so a run replays
bit for bit.

Invariant: ``Ed25519Verifier.verify`` never raises on peer input. A signature
of the wrong type or length, garbage bytes, an unknown node or a signature by
another key all return False.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from quorate.errors import ConfigError
from quorate.ids import NodeId

SEED_SIZE_BYTES = 32
PUBLIC_KEY_SIZE_BYTES = 32
SIGNATURE_SIZE_BYTES = 64

_SEED_DOMAIN = b"quorate/ed25519/seed/v1"


@dataclass(frozen=True, slots=True)
class Ed25519KeyPair:
    """A signing seed (keep secret) and the public key that checks its signatures."""

    signing_key: bytes
    public_key: bytes


def ed25519_keypair_from_seed(seed: bytes) -> Ed25519KeyPair:
    """A key pair fixed by ``seed`` (any length; hashed to the 32-byte RFC 8032 seed).

    For tests and the simulator: whoever knows ``seed`` knows the secret key.
    """
    secret = hashlib.sha256(_SEED_DOMAIN + seed).digest()
    key = nacl.signing.SigningKey(secret)
    return Ed25519KeyPair(signing_key=secret, public_key=bytes(key.verify_key))


def ed25519_generate() -> Ed25519KeyPair:
    """A fresh key pair from the operating system's randomness (production)."""
    key = nacl.signing.SigningKey.generate()
    return Ed25519KeyPair(signing_key=bytes(key), public_key=bytes(key.verify_key))


def ed25519_cluster_keys(seed: bytes, nodes: Iterable[NodeId]) -> dict[NodeId, Ed25519KeyPair]:
    """One deterministic key pair per node, all derived from one cluster ``seed``."""
    return {
        node: ed25519_keypair_from_seed(seed + b"/" + str(int(node)).encode())
        for node in nodes
    }


class Ed25519Signer:
    """Signs as ``node`` with its 32-byte Ed25519 seed."""

    __slots__ = ("_key", "_node")

    def __init__(self, node: NodeId, signing_key: bytes) -> None:
        if not isinstance(signing_key, bytes) or len(signing_key) != SEED_SIZE_BYTES:
            raise ConfigError(
                f"the Ed25519 signing key of node {node} must be {SEED_SIZE_BYTES} bytes"
            )
        self._node = node
        self._key = nacl.signing.SigningKey(signing_key)

    @property
    def node(self) -> NodeId:
        return self._node

    @property
    def public_key(self) -> bytes:
        """The public key peers need to check this signer's signatures."""
        return bytes(self._key.verify_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte detached signature of ``data``."""
        return bytes(self._key.sign(data).signature)


class Ed25519Verifier:
    """Checks Ed25519 signatures of the nodes in ``public_keys``."""

    __slots__ = ("_keys",)

    def __init__(self, public_keys: Mapping[NodeId, bytes]) -> None:
        keys: dict[NodeId, nacl.signing.VerifyKey] = {}
        for node, raw in public_keys.items():
            if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_SIZE_BYTES:
                raise ConfigError(
                    f"the Ed25519 public key of node {node} must be {PUBLIC_KEY_SIZE_BYTES} bytes"
                )
            keys[node] = nacl.signing.VerifyKey(raw)
        self._keys = keys

    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        key = self._keys.get(node)
        if key is None:
            return False
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE_BYTES:
            return False
        if not isinstance(data, bytes | bytearray | memoryview):
            return False
        try:
            key.verify(bytes(data), signature)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return False
        return True


def signed_by_any(public_keys: Iterable[bytes], data: bytes, signature: bytes) -> bool:
    """True iff ``signature`` over ``data`` verifies under one of
    ``public_keys`` (a node's keys during a rotation's overlap); never raises
    on peer input."""
    for raw in public_keys:
        try:
            nacl.signing.VerifyKey(raw).verify(data, signature)
            return True
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            continue
    return False

