"""Casper FFG's binding: what the runtimes know about the finality gadget
(``quorate.core.binding``).

Byzantine faults (less than 1/3 of the stake; equal stakes, so f < n/3);
blocks and votes signed through the runtime's ``Keyring``;
``send_before_persist`` as for PBFT and HotStuff. Fault injection wraps a
validator named in ``ClusterContext.byzantine`` in ``ByzantineValidator``.
The "term" a runtime sees is the slot; the "leader" is the slot's proposer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from quorate.casper.byzantine import BEHAVIOURS, ByzantineValidator
from quorate.casper.config import CasperConfig
from quorate.casper.evidence import SLASHING
from quorate.casper.messages import CASPER_MESSAGE_TYPES, HardState
from quorate.casper.validator import CasperValidator
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
from quorate.core.evidence import register_evidence_kind
from quorate.core.protocol import ProtocolCore
from quorate.ids import NodeId

__all__ = ["BINDING"]


def _parse_config(options: Mapping[str, Any]) -> BftSettings:
    return bft_settings_from_options(CasperConfig, options, "Casper")


def _builder(settings: BftSettings, cluster: ClusterContext) -> CoreBuilder:
    keyring = bft_keyring(cluster, "Casper")
    config: CasperConfig = settings.core
    byzantine = dict(cluster.byzantine)

    def build(node: NodeId, members: tuple[NodeId, ...], rng: random.Random, now: float, recovered: Any) -> ProtocolCore:
        signer = keyring.signer(node)
        core: ProtocolCore = CasperValidator(
            node, members, config=config, signer=signer, verifier=keyring.verifier(node), rng=rng, now=now, recovered=recovered
        )
        behaviour = byzantine.get(node)
        if behaviour is None:
            return core
        wrapped: ProtocolCore = ByzantineValidator(core, behaviour, rng=rng, signer=signer, peers=members)
        return wrapped

    return build


def _honest(core: ProtocolCore) -> CasperValidator:
    return honest_core(core, ByzantineValidator, CasperValidator)


def _leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    validator = _honest(core)
    return validator.proposer(validator.slot), validator.slot


def _status(core: ProtocolCore) -> GroupStatus:
    validator = _honest(core)
    proposer = validator.proposer(validator.slot)
    return bft_status(
        role="proposer" if proposer == validator.id else "validator",
        view=validator.slot,
        leader=proposer,
        committed=validator.committed_index,
        voters=validator.validators,
        detections=len(validator.detections),
        excluded=validator.excluded,
        extra={
            "casper.justified_epoch": validator.justified.epoch,
            "casper.finalized_epoch": validator.finalized.epoch,
        },
    )


BINDING = Binding(
    name="casper",
    message_types=tuple(CASPER_MESSAGE_TYPES),
    hard_state_type=HardState,
    snapshot_type=None,
    parse_config=_parse_config,
    builder=_builder,
    leadership=_leadership,
    status=_status,
    fault_model="byzantine",
    behaviours=tuple(BEHAVIOURS),
    pipelines_while_persisting=bft_pipelines,
    evidence=lambda core: _honest(core).evidence.detections,
)
register_evidence_kind(SLASHING)
