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
- BFT cores answer a proposal with ``Queued`` (the position is not known at a
  backup). The replica then waits for the command with that session
  ``(client, seq)`` to execute and answers; the client takes f + 1 matching
  answers from different replicas as the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from quorate.core.protocol import Accepted, ProtocolCore, Queued, Redirect, Refused
from quorate.core.ready import ENTRY_NORMAL, Entry, ReadState
from quorate.core.wire import WireMessage
from quorate.ids import NodeId
from quorate.state.kv import (
    NO_SESSION,
    Command,
    Get,
    KVStore,
    List,
    Result,
    decode_command,
    decode_op,
    encode_command,
    encode_result,
)

STATUS_OK = "ok"
STATUS_REDIRECT = "redirect"
STATUS_RETRY = "retry"
STATUS_ERROR = "error"
READ_MODES = ("log", "read_index")


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


class ReplicaService:
    """Connects clients to one protocol core and one ``KVStore``."""

    __slots__ = (
        "_by_session",
        "_pending_reads",
        "_proposed",
        "_queued_reads",
        "_read_seq",
        "_replies",
        "applied",
        "core",
        "kv",
        "on_result",
        "read_mode",
        "snapshot_every",
        "stamp_clock",
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
    ) -> None:
        if read_mode not in READ_MODES:
            raise ValueError(f"read_mode must be one of {READ_MODES}, got {read_mode!r}")
        self.core = core
        self.kv = kv
        self.read_mode = read_mode if hasattr(core, "read_index") else "log"
        self.snapshot_every = snapshot_every
        self.on_result = on_result
        self.stamp_clock = stamp_clock
        self.applied = 0
        self._proposed: dict[int, tuple[int, NodeId, ClientRequest]] = {}  # index -> (term, ...)
        self._by_session: dict[tuple[int, int], _Waiting] = {}
        self._pending_reads: dict[bytes, _Waiting] = {}
        self._queued_reads: list[tuple[int, _Waiting]] = []
        self._read_seq = 0
        self._replies: list[tuple[NodeId, ClientReply]] = []

    # -- client side ---------------------------------------------------------
    def on_client_request(self, sender: NodeId, req: ClientRequest, now: float) -> None:
        try:
            op = decode_op(req.op)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._reply(sender, req, STATUS_ERROR, error="malformed operation")
            return
        if self.read_mode == "read_index" and isinstance(op, Get | List):
            self._read_seq += 1
            context = self._read_seq.to_bytes(8, "big")
            outcome = self.core.read_index(context, now)  # type: ignore[attr-defined]
            if isinstance(outcome, Accepted):
                self._pending_reads[context] = (sender, req)
            else:
                self._refuse(sender, req, outcome)
            return
        stamp = self.stamp_clock() if self.stamp_clock is not None else now
        command = Command(req.client, req.seq, op, stamp)
        outcome = self.core.propose(encode_command(command), now)
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

    def _refuse(self, sender: NodeId, req: ClientRequest, outcome: Any) -> None:
        if isinstance(outcome, Redirect):
            self._reply(sender, req, STATUS_REDIRECT, leader=outcome.leader)
        else:
            self._reply(sender, req, STATUS_ERROR, error=str(getattr(outcome, "reason", outcome)))

    def _reply(
        self,
        to: NodeId,
        req: ClientRequest,
        status: str,
        result: bytes = b"",
        leader: int | None = None,
        error: str = "",
    ) -> None:
        self._replies.append((to, ClientReply(req.client, req.seq, status, result, leader, error)))

    def take_replies(self) -> list[tuple[NodeId, ClientReply]]:
        replies, self._replies = self._replies, []
        return replies

    def has_replies(self) -> bool:
        return bool(self._replies)

    # -- host side (called by the runtime's driver Host) -----------------------
    def apply(self, entry: Entry) -> None:
        self.applied = entry.index
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
        if self._queued_reads:
            self._serve_queued_reads()
        self._maybe_compact(entry.index)

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

    def _serve_read(self, waiting: _Waiting) -> None:
        sender, req = waiting
        result = self.kv.read(decode_op(req.op))
        self._reply(sender, req, STATUS_OK, encode_result(result))

    def restore(self, snapshot: Any) -> None:
        self.kv.restore(snapshot.data)
        self.applied = snapshot.index
        self.kv.applied_index = snapshot.index
        if self._queued_reads:
            self._serve_queued_reads()

    def abandon_pending(self, status: str = STATUS_RETRY) -> None:
        """Answer every waiting client (e.g. this node lost leadership)."""
        for _, sender, req in self._proposed.values():
            self._reply(sender, req, status, error="leadership lost")
        for sender, req in [*self._pending_reads.values(), *self._by_session.values()]:
            self._reply(sender, req, status, error="leadership lost")
        for _, (sender, req) in self._queued_reads:
            self._reply(sender, req, status, error="leadership lost")
        self._proposed.clear()
        self._pending_reads.clear()
        self._by_session.clear()
        self._queued_reads.clear()


BFT_COMMAND_TIME_S = 0.0
"""The log time of every BFT command: all replicas must propose identical
bytes for one request (so the core orders it once), and each replica's clock
differs. Log time therefore never advances in a BFT store (no TTL expiry)."""
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

    __slots__ = ("_honest", "_results", "max_results")

    busy_is_retry = False
    """Answer a flow-control refusal ("busy") with ``retry`` rather than an error."""

    def __init__(
        self, core: ProtocolCore, kv: KVStore, *, snapshot_every: int = 0, max_results: int | None = None
    ) -> None:
        super().__init__(core, kv, read_mode="log", snapshot_every=snapshot_every)
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
        result = self.kv.apply_command(command)
        if self.on_result is not None:
            self.on_result(entry, result)
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
