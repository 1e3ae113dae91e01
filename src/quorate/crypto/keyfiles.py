"""Per-node signing keys on disk, and MAC session keys agreed from them.

Theory of operation. A BFT cluster facing real Byzantine peers must not share
a secret: whoever holds a shared seed can sign as any replica. So each node
holds its own Ed25519 seed and every node knows every node's public key:

    keys/
      n1.key             one node's 32-byte seed, hex, mode 0600 (only on n1)
      n2.key
      public-keys.toml   n1 = "<hex public key>", n2 = ... (on every node)

``quorate keys init`` / ``quorate keys issue`` write them (``issue_node_key``);
a node config names the directory (``keys_dir``) and ``load_node_keys``
checks it once at start: the seed's public key must be the one the registry
lists for this node, every entry must be 32 bytes of hex, and the registry
must name every voter.

MAC session keys (PBFT with ``authentication = "macs"``) need a key per pair
of nodes, shared by exactly those two. ``agreed_session_keys`` derives it
without any exchange: Ed25519 keys convert to X25519 keys (RFC 7748; the same
curve, birationally equivalent), and the Diffie-Hellman value of a's private
and b's public key equals that of b's private and a's public key. The MAC
key is a keyed BLAKE2b hash of that value and the two node ids (lower first),
so both ends compute the same 32 bytes and nobody else can.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing

from quorate.crypto.ed25519 import PUBLIC_KEY_SIZE_BYTES, SEED_SIZE_BYTES, ed25519_generate
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name, parse_node_name

PUBLIC_KEYS_FILE = "public-keys.toml"
SESSION_KEY_BYTES = 32
_SESSION_DOMAIN = b"quorate/x25519-mac/v1"


def key_file(directory: Path, node: NodeId) -> Path:
    return directory / f"{node_name(node)}.key"


def issue_node_key(directory: str | Path, node: NodeId, *, force: bool = False, listed: bool = True) -> bytes:
    """Create ``node``'s seed file and (``listed``) list its public key in the
    registry; return the public key. An existing key file is kept unless
    ``force``. A node that joins a running cluster is not listed: the
    registry file is the cluster's genesis, and newcomers enter through
    admission (``quorate keys admit``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = key_file(directory, node)
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace {node_name(node)}'s key")
    pair = ed25519_generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pair.signing_key.hex() + "\n")
    if not listed:
        return pair.public_key
    registry = read_public_keys(directory) if (directory / PUBLIC_KEYS_FILE).exists() else {}
    registry[node] = pair.public_key
    _write_registry(directory, registry)
    return pair.public_key


def _write_registry(directory: Path, registry: Mapping[NodeId, bytes]) -> None:
    lines = ["# Ed25519 public keys of the cluster's nodes (quorate keys)"]
    lines += [f'{node_name(n)} = "{key.hex()}"' for n, key in sorted(registry.items())]
    temporary = directory / (PUBLIC_KEYS_FILE + ".tmp")
    temporary.write_text("\n".join(lines) + "\n")
    temporary.replace(directory / PUBLIC_KEYS_FILE)


def read_public_keys(directory: str | Path) -> dict[NodeId, bytes]:
    """The registry: node id -> 32-byte public key; ``ConfigError`` names the
    file and the entry on any mistake."""
    path = Path(directory) / PUBLIC_KEYS_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing (made by 'quorate keys init')") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    registry: dict[NodeId, bytes] = {}
    for name, value in raw.items():
        try:
            node = NodeId(parse_node_name(name))
        except ValueError:
            raise ConfigError(f"{path}: {name!r} is not a node name like n1") from None
        key = _hex(value, PUBLIC_KEY_SIZE_BYTES, f"{path}: {name}")
        try:
            nacl.signing.VerifyKey(key)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            raise ConfigError(f"{path}: {name} is not an Ed25519 public key") from None
        registry[node] = key
    return registry


def _hex(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a hex string of {size} bytes")
    try:
        data = bytes.fromhex(value.strip())
    except ValueError:
        raise ConfigError(f"{what} is not hex") from None
    if len(data) != size:
        raise ConfigError(f"{what} must be {size} bytes, got {len(data)}")
    return data


def load_node_keys(
    directory: str | Path, node: NodeId, voters: Iterable[NodeId], *, accept: Iterable[bytes] = ()
) -> tuple[bytes, dict[NodeId, bytes]]:
    """``node``'s seed and the voters' public keys, checked (see the module
    docstring). ``accept``: further public keys the seed may have (the keys
    the node rotated to since the registry file was written)."""
    directory = Path(directory)
    path = key_file(directory, node)
    try:
        seed = _hex(path.read_text(), SEED_SIZE_BYTES, str(path))
    except FileNotFoundError:
        raise ConfigError(
            f"{path} is missing: create it with 'quorate keys issue {node_name(node)} --dir {directory}'"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    registry = read_public_keys(directory)
    missing = [node_name(v) for v in voters if v not in registry]
    if missing:
        raise ConfigError(f"{directory / PUBLIC_KEYS_FILE} lists no key for {', '.join(missing)}")
    own = bytes(nacl.signing.SigningKey(seed).verify_key)
    if registry.get(node) != own and own not in set(accept):
        raise ConfigError(
            f"{path} does not match {node_name(node)}'s public key in {directory / PUBLIC_KEYS_FILE}"
        )
    return seed, registry


def agreed_session_keys(
    seed: bytes, node: NodeId, public_keys: Mapping[NodeId, bytes]
) -> dict[NodeId, bytes]:
    """The MAC key ``node`` shares with each other node in ``public_keys``
    (X25519 agreement; symmetric, see the module docstring)."""
    private = nacl.signing.SigningKey(seed).to_curve25519_private_key().encode()
    keys: dict[NodeId, bytes] = {}
    for peer, public in public_keys.items():
        if peer == node:
            continue
        peer_public = nacl.signing.VerifyKey(public).to_curve25519_public_key().encode()
        shared = nacl.bindings.crypto_scalarmult(private, peer_public)
        low, high = sorted((int(node), int(peer)))
        keys[peer] = hashlib.blake2b(
            _SESSION_DOMAIN + low.to_bytes(8, "big") + high.to_bytes(8, "big"),
            key=shared,
            digest_size=SESSION_KEY_BYTES,
        ).digest()
    return keys
