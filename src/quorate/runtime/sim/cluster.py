"""One simulated run: configuration in, measurements and a history out.

Theory of operation. ``run(config)`` wires the pieces together on one
``EventLoop``: ``nodes`` replicas of a protocol (``runtime.sim.protocols``)
spread round robin over ``regions``, ``clients`` client endpoints spread the
same way, a ``Network`` between all of them, a fault schedule, and a
``Workload``. Every random stream is derived from ``seed`` by purpose (and
node), so the run is a pure function of its configuration: same config, same
``trace_sha256``.

Phases (after TigerBeetle's VOPR): faults run until ``heal_at_s`` (for the
``chaos`` preset, everything is then healed and restarted); from there on the
cluster must commit again, and ``recovered_after_s`` reports how long it took
(the first operation invoked after the heal that completed ok).
Clients stop issuing at ``duration_s``; the run continues ``op_timeout_s``
longer so operations in flight can finish, and whatever is still pending is
recorded as ``info``.

Safety: the protocol's online monitor (if any) checks every node after every
step; an ``InvariantViolation`` (from it or from the core itself) stops the run
and is reported in ``safety_violations`` with its simulated time, never raised.

Byzantine replicas (BFT protocols only, ``runtime.sim.bft``): ``byzantine``
names how many replicas run which behaviour; the replicas and any ``random``
behaviours are drawn from the seed. More than the protocol's f is refused
unless ``allow_unsafe``. Byzantine replicas count against the crash budget
of ``chaos`` (f - Byzantine replicas may crash). Convictions of equivocators
are reported in ``detections`` (with the simulated time of the first one and
how many honest replicas made it) and each honest replica's ``excluded`` set.
Clients of a BFT protocol accept f + 1 matching replies; they send a request
to the primary f + 1 replies named (else to every replica) and to every
replica after ``resend_timeout_s`` (``client_resends`` counts those); every
replica answers each command it executes at the endpoint its session names.
``rate_limit_msgs_per_s`` puts a per-peer token bucket in front of every
replica's CPU; ``flood_copies`` multiplies what ``flood`` replicas send.

Event kinds: each replica has its own delivery, timer and CPU kinds, so the
loop calls the node's bound method directly (no dispatch on the node id).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from quorate.check.online import LostWriteMonitor
from quorate.core.host import HostedGroup
from quorate.core.protocol import ProtocolCore
from quorate.core.quorum import quorum_size_problem
from quorate.crypto.costmodel import CryptoCosts
from quorate.errors import ConfigError, InvariantViolation
from quorate.ids import NodeId
from quorate.runtime.sim import faults as fault_specs
from quorate.runtime.sim.agreement import AgreementMonitor
from quorate.runtime.sim.bft import DetectionLog, choose_byzantine, excluded_of, parse_byzantine
from quorate.runtime.sim.engine import EventLoop, derive_rng
from quorate.runtime.sim.faults import FaultAction
from quorate.runtime.sim.network import JITTER_KINDS, Network
from quorate.runtime.sim.node import CostModel, Replica, SimNode, single_group
from quorate.runtime.sim.protocols import ProtocolSpec, SpecContext, protocol_spec
from quorate.runtime.sim.quorum import QuorumControl, manager_settings
from quorate.runtime.sim.workload import OpMix, Workload
from quorate.security.ratelimit import PeerRateLimiter
from quorate.state.service import ReplicaService
from quorate.storage.base import Recovered

PROGRESS_SLICES = 200
"""The run is cut into this many slices of simulated time to report progress."""
CHAOS_HEAL_FRACTION = 0.6
"""Without ``heal_at_s``, chaos heals at this fraction of the duration."""

N = TypeVar("N", bound=Network)


@dataclass(slots=True)
class SimConfig:
    """Everything that defines a run. ``validate`` rejects impossible ones."""

    protocol: str = "raft"
    nodes: int = 5
    regions: int = 1
    inter_region_ms: float = 50.0
    intra_region_ms: float = 0.5
    jitter: str = "uniform"
    jitter_ms: float = 0.5
    bandwidth_gbps: float = 1.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    """Share of messages that may overtake earlier ones on their link (else FIFO, as TCP)."""
    duration_s: float = 10.0
    clients: int = 10
    rate_ops: float = 0.0
    """Open-loop aggregate rate; 0 means closed-loop clients."""
    keys: int = 10
    mix: OpMix = field(default_factory=OpMix)
    op_timeout_s: float = 1.0
    resend_timeout_s: float = 0.0
    """BFT clients: how long one attempt waits for f + 1 matching replies
    before the request goes to every replica (0: half of ``op_timeout_s``)."""
    faults: str = "none"
    """``none``, ``chaos``, a SPEC (``runtime.sim.faults``) or ``@file``."""
    heal_at_s: float | None = None
    liveness_bound_s: float = 10.0
    max_crashed: int | None = None
    """Chaos: replicas down at once; default: what the protocol tolerates."""
    seed: int = 0
    cost: CostModel = field(default_factory=CostModel)
    crypto_costs: CryptoCosts | None = None
    """What signing protocols' primitives cost (None: ``CryptoCosts``' measured defaults)."""
    protocol_options: dict[str, Any] = field(default_factory=dict)
    check_invariants: bool = True
    record_history: bool = True
    byzantine: str = ""
    """``COUNT:BEHAVIOUR[,COUNT:BEHAVIOUR...]``; ``random`` draws a behaviour."""
    allow_unsafe: bool = False
    """Allow more Byzantine replicas than the protocol tolerates (to show the
    safety checks fire)."""
    rate_limit_msgs_per_s: float = 0.0
    """Per-peer message rate each replica admits (0: no limit)."""
    rate_limit_burst: float = 0.0
    """Bucket size of the rate limit (0: a tenth of a second's worth, at least 16)."""
    flood_copies: int = 1
    """Each message a ``flood`` replica sends goes out this many times."""
    client_region: int = -1
    """All clients in this region (-1: spread round robin like the nodes)."""
    voters: tuple[int, ...] = ()
    """Once a leader exists, move to these voters (node ids 1..n), the other
    nodes learners (``runtime.sim.quorum``); empty: every node votes."""
    quorum: tuple[int, int] | None = None
    """With ``voters`` (or alone): election and commit quorum sizes (Q1, Q2)."""
    quorum_manager: str = ""
    """A ``quorate.quorum`` strategy to manage the voters with ("": none)."""
    manager_voters: int = 5
    manager_failures: int = 1
    reconfigure_every_s: float = 0.0
    """Propose a random membership change this often until the heal (0: never)."""

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first impossible setting."""
        if self.nodes < 1:
            raise ConfigError(f"nodes must be >= 1, got {self.nodes}")
        if self.regions < 1:
            raise ConfigError(f"regions must be >= 1, got {self.regions}")
        if self.regions > self.nodes:
            raise ConfigError(f"{self.regions} regions need at least as many nodes, got {self.nodes}")
        for name in ("inter_region_ms", "intra_region_ms", "jitter_ms"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if self.jitter not in JITTER_KINDS:
            raise ConfigError(f"jitter must be one of {', '.join(JITTER_KINDS)}, got {self.jitter!r}")
        if not (self.bandwidth_gbps > 0 and math.isfinite(self.bandwidth_gbps)):
            raise ConfigError(f"bandwidth_gbps must be > 0, got {self.bandwidth_gbps}")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ConfigError(f"duration must be > 0 seconds, got {self.duration_s}")
        if self.clients < 0:
            raise ConfigError(f"clients must be >= 0, got {self.clients}")
        if not (self.rate_ops >= 0 and math.isfinite(self.rate_ops)):
            raise ConfigError(f"rate must be >= 0 ops/s, got {self.rate_ops}")
        if self.rate_ops > 0 and self.clients == 0:
            raise ConfigError("an open-loop rate needs at least one client")
        if self.keys < 1:
            raise ConfigError(f"keys must be >= 1, got {self.keys}")
        if not self.op_timeout_s > 0:
            raise ConfigError(f"op_timeout_s must be > 0, got {self.op_timeout_s}")
        if not (self.resend_timeout_s >= 0 and math.isfinite(self.resend_timeout_s)):
            raise ConfigError(
                f"resend_timeout_s must be a finite number >= 0 (0: half of op_timeout_s), got {self.resend_timeout_s}"
            )
        for name in ("loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {p}")
        if self.heal_at_s is not None and not 0 <= self.heal_at_s <= self.duration_s:
            raise ConfigError(f"heal_at_s must lie within the run (0..{self.duration_s} s), got {self.heal_at_s}")
        if self.max_crashed is not None and not 0 <= self.max_crashed <= self.nodes:
            raise ConfigError(f"max_crashed must be within 0..{self.nodes}, got {self.max_crashed}")
        if not self.liveness_bound_s > 0:
            raise ConfigError(f"liveness_bound_s must be > 0, got {self.liveness_bound_s}")
        if not (self.rate_limit_msgs_per_s >= 0 and math.isfinite(self.rate_limit_msgs_per_s)):
            raise ConfigError(f"rate limit must be >= 0 messages/s, got {self.rate_limit_msgs_per_s}")
        if self.rate_limit_burst < 0:
            raise ConfigError(f"rate_limit_burst must be >= 0, got {self.rate_limit_burst}")
        if self.flood_copies < 1:
            raise ConfigError(f"flood_copies must be >= 1, got {self.flood_copies}")
        self.mix.validate()
        fault_specs.validate(self.fault_schedule(), self.nodes)
        if not -1 <= self.client_region < self.regions:
            raise ConfigError(f"client_region must be -1 (spread) or a region in 0..{self.regions - 1}, got {self.client_region}")
        if self.voters and (len(set(self.voters)) != len(self.voters) or not all(1 <= v <= self.nodes for v in self.voters)):
            raise ConfigError(f"voters must be distinct node ids in 1..{self.nodes}, got {list(self.voters)}")
        if self.quorum is not None:
            count = len(self.voters) or self.nodes
            problem = quorum_size_problem(count, *self.quorum)
            if problem is not None:
                raise ConfigError(f"quorum {self.quorum[0]}:{self.quorum[1]}: {problem}")
        if self.quorum_manager:
            manager_settings(self.quorum_manager, self.manager_voters, self.manager_failures)
        if not (self.reconfigure_every_s >= 0 and math.isfinite(self.reconfigure_every_s)):
            raise ConfigError(f"reconfigure_every_s must be >= 0 seconds, got {self.reconfigure_every_s}")

    @property
    def controls_quorum(self) -> bool:
        """True when the run changes configurations (``runtime.sim.quorum``)."""
        return bool(self.voters or self.quorum is not None or self.quorum_manager or self.reconfigure_every_s)

    def effective_heal_at_s(self) -> float | None:
        """When the liveness phase starts (``None``: no liveness phase)."""
        if self.heal_at_s is not None:
            return self.heal_at_s
        if self.faults == "chaos":
            return self.duration_s * CHAOS_HEAL_FRACTION
        return None

    def fault_schedule(self, spec: ProtocolSpec | None = None) -> list[FaultAction]:
        """The fault actions of this run, sorted by time."""
        text = self.faults.strip()
        if text in ("", "none"):
            return []
        if text == "chaos":
            heal = self.effective_heal_at_s()
            assert heal is not None
            if self.max_crashed is not None:
                max_crashed = self.max_crashed
            elif spec is not None:
                # Byzantine replicas already use up part of the fault budget.
                byzantine = sum(count for count, _ in _wanted_byzantine(self, spec))
                max_crashed = max(0, spec.max_crashed(self.nodes) - byzantine)
            else:
                max_crashed = (self.nodes - 1) // 2
            rng = derive_rng(self.seed, "faults")
            return fault_specs.chaos(rng, nodes=self.nodes, heal_at_s=heal, max_crashed=max_crashed)
        if text.startswith("@"):
            return fault_specs.load_file(text[1:])
        return fault_specs.parse_spec(text)


@dataclass(slots=True)
class SimResult:
    """What a run measured. ``to_json`` leaves the history out."""

    protocol: str
    nodes: int
    regions: int
    clients: int
    seed: int
    sim_seconds: float
    wall_seconds: float
    events: int
    events_per_second: float
    stale_timer_events: int
    committed_ops: int
    failed_ops: int
    unknown_ops: int
    throughput_ops: float
    latency_ms: dict[str, float | None]
    faults_injected: int
    safety_violations: list[dict[str, Any]]
    trace_sha256: str
    elections: int
    leader_changes: int
    messages_sent: int
    messages_dropped: int
    heal_at_s: float | None
    recovered_after_s: float | None
    liveness_ok: bool | None
    byzantine: dict[str, str] = field(default_factory=dict)
    """Replica -> behaviour."""
    detections: list[dict[str, Any]] = field(default_factory=list)
    excluded: dict[str, list[int]] = field(default_factory=dict)
    """Honest replica -> replicas it excluded (alive replicas, at the end)."""
    rate_limited_drops: int = 0
    client_resends: int = 0
    """BFT clients: requests re-sent to every replica after the resend timeout."""
    quorum: dict[str, Any] = field(default_factory=dict)
    """Configuration changes of the run (``runtime.sim.quorum``); empty when none."""
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["history"]
        return out


def percentiles_ms(latencies_s: list[float]) -> dict[str, float | None]:
    if not latencies_s:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(latencies_s)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] * 1e3, 3)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1] * 1e3, 3)}


class Simulation:
    """A built, not yet run, simulation; ``run`` below is the usual entry point."""

    def __init__(self, config: SimConfig) -> None:
        config.validate()
        self.config = config
        protocol = self._protocol_name()
        options = self._protocol_options()
        base_spec = protocol_spec(protocol, options)
        wanted = _wanted_byzantine(config, base_spec)
        self.byzantine = choose_byzantine(
            derive_rng(config.seed, "byzantine"), config.nodes, wanted, base_spec.behaviours
        )
        tolerated = base_spec.max_byzantine(config.nodes)
        if len(self.byzantine) > tolerated and not config.allow_unsafe:
            raise ConfigError(
                f"{len(self.byzantine)} Byzantine replicas exceed what {config.protocol} tolerates with "
                f"{config.nodes} replicas (f={tolerated}); pass --allow-unsafe to run it anyway"
            )
        self.spec = spec = protocol_spec(
            protocol,
            options,
            SpecContext(
                byzantine=self.byzantine,
                seed=config.seed,
                client_endpoints=range(config.nodes + 1, config.nodes + 1 + config.clients),
                replicas=config.nodes,
                crypto_costs=config.crypto_costs,
            ),
        )
        self.detections = DetectionLog(frozenset(self.byzantine))
        self.agreement = AgreementMonitor(frozenset(self.byzantine)) if config.check_invariants else None
        self.loop = loop = EventLoop()
        n = config.nodes
        # Replicas are 1..n, as the nodes n1..nN of a real cluster; network
        # endpoint ids are the replica ids, then the clients (n + 1 ...);
        # endpoint 0 is never used.
        self.voters = tuple(NodeId(i) for i in range(1, n + 1))
        self._setup()
        endpoints = 1 + n + config.clients
        client_regions = [
            c % config.regions if config.client_region < 0 else config.client_region for c in range(config.clients)
        ]
        region_of = [0] + [i % config.regions for i in range(n)] + client_regions
        self.faults_injected = 0
        self.violations: list[dict[str, Any]] = []
        self.leaders: dict[int, int] = {}  # term -> first leader seen in it

        deliver_kinds: list[int] = [0] * endpoints
        self.network = build_network(Network, config, loop, region_of, deliver_kinds)
        observe = self._observer()
        self.nodes: list[SimNode] = []
        rate = config.rate_limit_msgs_per_s
        burst = config.rate_limit_burst or max(16.0, rate / 10)
        for i in range(n):
            node_id = NodeId(i + 1)
            behaviour = self.byzantine.get(node_id)
            node = SimNode(
                node_id,
                **self._node_groups(i),
                cost=config.cost,
                send=self.network.send,
                schedule=loop.schedule,
                wake_kind=-1,
                cpu_kind=-1,
                first_client_id=n + 1,
                monitor=observe,
                verifier=spec.meter_for(node_id) if spec.meter_for is not None else None,
                limiter=PeerRateLimiter(rate, burst) if rate > 0 else None,
                send_copies=config.flood_copies if behaviour == "flood" else 1,
            )
            add_node_kinds(loop, node, deliver_kinds)
            self.nodes.append(node)
        self.network.deliver_kind_of = deliver_kinds
        self.workload: Workload | None = None
        if config.clients:
            timer_kind = loop.add_kind(self._on_client_timer)
            retry_kind = loop.add_kind(self._on_client_retry)
            arrival_kind = loop.add_kind(self._on_arrival)
            self.workload = Workload(
                derive_rng(config.seed, "workload"),
                first_client_id=n + 1,
                first_replica_id=1,
                clients=config.clients,
                replicas=n,
                codec=spec.client_codec() if spec.client_codec is not None else _codec(),
                send=self.network.send,
                schedule=loop.schedule,
                timer_kind=timer_kind,
                retry_kind=retry_kind,
                arrival_kind=arrival_kind,
                stop_at_s=config.duration_s,
                rate_ops=config.rate_ops,
                keys=self._keys(),
                mix=config.mix,
                op_timeout_s=config.op_timeout_s,
                reply_quorum=spec.reply_quorum(n),
                resend_timeout_s=config.resend_timeout_s,
            )
            if config.check_invariants:
                self.workload.observer = LostWriteMonitor().observe
            self._setup_workload(self.workload)
            reply_kind = loop.add_kind(self.workload.on_reply)
            for c in range(config.clients):
                deliver_kinds[n + 1 + c] = reply_kind
        self._fault_kind = loop.add_kind(self._on_fault)
        self.schedule = config.fault_schedule(spec)
        self.heal_at_s = config.effective_heal_at_s()
        self.quorum: QuorumControl | None = None
        if config.controls_quorum:
            self.quorum = QuorumControl(
                loop=loop,
                network=self.network,
                nodes=self.nodes,
                binding=spec.binding,
                leader_term=spec.leader_term or spec.binding.term_if_leading,
                rng=derive_rng(config.seed, "quorum"),
                region_of=region_of[1 : n + 1],
                client_regions=client_regions,
                end_s=config.duration_s + (config.op_timeout_s if self.workload is not None else 0.0),
                voters=config.voters,
                quorum=config.quorum,
                manager=(
                    manager_settings(config.quorum_manager, config.manager_voters, config.manager_failures)
                    if config.quorum_manager
                    else None
                ),
                reconfigure_every_s=config.reconfigure_every_s,
                reconfigure_until_s=self.heal_at_s,
                history=self.workload.history if self.workload is not None else None,
            )

    # -- wiring (the steps a simulation of another shape overrides) -------------
    def _protocol_name(self) -> str:
        """The protocol whose binding builds the cores."""
        return self.config.protocol

    def _protocol_options(self) -> dict[str, Any]:
        return self.config.protocol_options

    def _setup(self) -> None:
        """Called once the protocol spec and the event loop exist, before the network and nodes."""

    def _node_groups(self, i: int) -> dict[str, Any]:
        """The ``SimNode`` arguments saying which groups node ``i`` hosts and how they are built."""
        return {
            "group_factory": single_group(
                self._core_factory(i), self._replica_factory(), self.spec.binding, pipelines=self.spec.pipelines
            )
        }

    def _keys(self) -> int:
        return self.config.keys

    def _setup_workload(self, workload: Workload) -> None:
        """Called once the workload exists, before its reply kind is registered."""

    def _core_factory(self, i: int) -> Callable[[NodeId, float, Recovered | None], ProtocolCore]:
        spec = self.spec
        seed = self.config.seed
        voters = self.voters

        def build(node: NodeId, now: float, recovered: Recovered | None) -> ProtocolCore:
            # Each incarnation of a node draws a fresh, seeded stream.
            epoch = self.nodes[i].epoch if i < len(self.nodes) else 0
            return spec.build_core(node, voters, derive_rng(seed, f"core{epoch}", i), now, recovered)

        return build

    def _replica_factory(self) -> Callable[[ProtocolCore], Replica]:
        """The protocol's replica service, reporting what it executes to the
        agreement monitor when invariants are checked."""
        build = self.spec.build_replica
        monitor = self.agreement
        if monitor is None:
            return build

        def build_monitored(core: ProtocolCore) -> Replica:
            replica = build(core)
            if isinstance(replica, ReplicaService):
                node, kv = core.id, replica.kv
                replica.on_result = lambda entry, result: monitor.record(node, entry, result, kv)
            return replica

        return build_monitored

    def _observer(self) -> Callable[[HostedGroup, float], None] | None:
        check = None
        if self.config.check_invariants and self.spec.new_monitor is not None:
            check = self.spec.new_monitor()
        leader_term = self.spec.leader_term
        leaders = self.leaders
        detect = self.detections.observe if self.spec.behaviours else None
        loop = self.loop
        if check is None and leader_term is None and detect is None:
            return None

        def observe(group: HostedGroup, now: float) -> None:
            core = group.core
            if check is not None:
                check(core, now)
            if detect is not None:
                detect(core, loop.now)
            if leader_term is not None:
                term = leader_term(core)
                if term is not None and term not in leaders:
                    leaders[term] = core.id

        return observe

    def _on_client_timer(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        assert self.workload is not None
        self.workload.on_timer(event)

    def _on_client_retry(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        assert self.workload is not None
        self.workload.on_retry(event)

    def _on_arrival(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        assert self.workload is not None
        self.workload.on_arrival(event)

    def _on_fault(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        self.faults_injected += 1
        apply_fault(event[5], event[0], self.nodes, self.network, self.voters)

    # -- running ------------------------------------------------------------
    def run(
        self,
        progress: Callable[[float, float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> SimResult:
        config = self.config
        loop = self.loop
        wall_start = clock()
        schedule_faults(loop, self.schedule, self._fault_kind)
        end_s = config.duration_s + (config.op_timeout_s if self.workload is not None else 0.0)
        violation = run_slices(loop, self.nodes, end_s, self._start_clients, progress)
        if violation is not None:
            self.violations.append({"time_s": loop.now, "message": str(violation)})
        wall = clock() - wall_start
        if self.workload is not None:
            self.workload.finish(loop.now)
        return self._result(wall)

    def _start_clients(self, now: float) -> None:
        if self.workload is not None:
            self.workload.start(now)
        if self.quorum is not None:
            self.quorum.start()

    def _result(self, wall_s: float) -> SimResult:
        config = self.config
        w = self.workload
        history = w.history if w is not None else []
        recovered_after_s, liveness_ok = self._liveness(history)
        # Only events that did work count; superseded timers are reported apart.
        stale = stale_wakes(self.nodes) + (w.stale_timers if w is not None else 0)
        events = self.loop.events - stale
        elections, changes = self._leader_stats()
        committed = w.ok if w is not None else 0
        return self._result_type()(
            protocol=config.protocol,
            nodes=config.nodes,
            regions=config.regions,
            clients=config.clients,
            seed=config.seed,
            sim_seconds=self.loop.now,
            wall_seconds=round(wall_s, 6),
            events=events,
            events_per_second=round(events / wall_s, 1) if wall_s > 0 else 0.0,
            stale_timer_events=stale,
            committed_ops=committed,
            failed_ops=w.failed if w is not None else 0,
            unknown_ops=w.unknown if w is not None else 0,
            throughput_ops=round(committed / config.duration_s, 3),
            latency_ms=percentiles_ms(w.latencies_s if w is not None else []),
            faults_injected=self.faults_injected,
            safety_violations=self.violations,
            trace_sha256=self.loop.trace_sha256(),
            elections=elections,
            leader_changes=changes,
            messages_sent=self.network.sent,
            messages_dropped=self.network.dropped,
            heal_at_s=self.heal_at_s,
            recovered_after_s=recovered_after_s,
            liveness_ok=liveness_ok,
            byzantine={str(k): v for k, v in self.byzantine.items()},
            detections=self.detections.to_json(),
            excluded={
                str(node.id): excluded_of(node.core)
                for node in self.nodes
                if node.id not in self.byzantine and node.alive
            }
            if self.spec.behaviours
            else {},
            rate_limited_drops=sum(
                sum(node.limiter.dropped.values()) for node in self.nodes if node.limiter is not None
            ),
            client_resends=w.resends if w is not None else 0,
            quorum=self.quorum.report() if self.quorum is not None else {},
            history=history if config.record_history else [],
            **self._result_extras(),
        )

    def _leader_stats(self) -> tuple[int, int]:
        """(elections won, changes of leader between consecutive terms)."""
        terms = sorted(self.leaders)
        return len(terms), sum(1 for a, b in itertools.pairwise(terms) if self.leaders[a] != self.leaders[b])

    def _result_type(self) -> type[SimResult]:
        return SimResult

    def _result_extras(self) -> dict[str, Any]:
        """Fields of ``_result_type`` beyond ``SimResult``'s."""
        return {}

    def _liveness(self, history: list[dict[str, Any]]) -> tuple[float | None, bool | None]:
        heal = self.heal_at_s
        if heal is None:
            return None, None
        invoked_after: set[int] = set()
        for event in history:
            if event["type"] == "invoke":
                if event["time"] >= heal:
                    invoked_after.add(event["process"])
                else:
                    invoked_after.discard(event["process"])
            elif event["type"] == "ok" and event["process"] in invoked_after:
                recovered = round(event["time"] - heal, 6)
                return recovered, recovered <= self.config.liveness_bound_s
        return None, False


# -- what every simulation of nodes shares (this one, ``runtime.sim.composed``'s) ----------


def build_network(
    network_type: type[N], config: SimConfig, loop: EventLoop, region_of: list[int], deliver_kinds: list[int]
) -> N:
    """The ``Network`` between ``len(region_of)`` endpoints (endpoint ``e`` in
    region ``region_of[e]``) with ``config``'s latencies, bandwidth, jitter and
    faults; a message to ``e`` is delivered as event kind ``deliver_kinds[e]``."""
    intra_s = config.intra_region_ms / 1e3
    inter_s = config.inter_region_ms / 1e3
    latency_s = [[intra_s if a == b else inter_s for b in range(config.regions)] for a in range(config.regions)]
    return network_type(
        loop,
        derive_rng(config.seed, "network"),
        region_of=region_of,
        latency_s=latency_s,
        bandwidth_bps=[config.bandwidth_gbps * 1e9] * len(region_of),
        deliver_kind_of=deliver_kinds,
        jitter_kind=config.jitter,
        jitter_s=config.jitter_ms / 1e3,
        loss=config.loss,
        duplicate=config.duplicate,
        reorder=config.reorder,
    )


def add_node_kinds(loop: EventLoop, node: SimNode, deliver_kinds: list[int]) -> None:
    """Give ``node`` its own delivery, timer and CPU event kinds (the loop then
    calls its bound methods directly)."""
    deliver_kinds[node.id] = loop.add_kind(node.deliver)
    node.wake_kind = loop.add_kind(node.wake)
    node.cpu_kind = loop.add_kind(node.cpu_free)


def schedule_faults(loop: EventLoop, schedule: list[FaultAction], fault_kind: int) -> None:
    """Put every action of the fault schedule on the loop as a ``fault_kind`` event."""
    for action in schedule:
        loop.schedule(action.at_s, fault_kind, -1, -1, action, 0)


def run_slices(
    loop: EventLoop,
    nodes: list[SimNode],
    end_s: float,
    start_clients: Callable[[float], None],
    progress: Callable[[float, float], None] | None,
    *,
    pause_at_s: float | None = None,
    on_pause: Callable[[float], None] | None = None,
) -> InvariantViolation | None:
    """The run itself: start the nodes, then the clients (``start_clients(0.0)``),
    and run the loop to ``end_s`` in ``PROGRESS_SLICES`` slices, reporting
    ``progress(now, end_s)`` after each. With ``pause_at_s``, the loop stops
    there once for ``on_pause(now)`` (the clients stop issuing). An
    ``InvariantViolation`` stops the run and is returned, never raised."""
    try:
        for node in nodes:
            node.start(0.0)
        start_clients(0.0)
        pause = pause_at_s
        for i in range(1, PROGRESS_SLICES + 1):
            until = end_s * i / PROGRESS_SLICES
            if pause is not None and until >= pause:
                loop.run(pause)
                if on_pause is not None:
                    on_pause(loop.now)
                pause = None
            loop.run(until)
            if progress is not None:
                progress(loop.now, end_s)
    except InvariantViolation as exc:
        return exc
    return None


def stale_wakes(nodes: list[SimNode]) -> int:
    """Timer events of ``nodes`` that a later deadline superseded (they did no work)."""
    return sum(node.stale_wakes for node in nodes)


def apply_fault(action: FaultAction, now: float, nodes: list[SimNode], network: Network, replicas: tuple[NodeId, ...]) -> None:
    """Carry out one fault action on ``nodes`` (node ``i`` is ``nodes[i - 1]``)
    and the ``network`` between them; every simulation of nodes shares it."""
    kind = action.kind
    index = action.node - 1  # replica ids are 1..n
    if kind == "crash":
        if nodes[index].alive:
            nodes[index].crash()
    elif kind == "restart":
        if not nodes[index].alive:
            nodes[index].start(now)
    elif kind == "restart-all":
        for node in nodes:
            if not node.alive:
                node.start(now)
    elif kind == "partition":
        network.partition(action.groups, replicas)
    elif kind == "cut":
        network.cut(action.node, action.peer)
    elif kind == "heal":
        network.heal()
    elif kind == "loss":
        network.loss = action.value
    elif kind == "dup":
        network.duplicate = action.value
    elif kind == "reorder":
        network.reorder = action.value
    elif kind == "slow":
        nodes[index].cpu_factor = action.value
    elif kind == "skew":
        nodes[index].set_clock(now, offset_jump_s=action.value, rate=action.rate or None)
    else:  # parse_item only builds the kinds above
        raise ConfigError(f"unknown fault kind {kind!r}")


def _wanted_byzantine(config: SimConfig, spec: ProtocolSpec) -> list[tuple[int, str]]:
    if config.byzantine.strip() in ("", "none"):
        return []
    if not spec.behaviours:
        raise ConfigError(f"protocol {config.protocol!r} tolerates crash faults only; --byzantine needs pbft or hotstuff")
    return parse_byzantine(config.byzantine, spec.behaviours)


def _codec() -> Any:
    from quorate.runtime.sim.protocols import ServiceCodec

    return ServiceCodec()


def run(
    config: SimConfig,
    progress: Callable[[float, float], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> SimResult:
    """Build and run one simulation (see the module docstring)."""
    return Simulation(config).run(progress, clock)
