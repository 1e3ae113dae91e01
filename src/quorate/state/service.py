"""The client-facing replica service: clients ↔ a protocol core ↔ the KV store.

Theory of operation: the service is sans-IO like the cores. A runtime hands it
client requests (``on_client_request``) and, through its driver ``Host``, the
committed entries (``apply``), ready reads (``read_ready``) and installed
snapshots (``restore``). It answers with ``ClientReply`` messages collected by
``take_replies``. It works with any ``ProtocolCore``: Raft, PBFT, HotStuff.

- Writes (and, with ``read_mode="log"``, reads) are wrapped in a ``Command``
  carrying the client's session ``(client, seq)`` and the proposer's clock
  (``time_s``: log time for TTLs) and proposed. The stamp is ``now`` unless a
  ``stamp_clock`` is given: real nodes pass wall-clock time, so log time stays
  comparable when leadership moves to another host (monotonic clocks of
  different hosts have unrelated origins); the simulator keeps ``now``. When the entry at the proposed
  index is applied *with the proposed term*, this replica answers the client;
  if another entry took that index (a new leader overwrote it), the client
  gets ``retry`` and resends — the session makes that exactly-once.
- Reads with ``read_mode="read_index"`` (or ``"lease"``, decided by the core)
  call ``core.read_index(context)``; the core later reports a ``ReadState``;
  the read is served once the store has applied up to its index.
- A node that cannot order commands answers ``redirect`` with its leader hint.
- *Time entries* (``quorate.state.kv``, "Time entries"). The store publishes
  its earliest TTL deadline (``kv.next_deadline_s``, log time); the service
  turns it into ``tick_at``, the time on the runtime's clock at which this
  replica's stamp clock reaches it (with a ``stamp_clock``, the runtime also
  passes its own ``local_clock`` to convert). The runtime wakes the service
  there (``tick(now)``), as it wakes the core at ``ready.wake_at``. If the
  deadline is due, the leader proposes a ``Tick`` stamped with its clock (a
  follower proposes nothing); the tick commits like any command and expires
  the key on every replica at the same log position. Until the store's time
  state changes (``kv.time_version``: the tick applied, the key was deleted)
  the service asks to be woken again ``time_entry_retry_s`` later, so a tick
  lost with a leader is proposed again by whoever leads then. With no TTL
  key, ``tick_at`` is ``None``: an idle cluster writes nothing. The bound: a
  key is gone on the leader one commit after its deadline by the leader's
  clock, plus timer lateness; after a leader change, up to
  ``time_entry_retry_s`` more; clock differences between the host that
  stamped the put and the one that leads at the deadline add to (or take
  from) it.
- BFT cores answer a proposal with ``Queued`` (the position is not known at a
  backup). The replica then waits for the command with that session
  ``(client, seq)`` to execute and answers; the client takes f + 1 matching
  answers from different replicas as the result.
- Backups (``quorate.state.backup``): a ``BackupRequest`` is taken like a
  ReadIndex read; once the read's index is applied the service encodes the
  store at its applied index and term, keeps the image and hands it out in
  chunks.
- BFT time entries (``quorate.state.replica_time``): every replica, not a
  leader, proposes its own signed clock reading for the next round when a
  round is wanted (a TTL put waits for one, or one is being collected) or the
  earliest deadline is due by its clock, unless the round already holds its
  reading; every replica checks the signature before the store counts it.
  Without a ``ReplicaClock`` a BFT store's time never moves and TTLs do not
  expire.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from quorate.core.protocol import Accepted, ProtocolCore, Queued, Redirect, Refused
from quorate.core.ready import ENTRY_NORMAL, Entry, ReadState
from quorate.core.wire import WireMessage
from quorate.ids import NodeId
from quorate.state.backup import BACKUP_CHUNK_BYTES, MAX_HELD_IMAGES, BackupChunk, BackupRequest
from quorate.state.kv import (
    NO_SESSION,
    READ_OPS,
    Command,
    KVStore,
    Result,
    Tick,
    decode_command,
    decode_op,
    encode_command,
    encode_result,
)
from quorate.state.replica_time import ReplicaClock

STATUS_OK = "ok"
STATUS_REDIRECT = "redirect"
STATUS_RETRY = "retry"
STATUS_ERROR = "error"
READ_MODES = ("log", "read_index")
TIME_ENTRY_RETRY_S = 1.0
"""How long a replica waits for its time entry to apply before proposing
another (the first may have been lost with a leader)."""


class ClientRequest(WireMessage, tag="client.Request", frozen=True):
    """A client operation: ``op`` is ``quorate.state.kv.encode_op(...)``."""

    client: int
    seq: int
    op: bytes


class ClientReply(WireMessage, tag="client.Reply", frozen=True):
    """``status`` is ok | redirect | retry | error; ``result`` an encoded
    ``kv.Result`` when ok; ``leader`` a hint when redirecting."""

    client: int
    seq: int
    status: str
    result: bytes = b""
    leader: int | None = None
    error: str = ""


class ClientAttach(WireMessage, tag="client.Attach", frozen=True):
    """Answer these client sessions on this connection. A BFT client sends
    its request to the primary only, yet every replica must answer it: the
    sessions a connection carries tell a backup where to send replies for
    commands it never received from the client itself."""

    clients: tuple[int, ...]


CLIENT_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (ClientRequest, ClientReply, ClientAttach)

_Waiting = tuple[NodeId, ClientRequest]
_WaitingRead = tuple[NodeId, ClientRequest | BackupRequest]


@dataclass(frozen=True, slots=True)
class BackupImage:
    """The store encoded at ``index`` (of ``term``), for a backup."""

    index: int
    term: int
    data: bytes
    sha256: bytes


class ReplicaService:
    """Connects clients to one protocol core and one ``KVStore``."""

    __slots__ = (
        "_backup_images",
        "_by_session",
        "_next_image",
        "_pending_reads",
        "_proposed",
        "_queued_reads",
        "_read_seq",
        "_replies",
        "_time_seen",
        "applied",
        "applied_term",
        "core",
        "kv",
        "local_clock",
        "on_result",
        "read_mode",
        "snapshot_every",
        "stamp_clock",
        "tick_at",
        "time_entries",
        "time_entry_retry_s",
    )

    def __init__(
        self,
        core: ProtocolCore,
        kv: KVStore,
        *,
        read_mode: str = "read_index",
        snapshot_every: int = 0,
        on_result: Callable[[Entry, Result], None] | None = None,
        stamp_clock: Callable[[], float] | None = None,
        local_clock: Callable[[], float] | None = None,
        time_entry_retry_s: float = TIME_ENTRY_RETRY_S,
    ) -> None:
        if read_mode not in READ_MODES:
            raise ValueError(f"read_mode must be one of {READ_MODES}, got {read_mode!r}")
        if (stamp_clock is None) != (local_clock is None):
            raise ValueError("give stamp_clock and local_clock together (or neither: stamps are `now`)")
        if not time_entry_retry_s > 0:
            raise ValueError(f"time_entry_retry_s must be > 0 seconds, got {time_entry_retry_s}")
        self.core = core
        self.kv = kv
        self.read_mode = read_mode if hasattr(core, "read_index") else "log"
        self.snapshot_every = snapshot_every
        self.on_result = on_result
        self.stamp_clock = stamp_clock
        self.local_clock = local_clock
        self.time_entry_retry_s = time_entry_retry_s
        self.tick_at: float | None = None
        """When the runtime should call ``tick`` (its own clock); None: never."""
        self._time_seen = kv.time_version
        """The store's ``time_version`` that ``tick_at`` was computed for."""
        self.time_entries = 0
        """Time entries this replica proposed (for status and tests)."""
        self.applied = 0
        self._proposed: dict[int, tuple[int, NodeId, ClientRequest]] = {}  # index -> (term, ...)
        self._by_session: dict[tuple[int, int], _Waiting] = {}
        self._pending_reads: dict[bytes, _WaitingRead] = {}
        self._queued_reads: list[tuple[int, _WaitingRead]] = []
        self._read_seq = 0
        self._replies: list[tuple[NodeId, ClientReply | BackupChunk]] = []
        self.applied_term = 0
        self._backup_images: dict[int, BackupImage] = {}
        self._next_image = 1

    # -- client side ---------------------------------------------------------
    def on_client_request(self, sender: NodeId, req: ClientRequest, now: float) -> None:
        try:
            op = self.decode_op(req.op)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._reply(sender, req, STATUS_ERROR, error="malformed operation")
            return
        self.handle_op(sender, req, op, now)

    # The state machine's operations: a service for another state machine
    # (the range table of multi-Raft) overrides these three.
    def decode_op(self, data: bytes) -> Any:
        """A client's operation from its bytes (``msgspec`` errors when malformed)."""
        return decode_op(data)

    def is_read(self, op: Any) -> bool:
        """True for an operation served by ReadIndex rather than the log."""
        return isinstance(op, READ_OPS)

    def encode_command(self, client: int, seq: int, op: Any, time_s: float) -> bytes:
        """The log entry of ``op`` in session ``(client, seq)``, stamped ``time_s``."""
        return encode_command(Command(client, seq, op, time_s))

    def handle_op(self, sender: NodeId, req: ClientRequest, op: Any, now: float) -> None:
        """Order or serve a decoded client operation."""
        if self.read_mode == "read_index" and self.is_read(op):
            self._read_seq += 1
            context = self._read_seq.to_bytes(8, "big")
            outcome = self.core.read_index(context, now)  # type: ignore[attr-defined]
            if isinstance(outcome, Accepted):
                self._pending_reads[context] = (sender, req)
            else:
                self._refuse(sender, req, outcome)
            return
        stamp = self.stamp_clock() if self.stamp_clock is not None else now
        outcome = self.core.propose(self.encode_command(req.client, req.seq, op, stamp), now)
        if isinstance(outcome, Accepted):
            previous = self._proposed.get(outcome.index)
            if previous is not None:
                self._reply(previous[1], previous[2], STATUS_RETRY, error="entry overwritten")
            self._proposed[outcome.index] = (outcome.term, sender, req)
        elif isinstance(outcome, Queued):
            self._by_session[(req.client, req.seq)] = (sender, req)
        else:
            self._refuse(sender, req, outcome)

    def attach(self, connection: NodeId, clients: tuple[int, ...]) -> None:
        """``ClientAttach``: where to answer ``clients``. Only BFT replicas,
        which answer commands they did not receive, use it."""

    def request_backup(self, sender: NodeId, req: BackupRequest, now: float) -> None:
        """A backup: a new linearizable image (``req.image == 0``) or the
        next chunk of one this replica holds (see ``quorate.state.backup``)."""
        if req.image:
            image = self._backup_images.get(req.image)
            if image is None:
                self._reply(sender, req, STATUS_ERROR, error="this node no longer holds that snapshot; save again")
            elif not 0 <= req.offset <= len(image.data):
                self._reply(sender, req, STATUS_ERROR, error=f"offset {req.offset} is outside the snapshot")
            else:
                self._send_chunk(sender, req, req.image, image)
            return
        if self.read_mode != "read_index":
            self._reply(sender, req, STATUS_ERROR, error="this protocol cannot take a linearizable snapshot")
            return
        self._read_seq += 1
        context = self._read_seq.to_bytes(8, "big")
        outcome = self.core.read_index(context, now)  # type: ignore[attr-defined]
        if isinstance(outcome, Accepted):
            self._pending_reads[context] = (sender, req)
        else:
            self._refuse(sender, req, outcome)

    def _take_backup(self, sender: NodeId, req: BackupRequest) -> None:
        data = self.kv.snapshot()
        image = BackupImage(self.applied, self.applied_term, data, hashlib.sha256(data).digest())
        number = self._next_image
        self._next_image += 1
        self._backup_images[number] = image
        while len(self._backup_images) > MAX_HELD_IMAGES:
            del self._backup_images[next(iter(self._backup_images))]
        self._send_chunk(sender, req, number, image)

    def _send_chunk(self, to: NodeId, req: BackupRequest, number: int, image: BackupImage) -> None:
        offset = req.offset
        chunk = BackupChunk(
            req.seq,
            STATUS_OK,
            image=number,
            index=image.index,
            term=image.term,
            total_bytes=len(image.data),
            sha256=image.sha256,
            offset=offset,
            data=image.data[offset : offset + BACKUP_CHUNK_BYTES],
        )
        self._replies.append((to, chunk))

    def _refuse(self, sender: NodeId, req: ClientRequest | BackupRequest, outcome: Any) -> None:
        if isinstance(outcome, Redirect):
            self._reply(sender, req, STATUS_REDIRECT, leader=outcome.leader)
        else:
            self._reply(sender, req, STATUS_ERROR, error=str(getattr(outcome, "reason", outcome)))

    def _reply(
        self,
        to: NodeId,
        req: ClientRequest | BackupRequest,
        status: str,
        result: bytes = b"",
        leader: int | None = None,
        error: str = "",
    ) -> None:
        if isinstance(req, BackupRequest):
            self._replies.append((to, BackupChunk(req.seq, status, leader, error)))
        else:
            self._replies.append((to, ClientReply(req.client, req.seq, status, result, leader, error)))

    def take_replies(self) -> list[tuple[NodeId, ClientReply | BackupChunk]]:
        replies, self._replies = self._replies, []
        return replies

    def has_replies(self) -> bool:
        return bool(self._replies)

    # -- host side (called by the runtime's driver Host) -----------------------
    def apply_all(self, entries: list[Entry]) -> None:
        """Apply committed ``entries`` in order (one call for a turn's batch)."""
        apply = self.apply
        for entry in entries:
            apply(entry)

    def apply(self, entry: Entry) -> None:
        self.applied = entry.index
        self.applied_term = entry.term
        if entry.kind != ENTRY_NORMAL:
            self.kv.applied_index = entry.index
        else:
            result = self.kv.apply(entry.index, entry.data)
            if self.on_result is not None:
                self.on_result(entry, result)
            if self._by_session:
                self._answer_session(entry.data, result)
            waiting = self._proposed.pop(entry.index, None)
            if waiting is not None:
                term, sender, req = waiting
                if term == entry.term:
                    self._reply(sender, req, STATUS_OK, encode_result(result))
                else:
                    self._reply(sender, req, STATUS_RETRY, error="entry overwritten")
        if self.kv.time_version != self._time_seen:
            self._reschedule()
        if self._queued_reads:
            self._serve_queued_reads()
        if self.snapshot_every:
            self._maybe_compact(entry.index)

    # -- time entries (see the module docstring) ---------------------------------
    def _stamp(self, now: float) -> float:
        """This replica's clock in log-time units (what it stamps commands with)."""
        return self.stamp_clock() if self.stamp_clock is not None else now

    def _reschedule(self) -> None:
        """The store's time state changed: wake when time is wanted (at once)
        or when this replica's clock reaches the earliest deadline."""
        kv = self.kv
        self._time_seen = kv.time_version
        deadline = kv.next_deadline_s
        if kv.time_wanted:
            self.tick_at = float("-inf")
        elif deadline is None:
            self.tick_at = None
        elif self.stamp_clock is None or self.local_clock is None:
            self.tick_at = deadline
        else:
            self.tick_at = self.local_clock() + (deadline - self.stamp_clock())

    def tick(self, now: float) -> None:
        """The runtime's timer fired at ``now`` (its clock): if time is wanted
        or the earliest deadline is due by this replica's clock, propose a
        time entry."""
        tick_at = self.tick_at
        if tick_at is None or now < tick_at:
            return
        kv = self.kv
        self._time_seen = kv.time_version
        clock = self._stamp(now)
        if not kv.time_wanted:
            deadline = kv.next_deadline_s
            if deadline is None:
                self.tick_at = None
                return
            if clock < deadline:  # the stamp clock was set back since tick_at was computed
                self.tick_at = now + (deadline - clock)
                return
        if self._propose_time(clock, now):
            self.time_entries += 1
        self.tick_at = now + self.time_entry_retry_s

    def _propose_time(self, clock: float, now: float) -> bool:
        """Propose a time entry reading ``clock``; True if one was proposed.
        Crash faults: only the leader does (its stamps are trusted)."""
        if getattr(self.core, "is_leader", True) is False:
            return False
        tick = Tick(int(self.core.id), clock)
        outcome = self.core.propose(encode_command(Command(NO_SESSION, 0, tick, clock)), now)
        return isinstance(outcome, Accepted | Queued)

    def _maybe_compact(self, index: int) -> None:
        if self.snapshot_every and index % self.snapshot_every == 0:
            compact = getattr(self.core, "compact", None)
            if compact is not None:
                compact(index, self.kv.snapshot())

    def _answer_session(self, data: bytes, result: Result) -> None:
        try:
            command = decode_command(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        waiting = self._by_session.pop((command.client, command.seq), None)
        if waiting is not None:
            self._reply(waiting[0], waiting[1], STATUS_OK, encode_result(result))

    def read_ready(self, read: ReadState) -> None:
        waiting = self._pending_reads.pop(read.context, None)
        if waiting is None:
            return
        if self.applied >= read.index:
            self._serve_read(waiting)
        else:
            self._queued_reads.append((read.index, waiting))

    def _serve_queued_reads(self) -> None:
        still = []
        for index, waiting in self._queued_reads:
            if self.applied >= index:
                self._serve_read(waiting)
            else:
                still.append((index, waiting))
        self._queued_reads = still

    def _serve_read(self, waiting: _WaitingRead) -> None:
        sender, req = waiting
        if isinstance(req, BackupRequest):
            self._take_backup(sender, req)
            return
        result = self.kv.read(self.decode_op(req.op))
        self._reply(sender, req, STATUS_OK, encode_result(result))

    def restore(self, snapshot: Any) -> None:
        self.kv.restore(snapshot.data)
        self.applied = snapshot.index
        self.applied_term = int(getattr(snapshot, "term", 0))
        self.kv.applied_index = snapshot.index
        self._reschedule()
        if self._queued_reads:
            self._serve_queued_reads()

    def abandon_pending(self, status: str = STATUS_RETRY) -> None:
        """Answer every waiting client (e.g. this node lost leadership)."""
        waiting: list[_WaitingRead] = [(sender, req) for _, sender, req in self._proposed.values()]
        waiting += [*self._pending_reads.values(), *self._by_session.values()]
        waiting += [w for _, w in self._queued_reads]
        for sender, req in waiting:
            self._reply(sender, req, status, error="leadership lost")
        self._proposed.clear()
        self._pending_reads.clear()
        self._by_session.clear()
        self._queued_reads.clear()


BFT_COMMAND_TIME_S = 0.0
"""The stamp of every BFT command: all replicas must propose identical bytes
for one request (so the core orders it once), and each replica's clock
differs. A BFT store ignores stamps; its time comes from signed time entries
(``ReplicaClock``)."""
_STILL_PENDING = ("already pending", "already waiting")
_ALREADY_EXECUTED = ("already executed", "committed already")
_BUSY = "busy"


class BftService(ReplicaService):
    """What a replica service does in front of a BFT core (PBFT, HotStuff),
    in either runtime; subclasses say where an answer goes.

    - Commands carry ``BFT_COMMAND_TIME_S``, so every replica proposes the
      same bytes for one request; reads are ordered like writes (no ReadIndex).
    - A request still pending (proposed here, or learnt from a peer first)
      is answered when executed; one already executed is answered from the
      session's remembered result (the latest per client, at most
      ``max_results`` sessions, oldest forgotten; ``None``: no bound), or
      ``retry`` when it is no longer held.
    - Every executed command is answered where ``_answer_to`` says, with the
      primary clients should send to (``_primary_hint``).
    """

    __slots__ = ("_honest", "_results", "clock", "max_results", "rejected_ticks")

    busy_is_retry = False
    """Answer a flow-control refusal ("busy") with ``retry`` rather than an error."""

    def __init__(
        self,
        core: ProtocolCore,
        kv: KVStore,
        *,
        snapshot_every: int = 0,
        max_results: int | None = None,
        clock: ReplicaClock | None = None,
        stamp_clock: Callable[[], float] | None = None,
        local_clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            core, kv, read_mode="log", snapshot_every=snapshot_every, stamp_clock=stamp_clock, local_clock=local_clock
        )
        if kv.time_rounds is None:
            raise ValueError("a BFT replica's store needs its group size: KVStore(replicas=n)")
        self.clock = clock
        """Signs this replica's readings and checks others'; None: time stays put."""
        self.rejected_ticks = 0
        """Time entries whose signature did not verify (a lying replica)."""
        self.max_results = max_results
        self._results: dict[int, tuple[int, bytes]] = {}
        """client -> (seq, encoded result) of its latest executed command, oldest first."""
        self._honest: Any = getattr(core, "inner", core)
        """A Byzantine wrapper's honest core: it knows the primary."""

    def _primary_hint(self) -> int | None:
        """The primary clients should send to (PBFT); None for rotating leaders."""
        primary = getattr(self._honest, "primary", None)
        return None if primary is None else int(primary)

    def _wait(self, sender: NodeId, req: ClientRequest) -> None:
        """``req`` will be answered when executed; remember who asked."""
        self._by_session[(req.client, req.seq)] = (sender, req)

    def _answer_to(self, client: int, waiting: _Waiting | None) -> NodeId | None:
        """Where to send the result of ``client``'s command (``waiting``: who
        asked this replica directly, if anyone); None: nobody to answer."""
        return waiting[0] if waiting is not None else None

    def _propose_time(self, clock: float, now: float) -> bool:
        """Every replica proposes its own signed reading for the next round,
        unless that round already holds one."""
        keys, rounds = self.clock, self.kv.time_rounds
        if keys is None or rounds is None or keys.replica in rounds.readings:
            return False
        round = rounds.rounds + 1
        tick = Tick(keys.replica, clock, round, keys.sign(round, clock))
        outcome = self.core.propose(encode_command(Command(NO_SESSION, 0, tick, BFT_COMMAND_TIME_S)), now)
        return isinstance(outcome, Accepted | Queued)

    def on_client_request(self, sender: NodeId, req: ClientRequest, now: float) -> None:
        try:
            op = decode_op(req.op)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._reply(sender, req, STATUS_ERROR, error="malformed operation")
            return
        command = Command(req.client, req.seq, op, BFT_COMMAND_TIME_S)
        outcome = self.core.propose(encode_command(command), now)
        if isinstance(outcome, Queued):
            self._wait(sender, req)
            return
        if isinstance(outcome, Refused):
            reason = outcome.reason
            if any(words in reason for words in _STILL_PENDING):
                self._wait(sender, req)
                return
            if any(words in reason for words in _ALREADY_EXECUTED):
                remembered = self._results.get(req.client)
                if remembered is not None and remembered[0] == req.seq:
                    self._reply(sender, req, STATUS_OK, remembered[1], leader=self._primary_hint())
                else:
                    self._reply(sender, req, STATUS_RETRY, error="executed; result no longer held")
                return
            if self.busy_is_retry and reason.startswith(_BUSY):
                self._reply(sender, req, STATUS_RETRY, error=reason)
                return
        self._refuse(sender, req, outcome)

    def apply(self, entry: Entry) -> None:
        """Execute one command and answer its session: one decode, one
        result encoding, shared by the store, the retry memory and the reply."""
        if entry.kind != ENTRY_NORMAL:
            super().apply(entry)
            return
        try:
            command = decode_command(entry.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            super().apply(entry)  # the store's error result; nobody to answer
            return
        self.applied = entry.index
        self.kv.applied_index = entry.index
        if type(command.op) is Tick:
            self._apply_tick(command, command.op)
            self._maybe_compact(entry.index)
            return
        result = self.kv.apply_command(command)
        if self.on_result is not None:
            self.on_result(entry, result)
        if self.kv.time_version != self._time_seen:
            self._reschedule()
        client = command.client
        if client != NO_SESSION:
            encoded = encode_result(result)
            results = self._results
            results.pop(client, None)  # re-insert: the dict stays ordered by recency
            results[client] = (command.seq, encoded)
            if self.max_results is not None and len(results) > self.max_results:
                del results[next(iter(results))]
            to = self._answer_to(client, self._by_session.pop((client, command.seq), None))
            if to is not None:
                self._replies.append(
                    (to, ClientReply(client, command.seq, STATUS_OK, encoded, self._primary_hint()))
                )
        self._maybe_compact(entry.index)

    def _apply_tick(self, command: Command, tick: Tick) -> None:
        """Count a replica's clock reading only if that replica signed it
        (every honest replica decides the same: same keys, same bytes)."""
        if self.clock is None or not self.clock.verify(tick.replica, tick.round, tick.time_s, tick.signature):
            self.rejected_ticks += 1
            return
        self.kv.apply_command(command)
        if self.kv.time_version != self._time_seen:
            self._reschedule()
