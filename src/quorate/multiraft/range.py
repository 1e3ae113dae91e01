"""A range group's service: the key-value store, bounded to one range, that splits and moves.

Theory of operation. Each range of the key space is its own Raft group; on
every replica of it a ``RangeService`` (the replica service of
``quorate.state.service`` over a ``RangeStore``) serves the keys inside the
range's bounds, and the range leader carries out splits and replica moves
with the meta group (``quorate.multiraft.meta``) as an internal client.

**Bounds.** ``RangeStore`` is the key-value store (``quorate.state.kv``)
that refuses, deterministically, any operation on a key outside its
descriptor: before proposing, the service answers such a request
``wrong_range`` with the descriptors it knows; a command already in the log
when its key left the range (a split trigger came first) applies as the
error ``wrong range`` on every replica, so it certainly did not execute and
the client sends it, same session and number, to the range that holds the
key now. Reads are served only while the key is inside the bounds at the
moment they are answered (after a split the left-hand side no longer sees
writes to the right-hand keys).

**Range commands** travel in the range's own log beside client commands
(encoded as msgpack maps, which a client command, an array, never is):

- ``SplitIntent(generation, key)``: the leader will split at ``key``
  (recorded so that the next leader finishes what this one started);
- ``SplitTrigger(left, right)``: the split, as the meta group made it.
  Every replica, on applying it at the range's ``generation``, moves the
  right-hand keys (``KVStore.partition``) into the image of the new range,
  takes the left-hand descriptor, and, if its node is one of the right-hand
  replicas, creates the right-hand group locally (``spawn``) from a state
  that is the same on every replica (``bootstrap_state``). Writes applied
  before the trigger are in that image, with the client sessions, so a retry
  of one at the right-hand range is answered, not applied twice; writes
  after it are refused as wrong range. A trigger of another generation (a
  repeat) changes nothing;
- ``FinishMove(replicas)``: a replica move is done and recorded in meta.

**Split** (``split_at_ops`` > 0): when the range applied that many client
commands since it was created and holds two keys or more, the leader
proposes a ``SplitIntent`` at the median key; once it applies, the leader
asks meta for ``SplitRange(range, generation, key)`` and proposes the
``SplitTrigger`` meta answers. A leader that dies between the two steps
leaves the intent in the log; the next leader asks meta again and meta,
which records each split by ``(range, generation)``, gives the same answer.

**Move** (``RangeStore.move`` = (source, target), set in the image of a
range created by a split when ``rebalance`` says so): the leader adds the
target as a learner (its node creates the replica when the first message
of the group arrives, ``NodeHost.on_unknown_group``), promotes it once it
holds the leader's committed log, hands leadership over if the source is
itself, removes the source, tells the source's node (``Retire``), records
the new replicas in meta (``ChangeReplicas``) and proposes ``FinishMove``.
Each step is read off the Raft configuration, so the next leader goes on
where the last one stopped.

**Leaders spread**: the first replica of a range's descriptor is its
preferred leader (placement puts every node first in as many ranges as
any other); a leader that is not the preferred one hands leadership to it
(``transfer_leadership``) once the preferred replica holds its whole log.

The leader's duties run on the service's timer (``tick_at``, which the node
host merges with the core's deadline); an idle range arms no timer, so
quiescence of the Raft group is not disturbed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from quorate.core.protocol import ProtocolCore, Refused
from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.core.service_message import ServiceMessage
from quorate.ids import NodeId
from quorate.multiraft.descriptor import (
    BOOTSTRAP_INDEX,
    BOOTSTRAP_TERM,
    META_GROUP,
    RangeDescriptor,
    contains,
)
from quorate.multiraft.messages import WRONG_RANGE, MetaAnswer, MetaCall, Retire
from quorate.multiraft.table import (
    ChangeReplicas,
    MetaOp,
    SplitRange,
    decode_meta_result,
    encode_meta_op,
)
from quorate.multiraft.wrong_range import wrong_range_reply
from quorate.raft.binding import RaftMembership
from quorate.raft.messages import ConfChange, ConfChangeKind, EntryKind, HardState, Snapshot
from quorate.state.kv import NO_SESSION, Cas, Command, Delete, Get, KVStore, LogOp, Put, Result
from quorate.state.service import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_REDIRECT,
    STATUS_RETRY,
    ClientRequest,
    ReplicaService,
)

__all__ = [
    "FinishMove",
    "RangeImage",
    "RangeService",
    "RangeStore",
    "SplitIntent",
    "SplitTrigger",
    "bootstrap_state",
]

META_CALL_TIMEOUT_S = 1.0
"""A meta call without an answer this long goes to the next meta replica."""
MOVE_POLL_S = 0.2
"""How often a leader looks at a move in progress (a learner catching up,
a configuration change committing)."""
BALANCE_DELAY_S = 0.5
"""After winning an election, how long a leader that is not its range's
preferred leader waits before handing over (its followers first catch up)."""
BALANCE_TRIES = 6
"""Hand-over attempts per term (the preferred replica may be down)."""
RANGE_COMMAND_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
"""First bytes of a msgpack map: a range command; a client ``Command`` is an array."""

TRANSFER_REFUSAL = "leadership is being transferred"
"""How a Raft leader refuses proposals while it hands leadership over."""

_KEYED = (Put, Get, Delete, Cas)
_NOOP = int(EntryKind.NOOP)
_MEMBERSHIP = RaftMembership()


# ----------------------------------------------------------------- commands
class SplitIntent(msgspec.Struct, tag="split_intent", frozen=True):
    generation: int
    key: str


class SplitTrigger(msgspec.Struct, tag="split_trigger", frozen=True):
    left: RangeDescriptor
    right: RangeDescriptor
    move: tuple[int, int] | None = None
    """A move for the right-hand range to start with (``RangeStore.move``)."""


class FinishMove(msgspec.Struct, tag="finish_move", frozen=True):
    replicas: tuple[int, ...]


RangeCommand = SplitIntent | SplitTrigger | FinishMove
_command_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(RangeCommand)


def encode_range_command(command: RangeCommand) -> bytes:
    return _command_encoder.encode(command)


def is_range_command(data: bytes) -> bool:
    return bool(data) and data[0] in RANGE_COMMAND_MARKERS


# ----------------------------------------------------------------- the store
class RangeImage(msgspec.Struct, array_like=True):
    """A range's snapshot: its descriptor, what is in progress, its keys."""

    descriptor: RangeDescriptor | None
    ops: int
    intent: tuple[int, str] | None
    move: tuple[int, int] | None
    kv: bytes


