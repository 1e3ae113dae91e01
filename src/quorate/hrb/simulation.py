"""HRB as a simulated system: what ``quorate sim hrb`` runs (``docs/hrb.md`` section 11).

Theory of operation. ``HrbSystem`` is the model a simulator of composed
systems runs (``quorate.runtime.sim.composed.SystemModel``; this package
never imports a runtime, the CLI joins the two). It is sans-IO: it builds
groups, runs the agents, watches and reports; the simulator owns time, the
network, the disks and the faults.

- **Deployment.** N nodes dealt into shards of ``shard_size`` by the genesis
  beacon, epoch 0's core of ``core_size`` chosen by the genesis
  (``quorate.hrb.core.genesis``), composed by ``quorate.hrb.system``: node n
  hosts its shard's watched-Raft group (group id = shard) with an
  ``AgentDesk`` for agents, and, while it is a core member, the core group
  (``CORE_GROUP_BASE`` + epoch) on HotStuff or PBFT. A node asked to take
  part in epoch e + 1 by epoch e's members hosts a joining replica
  (``unknown_group``). Signatures are the cost-model keyring's, threshold
  signatures the cost-model suite's: forgeries still fail.
- **Byzantine nodes** (``--byzantine COUNT:BEHAVIOUR``). Shard behaviours
  (``quorate.hrb.shard.byzantine``) go to nodes outside epoch 0's core
  (to core members only when too few nodes are outside it), drawn from the
  seed; the core takes the BFT cores' own behaviours
  (``equivocate``, ``silent`` ...) on core members. A Byzantine node that
  misbehaves as leader campaigns as early as Raft lets it
  (``EAGER_ELECTION_TIMEOUT_S``): an adversary wants to lead. Each mode's
  tolerance is checked against the placement dealt (``ConfigError`` unless
  ``allow_unsafe``): ``byzantine`` shards at most ⌊(s − 1)/3⌋ Byzantine
  members; ``majority`` shards no lying follower (the mode assumes
  crash-only followers) and at most ⌊(s − 1)/3⌋ Byzantine leaders; the core
  at most ⌊(C − 1)/3⌋.
- **Online checks** (``observe``, after every turn of a group): each shard's
  ``ShardSafetyMonitor`` over its honest members (certified agreement, lock
  discipline, store atomicity), and core agreement twice: honest core
  members' ordering cores commit the same command at each index of an
  epoch's log (``_WitnessedCore``), and at the same (epoch, decision count)
  they hold the same decision chain digest.
- **Atomicity, online** (``sample``, every ``SAMPLE_INTERVAL_S`` of
  simulated time; ``_AtomicityWatch``): no transaction decided one way by
  one honest member and the other way by another, in any shard; no store
  told to break atomicity; and, for ``bank``, the total of all balances is
  conserved: on each shard's most advanced honest member, with every
  transaction committed anywhere completed where it is not applied yet
  (its prepare record's writes: decisions are certified and final), every
  account and inbox adds up to ``INITIAL_BALANCE`` times the accounts
  opened. A round where some shard has not prepared a committed
  transaction yet cannot be completed and is skipped (counted). The first
  violation stops the run with its simulated time and the transactions
  decided since the last good check.
- **Timeline** (``sample``): first leadership, detection (an honest member
  of its shard convicted it or deposed it by suspicion), deposition (no
  honest member follows it) and eviction (most honest members of its shard
  applied the core's certified ``Evict``) of every Byzantine shard node;
  leaders per (shard, term); core members per epoch and decisions made.
- **Report**: throughput and latency split intra/cross-shard; atomicity
  across shards (every involved shard decided a transaction the same way;
  bank: with every decision settled, the total of all balances on the
  shards' most advanced honest members equals what was deposited);
  detections; evictions; reputation; shard and core figures; the Byzantine
  share dealt beside the hypergeometric honest-scope figures; messages per
  core decision beside PBFT's all-to-all count at the same core size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quorate.core.binding import BftSettings, ClusterContext, CoreBuilder, parse_byzantine_spec
from quorate.core.host import HostedGroup
from quorate.crypto.costmodel import CpuMeter, CryptoCosts
from quorate.crypto.dkg import encryption_keypair
from quorate.crypto.keyring import CostModelKeyring
from quorate.errors import ConfigError, InvariantViolation
from quorate.hotstuff.config import HotStuffConfig
from quorate.hrb.agents import INITIAL_BALANCE, AgentPool, Completed, WorkloadSettings
from quorate.hrb.core.config import CoreConfig, CoreRules
from quorate.hrb.core.genesis import genesis
from quorate.hrb.core.replica import CoreReplica
from quorate.hrb.core.threshold import CostModelSuite
from quorate.hrb.desk import AgentDesk
from quorate.hrb.messages import CORE_GROUP_BASE
from quorate.hrb.partition import (
    PARTITION_GROUP,
    PartitionConfig,
    PartitionDesk,
    PartitionMember,
    PartitionWatch,
    ShardView,
)
from quorate.hrb.reputation import summary as reputation_summary
from quorate.hrb.reshard_member import ReshardingPartitionMember
from quorate.hrb.scope import deployment_risk, shard_byzantine_share, shard_risk, third_bound
from quorate.hrb.shard.byzantine import BEHAVIOURS as SHARD_BEHAVIOURS
from quorate.hrb.shard.byzantine import ByzantineShardReplica
from quorate.hrb.shard.config import QUORUM_MODES, ShardConfig
from quorate.hrb.shard.invariants import ShardSafetyMonitor
from quorate.hrb.shard.replica import ShardReplica
from quorate.hrb.system import Deployment, ShardMember, build_core_member, build_shard_member
from quorate.ids import NodeId
from quorate.pbft.config import PbftConfig
from quorate.raft.config import RaftConfig

__all__ = [
    "CORE_BEHAVIOURS",
    "CORE_BFTS",
    "HrbSimSettings",
    "HrbSystem",
    "parse_hrb_byzantine",
]

CORE_BFTS = ("hotstuff", "pbft")
CORE_BEHAVIOURS = ("equivocate", "silent", "slow", "bad_signatures", "withhold_votes", "replay", "forge")
"""The BFT cores' Byzantine behaviours a core member may run (``flood`` needs the runtime's copies)."""
LEADER_BEHAVIOURS = tuple(b for b in SHARD_BEHAVIOURS if b.endswith("-leader"))
ELECTION_TIMEOUT_S = 1.0
HEARTBEAT_INTERVAL_S = 0.1
EAGER_ELECTION_TIMEOUT_S = 0.3
"""A Byzantine leader-to-be's election timeout: it campaigns before honest members do."""
TXN_TIMEOUT_S = 5.0
"""Core log time after which an undecided transaction aborts."""
CORE_TICK_S = 0.25
AGENTS_PER_SHARD = 2


