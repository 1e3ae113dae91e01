"""Dynamic sharding in the simulated deployment (``quorate sim hrb
--dynamic-sharding``; docs/hrb.md sections 10 and 11).

Theory of operation. ``DynamicSharding`` is the part of ``HrbSystem`` that
exists only with the option, so a run without it is unchanged:

- **Genesis.** The deployment's shards are dealt as usual; all but
  ``SPARE_SHARDS`` of them start on the consistent-hash ring and hold the
  agents (each at the shard its name hashes to), the spare ones hold nothing
  until a split gives them half of a hot shard. The core's genesis snapshot
  carries this map (``DynamicCoreSnapshot``), every shard member a
  ``ShardHandoff`` built from it, and reports hand-off states
  (``ReshardingShardMember``).
- **The directory.** Agents find their home and each key's shard in the
  newest map an honest core member has committed (a client of a real
  deployment would learn it from the wrong-shard answers, which name the
  map version); a transaction sent on an older map is refused at apply
  time by the shard that no longer owns the key, and the agent goes on with
  the new map.
- **The partitioner** (``Repartitioner``) runs beside the agents, off the
  protocol's critical path, as core member ``proposer`` (the lowest honest
  member of epoch 0's core): it feeds on completed transactions and sends
  its signed requests to every member of the current core.
- **Report**: proposals, commits and aborts, the core's refusals of
  reshard requests, keys installed and dropped by the shards, and the
  cross-shard share and throughput of transactions invoked before the
  first committed change and after the last one (when the map settled).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from quorate.hrb.agents import INITIAL_BALANCE, agent_name
from quorate.hrb.core.snapshot import DynamicCoreSnapshot
from quorate.hrb.messages import CORE_GROUP_BASE, TxnBegin, decode_decision
from quorate.hrb.partition import ShardView
from quorate.hrb.reshard import MapChange, ReshardState, ShardMap
from quorate.hrb.reshard_driver import Repartitioner, RepartitionerSettings, describe
from quorate.hrb.reshard_member import ReshardingPartitionMember, ReshardingShardMember
from quorate.ids import NodeId
from quorate.sharding import HashRing

__all__ = ["SPARE_SHARDS", "CoreDesk", "DynamicSharding", "parse_reshard", "window_of"]

SPARE_SHARDS = 1
"""Shards that start empty, for splits."""
TOKENS_PER_SHARD = 16
HANDOFF_S = 8.0
"""A change not handed off within this much core log time aborts."""


RESHARD_SYNTAX = "split:SHARD:NEW@T, merge:ABSORBED:INTO@T or move:AGENT:SHARD@T (agents are a0, a1, ...)"


def parse_reshard(text: str) -> list[tuple[float, MapChange]]:
    """Comma-separated ``RESHARD_SYNTAX`` items; ``ConfigError`` otherwise. A
    move's source is filled in from the map when it is proposed (0 here)."""
    from quorate.errors import ConfigError
    from quorate.hrb.reshard import MergeShards, MoveAgents, SplitShard
    from quorate.sharding import AgentMove

    out: list[tuple[float, MapChange]] = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        spec, _, at = item.partition("@")
        parts = spec.split(":")
        try:
            when = float(at)
            if parts[0] == "move" and len(parts) == 3:
                numbers = [0, int(parts[2])]
            else:
                numbers = [int(p) for p in parts[1:]]
        except ValueError:
            raise ConfigError(f"reshard: {item!r} is not {RESHARD_SYNTAX}") from None
        if parts[0] not in ("split", "merge", "move") or len(numbers) != 2 or not when >= 0:
            raise ConfigError(f"reshard: {item!r} is not {RESHARD_SYNTAX}")
        change: MapChange
        if parts[0] == "split":
            change = SplitShard(*numbers)
        elif parts[0] == "merge":
            change = MergeShards(*numbers)
        else:
            change = MoveAgents((AgentMove(parts[1], 0, numbers[1]),))
        out.append((when, change))
    return out


