"""SWIM membership experiments in the simulator: failure detection, false
positives, rumour and join dissemination, and CRDTs carried by anti-entropy.

Theory of operation. ``run_swim(SwimSimConfig(...))`` builds ``nodes``
``SwimNode`` cores (``quorate.swim``, SWIM §3–4 with Lifeguard) on the
simulator's pieces: one ``EventLoop``, one ``Network`` (regions, latency,
jitter, loss) and one ``SimNode`` per member (CPU cost, timers as deadlines,
crash and restart). The run is a script of phases on simulated time:

1. **Warm-up.** Members ``1 .. nodes-1`` (numbered as the nodes n1..nN of a
   real cluster) start together, each joining through the seeds ``1, 2, 3``
   (SWIM §4.3 join by contacting known members). The
   warm-up ends ``WARMUP_SETTLE_S`` after every member lists every other as up
   (checked every ``WARMUP_CHECK_S``), or at ``warmup_max_s``.
2. **Rumours** (``rumours`` of them, one per second from random members): the
   delay until each live member delivered each one gives ``dissemination_s``.
3. **Join.** The last member, ``nodes``, starts at ``JOIN_AT_S`` and joins;
   the time until every live member lists it Alive, in protocol periods, is
   ``join_rounds`` (SWIM: O(log n) periods for infection-style spread).
4. **Crashes.** ``kill`` random members (never the joiner) crash at
   ``KILL_AT_S``. Per victim: the time until the first member, and until every
   live member, marks it Dead. A Dead mark about a member that is up is a
   *false positive*; Suspect marks are counted as ``suspicions``.
   ``restart_after_s`` brings the victims back (a fresh ``SwimNode``; SWIM has
   no durable state, the member refutes its death with a higher incarnation).
5. **CRDTs** (``crdt_ops_per_s`` > 0). Members increment a PN-Counter and add
   to or remove from an OR-Set at random until ``crdt_quiet_s`` before the end.
   Each replica's whole state travels as one key of SWIM's anti-entropy
   keyspace (``quorate.crdt.gossip``: one writer per key makes the
   last-writer-wins keyspace a state-based CRDT); the anti-entropy updates a
   member receives are joined into its replica. Replicas are durable: a
   simulated disk keeps the state across a crash, written before the operation
   counts as done. After the quiet period every live replica must be equal and
   the counter must equal the sum of the operations that were done.
   With ``crdt_op_based`` the same workload (plus register writes and edits of
   a shared list) runs on operation-based objects instead
   (``quorate.crdt.gossip.OpGossipReplica``): each operation is a SWIM rumour
   delivered by causal broadcast, acknowledgements travel in the anti-entropy
   keyspace, members a member sees as Dead stop holding its history back. Such
   replicas are not restarted (a member taken out of the acknowledgements
   would need a state transfer to come back).

The phase times (all relative to the end of the warm-up) are fixed, so
``duration_s`` (the simulated seconds after the warm-up) must leave room for
detection: with Lifeguard an unconfirmed suspicion lasts up to
``beta * alpha * log10(n)`` protocol periods.

Determinism: every random choice (network, cores, victims, workload) comes
from ``derive_rng`` of one seed, so a seed fixes ``trace_sha256``. Metrics
are observed from the cores' event lists after every input, never from
wall-clock time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from quorate.core.host import HostedGroup
from quorate.core.protocol import ProtocolCore
from quorate.core.ready import Entry, ReadState
from quorate.crdt.gossip import GossipReplica, OpGossipReplica, is_operation_rumour
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.sim.cluster import add_node_kinds
from quorate.runtime.sim.engine import EventLoop, derive_rng
from quorate.runtime.sim.network import Network
from quorate.runtime.sim.node import CostModel, SimNode
from quorate.storage.base import Recovered
from quorate.swim import MembershipEvent, MemberState, SwimConfig, SwimNode

SEED_MEMBERS = 3
"""Members ``1 .. SEED_MEMBERS`` are every joiner's seeds."""
WARMUP_CHECK_S = 2.0
"""How often the warm-up checks whether every member knows every other."""
WARMUP_SETTLE_S = 2.0
"""Extra simulated time after membership converged, before measuring."""
RUMOUR_AT_S = 1.0
RUMOUR_SPACING_S = 1.0
JOIN_AT_S = 8.0
KILL_AT_S = 15.0
CRDT_AT_S = 1.0
"""Phase start times, simulated seconds after the warm-up."""
PROGRESS_STEP_S = 1.0
"""Simulated seconds between progress callbacks."""
CLIENT_ID = 1 << 30
"""Sender id of operations injected into a member (``SimNode``'s client range)."""
ELEMENTS = 16
"""The OR-Set workload adds and removes elements ``e0 .. e15``."""
OP_COUNTER, OP_SET, OP_REGISTER, OP_LIST = "n", "s", "r", "l"
"""Names of the operation-based objects every member updates."""
FALSE_POSITIVE_SAMPLES = 10
"""False positives listed in the result (all are counted)."""