def sim_raft(election_timeout_s: float = ELECTION_TIMEOUT_S) -> RaftConfig:
    return RaftConfig(
        election_timeout_s=election_timeout_s,
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        pre_vote=True,
        check_quorum=True,
    )


SIM_CORE = CoreConfig(certificate_timeout_s=0.5, max_certificate_timeout_s=4.0, dkg_phase_timeout_s=1.0, join_retry_s=0.5)
SIM_HOTSTUFF = HotStuffConfig(view_timeout_s=0.5, max_view_timeout_s=4.0, batch_max=64)
SIM_PBFT = PbftConfig(view_change_timeout_s=1.0)


def parse_hrb_byzantine(text: str) -> list[tuple[int, str]]:
    """``"4:equivocating-leader,1:silent"`` -> ``[(4, ...), (1, ...)]``; ``ConfigError`` on a bad part."""
    return parse_byzantine_spec(
        text,
        (*SHARD_BEHAVIOURS, *CORE_BEHAVIOURS),
        f"shard members: {', '.join(SHARD_BEHAVIOURS)}; core members: {', '.join(CORE_BEHAVIOURS)}",
    )


@dataclass(frozen=True, slots=True)
class HrbSimSettings:
    """Everything HRB-specific of one simulated run (the network, faults and
    duration are the simulator's)."""

    nodes: int = 200
    shard_size: int = 25
    core_size: int = 7
    quorum: str = "byzantine"
    core_bft: str = "hotstuff"
    byzantine: str = ""
    allow_unsafe: bool = False
    agents: int = 0
    """0: ``AGENTS_PER_SHARD`` per shard."""
    epoch_length: int = 10**9
    """Core decisions per epoch (epochs also change when a core member is evicted)."""
    seed: int = 0
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)
    partition: PartitionConfig | None = None
    """Partition detection and degraded mode (``hrb/partition.py``): every node hosts a watch."""
    dynamic_sharding: bool = False
    """Splits, merges and agent moves through the core (``quorate.hrb.reshard``)."""
    reshard: tuple[tuple[float, Any], ...] = ()
    """Dynamic sharding: (time, ``MapChange``) proposed at that time as they are."""
    partitioner: bool = True
    """Dynamic sharding: the background partitioner proposes changes (off: only ``reshard``)."""
    crypto_costs: CryptoCosts | None = None
    """What signatures, verifications and threshold shares cost (None: ``CryptoCosts``'
    defaults). Charged to a node's CPU only by a simulator that reads ``cpu_meter``."""

    def validate(self) -> HrbSimSettings:
        if self.nodes < 4:
            raise ConfigError(f"HRB needs at least 4 nodes, got {self.nodes}")
        if not 4 <= self.shard_size <= self.nodes:
            raise ConfigError(f"shard-size must be within 4..{self.nodes} (the nodes), got {self.shard_size}")
        if not 4 <= self.core_size <= self.nodes:
            raise ConfigError(f"core must be within 4..{self.nodes} (the nodes), got {self.core_size}")
        if self.quorum not in QUORUM_MODES:
            raise ConfigError(f"quorum must be one of {', '.join(QUORUM_MODES)}, got {self.quorum!r}")
        if self.core_bft not in CORE_BFTS:
            raise ConfigError(f"core-bft must be one of {', '.join(CORE_BFTS)}, got {self.core_bft!r}")
        if self.agents < 0:
            raise ConfigError(f"agents must be >= 0 (0: {AGENTS_PER_SHARD} per shard), got {self.agents}")
        if self.epoch_length < 1:
            raise ConfigError(f"epoch-length must be >= 1, got {self.epoch_length}")
        self.workload.validate()
        parse_hrb_byzantine(self.byzantine)
        if self.partition is not None:
            self.partition.validate()
        return self


@dataclass(slots=True)
class _Timeline:
    """What the sampler saw of one Byzantine shard node."""

    node: int
    shard: int
    behaviour: str
    led_at: float | None = None
    detected_at: float | None = None
    deposed_at: float | None = None
    evicted_at: float | None = None


