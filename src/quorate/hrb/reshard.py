"""Splits, merges and agent moves ordered by the core: the shard map as a
versioned value, the core's table of the change in flight, and a shard's
side of the hand-off (docs/hrb.md section 10; issue 13, "elastic scaling").

Theory of operation. The **shard map** (``ShardMap``) is a versioned pure
value: the consistent-hash ring of ``quorate.sharding.ring`` (key -> shard)
and the agents' home shards. A key in an agent's namespace (``@agent/...``,
``agent_key``) lives on the agent's home shard, any other key where the ring
puts it, so moving an agent moves its keys. The map changes only through
the core's log, one change at a time, in three steps:

1. **Begin.** A core member's background partitioner (``quorate.sharding``)
   proposes a change computed from map version v (``ReshardRequest``:
   ``SplitShard``, ``MergeShards`` or ``MoveAgents``), signed. The core
   refuses a stale one (v is not the current version), one that names a
   shard or an agent that is not where it says, and any while another change
   is in flight. Otherwise it orders ``ReshardBegin(seq, v + 1, change)``
   and, in the same step, aborts every open transaction that touches a key
   that changes owner (presumed abort, as at a timeout). From then on those
   keys are **in transit**: the core begins no transaction on them.
2. **Hand-off.** Every shard applies the certified begin in its own log.
   A source shard **freezes** what leaves it at that entry: it refuses
   writes and prepares on those keys (the client is told the key is moving
   and retries), waits until no prepared transaction locks any of them
   (their decisions are already ordered), and then takes the **hand-off
   state** (the moving keys and values, ``encode_state``) at the entry that
   released the last lock. Each member of the source shard sends the core a
   ``HandoffReport`` with that state, signed by itself.
3. **Commit or abort.** When, for every route (source -> target), f + 1
   members of the source shard (f of its current size; so at least one
   honest member) reported the same state, the core orders
   ``ReshardCommit(seq, v + 1, change, transfers)`` carrying those states:
   in every shard's log that entry switches the map to v + 1; a target
   installs the transferred keys, a source drops them. If the deadline
   (core log time) passes first, the core orders ``ReshardAbort``: sources
   unfreeze and map v stays.

Why it is safe. ``TxnBegin``, ``ReshardBegin`` and ``ReshardCommit`` are in
one total order (the core's log), and a shard applies decisions only with
the core's certificate. A transaction that touched a moving key and was
still open at the begin is aborted by the begin itself; one decided before
it holds its locks at the source, and the hand-off state is taken only
after they are released, so its writes are in the state. None begins on a
key in transit. Every ``TxnBegin`` names the map version it was computed
from (``MappedTxnBegin``); a shard whose applied map differs votes no, so a
transaction never prepares against a map that would leave a key without
its owner. At any moment at most one shard accepts writes to a key: the
source up to its freeze entry, the target from the commit entry, which the
core orders only after the source froze. Nothing is lost (the state is
taken after the last write the source accepted) and nothing is applied
twice (a transaction names its home shard, which alone orders it, and the
core remembers decided transaction ids).

Certificates can reach a shard out of core order. A commit carries its
change, so a shard that never saw the begin still moves to v + 1; a begin
for a version above the next is held until the commit before it arrives;
anything of a change already settled (``seq``) is ignored.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

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
    "ReshardState",
    "ReshardTable",
    "ShardHandoff",
    "ShardMap",
    "SplitShard",
    "agent_key",
    "agent_of_key",
    "decode_state",
    "handoff_bytes",
    "reshard_certificate_key",
    "reshard_request_bytes",
]

_encoder = msgspec.msgpack.Encoder()
AGENT_PREFIX = "@"


RESHARD_CERTIFICATE_PREFIX = b"quorate.hrb.reshard/"


def reshard_certificate_key(seq: int) -> bytes:
    """What a ``CertificateRequest`` names to ask for the certificates of
    map change ``seq`` (its begin and its commit or abort): never a
    transaction id, whose length is fixed and shorter."""
    return RESHARD_CERTIFICATE_PREFIX + seq.to_bytes(8, "big")


def agent_key(agent: str, name: str) -> str:
    """A key in ``agent``'s namespace: it lives on the agent's home shard."""
    return f"{AGENT_PREFIX}{agent}/{name}"


def agent_of_key(key: str) -> str | None:
    """The agent whose namespace holds ``key`` (None for a ring key)."""
    if not key.startswith(AGENT_PREFIX):
        return None
    slash = key.find("/", 1)
    return key[1:slash] if slash > 1 else None


class SplitShard(msgspec.Struct, tag="split", frozen=True, array_like=True):
    """Half of ``shard``'s ring (and its agents whose point falls there) goes to ``new_shard``."""

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


