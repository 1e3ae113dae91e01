"""How 2f + 1 signatures on one message become a certificate, and are checked.

Theory of operation: a quorum certificate (HotStuff §4.1, "QC") is a signer
bitmap plus signatures over one message — a vote's (view, block hash) or a
NewView's view. How the signatures are carried is a choice of the cluster,
behind the small ``QuorumSigner`` interface:

- ``IndividualSignatures`` (the default): one signature per signer, in
  increasing node order, each checked with the cluster's ``Verifier``. Works
  with any signature scheme (Ed25519, HMAC in tests, the simulator's cost model).
- ``AggregateSignatures``: one aggregate signature for the whole bitmap,
  checked once, through any ``AggregateScheme`` — BLS's ``BlsVerifier`` in
  ``quorate.crypto.bls`` is one (its ``certify`` and ``verify_aggregate``). All
  voters for one block sign the same bytes, which is what makes this possible.

The replica, not the signer, decides whether the signers form a quorum of the
configured replicas (``HotStuffReplica`` checks the bitmap's count and members).

Invariants: ``verify`` never raises on peer input; a bitmap naming no node,
or a signature count that does not match the scheme, never verifies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from quorate.core.signing import Verifier
from quorate.ids import NodeId

__all__ = [
    "AggregateScheme",
    "AggregateSignatures",
    "IndividualSignatures",
    "QuorumSigner",
    "decode_signers",
    "encode_signers",
]


def encode_signers(nodes: Iterable[NodeId]) -> bytes:
    """A little-endian bitmap with bit ``i`` set for node ``i`` (fits any cluster size)."""
    bitmap = 0
    for node in nodes:
        bitmap |= 1 << node
    return bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "little")


def decode_signers(signers: bytes) -> list[NodeId]:
    """The node ids set in a bitmap made by ``encode_signers``, in increasing order."""
    # The binary digits, lowest first: one pass in C instead of a Python
    # step per set bit (a QC of n = 1000 names 667 signers).
    digits = bin(int.from_bytes(signers, "little"))[:1:-1]
    return [NodeId(i) for i, digit in enumerate(digits) if digit == "1"]


class QuorumSigner(Protocol):
    """Turns verified partial signatures into a certificate and checks certificates."""

    def combine(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[bytes, tuple[bytes, ...]]:
        """``(signers_bitmap, signatures)`` over ``message`` from partial
        signatures the caller has already verified one by one."""
        ...

    def verify(self, message: bytes, signers: bytes, signatures: tuple[bytes, ...]) -> bool:
        """True iff every node in ``signers`` signed ``message``."""
        ...

    def certify(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[bytes, tuple[bytes, ...], list[NodeId]]:
        """As ``combine`` for partials not yet checked: ``(signers_bitmap,
        signatures, bad_nodes)``, the bad partials left out."""
        ...


class IndividualSignatures:
    """The default ``QuorumSigner``: every signature kept and checked on its own."""

    __slots__ = ("verifier",)

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def combine(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[bytes, tuple[bytes, ...]]:
        nodes = sorted(partials)
        return encode_signers(nodes), tuple(partials[n] for n in nodes)

    def verify(self, message: bytes, signers: bytes, signatures: tuple[bytes, ...]) -> bool:
        nodes = decode_signers(signers)
        if not nodes or len(nodes) != len(signatures):
            return False
        verify = self.verifier.verify
        return all(verify(n, message, s) for n, s in zip(nodes, signatures))

    def certify(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[bytes, tuple[bytes, ...], list[NodeId]]:
        verify = self.verifier.verify
        bad = sorted(n for n, s in partials.items() if not verify(n, message, s))
        good = {n: s for n, s in partials.items() if n not in bad}
        signers, signatures = self.combine(message, good) if good else (b"", ())
        return signers, signatures, bad


class AggregateScheme(Protocol):
    """What an aggregate signature scheme offers (``quorate.crypto.bls.BlsVerifier``)."""

    def certify(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[int, bytes, list[NodeId]]:
        """``(bitmap, aggregate, bad_nodes)`` from partial signatures over ``message``."""
        ...

    def verify_aggregate(self, bitmap: int, message: bytes, aggregate_signature: bytes) -> bool:
        """True iff every node in ``bitmap`` signed ``message``."""
        ...


class AggregateSignatures:
    """A ``QuorumSigner`` carrying one aggregate signature, verified once."""

    __slots__ = ("scheme",)

    def __init__(self, scheme: AggregateScheme) -> None:
        self.scheme = scheme

    def combine(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[bytes, tuple[bytes, ...]]:
        # Partials that fail here are left out of the bitmap; the caller then
        # sees fewer signers than a quorum and waits for more votes.
        bitmap, aggregate, _bad = self.scheme.certify(message, partials)
        if bitmap <= 0:
            return b"", ()
        return bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "little"), (aggregate,)

    def certify(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[bytes, tuple[bytes, ...], list[NodeId]]:
        # One aggregate check when every partial is good; each on its own only
        # when it is not (the scheme's ``certify``).
        bitmap, aggregate, bad = self.scheme.certify(message, partials)
        if bitmap <= 0:
            return b"", (), list(bad)
        return bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "little"), (aggregate,), list(bad)

    def verify(self, message: bytes, signers: bytes, signatures: tuple[bytes, ...]) -> bool:
        bitmap = int.from_bytes(signers, "little")
        if bitmap <= 0 or len(signatures) != 1:
            return False
        return self.scheme.verify_aggregate(bitmap, message, signatures[0])
