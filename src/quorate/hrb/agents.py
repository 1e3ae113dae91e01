"""Agents: the clients of tier 3 as a sans-IO workload (``docs/hrb.md`` section 4).

Theory of operation. Each agent is bound to a home shard and runs closed
loop: one transaction at a time, sent to every member of its home shard
(one leads; the others forward it and watch that it is appended), and
accepted once ``replies_needed`` members answered it with the same outcome
(f + 1 of a ``byzantine`` shard of 3f + 1: at least one honest member
applied it; one in a ``majority`` shard, whose followers are crash-only). Until
then the agent sends it again every ``RESEND_S`` (a shard with no leader
yet drops it; the same transaction is applied once, by its id and the
agent's session). An answer that does not come within ``op_timeout_s``
leaves the transaction's outcome unknown (``info``); the agent then goes on
with a new one.

Workloads:

- ``kv``: a read (``get`` of one home key) with probability ``read_ratio``;
  else a write: ``put`` of a home key, plus, with probability
  ``cross_shard``, a ``put`` of a key of another shard (a cross-shard
  transaction). Every value written is unique and padded to ``txn_bytes``.
- ``bank``: each agent owns ``accounts`` accounts in its home shard, opened
  at ``INITIAL_BALANCE`` by its first transaction. A transfer moves 1..10
  from one of its accounts to the *inbox* of a random account (of an agent
  of another shard with probability ``cross_shard``): a ``cas`` of the
  account from the balance the agent knows to the lower one, and an ``add``
  to the inbox. Money is conserved: the total of every account and inbox
  is ``INITIAL_BALANCE`` times the accounts opened. A read is a ``get`` of
  one of its accounts. Only the owner writes an account, so it knows the
  balance: after an unknown or failed outcome it reads the account first.

The history (``quorate.check``'s JSON format) records each key operation of
a transaction as its own operation on that key, from the transaction's
invoke to its answer, on process ``agent * MAX_OPS + position``: the
per-key projection of a linearizable transaction history is linearizable.
Inbox keys are not recorded (their credits come from other agents'
transactions, whose values nobody observes); the totals check covers them.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quorate.errors import ConfigError
from quorate.hrb.messages import Transaction, TxnOp
from quorate.hrb.reshard import ShardMap, agent_key
from quorate.hrb.shard.state import TxnOutcome
from quorate.hrb.txn import shard_of_key

__all__ = ["INITIAL_BALANCE", "WORKLOADS", "AgentPool", "Completed", "WorkloadSettings"]

WORKLOADS = ("kv", "bank")
INITIAL_BALANCE = 1000
"""Each bank account opens with this balance."""
MAX_OPS = 8
"""Key operations in one transaction at most (history process ids leave room for them)."""
KEYS_PER_SHARD = 8
"""``kv``: keys of each shard the agents use."""
MAX_TRANSFER = 10
RESEND_S = 1.0
"""An agent sends an unanswered transaction to its home shard again this often."""
THINK_S = 0.01
"""An agent waits this long between a transaction's answer and its next one."""
READY_POLL_S = 0.05
"""How often agents held back by a ``ready`` condition ask it again."""