@functools.lru_cache(maxsize=64)
def _homes(homes: tuple[tuple[str, int], ...]) -> dict[str, int]:
    return dict(homes)


class ShardMap(msgspec.Struct, frozen=True, array_like=True):
    """Version ``version`` of who owns what."""

    version: int
    ring: HashRing
    homes: tuple[tuple[str, int], ...] = ()
    """(agent, home shard), sorted by agent."""

    def owner(self, key: str) -> int:
        agent = agent_of_key(key)
        if agent is not None:
            home = _homes(self.homes).get(agent)
            if home is not None:
                return home
        return self.ring.owner(key)

    def home(self, agent: str) -> int | None:
        return _homes(self.homes).get(agent)

    def shards(self) -> tuple[int, ...]:
        """Shards that own part of the ring or an agent."""
        return tuple(sorted(set(self.ring.shards()) | {s for _, s in self.homes}))

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
            for agent, shard in list(homes.items()):
                if shard == change.shard and ring.owner(AGENT_PREFIX + agent) == change.new_shard:
                    homes[agent] = change.new_shard
        elif isinstance(change, MergeShards):
            ring = self.ring.merge(change.absorbed, change.into)
            homes = {a: change.into if s == change.absorbed else s for a, s in homes.items()}
        else:
            if not change.moves:
                raise ConfigError("a move of no agent")
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
                if move.target < 1 or move.target == move.source:
                    raise ConfigError(f"agent {move.agent!r} cannot move to shard {move.target}")
                homes[move.agent] = move.target
            ring = self.ring
        return ShardMap(self.version + 1, ring, tuple(sorted(homes.items())))

    def named_shards(self, change: MapChange) -> tuple[int, ...]:
        """Every shard ``change`` names (the core checks they exist)."""
        if isinstance(change, SplitShard):
            return (change.shard, change.new_shard)
        if isinstance(change, MergeShards):
            return (change.absorbed, change.into)
        return tuple(sorted({s for m in change.moves for s in (m.source, m.target)}))


# ---------------------------------------------------------------- commands


class ReshardRequest(WireMessage, tag="hrb.reshard.Request", frozen=True):
    """Core member ``proposer`` proposes ``change`` to map ``based_on_version``."""

    proposer: int
    based_on_version: int
    change: MapChange
    signature: bytes


def reshard_request_bytes(r: ReshardRequest) -> bytes:
    return _encoder.encode(("quorate.hrb.reshard-request.v1", r.proposer, r.based_on_version, r.change))


class HandoffReport(WireMessage, tag="hrb.reshard.Handoff", frozen=True):
    """Member ``member`` of source shard ``source`` reports, for change
    ``seq`` (to map ``version``), the state leaving for ``target``."""

    seq: int
    version: int
    member: int
    source: int
    target: int
    state: bytes
    signature: bytes


def handoff_bytes(h: HandoffReport) -> bytes:
    return _encoder.encode(
        (
            "quorate.hrb.reshard-handoff.v2",
            h.seq,
            h.version,
            h.member,
            h.source,
            h.target,
            hashlib.sha256(h.state).digest(),
        )
    )


# ---------------------------------------------------------------- decisions


class ReshardBegin(msgspec.Struct, tag="reshard_begin", frozen=True, array_like=True):
    """Decision: change ``seq`` to map ``version`` starts; ``routes`` hand off."""

    seq: int
    version: int
    change: MapChange
    routes: tuple[tuple[int, int], ...]
    deadline: int


class ReshardCommit(msgspec.Struct, tag="reshard_commit", frozen=True, array_like=True):
    """Decision: map ``version`` (digest ``map_digest``) is in force;
    ``transfers`` are (source, target, state) for the targets to install."""

    seq: int
    version: int
    change: MapChange
    map_digest: bytes
    transfers: tuple[tuple[int, int, bytes], ...]


class ReshardAbort(msgspec.Struct, tag="reshard_abort", frozen=True, array_like=True):
    """Decision: change ``seq`` to map ``version`` is abandoned; the map stays."""

    seq: int
    version: int
    reason: str


ReshardDecision = ReshardBegin | ReshardCommit | ReshardAbort


