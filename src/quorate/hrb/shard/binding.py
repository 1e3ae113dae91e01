"""A shard group's binding: what the runtimes know about a watched-Raft
shard (``quorate.core.binding``).

Byzantine fault model (every message signed through the runtime's
``Keyring``); with ``quorum = "byzantine"`` a shard of n tolerates
f = (n - 1) // 3 Byzantine members of any role; with ``"majority"`` it
*detects* Byzantine leaders but tolerates no Byzantine follower (status
says which, in ``metrics["shard.byzantine_quorum"]``). Membership changes
one server at a time, through the Raft core underneath; no leadership
transfer (a transfer's vote request would waive lazy voting). Fault
injection wraps a member named in ``ClusterContext.byzantine`` in
``ByzantineShardReplica``.

Registered as ``hrb-shard`` (``quorate.protocols``), simulator only: a shard
alone has no core tier to certify its cross-shard decisions, so it is not
offered to real nodes as a protocol of its own.

Options: every ``ShardConfig`` field (``shard``, ``shards``, ``quorum``, the
watcher's bounds, the transaction limits), every ``RaftConfig`` field
(``election_timeout_s``...), and the genesis core: ``core_public_key`` (hex
of the first epoch's threshold group key), ``core_threshold``,
``core_members`` and ``core_epoch``. The key-to-shard map defaults to
``hash_key_shard(shards)`` and certificates verify as BLS threshold
signatures; a host replaces either with ``dataclasses.replace`` on the
parsed ``ShardSettings``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quorate.core.binding import (
    Binding,
    ClusterContext,
    CoreBuilder,
    GroupStatus,
    MembershipChange,
    MembershipView,
)
from quorate.core.protocol import ProposeOutcome, ProtocolCore, Refused
from quorate.errors import ConfigError
from quorate.hrb.messages import EpochChange
from quorate.hrb.shard.byzantine import BEHAVIOURS, ByzantineShardReplica
from quorate.hrb.shard.config import ShardConfig
from quorate.hrb.shard.invariants import ShardSafetyMonitor
from quorate.hrb.shard.messages import SHARD_MESSAGE_TYPES
from quorate.hrb.shard.replica import ShardReplica
from quorate.hrb.shard.state import CertificateCheck, KeyShard, hash_key_shard
from quorate.ids import NodeId
from quorate.raft.binding import RaftMembership
from quorate.raft.config import RaftConfig
from quorate.raft.messages import HardState, Snapshot

__all__ = ["BINDING", "ShardSettings", "bls_group_check", "shard_replica"]

_GENESIS_OPTIONS = ("core_public_key", "core_threshold", "core_members", "core_epoch")


def bls_group_check(group_public_key: bytes, message: bytes, signature: bytes) -> bool:
    """A BLS threshold group signature over ``message`` (PoP scheme, as
    ``quorate.crypto.threshold`` combines them). Never raises on peer bytes."""
    from blspy import PopSchemeMPL

    from quorate.crypto.bls12381 import decode_g1, decode_g2

    key = decode_g1(group_public_key)
    point = decode_g2(signature)
    if key is None or point is None or not isinstance(message, bytes):
        return False
    return bool(PopSchemeMPL.verify(key, message, point))


@dataclass(frozen=True, slots=True)
class ShardSettings:
    """A shard group's parsed options plus what a host injects."""

    config: ShardConfig
    genesis: EpochChange | None = None
    """The first epoch's core (members, threshold, group key); needed to build."""
    key_shard: KeyShard | None = None
    """Key -> shard; ``None``: ``hash_key_shard(config.shards)``."""
    check_certificate: CertificateCheck = bls_group_check


