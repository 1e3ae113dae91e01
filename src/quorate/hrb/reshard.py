"""Splits, merges and agent moves ordered by the core: the shard map as a
versioned value and the core's table of the change in flight (docs/hrb.md
section 6; issue 13, "elastic scaling").

Theory of operation. The **shard map** (``ShardMap``) is a versioned pure
value: the consistent-hash ring of ``quorate.sharding.ring`` (key -> shard)
and the agents' home shards. It changes only through the core's log, one
change at a time, in three steps that make the move atomic:

1. **Begin.** A core member's background partitioner (``quorate.sharding``)
   proposes a change computed from map version v (``ReshardRequest``:
   ``SplitShard``, ``MergeShards`` or ``MoveAgents``). The core refuses a
   stale one (v is not the current version), one that names a shard or an
   agent that is not where it says, and any while another change is in
   flight. Otherwise it orders ``ReshardBegin(v + 1, change, routes)``:
   from then on the keys and agents that change owner are **in transit**
   (``in_transit``); the core begins no new transaction touching them (it
   defers or refuses the request, and the agent retries).
2. **Hand-off.** Each source shard orders a freeze of what leaves it in its
   own log: from that entry on it refuses writes to those keys (the
   client is told to retry), it waits until no prepared transaction locks
   any of them (transactions begun before step 1 are decided by the core
   as usual), snapshots them together with their client sessions (so a
   retried command is recognised at the target, never applied twice), and
   reports ``HandoffReport(role="frozen", digest)`` to the core. Each
   target installs the snapshot through its own log and reports
   ``role="installed"`` with the digest of what it installed.
3. **Commit or abort.** When every route (source -> target) has a frozen
   and an installed report with the same digest, the core orders
   ``ReshardCommit(v + 1)``: the new map is in force, sources drop what
   left, targets serve it. If a report is missing at the deadline (core
   log time), or digests differ, the core orders ``ReshardAbort``: sources
   unfreeze, targets drop what they installed, and map v stays.

Why this is atomic: ``TxnBegin``, ``ReshardBegin`` and ``ReshardCommit`` are
in one total order (the core's log). A transaction begun before the begin
holds its locks at the source, and the freeze waits for them, so it is
decided and applied at the source before the snapshot; none begins on a
key in transit; one begun after the commit is routed by map v + 1. At any
moment at most one shard accepts writes to a key: the source up to its
freeze entry, the target from the certified commit. Nothing is lost (the
snapshot is taken after the last write the source accepted) and nothing is
applied twice (sessions travel with the keys).

Commands are self-authenticating like every core command
(``quorate.hrb.core.commands``): the proposer or the reporting shard leader
signs ``reshard_request_bytes`` / ``handoff_bytes``; the core's state machine
verifies the signature before it hands the command to ``ReshardTable``,
which then only judges it against the map.
"""

from __future__ import annotations

import enum
import hashlib

import msgspec

from quorate.core.wire import WireMessage
from quorate.errors import ConfigError, invariant
from quorate.sharding import AgentMove, HashRing

__all__ = [
    "RESHARD_COMMAND_TYPES",
    "RESHARD_DECISION_TYPES",
    "HandoffReport",
    "MapChange",
    "MergeShards",
    "MoveAgents",
    "ReportOutcome",
    "ReshardAbort",
    "ReshardBegin",
    "ReshardCommit",
    "ReshardRequest",
    "ReshardTable",
    "ShardMap",
    "SplitShard",
    "handoff_bytes",
    "reshard_request_bytes",
]

_encoder = msgspec.msgpack.Encoder()
FROZEN = "frozen"
INSTALLED = "installed"


class SplitShard(msgspec.Struct, tag="split", frozen=True, array_like=True):
    """Half of ``shard``'s ring goes to the new shard ``new_shard``."""

    shard: int
    new_shard: int


class MergeShards(msgspec.Struct, tag="merge", frozen=True, array_like=True):
    """All of ``absorbed`` (keys and agents) goes to ``into``."""

    absorbed: int
    into: int


class MoveAgents(msgspec.Struct, tag="move", frozen=True, array_like=True):
    """Agents change home shard (a repartition's moves)."""

    moves: tuple[AgentMove, ...]


MapChange = SplitShard | MergeShards | MoveAgents