class ReportOutcome(enum.Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate report"
    CONFLICT = "report contradicts the member's earlier one"
    NOT_IN_FLIGHT = "no such change in flight"
    NOT_ON_ROUTE = "route not part of the change"
    NOT_A_MEMBER = "the reporter is not a member of the source shard"


# ---------------------------------------------------------------- the core's table


class Pending(msgspec.Struct, array_like=True):
    begin: ReshardBegin
    next_map: ShardMap
    reports: dict[str, dict[int, bytes]] = msgspec.field(default_factory=dict)
    """"source target" -> member -> SHA-256 of the state it reported."""
    states: dict[str, bytes] = msgspec.field(default_factory=dict)
    """"source target" -> the state once f + 1 members agree on it."""


class ReshardState(msgspec.Struct, array_like=True):
    """The core's reshard data (part of its snapshot)."""

    current: ShardMap
    handoff_ticks: int
    seq: int = 0
    pending: Pending | None = None
    refused: dict[str, int] = msgspec.field(default_factory=dict)
    commits: int = 0
    aborts: int = 0


def _route(source: int, target: int) -> str:
    return f"{source} {target}"


class ReshardTable:
    """The core's side of the change in flight (module doc). Applied by
    every core member in log order, so every member decides alike."""

    __slots__ = ("state",)

    def __init__(self, current: ShardMap | ReshardState, *, handoff_ticks: int = 0) -> None:
        if isinstance(current, ReshardState):
            self.state = current
        else:
            if handoff_ticks < 1:
                raise ConfigError(f"handoff_ticks is a positive integer, got {handoff_ticks}")
            self.state = ReshardState(current, handoff_ticks)

    @property
    def current(self) -> ShardMap:
        return self.state.current

    @property
    def pending(self) -> Pending | None:
        return self.state.pending

    @property
    def refused(self) -> dict[str, int]:
        return self.state.refused

    def _refuse(self, reason: str) -> str:
        key = reason.split(":")[0]
        self.state.refused[key] = self.state.refused.get(key, 0) + 1
        return reason

    def request(self, r: ReshardRequest, now: int, shards: Iterable[int] | None = None) -> ReshardBegin | str:
        """The begin decision, or why the request is refused (counted).
        ``shards``: the deployment's shards (a change naming another is refused)."""
        s = self.state
        if shards is not None:
            known = set(shards)
            unknown = [k for k in s.current.named_shards(r.change) if k not in known]
            if unknown:
                return self._refuse(f"unknown shard: {unknown[0]} is not a shard of the deployment")
        if s.pending is not None:
            return self._refuse(f"busy: the change to map {s.pending.begin.version} is in flight")
        if r.based_on_version != s.current.version:
            return self._refuse(f"stale: computed from map {r.based_on_version}, the map is at {s.current.version}")
        try:
            next_map = s.current.after(r.change)
        except ConfigError as exc:
            return self._refuse(f"impossible: {exc}")
        s.seq += 1
        begin = ReshardBegin(s.seq, next_map.version, r.change, s.current.routes(r.change), now + s.handoff_ticks)
        s.pending = Pending(begin, next_map)
        return begin

    def report(
        self, h: HandoffReport, source_members: Iterable[int], needed: int
    ) -> tuple[ReportOutcome, ReshardCommit | None]:
        """Record member ``h.member``'s report; the commit once every route
        has ``needed`` members agreeing on its state."""
        p = self.state.pending
        if p is None or h.seq != p.begin.seq or h.version != p.begin.version:
            self._refuse("report for no change in flight")
            return ReportOutcome.NOT_IN_FLIGHT, None
        if (h.source, h.target) not in p.begin.routes:
            self._refuse("report off the change's routes")
            return ReportOutcome.NOT_ON_ROUTE, None
        if h.member not in set(source_members):
            self._refuse("report from outside the source shard")
            return ReportOutcome.NOT_A_MEMBER, None
        route = _route(h.source, h.target)
        digest = hashlib.sha256(h.state).digest()
        by_member = p.reports.setdefault(route, {})
        earlier = by_member.get(h.member)
        if earlier is not None:
            return (ReportOutcome.DUPLICATE if earlier == digest else ReportOutcome.CONFLICT), None
        by_member[h.member] = digest
        if route not in p.states and sum(1 for d in by_member.values() if d == digest) >= needed:
            p.states[route] = h.state
        if all(_route(s, t) in p.states for s, t in p.begin.routes):
            return ReportOutcome.RECORDED, self._commit()
        return ReportOutcome.RECORDED, None

    def expire(self, now: int) -> ReshardAbort | None:
        """Abort the change in flight if its deadline has passed."""
        p = self.state.pending
        if p is None or now < p.begin.deadline:
            return None
        missing = [f"{s}->{t}" for s, t in p.begin.routes if _route(s, t) not in p.states]
        return self._abort(f"timeout: no agreed hand-off state for {', '.join(missing)}")

    def in_transit(self, key: str) -> bool:
        """True while ``key`` changes owner in the change in flight."""
        p = self.state.pending
        return p is not None and self.state.current.owner(key) != p.next_map.owner(key)

    def agent_in_transit(self, agent: str) -> bool:
        p = self.state.pending
        return p is not None and self.state.current.home(agent) != p.next_map.home(agent)

    def _commit(self) -> ReshardCommit:
        s = self.state
        p = s.pending
        invariant(p is not None, "commit with no change in flight")
        assert p is not None
        invariant(p.next_map.version == s.current.version + 1, "a map version skipped")
        transfers = tuple((src, tgt, p.states[_route(src, tgt)]) for src, tgt in p.begin.routes)
        s.current = p.next_map
        s.pending = None
        s.commits += 1
        return ReshardCommit(p.begin.seq, s.current.version, p.begin.change, s.current.digest(), transfers)

    def _abort(self, reason: str) -> ReshardAbort:
        s = self.state
        p = s.pending
        invariant(p is not None, "abort with no change in flight")
        assert p is not None
        s.pending = None
        s.aborts += 1
        return ReshardAbort(p.begin.seq, p.begin.version, reason)

    def check(self) -> None:
        p = self.state.pending
        if p is not None:
            invariant(p.begin.version == self.state.current.version + 1, "the change in flight skips a version")
            invariant(p.next_map.version == p.begin.version, "the next map is not the begun version")
            invariant(p.begin.seq == self.state.seq, "the change in flight is not the last begun")


# ---------------------------------------------------------------- a shard's side

_STATE_TYPE = tuple[tuple[tuple[str, str], ...], int, int, int]
_state_decoder = msgspec.msgpack.Decoder(_STATE_TYPE)


def encode_state(items: Iterable[tuple[str, str]], seq: int, source: int, target: int) -> bytes:
    """The hand-off state: the moving (key, value) pairs, sorted, bound to
    the change and route so one route's state never passes for another's."""
    return _encoder.encode((tuple(sorted(items)), seq, source, target))


def decode_state(data: bytes) -> _STATE_TYPE:
    """``msgspec.DecodeError`` / ``ValidationError`` on malformed bytes."""
    state: _STATE_TYPE = _state_decoder.decode(data)
    return state


class ShardHandoff:
    """Shard ``shard``'s view of the map, applied in its log (module doc).

    It is the shard's key -> shard map (``__call__``; ``dynamic`` tells the
    entry rules that ownership is judged when an entry is applied, not when
    it is appended), and it answers the store: may this key be written now,
    may this transaction be prepared, what leaves at a freeze, what arrives
    at a commit. ``ready`` holds the hand-off states this shard took (route
    -> (seq, version, state)) for its members to report until the change
    settles."""

    dynamic = True

    def __init__(self, shard: int, initial: ShardMap) -> None:
        self.shard = shard
        self.map = initial
        self.begin: ReshardBegin | None = None
        self.next_map: ShardMap | None = None
        self.settled = 0
        """Highest change seq committed or aborted here."""
        self.held: dict[int, ReshardBegin] = {}
        """Begins for a map this shard has not reached yet, by version."""
        self.ready: dict[tuple[int, int], tuple[int, int, bytes]] = {}
        self.installed = 0
        self.dropped = 0
        self.newest_seen = initial.version
        """The newest map version a transaction applied here was begun on (a
        newer one than ``map``: this shard missed a change's certificates)."""

    # -- the map --------------------------------------------------------------------
    def __call__(self, key: str) -> int:
        return self.map.owner(key)

    def leaving(self, key: str) -> int | None:
        """The target ``key`` leaves this shard for in the change in flight."""
        nxt = self.next_map
        if nxt is None or self.map.owner(key) != self.shard:
            return None
        target = nxt.owner(key)
        return None if target == self.shard else target

    def write_refusal(self, keys: Iterable[str]) -> str | None:
        """Why this shard must not serve these keys now (None: it may)."""
        for key in keys:
            owner = self.map.owner(key)
            if owner != self.shard:
                return f"wrong shard: key {key!r} is on shard {owner} (map {self.map.version})"
            target = self.leaving(key)
            if target is not None:
                return f"moving: key {key!r} moves to shard {target} (map {self.map.version + 1}); retry"
        return None

    def prepare_refusal(self, map_version: int | None, keys: Iterable[str]) -> str | None:
        if map_version is not None and map_version > self.newest_seen:
            self.newest_seen = map_version
        if map_version is not None and map_version != self.map.version:
            return f"map version: the transaction was begun on map {map_version}, this shard is on {self.map.version}"
        for key in keys:
            target = self.leaving(key)
            if target is not None:
                return f"moving: key {key!r} moves to shard {target}"
        return None

    def fingerprint(self) -> tuple[Any, ...]:
        return (self.map.version, self.settled, None if self.begin is None else self.begin.seq, sorted(self.ready))

    # -- decisions -------------------------------------------------------------------
    def knows(self, decision: ReshardDecision) -> bool:
        """Applying ``decision`` would change nothing."""
        if decision.seq <= self.settled:
            return True
        if isinstance(decision, ReshardBegin):
            return (self.begin is not None and self.begin.seq == decision.seq) or decision.version in self.held
        return False

    def apply(self, decision: ReshardDecision, store: Any) -> str | None:
        """Apply a certified reshard decision to ``store`` (its ``data`` and
        ``locks``); returns a refusal reason when the decision cannot apply."""
        if decision.seq <= self.settled:
            return None
        if isinstance(decision, ReshardBegin):
            if decision.version > self.map.version + 1:
                self.held[decision.version] = decision
                return None
            if decision.version != self.map.version + 1:
                return None
            try:
                nxt = self.map.after(decision.change)
            except ConfigError as exc:
                return f"a begun change that does not fit map {self.map.version}: {exc}"
            # A later change of the same version means the core abandoned the earlier one
            # (its abort may still be on the way): forget what was taken for it.
            self.ready = {r: v for r, v in self.ready.items() if v[0] >= decision.seq}
            self.begin, self.next_map = decision, nxt
            self.drained(store)
            return None
        if isinstance(decision, ReshardAbort):
            if self.begin is not None and self.begin.seq == decision.seq:
                self.begin = self.next_map = None
            self.settled = decision.seq
            self.ready = {r: v for r, v in self.ready.items() if v[0] > decision.seq}
            return None
        return self._commit(decision, store)

    def _commit(self, commit: ReshardCommit, store: Any) -> str | None:
        if commit.version != self.map.version + 1:
            return f"commit of map {commit.version} on map {self.map.version}"
        try:
            nxt = self.map.after(commit.change)
        except ConfigError as exc:
            return f"a committed change that does not fit map {self.map.version}: {exc}"
        if nxt.digest() != commit.map_digest:
            return f"the committed map {commit.version} differs from this shard's"
        old = self.map
        for source, target, state in commit.transfers:
            if source == self.shard:
                for key in [k for k in store.data if old.owner(k) == source and nxt.owner(k) == target]:
                    del store.data[key]
                    self.dropped += 1
            if target == self.shard:
                try:
                    items, seq, src, tgt = decode_state(state)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    return "a transfer whose state does not decode"
                if (seq, src, tgt) != (commit.seq, source, target):
                    return "a transfer whose state names another change"
                for key, value in items:
                    if nxt.owner(key) == self.shard:
                        store.data[key] = value
                        self.installed += 1
        self.map = nxt
        self.begin = self.next_map = None
        self.settled = commit.seq
        self.ready = {r: v for r, v in self.ready.items() if v[0] > commit.seq}
        held = self.held.pop(nxt.version + 1, None)
        self.held = {v: b for v, b in self.held.items() if v > nxt.version + 1}
        if held is not None:
            return self.apply(held, store)
        return None

    def drained(self, store: Any) -> None:
        """Take the hand-off state of each route leaving this shard whose
        keys no prepared transaction locks any more."""
        begin, nxt = self.begin, self.next_map
        if begin is None or nxt is None:
            return
        old = self.map
        for source, target in begin.routes:
            if source != self.shard or (source, target) in self.ready:
                continue
            locks: Mapping[str, bytes] = store.locks
            if any(old.owner(k) == source and nxt.owner(k) == target for k in locks):
                continue
            items = [(k, v) for k, v in store.data.items() if old.owner(k) == source and nxt.owner(k) == target]
            self.ready[(source, target)] = (begin.seq, begin.version, encode_state(items, begin.seq, source, target))


RESHARD_COMMAND_TYPES: tuple[type[WireMessage], ...] = (ReshardRequest, HandoffReport)
"""What the core orders for a change (``quorate.hrb.core.commands``)."""
RESHARD_DECISION_TYPES: tuple[type, ...] = (ReshardBegin, ReshardCommit, ReshardAbort)
"""What the core certifies and sends to every shard."""
