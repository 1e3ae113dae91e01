"""Keyrings: the signing material a runtime hands to the cores of one cluster
(``quorate.core.binding.Keyring``), built once per runtime.

- ``Ed25519Keyring`` (real nodes). Either from a key directory (``quorate
  keys init`` / ``keys issue``: this node's own seed and every member's public
  key; MAC session keys agreed pairwise by X25519, so only the two ends know
  theirs) or from a shared seed from which every member's key pair and every
  session key derive (test and benchmark clusters only: whoever holds the
  seed can sign as anyone). A node's keyring only signs as that node.
- ``CostModelKeyring`` (the simulator). Keyed-hash signatures that are
  unforgeable without the secret, charging the CPU time measured for the
  real primitive to the signing or verifying node's ``CpuMeter``
  (``quorate.crypto.costmodel``); real HMACs over session keys from the run's
  seed for MAC authenticators, also charged. One seed gives the same keys on
  every replica, so a run replays bit for bit. The run's authenticators share
  a ``MacLedger`` of the entries they made: a receiver whose entry is one of
  them, made by its sender for it over the same bytes, knows the HMAC check
  would pass without computing it (the CPU time is charged all the same);
  any other entry is checked for real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from quorate.crypto.costmodel import (
    CostModelKeys,
    CostModelSigner,
    CostModelVerifier,
    CpuMeter,
    CryptoCosts,
    Scheme,
)
from quorate.crypto.mac import Authenticator, SessionKeys, pairwise_session_keys
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name

if TYPE_CHECKING:
    from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier

__all__ = [
    "CostModelKeyring",
    "Ed25519Keyring",
    "MacLedger",
    "MeteredMacAuthenticator",
    "SessionKeyMacAuthenticator",
]

_SEED_MAC_DOMAIN = b"quorate/aio/pbft-session-keys/v1:"
"""Separates MAC session keys from the signing keys drawn from one seed."""
_SIM_MAC_DOMAIN = b"quorate/sim/pbft-session-keys/v1:"


class SessionKeyMacAuthenticator:
    """A ``MacAuthenticator`` over one session key per peer."""

    __slots__ = ("_keys",)

    def __init__(self, node: NodeId, keys: Mapping[NodeId, bytes]) -> None:
        self._keys = SessionKeys(node, keys)

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]:
        return {int(r): self._keys.mac(r, data) for r in receivers}

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool:
        return self._keys.verify_entry(sender, data, Authenticator(dict(macs)))


MAC_LEDGER_MAX_ENTRIES = 1 << 21
"""Entries a ``MacLedger`` remembers before it forgets them all (about
200 MB); an entry it forgot is checked with the real HMAC."""


class MacLedger:
    """The MAC entries a simulated run's honest authenticators made:
    ``entry bytes -> (sender, receiver, data)``.

    An entry found here with the same sender, receiver and data is exactly
    the HMAC a real check would recompute and compare, so the check can be
    skipped; it proves nothing it would not. A Byzantine node gains nothing:
    an entry it corrupted, forged or moved to another receiver or statement
    is not found (or found with other ends or data) and takes the real check.
    Simulator only: real nodes never share one."""

    __slots__ = ("_made",)

    def __init__(self) -> None:
        self._made: dict[bytes, tuple[int, int, bytes]] = {}

    def record(self, sender: int, data: bytes, entries: Mapping[int, bytes]) -> None:
        made = self._made
        if len(made) + len(entries) > MAC_LEDGER_MAX_ENTRIES:
            made.clear()
        for receiver, entry in entries.items():
            made[entry] = (sender, receiver, data)

    def vouches(self, sender: int, receiver: int, data: bytes, entry: object) -> bool:
        """True when ``entry`` is the MAC ``sender`` made for ``receiver`` over ``data``."""
        if type(entry) is not bytes or type(data) is not bytes:
            return False
        known = self._made.get(entry)
        return known is not None and known[0] == sender and known[1] == receiver and known[2] == data


class MeteredMacAuthenticator(SessionKeyMacAuthenticator):
    """``SessionKeyMacAuthenticator`` that charges the measured HMAC cost to
    ``meter`` (``CryptoCosts.mac_create_per_receiver_s`` per receiver when
    sending, ``mac_verify_s`` per check). With a shared ``ledger`` (the
    simulator's keyring), an entry the ledger vouches for is accepted
    without recomputing its HMAC; every other one is checked for real."""

    __slots__ = ("_costs", "_ledger", "_meter", "_node")

    def __init__(
        self,
        node: NodeId,
        keys: Mapping[NodeId, bytes],
        meter: CpuMeter,
        costs: CryptoCosts | None = None,
        ledger: MacLedger | None = None,
    ) -> None:
        super().__init__(node, keys)
        self._meter = meter
        self._costs = costs or CryptoCosts()
        self._ledger = ledger
        self._node = int(node)

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]:
        self._meter.charge(self._costs.mac_create_per_receiver_s * len(receivers))
        entries = super().macs(data, receivers)
        if self._ledger is not None and type(data) is bytes:
            self._ledger.record(self._node, data, entries)
        return entries

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool:
        self._meter.charge(self._costs.mac_verify_s)
        ledger = self._ledger
        if ledger is not None and len(macs) == 1:
            entry = macs.get(self._node)
            if entry is not None and ledger.vouches(int(sender), self._node, data, entry):
                return True
        return super().check(sender, data, macs)


class Ed25519Keyring:
    """Real Ed25519 keys for ``node`` (see the module docstring)."""

    def __init__(self, node: NodeId, members: Sequence[NodeId], *, keys_dir: str | Path | None = None, key_seed: str | bytes | None = None) -> None:
        from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_cluster_keys

        if (keys_dir is None) == (key_seed is None):
            raise ConfigError("give either keys_dir (a key per node) or key_seed (test clusters), not both and not neither")
        self.node = node
        self.test_keys = keys_dir is None
        """True when every key derives from one shared seed (tests only)."""
        members = tuple(members)
        if keys_dir is not None:
            from quorate.crypto.keyfiles import agreed_session_keys, load_node_keys

            seed, public_keys = load_node_keys(str(keys_dir), node, members)
            self._signer = Ed25519Signer(node, seed)
            self._verifier = Ed25519Verifier(public_keys)
            peers = {p: k for p, k in public_keys.items() if p in members}
            self._session_keys = agreed_session_keys(seed, node, peers)
        else:
            raw = key_seed.encode() if isinstance(key_seed, str) else bytes(key_seed or b"")
            pairs = ed25519_cluster_keys(raw, members)
            self._signer = Ed25519Signer(node, pairs[node].signing_key)
            self._verifier = Ed25519Verifier({n: k.public_key for n, k in pairs.items()})
            self._session_keys = pairwise_session_keys(
                _SEED_MAC_DOMAIN + raw, node, [m for m in members if m != node]
            )

    def signer(self, node: NodeId) -> Ed25519Signer:
        if node != self.node:
            raise ConfigError(f"this keyring holds {node_name(self.node)}'s key, not {node_name(node)}'s")
        return self._signer

    def verifier(self, node: NodeId) -> Ed25519Verifier:
        return self._verifier

    def mac_authenticator(self, node: NodeId, members: tuple[NodeId, ...]) -> SessionKeyMacAuthenticator:
        if node != self.node:
            raise ConfigError(f"this keyring holds {node_name(self.node)}'s session keys, not {node_name(node)}'s")
        return SessionKeyMacAuthenticator(node, {m: k for m, k in self._session_keys.items() if m in members})


class CostModelKeyring:
    """The simulator's keyring for a run with ``seed`` (see the module docstring)."""

    def __init__(self, seed: int, scheme: Scheme = Scheme.ED25519, costs: CryptoCosts | None = None) -> None:
        self.seed = seed
        self.scheme = scheme
        self.costs = costs
        self._keys = CostModelKeys(f"quorate-sim-{seed}".encode())
        self._mac_secret = _SIM_MAC_DOMAIN + str(seed).encode()
        self._meters: dict[NodeId, CpuMeter] = {}
        self._mac_ledger = MacLedger()

    def meter(self, node: NodeId) -> CpuMeter:
        """``node``'s CPU meter, shared by its signer, verifier and
        authenticator and kept across restarts (it is the node's CPU)."""
        meter = self._meters.get(node)
        if meter is None:
            meter = self._meters[node] = CpuMeter()
        return meter

    def signer(self, node: NodeId) -> CostModelSigner:
        return CostModelSigner(node, self._keys, self.costs, scheme=self.scheme, meter=self.meter(node))

    def verifier(self, node: NodeId) -> CostModelVerifier:
        return CostModelVerifier(self._keys, self.costs, scheme=self.scheme, meter=self.meter(node))

    def mac_authenticator(self, node: NodeId, members: tuple[NodeId, ...]) -> MeteredMacAuthenticator:
        keys = pairwise_session_keys(self._mac_secret, node, [m for m in members if m != node])
        return MeteredMacAuthenticator(node, keys, self.meter(node), self.costs, self._mac_ledger)