Progress = Callable[[float, float], None]


@dataclass(frozen=True, slots=True)
class SwimSimConfig:
    """One SWIM experiment (see the module docstring for the phases)."""

    nodes: int = 100
    regions: int = 1
    inter_region_ms: float = 50.0
    """One-way latency between regions."""
    intra_region_ms: float = 0.5
    jitter_ms: float = 1.0
    """Uniform extra one-way delay."""
    bandwidth_gbps: float = 1.0
    loss: float = 0.0
    kill: int = 1
    lifeguard: bool = True
    duration_s: float = 90.0
    """Simulated seconds after the warm-up."""
    seed: int = 0
    rumours: int = 5
    warmup_max_s: float = 120.0
    restart_after_s: float | None = None
    """Restart the crashed members this long after the crash (None: never)."""
    crdt_ops_per_s: float = 0.0
    """CRDT operations per simulated second, over the whole group."""
    crdt_quiet_s: float = 30.0
    """No CRDT operations during this many final seconds (time to converge)."""
    crdt_op_based: bool = False
    """Run the CRDT workload on operation-based objects over causal broadcast."""
    swim: SwimConfig = field(default_factory=SwimConfig)
    """SWIM tunables; ``lifeguard`` above overrides ``swim.lifeguard``."""
    cost: CostModel = field(default_factory=CostModel)

    def swim_config(self) -> SwimConfig:
        return replace(self.swim, lifeguard=self.lifeguard)

    def validate(self) -> SwimSimConfig:
        """Raise ``ConfigError`` naming the first bad setting; return self."""
        if self.nodes < 2:
            raise ConfigError(f"--nodes must be >= 2 (members plus one joiner), got {self.nodes}")
        if self.regions < 1 or self.regions > self.nodes:
            raise ConfigError(f"--regions must be in 1..nodes ({self.nodes}), got {self.regions}")
        for name in ("inter_region_ms", "intra_region_ms", "jitter_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.bandwidth_gbps <= 0:
            raise ConfigError(f"bandwidth_gbps must be > 0, got {self.bandwidth_gbps}")
        if not 0.0 <= self.loss < 1.0:
            raise ConfigError(f"--loss must be a probability in [0, 1), got {self.loss}")
        # The joiner and the seeds are never killed: the rest may be.
        killable = self.nodes - 1 - min(SEED_MEMBERS, self.nodes - 1)
        if not 0 <= self.kill <= killable:
            raise ConfigError(
                f"--kill must be in 0..{killable} with {self.nodes} nodes "
                f"(the {SEED_MEMBERS} seeds and the late joiner stay up), got {self.kill}"
            )
        if self.duration_s <= KILL_AT_S:
            raise ConfigError(
                f"--duration must exceed {KILL_AT_S:g} s (crashes happen then, detection needs time "
                f"after), got {self.duration_s:g}"
            )
        if self.rumours < 0 or RUMOUR_AT_S + self.rumours * RUMOUR_SPACING_S > self.duration_s:
            raise ConfigError(f"rumours must be >= 0 and fit in the duration, got {self.rumours}")
        if self.warmup_max_s <= 0:
            raise ConfigError(f"warmup_max_s must be > 0, got {self.warmup_max_s}")
        if self.restart_after_s is not None and not (
            0 < self.restart_after_s < self.duration_s - KILL_AT_S
        ):
            raise ConfigError(
                f"restart_after_s must be > 0 and leave the restart inside the run, "
                f"got {self.restart_after_s}"
            )
        if self.crdt_ops_per_s < 0:
            raise ConfigError(f"crdt_ops_per_s must be >= 0, got {self.crdt_ops_per_s}")
        if self.crdt_op_based and self.restart_after_s is not None:
            raise ConfigError(
                "operation-based CRDT runs do not restart crashed members (a member "
                "taken out of the acknowledgements would need a state transfer)"
            )
        if self.crdt_ops_per_s and not 0 < self.crdt_quiet_s < self.duration_s - CRDT_AT_S:
            raise ConfigError(
                f"crdt_quiet_s must be > 0 and below the duration, got {self.crdt_quiet_s}"
            )
        self.swim_config().validate()
        return self


def _quantiles(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p99": None, "max": None}
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))], 3)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 3)}


