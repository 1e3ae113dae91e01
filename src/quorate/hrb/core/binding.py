"""The core group's binding: what a runtime knows about an epoch's core group
(``quorate.core.binding``). Not registered in ``quorate.protocols``: a node
hosts core groups as part of HRB, not as a protocol of their own.

Theory of operation. A core group is a ``CoreReplica`` around a BFT core
(``bft``: ``hotstuff``, the default, or ``pbft``), so the binding is that
BFT protocol's plus HRB's own:

- message types: the BFT protocol's, the shards' inputs, the members'
  messages (``quorate.hrb.core.commands``) and ``CoreCertificate``;
- hard state: the BFT protocol's (the replica passes it through); snapshot:
  ``CoreStart`` (the epoch's starting state and this member's key share,
  persisted once when the member joins);
- the builder builds a node's replica for epoch ``CoreGroupSettings.epoch``:
  from the recovered ``CoreStart`` after a restart, else from
  ``settings.start(node)`` (genesis, or what the node kept), else as a
  joining member of the next epoch (it needs ``previous_members`` and its
  encryption secret). The runtime supplies what only it has: the threshold
  suite (``BlsSuite`` on real nodes, ``CostModelSuite`` in the simulator),
  the evidence checker of the shard tier, and the node's secrets;
- leadership and status: the BFT core's leader and view, plus the core's
  epoch, decisions, refusals and certificates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quorate.core.binding import (
    Binding,
    ClusterContext,
    CoreBuilder,
    GroupStatus,
    config_from_options,
)
from quorate.core.protocol import ProtocolCore
from quorate.errors import ConfigError
from quorate.hotstuff.binding import BINDING as HOTSTUFF
from quorate.hrb.core.commands import CORE_COMMAND_TYPES, CORE_MESSAGE_TYPES, Tick
from quorate.hrb.core.config import CoreConfig
from quorate.hrb.core.evidence import SignedMessageChecker
from quorate.hrb.core.replica import CoreReplica
from quorate.hrb.core.snapshot import CoreStart
from quorate.hrb.core.threshold import ThresholdSuite
from quorate.hrb.messages import CoreCertificate
from quorate.ids import NodeId
from quorate.pbft.binding import BINDING as PBFT

__all__ = ["BFT_BINDINGS", "CoreGroupSettings", "binding"]

BFT_BINDINGS: Mapping[str, Binding] = {"hotstuff": HOTSTUFF, "pbft": PBFT}
"""The BFT protocols a core can order with."""


@dataclass(frozen=True, slots=True)
class CoreGroupSettings:
    """A core group's settings: the options a user gives (``bft``, the BFT
    protocol's own options, the replica's timing) and what the runtime adds."""

    bft: str = "hotstuff"
    bft_settings: Any = None
    """The BFT binding's parsed config (``BftSettings``)."""
    core: CoreConfig = field(default_factory=CoreConfig)
    epoch: int = 0
    suite: ThresholdSuite | None = None
    start: Callable[[NodeId], CoreStart | None] | None = None
    previous_members: tuple[NodeId, ...] = ()
    encryption_secret: Callable[[NodeId], bytes] | None = None
    random_bytes: Callable[[int], bytes] | None = None
    checker: SignedMessageChecker | None = None


def _parse_config(options: Mapping[str, Any]) -> CoreGroupSettings:
    rest = dict(options)
    bft = rest.pop("bft", "hotstuff")
    if bft not in BFT_BINDINGS:
        raise ConfigError(f"bft must be one of {', '.join(BFT_BINDINGS)}, got {bft!r}")
    core_fields = set(CoreConfig.__dataclass_fields__)
    core_options = {k: rest.pop(k) for k in list(rest) if k in core_fields}
    core = config_from_options(CoreConfig, core_options, "HRB core")
    return CoreGroupSettings(bft=bft, bft_settings=BFT_BINDINGS[bft].parse_config(rest), core=core)


