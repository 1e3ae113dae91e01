"""Signing interfaces. Protocol cores sign and verify only through these, so
the simulator can plug in a cost-model verifier (charges measured CPU time and
still rejects forgeries) and real nodes plug in Ed25519 or BLS."""

from __future__ import annotations

from typing import Protocol

from quorate.ids import NodeId


class Signer(Protocol):
    """Signs on behalf of one node."""

    @property
    def node(self) -> NodeId:
        """The identity whose key this signer holds."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Return a signature over ``data``."""
        ...


class Verifier(Protocol):
    """Checks signatures of any node in the cluster."""

    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is ``node``'s signature over ``data``.
        Never raises on a malformed signature: returns False."""
        ...