class CoreDesk:
    """The core group's door for the partitioner: a ``ReshardRequest`` that
    arrives from outside the core's peers is admitted like a shard's command
    (checked, then proposed to the core's log); anything else is dropped."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def on_client_request(self, src: NodeId, message: Any, now: float) -> None:
        from quorate.hrb.reshard import ReshardRequest

        if isinstance(message, ReshardRequest):
            self.core.step(NodeId(message.proposer), message, now)

    def apply_all(self, entries: list[Any]) -> None:
        return None

    def has_replies(self) -> bool:
        return False

    def take_replies(self) -> list[tuple[NodeId, Any]]:
        return []

    def restore(self, snapshot: Any) -> None:
        return None

    def read_ready(self, read: Any) -> None:
        return None


class DynamicSharding:
    """See the module docstring."""

    def __init__(self, system: Any, agents: int) -> None:
        self.system = system
        s = system.settings
        shards = sorted(system.shards)
        spare = SPARE_SHARDS if len(shards) > 1 else 0
        active = shards[: len(shards) - spare]
        ring = HashRing.initial(active, TOKENS_PER_SHARD)
        homes = tuple(sorted((agent_name(a), ring.owner("@" + agent_name(a))) for a in range(agents)))
        self.initial = ShardMap(0, ring, homes)
        self.map = self.initial
        self.busy = False
        self.active_shards = len(active)
        deployment = system.deployment
        snapshot = deployment.genesis.snapshot
        ticks = max(1, round(HANDOFF_S / snapshot.rules.tick_interval_s))
        fields = {f: getattr(snapshot, f) for f in snapshot.__struct_fields__}
        dynamic = DynamicCoreSnapshot(**fields, reshard=ReshardState(self.initial, ticks))
        genesis = dataclasses.replace(deployment.genesis, snapshot=dynamic)
        system.deployment = dataclasses.replace(deployment, genesis=genesis, shard_map=self.initial)
        system.eager = dataclasses.replace(system.eager, genesis=genesis, shard_map=self.initial)
        honest = [m for m in system.deployment.core_members if int(m) not in system.byzantine]
        self.proposer = int(honest[0]) if honest else int(system.deployment.core_members[0])
        self.partitioner = Repartitioner(
            tuple(shards),
            self.proposer,
            system.keyring.signer(NodeId(self.proposer)),
            lambda: (self.map, self.busy),
            RepartitionerSettings(seed=s.seed),
            list(s.reshard),
        )
        if not s.partitioner:
            self.partitioner.scripted_only = True
        self.sends: list[tuple[int, int, int, Any]] = []
        self.commits: list[tuple[float, int]] = []
        """(time, version) when an honest core member first held each map version."""
        self.aborts = 0
        self._seen_aborts = 0
        self.refused: dict[str, int] = {}
        self.refusal_reasons: dict[str, int] = {}
        self._changes: dict[int, str] = {}
        """Map version -> the change that leads to it, as seen in flight."""
        self.changes: dict[int, dict[str, Any]] = {}
        """Change seq -> what became of it: the change, when an honest core member
        first held it begun and settled, and whether it committed or aborted."""
        self._certified: dict[int, int] = {}
        """Epoch -> the core decisions whose certificates were read (``_read_begins``)."""
        self._counts = (0, 0)
        """(commits, aborts) of the most advanced honest core member seen."""
        self._members: list[ReshardingShardMember] = []

    # -- hooks of HrbSystem -----------------------------------------------------------------
    def pool_options(self) -> dict[str, Any]:
        return {"directory": lambda: self.map, "communities": self.active_shards}

    def core_desk(self, core: Any) -> CoreDesk:
        return CoreDesk(core)

    def member(self, inner: Any, store: Any, now: float, view: ShardView | None = None) -> ReshardingShardMember:
        """A shard member that reports hand-offs; with ``view`` (partition
        handling on) one that also reconciles after a cut."""
        member = (
            ReshardingShardMember(inner, store, now=now)
            if view is None
            else ReshardingPartitionMember(inner, store, view, now=now)
        )
        self._members.append(member)
        return member

    def _read_begins(self, epoch: int, certifier: Any) -> None:
        """The shards the core involved in each transaction (by its map at the
        begin), read from the certified begins as they form; an agent on an
        older map may have guessed others (``AgentPool.involved``)."""
        involved = self.system.pool.involved
        index = self._certified.get(epoch, 0)
        while True:
            certificate = certifier.certificate(index + 1)
            if certificate is None:
                break
            index += 1
            decision = decode_decision(certificate.decision)
            if isinstance(decision, TxnBegin):
                involved[decision.txn.txn_id] = tuple(sorted({*decision.shards, decision.txn.home_shard}))
        self._certified[epoch] = index

    def observe_core(self, state: Any, now: float, certifier: Any = None) -> None:
        table = state.reshard
        if table is None:
            return
        current = table.current
        pending = table.pending
        self._follow_changes(table, now)
        if certifier is not None:
            self._read_begins(state.epoch, certifier)
        if pending is not None:
            self._changes.setdefault(pending.begin.version, describe(pending.begin.change))
        if current.version > self.map.version:
            self.map = current
            self.commits.append((now, current.version))
        if current.version == self.map.version:
            self.busy = table.pending is not None
        if table.state.aborts > self._seen_aborts:
            self._seen_aborts = table.state.aborts
            self.partitioner.refused()
        for reason, count in table.refused.items():
            self.refused[reason] = max(count, self.refused.get(reason, 0))
        for reason, count in state.s.refusals.items():
            if reason.startswith("reshard refused: ") and count > self.refusal_reasons.get(reason, 0):
                self.refusal_reasons[reason] = count
                self.partitioner.refused()

    def _follow_changes(self, table: Any, now: float) -> None:
        """Record each change's begin and its outcome (observation only)."""
        state = table.state
        pending = table.pending
        if pending is not None and pending.begin.seq not in self.changes:
            self.changes[pending.begin.seq] = {
                "seq": pending.begin.seq, "change": describe(pending.begin.change), "version": pending.begin.version,
                "begun_at_s": round(now, 3), "settled_at_s": None, "outcome": "in flight",
            }
        counts = (state.commits, state.aborts)
        if sum(counts) <= sum(self._counts):
            return
        self._counts = counts
        settled = state.seq if pending is None else state.seq - 1
        # Of the changes to one version, only the last settled can have committed.
        last = {c["version"]: seq for seq, c in sorted(self.changes.items()) if seq <= settled}
        for seq, change in self.changes.items():
            if seq <= settled and change["settled_at_s"] is None:
                change["settled_at_s"] = round(now, 3)
                committed = state.current.version >= change["version"] and last[change["version"]] == seq
                change["outcome"] = "committed" if committed else "aborted"

    def tick(self, now: float) -> None:
        pool = self.system.pool
        for agents in pool.interactions:
            self.partitioner.observe(agents)
        pool.interactions.clear()
        requests = self.partitioner.tick(now)
        if not requests:
            return
        epoch = max(self.system.members_of)
        members = self.system.members_of[epoch]
        for request in requests:
            for member in members:
                self.sends.append((0, int(member), CORE_GROUP_BASE + epoch, request))

    def wake_at(self) -> float | None:
        return self.partitioner.wake_at()

    def take_sends(self) -> list[tuple[int, int, int, Any]]:
        out, self.sends = self.sends, []
        return out

    def stop(self) -> None:
        self.partitioner.stopped = True

    def script(self, changes: Sequence[tuple[float, MapChange]], *, queue: bool) -> None:
        """Propose ``changes`` at their times instead of the partitioner's
        policy; with ``queue``, one due while another is in flight waits
        for it (``RepartitionerSettings.queue_scripted``)."""
        partitioner = self.partitioner
        partitioner.scripted = sorted(changes, key=lambda c: c[0])
        partitioner.scripted_only = True
        partitioner.settings = dataclasses.replace(partitioner.settings, queue_scripted=queue)

    # -- checks and report ---------------------------------------------------------------------
    def bank_total(self, best: dict[int, Any], unsettled: int, violations: list[dict[str, Any]]) -> tuple[int, int]:
        """(violations found, bank total): every key counted once, from the
        shard whose applied map is newest among those that own it."""
        newest: dict[str, tuple[int, str]] = {}
        for shard, replica in best.items():
            handoff = replica.store.handoff
            for key, value in replica.store.data.items():
                if handoff.map.owner(key) != shard:
                    continue
                seen = newest.get(key)
                if seen is None or handoff.map.version > seen[0]:
                    newest[key] = (handoff.map.version, value)
        total = opened = 0
        for key, (_, value) in newest.items():
            name = key.rsplit("/", 1)[-1]
            if name.startswith("acct"):
                opened += 1
                total += int(value)
            elif name.startswith("inbox"):
                total += int(value)
        if unsettled == 0 and total != INITIAL_BALANCE * opened:
            violations.append({
                "time_s": None,
                "message": f"bank total {total} != {INITIAL_BALANCE} x {opened} accounts opened",
            })
            return 1, total
        return 0, total

    def report(self, duration: float) -> dict[str, Any]:
        completed = self.system.pool.completed
        first = self.commits[0][0] if self.commits else None
        last = self.commits[-1][0] if self.commits else None
        before = [c for c in completed if first is None or c.invoked_at < first]
        after = [c for c in completed if last is not None and c.invoked_at >= last]
        stores = [m._store.handoff for m in self._members]
        return {
            "proposals": self.partitioner.proposals,
            "map_version": self.map.version,
            "commits": [{"at_s": round(t, 3), "version": v, "change": self._changes.get(v)} for t, v in self.commits],
            "changes": [dict(c) for _, c in sorted(self.changes.items())],
            "aborts": self._seen_aborts,
            "core_refusals": self.refused,
            # What a scripted change got wrong (a stale or busy refusal of a repeated request is not).
            "scripted_refused": sorted(
                r.removeprefix("reshard refused: ")
                for r in self.refusal_reasons
                if r.startswith(("reshard refused: unknown shard", "reshard refused: impossible"))
            )
            if self.partitioner.scripted_only
            else [],
            "shards_in_use": list(self.map.shards()),
            "keys_installed": sum(h.installed for h in stores if h is not None),
            "keys_dropped": sum(h.dropped for h in stores if h is not None),
            "handoff_reports_sent": sum(m.reports for m in self._members),
            "before": _window(before, 0.0, first if first is not None else duration),
            "after": _window(after, last, duration) if last is not None and last < duration else None,
            "per_second": _per_second(completed, duration),
        }


