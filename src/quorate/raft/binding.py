"""Raft's binding: what the runtimes know about Raft (``quorate.core.binding``).

Crash faults only (a majority must be up); no keys; membership changes one
server at a time (thesis §4.1) or several at once through joint consensus
(thesis §4.3), with flexible quorum sizes (``RaftMembership.change``), the
member address book carried in each configuration entry's context;
leadership transfer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from quorate.core.binding import (
    MEMBERSHIP_TRANSITIONS,
    Binding,
    ClusterContext,
    CoreBuilder,
    GroupStatus,
    MembershipChange,
    MembershipView,
    config_from_options,
)
from quorate.core.protocol import ProposeOutcome, ProtocolCore, Refused
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.raft.config import RaftConfig
from quorate.raft.invariants import RaftSafetyMonitor
from quorate.raft.messages import (
    RAFT_MESSAGE_TYPES,
    ConfChange,
    ConfChangeKind,
    ConfChangeTransition,
    EntryKind,
    HardState,
    Snapshot,
)
from quorate.raft.node import RaftNode, decode_conf_state

__all__ = ["BINDING", "RaftMembership"]

_ACTIONS = {
    "add": ConfChangeKind.ADD_VOTER,
    "add_learner": ConfChangeKind.ADD_LEARNER,
    "promote": ConfChangeKind.PROMOTE_LEARNER,
    "remove": ConfChangeKind.REMOVE_NODE,
}


def _parse_config(options: Mapping[str, Any]) -> RaftConfig:
    config: RaftConfig = config_from_options(RaftConfig, options, "Raft")
    return config


def _builder(config: RaftConfig, cluster: ClusterContext) -> CoreBuilder:
    if cluster.byzantine:
        raise ConfigError("Raft tolerates crash faults only; Byzantine replicas need pbft or hotstuff")

    def build(node: NodeId, members: tuple[NodeId, ...], rng: random.Random, now: float, recovered: Any) -> ProtocolCore:
        return RaftNode(node, members, config=config, rng=rng, now=now, recovered=recovered)

    return build


def _leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    raft: RaftNode = core  # type: ignore[assignment]
    return raft.leader_id, raft.term


def _leading_term(core: ProtocolCore) -> int | None:
    raft: RaftNode = core  # type: ignore[assignment]
    return raft.term if raft.is_leader else None


def _status(core: ProtocolCore) -> GroupStatus:
    raft: RaftNode = core  # type: ignore[assignment]
    return GroupStatus(
        role=raft.role.value,
        term=raft.term,
        leader=raft.leader_id,
        commit_index=raft.commit_index,
        last_index=raft.last_index,
        voters=tuple(sorted(raft.voters)),
        learners=tuple(sorted(raft.learners)),
    )


_TRANSITIONS = {
    "auto": ConfChangeTransition.AUTO,
    "joint": ConfChangeTransition.JOINT_IMPLICIT,
    "joint_explicit": ConfChangeTransition.JOINT_EXPLICIT,
}
assert tuple(_TRANSITIONS) == MEMBERSHIP_TRANSITIONS


class RaftMembership:
    """Membership changes (one server, or several through joint consensus,
    with quorum sizes) and leadership transfer."""

    actions = tuple(_ACTIONS)

    def busy(self, core: ProtocolCore) -> bool:
        raft: RaftNode = core  # type: ignore[assignment]
        if raft.transfer_target is not None:
            return True
        conf = raft.configuration
        if conf.joint and conf.auto_leave:
            return True  # the leader leaves it by itself
        commit = raft.commit_index
        if raft.term_at(commit) != raft.term:
            return True  # a new leader first commits in its own term (thesis §4.1)
        for index in range(commit + 1, raft.last_index + 1):
            entry = raft.entry_at(index)
            if entry is not None and entry.kind == EntryKind.CONFIG:
                return True  # the previous change is still committing
        return False

    def propose(self, core: ProtocolCore, action: str, node: NodeId, context: bytes, now: float) -> ProposeOutcome:
        kind = _ACTIONS.get(action)
        if kind is None:
            return Refused(f"unknown membership action {action!r}; choose one of {', '.join(_ACTIONS)}")
        raft: RaftNode = core  # type: ignore[assignment]
        return raft.propose_conf_change(ConfChange(kind, node, context), now)

    def contexts(self, entries: Sequence[Any]) -> list[bytes]:
        out = []
        for entry in entries:
            if entry.kind != EntryKind.CONFIG:
                continue
            try:
                out.append(decode_conf_state(entry.data).context)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # the core rejects and counts a malformed entry itself
        return out

    def transfer_leadership(self, core: ProtocolCore, target: NodeId, now: float) -> ProposeOutcome:
        raft: RaftNode = core  # type: ignore[assignment]
        return raft.transfer_leadership(target, now)

    def change(
        self, core: ProtocolCore, change: MembershipChange, context: bytes, now: float
    ) -> ProposeOutcome:
        transition = _TRANSITIONS.get(change.transition)
        if transition is None:
            return Refused(
                f"unknown transition {change.transition!r}; choose one of {', '.join(_TRANSITIONS)}"
            )
        changes = [ConfChange(ConfChangeKind.ADD_VOTER, node) for node in change.add]
        changes += [ConfChange(ConfChangeKind.REMOVE_NODE, node) for node in change.remove]
        changes += [ConfChange(ConfChangeKind.ADD_LEARNER, node) for node in change.add_learners]
        raft: RaftNode = core  # type: ignore[assignment]
        return raft.propose_conf_change_v2(
            changes, now, transition=transition, quorum=change.quorum, context=context
        )

    def configuration(self, core: ProtocolCore) -> MembershipView:
        raft: RaftNode = core  # type: ignore[assignment]
        conf = raft.configuration
        return MembershipView(
            voters=tuple(sorted(conf.voters)),
            learners=tuple(sorted(conf.learners)),
            outgoing=tuple(sorted(conf.outgoing)),
            election_quorum=raft.election_quorum,
            commit_quorum=raft.commit_quorum,
            explicit_quorum=bool(conf.election_quorum),
            auto_leave=conf.auto_leave,
        )


BINDING = Binding(
    name="raft",
    message_types=tuple(RAFT_MESSAGE_TYPES),
    hard_state_type=HardState,
    snapshot_type=Snapshot,  # a ConfiguredSnapshot, its subclass, is stored and read back as itself
    parse_config=_parse_config,
    builder=_builder,
    leadership=_leadership,
    leading_term=_leading_term,
    status=_status,
    fault_model="crash",
    membership=RaftMembership(),
    safety_monitor=lambda: RaftSafetyMonitor().check,  # type: ignore[arg-type,return-value]
)
