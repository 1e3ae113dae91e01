"""Which protocol a real node runs: the node's view of a protocol binding.

Theory of operation: the asyncio runtime is generic over
``quorate.core.ProtocolCore``; what it knows about a protocol comes from the
protocol's binding (``quorate.protocols``, ``quorate.core.binding``). This
module adds what only a real node decides: where its keys come from, and
which options are the node's rather than the protocol's.

Options of a node (besides its protocol's own config fields):

- ``keys_dir``: protocols that sign use this node's own Ed25519 key and the
  registry of every member's public key (``quorate.crypto.keyfiles``, made by
  ``quorate keys``) — what a cluster facing real Byzantine peers needs; MAC
  session keys are agreed pairwise by X25519 from those keys.
- ``key_seed``: without ``keys_dir`` every node derives every member's key
  pair (and the session keys) from this shared seed (default
  ``DEFAULT_KEY_SEED``), so a test or benchmark cluster needs no key
  distribution step; whoever holds the seed can sign as any member. Giving
  both is refused.
- ``byzantine``: a behaviour of the protocol's binding (``behaviours``) wraps
  this node's core for fault-injection tests.

Everything else goes to the binding's ``parse_config`` (e.g. ``PbftConfig``
fields and ``send_before_persist``, whose trade-off
``quorate.core.binding.BftSettings`` explains), which refuses an unknown
option by name.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from quorate.core.binding import Binding, ClusterContext, Keyring
from quorate.core.protocol import ProtocolCore
from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage
from quorate.crypto.keyring import Ed25519Keyring
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.protocols import binding as core_binding
from quorate.protocols import names, register
from quorate.storage.base import Recovered

CoreBuilder = Callable[
    [NodeId, tuple[NodeId, ...], random.Random, float, Recovered | None, Mapping[str, Any]],
    ProtocolCore,
]
"""``build(node_id, voters, rng, now, recovered, options) -> core``; ``recovered``
is ``None`` on a fresh disk."""

NODE_OPTIONS = ("key_seed", "keys_dir", "byzantine")
"""Options a real node takes for itself (see the module docstring)."""
DEFAULT_KEY_SEED = "quorate-test-cluster"
"""Used when neither ``keys_dir`` nor ``key_seed`` is given (test clusters only)."""


@dataclass(frozen=True, slots=True)
class ProtocolBinding:
    """A protocol binding as a real node uses it."""

    core: Binding
    """The protocol's own binding (roles: leadership, status, membership)."""

    @property
    def name(self) -> str:
        return self.core.name

    @property
    def message_types(self) -> tuple[type[WireMessage], ...]:
        return self.core.message_types

    @property
    def hard_state_type(self) -> type[Any] | None:
        return self.core.hard_state_type

    @property
    def snapshot_type(self) -> type[Any] | None:
        return self.core.snapshot_type

    def protocol_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` without the node's own."""
        return {k: v for k, v in options.items() if k not in NODE_OPTIONS}

    def sends_before_persist(self, options: Mapping[str, Any]) -> bool:
        """True when, with these options, every message of a Ready may leave
        before the Ready's fsync."""
        return self.core.pipelines_while_persisting(self.core.parse_config(self.protocol_options(options)))

    def uses_test_keys(self, options: Mapping[str, Any]) -> bool:
        """True when a signing protocol would derive its keys from the shared test seed."""
        return self.core.fault_model == "byzantine" and options.get("keys_dir") is None

    def keyring(self, node_id: NodeId, voters: tuple[NodeId, ...], options: Mapping[str, Any]) -> Ed25519Keyring | None:
        """This node's keys, for protocols that sign (None for the others)."""
        if self.core.fault_model != "byzantine":
            return None
        keys_dir = options.get("keys_dir")
        key_seed = options.get("key_seed")
        if keys_dir is not None and key_seed is not None:
            raise ConfigError("give either keys_dir (a key per node) or key_seed (test clusters), not both")
        return Ed25519Keyring(
            node_id,
            voters,
            keys_dir=keys_dir,
            key_seed=None if keys_dir is not None else str(key_seed or DEFAULT_KEY_SEED),
        )

    def clock_keys(
        self,
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        options: Mapping[str, Any],
        *,
        keyring: Keyring | None = None,
    ) -> tuple[Signer, Verifier] | None:
        """For Byzantine fault tolerant protocols: the node's own signer and the
        members' verifier for its signed clock readings
        (``quorate.state.replica_time``); None for the others. ``keyring``:
        the node's keyring (the key registry's), else one built from ``options``."""
        if self.core.fault_model != "byzantine":
            return None
        found = keyring if keyring is not None else self.keyring(node_id, voters, options)
        if found is None:
            return None
        return found.signer(node_id), found.verifier(node_id)

    def build(
        self,
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        rng: random.Random,
        now: float,
        recovered: Recovered | None,
        options: Mapping[str, Any],
        *,
        keyring: Keyring | None = None,
    ) -> ProtocolCore:
        """One node's core; ``keyring``: the node's keyring (the key
        registry's), else one built from ``options`` (for protocols that sign)."""
        config = self.core.parse_config(self.protocol_options(options))
        if self.core.fault_model != "byzantine":
            keyring = None
        elif keyring is None:
            keyring = self.keyring(node_id, voters, options)
        behaviour = options.get("byzantine")
        byzantine = {} if behaviour in (None, "", "none") else {node_id: str(behaviour)}
        if byzantine and self.core.fault_model != "byzantine":
            raise ConfigError(f"protocol {self.name!r} has no Byzantine behaviours")
        build = self.core.builder(config, ClusterContext(keyring, byzantine))
        return build(node_id, voters, rng, now, recovered)


def register_protocol(name: str, loader: Callable[[], Binding]) -> None:
    """Make ``name`` available to ``protocol_binding`` (``quorate.protocols.register``)."""
    register(name, loader)


def protocol_names() -> list[str]:
    """The protocols a real node can run (the simulator's reference protocol left out)."""
    return [name for name in names() if not _simulator_only(name)]


def _simulator_only(name: str) -> bool:
    try:
        return core_binding(name).simulator_only
    except ConfigError:
        return False


def protocol_binding(name: str) -> ProtocolBinding:
    """The binding registered as ``name``; ``ConfigError`` if unknown, not
    installed, or one only the simulator runs."""
    found = core_binding(name)
    if found.simulator_only:
        raise ConfigError(f"protocol {name!r} runs in the simulator only; choose one of {', '.join(protocol_names())}")
    return ProtocolBinding(found)
