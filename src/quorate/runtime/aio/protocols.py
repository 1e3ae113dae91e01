"""Which protocol core a real node runs, chosen by name.

Theory of operation: the asyncio runtime is generic over
``quorate.core.ProtocolCore``. What it needs to know about a protocol fits in
a ``ProtocolBinding``: the wire message types its peers exchange (for the
codec), the msgspec types of its hard state and snapshot (for the storage),
and how to build a core from what the disk holds after a restart. A binding is
produced by a loader registered under a name; loaders import the protocol
lazily so that a missing or optional protocol only fails when it is chosen,
with a message that says so.

BFT protocols (``pbft``, ``hotstuff``) sign with Ed25519 (PyNaCl). Keys:
with ``keys_dir`` (a node config field, passed here as an option) each node
holds its own seed and the registry of every node's public key
(``quorate.crypto.keyfiles``, made by ``quorate keys``) — what a cluster
facing real Byzantine peers needs. Without it every node derives every
replica's key pair from the shared option ``key_seed``
(``quorate.crypto.ed25519.ed25519_cluster_keys``), so a test or benchmark
cluster needs no key distribution step; whoever holds that seed can sign as
any replica. Giving both is refused. The option ``byzantine`` (a behaviour of
``quorate.pbft.BEHAVIOURS`` / ``quorate.hotstuff.BEHAVIOURS``) wraps this
node's core in the protocol's ``ByzantineReplica``, for fault-injection
tests. Other options go to the protocol's config (``PbftConfig`` /
``HotStuffConfig``).

PBFT's ``authentication="macs"`` authenticates pre-prepares, prepares and
commits with HMAC-SHA256 authenticators (``SessionKeyMacAuthenticator``);
view changes, new-views and checkpoints stay signed. The pairwise session
keys are agreed by X25519 from the nodes' own keys with ``keys_dir``
(``quorate.crypto.keyfiles.agreed_session_keys``: only the two ends know
theirs), or derived from ``key_seed`` otherwise (test clusters only).

Durability of signed statements, the option ``send_before_persist`` (BFT
only, default ``false``). By default a replica's messages leave only once
the Ready that produced them is durable, so a replica that crashes and
restarts never contradicts a prepare, commit or vote it sent. With ``true``
they leave before the fsync (the client replies still wait for it): a
replica that crashes inside that window may, after restarting, sign a
statement conflicting with one it sent. Agreement then still holds as long
as such replicas plus Byzantine ones are at most f at a time (Castro and
Liskov's implementation makes the same trade: it keeps protocol state in
memory and relies on f for crash-and-forget faults), but peers may convict
such a replica of equivocation and exclude it. The default is the safe one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quorate.core.protocol import ProtocolCore
from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.storage.base import Recovered

CoreBuilder = Callable[
    [NodeId, tuple[NodeId, ...], random.Random, float, Recovered | None, Mapping[str, Any]],
    ProtocolCore,
]
"""``build(node_id, voters, rng, now, recovered, options) -> core``; ``recovered``
is ``None`` on a fresh disk."""


@dataclass(frozen=True, slots=True)
class ProtocolBinding:
    """What the runtime needs from one protocol."""

    name: str
    message_types: tuple[type[WireMessage], ...]
    hard_state_type: type[Any] | None
    snapshot_type: type[Any] | None
    build: CoreBuilder
    sends_before_persist: Callable[[Mapping[str, Any]], bool] = lambda options: False
    """True when, with these options, every message of a Ready may leave
    before the Ready's fsync (see ``send_before_persist`` above)."""
    clock_keys: Callable[[NodeId, tuple[NodeId, ...], Mapping[str, Any]], tuple[Signer, Verifier]] | None = None
    """BFT protocols: ``(signer, verifier)`` for the replica's signed clock
    readings (``quorate.state.replica_time``), the node's own keys."""


_LOADERS: dict[str, Callable[[], ProtocolBinding]] = {}


