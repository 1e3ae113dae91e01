"""A node's keyring that follows the key registry: rotation without downtime.

Theory of operation. The protocol cores sign and verify through a
``quorate.core.binding.Keyring`` built once, at start. This one never goes
stale:

- ``RegistryVerifier`` asks the replicated ``KeyRegistry`` at every check,
  so a signature verifies iff it is by a key that speaks for its node *at
  the log position this replica has applied*: both keys during a rotation's
  overlap, none once the node is revoked.
- ``RotatingSigner`` signs with the node's current seed and switches to the
  new one when the node's rotation is activated; it keeps the previous seed
  until that key retires (MAC session keys made with it may still arrive).
- MAC authenticators (PBFT's normal case) agree session keys by X25519 from
  the current keys (``quorate.crypto.keyfiles.agreed_session_keys``). A MAC is
  made with this node's current seed and the receiver's newest key, and
  checked against every pair of this node's seeds and the sender's valid
  keys, so MACs keep verifying across a rotation on either side.

``load_keyring`` builds the whole set from a node's options: its own seed and
the genesis keys from a key directory (``quorate keys``; one key per node),
or, for test clusters, every key derived from a shared seed. A node started
to *join* leaves its own key out of the genesis: it enters the registry
through admission.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from quorate.crypto.ed25519 import ed25519_cluster_keys
from quorate.crypto.keyfiles import agreed_session_keys, key_file, load_node_keys
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.security.keyregistry import KeyRegistry, RegistryPolicy, public_key_of

__all__ = [
    "RegistryKeyring",
    "RegistryVerifier",
    "RotatingMacAuthenticator",
    "RotatingSigner",
    "load_keyring",
]


class RotatingSigner:
    """Signs as ``node`` with its current seed; ``switch`` moves to a new one."""

    __slots__ = ("_key", "_node", "previous_seed", "seed")

    def __init__(self, node: NodeId, seed: bytes) -> None:
        self._node = node
        self.seed = seed
        self.previous_seed: bytes | None = None
        self._key = nacl.signing.SigningKey(seed)

    @property
    def node(self) -> NodeId:
        return self._node

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def sign(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data).signature)

    def switch(self, seed: bytes) -> None:
        """Sign with ``seed`` from now on; the old seed is kept for MAC checks."""
        self.previous_seed, self.seed = self.seed, seed
        self._key = nacl.signing.SigningKey(seed)

    def forget_previous(self) -> None:
        self.previous_seed = None


class RegistryVerifier:
    """Checks signatures against the keys the registry holds valid now."""

    __slots__ = ("_registry",)

    def __init__(self, registry: KeyRegistry) -> None:
        self._registry = registry

    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        if not isinstance(signature, bytes) or not isinstance(data, bytes | bytearray | memoryview):
            return False
        return self._registry.verify(node, bytes(data), signature)


def _framed(sender: int, receiver: int, data: bytes) -> bytes:
    return sender.to_bytes(8, "big") + receiver.to_bytes(8, "big") + data


class RotatingMacAuthenticator:
    """PBFT authenticators over X25519-agreed session keys that survive rotation."""

    __slots__ = ("_keyring", "_members", "_node")

    def __init__(self, keyring: RegistryKeyring, node: NodeId, members: tuple[NodeId, ...]) -> None:
        self._keyring = keyring
        self._node = node
        self._members = frozenset(members)

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]:
        keyring = self._keyring
        seed = keyring.own_signer.seed
        out = {}
        for receiver in receivers:
            peer_key = keyring.registry.newest_key(receiver)
            if peer_key is None:
                continue
            key = keyring.session_key(seed, receiver, peer_key)
            out[int(receiver)] = hmac.digest(key, _framed(self._node, receiver, data), "sha256")
        return out

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool:
        if sender not in self._members or not isinstance(data, bytes):
            return False
        entry = macs.get(int(self._node)) if isinstance(macs, Mapping) else None
        if not isinstance(entry, bytes):
            return False
        keyring = self._keyring
        signer = keyring.own_signer
        seeds = (signer.seed,) if signer.previous_seed is None else (signer.seed, signer.previous_seed)
        framed = _framed(sender, self._node, data)
        for peer_key in keyring.registry.valid_keys(sender):
            for seed in seeds:
                expected = hmac.digest(keyring.session_key(seed, sender, peer_key), framed, "sha256")
                if hmac.compare_digest(entry, expected):
                    return True
        return False


class RegistryKeyring:
    """``quorate.core.binding.Keyring`` for one real node, over the registry."""

    def __init__(self, node: NodeId, seed: bytes, registry: KeyRegistry, *, test_keys: bool = False) -> None:
        self.node = node
        self.registry = registry
        self.own_signer = RotatingSigner(node, seed)
        self.test_keys = test_keys
        """True when every key derives from one shared seed (tests only)."""
        self._verifier = RegistryVerifier(registry)
        self._sessions: dict[tuple[bytes, int, bytes], bytes] = {}

    def signer(self, node: NodeId) -> RotatingSigner:
        if node != self.node:
            raise ConfigError(f"this keyring holds {node_name(self.node)}'s key, not {node_name(node)}'s")
        return self.own_signer

    def verifier(self, node: NodeId) -> RegistryVerifier:
        return self._verifier

    def mac_authenticator(self, node: NodeId, members: tuple[NodeId, ...]) -> RotatingMacAuthenticator:
        if node != self.node:
            raise ConfigError(f"this keyring holds {node_name(self.node)}'s session keys, not {node_name(node)}'s")
        return RotatingMacAuthenticator(self, node, members)

    def session_key(self, seed: bytes, peer: NodeId, peer_key: bytes) -> bytes:
        """The MAC key this node's ``seed`` shares with ``peer``'s ``peer_key`` (cached)."""
        cache_key = (hashlib.sha256(seed).digest(), int(peer), peer_key)
        key = self._sessions.get(cache_key)
        if key is None:
            key = agreed_session_keys(seed, self.node, {peer: peer_key})[peer]
            if len(self._sessions) > 4096:
                self._sessions.clear()
            self._sessions[cache_key] = key
        return key


@dataclass(frozen=True, slots=True)
class NodeKeyMaterial:
    """What a node reads at start: its seed and the registry's genesis."""

    seed: bytes
    genesis: dict[NodeId, bytes]
    test_keys: bool


