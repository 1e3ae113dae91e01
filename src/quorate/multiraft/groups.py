"""How a node builds multi-Raft's Raft groups.

The one module of ``quorate.multiraft`` that names Raft's classes: a
runtime (the simulator, a real node) asks a ``RaftGroups`` for the meta
group and for range groups, and asks ``is_leader_traffic`` whether a message
for a group the node does not host should make it join that group.

- The meta group's replicas are fixed voters; its service is a
  ``MetaService`` over the ``RangeTable`` it is given.
- A range group's core starts with no configuration of its own (``join``):
  it learns its voters from the bootstrap state or from the leader that adds
  it, and its service is a ``RangeService`` over a fresh ``RangeStore``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quorate.core.host import HostedGroup
from quorate.ids import NodeId
from quorate.multiraft.descriptor import META_GROUP
from quorate.multiraft.meta import MetaService
from quorate.multiraft.range import RangeService, RangeStore
from quorate.multiraft.table import RangeTable
from quorate.raft.binding import BINDING
from quorate.raft.config import RaftConfig
from quorate.raft.messages import AppendEntries, Heartbeat, InstallSnapshot
from quorate.raft.node import RaftNode, RecoveredState

__all__ = ["RaftGroups", "is_leader_traffic"]

_LEADER_TRAFFIC = (AppendEntries, Heartbeat, InstallSnapshot)


def is_leader_traffic(message: object) -> bool:
    """True for the messages only a group's leader sends: a node that gets
    one for a range group it does not host is being added to that group."""
    return isinstance(message, _LEADER_TRAFFIC)


@dataclass(frozen=True)
class RaftGroups:
    """The Raft settings of the meta group and of range groups, and how to build each."""

    meta_config: RaftConfig
    range_config: RaftConfig

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RaftGroups:
        """From Raft's options (``quorate.raft.config``); raises ``ConfigError`` on a bad one."""
        meta: RaftConfig = BINDING.parse_config(options)
        return cls(meta, dataclasses.replace(meta, join=True))

    @property
    def quiescent(self) -> bool:
        """Groups go quiet when idle, so a node-level liveness detector must wake them."""
        return self.meta_config.quiesce_after_s > 0

    @staticmethod
    def is_quiesced(group: HostedGroup) -> bool:
        """True when ``group`` is a Raft group that went quiet (no heartbeats)."""
        core = group.core
        return isinstance(core, RaftNode) and core.quiesced

    def meta(
        self,
        node: NodeId,
        voters: Sequence[NodeId],
        table: RangeTable,
        rng: random.Random,
        now: float,
        recovered: RecoveredState | None,
    ) -> HostedGroup:
        """The meta group's replica on ``node`` (its state is a ``MetaService``)."""
        core = RaftNode(node, tuple(voters), config=self.meta_config, rng=rng, now=now, recovered=recovered)
        service = MetaService(core, table)
        if recovered is not None and recovered.snapshot is not None:
            service.restore(recovered.snapshot)
        return HostedGroup(META_GROUP, core, BINDING, state=service)

    def range(
        self,
        node: NodeId,
        group: int,
        rng: random.Random,
        now: float,
        recovered: RecoveredState | None,
        **service: Any,
    ) -> HostedGroup:
        """Range group ``group``'s replica on ``node`` (its state is a
        ``RangeService``; ``service`` are that service's keyword arguments)."""
        core = RaftNode(node, (), config=self.range_config, rng=rng, now=now, recovered=recovered)
        range_service = RangeService(core, RangeStore(), **service)
        if recovered is not None and recovered.snapshot is not None:
            range_service.restore(recovered.snapshot)
        return HostedGroup(group, core, BINDING, state=range_service)
