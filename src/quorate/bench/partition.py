"""``quorate bench partition``: HRB's availability under network partitions (paper §4.3).

Theory of operation. Every figure comes from simulated runs of the real
protocol code: the HRB model (``quorate.hrb.simulation``, with partition
detection and degraded mode on, ``quorate.hrb.partition``) on the simulator
of composed systems, under a fixed set of partition scenarios, each run with
several seeds. The deployment is small so the default run stays short: 20
nodes in 5 shards of 4 (3f + 1, f = 1) over 3 regions, a core of 4,
``byzantine`` shard quorums (3 of 4), two bank agents per shard (20 % of
transfers cross shards) and one *probe* per shard, an agent that only
writes keys of its shard, so that a shard's availability is not hidden by
workload agents blocked on a cross-shard transaction waiting for the other
side. Agents stay reachable from every side (as clients of a real
deployment reach every region), so what a shard commits during a cut is
what the side holding its quorum commits.

Timeline of a run: load from 0 s; the cut at ``cut_at_s`` (4 s); the heal at
``heal_at_s`` (10 s); load until ``duration_s`` (14 s); then ``drain_s``
(5 s) for transactions in flight to settle. Scenarios (``SCENARIOS``), made
concrete from the deployment each seed deals:

- ``region-cut``: the nodes of region 0 (a third) are cut off from the
  other two regions;
- ``core-split``: half of the core's members (rounded down) are cut off
  from everyone else, so neither side holds the core's 2f + 1;
- ``shard-halves``: every shard is split in halves (⌊s/2⌋ of its members on
  one side, the rest on the other);
- ``one-way``: each shard's lowest-numbered member, and the core's, can no
  longer send to the rest of its group (it still hears them);
- ``flapping``: the region cut comes and goes every ``flap_period_s`` (1 s)
  between the cut and the heal; the network is whole half of the time, so
  every shard is expected to keep committing;
- ``reshard-cut``: a partition during a split and a merge. Dynamic sharding
  is on (``quorate.hrb.reshard``: every shard but the highest-numbered on
  the consistent-hash ring, that one empty), without the background
  partitioner. ``reshard_lead(seed)`` before the cut (0.1, 0.3, 0.5, 0.7
  or 0.9 s: seed N takes entry N mod 5, counting from 0) the core is asked to split the
  ring shard with the fewest core members (S) into the empty shard (T),
  and ``MERGE_AFTER_SPLIT_S`` later to merge T back into S; the merge waits
  for the split to settle (committed or aborted) before it is sent (after
  an aborted split the core refuses it: T owns nothing). The
  cut separates the members of S and T that are not core members from
  everyone else (the core, the other shards), so whichever step of the
  split, or of the merge, is due when it lands (the begin not yet ordered
  or not yet delivered, the hand-off reports on their way, the commit
  delivered to some shards and not others) waits for the heal; the change
  then commits, or aborts at the core's hand-off deadline (8 s of core log
  time after its begin), and every shard must end on the core's map with
  nothing frozen. Availability is measured on the ring shards only (T owns
  nothing at genesis), with probe keys that no change of the plan moves
  (a key frozen by a change is unavailable by design, not by the cut).

What is measured, per run and in total:

- **availability**: the share of (scenario, seed, shard) pairs with a side
  holding the shard's quorum (``hrb.partition.quorum_needed``: 2f + 1 of
  3f + 1 in byzantine mode, the leader plus a majority of the others in
  majority mode; a shard split in halves has none) in which the shard's
  probe got a write committed with its answer in ``[cut + settle_s, heal]``
  (``settle_s``: 2 s to notice the cut and elect). Pairs with no such side
  are counted apart, and ``availability_all_pairs`` counts them as
  unavailable. The longest gap between the probe's commits in the cut is
  reported beside it.
- **cross-shard availability**: the share of those pairs in which a
  cross-shard transaction of the shard's workload agents committed in the
  same window, and the committed share of the cross-shard transactions
  invoked during the cut.
- **detection**: for the symmetric scenarios (region cut, core split, shard
  halves), how long after the cut every node's view of the peers it watches
  (its shard and the core) matched the side it was on, and the same for its
  whole view (SWIM's, for the peers it does not watch).
- **time to reconcile**: after the heal, until every member of every shard
  applied what its shard had applied by the heal, no transaction prepared
  before the heal is still undecided anywhere, and every view is whole.
- **lost, half-applied or left undecided transactions** (must be 0):
  decided differently by two shards or decided in one involved shard and
  not another at the end (half-applied); still prepared and undecided at the
  end (left undecided: its locks are held); acknowledged as committed but
  not committed in every involved shard (lost); beside them the simulator's
  safety violations and the linearizability check of every history, to
  which the final state of every account and probe key is appended as
  reads (a write acknowledged and then lost fails it).
- for ``reshard-cut``: what became of the split and the merge (committed,
  aborted, refused by the core, or not begun), when an honest core member
  first held each begun and settled, and how long after the heal; and
  every shard member (honest, up) whose map is not the core's at the end
  or that still holds a change in flight (must be none);
- the statuses degraded mode gave agents (``ShardUnavailable`` from members
  of a side without the shard's quorum, ``TxnWaiting`` for cross-shard
  transactions waiting for an unreachable shard or core quorum).
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from quorate.errors import ConfigError

__all__ = ["NOT_RUN", "PAPER_AVAILABILITY", "SCENARIOS", "PartitionBenchSettings", "run_bench", "run_scenario"]

SCENARIOS = ("region-cut", "core-split", "shard-halves", "one-way", "flapping", "reshard-cut")
RESHARD_SCENARIOS = frozenset({"reshard-cut"})
"""Scenarios run with dynamic sharding (``quorate.hrb.reshard``) on."""
NOT_RUN: dict[str, str] = {}
"""Scenarios of the issue this bench does not run, and why (none left)."""
MERGE_AFTER_SPLIT_S = 0.05
"""``reshard-cut``: the merge is requested this long after the split (it waits for the split to settle)."""
PAPER_AVAILABILITY = 0.95
"""The paper's claim (§4.3): 95 % availability under partitions."""
FINAL_READ_PROCESS = 10**7
"""History process ids of the final-state reads (far above any agent's)."""
FINAL_READ_AFTER_S = 1.0
"""The final-state reads are placed this long after the run's end."""
PROBE_TIMEOUT_S = 2.0
"""A probe write unanswered this long is given up (and the probe writes again)."""
MAX_SEEDS = 50