def register_protocol(name: str, loader: Callable[[], ProtocolBinding]) -> None:
    """Make ``name`` available to ``protocol_binding`` (a later call replaces it)."""
    _LOADERS[name] = loader


def protocol_names() -> list[str]:
    return sorted(_LOADERS)


def protocol_binding(name: str) -> ProtocolBinding:
    """The binding registered as ``name``; ``ConfigError`` if unknown or not installed."""
    loader = _LOADERS.get(name)
    if loader is None:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(protocol_names())}")
    try:
        return loader()
    except ImportError as exc:
        raise ConfigError(
            f"protocol {name!r} is not available in this installation: {exc}"
        ) from None


def _load_raft() -> ProtocolBinding:
    from quorate.raft import RAFT_MESSAGE_TYPES, RaftConfig, RaftNode
    from quorate.raft.messages import HardState, Snapshot

    def build(
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        rng: random.Random,
        now: float,
        recovered: Recovered | None,
        options: Mapping[str, Any],
    ) -> ProtocolCore:
        config = RaftConfig(**dict(options))
        core: ProtocolCore = RaftNode(
            node_id, voters, config=config, rng=rng, now=now, recovered=recovered
        )
        return core

    return ProtocolBinding("raft", tuple(RAFT_MESSAGE_TYPES), HardState, Snapshot, build)


register_protocol("raft", _load_raft)


_BFT_NODE_OPTIONS = ("key_seed", "keys_dir", "byzantine", "send_before_persist")
DEFAULT_KEY_SEED = "quorate-test-cluster"
"""Used when ``key_seed`` is not given (test clusters only, see above)."""


def _key_seed(options: Mapping[str, Any]) -> bytes:
    return str(options.get("key_seed", DEFAULT_KEY_SEED)).encode()


def _sends_before_persist(options: Mapping[str, Any]) -> bool:
    value = options.get("send_before_persist", False)
    if not isinstance(value, bool):
        raise ConfigError(f"send_before_persist must be true or false, got {value!r}")
    return value


class SessionKeyMacAuthenticator:
    """PBFT's ``MacAuthenticator`` (pre-prepares, prepares and commits with
    ``authentication="macs"``) over one session key per peer."""

    __slots__ = ("_keys",)

    def __init__(self, node: NodeId, keys: Mapping[NodeId, bytes]) -> None:
        from quorate.crypto.mac import SessionKeys

        self._keys = SessionKeys(node, keys)

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]:
        return {int(r): self._keys.mac(r, data) for r in receivers}

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool:
        from quorate.crypto.mac import Authenticator

        return self._keys.verify_entry(sender, data, Authenticator(dict(macs)))


_MAC_DOMAIN = b"quorate/aio/pbft-session-keys/v1:"
"""Separates the MAC session keys from the signing keys drawn from one seed."""


class _BftKeys:
    """A BFT node's signer, verifier and (for MACs) session keys."""

    __slots__ = ("session_keys", "signer", "verifier")

    def __init__(self, node_id: NodeId, voters: tuple[NodeId, ...], options: Mapping[str, Any]) -> None:
        from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_cluster_keys

        keys_dir = options.get("keys_dir")
        if keys_dir is not None:
            from quorate.crypto.keyfiles import agreed_session_keys, load_node_keys

            if "key_seed" in options:
                raise ConfigError("give either keys_dir (a key per node) or key_seed (test clusters), not both")
            seed, public_keys = load_node_keys(str(keys_dir), node_id, voters)
            self.signer = Ed25519Signer(node_id, seed)
            self.verifier = Ed25519Verifier(public_keys)
            peers = {p: k for p, k in public_keys.items() if p in voters}
            self.session_keys = agreed_session_keys(seed, node_id, peers)
            return
        from quorate.crypto.mac import pairwise_session_keys

        key_seed = _key_seed(options)
        pairs = ed25519_cluster_keys(key_seed, voters)
        self.signer = Ed25519Signer(node_id, pairs[node_id].signing_key)
        self.verifier = Ed25519Verifier({n: k.public_key for n, k in pairs.items()})
        self.session_keys = pairwise_session_keys(
            _MAC_DOMAIN + key_seed, node_id, [v for v in voters if v != node_id]
        )