class ShardMap(msgspec.Struct, frozen=True, array_like=True):
    """Version ``version`` of who owns what."""

    version: int
    ring: HashRing
    homes: tuple[tuple[str, int], ...] = ()
    """(agent, home shard), sorted by agent."""

    def owner(self, key: str) -> int:
        return self.ring.owner(key)

    def home(self, agent: str) -> int | None:
        return dict(self.homes).get(agent)

    def digest(self) -> bytes:
        return hashlib.sha256(_encoder.encode(self)).digest()

    def routes(self, change: MapChange) -> tuple[tuple[int, int], ...]:
        """(source, target) pairs of what ``change`` moves."""
        if isinstance(change, SplitShard):
            return ((change.shard, change.new_shard),)
        if isinstance(change, MergeShards):
            return ((change.absorbed, change.into),)
        return tuple(sorted({(m.source, m.target) for m in change.moves}))

    def after(self, change: MapChange) -> ShardMap:
        """The next version; ``ConfigError`` naming the problem if ``change``
        does not fit this map."""
        homes = dict(self.homes)
        if isinstance(change, SplitShard):
            ring = self.ring.split(change.shard, change.new_shard)
        elif isinstance(change, MergeShards):
            ring = self.ring.merge(change.absorbed, change.into)
            homes = {a: change.into if s == change.absorbed else s for a, s in homes.items()}
        else:
            if not change.moves:
                raise ConfigError("a move of no agent")
            shards = set(self.ring.shards())
            seen: set[str] = set()
            for move in change.moves:
                if move.agent in seen:
                    raise ConfigError(f"agent {move.agent!r} is moved twice")
                seen.add(move.agent)
                if homes.get(move.agent) != move.source:
                    raise ConfigError(
                        f"agent {move.agent!r} is not at home on shard {move.source} "
                        f"(it is on {homes.get(move.agent)})"
                    )
                if move.target not in shards or move.target == move.source:
                    raise ConfigError(f"agent {move.agent!r} cannot move to shard {move.target}")
                homes[move.agent] = move.target
            ring = self.ring
        return ShardMap(self.version + 1, ring, tuple(sorted(homes.items())))


class ReshardRequest(WireMessage, tag="hrb.reshard.Request", frozen=True):
    """Core member ``proposer`` proposes ``change`` to map ``based_on_version``."""

    proposer: int
    based_on_version: int
    change: MapChange
    signature: bytes


def reshard_request_bytes(r: ReshardRequest) -> bytes:
    return _encoder.encode(("quorate.hrb.reshard-request.v1", r.proposer, r.based_on_version, r.change))


class HandoffReport(WireMessage, tag="hrb.reshard.Handoff", frozen=True):
    """Shard ``shard``'s leader reports, for the change to map ``version``,
    that the route ``source -> target`` is frozen at the source or installed
    at the target, with the digest of the moved state."""

    version: int
    shard: int
    leader: int
    source: int
    target: int
    role: str
    state_digest: bytes
    signature: bytes


def handoff_bytes(h: HandoffReport) -> bytes:
    return _encoder.encode(
        ("quorate.hrb.reshard-handoff.v1", h.version, h.shard, h.leader, h.source, h.target, h.role, h.state_digest)
    )


class ReshardBegin(WireMessage, tag="hrb.reshard.Begin", frozen=True):
    """Decision: the change to map ``version`` starts; ``routes`` hand off."""

    version: int
    change: MapChange
    routes: tuple[tuple[int, int], ...]
    deadline: int


class ReshardCommit(WireMessage, tag="hrb.reshard.Commit", frozen=True):
    """Decision: map ``version`` (digest ``map_digest``) is in force."""

    version: int
    map_digest: bytes


class ReshardAbort(WireMessage, tag="hrb.reshard.Abort", frozen=True):
    """Decision: the change to map ``version`` is abandoned; the map stays."""

    version: int
    reason: str


