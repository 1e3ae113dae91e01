"""Ed25519 signers with keys fixed by the node id, and the key registry's
answer for them: what tests of records checked from public keys alone
(``quorate.security.evidence_log``) sign and verify with."""

from __future__ import annotations

import nacl.signing

from quorate.ids import NodeId


class Ed25519Signer:
    def __init__(self, node: int) -> None:
        self.node = NodeId(node)
        self.key = nacl.signing.SigningKey(bytes([node]) * 32)

    def sign(self, data: bytes) -> bytes:
        return bytes(self.key.sign(data).signature)


class Registry:
    """The key registry's answer: each node's current Ed25519 public keys."""

    def __init__(self, *nodes: int) -> None:
        self.keys = {n: (bytes(Ed25519Signer(n).key.verify_key),) for n in nodes}

    def valid_keys(self, node: NodeId | int, kind: str = "signing") -> tuple[bytes, ...]:
        return self.keys.get(int(node), ())