@dataclass(frozen=True, slots=True)
class PartitionBenchSettings:
    """One ``quorate bench partition`` run (see the module docstring for the timeline)."""

    seeds: int = 3
    first_seed: int = 1
    scenarios: tuple[str, ...] = SCENARIOS
    nodes: int = 20
    shard_size: int = 4
    core: int = 4
    regions: int = 3
    quorum: str = "byzantine"
    cut_at_s: float = 4.0
    heal_at_s: float = 10.0
    duration_s: float = 14.0
    drain_s: float = 5.0
    settle_s: float = 2.0
    flap_period_s: float = 1.0
    reshard_lead_s: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    """``reshard-cut``: the split is requested this long before the cut, seed
    N taking entry N mod len (so the cut meets the change at each of its steps)."""

    def validate(self) -> PartitionBenchSettings:
        if not 1 <= self.seeds <= MAX_SEEDS:
            raise ConfigError(f"--seeds must be within 1..{MAX_SEEDS}, got {self.seeds}")
        if self.first_seed < 0:
            raise ConfigError(f"--first-seed must be >= 0, got {self.first_seed}")
        if not self.scenarios:
            raise ConfigError(f"--scenario names none; known: {', '.join(SCENARIOS)}")
        for name in self.scenarios:
            if name in NOT_RUN:
                raise ConfigError(f"scenario {name!r} cannot run: {NOT_RUN[name]}")
            if name not in SCENARIOS:
                raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        if not 8 <= self.nodes <= 200:
            raise ConfigError(f"--nodes must be within 8..200, got {self.nodes}")
        if not 4 <= self.shard_size <= self.nodes // 2:
            raise ConfigError(f"--shard-size must be within 4..{self.nodes // 2} (two shards at least), got {self.shard_size}")
        if not 4 <= self.core <= self.nodes:
            raise ConfigError(f"--core must be within 4..{self.nodes}, got {self.core}")
        if not 2 <= self.regions <= 5:
            raise ConfigError(f"--regions must be within 2..5, got {self.regions}")
        if self.quorum not in ("majority", "byzantine"):
            raise ConfigError(f"--quorum must be majority or byzantine, got {self.quorum!r}")
        if not 0 < self.cut_at_s < self.heal_at_s < self.duration_s:
            raise ConfigError("the cut must come before the heal, and the heal before the end of the load")
        if not 0 <= self.settle_s < self.heal_at_s - self.cut_at_s:
            raise ConfigError("settle must be shorter than the cut")
        if not 0 < self.flap_period_s <= self.heal_at_s - self.cut_at_s:
            raise ConfigError("the flapping period must be positive and fit in the cut")
        if not self.reshard_lead_s or not all(0 < lead < self.cut_at_s for lead in self.reshard_lead_s):
            raise ConfigError(f"a reshard lead must be within 0..{self.cut_at_s:g} s (the cut), got {list(self.reshard_lead_s)}")
        if "reshard-cut" in self.scenarios and self.nodes // self.shard_size < 3:
            raise ConfigError(
                f"scenario 'reshard-cut' needs 3 shards or more (two on the ring, one empty to split into), "
                f"got {self.nodes // self.shard_size} of {self.shard_size} from {self.nodes} nodes"
            )
        return self

    def reshard_lead(self, seed: int) -> float:
        """How long before the cut seed ``seed``'s split is requested."""
        return self.reshard_lead_s[seed % len(self.reshard_lead_s)]