class ReportOutcome(enum.Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate report"
    CONFLICT = "report contradicts an earlier one"
    NOT_IN_FLIGHT = "no change to that version in flight"
    NOT_ON_ROUTE = "route not part of the change"
    WRONG_SHARD = "the reporting shard is not that end of the route"
    BAD_ROLE = "role is neither frozen nor installed"


class Pending(msgspec.Struct, array_like=True):
    begin: ReshardBegin
    next_map: ShardMap
    reports: dict[str, bytes] = msgspec.field(default_factory=dict)
    """"role source target" -> digest."""


class ReshardTable:
    """The core's side of one change in flight (module doc). Applied by
    every core member in log order, so every member decides alike."""

    def __init__(self, current: ShardMap, *, handoff_ticks: int) -> None:
        if handoff_ticks < 1:
            raise ConfigError(f"handoff_ticks is a positive integer, got {handoff_ticks}")
        self.current = current
        self.handoff_ticks = handoff_ticks
        self.pending: Pending | None = None
        self.refused: dict[str, int] = {}
        """Reason -> count of refused requests and reports."""

    def _refuse(self, reason: str) -> str:
        key = reason.split(":")[0]
        self.refused[key] = self.refused.get(key, 0) + 1
        return reason

    def request(self, r: ReshardRequest, now: int) -> ReshardBegin | str:
        """The begin decision, or why the request is refused (counted)."""
        if self.pending is not None:
            return self._refuse(f"busy: the change to map {self.pending.begin.version} is in flight")
        if r.based_on_version != self.current.version:
            return self._refuse(
                f"stale: computed from map {r.based_on_version}, the map is at {self.current.version}"
            )
        try:
            next_map = self.current.after(r.change)
        except ConfigError as exc:
            return self._refuse(f"impossible: {exc}")
        begin = ReshardBegin(next_map.version, r.change, self.current.routes(r.change), now + self.handoff_ticks)
        self.pending = Pending(begin, next_map)
        return begin

    def report(self, h: HandoffReport) -> tuple[ReportOutcome, ReshardCommit | ReshardAbort | None]:
        """Record a hand-off report; the commit (or abort on a digest
        mismatch) when it completes the change."""
        p = self.pending
        if p is None or h.version != p.begin.version:
            self._refuse("report for no change in flight")
            return ReportOutcome.NOT_IN_FLIGHT, None
        if h.role not in (FROZEN, INSTALLED):
            self._refuse("report with a bad role")
            return ReportOutcome.BAD_ROLE, None
        if (h.source, h.target) not in p.begin.routes:
            self._refuse("report off the change's routes")
            return ReportOutcome.NOT_ON_ROUTE, None
        if h.shard != (h.source if h.role == FROZEN else h.target):
            self._refuse("report from the wrong shard")
            return ReportOutcome.WRONG_SHARD, None
        key = f"{h.role} {h.source} {h.target}"
        earlier = p.reports.get(key)
        if earlier is not None:
            return (ReportOutcome.DUPLICATE if earlier == h.state_digest else ReportOutcome.CONFLICT), None
        p.reports[key] = h.state_digest
        other = p.reports.get(f"{INSTALLED if h.role == FROZEN else FROZEN} {h.source} {h.target}")
        if other is not None and other != h.state_digest:
            return ReportOutcome.RECORDED, self._abort(
                f"route {h.source}->{h.target}: installed state differs from the frozen state"
            )
        if all(
            p.reports.get(f"{FROZEN} {s} {t}") is not None and p.reports.get(f"{INSTALLED} {s} {t}") is not None
            for s, t in p.begin.routes
        ):
            return ReportOutcome.RECORDED, self._commit()
        return ReportOutcome.RECORDED, None

    def expire(self, now: int) -> ReshardAbort | None:
        """Abort the change in flight if its deadline has passed."""
        p = self.pending
        if p is None or now < p.begin.deadline:
            return None
        missing = [
            f"{role} {s}->{t}"
            for s, t in p.begin.routes
            for role in (FROZEN, INSTALLED)
            if f"{role} {s} {t}" not in p.reports
        ]
        return self._abort(f"timeout: no report of {', '.join(missing)}")

    def in_transit(self, key: str) -> bool:
        """True while ``key`` changes owner in the change in flight."""
        p = self.pending
        return p is not None and self.current.owner(key) != p.next_map.owner(key)

    def agent_in_transit(self, agent: str) -> bool:
        p = self.pending
        return p is not None and self.current.home(agent) != p.next_map.home(agent)

    def _commit(self) -> ReshardCommit:
        p = self.pending
        invariant(p is not None, "commit with no change in flight")
        assert p is not None
        invariant(p.next_map.version == self.current.version + 1, "a map version skipped")
        self.current = p.next_map
        self.pending = None
        return ReshardCommit(self.current.version, self.current.digest())

    def _abort(self, reason: str) -> ReshardAbort:
        p = self.pending
        invariant(p is not None, "abort with no change in flight")
        assert p is not None
        self.pending = None
        return ReshardAbort(p.begin.version, reason)

    def check(self) -> None:
        p = self.pending
        if p is not None:
            invariant(p.begin.version == self.current.version + 1, "the change in flight skips a version")
            invariant(p.next_map.version == p.begin.version, "the next map is not the begun version")


RESHARD_COMMAND_TYPES: tuple[type[WireMessage], ...] = (ReshardRequest, HandoffReport)
"""What a core would add to its ordered commands."""
RESHARD_DECISION_TYPES: tuple[type[WireMessage], ...] = (ReshardBegin, ReshardCommit, ReshardAbort)
"""What a core would certify and send to the shards of the routes."""