class HrbSystem:
    """One HRB deployment as a simulated system (see the module docstring)."""

    def __init__(self, settings: HrbSimSettings) -> None:
        self.settings = s = settings.validate()
        seed = s.seed
        self.keyring = CostModelKeyring(seed, costs=s.crypto_costs)
        self.suite = CostModelSuite(b"hrb-sim-%d" % seed, costs=s.crypto_costs)
        self._suites: dict[int, CostModelSuite] = {}
        self._deployments: dict[int, tuple[Deployment, Deployment]] = {}
        rules = CoreRules(
            core_size=s.core_size,
            epoch_length=s.epoch_length,
            txn_timeout_s=TXN_TIMEOUT_S,
            tick_interval_s=CORE_TICK_S,
            shard_quorum=s.quorum,
        )
        self.encryption = {NodeId(n): encryption_keypair(b"hrb-sim %d %d" % (seed, n)) for n in range(1, s.nodes + 1)}
        shard_config = ShardConfig(
            quorum=s.quorum,
            raft=sim_raft(),
            max_txn_bytes=max(ShardConfig().max_txn_bytes, 4 * s.workload.txn_bytes),
        )
        self.deployment = Deployment(
            genesis(
                {n: public for n, (_, public) in self.encryption.items()},
                shard_size=s.shard_size,
                seed=b"hrb-genesis-%d" % seed,
                suite=self.suite,
                rules=rules,
            ),
            self.suite,
            shard_config,
            SIM_CORE,
        )
        self.eager = dataclasses.replace(
            self.deployment, shard_config=dataclasses.replace(shard_config, raft=sim_raft(EAGER_ELECTION_TIMEOUT_S))
        )
        self.shards = {k: tuple(int(m) for m in v) for k, v in self.deployment.shards.items()}
        self.shard_of = {m: k for k, members in self.shards.items() for m in members}
        self.byzantine = self._choose_byzantine(parse_hrb_byzantine(s.byzantine))
        core_byzantine = {NodeId(n): b for n, b in self.byzantine.items() if b in CORE_BEHAVIOURS}
        self.shard_byzantine = {n: b for n, b in self.byzantine.items() if b in SHARD_BEHAVIOURS}
        self._check_tolerance(core_byzantine)
        self.bft = self._witnessed(self._bft_builder(core_byzantine))
        self.members: dict[int, ShardMember] = {}
        """Node -> its shard member (the latest incarnation; a crashed node's keeps its last state)."""
        self.cores: dict[tuple[int, int], CoreReplica] = {}
        """(node, epoch) -> its core replica (latest incarnation)."""
        self.members_of: dict[int, tuple[int, ...]] = {0: tuple(int(m) for m in self.deployment.core_members)}
        self.monitors = {k: ShardSafetyMonitor() for k in self.shards}
        self._chains: dict[tuple[int, int], tuple[bytes, int]] = {}
        self.core_log: dict[tuple[int, int], tuple[bytes, int]] = {}
        """(epoch, index) -> (hash of the command ordered there, first honest member seen)."""
        self.decisions_by_epoch: dict[int, int] = {}
        self.leaders: dict[tuple[int, int], int] = {}
        self.timelines = {n: _Timeline(n, self.shard_of[n], b) for n, b in sorted(self.shard_byzantine.items())}
        shard_f = max(1, third_bound(s.shard_size)) if s.quorum == "byzantine" else 0
        agents = s.agents or AGENTS_PER_SHARD * len(self.shards)
        self.dynamic: Any = None
        if s.dynamic_sharding:
            from quorate.hrb.reshard_sim import DynamicSharding

            self.dynamic = DynamicSharding(self, agents)
        self.pool = AgentPool(
            s.workload,
            agents=agents,
            members=self.shards,
            replies_needed=shard_f + 1 if s.quorum == "byzantine" else 1,
            seed=seed,
            ready=self.shards_led if s.workload.wait_for_leaders else None,
            **(self.dynamic.pool_options() if self.dynamic is not None else {}),
        )
        self.agents = agents
        self.stopped_at: float | None = None
        self.watches: dict[int, PartitionWatch] = {}
        """Node -> its partition watch (latest incarnation), when ``settings.partition`` is set."""
        self.atomicity = _AtomicityWatch(self, bank=s.workload.workload == "bank")

    # -- building --------------------------------------------------------------------------------
    def _choose_byzantine(self, wanted: list[tuple[int, str]]) -> dict[int, str]:
        rng = random.Random(f"{self.settings.seed}:byzantine")
        core = sorted(int(m) for m in self.deployment.core_members)
        outside = [n for n in range(1, self.settings.nodes + 1) if n not in set(core)]
        core_wanted = sum(c for c, b in wanted if b in CORE_BEHAVIOURS)
        shard_wanted = sum(c for c, b in wanted if b in SHARD_BEHAVIOURS)
        if core_wanted > len(core):
            raise ConfigError(f"{core_wanted} Byzantine core members asked for, but the core has {len(core)}")
        if shard_wanted + core_wanted > self.settings.nodes:
            raise ConfigError(f"{shard_wanted + core_wanted} Byzantine nodes asked for, but there are {self.settings.nodes}")
        core_pick = rng.sample(core, core_wanted)
        shard_pick = rng.sample(outside, min(shard_wanted, len(outside)))
        if shard_wanted > len(shard_pick):
            # Too few nodes outside the core: core members misbehave in their shards too.
            rest = [n for n in core if n not in core_pick]
            if shard_wanted - len(shard_pick) > len(rest):
                raise ConfigError(f"{shard_wanted} Byzantine shard members and {core_wanted} core ones do not fit {self.settings.nodes} nodes")
            shard_pick = rng.sample(rest, shard_wanted - len(shard_pick)) + shard_pick
        out: dict[int, str] = {}
        for count, behaviour in wanted:
            pool = core_pick if behaviour in CORE_BEHAVIOURS else shard_pick
            for _ in range(count):
                out[pool.pop()] = behaviour
        return dict(sorted(out.items()))

    def _check_tolerance(self, core_byzantine: Mapping[NodeId, str]) -> None:
        s = self.settings
        if s.allow_unsafe:
            return
        core_f = (s.core_size - 1) // 3
        if len(core_byzantine) > core_f:
            raise ConfigError(
                f"{len(core_byzantine)} Byzantine core members exceed what a core of {s.core_size} tolerates "
                f"(f={core_f}); pass --allow-unsafe to run it anyway"
            )
        for shard, members in self.shards.items():
            bad = [m for m in members if m in self.shard_byzantine]
            bound = third_bound(len(members))
            liars = [m for m in bad if self.shard_byzantine[m] == "lying-follower"]
            if s.quorum == "majority" and liars:
                raise ConfigError(
                    f"quorum majority assumes crash-only followers, but shard {shard} got {len(liars)} lying "
                    "follower(s); pass --allow-unsafe to run it anyway"
                )
            if len(bad) > bound:
                raise ConfigError(
                    f"shard {shard} was dealt {len(bad)} Byzantine members, more than a shard of {len(members)} "
                    f"tolerates (f={bound}); pass --allow-unsafe to run it anyway"
                )

    def _bft_builder(self, core_byzantine: Mapping[NodeId, str]) -> CoreBuilder:
        context = ClusterContext(self.keyring, dict(core_byzantine))
        if self.settings.core_bft == "pbft":
            from quorate.pbft.binding import BINDING as PBFT

            return PBFT.builder(BftSettings(SIM_PBFT), context)
        from quorate.hotstuff.binding import BINDING as HOTSTUFF

        return HOTSTUFF.builder(BftSettings(SIM_HOTSTUFF), context)

    def _witnessed(self, build: CoreBuilder) -> CoreBuilder:
        def witnessed(node: NodeId, members: tuple[NodeId, ...], rng: random.Random, now: float, recovered: Any) -> Any:
            inner = build(node, members, rng, now, recovered)
            if int(node) in self.byzantine:
                return inner
            return _WitnessedCore(inner, self, int(node), tuple(int(m) for m in members))

        return witnessed

    def initial_groups(self, node: NodeId) -> list[int]:
        groups = [PARTITION_GROUP] if self.settings.partition is not None else []
        groups.append(self.shard_of[int(node)])
        if int(node) in self.members_of[0]:
            groups.append(CORE_GROUP_BASE)
        return groups

    def cpu_meter(self, node: NodeId) -> CpuMeter:
        """What ``node``'s signatures, verifications and threshold shares and
        combines have cost since the simulator last took it (``spent_s``): its
        signer's, verifier's and threshold suite's shared meter."""
        return self.keyring.meter(node)

    def node_suite(self, node: NodeId) -> CostModelSuite:
        """``node``'s threshold suite: the run's keys, ``node``'s CPU meter."""
        suite = self._suites.get(int(node))
        if suite is None:
            suite = self._suites[int(node)] = CostModelSuite(
                b"hrb-sim-%d" % self.settings.seed, costs=self.settings.crypto_costs, meter=self.cpu_meter(node)
            )
        return suite

    def _deployment_of(self, node: NodeId) -> tuple[Deployment, Deployment]:
        """(the deployment, the eager one) as ``node`` is given them: with its own suite."""
        found = self._deployments.get(int(node))
        if found is None:
            suite = self.node_suite(node)
            found = self._deployments[int(node)] = (
                dataclasses.replace(self.deployment, suite=suite),
                dataclasses.replace(self.eager, suite=suite),
            )
        return found

    def build_group(self, node: NodeId, group: int, now: float, recovered: Any) -> HostedGroup | None:
        seed = self.settings.seed
        signer, verifier = self.keyring.signer(node), self.keyring.verifier(node)
        plain, eager = self._deployment_of(node)
        if group >= CORE_GROUP_BASE:
            epoch = group - CORE_GROUP_BASE
            rng = random.Random(f"{seed}:core:{node}:{epoch}:{now}")
            core: CoreReplica | None
            if epoch == 0:
                core = build_core_member(
                    plain, node, bft=self.bft, signer=signer, verifier=verifier, rng=rng, now=now,
                    recovered=recovered, bft_name=self.settings.core_bft,
                )
            else:
                core = self._joiner(node, epoch, rng, now, recovered)
            if core is None:
                return None
            self.cores[(int(node), epoch)] = core
            if self.dynamic is not None:
                return HostedGroup(group, core, None, state=self.dynamic.core_desk(core))
            return HostedGroup(group, core, None)
        if group == PARTITION_GROUP:
            return self._watch(node, now)
        behaviour = self.shard_byzantine.get(int(node))
        deployment = eager if behaviour in LEADER_BEHAVIOURS else plain
        rng = random.Random(f"{seed}:shard:{node}:{now}")
        replica = build_shard_member(deployment, node, signer=signer, verifier=verifier, rng=rng, now=now, recovered=recovered)
        inner: Any = replica
        if behaviour is not None:
            inner = ByzantineShardReplica(replica, behaviour, rng=random.Random(f"{seed}:byzantine:{node}:{now}"))
        if self.settings.partition is not None:
            view = self._shard_view(int(node), replica.store)
            degraded: Any = (
                PartitionMember(inner, replica.store, view)
                if self.dynamic is None
                else self.dynamic.member(inner, replica.store, now, view)
            )
            self.members[int(node)] = degraded
            return HostedGroup(group, degraded, None, state=PartitionDesk(degraded, view))
        if self.dynamic is not None:
            member = self.members[int(node)] = self.dynamic.member(inner, replica.store, now)
        else:
            member = self.members[int(node)] = ShardMember(inner, replica.store)
        return HostedGroup(group, member, None, state=AgentDesk(member))

    def _watch(self, node: NodeId, now: float) -> HostedGroup:
        assert self.settings.partition is not None
        rng = random.Random(f"{self.settings.seed}:watch:{node}:{now}")
        nodes = range(1, self.settings.nodes + 1)
        watch = self.watches[int(node)] = PartitionWatch(
            node, nodes, config=self.settings.partition, rng=rng, now=now, watched=lambda: self._watched_by(int(node))
        )
        return HostedGroup(PARTITION_GROUP, watch, None)

    def _watched_by(self, node: int) -> tuple[int, ...]:
        """The peers a node's watch sends heartbeats to: its shard's members and the core it knows."""
        member = self.members.get(node)
        if isinstance(member, PartitionMember | ReshardingPartitionMember):
            core = member.store.epoch_members()
        else:
            core = self.members_of[0]
        return tuple(sorted(set(self.shards[self.shard_of[node]]) | set(core)))

    def _shard_view(self, node: int, store: Any) -> ShardView:
        assert self.settings.partition is not None
        return ShardView(
            shard=self.shard_of[node],
            shards=self.shards,
            mode=self.settings.quorum,
            watch=lambda: self.watches.get(node),
            core_members=store.epoch_members,
            config=self.settings.partition,
        )

    def _joiner(self, node: NodeId, epoch: int, rng: random.Random, now: float, recovered: Any) -> CoreReplica | None:
        previous = self.members_of.get(epoch - 1)
        if previous is None:
            return None
        return CoreReplica(
            node,
            epoch,
            bft=self.bft,
            suite=self.node_suite(node),
            signer=self.keyring.signer(node),
            verifier=self.keyring.verifier(node),
            rng=rng,
            now=now,
            config=self.deployment.core_config,
            checker=self.deployment.checker(),
            recovered=recovered,
            previous_members=tuple(NodeId(m) for m in previous),
            encryption_secret=self.encryption[node][0],
            bft_name=self.settings.core_bft,
        )

    def unknown_group(self, node: NodeId, sender: NodeId, group: int, message: Any, now: float) -> HostedGroup | None:
        if group <= CORE_GROUP_BASE or (group - CORE_GROUP_BASE - 1) not in self.members_of:
            return None
        return self.build_group(node, group, now, None)

    # -- online checks ---------------------------------------------------------------------------
    def observe(self, group: HostedGroup, now: float) -> None:
        core = group.core
        if group.id == PARTITION_GROUP:
            return
        if group.id < CORE_GROUP_BASE:
            member = core.member  # type: ignore[attr-defined]
            if type(member) is ShardReplica:
                self.monitors[group.id].check(member, now)
            return
        state = core.state  # type: ignore[attr-defined]
        if state is None:
            return
        snapshot = state.s
        epoch = snapshot.epoch
        if epoch not in self.members_of:
            self.members_of[epoch] = tuple(snapshot.members)
        if snapshot.decisions > self.decisions_by_epoch.get(epoch, 0):
            self.decisions_by_epoch[epoch] = snapshot.decisions
        node = int(core.id)
        if node in self.byzantine:
            return
        if self.dynamic is not None:
            self.dynamic.observe_core(state, now, core.certifier)  # type: ignore[attr-defined]
        point = (epoch, snapshot.decisions)
        seen = self._chains.setdefault(point, (snapshot.chain, node))
        if seen[0] != snapshot.chain:
            raise InvariantViolation(
                f"core agreement: members {seen[1]} and {node} made different decisions through "
                f"epoch {epoch} decision {snapshot.decisions}"
            )

    # -- agents ------------------------------------------------------------------------------------
    def agent_receive(self, agent: int, sender: int, message: Any, now: float) -> None:
        self.pool.receive(agent, sender, message, now)

    def agent_tick(self, now: float) -> None:
        self.pool.tick(now)
        if self.dynamic is not None:
            self.dynamic.tick(now)

    def agent_wake_at(self) -> float | None:
        wake = self.pool.wake_at()
        if self.dynamic is not None:
            other = self.dynamic.wake_at()
            if other is not None:
                wake = other if wake is None else min(wake, other)
        return wake

    def take_agent_sends(self) -> list[tuple[int, int, int, Any]]:
        sends = self.pool.take_sends()
        if self.dynamic is not None:
            sends += self.dynamic.take_sends()
        return sends

    def stop_agents(self, now: float) -> None:
        self.pool.stop()
        self.stopped_at = now
        if self.dynamic is not None:
            self.dynamic.stop()

    # -- timeline ----------------------------------------------------------------------------------
    def shards_led(self) -> bool:
        """Every shard has an honest member that knows a leader of its term
        (the agents' ``ready`` condition when they wait for the first elections)."""
        members = self.members
        for shard_members in self.shards.values():
            for m in shard_members:
                member = members.get(m)
                if member is not None and type(member.member) is ShardReplica and member.member.leader_id is not None:
                    break
            else:
                return False
        return True

    def _honest(self, shard: int, alive: Sequence[bool]) -> list[ShardReplica]:
        out = []
        for m in self.shards[shard]:
            member = self.members.get(m)
            if member is not None and alive[m - 1] and type(member.member) is ShardReplica:
                out.append(member.member)
        return out

    def sample(self, now: float, alive: Sequence[bool]) -> None:
        leaders = self.leaders
        for node, member in self.members.items():
            if not alive[node - 1]:
                continue
            replica = member.member
            inner = replica if type(replica) is ShardReplica else replica.inner
            if inner.is_leader:
                leaders.setdefault((self.shard_of[node], inner.term), node)
        for t in self.timelines.values():
            self._follow(t, now, alive)
        self.atomicity.check(now)

    def _follow(self, t: _Timeline, now: float, alive: Sequence[bool]) -> None:
        if t.evicted_at is not None:
            return
        member = self.members.get(t.node)
        if t.led_at is None and member is not None and alive[t.node - 1] and member.member.inner.is_leader:
            t.led_at = now
        honest = self._honest(t.shard, alive)
        if not honest:
            return
        if t.detected_at is None and any(t.node in r.convicted or t.node in r.deposed for r in honest):
            t.detected_at = now
        if t.detected_at is not None and t.deposed_at is None and all(r.leader_id != t.node for r in honest):
            t.deposed_at = now
        if 2 * sum(1 for r in honest if t.node in r.store.evicted) > len(honest):
            t.evicted_at = now
            if t.deposed_at is None:
                t.deposed_at = now

    def liveness(self, heal_at_s: float) -> float | None:
        """How long after ``heal_at_s`` the first transaction invoked after it completed ok."""
        firsts = [c.invoked_at + c.latency_s for c in self.pool.completed if c.outcome == "ok" and c.invoked_at >= heal_at_s]
        return round(min(firsts) - heal_at_s, 6) if firsts else None

    # -- the report ------------------------------------------------------------------------------
    def report(
        self, now: float, alive: Sequence[bool], group_messages: Mapping[tuple[int, str], int]
    ) -> dict[str, Any]:
        """The model's part of the result; ``group_messages``: messages sent per (group, type)."""
        s = self.settings
        pool = self.pool
        pool.finish()
        duration = max(1e-9, (self.stopped_at if self.stopped_at else now) - (pool.started_at or 0.0))
        violations: list[dict[str, Any]] = []
        atomicity, unsettled, total = self._atomicity(violations)
        core_state = self._latest_core_state()
        decisions = sum(self.decisions_by_epoch.values())
        share = shard_byzantine_share(self.shards, self.shard_byzantine)
        f_total = (s.nodes - 1) // 3
        one, whole = shard_risk(s.nodes, s.shard_size), deployment_risk(s.nodes, s.shard_size)
        c = s.core_size
        evicted = sorted(int(n) for n in core_state.evicted) if core_state is not None else []
        return {
            "agents_started_at_s": None if pool.started_at is None else round(pool.started_at, 6),
            "committed_ops": sum(1 for x in pool.completed if x.outcome == "ok"),
            "failed_ops": sum(1 for x in pool.completed if x.outcome == "fail"),
            "unknown_ops": sum(1 for x in pool.completed if x.outcome == "info"),
            "throughput_ops": _throughput(pool.completed, duration),
            "latency_ms": _latency(pool.completed),
            "elections": len(self.leaders),
            "leader_changes": _leader_changes(self.leaders),
            "byzantine": {str(k): v for k, v in self.byzantine.items()},
            "quorum_mode": s.quorum,
            "workload": s.workload.workload,
            "atomicity_violations": atomicity + self.atomicity.violations,
            "atomicity_unsettled_txns": unsettled,
            "atomicity_checks": self.atomicity.report(),
            "bank_total": total,
            "detections": [self._detection(t) for t in self.timelines.values()],
            "evicted": evicted,
            "evicted_honest": [n for n in evicted if n not in self.byzantine],
            "convictions": self._convictions(),
            "reputation": reputation_summary(core_state.s.facts, core_state.s.rules.weights).to_json()
            if core_state is not None
            else {},
            "shards": self._shards_report(alive),
            "core": {str(e): list(m) for e, m in sorted(self.members_of.items())},
            "core_bft": s.core_bft,
            "epochs": len(self.members_of),
            "core_decisions": decisions,
            "shard_byzantine_share": {
                **share.to_json(),
                "honest_scope": {
                    "nodes": s.nodes,
                    "shard_size": s.shard_size,
                    "byzantine_nodes_f": f_total,
                    "p_shard_over_third": float(one.p_over_third),
                    "p_shard_majority": float(one.p_majority),
                    "p_any_shard_over_third": float(whole.p_any_over_third),
                    "p_any_shard_majority": float(whole.p_any_majority),
                },
            },
            "messages_per_core_decision": _core_messages(group_messages, decisions, c),
            "safety_violations": violations,
            "history": pool.history,
            **({"dynamic_sharding": self.dynamic.report(duration)} if self.dynamic is not None else {}),
        }

    def _latest_core_state(self) -> Any:
        best = None
        for (node, epoch), replica in sorted(self.cores.items()):
            if node in self.byzantine or replica.state is None:
                continue
            key = (epoch, replica.state.s.decisions)
            if best is None or key > best[0]:
                best = (key, replica.state)
        return best[1] if best is not None else None

    def _atomicity(self, violations: list[dict[str, Any]]) -> tuple[int, int, int | None]:
        """(violations, unsettled transactions, bank total or None)."""
        count = 0
        decided: dict[bytes, tuple[bool, int]] = {}
        best: dict[int, ShardReplica] = {}
        for shard, members in self.shards.items():
            for m in members:
                member = self.members.get(m)
                if member is None or type(member.member) is not ShardReplica:
                    continue
                replica = member.member
                store = replica.store
                for v in store.violations:
                    count += 1
                    violations.append({"time_s": None, "message": f"shard {shard} member {m}: {v.reason}"})
                for txn_id, commit in store.decided.items():
                    seen = decided.setdefault(txn_id, (commit, shard))
                    if seen[0] != commit:
                        count += 1
                        violations.append({
                            "time_s": None,
                            "message": f"transaction {txn_id.hex()} decided {seen[0]} in shard {seen[1]} "
                            f"and {commit} in shard {shard} (member {m})",
                        })
                        decided[txn_id] = (commit, shard)
                if shard not in best or replica.applied_index > best[shard].applied_index:
                    best[shard] = replica
        unsettled = 0
        for txn_id, shards in self.pool.involved.items():
            outcome = decided.get(txn_id)
            if outcome is None:
                continue
            # A shard that never heard of an aborted transaction has nothing to settle
            # (the abort can be decided before the begin reaches a shard that was cut off).
            if any(
                k not in best
                or (txn_id not in best[k].store.decided and (outcome[0] or txn_id in best[k].store.prepared))
                for k in shards
            ):
                unsettled += 1
        if self.settings.workload.workload != "bank":
            return count, unsettled, None
        total = 0
        opened = 0
        if self.dynamic is not None:
            extra, dynamic_total = self.dynamic.bank_total(best, unsettled, violations)
            return count + extra, unsettled, dynamic_total
        for replica in best.values():
            for key, value in replica.store.data.items():
                if key.startswith("acct"):
                    opened += 1
                    total += int(value)
                elif key.startswith("inbox"):
                    total += int(value)
        if unsettled == 0 and total != INITIAL_BALANCE * opened:
            count += 1
            violations.append({
                "time_s": None,
                "message": f"bank total {total} != {INITIAL_BALANCE} x {opened} accounts opened",
            })
        return count, unsettled, total

    def _convictions(self) -> list[dict[str, Any]]:
        """Every node some honest shard member convicted: the first time, the evidence kind, by whom."""
        first: dict[int, tuple[float, str, int]] = {}
        for node, member in sorted(self.members.items()):
            if type(member.member) is not ShardReplica:
                continue
            for offender, kind, at, _ in member.member.detections:
                seen = first.get(int(offender))
                if seen is None or at < seen[0]:
                    first[int(offender)] = (at, kind, node)
        return [
            {"offender": n, "byzantine": self.byzantine.get(n), "evidence": kind, "at_s": round(at, 3), "by": by}
            for n, (at, kind, by) in sorted(first.items())
        ]

    def _detection(self, t: _Timeline) -> dict[str, Any]:
        def after(at: float | None) -> float | None:
            return None if at is None or t.led_at is None else round(max(0.0, at - t.led_at), 3)

        return {
            "offender": t.node,
            "shard": t.shard,
            "behaviour": t.behaviour,
            "led_at_s": None if t.led_at is None else round(t.led_at, 3),
            "detected_after_s": after(t.detected_at),
            "deposed_after_s": after(t.deposed_at),
            "evicted_after_s": after(t.evicted_at),
        }

    def _shards_report(self, alive: Sequence[bool]) -> dict[str, Any]:
        per = []
        for shard, members in self.shards.items():
            honest = self._honest(shard, alive)
            leader = next((int(r.id) for r in honest if r.is_leader), None)
            per.append({
                "shard": shard,
                "members": len(members),
                "byzantine": sum(1 for m in members if m in self.shard_byzantine),
                "leader": leader,
                "term": max((r.term for r in honest), default=None),
                "applied_index": max((r.applied_index for r in honest), default=0),
            })
        return {"count": len(self.shards), "size": self.settings.shard_size, "per_shard": per}


