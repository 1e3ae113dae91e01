"""Multi-Raft in the simulator: many range groups per node, a meta group, clients that route by key.

Theory of operation. A ``MultiRaftSimulation`` is a ``Simulation``
(``runtime.sim.cluster``: the same engine, network, faults, workload,
history and online checks) whose nodes host many groups
(``quorate.core.host.NodeHost``) built from ``quorate.multiraft``:

- **group 0, the meta group**, on the first ``replicas`` nodes: the range
  table (``MetaService`` over ``RangeTable``);
- **range groups** 1..G at the start, cut from the workload's keys so each
  holds as many keys, placed by ``initial_ranges`` (each node the first
  replica, the preferred leader, of as many ranges as any other); each
  starts from the bootstrap state of ``quorate.multiraft.range``;
- **the liveness detector** (``LIVENESS_GROUP``) on every node, when the
  Raft groups quiesce (they do by default here: ``quiesce_after_s`` = 1 s).

Groups come and go while the run goes on: a replica that applies a split
trigger creates the right-hand group on its node (``SimNode.spawn``); a node
that receives leader traffic of a range group it does not host creates an
empty joining replica (a learner being added), unless it left that group
before (tombstones); a replica retired from a range is dropped
(``SimNode.retire``). A client's request for a group its node does not host
is answered ``wrong_range`` without descriptors.

Clients route every key through a ``RangeCache`` (``RangeRouter``): to the
range's leader hint, else to one of its replicas; a wrong-range answer (any
of the kinds ``quorate.multiraft.wrong_range`` reads, as the real clients
do) is counted (``wrong_range_answers``) and refreshes the cache from the
descriptors it carries, or by a ``LookupKey`` to the meta group when they
do not move the key; the request then goes again.

Checks, online: each group's own Raft safety monitor (one per group, from
the binding), agreement on commands, results and state per group, and no
lost acknowledged write; offline, the history per key (the key space is
one, whatever range serves a key). Splits start when a range applied
``split_at_ops`` client commands; the right-hand range of each split then
moves one replica to another node (``rebalance``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from quorate.core.host import HostedGroup
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.multiraft.descriptor import META_GROUP, initial_ranges, rebalance_for
from quorate.multiraft.groups import RaftGroups, is_leader_traffic
from quorate.multiraft.liveness import (
    DEFAULT_INTERVAL_S,
    DEFAULT_SUSPICION_S,
    LIVENESS_GROUP,
    NodeLiveness,
)
from quorate.multiraft.range import bootstrap_state, initial_image
from quorate.multiraft.routing import RangeCache
from quorate.multiraft.table import (
    LookupKey,
    MetaResult,
    RangeTable,
    decode_meta_result,
    encode_meta_op,
)
from quorate.multiraft.wrong_range import refresh, stale_range, wrong_range_reply
from quorate.runtime.sim.agreement import AgreementMonitor
from quorate.runtime.sim.cluster import SimConfig, SimResult, Simulation
from quorate.runtime.sim.engine import derive_rng
from quorate.runtime.sim.node import Grouped, SimNode
from quorate.runtime.sim.protocols import ServiceCodec
from quorate.runtime.sim.workload import ReplyView, Workload
from quorate.state.service import STATUS_OK, STATUS_REDIRECT, ClientReply, ClientRequest
from quorate.storage.base import Recovered
from quorate.storage.memory import MemoryStorage

__all__ = ["MultiRaftConfig", "MultiRaftResult", "MultiRaftSimulation", "RangeRouter", "run_multiraft"]

DEFAULT_QUIESCE_AFTER_S = 1.0
KEYS_PER_RANGE = 8
"""Default key space: this many workload keys per initial range."""
LOOKUP_CLIENT = 0
"""The client id of range lookups (reads: no session)."""
LOOKUP_RETRY_S = 0.25
"""A client sends no second lookup for a key within this long."""


@dataclass(slots=True)
class MultiRaftConfig(SimConfig):
    """A ``SimConfig`` for ``quorate sim multiraft`` (``protocol`` is its name)."""

    protocol: str = "multiraft"
    groups: int = 16
    """Range groups at the start (the meta group comes on top)."""
    replicas: int = 3
    """Replicas of each range and of the meta group."""
    split_at_ops: int = 0
    """A range splits once it applied this many client commands (0: never)."""
    keys: int = 0
    """Workload keys (0: ``KEYS_PER_RANGE`` per initial range)."""
    liveness_interval_s: float = DEFAULT_INTERVAL_S
    liveness_suspicion_s: float = DEFAULT_SUSPICION_S

    def validate(self) -> None:
        if self.groups < 1:
            raise ConfigError(f"groups must be >= 1, got {self.groups}")
        if not 1 <= self.replicas <= self.nodes:
            raise ConfigError(f"replicas must be within 1..{self.nodes} (the nodes), got {self.replicas}")
        if self.split_at_ops < 0:
            raise ConfigError(f"split_at_ops must be >= 0 (0: never split), got {self.split_at_ops}")
        if self.keys and self.keys < self.groups:
            raise ConfigError(f"{self.groups} ranges need at least as many keys, got {self.keys}")
        if self.byzantine.strip() not in ("", "none"):
            raise ConfigError("multi-Raft tolerates crash faults only; --byzantine needs pbft or hotstuff")
        if self.controls_quorum:
            raise ConfigError(
                "multi-Raft places and moves range replicas itself; --voters, --quorum, "
                "--quorum-manager and --reconfigure-every are for quorate sim raft"
            )
        if not 0 < self.liveness_interval_s < self.liveness_suspicion_s:
            raise ConfigError("the liveness interval must be > 0 and below the suspicion timeout")
        SimConfig.validate(dataclasses.replace(self, keys=self.key_count()))

    def key_count(self) -> int:
        return self.keys or KEYS_PER_RANGE * self.groups

    def fault_schedule(self, spec: Any = None) -> Any:
        # Chaos crashes at most what one range tolerates at once.
        if self.faults.strip() == "chaos" and self.max_crashed is None:
            return SimConfig.fault_schedule(dataclasses.replace(self, max_crashed=(self.replicas - 1) // 2))
        return SimConfig.fault_schedule(self, spec)


@dataclass(slots=True)
class MultiRaftResult(SimResult):
    groups: int = 0
    """Range groups in the range table at the end."""
    splits: int = 0
    moves: int = 0
    quiesced_groups: int = 0
    """Range groups whose leader was quiesced at the end."""
    hosted_replicas: int = 0
    """Replicas of range groups hosted on live nodes at the end."""
    liveness_suspicions: int = 0
    meta_lookups: int = 0
    cache_refreshes: int = 0
    wrong_range_answers: int = 0


class RangeRouter:
    """The clients' routing through one shared ``RangeCache`` (a client's
    view is the cache's; sharing it only makes the clients learn faster)."""

    __slots__ = (
        "_codec",
        "_lookup_seq",
        "_lookups",
        "_meta",
        "_meta_guess",
        "_rng",
        "_send",
        "_sent",
        "cache",
        "lookups",
        "wrong_range",
    )

    def __init__(
        self, cache: RangeCache, meta: tuple[int, ...], send: Callable[[int, int, Any, float], None], rng: random.Random
    ) -> None:
        self.cache = cache
        self._meta = meta
        self._meta_guess = 0
        self._send = send
        self._rng = rng
        self._codec = ServiceCodec()
        self._sent: dict[tuple[int, int], tuple[str, int, int]] = {}
        """(session, seq) -> (key, range, replica) of the request in flight."""
        self._lookups: dict[str, float] = {}
        """Key -> when its last lookup left."""
        self._lookup_seq = 0
        self.lookups = 0
        self.wrong_range = 0

    def send(self, endpoint: int, key: str, request: Any, now: float) -> None:
        d = self.cache.lookup(key)
        if d is None:  # the cache tiles the key space: never
            raise ConfigError(f"no cached range holds key {key!r}")
        to = self.cache.leader(d.range_id)
        if to is None:
            to = NodeId(d.replicas[self._rng.randrange(len(d.replicas))])
            self.cache.set_leader(d.range_id, to)
        self._sent[(request.client, request.seq)] = (key, d.range_id, to)
        self._send(endpoint, to, Grouped(d.range_id, request), now)

    def timed_out(self, process: int, seq: int) -> None:
        sent = self._sent.pop((process + 1, seq), None)
        if sent is not None and self.cache.leader(sent[1]) == sent[2]:
            self.cache.set_leader(sent[1], None)

    def reply(self, event: tuple[float, int, int, int, int, Any, int]) -> ReplyView | None:
        message, node, now, endpoint = event[5], NodeId(event[4]), event[0], event[3]
        group = 0
        if type(message) is Grouped:
            group, message = message.group, message.message
        if type(message) is not ClientReply:
            return None
        if message.client == LOOKUP_CLIENT:
            self._lookup_answer(node, message)
            return None
        sent = self._sent.get((message.client, message.seq))
        if sent is None or sent[1] != group:
            return None  # a late answer to an earlier attempt
        key, range_id, _ = sent
        status = message.status
        known = stale_range(message)
        if known is not None:
            self.wrong_range += 1
            if refresh(self.cache, key, range_id, known):
                self._lookup(endpoint, key, now)
            return ReplyView(message.client - 1, message.seq, "redirect", leader=None)
        if status == STATUS_REDIRECT:
            self.cache.set_leader(range_id, None if message.leader is None else NodeId(message.leader))
        elif status == STATUS_OK:
            self.cache.set_leader(range_id, node)
        view = self._codec.reply(message)
        if view is not None and view.status != "redirect":
            del self._sent[(message.client, message.seq)]
        return view

    def _lookup(self, endpoint: int, key: str, now: float) -> None:
        last = self._lookups.get(key)
        if last is not None and now - last < LOOKUP_RETRY_S:
            return
        self._lookups[key] = now
        self._lookup_seq += 1
        self.lookups += 1
        to = self._meta[self._meta_guess % len(self._meta)]
        self._send(endpoint, to, ClientRequest(LOOKUP_CLIENT, self._lookup_seq, encode_meta_op(LookupKey(key))), now)

    def _lookup_answer(self, node: NodeId, reply: ClientReply) -> None:
        if reply.status == STATUS_OK:
            result = _meta_result(reply.result)
            if result is not None and result.ok:
                self.cache.update(result.ranges)
            return
        if reply.status == STATUS_REDIRECT and reply.leader is not None and reply.leader in self._meta:
            self._meta_guess = self._meta.index(reply.leader)
        else:
            self._meta_guess += 1


