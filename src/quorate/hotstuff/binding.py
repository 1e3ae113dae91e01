"""HotStuff's binding: what the runtimes know about chained HotStuff
(``quorate.core.binding``).

Byzantine faults (f < n/3); proposals, votes and NewViews signed through the
runtime's ``Keyring``; ``send_before_persist`` as for PBFT. Fault injection
wraps a member named in ``ClusterContext.byzantine`` in ``ByzantineReplica``.
The "term" a runtime sees is the view; the leader is the view's leader.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, cast

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
from quorate.errors import ConfigError
from quorate.hotstuff.byzantine import BEHAVIOURS, ByzantineReplica
from quorate.hotstuff.config import HotStuffConfig
from quorate.hotstuff.messages import HOTSTUFF_MESSAGE_TYPES, HardState
from quorate.hotstuff.node import HotStuffReplica
from quorate.hotstuff.qc import AggregateScheme, AggregateSignatures, QuorumSigner
from quorate.ids import NodeId

__all__ = ["BINDING"]


def _parse_config(options: Mapping[str, Any]) -> BftSettings:
    return bft_settings_from_options(HotStuffConfig, options, "HotStuff")


def _builder(settings: BftSettings, cluster: ClusterContext) -> CoreBuilder:
    keyring = bft_keyring(cluster, "HotStuff")
    config: HotStuffConfig = settings.core
    byzantine = dict(cluster.byzantine)

    def build(node: NodeId, members: tuple[NodeId, ...], rng: random.Random, now: float, recovered: Any) -> ProtocolCore:
        signer = keyring.signer(node)
        verifier = keyring.verifier(node)
        quorum_signer: QuorumSigner | None = None
        if config.quorum_certificates == "aggregate":
            if not (callable(getattr(verifier, "certify", None)) and callable(getattr(verifier, "verify_aggregate", None))):
                raise ConfigError("quorum_certificates = \"aggregate\" needs an aggregating signature scheme (BLS)")
            quorum_signer = AggregateSignatures(cast(AggregateScheme, verifier))
        core: ProtocolCore = HotStuffReplica(
            node,
            members,
            config=config,
            signer=signer,
            verifier=verifier,
            rng=rng,
            now=now,
            recovered=recovered,
            quorum_signer=quorum_signer,
        )
        behaviour = byzantine.get(node)
        if behaviour is None:
            return core
        wrapped: ProtocolCore = ByzantineReplica(
            core, behaviour, rng=rng, signer=signer, peers=members, view_timeout_s=config.view_timeout_s
        )
        return wrapped

    return build


def _honest(core: ProtocolCore) -> HotStuffReplica:
    return honest_core(core, ByzantineReplica, HotStuffReplica)


def _leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    replica = _honest(core)
    return replica.leader(replica.view), replica.view


def _status(core: ProtocolCore) -> GroupStatus:
    replica = _honest(core)
    leader = replica.leader(replica.view)
    return bft_status(
        role="leader" if leader == replica.id else "replica",
        view=replica.view,
        leader=leader,
        committed=replica.committed_index,
        voters=replica.replicas,
        detections=len(replica.detections),
        excluded=replica.excluded,
    )


def _evidence(core: ProtocolCore) -> list[Evidence]:
    return _honest(core).evidence.detections


BINDING = Binding(
    name="hotstuff",
    message_types=tuple(HOTSTUFF_MESSAGE_TYPES),
    hard_state_type=HardState,
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
