"""Cryptography for the Byzantine protocols, behind ``quorate.core.Signer`` /
``quorate.core.Verifier``.

- ``ed25519``    Ed25519 identities (PyNaCl): ``Ed25519Signer``, ``Ed25519Verifier``.
- ``bls``        BLS12-381 PoP-scheme signatures and quorum-certificate aggregation.
- ``threshold``  t-of-n threshold BLS with a Feldman-verifiable dealing.
- ``pop``        Schnorr proofs of possession and the key registry that requires them.
- ``mac``        HMAC-SHA256 authenticators for PBFT's normal case.
- ``costmodel``  keyed-hash stand-ins for the simulator that charge measured CPU cost.
- ``bls12381``   the group arithmetic the BLS modules build on.

``ed25519`` needs PyNaCl; ``bls``, ``threshold``, ``pop`` and ``bls12381``
need blspy. Both are installed with quorate (blspy where it has wheels:
Python < 3.13). They are imported from their modules; this package
re-exports only what the standard library alone provides, so
``import quorate.crypto`` works without them.
"""

from quorate.crypto.costmodel import (
    CostModelKeys,
    CostModelSigner,
    CostModelThreshold,
    CostModelVerifier,
    CpuMeter,
    CryptoCosts,
    Scheme,
)
from quorate.crypto.mac import Authenticator, SessionKeys, pairwise_session_keys

__all__ = [
    "Authenticator",
    "CostModelKeys",
    "CostModelSigner",
    "CostModelThreshold",
    "CostModelVerifier",
    "CpuMeter",
    "CryptoCosts",
    "Scheme",
    "SessionKeys",
    "pairwise_session_keys",
]