# ---------------------------------------------------------------- scenarios
@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario made concrete for one deployment: its fault SPEC and the sides it makes."""

    name: str
    spec: str
    sides: tuple[frozenset[int], ...]
    """The groups of nodes that can talk among themselves while cut (one: nothing split)."""
    symmetric: bool
    """Every node's true view is its side (one-way cuts are not)."""
    plan: tuple[tuple[float, Any], ...] = ()
    """Map changes (time, ``quorate.hrb.reshard.MapChange``) requested during the run
    (dynamic sharding on: ``RESHARD_SCENARIOS``)."""
    probed: frozenset[int] | None = None
    """The shards whose availability is measured (None: all)."""


def _nodes_of_region(nodes: int, regions: int, region: int) -> list[int]:
    # The simulator spreads nodes round robin: node i is in region (i - 1) % regions.
    return [i for i in range(1, nodes + 1) if (i - 1) % regions == region]


def _partition_items(side: Sequence[int], nodes: int, at_s: float) -> str:
    rest = [n for n in range(1, nodes + 1) if n not in set(side)]
    return f"partition:{'+'.join(map(str, sorted(side)))}|{'+'.join(map(str, rest))}@{at_s:g}s"


def build_scenario(
    name: str, settings: PartitionBenchSettings, shards: dict[int, tuple[int, ...]], core: Sequence[int], seed: int = 1
) -> Scenario:
    s = settings
    n = s.nodes
    everyone = frozenset(range(1, n + 1))
    cut, heal = s.cut_at_s, s.heal_at_s

    def split(side: Sequence[int]) -> tuple[frozenset[int], ...]:
        a = frozenset(side)
        return (a, everyone - a)

    if name in ("region-cut", "flapping"):
        side = _nodes_of_region(n, s.regions, 0)
        if name == "region-cut":
            spec = f"{_partition_items(side, n, cut)},heal@{heal:g}s"
        else:
            items, t, on = [], cut, True
            while t < heal - 1e-9:
                items.append(_partition_items(side, n, t) if on else f"heal@{t:g}s")
                t, on = t + s.flap_period_s, not on
            spec = ",".join([*items, f"heal@{heal:g}s"])
            # The network is whole half of the time: every shard is expected to keep committing.
            return Scenario(name, spec, (everyone,), False)
        return Scenario(name, spec, split(side), True)
    if name == "core-split":
        side = sorted(core)[: len(core) // 2]
        return Scenario(name, f"{_partition_items(side, n, cut)},heal@{heal:g}s", split(side), True)
    if name == "shard-halves":
        side = [m for members in shards.values() for m in sorted(members)[: len(members) // 2]]
        return Scenario(name, f"{_partition_items(side, n, cut)},heal@{heal:g}s", split(side), True)
    if name == "one-way":
        items = []
        for group in [*shards.values(), tuple(core)]:
            first, *rest = sorted(group)
            items += [f"cut:{first}>{peer}@{cut:g}s" for peer in rest]
        return Scenario(name, ",".join([*dict.fromkeys(items), f"heal@{heal:g}s"]), (everyone,), False)
    if name == "reshard-cut":
        return _reshard_cut(s, shards, core, seed)
    raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")


def _reshard_cut(
    s: PartitionBenchSettings, shards: dict[int, tuple[int, ...]], core: Sequence[int], seed: int
) -> Scenario:
    """A split and a merge in flight when a cut separates their shards from
    the core (see the module docstring)."""
    from quorate.hrb.reshard import MergeShards, SplitShard

    everyone = frozenset(range(1, s.nodes + 1))
    spare = max(shards)  # the shard dynamic sharding leaves empty at genesis (quorate.hrb.reshard_sim)
    ring = sorted(k for k in shards if k != spare)
    in_core = set(core)
    source = min(ring, key=lambda k: (sum(1 for m in shards[k] if m in in_core), k))
    side = sorted(m for k in (source, spare) for m in shards[k] if m not in in_core)
    at = s.cut_at_s - s.reshard_lead(seed)
    plan = ((at, SplitShard(source, spare)), (at + MERGE_AFTER_SPLIT_S, MergeShards(spare, source)))
    spec = f"{_partition_items(side, s.nodes, s.cut_at_s)},heal@{s.heal_at_s:g}s"
    cut = frozenset(side)
    return Scenario("reshard-cut", spec, (cut, everyone - cut), True, plan, frozenset(ring))


def majority_side(scenario: Scenario, members: Sequence[int], mode: str) -> frozenset[int] | None:
    """The side holding ``members``' quorum during the cut, or None."""
    from quorate.hrb.partition import shard_side

    for side in scenario.sides:
        if shard_side(side, members, mode).has_quorum:
            return side
    return None


# ---------------------------------------------------------------- one run
def _model_class() -> type:
    """The HRB model with the bench's observations (built lazily: HRB needs the crypto extra)."""
    from quorate.hrb.agents import AgentPool, WorkloadSettings
    from quorate.hrb.partition import ShardUnavailable, TxnWaiting
    from quorate.hrb.shard.replica import ShardReplica
    from quorate.hrb.simulation import HrbSystem

    class PartitionedHrb(HrbSystem):
        """``HrbSystem`` that also records what the partition bench measures."""

        def __init__(self, settings: Any, scenario_of: Callable[[HrbSystem], Scenario], bench: PartitionBenchSettings) -> None:
            super().__init__(settings)
            self.bench = bench
            self.scenario = scenario_of(self)
            if self.scenario.plan:
                self.dynamic.script(self.scenario.plan, queue=True)
            # One probe agent per shard: intra-shard kv writes only, so a shard's
            # availability is not hidden by workload agents blocked on a
            # cross-shard transaction that waits for the other side.
            self.workload_agents = self.agents
            probed = sorted(self.scenario.probed or self.shards)
            assert probed == list(range(1, len(probed) + 1)), "probes are dealt to shards 1..n"
            self.probes = AgentPool(
                WorkloadSettings(workload="kv", cross_shard=0.0, read_ratio=0.0, txn_bytes=16, op_timeout_s=PROBE_TIMEOUT_S),
                agents=len(probed),
                members={k: self.shards[k] for k in probed},
                replies_needed=self.pool.replies_needed,
                seed=settings.seed,
            )
            if self.dynamic is not None:
                self.probes.keys = _stable_keys(self.dynamic.initial, self.scenario.plan, probed)
            for i, probe in enumerate(self.probes.agents):
                probe.index = self.workload_agents + i  # distinct client ids, transaction ids and history processes
            self.agents = self.workload_agents + len(probed)
            self.probe_ends: list[tuple[int, str, float, float]] = []
            """(shard, outcome, invoked at, answered at) of every probe write answered."""
            self.ends: list[tuple[bytes, int, bool, str, float, float]] = []
            """(txn id, home shard, cross, outcome, invoked at, answered at) of every transaction answered."""
            self.statuses: dict[str, int] = {"ShardUnavailable": 0, "TxnWaiting": 0}
            self.detected_at: float | None = None
            """Every node's view of the peers it watches (its shard, the core) matched its side."""
            self.full_detected_at: float | None = None
            """Every node's whole view (SWIM for the peers it does not watch) matched its side."""
            self.views_whole_at: float | None = None
            self.caught_up_at: float | None = None
            self.settled_at: float | None = None
            self._at_heal: dict[int, int] | None = None
            self._prepared_at_heal: set[bytes] = set()
            self._next_view_check = 0.0

        def agent_receive(self, agent: int, sender: int, message: Any, now: float) -> None:
            if agent >= self.workload_agents:
                probe = self.probes.agents[agent - self.workload_agents] if agent - self.workload_agents < len(self.probes.agents) else None
                pending = probe.pending if probe is not None else None
                self.probes.receive(agent - self.workload_agents, sender, message, now)
                if probe is not None and pending is not None and probe.pending is not pending:
                    self.probe_ends.append((probe.home, self.probes.completed[-1].outcome, pending.invoked_at, now))
                return
            if isinstance(message, ShardUnavailable):
                self.statuses["ShardUnavailable"] += 1
            elif isinstance(message, TxnWaiting):
                self.statuses["TxnWaiting"] += 1
            pending = self.pool.agents[agent].pending if 0 <= agent < len(self.pool.agents) else None
            super().agent_receive(agent, sender, message, now)
            if pending is not None and self.pool.agents[agent].pending is not pending:
                outcome = self.pool.completed[-1].outcome
                txn = pending.txn
                self.ends.append((txn.txn_id, txn.home_shard, pending.cross, outcome, pending.invoked_at, now))

        def agent_tick(self, now: float) -> None:
            waiting = [(p, p.pending) for p in self.probes.agents if p.pending is not None]
            self.probes.tick(now)
            for probe, pending in waiting:
                if probe.pending is not pending:
                    self.probe_ends.append((probe.home, "info", pending.invoked_at, now))
            before = {a.index: a.pending for a in self.pool.agents if a.pending is not None}
            super().agent_tick(now)
            for index, pending in before.items():
                if self.pool.agents[index].pending is not pending:
                    txn = pending.txn
                    self.ends.append((txn.txn_id, txn.home_shard, pending.cross, "info", pending.invoked_at, now))

        def agent_wake_at(self) -> float | None:
            times = [t for t in (super().agent_wake_at(), self.probes.wake_at()) if t is not None]
            return min(times) if times else None

        def take_agent_sends(self) -> list[tuple[int, int, int, Any]]:
            # A probe's sends name it by its index, already past the workload agents.
            return super().take_agent_sends() + self.probes.take_sends()

        def stop_agents(self, now: float) -> None:
            super().stop_agents(now)
            self.probes.stop()

        def report(self, now: float, alive: Sequence[bool], group_messages: Any) -> dict[str, Any]:
            out = super().report(now, alive, group_messages)
            self.probes.finish()
            out["history"] = out["history"] + self.probes.history
            return out

        def _replicas(self, alive: Sequence[bool]) -> dict[int, list[ShardReplica]]:
            return {k: self._honest(k, alive) for k in self.shards}

        def sample(self, now: float, alive: Sequence[bool]) -> None:
            super().sample(now, alive)
            b = self.bench
            if now < b.cut_at_s:
                return
            if now < b.heal_at_s:
                if self.scenario.symmetric:
                    if self.detected_at is None and self._views_match(now, alive, full=False):
                        self.detected_at = now
                    if self.full_detected_at is None and self._views_match(now, alive, full=True):
                        self.full_detected_at = now
                return
            replicas = self._replicas(alive)
            if self._at_heal is None:
                self._at_heal = {k: max((r.applied_index for r in rs), default=0) for k, rs in replicas.items()}
                self._prepared_at_heal = {t for rs in replicas.values() for r in rs for t in r.store.prepared}
            if self.caught_up_at is None and all(
                r.applied_index >= self._at_heal[k] for k, rs in replicas.items() for r in rs
            ):
                self.caught_up_at = now
            if self.settled_at is None and not any(
                t in r.store.prepared for rs in replicas.values() for r in rs for t in self._prepared_at_heal
            ):
                self.settled_at = now
            if self.views_whole_at is None and self._views_whole(now, alive):
                self.views_whole_at = now

        def _views_match(self, now: float, alive: Sequence[bool], *, full: bool) -> bool:
            sides = self.scenario.sides
            for node, watch in self.watches.items():
                if not alive[node - 1]:
                    continue
                side = next(s for s in sides if node in s)
                view = watch.reachable(now)
                if not full:
                    judged = watch.detector.watched
                    view, side = view & judged, side & judged
                if view != side:
                    return False
            return True

        def _views_whole(self, now: float, alive: Sequence[bool]) -> bool:
            everyone = frozenset(range(1, self.settings.nodes + 1))
            return all(w.reachable(now) == everyone for n, w in self.watches.items() if alive[n - 1])

        def _best(self, alive: Sequence[bool]) -> dict[int, ShardReplica]:
            """Each shard's most advanced honest member."""
            best = {}
            for k in self.shards:
                rs = self._honest(k, alive)
                if rs:
                    best[k] = max(rs, key=lambda r: r.applied_index)
            return best

        def _owner_at_end(self, key: str, home: int, best: dict[int, ShardReplica]) -> int | None:
            """The shard that holds ``key`` at the end: its home, or under dynamic
            sharding the owner in the newest map a shard applied."""
            if self.dynamic is None:
                return home
            owners = [(r.store.handoff.map.version, k) for k, r in best.items() if r.store.handoff.map.owner(key) == k]
            return max(owners)[1] if owners else None

        def reshard_unsettled(self, alive: Sequence[bool]) -> list[str]:
            """Under dynamic sharding, what is not settled at the end: a shard
            member (honest, up) whose map is not the core's, or that still
            holds a change in flight (its keys frozen)."""
            if self.dynamic is None:
                return []
            core = self._latest_core_state()
            version = core.reshard.current.version if core is not None and core.reshard is not None else None
            out = []
            if core is not None and core.reshard is not None and core.reshard.pending is not None:
                out.append(f"the core still has change {core.reshard.pending.begin.seq} in flight")
            for k, rs in self._replicas(alive).items():
                for r in rs:
                    handoff = r.store.handoff
                    if handoff.map.version != version:
                        out.append(f"shard {k} member {int(r.id)} is on map {handoff.map.version}, the core on {version}")
                    elif handoff.begin is not None:
                        out.append(f"shard {k} member {int(r.id)} still holds change {handoff.begin.seq} in flight")
            return out

        def final_checks(self, alive: Sequence[bool]) -> dict[str, Any]:
            """Lost or half-applied transactions, judged on the final state."""
            best = self._best(alive)
            stuck = sorted({t.hex() for rs in self._replicas(alive).values() for r in rs for t in r.store.prepared})
            not_committed = 0
            for txn_id, _home, cross, outcome, _inv, _end in self.ends:
                if outcome != "ok" or not cross:
                    continue
                shards = self.pool.involved.get(txn_id, ())
                if not all(k in best and best[k].store.decided.get(txn_id) is True for k in shards):
                    not_committed += 1
            return {"stuck_prepared": stuck, "acked_not_committed": not_committed}

        def final_reads(self, alive: Sequence[bool], at_s: float) -> list[dict[str, Any]]:
            """The final state, as reads appended to the history: a write acknowledged
            and then lost, or one applied without its agent's knowledge against what
            was read after it, makes the history fail the linearizability check.
            (Comparing the state with the balances agents believe would be wrong: a
            transfer whose outcome an agent never learned may still commit later.)"""
            best = self._best(alive)
            keys: list[tuple[int, str, bool]] = [(a.home, acct, True) for a in self.pool.agents for acct in a.accounts]
            keys += [(k, key, False) for k, ks in sorted(self.probes.keys.items()) for key in ks]
            events: list[dict[str, Any]] = []
            for i, (home, key, number) in enumerate(keys):
                shard = self._owner_at_end(key, home, best)
                if shard is None or shard not in best:
                    continue
                raw = best[shard].store.data.get(key)
                value = None if raw is None else (int(raw) if number else raw)
                process = FINAL_READ_PROCESS + i
                events.append({"process": process, "type": "invoke", "f": "read", "key": key, "time": at_s})
                events.append({"process": process, "type": "ok", "f": "read", "key": key, "time": at_s, "value": value})
            return events

    return PartitionedHrb


def _stable_keys(initial: Any, plan: Sequence[tuple[float, Any]], shards: Sequence[int]) -> dict[int, list[str]]:
    """Probe keys under dynamic sharding: for each shard, keys it owns in
    every map the plan can lead to (so a probe measures the shard's service
    of keys that do not move, never a key frozen by the change)."""
    from quorate.hrb.agents import KEYS_PER_SHARD

    maps = [initial]
    for _, change in plan:
        try:
            maps.append(maps[-1].after(change))
        except ConfigError:
            break
    out: dict[int, list[str]] = {k: [] for k in shards}
    for i in itertools.count():
        if all(len(keys) >= KEYS_PER_SHARD for keys in out.values()) or i > 100_000:
            break
        key = f"p{i}"
        owners = {m.owner(key) for m in maps}
        if len(owners) == 1:
            keys = out.get(owners.pop())
            if keys is not None and len(keys) < KEYS_PER_SHARD:
                keys.append(key)
    missing = [k for k, keys in out.items() if not keys]
    if missing:
        raise ConfigError(f"shard(s) {missing} own no key through the map changes: nothing to probe")
    return out


def run_scenario(name: str, seed: int, settings: PartitionBenchSettings) -> dict[str, Any]:
    """One scenario with one seed: the simulated run and what it measured."""
    from quorate.bench.hrb_sim import HrbRunConfig, linearizable
    from quorate.hrb.partition import PartitionConfig, quorum_needed
    from quorate.runtime.sim.composed import SystemSimulation

    s = settings
    dynamic = name in RESHARD_SCENARIOS
    run_config = HrbRunConfig(
        nodes=s.nodes, shard_size=s.shard_size, core=s.core, regions=s.regions, quorum=s.quorum,
        duration_s=s.duration_s, drain_s=s.drain_s, seed=seed, heal_at_s=s.heal_at_s,
        dynamic_sharding=dynamic, partitioner=not dynamic,
    )
    hrb_settings = dataclasses.replace(run_config.settings(), partition=PartitionConfig())
    model_class = _model_class()

    def scenario_of(model: Any) -> Scenario:
        return build_scenario(name, s, model.shards, model.members_of[0], seed)

    model = model_class(hrb_settings, scenario_of, s)
    scenario: Scenario = model.scenario
    sim_config = dataclasses.replace(run_config.sim_config(), faults=scenario.spec)
    sim_config.validate()
    wall = time.perf_counter()
    run = SystemSimulation(sim_config, model, drain_s=s.drain_s, name="hrb").run()
    wall = time.perf_counter() - wall
    report = run.to_json()
    alive = [True] * s.nodes
    final = model.final_checks(alive)
    lin, verdict = linearizable(run.history + model.final_reads(alive, report["sim_seconds"] + FINAL_READ_AFTER_S))
    window = (s.cut_at_s + s.settle_s, s.heal_at_s)
    shards = []
    for shard, members in sorted(model.shards.items()):
        side = majority_side(scenario, members, s.quorum)
        probes = sorted(end for home, outcome, _inv, end in model.probe_ends if home == shard and outcome == "ok")
        intra = [end for _, home, cross, outcome, _inv, end in model.ends if home == shard and not cross and outcome == "ok"]
        cross_ok = [end for _, home, cross, outcome, _inv, end in model.ends if home == shard and cross and outcome == "ok"]
        in_window = [t for t in probes if window[0] <= t <= window[1]]
        points = [s.cut_at_s, *[t for t in probes if s.cut_at_s < t < s.heal_at_s], s.heal_at_s]
        shards.append({
            "shard": shard,
            "probed": scenario.probed is None or shard in scenario.probed,
            "members": len(members),
            "majority_side": None if side is None else len([m for m in members if m in side]),
            "quorum_needed": quorum_needed(len(members), s.quorum),
            "probe_writes_in_cut": len(in_window),
            "workload_intra_committed_in_cut": sum(1 for t in intra if window[0] <= t <= window[1]),
            "available": side is not None and bool(in_window),
            "cross_available": side is not None and any(window[0] <= t <= window[1] for t in cross_ok),
            "longest_probe_gap_in_cut_s": round(max(b - a for a, b in itertools.pairwise(points)), 3),
        })
    cut_cross = [e for e in model.ends if e[2] and s.cut_at_s <= e[4] < s.heal_at_s]
    reconcile_parts = {
        "caught_up": model.caught_up_at,
        "waiting_settled": model.settled_at,
        "views_whole": model.views_whole_at,
    }
    reconcile_s = None
    if all(v is not None for v in reconcile_parts.values()):
        reconcile_s = round(max(v for v in reconcile_parts.values() if v is not None) - s.heal_at_s, 3)
    half_applied = report["atomicity_violations"] + report["atomicity_unsettled_txns"]
    lost = final["acked_not_committed"]
    reshard = _reshard_outcome(scenario, report, model.reshard_unsettled(alive), s) if dynamic else None
    evidence_resent = sum(m.hold.resent for m in model.members.values() if hasattr(m, "hold"))
    return {
        "scenario": name,
        "seed": seed,
        "faults": scenario.spec,
        "shards": shards,
        "cross_shard_in_cut": {"invoked": len(cut_cross), "committed": sum(1 for e in cut_cross if e[3] == "ok")},
        "detected_after_s": None if model.detected_at is None else round(model.detected_at - s.cut_at_s, 3),
        "full_view_detected_after_s": None if model.full_detected_at is None else round(model.full_detected_at - s.cut_at_s, 3),
        "reconcile_s": reconcile_s,
        "reconcile_parts_s": {k: None if v is None else round(v - s.heal_at_s, 3) for k, v in reconcile_parts.items()},
        "statuses": dict(model.statuses),
        "evidence_resent": evidence_resent,
        "committed_ops": report["committed_ops"],
        "failed_ops": report["failed_ops"],
        "unknown_ops": report["unknown_ops"],
        "half_applied": half_applied,
        "stuck_undecided": len(final["stuck_prepared"]),
        "lost": lost,
        "lost_detail": {k: v for k, v in final.items() if k != "stuck_prepared"},
        "safety_violations": report["safety_violations"],
        "linearizable": lin,
        "check_verdict": verdict,
        **({"reshard": reshard} if reshard is not None else {}),
        "trace_sha256": report["trace_sha256"],
        "wall_s": round(wall, 3),
    }


def _reshard_outcome(
    scenario: Scenario, report: dict[str, Any], unsettled: list[str], s: PartitionBenchSettings
) -> dict[str, Any]:
    """What became of each change the scenario requested: ``committed`` or
    ``aborted`` (with when it was begun and settled, in simulated seconds,
    whether it settled before the cut, during it or after the heal),
    ``refused`` by the core (with the reason), or ``not begun`` / ``in
    flight`` at the end; and what is left unsettled in the shards."""
    from quorate.hrb.reshard_driver import describe

    d = report["dynamic_sharding"]
    changes = d["changes"]
    refusals = list(d["scripted_refused"])
    requested = []
    for at, change in scenario.plan:
        detail = describe(change)
        mine = [c for c in changes if c["change"] == detail]
        entry: dict[str, Any] = {"change": detail, "requested_at_s": round(at, 3)}
        if mine:
            last = mine[-1]
            entry.update(outcome=last["outcome"], begun_at_s=last["begun_at_s"], settled_at_s=last["settled_at_s"])
            settled = last["settled_at_s"]
            if settled is not None:
                entry["took_s"] = round(settled - last["begun_at_s"], 3)
                entry["settled"] = (
                    "before the cut" if settled < s.cut_at_s else "during the cut" if settled < s.heal_at_s else "after the heal"
                )
                if settled >= s.heal_at_s:
                    entry["settled_after_heal_s"] = round(settled - s.heal_at_s, 3)
            entry["attempts"] = len(mine)
        elif not any(p["detail"] == detail for p in d["proposals"]):
            entry["outcome"] = "not requested"  # the load (and the partitioner) stopped first
        else:
            entry["outcome"] = "refused" if refusals else "not begun"
        requested.append(entry)
    return {
        "requested": requested,
        "changes": changes,
        "map_version": d["map_version"],
        "core_refusals": d["core_refusals"],
        "refusal_reasons": refusals,
        "keys_installed": d["keys_installed"],
        "keys_dropped": d["keys_dropped"],
        "unsettled": unsettled,
    }


def _reshard_summary(outcomes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per kind of requested change (``split``, ``merge``): how many runs
    ended with each outcome, how many settled before the cut, during it or
    after the heal, the median and longest time from the change's begin to
    its commit or abort, and from the heal to it (of those settled after)."""
    if not outcomes:
        return None
    out: dict[str, Any] = {}
    for kind in ("split", "merge", "move"):
        mine = [c for o in outcomes for c in o["requested"] if c["change"].startswith(kind)]
        if not mine:
            continue
        counts: dict[str, int] = {}
        for c in mine:
            counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
        took = [c["took_s"] for c in mine if "took_s" in c]
        after_heal = [c["settled_after_heal_s"] for c in mine if "settled_after_heal_s" in c]
        when: dict[str, int] = {}
        for c in mine:
            if "settled" in c:
                when[c["settled"]] = when.get(c["settled"], 0) + 1
        out[kind] = {
            "outcomes": dict(sorted(counts.items())),
            "settled": when,
            "took_s_median": _median(list(took)),
            "took_s_max": max(took) if took else None,
            "settled_after_heal_s_median": _median(list(after_heal)),
            "settled_after_heal_s_max": max(after_heal) if after_heal else None,
        }
    out["unsettled"] = sum(len(o["unsettled"]) for o in outcomes)
    return out


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def run_bench(settings: PartitionBenchSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every scenario × seed, then the totals (see the module docstring)."""
    s = settings.validate()
    started = time.perf_counter()
    runs = []
    for name in s.scenarios:
        for seed in range(s.first_seed, s.first_seed + s.seeds):
            if progress is not None:
                progress(f"{name}, seed {seed}")
            runs.append(run_scenario(name, seed, s))
    pairs = [p for r in runs for p in r["shards"] if p["probed"] and p["majority_side"] is not None]
    no_side = sum(1 for r in runs for p in r["shards"] if p["probed"] and p["majority_side"] is None)
    per_scenario = {}
    for name in s.scenarios:
        mine = [r for r in runs if r["scenario"] == name]
        sp = [p for r in mine for p in r["shards"] if p["probed"] and p["majority_side"] is not None]
        cross = [r["cross_shard_in_cut"] for r in mine]
        reconcile = [r["reconcile_s"] for r in mine if r["reconcile_s"] is not None]
        detected = [r["detected_after_s"] for r in mine if r["detected_after_s"] is not None]
        without = sum(1 for r in mine for p in r["shards"] if p["probed"] and p["majority_side"] is None)
        reshard = _reshard_summary([r["reshard"] for r in mine if "reshard" in r])
        per_scenario[name] = {
            "availability": _share(sum(p["available"] for p in sp), len(sp)),
            "availability_all_pairs": _share(sum(p["available"] for p in sp), len(sp) + without),
            "cross_shard_availability": _share(sum(p["cross_available"] for p in sp), len(sp)),
            "cross_shard_committed_share": _share(sum(c["committed"] for c in cross), sum(c["invoked"] for c in cross)),
            "pairs": len(sp),
            "pairs_without_majority_side": without,
            "longest_probe_gap_in_cut_s": max((p["longest_probe_gap_in_cut_s"] for p in sp), default=None),
            "detected_after_s_median": round(statistics.median(detected), 3) if detected else None,
            "detected_after_s_max": max(detected) if detected else None,
            "full_view_detected_after_s_median": _median([r["full_view_detected_after_s"] for r in mine]),
            "reconcile_s_median": round(statistics.median(reconcile), 3) if reconcile else None,
            "reconcile_s_max": max(reconcile) if reconcile else None,
            "unreconciled_runs": sum(1 for r in mine if r["reconcile_s"] is None),
            "lost": sum(r["lost"] for r in mine),
            "half_applied": sum(r["half_applied"] for r in mine),
            "stuck_undecided": sum(r["stuck_undecided"] for r in mine),
            "statuses": {k: sum(r["statuses"][k] for r in mine) for k in ("ShardUnavailable", "TxnWaiting")},
            **({"reshard": reshard} if reshard is not None else {}),
        }
    reconcile_all = [r["reconcile_s"] for r in runs if r["reconcile_s"] is not None]
    cross_all = [r["cross_shard_in_cut"] for r in runs]
    availability = _share(sum(p["available"] for p in pairs), len(pairs))
    result = {
        "availability": availability,
        "availability_all_pairs": _share(sum(p["available"] for p in pairs), len(pairs) + no_side),
        "paper_claim_availability": PAPER_AVAILABILITY,
        "claim_holds": None if availability is None else availability >= PAPER_AVAILABILITY,
        "cross_shard_availability": _share(sum(p["cross_available"] for p in pairs), len(pairs)),
        "cross_shard_committed_share": _share(sum(c["committed"] for c in cross_all), sum(c["invoked"] for c in cross_all)),
        "pairs": len(pairs),
        "pairs_without_majority_side": no_side,
        "reconcile_s_median": round(statistics.median(reconcile_all), 3) if reconcile_all else None,
        "reconcile_s_max": max(reconcile_all) if reconcile_all else None,
        "unreconciled_runs": sum(1 for r in runs if r["reconcile_s"] is None),
        "lost": sum(r["lost"] for r in runs),
        "half_applied": sum(r["half_applied"] for r in runs),
        "stuck_undecided": sum(r["stuck_undecided"] for r in runs),
        "reshard_unsettled": sum(len(r["reshard"]["unsettled"]) for r in runs if "reshard" in r),
        "safety_violations": sum(len(r["safety_violations"]) for r in runs),
        "not_linearizable_runs": sum(1 for r in runs if r["linearizable"] is False),
        "per_scenario": per_scenario,
        "not_run": dict(NOT_RUN),
        "settings": dataclasses.asdict(s),
        "runs": runs,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    return result