class RangeStore(KVStore):
    """The key-value store of one range (see the module docstring)."""

    __slots__ = ("descriptor", "intent", "move", "ops")

    def __init__(self, descriptor: RangeDescriptor | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.descriptor = descriptor
        """None on a replica that joined and has not received the range yet."""
        self.ops = 0
        """Client commands applied since the range was created (by a split)."""
        self.intent: tuple[int, str] | None = None
        """(generation, key) of a split under way."""
        self.move: tuple[int, int] | None = None
        """(source, target) of a replica move under way."""

    def holds(self, key: str) -> bool:
        d = self.descriptor
        return d is not None and contains(d, key)

    def _execute(self, op: LogOp) -> Result:
        if isinstance(op, _KEYED) and not self.holds(op.key):
            return Result(ok=False, error=WRONG_RANGE)
        return super()._execute(op)

    def apply_command(self, command: Command) -> Result:
        result = super().apply_command(command)
        if command.client != NO_SESSION:
            self.ops += 1
        return result

    def split_key(self) -> str | None:
        """The median key held (every namespace), if the range holds two keys or more."""
        keys = sorted({key for ns in self.namespaces() for key, _ in self.list_prefix("", ns, limit=len(self))})
        if len(keys) < 2:
            return None
        return keys[len(keys) // 2]

    def split(self, left: RangeDescriptor, right: RangeDescriptor, move: tuple[int, int] | None) -> bytes:
        """Apply a split: keep ``left``'s keys, return the image of ``right``."""
        kv = self.partition(lambda key: contains(right, key))
        self.descriptor = left
        self.ops = 0
        self.intent = None
        return _image_encoder.encode(RangeImage(right, 0, None, move, kv))

    def snapshot(self) -> bytes:
        return _image_encoder.encode(RangeImage(self.descriptor, self.ops, self.intent, self.move, super().snapshot()))

    def restore(self, data: bytes) -> None:
        image = _image_decoder.decode(data)
        super().restore(image.kv)
        self.descriptor = image.descriptor
        self.ops = image.ops
        self.intent = image.intent
        self.move = image.move


_image_encoder = msgspec.msgpack.Encoder()
_image_decoder = msgspec.msgpack.Decoder(RangeImage)


def bootstrap_state(descriptor: RangeDescriptor, image: bytes) -> tuple[HardState, Snapshot]:
    """The Raft state every replica of a new range group starts from: a
    snapshot at ``BOOTSTRAP_INDEX`` holding ``image``, the replicas as voters."""
    snapshot = Snapshot(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, tuple(sorted(descriptor.replicas)), (), image)
    return HardState(BOOTSTRAP_TERM, None, BOOTSTRAP_INDEX), snapshot


def initial_image(descriptor: RangeDescriptor) -> bytes:
    """The image of an empty range (a cluster's first ranges)."""
    return RangeStore(descriptor).snapshot()


Spawn = Callable[[RangeDescriptor, HardState, Snapshot], None]
"""Create a range group on this node from its bootstrap state (the runtime
makes it durable and hosts it, unless it hosts it already or removed it)."""
Retired = Callable[[int], None]
"""This node's replica of the range was removed: stop hosting it, keep a tombstone."""
Rebalance = Callable[[RangeDescriptor], "tuple[int, int] | None"]
"""For a range created by a split: (source, target) of a replica to move, or
None. Must be a pure function of the descriptor (every replica calls it)."""


class _Call:
    __slots__ = ("deadline", "op", "seq", "target")

    def __init__(self, op: MetaOp, seq: int, target: int, deadline: float) -> None:
        self.op = op
        self.seq = seq
        self.target = target
        self.deadline = deadline


class RangeService(ReplicaService):
    """The replica service of one range group (see the module docstring)."""

    __slots__ = (
        "_awaiting_until",
        "_balance_at",
        "_balance_tries",
        "_call",
        "_duty_at",
        "_lead_term",
        "_meta_guess",
        "_next_call",
        "_retired_sent",
        "_time_at",
        "meta_replicas",
        "moves_done",
        "rebalance",
        "retire",
        "service_messages_dropped",
        "siblings",
        "spawn",
        "split_at_ops",
        "store",
    )

    def __init__(
        self,
        core: ProtocolCore,
        store: RangeStore,
        *,
        meta_replicas: Sequence[int],
        split_at_ops: int = 0,
        spawn: Spawn | None = None,
        retire: Retired | None = None,
        rebalance: Rebalance | None = None,
        **options: Any,
    ) -> None:
        super().__init__(core, store, **options)
        if split_at_ops < 0:
            raise ValueError(f"split_at_ops must be >= 0 (0: never split), got {split_at_ops}")
        if not meta_replicas:
            raise ValueError("a range service needs the meta group's replicas")
        self.store = store
        self.meta_replicas = tuple(meta_replicas)
        self.split_at_ops = split_at_ops
        self.spawn = spawn
        self.retire = retire
        self.rebalance = rebalance
        self.siblings: list[RangeDescriptor] = []
        """Right-hand ranges of this range's latest splits (for wrong-range answers)."""
        self.moves_done = 0
        self.service_messages_dropped = 0
        self._time_at: float | None = self.tick_at
        """When the base service's time entries want a tick."""
        self._duty_at: float | None = None
        """When the leader's duties want a tick (None: nothing to do)."""
        self._lead_term = -1
        self._call: _Call | None = None
        self._next_call = 0
        self._meta_guess = 0
        self._awaiting_until = -math.inf
        self._balance_at: float | None = None
        self._balance_tries = 0
        self._retired_sent: tuple[int, int] | None = None

    @property
    def descriptor(self) -> RangeDescriptor | None:
        return self.store.descriptor

    # -- clients -----------------------------------------------------------
    def handle_op(self, sender: NodeId, req: ClientRequest, op: Any, now: float) -> None:
        store = self.store
        if store.descriptor is None:
            self._reply(sender, req, STATUS_REDIRECT, leader=getattr(self.core, "leader_id", None))
            return
        if isinstance(op, _KEYED) and not store.holds(op.key):
            self._wrong_range(sender, req)
            return
        super().handle_op(sender, req, op, now)

    def _refuse(self, sender: NodeId, req: Any, outcome: Any) -> None:
        # A leader handing its range over (leaders spread, moves) refuses
        # proposals for a moment: the client's answer is to try again.
        if isinstance(outcome, Refused) and outcome.reason.startswith(TRANSFER_REFUSAL):
            self._reply(sender, req, STATUS_RETRY, error=outcome.reason)
            return
        super()._refuse(sender, req, outcome)

    def _wrong_range(self, sender: NodeId, req: ClientRequest) -> None:
        known = [d for d in (self.store.descriptor, *self.siblings[-2:]) if d is not None]
        self._replies.append((sender, wrong_range_reply(req, known)))

    # -- applying ------------------------------------------------------------
    def apply(self, entry: Entry) -> None:
        if entry.kind == ENTRY_NORMAL and is_range_command(entry.data):
            self._apply_range_command(entry)
            return
        super().apply(entry)
        core: Any = self.core
        if entry.kind == _NOOP:
            if entry.term == core.term and core.is_leader:
                self._became_leader(entry.term)
        elif (
            self.split_at_ops
            and self.store.ops >= self.split_at_ops
            and self.store.intent is None
            and self._lead_term == core.term
        ):
            self._want_duty()

    def _apply_range_command(self, entry: Entry) -> None:
        self.applied = entry.index
        self.applied_term = entry.term
        store = self.store
        store.applied_index = entry.index
        try:
            command = _command_decoder.decode(entry.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            command = None
        outcome = self._range_command(command)
        if self.on_result is not None:
            self.on_result(entry, outcome)
        waiting = self._proposed.pop(entry.index, None)
        if waiting is not None:
            self._reply(waiting[1], waiting[2], STATUS_RETRY, error="entry overwritten")
        if self._queued_reads:
            self._serve_queued_reads()
        self._maybe_compact(entry.index)
        if self._lead_term == getattr(self.core, "term", None):
            self._awaiting_until = -math.inf  # what the leader waited for has applied
            self._want_duty()

    def _range_command(self, command: RangeCommand | None) -> Result:
        """Apply one range command; the result says what it did (the same on every replica)."""
        store = self.store
        d = store.descriptor
        if command is None or d is None:
            return Result(ok=False, error="malformed range command")
        if isinstance(command, SplitIntent):
            if command.generation != d.generation or store.intent is not None:
                return Result(ok=False, error="stale split intent")
            store.intent = (command.generation, command.key)
            return Result(ok=True)
        if isinstance(command, SplitTrigger):
            left, right = command.left, command.right
            if (
                left.range_id != d.range_id
                or left.generation != d.generation + 1
                or left.start != d.start
                or left.end != right.start
                or right.end != d.end
            ):
                return Result(ok=False, error="stale split trigger")
            image = store.split(left, right, command.move)
            self.siblings.append(right)
            if self.spawn is not None and int(self.core.id) in right.replicas:
                hard_state, snapshot = bootstrap_state(right, image)
                self.spawn(right, hard_state, snapshot)
            return Result(ok=True, value=str(right.range_id))
        if store.move is None:
            return Result(ok=False, error="no move under way")
        store.descriptor = RangeDescriptor(d.range_id, d.start, d.end, command.replicas, d.generation)
        store.move = None
        self.moves_done += 1
        return Result(ok=True)

    def restore(self, snapshot: Any) -> None:
        super().restore(snapshot)
        if self._lead_term == getattr(self.core, "term", None):
            self._want_duty()

    # -- time: the base service's time entries and the leader's duties -------------
    def _reschedule(self) -> None:
        super()._reschedule()
        self._time_at = self.tick_at
        self._merge_timers()

    def _merge_timers(self) -> None:
        time_at, duty_at = self._time_at, self._duty_at
        if time_at is None:
            self.tick_at = duty_at
        elif duty_at is None:
            self.tick_at = time_at
        else:
            self.tick_at = min(time_at, duty_at)

    def _want_duty(self) -> None:
        self._duty_at = -math.inf
        self._merge_timers()

    def tick(self, now: float) -> None:
        time_at = self._time_at
        if time_at is not None and now >= time_at:
            self.tick_at = time_at
            super().tick(now)
            self._time_at = self.tick_at
        duty_at = self._duty_at
        if duty_at is not None and now >= duty_at:
            self._duty_at = self._duties(now)
        self._merge_timers()

    # -- the leader's duties ---------------------------------------------------
    def _became_leader(self, term: int) -> None:
        self._lead_term = term
        self._call = None
        self._awaiting_until = -math.inf
        self._balance_at = None
        self._balance_tries = 0
        self._retired_sent = None
        self._want_duty()

    def _duties(self, now: float) -> float | None:
        """Carry the leader's work a step further; when to look again (None: idle)."""
        core: Any = self.core
        store = self.store
        d = store.descriptor
        if not core.is_leader or core.term != self._lead_term or d is None:
            self._call = None
            return None
        call = self._call
        if call is not None:
            if now < call.deadline:
                return call.deadline
            self._meta_guess = (self.meta_replicas.index(call.target) + 1) % len(self.meta_replicas) if call.target in self.meta_replicas else 0
            self._send_call(call.op, now)
            return self._call.deadline if self._call is not None else None
        if now < self._awaiting_until:
            return self._awaiting_until
        if store.intent is not None:
            generation, key = store.intent
            self._send_call(SplitRange(d.range_id, generation, key), now)
            return now + META_CALL_TIMEOUT_S
        if store.move is not None:
            return self._move_step(store.move, d, now)
        if self.split_at_ops and store.ops >= self.split_at_ops:
            split_key = store.split_key()
            if split_key is not None and split_key != d.start:
                return self._propose(SplitIntent(d.generation, split_key), now)
        return self._balance(d, now)

    def _propose(self, command: RangeCommand, now: float) -> float:
        self.core.propose(encode_range_command(command), now)
        # Applying it wakes the duties again; if it is lost with a leader
        # change, the next look finds the state unchanged and repeats.
        self._awaiting_until = now + META_CALL_TIMEOUT_S
        return self._awaiting_until

    def _move_step(self, move: tuple[int, int], d: RangeDescriptor, now: float) -> float | None:
        source, target = move
        core: Any = self.core
        if _MEMBERSHIP.busy(core):
            return now + MOVE_POLL_S
        voters, learners = core.voters, core.learners
        target_id, source_id = NodeId(target), NodeId(source)
        if target_id not in voters and target_id not in learners:
            core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, target_id), now)
            return now + MOVE_POLL_S
        if target_id in learners:
            progress = core.progress(target_id)
            if progress is not None and progress.match >= core.commit_index:
                core.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE_LEARNER, target_id), now)
            return now + MOVE_POLL_S
        if source_id in voters or source_id in learners:
            if source_id == core.id:
                core.transfer_leadership(target_id, now)
            else:
                core.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_NODE, source_id), now)
            return now + MOVE_POLL_S
        replicas = tuple(target if node == source else node for node in d.replicas)
        if self._retired_sent != move:
            self._retired_sent = move
            self._replies.append((source_id, ServiceMessage(d.range_id, Retire(d.range_id, replicas))))  # type: ignore[arg-type]
        self._send_call(ChangeReplicas(d.range_id, d.replicas, replicas), now)
        return now + META_CALL_TIMEOUT_S

    def _balance(self, d: RangeDescriptor, now: float) -> float | None:
        core: Any = self.core
        preferred = NodeId(d.replicas[0])
        if preferred == core.id or preferred not in core.voters or self._balance_tries >= BALANCE_TRIES:
            return None
        if self._balance_at is None:
            self._balance_at = now + BALANCE_DELAY_S
        if now < self._balance_at:
            return self._balance_at
        self._balance_tries += 1
        progress = core.progress(preferred)
        if progress is not None and progress.match == core.last_index:
            core.transfer_leadership(preferred, now)
        self._balance_at = now + BALANCE_DELAY_S
        return self._balance_at

    # -- the meta group as an internal client ----------------------------------
    def _send_call(self, op: MetaOp, now: float) -> None:
        d = self.store.descriptor
        assert d is not None
        self._next_call += 1
        target = self.meta_replicas[self._meta_guess % len(self.meta_replicas)]
        self._call = _Call(op, self._next_call, target, now + META_CALL_TIMEOUT_S)
        request = ClientRequest(d.range_id, self._next_call, encode_meta_op(op))
        self._replies.append((NodeId(target), ServiceMessage(META_GROUP, MetaCall(d.range_id, request))))  # type: ignore[arg-type]

    def on_service_message(self, sender: NodeId, message: Any, now: float) -> None:
        """A ``MetaAnswer`` to this range's call, or a ``Retire``; anything else is dropped."""
        if type(message) is Retire:
            d = self.store.descriptor
            if (
                self.retire is not None
                and d is not None
                and message.range_id == d.range_id
                and int(self.core.id) not in message.replicas
            ):
                self.retire(d.range_id)
            return
        if type(message) is not MetaAnswer:
            self.service_messages_dropped += 1
            return
        reply = message.reply
        call = self._call
        if call is None or reply.seq != call.seq:
            return  # a late answer
        self._call = None
        self._want_duty()
        if reply.status == STATUS_REDIRECT:
            if reply.leader is not None and reply.leader in self.meta_replicas:
                self._meta_guess = self.meta_replicas.index(reply.leader)
                self._send_call(call.op, now)
            else:
                self._meta_guess += 1
            return
        if reply.status != STATUS_OK:
            self._meta_guess += 1 if reply.status == STATUS_ERROR else 0
            return
        try:
            result = decode_meta_result(reply.result)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if not self.core.is_leader:  # type: ignore[attr-defined]
            return
        op = call.op
        if isinstance(op, SplitRange):
            if result.ok and len(result.ranges) == 2:
                left, right = result.ranges
                move = self.rebalance(right) if self.rebalance is not None else None
                self._propose(SplitTrigger(left, right, move), now)
            # A refusal (the key left the range, which a split of this
            # generation cannot have done) leaves the intent; the next look retries.
        elif isinstance(op, ChangeReplicas) and result.ok:
            self._propose(FinishMove(op.replicas), now)
