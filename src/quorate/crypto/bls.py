"""BLS signatures on BLS12-381 and their aggregation into quorum certificates.

Theory of operation. We use the proof-of-possession scheme of the IETF BLS
draft (blspy's ``PopSchemeMPL``): public keys in G1 (48 bytes), signatures in
G2 (96 bytes). Because every signer of a vote signs the *same* message (a block
hash, a view number), n signatures add up to one 96-byte aggregate that is
checked with one pairing equation against the sum of the signers' public keys
(FastAggregateVerify). HotStuff's and PBFT's quorum certificates are then
``(signer_bitmap, aggregate_signature)``: bit ``i`` set means node ``i`` signed.

FastAggregateVerify is only sound when every public key comes with a proof of
possession; otherwise a rogue key ``g^x − pk_victim`` forges "the victim
signed too". ``BlsVerifier`` trusts the keys it is given, so give it keys that
came through ``quorate.crypto.pop.BlsKeyRegistry`` (or a trusted configuration).

Aggregation is optimistic: a collector adds the partial signatures without
checking them one by one (≈0.9 ms each) and checks the aggregate once. Only if
that fails does ``find_bad_partials`` check each partial, so one Byzantine
voter costs the collector n verifications and is named, and honest rounds cost
one (``BlsVerifier.certify`` does all of this).

Invariants: ``verify``, ``verify_aggregate`` and ``find_bad_partials`` never
raise on peer input; a bitmap naming an unknown node or no node at all never
verifies.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from blspy import G1Element, G2Element, PopSchemeMPL, PrivateKey

from quorate.crypto.bls12381 import (
    G1_SIZE_BYTES,
    SCALAR_SIZE_BYTES,
    decode_g1,
    decode_g2,
)
from quorate.errors import ConfigError, RemoteProtocolError
from quorate.ids import NodeId

SIGNATURE_SIZE_BYTES = 96
PUBLIC_KEY_SIZE_BYTES = G1_SIZE_BYTES
SECRET_KEY_SIZE_BYTES = SCALAR_SIZE_BYTES

_SEED_DOMAIN = b"quorate/bls/seed/v1"


@dataclass(frozen=True, slots=True)
class BlsKeyPair:
    """A BLS secret key (32 bytes, keep secret) and its public key (48 bytes)."""

    secret_key: bytes
    public_key: bytes


def bls_keypair_from_seed(seed: bytes) -> BlsKeyPair:
    """A key pair fixed by ``seed`` (any length), via the IETF KeyGen.

    For tests and the simulator: whoever knows ``seed`` knows the secret key.
    """
    key = PopSchemeMPL.key_gen(hashlib.sha256(_SEED_DOMAIN + seed).digest())
    return BlsKeyPair(secret_key=bytes(key), public_key=bytes(key.get_g1()))


def bls_generate() -> BlsKeyPair:
    """A fresh key pair from the operating system's randomness (production)."""
    key = PopSchemeMPL.key_gen(secrets.token_bytes(32))
    return BlsKeyPair(secret_key=bytes(key), public_key=bytes(key.get_g1()))


def bls_cluster_keys(seed: bytes, nodes: Iterable[NodeId]) -> dict[NodeId, BlsKeyPair]:
    """One deterministic key pair per node, all derived from one cluster ``seed``."""
    return {node: bls_keypair_from_seed(seed + b"/" + str(int(node)).encode()) for node in nodes}


class BlsSigner:
    """Signs as ``node`` with its BLS secret key (PoP scheme)."""

    __slots__ = ("_key", "_node")

    def __init__(self, node: NodeId, secret_key: bytes) -> None:
        if not isinstance(secret_key, bytes) or len(secret_key) != SECRET_KEY_SIZE_BYTES:
            raise ConfigError(
                f"the BLS secret key of node {node} must be {SECRET_KEY_SIZE_BYTES} bytes"
            )
        try:
            self._key = PrivateKey.from_bytes(secret_key)
        except ValueError as exc:
            raise ConfigError(f"the BLS secret key of node {node} is invalid: {exc}") from exc
        self._node = node

    @property
    def node(self) -> NodeId:
        return self._node

    @property
    def public_key(self) -> bytes:
        """The 48-byte public key that checks this signer's signatures."""
        return bytes(self._key.get_g1())

    def sign(self, data: bytes) -> bytes:
        """The 96-byte signature of ``data``."""
        return bytes(PopSchemeMPL.sign(self._key, data))