@dataclass(slots=True)
class SwimSimResult:
    """What one run measured; ``to_json`` is the report."""

    config: SwimSimConfig
    warmup_s: float
    warmup_converged: bool
    killed: list[int]
    detection_s: dict[str, float | None]
    first_detection_s: dict[str, float | None]
    undetected: int
    """Crashed members that some live member still listed as up at the end."""
    false_positives: int
    warmup_false_positives: int
    false_positive_samples: list[dict[str, Any]]
    suspicions: int
    suspicions_of_live: int
    dissemination_s: dict[str, float | None]
    rumours_reaching_all: int
    join_s: float | None
    join_rounds: int | None
    join_dissemination_s: dict[str, float | None]
    messages_per_node_per_s: float
    bytes_per_node_per_s: float
    messages_sent: int
    messages_dropped: int
    crdt: dict[str, Any] | None
    trace_sha256: str
    events: int
    sim_seconds: float
    wall_seconds: float

    def to_json(self) -> dict[str, Any]:
        c = self.config
        swim = c.swim_config()
        return {
            "protocol": "swim",
            "nodes": c.nodes,
            "regions": c.regions,
            "inter_region_ms": c.inter_region_ms,
            "loss": c.loss,
            "lifeguard": c.lifeguard,
            "seed": c.seed,
            "protocol_period_s": swim.protocol_period_s,
            "warmup_s": round(self.warmup_s, 3),
            "warmup_converged": self.warmup_converged,
            "killed": self.killed,
            "detection_s": self.detection_s,
            "first_detection_s": self.first_detection_s,
            "undetected": self.undetected,
            "false_positives": self.false_positives,
            "warmup_false_positives": self.warmup_false_positives,
            "false_positive_samples": self.false_positive_samples,
            "suspicions": self.suspicions,
            "suspicions_of_live": self.suspicions_of_live,
            "dissemination_s": self.dissemination_s,
            "rumours_reaching_all": self.rumours_reaching_all,
            "rumours": c.rumours,
            "join_s": self.join_s,
            "join_rounds": self.join_rounds,
            "join_dissemination_s": self.join_dissemination_s,
            "messages_per_node_per_s": round(self.messages_per_node_per_s, 2),
            "bytes_per_node_per_s": round(self.bytes_per_node_per_s, 1),
            "messages_sent": self.messages_sent,
            "messages_dropped": self.messages_dropped,
            "crdt": self.crdt,
            "trace_sha256": self.trace_sha256,
            "events": self.events,
            "sim_seconds": round(self.sim_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
        }


class _Member:
    """The service a simulated member runs beside its SWIM core: it carries out
    injected operations (a broadcast, a CRDT update) and keeps the CRDT replica,
    whose durable copy lives in the experiment's simulated disk."""

    __slots__ = ("core", "experiment", "ops", "replica")

    def __init__(self, experiment: SwimExperiment, core: SwimNode) -> None:
        self.experiment = experiment
        self.core = core
        node = int(core.id)
        saved = experiment.disk.get(node)
        self.replica = GossipReplica.from_bytes(saved) if saved else GossipReplica(node)
        if self.replica.version:
            core.local_state_put(*self.replica.entry())
        self.ops: OpGossipReplica | None = None
        if experiment.config.crdt_op_based:
            self.ops = OpGossipReplica(
                node,
                range(experiment.config.nodes),
                core.config.max_rumour_bytes,
                repair_interval_s=core.config.anti_entropy_interval_s,
            )

    def has_replies(self) -> bool:
        return False

    def take_replies(self) -> list[tuple[NodeId, Any]]:
        return []

    def on_client_request(self, sender: NodeId, request: Any, now: float) -> None:
        kind, argument = request
        if kind == "broadcast":
            seq = self.core.broadcast(argument, now)
            self.experiment.rumour_sent(self.core.id, seq, now)
            return
        if self.ops is not None:
            self.operate(kind, argument, now)
            return
        replica = self.replica
        if kind == "increment":
            replica.increment(argument)
            self.experiment.crdt_total += argument
        elif kind == "add":
            replica.add(argument)
        else:
            replica.remove(argument)
        self.publish()
        self.experiment.crdt_ops_done += 1

    def operate(self, kind: str, argument: Any, now: float) -> None:
        """One operation-based update, sent as rumours."""
        ops = self.ops
        assert ops is not None
        objects = ops.ops
        if kind == "increment":
            message = objects.increment(OP_COUNTER, argument)
            self.experiment.crdt_total += argument
        elif kind == "add":
            message = objects.add(OP_SET, argument)
        elif kind == "remove":
            message = objects.remove(OP_SET, argument)
        elif kind == "write":
            message = objects.write(OP_REGISTER, argument)
        else:
            items = objects.sequence(OP_LIST)
            position, value = argument
            if kind == "list-delete" and len(items):
                message = objects.list_delete(OP_LIST, position % len(items))
            elif kind == "list-move" and len(items) > 1:
                message = objects.list_move(OP_LIST, position % len(items), value % len(items))
            else:
                message = objects.list_insert(OP_LIST, position % (len(items) + 1), [value])
        for payload in ops.rumours(message, now):
            self.core.broadcast(payload, now)
        if kind == "increment":
            self.experiment.crdt_increments.append((message.origin, message.seq, argument))
        self.core.local_state_put(*ops.ack_entry())
        self.experiment.crdt_ops_done += 1

    def publish(self) -> None:
        """Make the replica durable, then offer it to anti-entropy."""
        replica = self.replica
        self.experiment.disk[replica.replica] = replica.to_bytes()
        self.core.local_state_put(*replica.entry())

    def apply_all(self, entries: list[Entry]) -> None:
        for entry in entries:
            self.apply(entry)

    def apply(self, entry: Entry) -> None:
        """SWIM commits nothing."""

    def read_ready(self, read: ReadState) -> None:
        """SWIM serves no linearizable reads."""

    def restore(self, snapshot: Any) -> None:
        """SWIM installs no snapshots."""


class SwimExperiment:
    """A built SWIM simulation; ``run`` carries out the phases once."""

    def __init__(self, config: SwimSimConfig) -> None:
        self.config = config.validate()
        self.swim = config.swim_config()
        n = config.nodes
        self.loop = loop = EventLoop()
        # Members are 1..n (endpoint ids too; endpoint 0 is never used).
        region_of = [0] + [i % config.regions for i in range(n)]
        intra_s = config.intra_region_ms / 1e3
        inter_s = config.inter_region_ms / 1e3
        latency_s = [
            [intra_s if a == b else inter_s for b in range(config.regions)]
            for a in range(config.regions)
        ]
        deliver_kinds = [0] * (n + 1)
        self.network = Network(
            loop,
            derive_rng(config.seed, "network"),
            region_of=region_of,
            latency_s=latency_s,
            bandwidth_bps=[config.bandwidth_gbps * 1e9] * (n + 1),
            deliver_kind_of=deliver_kinds,
            jitter_kind="uniform",
            jitter_s=config.jitter_ms / 1e3,
            loss=config.loss,
        )
        self.rng = derive_rng(config.seed, "swim-experiment")
        self.disk: dict[int, bytes] = {}
        self.members: dict[int, _Member] = {}
        self.nodes: dict[int, SimNode] = {}
        for i in range(1, n + 1):
            node = SimNode(
                NodeId(i),
                build_core=self._build_core,
                build_replica=self._build_member,
                cost=config.cost,
                send=self._send,
                schedule=loop.schedule,
                wake_kind=-1,
                cpu_kind=-1,
                first_client_id=n + 1,
                monitor=self._observe,
            )
            add_node_kinds(loop, node, deliver_kinds)
            self.nodes[i] = node
        self.network.deliver_kind_of = deliver_kinds
        # Measurements.
        self.measuring = False
        self.measure_from = 0.0
        self.sent = 0
        self.sent_bytes = 0
        self.up_since: dict[int, float] = {}
        self.node_seconds = 0.0
        self.crashed_at: dict[int, float] = {}
        self.dead_seen: dict[int, dict[int, float]] = {}
        """victim -> observer -> when the observer first marked it Dead."""
        self.false_positives = 0
        self.warmup_false_positives = 0
        """Dead marks about live members while the group was still forming."""
        self.false_positive_samples: list[dict[str, Any]] = []
        self.suspicions = 0
        self.suspicions_of_live = 0
        self.rumours: dict[tuple[int, int], float] = {}
        """(origin, seq) -> broadcast time."""
        self.rumour_delivered: dict[tuple[int, int], dict[int, float]] = {}
        self.rumour_audience: dict[tuple[int, int], frozenset[int]] = {}
        """(origin, seq) -> the other members up when it was broadcast."""
        self.joiner = n
        self.join_started: float | None = None
        self.join_seen: dict[int, float] = {}
        self.crdt_total = 0
        self.crdt_ops_done = 0
        self.op_based = config.crdt_op_based
        self.crdt_increments: list[tuple[int, int, int]] = []
        """Operation-based increments: (origin, seq, amount)."""

    # ------------------------------------------------------------ wiring
    def _build_core(self, node: NodeId, now: float, recovered: Recovered | None) -> ProtocolCore:
        epoch = self.nodes[node].epoch
        seeds = [NodeId(s) for s in range(1, min(SEED_MEMBERS, self.config.nodes) + 1) if s != node]
        rng = derive_rng(self.config.seed, f"swim-core-{epoch}", node)
        return SwimNode(node, seeds, config=self.swim, rng=rng, now=now)

    def _build_member(self, core: ProtocolCore) -> _Member:
        member = _Member(self, cast(SwimNode, core))
        self.members[int(core.id)] = member
        return member

    def _send(self, src: int, dst: int, message: Any, depart_s: float) -> None:
        if self.measuring:
            self.sent += 1
            self.sent_bytes += self.network.size_of(message)
        self.network.send(src, dst, message, depart_s)

    def _observe(self, group: HostedGroup, local_now: float) -> None:
        protocol = group.core
        core = cast(SwimNode, protocol)
        observer = int(core.id)
        events = core.take_events()
        if events:
            for event in events:
                self._on_event(observer, event)
        delivered = core.take_delivered()
        ops = None
        if self.op_based:
            member = self.members.get(observer)
            ops = member.ops if member is not None else None
        acked = False
        for rumour in delivered:
            key = (int(rumour.origin), rumour.seq)
            seen = self.rumour_delivered.get(key)
            if seen is not None and observer not in seen:
                seen[observer] = local_now
            if ops is not None and is_operation_rumour(rumour.payload):
                acked |= ops.deliver(int(rumour.origin), rumour.payload, local_now)
        if events and ops is not None:
            down = {
                int(m)
                for m, (state, _) in core.members().items()
                if state in (MemberState.DEAD, MemberState.LEFT)
            }
            ops.set_members(set(range(1, self.config.nodes + 1)) - down)  # members are numbered 1..n
        updates = core.take_state_updates()
        if updates:
            member = self.members[observer]
            changed = False
            for update in updates:
                changed |= member.replica.merge_entry(update.key, update.version, update.value)
            if changed:
                member.publish()
            if ops is not None:
                repairs = ops.merge_acks([(u.key, u.value) for u in updates], local_now)
                for payload in repairs:
                    core.broadcast(payload, local_now)
        if acked and ops is not None:
            core.local_state_put(*ops.ack_entry())

    def _on_event(self, observer: int, event: MembershipEvent) -> None:
        target = int(event.member)
        if target == observer:
            return
        state = event.state
        up = self.nodes[target].alive
        if state is MemberState.DEAD:
            # A member that crashed and came back may still be declared Dead
            # by news about its old incarnation: that is not a false positive.
            if up and target not in self.crashed_at:
                if not self.measuring:
                    self.warmup_false_positives += 1
                    return
                self.false_positives += 1
                if len(self.false_positive_samples) < FALSE_POSITIVE_SAMPLES:
                    self.false_positive_samples.append(
                        {"observer": observer, "member": target, "at_s": round(event.at, 3)}
                    )
            elif target in self.crashed_at:
                self.dead_seen.setdefault(target, {}).setdefault(observer, event.at)
        elif state is MemberState.SUSPECT:
            self.suspicions += 1
            if up:
                self.suspicions_of_live += 1
        elif (
            state is MemberState.ALIVE
            and target == self.joiner
            and self.join_started is not None
            and observer not in self.join_seen
        ):
            self.join_seen[observer] = event.at

    def rumour_sent(self, origin: NodeId, seq: int, now: float) -> None:
        key = (int(origin), seq)
        self.rumours[key] = now
        self.rumour_delivered[key] = {}
        self.rumour_audience[key] = frozenset(self._live()) - {int(origin)}

    # ------------------------------------------------------------ lifecycle
    def _start(self, node: int) -> None:
        now = self.loop.now
        self.nodes[node].start(now)
        self.up_since[node] = now

    def _crash(self, node: int) -> None:
        now = self.loop.now
        self.nodes[node].crash()
        self.members.pop(node, None)
        self._close_uptime(node, now)
        self.crashed_at[node] = now

    def _close_uptime(self, node: int, now: float) -> None:
        since = self.up_since.pop(node, None)
        if since is not None and self.measuring:
            self.node_seconds += now - max(since, self.measure_from)

    def _inject(self, node: int, request: tuple[str, Any]) -> None:
        loop = self.loop
        loop.schedule(loop.now, self.network.deliver_kind_of[node], node, CLIENT_ID, request, 0)

    def _run_until(self, until_s: float, progress: Progress | None, end_s: float) -> None:
        loop = self.loop
        while loop.now < until_s:
            loop.run(min(until_s, loop.now + PROGRESS_STEP_S))
            if progress is not None:
                progress(loop.now, end_s)

    def _membership_converged(self, expected: int) -> bool:
        for member in range(1, expected + 1):
            core = self.nodes[member].core
            if core is None or cast(SwimNode, core).up_count != expected:
                return False
        return True

    def run(self, progress: Progress | None = None) -> SwimSimResult:
        config = self.config
        wall_start = time.perf_counter()
        loop = self.loop
        n = config.nodes
        founders = n - 1
        for i in range(1, founders + 1):
            self._start(i)
        # 1. Warm-up.
        converged = False
        while loop.now < config.warmup_max_s:
            self._run_until(
                min(loop.now + WARMUP_CHECK_S, config.warmup_max_s), progress, config.warmup_max_s
            )
            if self._membership_converged(founders):
                converged = True
                break
        self._run_until(loop.now + WARMUP_SETTLE_S, progress, loop.now + WARMUP_SETTLE_S)
        warmup_s = loop.now
        self.measuring = True
        self.measure_from = warmup_s
        end_s = warmup_s + config.duration_s
        # The script: (time, action) in order; actions draw from self.rng in order.
        script: list[tuple[float, Callable[[], None]]] = []
        for r in range(config.rumours):
            script.append((warmup_s + RUMOUR_AT_S + r * RUMOUR_SPACING_S, self._broadcast_one))
        script.append((warmup_s + JOIN_AT_S, self._join))
        script.append((warmup_s + KILL_AT_S, self._kill))
        if config.restart_after_s is not None:
            script.append((warmup_s + KILL_AT_S + config.restart_after_s, self._restart))
        if config.crdt_ops_per_s > 0:
            quiet_from = end_s - config.crdt_quiet_s
            t = warmup_s + CRDT_AT_S
            gap_s = 1.0 / config.crdt_ops_per_s
            while t < quiet_from:
                script.append((t, self._crdt_op))
                t += gap_s
        script.sort(key=lambda item: item[0])
        for at_s, action in script:
            self._run_until(at_s, progress, end_s)
            action()
        self._run_until(end_s, progress, end_s)
        for node in list(self.up_since):
            self._close_uptime(node, end_s)
        return self._result(warmup_s, converged, end_s, time.perf_counter() - wall_start)

    def _live(self) -> list[int]:
        return [i for i, node in self.nodes.items() if node.alive]

    def _broadcast_one(self) -> None:
        origin = self.rng.choice(self._live())
        self._inject(origin, ("broadcast", b"rumour"))

    def _join(self) -> None:
        self.join_started = self.loop.now
        self._start(self.joiner)

    def _kill(self) -> None:
        candidates = [i for i in self._live() if i > SEED_MEMBERS and i != self.joiner]
        for victim in sorted(self.rng.sample(candidates, self.config.kill)):
            self._crash(victim)

    def _restart(self) -> None:
        for victim in sorted(self.crashed_at):
            if not self.nodes[victim].alive:
                self._start(victim)

    def _crdt_op(self) -> None:
        rng = self.rng
        node = rng.choice(self._live())
        roll = rng.random()
        element = f"e{rng.randrange(ELEMENTS)}"
        if self.config.crdt_op_based and roll >= 0.55:
            # Register writes and list edits besides the counter and the set.
            if roll < 0.65:
                self._inject(node, ("write", f"v{rng.randrange(1000)}"))
            else:
                kind = rng.choice(("list-insert", "list-insert", "list-delete", "list-move"))
                self._inject(node, (kind, (rng.randrange(1 << 16), rng.randrange(1 << 16))))
            return
        if roll < 0.5:
            self._inject(node, ("increment", rng.choice((1, 1, 2, -1))))
        elif roll < 0.85:
            self._inject(node, ("add", element))
        else:
            self._inject(node, ("remove", element))

    # ------------------------------------------------------------ results
    def _result(
        self, warmup_s: float, converged: bool, end_s: float, wall_s: float
    ) -> SwimSimResult:
        live = set(self._live())
        killed = sorted(v for v in self.crashed_at)
        detection: list[float] = []
        first: list[float] = []
        undetected = 0
        for victim in killed:
            crashed = self.crashed_at[victim]
            seen = self.dead_seen.get(victim, {})
            observers = live - {victim}
            if seen:
                first.append(min(seen.values()) - crashed)
            if self.nodes[victim].alive:
                continue  # restarted: "detected by all" no longer applies
            if observers and observers <= set(seen):
                detection.append(max(seen[o] for o in observers) - crashed)
            else:
                undetected += 1
        per_delivery: list[float] = []
        reaching_all = 0
        full: list[float] = []
        for key, sent_at in self.rumours.items():
            seen = self.rumour_delivered[key]
            per_delivery += [t - sent_at for t in seen.values()]
            wanted = live & self.rumour_audience[key]
            if wanted <= set(seen):
                reaching_all += 1
                full.append(max((seen[o] for o in wanted), default=0.0) - sent_at)
        dissemination = _quantiles(per_delivery)
        dissemination["full"] = (
            round(max(full), 3) if full and reaching_all == len(self.rumours) else None
        )
        join_s: float | None = None
        join_rounds: int | None = None
        join_latencies: list[float] = []
        if self.join_started is not None:
            started = self.join_started
            join_latencies = [t - started for t in self.join_seen.values()]
            wanted = live - {self.joiner}
            if wanted <= set(self.join_seen):
                join_s = max((self.join_seen[o] - started for o in wanted), default=0.0)
                join_rounds = math.ceil(join_s / self.swim.protocol_period_s)
        node_seconds = self.node_seconds or 1.0
        return SwimSimResult(
            config=self.config,
            warmup_s=warmup_s,
            warmup_converged=converged,
            killed=killed,
            detection_s=_quantiles(detection),
            first_detection_s=_quantiles(first),
            undetected=undetected,
            false_positives=self.false_positives,
            warmup_false_positives=self.warmup_false_positives,
            false_positive_samples=self.false_positive_samples,
            suspicions=self.suspicions,
            suspicions_of_live=self.suspicions_of_live,
            dissemination_s=dissemination,
            rumours_reaching_all=reaching_all,
            join_s=None if join_s is None else round(join_s, 3),
            join_rounds=join_rounds,
            join_dissemination_s=_quantiles(join_latencies),
            messages_per_node_per_s=self.sent / node_seconds,
            bytes_per_node_per_s=self.sent_bytes / node_seconds,
            messages_sent=self.network.sent,
            messages_dropped=self.network.dropped,
            crdt=self._crdt_result() if self.config.crdt_ops_per_s > 0 else None,
            trace_sha256=self.loop.trace_sha256(),
            events=self.loop.events,
            sim_seconds=end_s,
            wall_seconds=wall_s,
        )

    def _crdt_result(self) -> dict[str, Any]:
        if self.config.crdt_op_based:
            return self._op_result()
        snapshots = {
            node: member.replica.snapshot()
            for node, member in sorted(self.members.items())
            if self.nodes[node].alive
        }
        distinct = {repr(s) for s in snapshots.values()}
        values = sorted({s[0] for s in snapshots.values()})
        return {
            "operations": self.crdt_ops_done,
            "expected_counter": self.crdt_total,
            "counter_values": values,
            "replicas": len(snapshots),
            "distinct_states": len(distinct),
            "converged": len(distinct) == 1 and values == [self.crdt_total],
        }

    def _op_result(self) -> dict[str, Any]:
        live = [
            member.ops
            for node, member in sorted(self.members.items())
            if self.nodes[node].alive and member.ops is not None
        ]
        snapshots = [ops.ops.snapshot() for ops in live]
        distinct = {repr(s) for s in snapshots}
        vectors = {repr(sorted(ops.ops.broadcast.delivered.items())) for ops in live}
        delivered: dict[int, int] = {}
        for ops in live:
            for origin, n in ops.ops.broadcast.delivered.items():
                delivered[origin] = max(n, delivered.get(origin, 0))
        # An increment counts once some live replica delivered it; one made by
        # a member that crashed before its rumour left is lost, and reported.
        kept = [a for o, s, a in self.crdt_increments if s <= delivered.get(o, 0)]
        expected = sum(kept)
        values = sorted({s["counters"].get(OP_COUNTER, 0) for s in snapshots})
        histories = [ops.ops.broadcast.history_size for ops in live]
        buffered = max((ops.ops.broadcast.buffered for ops in live), default=0)
        list_lengths = sorted({len(s["lists"].get(OP_LIST, [])) for s in snapshots})
        return {
            "mode": "operation-based",
            "operations": self.crdt_ops_done,
            "expected_counter": expected,
            "lost_increments": len(self.crdt_increments) - len(kept),
            "counter_values": values,
            "list_lengths": list_lengths,
            "replicas": len(snapshots),
            "distinct_states": len(distinct),
            "distinct_delivered": len(vectors),
            "buffered_max": buffered,
            "history_max": max(histories, default=0),
            "history_mean": round(sum(histories) / len(histories), 1) if histories else 0.0,
            "repairs": sum(ops.repairs for ops in live),
            "duplicates": sum(ops.ops.broadcast.duplicates for ops in live),
            "rejected": sum(
                len(ops.ops.broadcast.rejected) + len(ops.ops.rejected) for ops in live
            ),
            "converged": len(distinct) == 1
            and len(vectors) == 1
            and values == [expected]
            and buffered == 0,
        }


def run_swim(config: SwimSimConfig, progress: Progress | None = None) -> SwimSimResult:
    """Build and run one SWIM experiment."""
    return SwimExperiment(config).run(progress)
