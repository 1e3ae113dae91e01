"""PBFT's binding: what the runtimes know about PBFT (``quorate.core.binding``).

Byzantine faults (f < n/3); every message signed through the runtime's
``Keyring``, or with ``authentication = "macs"`` pre-prepares, prepares and
commits authenticated with the keyring's MAC authenticators (view changes,
new-views and checkpoints stay signed). ``send_before_persist`` (default
false) lets a replica's messages leave before its Ready is durable (the
trade-off is in ``quorate.core.binding.BftSettings``). Fault injection wraps
a member named in ``ClusterContext.byzantine`` in ``ByzantineReplica``;
equivocators beyond f (only in runs that allow it) collude through one
``Coalition``, which is what can actually break agreement.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from quorate.core.binding import (
    BftSettings,
    Binding,
    ClusterContext,
    CoreBuilder,
    GroupStatus,
    bft_keyring,
    bft_pipelines,
    bft_settings_from_options,
    bft_status,
    honest_core,
)
from quorate.core.evidence import Evidence
from quorate.core.protocol import ProtocolCore
from quorate.ids import NodeId
from quorate.pbft.byzantine import BEHAVIOURS, ByzantineReplica, Coalition
from quorate.pbft.config import AUTH_MACS, PbftConfig
from quorate.pbft.messages import PBFT_MESSAGE_TYPES, PbftHardState
from quorate.pbft.replica import PbftReplica

__all__ = ["BINDING"]


def _parse_config(options: Mapping[str, Any]) -> BftSettings:
    # PbftConfig.validate needs the member count: the replica validates it.
    return bft_settings_from_options(PbftConfig, options, "PBFT", validate=False)


def _builder(settings: BftSettings, cluster: ClusterContext) -> CoreBuilder:
    keyring = bft_keyring(cluster, "PBFT")
    config: PbftConfig = settings.core
    byzantine = dict(cluster.byzantine)
    equivocators = frozenset(n for n, b in byzantine.items() if b == "equivocate")
    coalitions: dict[tuple[NodeId, ...], Coalition] = {}

    def build(node: NodeId, members: tuple[NodeId, ...], rng: random.Random, now: float, recovered: Any) -> ProtocolCore:
        signer = keyring.signer(node)
        core = PbftReplica(
            node,
            members,
            config=config,
            signer=signer,
            verifier=keyring.verifier(node),
            rng=rng,
            now=now,
            recovered=recovered,
            authenticator=keyring.mac_authenticator(node, members) if config.authentication == AUTH_MACS else None,
        )
        behaviour = byzantine.get(node)
        if behaviour is None:
            return core
        coalition = None
        if behaviour == "equivocate" and len(equivocators) > (len(members) - 1) // 3:
            coalition = coalitions.get(members)
            if coalition is None:
                coalition = coalitions[members] = Coalition(equivocators, members)
        wrapped: ProtocolCore = ByzantineReplica(core, behaviour, rng=rng, signer=signer, peers=members, coalition=coalition)
        return wrapped

    return build


def _honest(core: ProtocolCore) -> PbftReplica:
    return honest_core(core, ByzantineReplica, PbftReplica)


def _leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    replica = _honest(core)
    return replica.primary, replica.view


def _status(core: ProtocolCore) -> GroupStatus:
    replica = _honest(core)
    return bft_status(
        role="primary" if replica.is_primary else "backup",
        view=replica.view,
        leader=replica.primary,
        committed=replica.entry_index,
        voters=replica.replicas,
        detections=len(replica.detections),
        excluded=replica.excluded,
        extra={"bft.executed_seq": replica.executed_seq},
    )


def _evidence(core: ProtocolCore) -> list[Evidence]:
    return _honest(core).pool.detections


BINDING = Binding(
    name="pbft",
    message_types=tuple(PBFT_MESSAGE_TYPES),
    hard_state_type=PbftHardState,
    snapshot_type=None,
    parse_config=_parse_config,
    builder=_builder,
    leadership=_leadership,
    status=_status,
    fault_model="byzantine",
    behaviours=tuple(BEHAVIOURS),
    pipelines_while_persisting=bft_pipelines,
    evidence=_evidence,
)