def aggregate(partials: Mapping[NodeId, bytes]) -> tuple[int, bytes]:
    """Add partial signatures into ``(signer_bitmap, aggregate_signature)``.

    Does not check the partials (see the module docstring); raises
    ``RemoteProtocolError`` naming the nodes whose partial is not even a G2
    point, so a caller can drop them (or call ``find_bad_partials``).
    """
    if not partials:
        raise ValueError("cannot aggregate zero signatures")
    bitmap = 0
    points: list[G2Element] = []
    malformed: list[NodeId] = []
    for node, raw in partials.items():
        if node < 0:
            raise ValueError(f"node ids in a bitmap must be >= 0, got {node}")
        point = decode_g2(raw)
        if point is None:
            malformed.append(node)
            continue
        bitmap |= 1 << node
        points.append(point)
    if malformed:
        raise RemoteProtocolError(f"malformed BLS partial signature from nodes {sorted(malformed)}")
    return bitmap, bytes(PopSchemeMPL.aggregate(points))


def bitmap_nodes(bitmap: int) -> list[NodeId]:
    """The node ids whose bits are set in ``bitmap``, in increasing order."""
    nodes: list[NodeId] = []
    node = 0
    while bitmap:
        if bitmap & 1:
            nodes.append(NodeId(node))
        bitmap >>= 1
        node += 1
    return nodes


class BlsVerifier:
    """Checks BLS signatures and aggregates of the nodes in ``public_keys``.

    Keys are decoded (with their subgroup check) once, here, not per call.
    """

    __slots__ = ("_keys",)

    def __init__(self, public_keys: Mapping[NodeId, bytes]) -> None:
        keys: dict[NodeId, G1Element] = {}
        for node, raw in public_keys.items():
            if node < 0:
                raise ConfigError(f"node ids must be >= 0 to fit a signer bitmap, got {node}")
            point = decode_g1(raw)
            if point is None or point == G1Element():
                raise ConfigError(f"the BLS public key of node {node} is not a valid G1 point")
            keys[node] = point
        self._keys = keys

    @property
    def nodes(self) -> list[NodeId]:
        """The nodes whose keys this verifier knows."""
        return sorted(self._keys)

    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        key = self._keys.get(node)
        if key is None or not isinstance(data, bytes):
            return False
        point = decode_g2(signature)
        if point is None:
            return False
        return bool(PopSchemeMPL.verify(key, data, point))

    def aggregate(self, partials: Mapping[NodeId, bytes]) -> tuple[int, bytes]:
        """``aggregate(partials)``, here too so cost-model and real verifiers
        offer one surface to protocol cores."""
        return aggregate(partials)

    def verify_aggregate(self, bitmap: int, message: bytes, aggregate_signature: bytes) -> bool:
        """True iff every node in ``bitmap`` signed ``message`` (FastAggregateVerify)."""
        if not isinstance(bitmap, int) or bitmap <= 0 or not isinstance(message, bytes):
            return False
        keys = []
        for node in bitmap_nodes(bitmap):
            key = self._keys.get(node)
            if key is None:
                return False
            keys.append(key)
        point = decode_g2(aggregate_signature)
        if point is None:
            return False
        return bool(PopSchemeMPL.fast_aggregate_verify(keys, message, point))

    def find_bad_partials(self, message: bytes, partials: Mapping[NodeId, bytes]) -> list[NodeId]:
        """The nodes whose partial signature over ``message`` does not verify
        (malformed, by another key, or from an unknown node), in increasing order."""
        return sorted(node for node, sig in partials.items() if not self.verify(node, message, sig))

    def certify(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[int, bytes, list[NodeId]]:
        """Aggregate the partials that verify: ``(bitmap, aggregate, bad_nodes)``.

        Optimistic: one aggregate check when every partial is good; only when
        it fails is each partial checked and the bad ones left out. ``bitmap``
        is 0 (and ``aggregate`` empty) when no partial is good; the caller
        decides whether the signers in ``bitmap`` make a quorum.
        """
        known = {node: sig for node, sig in partials.items() if node in self._keys}
        bad = sorted(node for node in partials if node not in self._keys)
        if known:
            try:
                bitmap, signature = aggregate(known)
            except RemoteProtocolError:
                pass
            else:
                if self.verify_aggregate(bitmap, message, signature):
                    return bitmap, signature, bad
        bad_known = self.find_bad_partials(message, known)
        good = {node: sig for node, sig in known.items() if node not in bad_known}
        bad = sorted([*bad, *bad_known])
        if not good:
            return 0, b"", bad
        bitmap, signature = aggregate(good)
        return bitmap, signature, bad