def _parse_config(options: Mapping[str, Any]) -> ShardSettings:
    rest = dict(options)
    genesis_options = {name: rest.pop(name) for name in _GENESIS_OPTIONS if name in rest}
    shard_fields = {f.name for f in dataclasses.fields(ShardConfig)} - {"raft"}
    raft_fields = {f.name for f in dataclasses.fields(RaftConfig)}
    unknown = sorted(set(rest) - shard_fields - raft_fields)
    if unknown:
        known = sorted(shard_fields | raft_fields | set(_GENESIS_OPTIONS))
        raise ConfigError(f"unknown HRB shard option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        base = ShardConfig().raft
        raft = dataclasses.replace(base, **{k: v for k, v in rest.items() if k in raft_fields})
        config = ShardConfig(**{k: v for k, v in rest.items() if k in shard_fields}, raft=raft).validate()
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad HRB shard option: {exc}") from None
    return ShardSettings(config, _genesis(genesis_options))


def _genesis(options: Mapping[str, Any]) -> EpochChange | None:
    if "core_public_key" not in options:
        if options:
            raise ConfigError("core_threshold/core_members/core_epoch need core_public_key (hex)")
        return None
    try:
        key = bytes.fromhex(str(options["core_public_key"]))
    except ValueError:
        raise ConfigError("core_public_key must be the hex of the core's group public key") from None
    members = options.get("core_members", ())
    if not isinstance(members, list | tuple) or not all(isinstance(m, int) and m > 0 for m in members):
        raise ConfigError(f"core_members must be a list of node ids, got {members!r}")
    threshold = options.get("core_threshold", 1)
    epoch = options.get("core_epoch", 1)
    if not isinstance(threshold, int) or threshold < 1 or not isinstance(epoch, int) or epoch < 0:
        raise ConfigError("core_threshold must be a positive integer and core_epoch a non-negative one")
    return EpochChange(epoch, tuple(members), threshold, key)


def shard_replica(
    settings: ShardSettings,
    node: NodeId,
    members: Sequence[NodeId],
    *,
    signer: Any,
    verifier: Any,
    rng: random.Random,
    now: float,
    recovered: Any = None,
) -> ShardReplica:
    """Build one member's ``ShardReplica`` from ``settings``."""
    if settings.genesis is None:
        raise ConfigError("an HRB shard needs its genesis core key (option core_public_key)")
    config = settings.config
    key_shard = settings.key_shard or hash_key_shard(config.shards)
    return ShardReplica(
        node,
        members,
        config=config,
        signer=signer,
        verifier=verifier,
        rng=rng,
        now=now,
        key_shard=key_shard,
        check_certificate=settings.check_certificate,
        genesis=settings.genesis,
        recovered=recovered,
    )


def _builder(settings: ShardSettings, cluster: ClusterContext) -> CoreBuilder:
    keyring = cluster.keyring
    if keyring is None:
        raise ConfigError("an HRB shard signs its messages: the runtime must provide keys")
    if settings.genesis is None:
        raise ConfigError("an HRB shard needs its genesis core key (option core_public_key)")
    byzantine = dict(cluster.byzantine)
    for node, behaviour in byzantine.items():
        if behaviour not in BEHAVIOURS:
            raise ConfigError(f"node {node}: unknown shard behaviour {behaviour!r}; one of {', '.join(BEHAVIOURS)}")

    def build(node: NodeId, members: tuple[NodeId, ...], rng: random.Random, now: float, recovered: Any) -> ProtocolCore:
        replica = shard_replica(
            settings, node, members, signer=keyring.signer(node), verifier=keyring.verifier(node),
            rng=rng, now=now, recovered=recovered,
        )
        behaviour = byzantine.get(node)
        if behaviour is None:
            return replica
        wrapped: ProtocolCore = ByzantineShardReplica(replica, behaviour, rng=rng)
        return wrapped

    return build


def _honest(core: ProtocolCore) -> ShardReplica:
    inner = core.inner if isinstance(core, ByzantineShardReplica) else core
    assert isinstance(inner, ShardReplica)
    return inner


def _leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    replica = _honest(core)
    return replica.leader_id, replica.term


def _leading_term(core: ProtocolCore) -> int | None:
    replica = _honest(core)
    return replica.term if replica.is_leader else None


def _status(core: ProtocolCore) -> GroupStatus:
    replica = _honest(core)
    raft = replica.raft
    metrics = {
        "shard.id": replica.shard,
        "shard.byzantine_quorum": int(replica.config.byzantine),
        "shard.lock": replica.lock_index,
        "shard.committed": replica.committed_index,
        "shard.applied": replica.applied_index,
        "shard.convicted": len(replica.convicted),
        "shard.deposed": len(replica.deposed),
        "shard.detections": len(replica.detections),
        "shard.locks": len(replica.store.locks),
        "shard.prepared": len(replica.store.prepared),
        **{f"shard.{k}": v for k, v in replica.metrics.items()},
    }
    return GroupStatus(
        role=raft.role.value,
        term=raft.term,
        leader=raft.leader_id,
        commit_index=replica.committed_index,
        last_index=raft.last_index,
        voters=tuple(sorted(raft.voters)),
        learners=tuple(sorted(raft.learners)),
        metrics=metrics,
    )


class ShardMembership:
    """Single-server membership changes through the Raft core; no transfers."""

    _raft = RaftMembership()
    actions = _raft.actions

    def busy(self, core: ProtocolCore) -> bool:
        return self._raft.busy(_honest(core).raft)

    def propose(self, core: ProtocolCore, action: str, node: NodeId, context: bytes, now: float) -> ProposeOutcome:
        return self._raft.propose(_honest(core).raft, action, node, context, now)

    def contexts(self, entries: Sequence[Any]) -> list[bytes]:
        return self._raft.contexts(entries)

    def transfer_leadership(self, core: ProtocolCore, target: NodeId, now: float) -> ProposeOutcome:
        return Refused("shards do not transfer leadership: a transfer would waive lazy voting")

    def change(self, core: ProtocolCore, change: MembershipChange, context: bytes, now: float) -> ProposeOutcome:
        return Refused("shards change one member at a time (no joint consensus)")

    def configuration(self, core: ProtocolCore) -> MembershipView:
        return self._raft.configuration(_honest(core).raft)


BINDING = Binding(
    name="hrb-shard",
    message_types=tuple(SHARD_MESSAGE_TYPES),
    hard_state_type=HardState,
    snapshot_type=Snapshot,
    parse_config=_parse_config,
    builder=_builder,
    leadership=_leadership,
    leading_term=_leading_term,
    status=_status,
    fault_model="byzantine",
    behaviours=BEHAVIOURS,
    membership=ShardMembership(),
    safety_monitor=lambda: ShardSafetyMonitor().check,
    simulator_only=True,
)