def _meta_result(data: bytes) -> MetaResult | None:
    try:
        return decode_meta_result(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def unknown_group_reply(group: int, request: Any) -> Any:
    """A node's answer to a client's request for a range it does not host."""
    if type(request) is not ClientRequest:
        return None
    return wrong_range_reply(request, error=f"this node hosts no group {group}")


class MultiRaftSimulation(Simulation):
    """A ``Simulation`` of multi-Raft (see the module docstring)."""

    config: MultiRaftConfig

    def _protocol_name(self) -> str:
        return "raft"

    def _protocol_options(self) -> dict[str, Any]:
        return {"quiesce_after_s": DEFAULT_QUIESCE_AFTER_S, **self.config.protocol_options}

    def _setup(self) -> None:
        config = self.config
        keys = sorted(f"k{i}" for i in range(config.key_count()))
        per = len(keys) / config.groups
        splits = [keys[round(k * per)] for k in range(1, config.groups)]
        self.initial = initial_ranges(splits, self.voters, config.replicas)
        self.placed = {d.range_id: d for d in self.initial}
        self.meta_voters = self.voters[: config.replicas]
        self.groups = RaftGroups.from_options(self._protocol_options())
        self.quiescent = self.groups.quiescent
        self.rebalance = rebalance_for(self.voters) if config.split_at_ops else None
        self.placement: dict[int, list[int]] = {}
        """Node -> the first ranges it holds a replica of."""
        for d in self.initial:
            for node in d.replicas:
                self.placement.setdefault(node, []).append(d.range_id)
        self.group_agreement: dict[int, AgreementMonitor] = {}
        self.range_leaders: dict[tuple[int, int], int] = {}

    # -- groups ---------------------------------------------------------------
    def _node_groups(self, i: int) -> dict[str, Any]:
        initial = [META_GROUP] if i < len(self.meta_voters) else []
        initial += self.placement.get(i + 1, [])
        if self.quiescent:
            initial.append(LIVENESS_GROUP)
        placed = self.placed

        def build(node: NodeId, group: int, now: float, recovered: Recovered | None) -> HostedGroup | None:
            if group == LIVENESS_GROUP:
                sim = self.nodes[i]
                assert sim.host is not None
                liveness = NodeLiveness(
                    node,
                    sim.host,
                    now=now,
                    interval_s=self.config.liveness_interval_s,
                    suspicion_s=self.config.liveness_suspicion_s,
                )
                return HostedGroup(group, liveness, None)
            if group == META_GROUP:
                return self._meta_group(i, node, now, recovered)
            descriptor = placed.get(group)
            if recovered is None and descriptor is not None:
                # A first range, fresh: start from its bootstrap state, durably.
                hard_state, snapshot = bootstrap_state(descriptor, initial_image(descriptor))
                recovered = Recovered(hard_state, snapshot, [])
                storage = self.nodes[i].storages[group] = MemoryStorage()
                storage.persist(hard_state, [], snapshot)
            return self._range_group(i, node, group, now, recovered)

        def on_unknown(node: NodeId, sender: NodeId, group: int, message: Any, now: float) -> HostedGroup | None:
            if group in (META_GROUP, LIVENESS_GROUP) or not 1 <= sender <= self.config.nodes:
                return None
            if not is_leader_traffic(message):
                return None  # only a leader's traffic makes a replica join
            return self._range_group(i, node, group, now, None)

        return {
            "group_factory": build,
            "initial_groups": initial,
            "unknown_group": on_unknown,
            "unknown_group_reply": unknown_group_reply,
        }

    def _rng(self, i: int, group: int) -> random.Random:
        epoch = self.nodes[i].epoch if i < len(self.nodes) else 0
        return derive_rng(self.config.seed, f"core{epoch}:{group}", i)

    def _meta_group(self, i: int, node: NodeId, now: float, recovered: Recovered | None) -> HostedGroup:
        table = RangeTable(self.initial, self.voters)
        group = self.groups.meta(node, self.meta_voters, table, self._rng(i, META_GROUP), now, recovered)
        self._monitor_results(META_GROUP, group.state, group.state.table)
        return group

    def _range_group(self, i: int, node: NodeId, group: int, now: float, recovered: Recovered | None) -> HostedGroup:
        sim: SimNode = self.nodes[i]
        hosted = self.groups.range(
            node,
            group,
            self._rng(i, group),
            now,
            recovered,
            meta_replicas=self.meta_voters,
            split_at_ops=self.config.split_at_ops,
            spawn=lambda d, hard_state, snapshot: sim.spawn(d.range_id, Recovered(hard_state, snapshot, [])),
            retire=sim.retire,
            rebalance=self.rebalance,
        )
        self._monitor_results(group, hosted.state, hosted.state.store)
        return hosted

    def _monitor_results(self, group: int, service: Any, state: Any) -> None:
        if self.agreement is None:
            return
        monitor = self.group_agreement.get(group)
        if monitor is None:
            monitor = self.group_agreement[group] = AgreementMonitor()
        node = service.core.id
        service.on_result = lambda entry, result: monitor.record(node, entry, result, state)

    def _observer(self) -> Callable[[HostedGroup, float], None] | None:
        monitors: dict[int, Callable[[Any, float], None]] = {}
        new_monitor = self.spec.new_monitor if self.config.check_invariants else None
        leaders = self.range_leaders

        def observe(group: HostedGroup, now: float) -> None:
            gid = group.id
            if gid == LIVENESS_GROUP:
                return
            core: Any = group.core
            if new_monitor is not None:
                check = monitors.get(gid)
                if check is None:
                    check = monitors[gid] = new_monitor()  # type: ignore[assignment]
                if check is not None:
                    check(core, now)
            if core.is_leader:
                leaders.setdefault((gid, core.term), core.id)

        return observe

    # -- clients ----------------------------------------------------------------
    def _keys(self) -> int:
        return self.config.key_count()

    def _setup_workload(self, workload: Workload) -> None:
        self.router = RangeRouter(
            RangeCache(self.initial), self.meta_voters, self.network.send, derive_rng(self.config.seed, "router")
        )
        workload.router = self.router

    # -- results ----------------------------------------------------------------
    def _leader_stats(self) -> tuple[int, int]:
        leaders = self.range_leaders
        changes = 0
        previous: tuple[int, int] | None = None
        for key in sorted(leaders):
            if previous is not None and previous[0] == key[0] and leaders[previous] != leaders[key]:
                changes += 1
            previous = key
        return len(leaders), changes

    def _result_type(self) -> type[SimResult]:
        return MultiRaftResult

    def _result_extras(self) -> dict[str, Any]:
        table = self._latest_table()
        quiet: set[int] = set()
        hosted = 0
        suspicions = 0
        for node in self.nodes:
            if not node.alive or node.host is None:
                continue
            for group in node.host:
                core: Any = group.core
                if isinstance(core, NodeLiveness):
                    suspicions += core.suspicions
                    continue
                if group.id != META_GROUP:
                    hosted += 1
                    if core.is_leader and core.quiesced:
                        quiet.add(group.id)
        router = getattr(self, "router", None)
        return {
            "groups": len(table) if table is not None else 0,
            "splits": table.splits if table is not None else 0,
            "moves": table.moves if table is not None else 0,
            "quiesced_groups": len(quiet),
            "hosted_replicas": hosted,
            "liveness_suspicions": suspicions,
            "meta_lookups": router.lookups if router is not None else 0,
            "cache_refreshes": router.cache.refreshes if router is not None else 0,
            "wrong_range_answers": router.wrong_range if router is not None else 0,
        }

    def _latest_table(self) -> RangeTable | None:
        """The range table of the meta replica that applied the most (crashed ones included: it is durable)."""
        best: RangeTable | None = None
        for node in self.nodes:
            group = node.host.get(META_GROUP) if node.alive and node.host is not None else None
            if group is None:
                continue
            table: RangeTable = group.state.table
            if best is None or table.applied_index > best.applied_index:
                best = table
        return best


def run_multiraft(
    config: MultiRaftConfig, progress: Callable[[float, float], None] | None = None, clock: Callable[[], float] | None = None
) -> SimResult:
    """Build and run one multi-Raft simulation."""
    simulation = MultiRaftSimulation(config)
    return simulation.run(progress) if clock is None else simulation.run(progress, clock)