ROTATED_SUFFIX = ".rotated"
"""``n1.key.rotated`` lists the public keys ``n1``'s seed was rotated to (hex,
one a line), so a restarted node's seed is recognised although the genesis
file still names its first key."""
NEXT_SUFFIX = ".next"
"""``n1.key.next``: the seed of a rotation in progress."""


def rotated_keys(keys_dir: Path, node: NodeId) -> list[bytes]:
    path = key_file(keys_dir, node).with_name(key_file(keys_dir, node).name + ROTATED_SUFFIX)
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(bytes.fromhex(line))
        except ValueError:
            raise ConfigError(f"{path}: {line!r} is not a hex public key") from None
    return out


def key_material(
    node: NodeId,
    voters: Sequence[NodeId],
    *,
    keys_dir: str | Path | None = None,
    key_seed: str | bytes | None = None,
    join: bool = False,
) -> NodeKeyMaterial:
    """This node's seed and the genesis keys (see the module docstring)."""
    if (keys_dir is None) == (key_seed is None):
        raise ConfigError("give either keys_dir (a key per node) or key_seed (test clusters), not both and not neither")
    if keys_dir is not None:
        directory = Path(keys_dir)
        rotated = rotated_keys(directory, node)
        seed, public_keys = load_node_keys(directory, node, [v for v in voters if v != node or not join], accept=rotated)
        genesis = {n: k for n, k in public_keys.items() if not (join and n == node)}
        return NodeKeyMaterial(seed, genesis, test_keys=False)
    raw = key_seed.encode() if isinstance(key_seed, str) else bytes(key_seed or b"")
    pairs = ed25519_cluster_keys(raw, sorted(set(voters) | {node}))
    genesis = {n: p.public_key for n, p in pairs.items() if not (join and n == node)}
    return NodeKeyMaterial(pairs[node].signing_key, genesis, test_keys=True)


def load_keyring(
    node: NodeId,
    voters: Sequence[NodeId],
    *,
    keys_dir: str | Path | None = None,
    key_seed: str | bytes | None = None,
    join: bool = False,
    policy: RegistryPolicy | None = None,
) -> RegistryKeyring:
    """The keyring and a fresh registry for ``node`` (see the module docstring)."""
    material = key_material(node, voters, keys_dir=keys_dir, key_seed=key_seed, join=join)
    registry = KeyRegistry(material.genesis, policy)
    return RegistryKeyring(node, material.seed, registry, test_keys=material.test_keys)


def own_public_key(keyring: RegistryKeyring) -> bytes:
    return public_key_of(keyring.own_signer.seed)