def _bft_clock_keys(
    node_id: NodeId, voters: tuple[NodeId, ...], options: Mapping[str, Any]
) -> tuple[Signer, Verifier]:
    keys = _BftKeys(node_id, voters, options)
    return keys.signer, keys.verifier


def _bft_identity(
    node_id: NodeId, voters: tuple[NodeId, ...], options: Mapping[str, Any]
) -> tuple[_BftKeys, dict[str, Any], str | None]:
    """(keys, core options, Byzantine behaviour or None)."""
    keys = _BftKeys(node_id, voters, options)
    core_options = {k: v for k, v in options.items() if k not in _BFT_NODE_OPTIONS}
    behaviour = options.get("byzantine")
    return keys, core_options, None if behaviour in (None, "", "none") else str(behaviour)


def _load_pbft() -> ProtocolBinding:
    from quorate.pbft import (
        PBFT_MESSAGE_TYPES,
        ByzantineReplica,
        PbftConfig,
        PbftHardState,
        PbftReplica,
    )
    from quorate.pbft.config import AUTH_MACS

    def build(
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        rng: random.Random,
        now: float,
        recovered: Recovered | None,
        options: Mapping[str, Any],
    ) -> ProtocolCore:
        keys, core_options, behaviour = _bft_identity(node_id, voters, options)
        signer, verifier = keys.signer, keys.verifier
        try:
            config = PbftConfig(**core_options)
        except TypeError as exc:
            raise ConfigError(f"bad PBFT option: {exc}") from None
        authenticator = (
            SessionKeyMacAuthenticator(node_id, keys.session_keys)
            if config.authentication == AUTH_MACS
            else None
        )
        core = PbftReplica(
            node_id,
            voters,
            config=config,
            signer=signer,
            verifier=verifier,
            rng=rng,
            now=now,
            recovered=recovered,
            authenticator=authenticator,
        )
        if behaviour is None:
            return core
        wrapped: ProtocolCore = ByzantineReplica(core, behaviour, rng=rng, signer=signer, peers=voters)
        return wrapped

    return ProtocolBinding(
        "pbft", tuple(PBFT_MESSAGE_TYPES), PbftHardState, None, build, _sends_before_persist, _bft_clock_keys
    )


def _load_hotstuff() -> ProtocolBinding:
    from quorate.hotstuff import (
        HOTSTUFF_MESSAGE_TYPES,
        ByzantineReplica,
        HardState,
        HotStuffConfig,
        HotStuffReplica,
    )

    def build(
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        rng: random.Random,
        now: float,
        recovered: Recovered | None,
        options: Mapping[str, Any],
    ) -> ProtocolCore:
        keys, core_options, behaviour = _bft_identity(node_id, voters, options)
        signer, verifier = keys.signer, keys.verifier
        try:
            config = HotStuffConfig(**core_options).validate()
        except TypeError as exc:
            raise ConfigError(f"bad HotStuff option: {exc}") from None
        core: ProtocolCore = HotStuffReplica(
            node_id, voters, config=config, signer=signer, verifier=verifier, rng=rng, now=now, recovered=recovered
        )
        if behaviour is None:
            return core
        wrapped: ProtocolCore = ByzantineReplica(
            core, behaviour, rng=rng, signer=signer, peers=voters, view_timeout_s=config.view_timeout_s
        )
        return wrapped

    return ProtocolBinding(
        "hotstuff", tuple(HOTSTUFF_MESSAGE_TYPES), HardState, None, build, _sends_before_persist, _bft_clock_keys
    )


register_protocol("pbft", _load_pbft)
register_protocol("hotstuff", _load_hotstuff)