class _AtomicityWatch:
    """The cross-shard atomicity invariant, checked while the run goes on
    (module docstring, "Atomicity, online")."""

    def __init__(self, system: HrbSystem, *, bank: bool) -> None:
        self.system = system
        self.bank = bank
        self.decided: dict[bytes, tuple[bool, int, int]] = {}
        """txn id -> (commit, shard, member) of the first decision seen."""
        self._seen: dict[int, tuple[int, int, int]] = {}
        """member -> (id of its store, decisions read, violations read)."""
        self._since: list[bytes] = []
        """Transactions first decided since the last check that passed."""
        self._last_good: float | None = None
        self.checks = 0
        self.skipped = 0
        self.violations = 0

    def report(self) -> dict[str, Any]:
        return {"checked": self.checks, "skipped_unsettled": self.skipped, "last_passed_s": self._last_good}

    def check(self, now: float) -> None:
        system = self.system
        best: dict[int, ShardReplica] = {}
        for shard, members in system.shards.items():
            for m in members:
                member = system.members.get(m)
                if member is None or type(member.member) is not ShardReplica:
                    continue
                replica = member.member
                self._scan(now, shard, m, replica)
                if shard not in best or replica.applied_index > best[shard].applied_index:
                    best[shard] = replica
        if self.bank and len(best) == len(system.shards):
            self._check_total(now, best)

    def _fail(self, now: float, message: str) -> None:
        self.violations += 1
        raise InvariantViolation(f"atomicity at {now:.3f} s: {message}")

    def _scan(self, now: float, shard: int, node: int, replica: ShardReplica) -> None:
        """Decisions and store violations ``node`` made since the last scan."""
        store = replica.store
        seen = self._seen.get(node)
        start, violations = (seen[1], seen[2]) if seen is not None and seen[0] == id(store) else (0, 0)
        decided = store.decided
        if len(decided) > start:
            for txn_id, commit in itertools.islice(decided.items(), start, None):
                first = self.decided.get(txn_id)
                if first is None:
                    self.decided[txn_id] = (commit, shard, node)
                    self._since.append(txn_id)
                elif first[0] != commit:
                    self._fail(
                        now,
                        f"transaction {txn_id.hex()} {'committed' if first[0] else 'aborted'} in shard {first[1]} "
                        f"(member {first[2]}) and {'committed' if commit else 'aborted'} in shard {shard} (member {node})",
                    )
        if len(store.violations) > violations:
            v = store.violations[violations]
            self._fail(now, f"shard {shard} member {node} was told to break transaction {v.txn_id.hex()}: {v.reason}")
        self._seen[node] = (id(store), len(decided), len(store.violations))

    def _check_total(self, now: float, best: dict[int, ShardReplica]) -> None:
        views: list[dict[str, str]] = []
        for replica in best.values():
            store = replica.store
            data = store.data
            completed: dict[str, str] | None = None
            for txn_id, record in store.prepared.items():
                first = self.decided.get(txn_id)
                if first is None or not first[0]:
                    continue  # undecided, or aborted: nothing was written anywhere
                if not record.vote:
                    self._fail(now, f"transaction {txn_id.hex()} committed although shard {replica.shard} voted no")
                if completed is None:
                    completed = dict(data)
                completed.update(record.writes)
            views.append(completed if completed is not None else data)
        # A commit some shard has neither applied nor prepared cannot be completed yet.
        for txn_id in self._since:
            first = self.decided[txn_id]
            if not first[0]:
                continue
            involved = self.system.pool.involved.get(txn_id, ())
            for shard in involved:
                store = best[shard].store
                if txn_id not in store.decided and txn_id not in store.prepared:
                    self.skipped += 1
                    return
        total = opened = 0
        for view in views:
            for key, value in view.items():
                if key.startswith("acct"):
                    opened += 1
                    total += int(value)
                elif key.startswith("inbox"):
                    total += int(value)
        self.checks += 1
        if total != INITIAL_BALANCE * opened:
            since = ", ".join(t.hex() for t in self._since if self.decided[t][0]) or "none decided across shards"
            after = "the start" if self._last_good is None else f"{self._last_good:.3f} s"
            self._fail(
                now,
                f"bank total {total} != {INITIAL_BALANCE} x {opened} accounts opened; transactions committed since "
                f"the last good check ({after}): {since}",
            )
        self._last_good = now
        self._since = []