@dataclass(frozen=True, slots=True)
class WorkloadSettings:
    workload: str = "bank"
    cross_shard: float = 0.2
    read_ratio: float = 0.2
    txn_bytes: int = 64
    accounts: int = 2
    op_timeout_s: float = 5.0
    arrival_rate_ops: float = 0.0
    """0: every agent runs closed loop; > 0: open-loop Poisson arrivals at this
    rate (transactions per second), each taken by a free agent (module docstring)."""
    start_s: float = 0.0
    """No agent issues anything before this simulated time."""
    wait_for_leaders: bool = False
    """No agent issues anything before every shard has a leader (the model's ``ready``)."""
    issue_for_s: float = math.inf
    """Agents issue for this long after they start, then no more (what is in flight may complete)."""
    keys_per_shard: int = KEYS_PER_SHARD
    """``kv``: keys of each shard the agents use."""

    def validate(self) -> WorkloadSettings:
        if self.workload not in WORKLOADS:
            raise ConfigError(f"workload must be one of {', '.join(WORKLOADS)}, got {self.workload!r}")
        for name in ("cross_shard", "read_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name.replace('_', '-')} must be a fraction in [0, 1], got {value}")
        if not 1 <= self.txn_bytes <= 16 * 1024:
            raise ConfigError(f"txn-bytes must be within 1..16384, got {self.txn_bytes}")
        if self.keys_per_shard < 1:
            raise ConfigError(f"keys per shard must be >= 1, got {self.keys_per_shard}")
        if self.accounts < 1:
            raise ConfigError(f"accounts must be >= 1, got {self.accounts}")
        if not self.op_timeout_s > 0:
            raise ConfigError(f"op_timeout_s must be > 0, got {self.op_timeout_s}")
        if not (0.0 <= self.arrival_rate_ops < math.inf):
            raise ConfigError(f"arrival rate must be a finite rate >= 0 per second, got {self.arrival_rate_ops}")
        if not self.issue_for_s > 0:
            raise ConfigError(f"agents must issue for > 0 s, got {self.issue_for_s}")
        if not (0.0 <= self.start_s < math.inf):
            raise ConfigError(f"the agents' start must be a finite time >= 0 s, got {self.start_s}")
        return self


@dataclass(frozen=True, slots=True)
class Completed:
    """One transaction's end, for the measurements."""

    cross: bool
    outcome: str
    """``ok``, ``fail`` or ``info``."""
    latency_s: float
    invoked_at: float


@dataclass(slots=True)
class _Pending:
    txn: Transaction
    cross: bool
    invoked_at: float
    deadline: float
    resend_at: float
    ops: list[tuple[str, str, Any]]
    """The recorded key operations: (key, f, value)."""
    answers: dict[tuple[bool, tuple[tuple[str, str | None], ...]], set[int]] = field(default_factory=dict)


@dataclass(slots=True)
class _Agent:
    index: int
    home: int
    rng: random.Random
    position: int = -1
    """Its place in the pool's ``agents`` (``index`` may be renumbered by a caller)."""
    seq: int = 0
    pending: _Pending | None = None
    next_at: float = 0.0
    accounts: list[str] = field(default_factory=list)
    inboxes: list[str] = field(default_factory=list)
    balances: dict[str, int | None] = field(default_factory=dict)
    """Known balance of each account (None: unknown, read it first)."""
    absent: set[str] = field(default_factory=set)
    """Accounts known not to be open yet."""