def _per_second(completed: Sequence[Any], duration: float) -> list[list[int]]:
    """[intra, cross] transactions committed, by the second they were invoked in."""
    out = [[0, 0] for _ in range(max(1, math.ceil(duration)))]
    for c in completed:
        if c.outcome == "ok" and c.invoked_at < len(out):
            out[int(c.invoked_at)][1 if c.cross else 0] += 1
    return out


def window_of(report: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    """A ``report``'s (``DynamicSharding.report``) figures for transactions
    invoked in the whole seconds from ``start`` (rounded up) to ``end``."""
    first, last = math.ceil(start), math.floor(end)
    buckets = report["per_second"][first:last]
    intra = sum(b[0] for b in buckets)
    cross = sum(b[1] for b in buckets)
    done = intra + cross
    return {
        "from_s": float(first),
        "to_s": float(last),
        "committed": done,
        "cross_shard_share": round(cross / done, 4) if done else None,
        "throughput_ops": round(done / max(last - first, 1e-9), 3) if last > first else 0.0,
    }


def _window(completed: Sequence[Any], start: float, end: float) -> dict[str, Any]:
    span = max(end - start, 1e-9)
    ok = [c for c in completed if c.outcome == "ok"]
    cross = sum(1 for c in ok if c.cross)
    return {
        "from_s": round(start, 3),
        "to_s": round(end, 3),
        "committed": len(ok),
        "cross_shard_share": round(cross / len(ok), 4) if ok else None,
        "throughput_ops": round(len(ok) / span, 3),
    }