CORE_INPUTS = frozenset({"TxnRequest", "ShardVote", "RemovalProposal", "ReputationReport"})
"""Messages shard members send the core (every core member gets a copy)."""
CORE_CERTIFICATION = frozenset({"DecisionPartial", "CertificateRequest", "CoreCertificate"})
CORE_EPOCH_CHANGE = frozenset({"DkgRelay", "CoreHandover", "JoinRequest"})


class _WitnessedCore:
    """An honest core member's ordering core, watched: every command it
    commits is compared with what the other honest members committed at the
    same index of the same group (the BFT core's own agreement, seen from
    outside; ``HrbSystem.core_log``). Everything else goes to the core."""

    def __init__(self, inner: Any, system: HrbSystem, node: int, members: tuple[int, ...]) -> None:
        self._inner = inner
        self._system = system
        self._node = node
        self._members = members
        self._epoch: int | None = None
        """The epoch of the core replica holding this core (found on the first commit:
        a joining replica builds its ordering core only when its epoch starts)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self._inner.step(sender, message, now)

    def tick(self, now: float) -> None:
        self._inner.tick(now)

    def propose(self, command: bytes, now: float) -> Any:
        return self._inner.propose(command, now)

    def has_ready(self) -> bool:
        return bool(self._inner.has_ready())

    def advance(self, ready: Any) -> None:
        self._inner.advance(ready)

    def wake_at(self) -> float | None:
        wake: float | None = self._inner.wake_at()
        return wake

    def ready(self) -> Any:
        ready = self._inner.ready()
        if not ready.committed:
            return ready
        if self._epoch is None:
            self._epoch = next(
                (e for (n, e), r in self._system.cores.items() if n == self._node and r.inner is self), -1
            )
        log = self._system.core_log
        for entry in ready.committed:
            digest = hashlib.sha256(entry.data).digest()
            seen = log.setdefault((self._epoch, entry.index), (digest, self._node))
            if seen[0] != digest:
                raise InvariantViolation(
                    f"core agreement violated: members {seen[1]} and {self._node} committed different "
                    f"commands at index {entry.index} of epoch {self._epoch}'s core ({list(self._members)})"
                )
        return ready


def agents_count(settings: HrbSimSettings, shards: Mapping[int, Any]) -> int:
    return settings.agents or AGENTS_PER_SHARD * len(shards)


def _core_messages(group_messages: Mapping[tuple[int, str], int], decisions: int, core_size: int) -> dict[str, Any]:
    """Messages on the core's groups per core decision, by role, beside
    PBFT's all-to-all count for one batch of a group of ``core_size``
    (pre-prepare C - 1, prepare (C - 1)^2, commit C (C - 1))."""
    by_type: dict[str, int] = {}
    for (group, name), count in group_messages.items():
        if group >= CORE_GROUP_BASE:
            by_type[name] = by_type.get(name, 0) + count
    roles = {"ordering": 0, "certification": 0, "shard_inputs": 0, "epoch_change": 0}
    for name, count in by_type.items():
        if name in CORE_INPUTS:
            roles["shard_inputs"] += count
        elif name in CORE_CERTIFICATION:
            roles["certification"] += count
        elif name in CORE_EPOCH_CHANGE:
            roles["epoch_change"] += count
        else:
            roles["ordering"] += count
    certificates = sum(c for (g, name), c in group_messages.items() if g < CORE_GROUP_BASE and name == "CoreCertificate")

    def per(count: int) -> float | None:
        return round(count / decisions, 1) if decisions else None

    c = core_size
    return {
        "core_size": c,
        "decisions": decisions,
        "total": per(sum(by_type.values())),
        "ordering_and_certification": per(roles["ordering"] + roles["certification"]),
        **{role: per(count) for role, count in roles.items()},
        "certificates_to_shards": per(certificates),
        "pbft_all_to_all_per_batch": (c - 1) + (c - 1) * (c - 1) + c * (c - 1),
        "by_type": dict(sorted(by_type.items())),
    }


def _throughput(completed: list[Completed], duration_s: float) -> dict[str, float]:
    intra = sum(1 for c in completed if c.outcome == "ok" and not c.cross)
    cross = sum(1 for c in completed if c.outcome == "ok" and c.cross)
    return {
        "total": round((intra + cross) / duration_s, 3),
        "intra_shard": round(intra / duration_s, 3),
        "cross_shard": round(cross / duration_s, 3),
    }


def _latency(completed: list[Completed]) -> dict[str, dict[str, float | None]]:
    def pct(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50": None, "p90": None, "p99": None, "max": None}
        ordered = sorted(values)
        n = len(ordered)
        return {
            "p50": round(ordered[min(n - 1, int(0.5 * n))] * 1e3, 3),
            "p90": round(ordered[min(n - 1, int(0.9 * n))] * 1e3, 3),
            "p99": round(ordered[min(n - 1, int(0.99 * n))] * 1e3, 3),
            "max": round(ordered[-1] * 1e3, 3),
        }

    return {
        "intra_shard": pct([c.latency_s for c in completed if c.outcome == "ok" and not c.cross]),
        "cross_shard": pct([c.latency_s for c in completed if c.outcome == "ok" and c.cross]),
    }


def _leader_changes(leaders: Mapping[tuple[int, int], int]) -> int:
    changes = 0
    previous: tuple[int, int] | None = None
    for key in sorted(leaders):
        if previous is not None and previous[0] == key[0] and leaders[previous] != leaders[key]:
            changes += 1
        previous = key
    return changes
