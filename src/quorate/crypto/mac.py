"""HMAC-SHA256 authenticators for PBFT's normal case.

Theory of operation (Castro–Liskov, OSDI 1999 §3.1 and TOCS 2002 §3.2). In
the normal case PBFT replaces signatures by message authentication codes,
which cost about a microsecond instead of tens. Each pair of nodes shares a
session key; a message multicast to n receivers carries an *authenticator*,
a vector of MACs with one entry per receiver, each computed with the key the
sender shares with that receiver. A receiver checks only its own entry.

An authenticator convinces its receiver but not a third party (MACs are not
transferable), which is why PBFT still signs view-change messages.

Each MAC covers ``sender || receiver || data``: binding both ends stops a
Byzantine node from reflecting an entry back to its sender or passing it to
another receiver that shares the same key.

Keys: ``pairwise_session_keys`` derives deterministic keys from a cluster
secret for tests and the simulator; production deployments hand in keys agreed
by their transport (e.g. exported from the mutually authenticated TLS
sessions) and should refresh them as PBFT §4.3 describes.

Invariant: ``verify_entry`` compares in constant time and never raises on peer
input.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

import msgspec

from quorate.errors import ConfigError
from quorate.ids import NodeId

MAC_SIZE_BYTES = 32
SESSION_KEY_SIZE_BYTES = 32

_KEY_DOMAIN = b"quorate/mac/session-key/v1"


class Authenticator(msgspec.Struct, frozen=True, array_like=True):
    """One MAC per receiver: ``macs[receiver]`` is checked by ``receiver`` only."""

    macs: dict[int, bytes]


def pairwise_session_keys(
    cluster_secret: bytes, node: NodeId, peers: Iterable[NodeId]
) -> dict[NodeId, bytes]:
    """The keys ``node`` shares with each of ``peers``, derived from one secret.

    Symmetric: node a's key for b equals node b's key for a.
    """
    keys: dict[NodeId, bytes] = {}
    for peer in peers:
        low, high = sorted((int(node), int(peer)))
        label = _KEY_DOMAIN + low.to_bytes(8, "big") + high.to_bytes(8, "big")
        keys[peer] = hmac.new(cluster_secret, label, hashlib.sha256).digest()
    return keys


def _framed(sender: int, receiver: int, data: bytes) -> bytes:
    return sender.to_bytes(8, "big") + receiver.to_bytes(8, "big") + data


class SessionKeys:
    """Node ``node``'s session keys, one per peer; makes and checks authenticators."""

    __slots__ = ("_keys", "_node")

    def __init__(self, node: NodeId, keys: Mapping[NodeId, bytes]) -> None:
        for peer, key in keys.items():
            if not isinstance(key, bytes) or len(key) < SESSION_KEY_SIZE_BYTES:
                raise ConfigError(
                    f"the session key of node {node} with node {peer} must be at least "
                    f"{SESSION_KEY_SIZE_BYTES} bytes"
                )
        self._node = node
        self._keys = dict(keys)

    @property
    def node(self) -> NodeId:
        return self._node

    def mac(self, receiver: NodeId, data: bytes) -> bytes:
        """The MAC that ``receiver`` will check for ``data`` sent by this node."""
        key = self._keys.get(receiver)
        if key is None:
            raise ConfigError(f"node {self._node} has no session key with node {receiver}")
        return hmac.digest(key, _framed(self._node, receiver, data), "sha256")

    def authenticator(self, data: bytes, receivers: Iterable[NodeId]) -> Authenticator:
        """The authenticator of ``data`` for every node in ``receivers``."""
        return Authenticator({int(r): self.mac(r, data) for r in receivers})

    def verify_entry(self, sender: NodeId, data: bytes, authenticator: object) -> bool:
        """True iff ``authenticator`` carries a valid MAC from ``sender`` for this node."""
        key = self._keys.get(sender)
        if key is None or not isinstance(authenticator, Authenticator):
            return False
        entry = authenticator.macs.get(int(self._node))
        if not isinstance(entry, bytes) or not isinstance(data, bytes):
            return False
        expected = hmac.digest(key, _framed(sender, self._node, data), "sha256")
        return hmac.compare_digest(entry, expected)