def _builder(settings: CoreGroupSettings, cluster: ClusterContext) -> CoreBuilder:
    keyring = cluster.keyring
    if keyring is None:
        raise ConfigError("the HRB core signs its messages: the runtime must provide keys")
    suite = settings.suite
    if suite is None:
        raise ConfigError("the HRB core needs a threshold suite (BLS on real nodes, the cost model in the simulator)")
    bft_binding = BFT_BINDINGS[settings.bft]
    bft_settings = settings.bft_settings if settings.bft_settings is not None else bft_binding.parse_config({})
    bft = bft_binding.builder(bft_settings, cluster)

    def build(node: NodeId, members: tuple[NodeId, ...], rng: random.Random, now: float, recovered: Any) -> ProtocolCore:
        start = settings.start(node) if settings.start is not None else None
        secret = settings.encryption_secret(node) if settings.encryption_secret is not None else b""
        return CoreReplica(
            node,
            settings.epoch,
            bft=bft,
            suite=suite,
            signer=keyring.signer(node),
            verifier=keyring.verifier(node),
            rng=rng,
            now=now,
            config=settings.core,
            checker=settings.checker,
            start=start,
            recovered=recovered,
            previous_members=settings.previous_members,
            encryption_secret=secret,
            random_bytes=settings.random_bytes,
            bft_name=settings.bft,
        )

    return build


def _replica(core: ProtocolCore) -> CoreReplica:
    assert isinstance(core, CoreReplica)
    return core


def _inner_binding(replica: CoreReplica) -> Binding:
    return BFT_BINDINGS.get(replica.bft_name, HOTSTUFF)


def _leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    replica = _replica(core)
    if replica.inner is None:
        return None, 0
    return _inner_binding(replica).leadership(replica.inner)


def _status(core: ProtocolCore) -> GroupStatus:
    replica = _replica(core)
    state, certifier = replica.state, replica.certifier
    metrics: dict[str, int] = {"hrb.core.epoch": replica.epoch}
    if state is not None:
        metrics["hrb.core.decisions"] = state.s.decisions
        metrics["hrb.core.open_txns"] = len(state.s.txns.open)
        metrics["hrb.core.clock_ticks"] = state.s.clock
        metrics["hrb.core.refusals"] = sum(state.s.refusals.values())
        metrics["hrb.core.evicted"] = len(state.evicted)
    if certifier is not None:
        metrics["hrb.core.certificates_combined"] = certifier.combined
        metrics["hrb.core.bad_partials"] = certifier.bad_partials
    if replica.inner is None:
        return GroupStatus(role=replica.phase.value, term=0, leader=None, metrics=metrics)
    inner = _inner_binding(replica).status(replica.inner)
    return GroupStatus(
        role=f"{replica.phase.value} {inner.role}",
        term=inner.term,
        leader=inner.leader,
        commit_index=inner.commit_index,
        last_index=inner.last_index,
        voters=inner.voters,
        metrics={**inner.metrics, **metrics},
    )


def binding(bft: str = "hotstuff") -> Binding:
    """The core group's binding over ``bft`` (``hotstuff`` or ``pbft``)."""
    if bft not in BFT_BINDINGS:
        raise ConfigError(f"bft must be one of {', '.join(BFT_BINDINGS)}, got {bft!r}")
    inner = BFT_BINDINGS[bft]
    messages = tuple(dict.fromkeys((*inner.message_types, *CORE_MESSAGE_TYPES, *CORE_COMMAND_TYPES, CoreCertificate)))
    return Binding(
        name="hrb-core",
        message_types=tuple(m for m in messages if m is not Tick),
        hard_state_type=inner.hard_state_type,
        snapshot_type=CoreStart,
        parse_config=_parse_config,
        builder=_builder,
        leadership=_leadership,
        status=_status,
        fault_model="byzantine",
        behaviours=inner.behaviours,
        pipelines_while_persisting=lambda settings: False,
    )
