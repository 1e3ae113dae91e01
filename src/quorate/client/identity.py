"""Agent identities on disk: a name and its Ed25519 key pair.

An identity file (``quorate agents add NAME`` writes ``<cluster>/agents/NAME.key``)
holds one line of hex: the 32-byte signing seed. It is created with mode 0600
and never overwritten; only the agent's own process needs it. The cluster
knows the agent by name and public key, registered through consensus
(``quorate.state.agents``); ballots are signed here, checked by every replica.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from quorate.errors import ConfigError
from quorate.state.agents.ops import ballot_bytes

AGENTS_DIR = "agents"
KEY_FILE_MODE = 0o600
SEED_BYTES = 32


@dataclass(frozen=True)
class AgentIdentity:
    """An agent's name and signing key (keep the key secret)."""

    name: str
    signing_key: bytes

    @property
    def public_key(self) -> bytes:
        import nacl.signing  # PyNaCl only where a key is used: 'import quorate' works without it

        return bytes(nacl.signing.SigningKey(self.signing_key).verify_key)

    def sign_ballot(self, proposal_id: str, option: str) -> bytes:
        """This agent's signature over its ballot for ``option``."""
        import nacl.signing

        key = nacl.signing.SigningKey(self.signing_key)
        return bytes(key.sign(ballot_bytes(proposal_id, self.name, option)).signature)

    @classmethod
    def generate(cls, name: str) -> AgentIdentity:
        import nacl.signing

        return cls(name, bytes(nacl.signing.SigningKey.generate()))


def identity_path(directory: str | Path, name: str) -> Path:
    if not name or "/" in name or name.startswith(".") or len(name) > 128:
        raise ConfigError(f"an agent name must be 1..128 characters without '/' or a leading '.', got {name!r}")
    return Path(directory) / f"{name}.key"


def create_identity(directory: str | Path, name: str) -> AgentIdentity:
    """A new identity saved to ``directory/NAME.key`` (mode 0600); ``ConfigError``
    when that agent already has a key there."""
    path = identity_path(directory, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    identity = AgentIdentity.generate(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        raise ConfigError(f"agent {name!r} already has a key in {path}; choose another name") from None
    with os.fdopen(fd, "w") as f:
        f.write(identity.signing_key.hex() + "\n")
    return identity


def load_identity(directory: str | Path, name: str) -> AgentIdentity:
    path = identity_path(directory, name)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"no key for agent {name!r} in {path}: create it with 'quorate agents add {name}'") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != SEED_BYTES:
        raise ConfigError(f"{path} does not hold a {SEED_BYTES}-byte hex key")
    return AgentIdentity(name, seed)


__all__ = ["AGENTS_DIR", "AgentIdentity", "create_identity", "identity_path", "load_identity"]
