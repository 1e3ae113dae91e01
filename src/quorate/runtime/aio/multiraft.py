"""A real node of a multi-Raft cluster: the meta group, range groups that come and go, one store.

Theory of operation. A ``MultiRaftNode`` is an ``AioNode`` (one transport,
one store, one driver loop, one fsync per turn for every group) whose host
holds the groups of ``quorate.multiraft``:

- **the meta group** (group 0, ``META_GROUP``) on the first ``replicas``
  nodes of the cluster (node ids 1..n): the range table;
- **range groups**, ids 1..``ranges`` at the start, cut by
  ``hex_split_keys`` and placed by ``initial_ranges`` (the same on every
  node, computed from the cluster's node ids); each replica of a first range
  starts, durably, from the range's bootstrap state;
- **the liveness detector** (``LIVENESS_GROUP``) when Raft groups quiesce
  (here by default: ``quiesce_after_s`` = ``DEFAULT_QUIESCE_AFTER_S``);
- **the registry group** (``REGISTRY_GROUP``) on every node, all voters: its
  store hosts the key registry, the private votes and the DKG
  (``AioNode.security_group``), so every node, meta voter or not, applies a
  key rotation or a revocation at the same index of one log. It is an
  ordinary Raft group with the nodes' options (it quiesces when idle; the
  liveness detector wakes it); clients reach it with ``Extension``
  operations in that group (``quorate keys ...``).

*Groups at run time.* A replica applying a split trigger asks to host the
right-hand range (``spawn``); a range leader's ``Retire`` or a finished move
drops a replica (``retire``). Both are carried out after the driver's turn
and never while a write is in flight (the store has one writer at a time):
a spawned group's bootstrap state is made durable before it is hosted; a
retired group's log, hard state and snapshot are dropped and a **tombstone**
is written in their place (a registry row of protocol ``TOMBSTONE``), so a
late message of that group never recreates it, after a restart too. A
message of a range group the node does not host makes it join that group
(an empty replica, a learner being added) only when it is a leader's
traffic from a node of the cluster and the group was never left here;
every other message for an unknown, retired or malformed group is dropped
and counted (``rejected.unknown group``), never a crash.

*Between services.* A range leader's calls to the meta group and the meta
group's answers (``MetaCall``, ``MetaAnswer``) and ``Retire`` travel as
frames of the group whose *service* they are for
(``AioNode.service_message_types``); one for this node itself is delivered
locally.

*Clients.* Requests carry their range's group id; a request for a group the
node does not host is answered ``wrong_range`` (with no descriptors: the
client asks the meta group). ``Status`` says protocol ``multiraft`` (the
client then routes by range); ``RangesStatus`` lists the hosted ranges.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from quorate.core.host import HostedGroup, NodeHost
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.multiraft.descriptor import (
    META_GROUP,
    REGISTRY_GROUP,
    RangeDescriptor,
    hex_split_keys,
    initial_ranges,
    rebalance_for,
)
from quorate.multiraft.groups import RaftGroups, is_leader_traffic
from quorate.multiraft.liveness import LIVENESS_GROUP, NodeAlive, NodeLiveness
from quorate.multiraft.messages import (
    MULTIRAFT,
    SERVICE_MESSAGE_TYPES,
    RangesReply,
    RangesStatus,
    RangeView,
)
from quorate.multiraft.range import RangeService, bootstrap_state, initial_image
from quorate.multiraft.table import RangeTable
from quorate.multiraft.wrong_range import wrong_range_reply
from quorate.runtime.aio.admin import CLIENT_REQUEST_TYPES, StatusReply
from quorate.runtime.aio.node import AioNode
from quorate.state.service import ClientRequest
from quorate.storage import GroupWrite
from quorate.storage.base import Recovered

__all__ = ["MULTIRAFT", "TOMBSTONE", "MultiRaftNode", "RangeLayout"]

TOMBSTONE = "tombstone"
"""The registry protocol of a group this node left (it is never hosted again)."""
DEFAULT_QUIESCE_AFTER_S = 1.0
"""Raft groups idle this long stop heartbeating (unless the options say otherwise)."""
MAX_RANGES = 4096
"""Most initial ranges a cluster may start with."""


@dataclass(frozen=True, slots=True)
class RangeLayout:
    """How a multi-Raft cluster starts: ``ranges`` range groups of
    ``replicas`` replicas each (the meta group has as many), split once a
    range applied ``split_at_ops`` client commands (0: never)."""

    ranges: int
    replicas: int = 3
    split_at_ops: int = 0

    def validate(self, nodes: int) -> RangeLayout:
        if isinstance(self.ranges, bool) or not isinstance(self.ranges, int) or not 1 <= self.ranges <= MAX_RANGES:
            raise ConfigError(f"ranges must be an integer within 1..{MAX_RANGES}, got {self.ranges!r}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or not 1 <= self.replicas <= nodes:
            raise ConfigError(f"replicas must be an integer within 1..{nodes} (the nodes), got {self.replicas!r}")
        if isinstance(self.split_at_ops, bool) or not isinstance(self.split_at_ops, int) or self.split_at_ops < 0:
            raise ConfigError(f"split_at_ops must be an integer >= 0 (0: never split), got {self.split_at_ops!r}")
        return self

    def initial(self, nodes: list[NodeId]) -> list[RangeDescriptor]:
        """The first ranges, the same on every node of ``nodes``."""
        return initial_ranges(hex_split_keys(self.ranges), [int(n) for n in nodes], self.replicas)


class MultiRaftNode(AioNode):
    """A node hosting the meta group, range groups and the liveness detector
    (see the module docstring). Arguments as for ``AioNode``, plus ``layout``;
    ``protocol`` must be Raft's binding and ``peers`` every other node."""

    service_message_types: tuple[type[WireMessage], ...] = SERVICE_MESSAGE_TYPES
    client_message_types: tuple[type[WireMessage], ...] = (*CLIENT_REQUEST_TYPES, RangesStatus)
    security_group = REGISTRY_GROUP

    def __init__(self, *args: Any, layout: RangeLayout, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups:
            raise ConfigError("a multi-Raft node hosts ranges, not extra groups")
        self.nodes = sorted({self.id, *self.peers})
        self.layout = layout.validate(len(self.nodes))
        self.initial = layout.initial(self.nodes)
        self.meta_voters = tuple(self.nodes[: layout.replicas])
        self.protocol_options = {
            "quiesce_after_s": DEFAULT_QUIESCE_AFTER_S,
            "lazy_commit": True,
            "elide_heartbeats": True,
            **self.protocol_options,
        }
        self.raft = RaftGroups.from_options(self.binding.protocol_options(self.protocol_options))
        self.tombstones: set[int] = set()
        self._group_changes: list[tuple[int, Recovered | None]] = []
        """(group, its bootstrap state) to host, or (group, None) to retire, after the turn."""
        self._rebalance = rebalance_for([int(n) for n in self.nodes]) if layout.split_at_ops else None

    # ------------------------------------------------------------ groups at start
    def _new_host(self) -> NodeHost:
        return NodeHost(self.id, on_unknown_group=self._join)

    def _initial_groups(self) -> tuple[list[HostedGroup], list[type]]:
        storage = self.storage_or_raise()
        records = {record.group: record for record in storage.groups()}
        self.tombstones = {g for g, record in records.items() if record.protocol == TOMBSTONE}
        for group, record in records.items():
            if record.protocol not in (TOMBSTONE, self.binding.name):
                raise ConfigError(
                    f"{self.data_dir} holds {record.protocol} data for group {group}; "
                    "give the multi-Raft node an empty data_dir"
                )
        now = self.clock()
        placed = {d.range_id: d for d in self.initial if int(self.id) in d.replicas}
        fresh = [d for gid, d in sorted(placed.items()) if gid not in records]
        if fresh:
            # The first ranges' bootstrap states, durable before any is hosted:
            # one registry transaction and one write for all of them.
            storage.create_groups([(d.range_id, self.binding.name, b"") for d in fresh])
            writes = []
            for d in fresh:
                hard_state, snapshot = bootstrap_state(d, initial_image(d))
                writes.append(GroupWrite(d.range_id, hard_state, [], snapshot))
            storage.persist_many(writes)
            records = {record.group: record for record in storage.groups()}
        groups: list[HostedGroup] = []
        if self.id in self.meta_voters:
            if META_GROUP not in records:
                storage.create_group(META_GROUP, self.binding.name)
            recovered = self._recover(META_GROUP)
            table = RangeTable(self.initial, [int(n) for n in self.nodes])
            rng = random.Random(self.rng.random())
            groups.append(self.raft.meta(self.id, self.meta_voters, table, rng, now, recovered))
        groups.append(self._build_group(REGISTRY_GROUP, self.binding, tuple(self.nodes), self.protocol_options))
        for group, record in sorted(records.items()):
            if group in (META_GROUP, REGISTRY_GROUP) or record.protocol == TOMBSTONE:
                continue
            groups.append(self._range_group(group, now, self._recover(group)))
        if self.raft.quiescent:
            liveness = NodeLiveness(self.id, self.host_or_raise(), now=now)
            groups.append(HostedGroup(LIVENESS_GROUP, liveness, None))
        self.counters["groups.recovered_tombstones"] = len(self.tombstones)
        return groups, [*self.binding.message_types, NodeAlive]

    def _recover(self, group: int) -> Recovered | None:
        binding = self.binding
        recovered = self.storage_or_raise().recover_group(group, binding.hard_state_type, binding.snapshot_type)
        if recovered.hard_state is None and recovered.snapshot is None and not recovered.entries:
            return None
        return recovered

    def _range_group(self, group: int, now: float, recovered: Recovered | None) -> HostedGroup:
        return self.raft.range(
            self.id,
            group,
            random.Random(self.rng.random()),
            now,
            recovered,
            meta_replicas=self.meta_voters,
            split_at_ops=self.layout.split_at_ops,
            spawn=self._spawn,
            retire=self._retire,
            rebalance=self._rebalance,
            read_mode=self.read_mode,
            snapshot_every=self.snapshot_every,
            stamp_clock=time.time,
            local_clock=self.clock,
        )

    # ------------------------------------------------------------ groups at run time
    def _join(self, sender: NodeId, group: int, message: Any, now: float) -> HostedGroup | None:
        """``NodeHost.on_unknown_group``: join a range group whose leader adds this node."""
        if (
            group in (META_GROUP, REGISTRY_GROUP, LIVENESS_GROUP)
            or group in self.tombstones
            or sender not in self.peers
            or not is_leader_traffic(message)
        ):
            return None
        driver = self._driver
        if driver is None or driver.persisting:
            return None  # the store is busy; the leader sends again
        self.storage_or_raise().create_group(group, self.binding.name)
        self.counters["groups.joined"] += 1
        return self._range_group(group, now, None)

    def _spawn(self, descriptor: RangeDescriptor, hard_state: Any, snapshot: Any) -> None:
        self._group_changes.append((descriptor.range_id, Recovered(hard_state, snapshot, [])))

    def _retire(self, group: int) -> None:
        self._group_changes.append((group, None))

    def _drive(self) -> None:
        super()._drive()
        while self._group_changes and not self._failed:
            driver = self._driver
            if driver is None or driver.persisting:
                return  # carried out once the write in flight is durable (``_persisted`` drives)
            self._change_groups()
            super()._drive()

    def _change_groups(self) -> None:
        host = self.host_or_raise()
        storage = self.storage_or_raise()
        registered = {record.group for record in storage.groups()}
        changes, self._group_changes = self._group_changes, []
        for group, recovered in changes:
            if recovered is None:
                if group in self.tombstones:
                    continue
                host.remove(group)
                self._leaders.pop(group, None)
                self._asked.pop(group, None)
                if group in registered:
                    storage.drop_group(group)
                storage.create_group(group, TOMBSTONE)
                self.tombstones.add(group)
                self.counters["groups.retired"] += 1
                continue
            if group in host or group in self.tombstones or group in registered:
                continue
            storage.create_group(group, self.binding.name)
            storage.persist_many([GroupWrite(group, recovered.hard_state, recovered.entries, recovered.snapshot)])
            host.add(self._range_group(group, self.clock(), recovered))
            self.counters["groups.spawned"] += 1

    # ------------------------------------------------------------ clients
    def _no_group_reply(self, group_id: int, message: WireMessage) -> WireMessage | None:
        if type(message) is not ClientRequest:
            return None
        return wrong_range_reply(message, error=f"{node_name(self.id)} hosts no group {group_id}")

    def _on_client_input(self, connection: int, message: WireMessage, group_id: int, now: float) -> None:
        if type(message) is RangesStatus:
            self.transport_or_raise().send_to_client(connection, self.ranges_status(message.seq), group_id)
            return
        super()._on_client_input(connection, message, group_id, now)

    def status(self, seq: int = 0, group_id: int = 0) -> StatusReply:
        return msgspec.structs.replace(super().status(seq, group_id), protocol=MULTIRAFT)

    def ranges_status(self, seq: int = 0) -> RangesReply:
        """Every range group this node hosts, as its replica sees it."""
        views = []
        for group in self.host_or_raise():
            service = group.state
            if not isinstance(service, RangeService) or group.binding is None:
                continue
            view = group.binding.status(group.core)
            d = service.descriptor
            views.append(
                RangeView(
                    range_id=group.id,
                    start=None if d is None else d.start,
                    end=None if d is None else d.end,
                    replicas=() if d is None else d.replicas,
                    generation=0 if d is None else d.generation,
                    role=view.role,
                    term=view.term,
                    leader=None if view.leader is None else int(view.leader),
                    commit_index=view.commit_index,
                    applied_index=service.applied,
                    quiesced=self.raft.is_quiesced(group),
                )
            )
        views.sort(key=lambda v: v.range_id)
        return RangesReply(seq, int(self.id), views, len(self.tombstones))

    @property
    def metrics(self) -> dict[str, int]:
        out = super().metrics
        host = self.host
        if host is not None:
            ranges = [g for g in host if isinstance(g.state, RangeService)]
            out["groups.hosted_ranges"] = len(ranges)
            out["groups.quiesced"] = sum(1 for g in ranges if self.raft.is_quiesced(g))
            out["groups.leading"] = sum(1 for g in ranges if g.binding is not None and g.binding.leadership(g.core)[0] == self.id)
            out["groups.tombstones"] = len(self.tombstones)
        return out