class AgentPool:
    """``agents`` agents over ``shards`` (``members[shard]`` its members), see the module docstring."""

    def __init__(
        self,
        settings: WorkloadSettings,
        *,
        agents: int,
        members: dict[int, tuple[int, ...]],
        replies_needed: int,
        seed: int,
        directory: Any = None,
        communities: int = 0,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        """``directory``: under dynamic sharding, a callable giving the shard
        map in force (``quorate.hrb.reshard.ShardMap``); agents then keep
        their keys in their own namespace, find their home and every key's
        shard in that map, and transact mostly within ``communities``
        groups of agents (``index % communities``). ``ready``: agents issue
        nothing until it first answers true (module docstring, "Arrivals")."""
        self.settings = settings.validate()
        self.members = members
        self.shards = len(members)
        self.replies_needed = replies_needed
        self.agents = [_Agent(a, 1 + a % self.shards, random.Random(f"{seed}:agent:{a}"), a) for a in range(agents)]
        self.sends: list[tuple[int, int, int, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.involved: dict[bytes, tuple[int, ...]] = {}
        """Cross-shard transaction id -> the shards it involves."""
        self.completed: list[Completed] = []
        self.stopped = False
        self._pad = random.Random(f"{seed}:pad")
        self.keys: dict[int, list[str]] = _keys_by_shard(self.shards, settings.keys_per_shard, "k")
        if settings.workload == "bank":
            per_shard = -(-agents // self.shards) * settings.accounts
            accounts = _keys_by_shard(self.shards, per_shard, "acct")
            inboxes = _keys_by_shard(self.shards, per_shard, "inbox")
            for agent in self.agents:
                agent.accounts = [accounts[agent.home].pop() for _ in range(settings.accounts)]
                agent.inboxes = [inboxes[agent.home].pop() for _ in range(settings.accounts)]
                agent.balances = dict.fromkeys(agent.accounts)
                agent.absent = set(agent.accounts)
        self.directory = directory
        self.communities = max(1, communities)
        self.interactions: list[tuple[str, ...]] = []
        """Under dynamic sharding: the agents of each completed transaction."""
        if directory is not None:
            shard_map: ShardMap = directory()
            for agent in self.agents:
                name = agent_name(agent.index)
                agent.home = shard_map.home(name) or agent.home
                agent.accounts = [agent_key(name, f"acct{i}") for i in range(settings.accounts)]
                agent.inboxes = [agent_key(name, f"inbox{i}") for i in range(settings.accounts)]
                agent.balances = dict.fromkeys(agent.accounts)
                agent.absent = set(agent.accounts)
        self.account_owner = {acct: a.index for a in self.agents for acct in a.accounts}
        self._ready = ready
        self.started_at: float | None = None
        """When the agents began issuing (None: not yet)."""
        self.not_started = 0
        """Open loop: arrivals that found every agent busy."""
        self._due: list[float] = [math.inf] * len(self.agents)
        """Each agent's next deadline (its position in ``agents``; inf: none)."""
        self._timers: list[tuple[float, int]] = []
        self._open_loop = settings.arrival_rate_ops > 0
        self._arrivals = random.Random(f"{seed}:arrivals")
        self._next_arrival = math.inf
        self._free: list[int] = []
        """Open loop: positions of the agents with nothing in flight."""
        self._hold_until = settings.start_s
        self._polled_at = -math.inf
        if ready is None and settings.start_s <= 0:
            self._start(0.0)

    # -- timers ------------------------------------------------------------------------------------
    def _start(self, now: float) -> None:
        self.started_at = now
        if self._open_loop:
            self._free = list(range(len(self.agents)))
            self._next_arrival = now + self._arrivals.expovariate(self.settings.arrival_rate_ops)
        else:
            for position, agent in enumerate(self.agents):
                agent.next_at = max(agent.next_at, now)
                self._reschedule(position, agent)

    def _reschedule(self, position: int, agent: _Agent) -> None:
        pending = agent.pending
        if pending is not None:
            due = min(pending.deadline, pending.resend_at)
        elif not self.stopped and not self._open_loop:
            due = agent.next_at
        else:
            due = math.inf
        if due != self._due[position]:
            self._due[position] = due
            if due != math.inf:
                heapq.heappush(self._timers, (due, position))

    def _hold_check(self, now: float) -> bool:
        """Still held back at ``now`` (starting the agents when no longer)."""
        if self.started_at is not None:
            return False
        if now < self._hold_until:
            return True
        if self._ready is not None:
            self._polled_at = now
            if not self._ready():
                return True
        self._start(now)
        return False

    # -- the sans-IO surface ---------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if self._hold_check(now):
            return
        assert self.started_at is not None
        end = self.started_at + self.settings.issue_for_s
        if not self.stopped and now >= end:
            self.stop()
        timers = self._timers
        due_now: list[int] = []
        while timers and timers[0][0] <= now:
            at, position = heapq.heappop(timers)
            if self._due[position] == at:
                self._due[position] = math.inf
                due_now.append(position)
        if len(due_now) > 1:
            due_now.sort()
        for position in due_now:
            agent = self.agents[position]
            pending = agent.pending
            if pending is not None:
                if now >= pending.deadline:
                    self._complete(agent, "info", (), now)
                elif now >= pending.resend_at:
                    pending.resend_at = now + RESEND_S
                    self._send(agent, pending.txn)
            elif not self.stopped and not self._open_loop and now >= agent.next_at:
                self._issue(agent, now)
            self._reschedule(position, agent)
        if self._open_loop:
            rate = self.settings.arrival_rate_ops
            while not self.stopped and self._next_arrival <= now and self._next_arrival < end:
                self._next_arrival += self._arrivals.expovariate(rate)
                free = self._free
                if not free:
                    self.not_started += 1
                    continue
                pick = self._arrivals.randrange(len(free))
                free[pick], free[-1] = free[-1], free[pick]
                position = free.pop()
                agent = self.agents[position]
                self._issue(agent, now)
                self._reschedule(position, agent)

    def wake_at(self) -> float | None:
        if self.started_at is None:
            if self.stopped:
                return None
            if self._ready is None:
                return self._hold_until
            return max(self._hold_until, self._polled_at + READY_POLL_S)
        timers = self._timers
        while timers and self._due[timers[0][1]] != timers[0][0]:
            heapq.heappop(timers)
        wake = timers[0][0] if timers else None
        if not self.stopped:
            end = self.started_at + self.settings.issue_for_s
            if self._open_loop and self._next_arrival < end and (wake is None or self._next_arrival < wake):
                wake = self._next_arrival
            elif end < math.inf and (wake is None or end < wake):
                wake = end
        return wake

    def receive(self, agent_index: int, sender: int, message: Any, now: float) -> None:
        if not isinstance(message, TxnOutcome) or not 0 <= agent_index < len(self.agents):
            return
        agent = self.agents[agent_index]
        pending = agent.pending
        if pending is None or message.txn_id != pending.txn.txn_id:
            return
        key = (message.committed, tuple(message.reads))
        voters = pending.answers.setdefault(key, set())
        voters.add(sender)
        if len(voters) >= self.replies_needed:
            self._complete(agent, "ok" if message.committed else "fail", message.reads, now)
            self._reschedule(agent_index, agent)

    def take_sends(self) -> list[tuple[int, int, int, Any]]:
        out, self.sends = self.sends, []
        return out

    def stop(self) -> None:
        """Issue nothing more; what is in flight may still complete."""
        self.stopped = True
        for position, agent in enumerate(self.agents):
            if agent.pending is None:
                self._due[position] = math.inf

    def finish(self) -> None:
        """Whatever is still in flight ends ``info``."""
        for agent in self.agents:
            if agent.pending is not None:
                self._record_end(agent, agent.pending, "info", ())
                agent.pending = None

    # -- transactions ------------------------------------------------------------------------------
    def _issue(self, agent: _Agent, now: float) -> None:
        s = self.settings
        rng = agent.rng
        ops: list[TxnOp]
        recorded: list[tuple[str, str, Any]]
        shard_map: ShardMap | None = None
        if self.directory is not None:
            shard_map = self.directory()
            agent.home = shard_map.home(agent_name(agent.index)) or agent.home
        if shard_map is not None:
            ops, recorded = self._dynamic_ops(agent, rng)
        elif s.workload == "kv":
            if rng.random() < s.read_ratio:
                key = rng.choice(self.keys[agent.home])
                ops, recorded = [TxnOp(key, "get")], [(key, "read", None)]
            else:
                keys = [rng.choice(self.keys[agent.home])]
                if self.shards > 1 and rng.random() < s.cross_shard:
                    keys.append(rng.choice(self.keys[self._other_shard(agent)]))
                ops, recorded = [], []
                for i, key in enumerate(keys):
                    value = self._value(agent, i, len(keys))
                    ops.append(TxnOp(key, "put", value))
                    recorded.append((key, "write", value))
        else:
            ops, recorded = self._bank_ops(agent, rng)
        agent.seq += 1
        txn_id = hashlib.sha256(b"hrb-agent/%d/%d" % (agent.index, agent.seq)).digest()[:16]
        txn = Transaction(txn_id, agent.index + 1, agent.seq, agent.home, tuple(ops))
        if shard_map is not None:
            shards = tuple(sorted({shard_map.owner(op.key) for op in ops}))
        else:
            shards = tuple(sorted({shard_of_key(op.key, self.shards) for op in ops}))
        cross = shards != (agent.home,)
        if cross:
            self.involved[txn_id] = shards
        agent.pending = _Pending(txn, cross, now, now + s.op_timeout_s, now + RESEND_S, recorded)
        for process, (key, f, value) in enumerate(recorded):
            event: dict[str, Any] = {"process": agent.index * MAX_OPS + process, "type": "invoke", "f": f, "key": key, "time": now}
            if f != "read":
                event["value"] = value
            self.history.append(event)
        self._send(agent, txn)

    def _send(self, agent: _Agent, txn: Transaction) -> None:
        for member in self.members[txn.home_shard]:
            self.sends.append((agent.index, member, agent.home, txn))

    def _bank_ops(
        self, agent: _Agent, rng: random.Random, *, local: bool = False
    ) -> tuple[list[TxnOp], list[tuple[str, str, Any]]]:
        s = self.settings
        if agent.absent:
            opening = sorted(agent.absent)
            ops = [TxnOp(a, "put", str(INITIAL_BALANCE)) for a in opening]
            return ops, [(a, "write", INITIAL_BALANCE) for a in opening]
        unknown = [a for a in agent.accounts if agent.balances[a] is None]
        if unknown or rng.random() < s.read_ratio:
            account = unknown[0] if unknown else rng.choice(agent.accounts)
            return [TxnOp(account, "get")], [(account, "read", None)]
        source = rng.choice(agent.accounts)
        balance = agent.balances[source]
        assert balance is not None
        amount = min(balance, 1 + rng.randrange(MAX_TRANSFER))
        if local:
            others = [agent]
        elif self.shards > 1 and rng.random() < s.cross_shard:
            others = [a for a in self.agents if a.home != agent.home]
        else:
            others = [a for a in self.agents if a.home == agent.home]
        target = rng.choice(rng.choice(others).inboxes) if others else agent.inboxes[0]
        ops = [
            TxnOp(source, "cas", str(balance - amount), expected=str(balance)),
            TxnOp(target, "add", delta=amount),
        ]
        return ops, [(source, "cas", [balance, balance - amount])]

    def _dynamic_ops(self, agent: _Agent, rng: random.Random) -> tuple[list[TxnOp], list[tuple[str, str, Any]]]:
        """Dynamic sharding: a transaction in the agent's namespace, touching
        a partner's (of its community, mostly) with probability ``cross_shard``."""
        s = self.settings
        partner: _Agent | None = None
        if len(self.agents) > 1 and rng.random() < s.cross_shard:
            mine = [a for a in self.agents if a.index % self.communities == agent.index % self.communities and a is not agent]
            pool = mine if mine and rng.random() < 0.9 else [a for a in self.agents if a is not agent]
            partner = rng.choice(pool)
        if s.workload == "kv":
            name = agent_name(agent.index)
            if partner is None and rng.random() < s.read_ratio:
                key = agent_key(name, f"k{rng.randrange(KEYS_PER_SHARD)}")
                return [TxnOp(key, "get")], [(key, "read", None)]
            keys = [agent_key(name, f"k{rng.randrange(KEYS_PER_SHARD)}")]
            if partner is not None:
                keys.append(agent_key(agent_name(partner.index), f"k{rng.randrange(KEYS_PER_SHARD)}"))
            ops, recorded = [], []
            for i, key in enumerate(keys):
                value = self._value(agent, i, len(keys))
                ops.append(TxnOp(key, "put", value))
                recorded.append((key, "write", value))
            return ops, recorded
        if agent.absent or any(agent.balances[a] is None for a in agent.accounts) or partner is None:
            ops, recorded = self._bank_ops(agent, rng, local=True)
            return ops, recorded
        source = rng.choice(agent.accounts)
        balance = agent.balances[source]
        assert balance is not None
        amount = min(balance, 1 + rng.randrange(MAX_TRANSFER))
        target = rng.choice(partner.inboxes)
        ops = [TxnOp(source, "cas", str(balance - amount), expected=str(balance)), TxnOp(target, "add", delta=amount)]
        return ops, [(source, "cas", [balance, balance - amount])]

    def _complete(self, agent: _Agent, outcome: str, reads: Any, now: float) -> None:
        pending = agent.pending
        assert pending is not None
        if self.directory is not None and outcome == "ok":
            owners = [agent_name(agent.index)]
            for op in pending.txn.ops:
                owner = op.key[1:op.key.find("/")] if op.key.startswith("@") else None
                if owner is not None and owner not in owners:
                    owners.append(owner)
            self.interactions.append(tuple(owners))
        agent.pending = None
        agent.next_at = now + THINK_S
        if self._open_loop:
            self._free.append(agent.position)
        self._record_end(agent, pending, outcome, reads, now)
        self.completed.append(Completed(pending.cross, outcome, now - pending.invoked_at, pending.invoked_at))
        if self.settings.workload != "bank":
            return
        got = dict(reads)
        for key, f, value in pending.ops:
            if f == "write":
                # Opened (ok), or perhaps (info: read it before using it).
                agent.absent.discard(key)
                agent.balances[key] = INITIAL_BALANCE if outcome == "ok" else None
                if outcome == "fail":
                    agent.absent.add(key)
            elif f == "read" and outcome == "ok" and key not in got:
                agent.balances[key] = None  # read, but not told the value: read it again
            elif f == "read" and outcome == "ok":
                raw = got.get(key)
                agent.balances[key] = int(raw) if raw is not None else None
                if raw is None:
                    agent.absent.add(key)
            elif f == "cas":
                agent.balances[key] = value[1] if outcome == "ok" else None

    def _record_end(self, agent: _Agent, pending: _Pending, outcome: str, reads: Any, now: float | None = None) -> None:
        got = dict(reads)
        for process, (key, f, value) in enumerate(pending.ops):
            event: dict[str, Any] = {"process": agent.index * MAX_OPS + process, "type": outcome, "f": f, "key": key}
            if now is not None:
                event["time"] = now
            if f == "read":
                if outcome == "ok" and key not in got:
                    event["type"] = "info"  # committed, but its value never reached this agent
                elif outcome == "ok":
                    raw = got.get(key)
                    event["value"] = None if raw is None else (int(raw) if self.settings.workload == "bank" else raw)
            else:
                event["value"] = value
            self.history.append(event)

    def _other_shard(self, agent: _Agent) -> int:
        shard = 1 + agent.rng.randrange(self.shards - 1)
        return shard + 1 if shard >= agent.home else shard

    def _value(self, agent: _Agent, position: int, count: int) -> str:
        tag = f"{agent.index}.{agent.seq + 1}.{position}:"
        width = max(len(tag), self.settings.txn_bytes // count)
        return tag + "x" * (width - len(tag))


def agent_name(index: int) -> str:
    """The name of agent ``index`` in the shard map."""
    return f"a{index}"


def _keys_by_shard(shards: int, per_shard: int, prefix: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {k: [] for k in range(1, shards + 1)}
    short = shards
    i = 0
    while short:
        key = f"{prefix}{i}"
        i += 1
        shard = shard_of_key(key, shards)
        if len(out[shard]) < per_shard:
            out[shard].append(key)
            if len(out[shard]) == per_shard:
                short -= 1
    return out
