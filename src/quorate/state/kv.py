"""The replicated key-value state machine.

Theory of operation: every replica applies the same committed commands in the
same order, so ``apply`` must be deterministic — it reads no clock and no
randomness. Time enters only through the log: the proposer stamps each command
with ``time_s`` (its clock when it proposed), and the store keeps
``now_s = max(now_s, command.time_s)``; TTL expiry is judged against that
log time, so every replica expires the same keys at the same log position,
and log time never goes backwards, whatever the clock of a new leader says.

Time entries. A key's deadline (log time) passes only when a later stamp is
applied, so on an idle cluster nothing would expire. ``Tick`` is a log-only
command (clients cannot send it) that the replica service proposes when the
earliest deadline, ``next_deadline_s``, is due by its clock
(``quorate.state.service``): a time entry per due moment, none while no key
has a TTL. What a tick does depends on who may lie:

- *crash faults* (``replicas == 0``, Raft): the leader is trusted, as for
  every stamp, so a tick is a command like any other and moves ``now_s`` to
  its stamp;
- *Byzantine faults* (``replicas = n``, PBFT, HotStuff): stamps are ignored
  (every replica proposes the same bytes for a request, and one replica's
  clock cannot be trusted); a tick is one replica's signed clock reading, and
  log time moves only when rounds of 2f + 1 readings close
  (``quorate.state.replica_time``). A put with a TTL there is *pending* until
  the next round gives it a start time. The replica service checks each
  reading's signature before the store sees it.

``time_version`` changes whenever ``next_deadline_s`` or ``time_wanted``
(Byzantine: a round is wanted now) may have changed, so the service can
reschedule with one integer comparison per applied command.

Operations: put, get, delete, compare-and-set, list by prefix; each in a
namespace (a separate key space). ``Put`` may carry ``ttl_s``. Namespaces
beginning with ``@`` are the agent state machines' (``quorate.state.agents``:
tasks, locks, identities, signed votes), whose operations are more members
of ``Op``; the store hands them to its ``AgentState``, and their leases and
deadlines join the TTL deadlines in ``next_deadline_s``.

Revisions (``quorate.state.watch``). Every change — a put, a delete, a key
expiring, an agent state transition — takes the next revision of the
store's ``ChangeLog``; ``WatchPoll`` reads the changes from a revision on.

Extensions. ``Extension(machine, data)`` hands ``data`` to another
deterministic machine registered with the store under ``machine`` (the key
registry, private votes: ``quorate.core.machine``), with the log index and
log time; its answer is the operation's result. Such machines thus share
this log's order, client sessions and snapshots. A snapshot carries their
state only when one holds some (format version 4), so a store without
extension state writes the same bytes as before.

Exactly-once (Raft thesis §6.3): a command carries ``(client, seq)``. The store
keeps, per client session, the highest applied ``seq`` and its result; a
retried command with a seq already applied returns the saved result without
applying again. Sessions idle for longer than ``session_ttl_s`` of log time
are dropped deterministically (a client silent for that long starts afresh; a
retry older than that could apply twice, so the TTL is long). ``client == 0``
means no session (at-least-once; used for reads served outside the log).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from quorate.core.machine import MachineResult, ReplicatedMachine
from quorate.state.agents.machine import AgentState
from quorate.state.agents.ops import AGENT_OP_TYPES, AGENT_READ_TYPES, AgentOp, FencedPut
from quorate.state.agents.votes import KeyCheck, ed25519_check
from quorate.state.replica_time import TimeRounds
from quorate.state.watch import AGENT_NAMESPACE_PREFIX, Change, ChangeLog

NO_SESSION = 0
DEFAULT_SESSION_TTL_S = 3600.0
FORMAT_VERSION = 2
"""Snapshot format; version 2 added the time rounds of Byzantine groups as
trailing fields. A store without rounds (crash faults) still writes version
1, which earlier releases read (they ignore trailing fields)."""
FORMAT_VERSION_WITHOUT_ROUNDS = 1
FORMAT_VERSION_WITH_CHANGES = 3
"""Version 3 adds the revision, the change history and the agent state as
trailing fields; a store writes it once it has any of them (earlier
releases refuse it rather than lose them)."""
FORMAT_VERSION_WITH_MACHINES = 4
"""Version 4 adds the extension machines' states after version 3's fields;
written only when a machine holds state."""
READABLE_VERSIONS = (1, 2, 3, 4)
MAX_MACHINE_NAME_CHARS = 64


class Put(msgspec.Struct, tag="put", array_like=True, frozen=True):
    key: str
    value: str
    namespace: str = ""
    ttl_s: float | None = None


class Get(msgspec.Struct, tag="get", array_like=True, frozen=True):
    key: str
    namespace: str = ""


class Delete(msgspec.Struct, tag="del", array_like=True, frozen=True):
    key: str
    namespace: str = ""


class Cas(msgspec.Struct, tag="cas", array_like=True, frozen=True):
    """Set ``key`` to ``new`` iff its value is ``expected`` (``None``: absent)."""

    key: str
    expected: str | None
    new: str
    namespace: str = ""


class List(msgspec.Struct, tag="list", array_like=True, frozen=True):
    prefix: str
    namespace: str = ""
    limit: int = 1000


class Extension(msgspec.Struct, tag="ext", array_like=True, frozen=True):
    """A command for the extension machine registered as ``machine`` (see
    "Extensions" in the module docstring)."""

    machine: str
    data: bytes


Op = Put | Get | Delete | Cas | List | Extension | AgentOp
"""What a client may ask for."""

READ_OPS: tuple[type, ...] = (Get, List, *AGENT_READ_TYPES)
"""Operations that change nothing: served through ReadIndex where the core has it."""


class Tick(msgspec.Struct, tag="tick", array_like=True, frozen=True):
    """A time entry (log-only; see the module docstring): ``replica``'s clock
    read ``time_s``. ``round`` and ``signature`` matter in Byzantine groups."""

    replica: int
    time_s: float
    round: int = 0
    signature: bytes = b""


LogOp = Op | Tick
"""What the log may carry."""


class Command(msgspec.Struct, array_like=True, frozen=True):
    """One operation as it travels through the log."""

    client: int
    seq: int
    op: LogOp
    time_s: float = 0.0


class Result(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """The outcome of one operation. ``ok`` is False for a failed cas or an error."""

    ok: bool
    value: str | None = None
    items: list[tuple[str, str]] | None = None
    error: str | None = None


_command_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(Command)
_op_decoder = msgspec.msgpack.Decoder(Op)
_result_decoder = msgspec.msgpack.Decoder(Result)


def encode_command(command: Command) -> bytes:
    return _command_encoder.encode(command)


def decode_command(data: bytes) -> Command:
    """Decode a command; raises ``msgspec.DecodeError``/``ValidationError`` on bad bytes."""
    return _command_decoder.decode(data)


def encode_op(op: Op) -> bytes:
    return _command_encoder.encode(op)


def decode_op(data: bytes) -> Op:
    op: Op = _op_decoder.decode(data)
    return op


def encode_result(result: Result) -> bytes:
    return _command_encoder.encode(result)


def decode_result(data: bytes) -> Result:
    return _result_decoder.decode(data)


class _SnapshotWithoutRounds(msgspec.Struct, array_like=True):
    """Version 1, written by stores without time rounds (crash faults)."""

    version: int
    now_s: float
    data: dict[str, dict[str, str]]
    expiry: list[tuple[float, str, str]]
    sessions: dict[int, tuple[int, float, Result]]


class _Snapshot(_SnapshotWithoutRounds, array_like=True):
    """Version 2: the time rounds of a Byzantine group follow (absent: empty)."""

    rounds: int = 0
    readings: dict[int, float] = {}
    pending: list[tuple[str, str, float, int]] = []


class _SnapshotWithChanges(_Snapshot, array_like=True):
    """Version 3: then the revision, the change history and the agent state."""

    revision: int = 0
    changes: list[Change] = []
    agents: bytes = b""


class _SnapshotWithMachines(_SnapshotWithChanges, array_like=True):
    """Version 4: then the extension machines' states, by name."""

    machines: dict[str, bytes] = {}


@dataclass(slots=True)
class _Session:
    seq: int
    last_s: float
    result: Result


OK = Result(ok=True)
BAD_COMMAND = Result(ok=False, error="malformed command")
RESERVED_NAMESPACE = Result(
    ok=False, error=f"namespaces beginning with {AGENT_NAMESPACE_PREFIX!r} belong to the agent state machines"
)


class KVStore:
    """A deterministic key-value state machine with sessions and TTLs."""

    __slots__ = (
        "_data",
        "_deadlines",
        "_expiry",
        "_machines",
        "_oldest_session_s",
        "_sessions",
        "agents",
        "applied_index",
        "changes",
        "next_deadline_s",
        "now_s",
        "session_ttl_s",
        "time_rounds",
        "time_version",
    )

    def __init__(
        self,
        session_ttl_s: float = DEFAULT_SESSION_TTL_S,
        replicas: int = 0,
        machines: dict[str, ReplicatedMachine] | None = None,
        key_check: KeyCheck = ed25519_check,
    ) -> None:
        """``replicas``: 0 for a crash-fault group (stamps are log time), else
        the size of the Byzantine fault-tolerant group (time from rounds).
        ``machines``: extension machines by name (see the module docstring).
        ``key_check`` verifies agents' ballot signatures (Ed25519)."""
        self._machines: dict[str, ReplicatedMachine] = dict(machines or {})
        self._data: dict[str, dict[str, str]] = {}
        self._expiry: list[tuple[float, str, str]] = []  # heap of (deadline, ns, key)
        self._deadlines: dict[tuple[str, str], float] = {}
        self._sessions: dict[int, _Session] = {}
        self._oldest_session_s = float("-inf")
        """A lower bound of the oldest session's last use (sessions are ordered
        by last use, and the front only moves later): while it is not past
        the TTL, no session is, and the scan in ``_expire`` is skipped."""
        self.now_s = 0.0
        self.applied_index = 0
        self.session_ttl_s = session_ttl_s
        self.time_rounds: TimeRounds | None = TimeRounds(replicas) if replicas else None
        self.next_deadline_s: float | None = None
        """The earliest TTL, lease or proposal deadline in log time; None when there is none."""
        self.time_version = 0
        self.changes = ChangeLog()
        self.agents = AgentState(self.changes, self._fenced_write, key_check)

    # -- applying the log -------------------------------------------------
    def apply(self, index: int, data: bytes) -> Result:
        """Apply the command at log ``index``. Undecodable bytes give an error
        result (the log is replicated, so every replica gives the same one)."""
        self.applied_index = index
        try:
            command = decode_command(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return BAD_COMMAND
        return self.apply_command(command)

    def apply_command(self, command: Command) -> Result:
        time_s = command.time_s
        if time_s > self.now_s and self.time_rounds is None:
            self.now_s = time_s
            # Nothing to expire (the common case) is decided without a call
            # (``agents.next_deadline_s``, inlined: the agents' deadline heap).
            agent_deadlines = self.agents.env.deadlines
            if (
                self._expiry
                or self._oldest_session_s < time_s - self.session_ttl_s
                or (agent_deadlines and agent_deadlines[0][0] <= time_s)
            ):
                self._expire()
        client = command.client
        if client != NO_SESSION:
            sessions = self._sessions
            session = sessions.get(client)
            if session is not None and command.seq <= session.seq:
                # A retry of something already applied: answer, do not redo.
                if command.seq == session.seq:
                    return session.result
                return Result(ok=False, error="stale sequence number")
            result = self._execute(command.op)
            # Re-insert so the dict stays ordered by last use (oldest first):
            # expiry then only looks at the front.
            if session is None:
                sessions[client] = _Session(command.seq, self.now_s, result)
            else:
                # Every replica applies every command: updating the record in
                # place saves an allocation per command.
                del sessions[client]
                session.seq = command.seq
                session.last_s = self.now_s
                session.result = result
                sessions[client] = session
            return result
        return self._execute(command.op)

    @property
    def time_wanted(self) -> bool:
        """Byzantine groups: a round of readings is wanted now."""
        rounds = self.time_rounds
        return rounds is not None and rounds.wanted

    def _execute(self, op: LogOp) -> Result:
        # Put first: writes are what the log mostly carries (reads usually go
        # through ReadIndex and never reach the log).
        if isinstance(op, Put):
            if op.namespace[:1] == AGENT_NAMESPACE_PREFIX:
                return RESERVED_NAMESPACE
            self._set(op.namespace, op.key, op.value, op.ttl_s)
            return OK
        if isinstance(op, Get):
            value = self._data.get(op.namespace, {}).get(op.key)
            return Result(ok=True, value=value)
        if isinstance(op, Cas):
            if op.namespace[:1] == AGENT_NAMESPACE_PREFIX:
                return RESERVED_NAMESPACE
            current = self._data.get(op.namespace, {}).get(op.key)
            if current != op.expected:
                return Result(ok=False, value=current)
            self._set(op.namespace, op.key, op.new, None)
            return OK
        if isinstance(op, Delete):
            space = self._data.get(op.namespace)
            existed = space is not None and space.pop(op.key, None) is not None
            self._cancel_ttl(op.namespace, op.key)
            if existed:
                self.changes.record("delete", op.namespace, op.key)
            return Result(ok=existed)
        if isinstance(op, List):
            return Result(ok=True, items=self.list_prefix(op.prefix, op.namespace, op.limit))
        if isinstance(op, Extension):
            return self._extend(op)
        if isinstance(op, AGENT_OP_TYPES):
            if isinstance(op, FencedPut) and op.namespace[:1] == AGENT_NAMESPACE_PREFIX:
                return RESERVED_NAMESPACE
            outcome = self.agents.execute(op, self.now_s)
            self._settle_deadlines()
            return Result(ok=outcome.ok, value=outcome.value, error=outcome.error)
        if self.time_rounds is not None and isinstance(op, Tick):
            self._observe_reading(op)
        return OK

    def _extend(self, op: Extension) -> Result:
        machine = self._machines.get(op.machine)
        if machine is None:
            return Result(ok=False, error=f"no state machine named {op.machine[:MAX_MACHINE_NAME_CHARS]!r}")
        answer: MachineResult = machine.apply(self.applied_index, self.now_s, op.data)
        for kind, subject, document in answer.audit:
            self.agents.env.audit.record(self.now_s, kind, subject, document)
        return Result(ok=answer.ok, value=answer.value, error=answer.error)

    def machine(self, name: str) -> ReplicatedMachine | None:
        """The extension machine registered as ``name``."""
        return self._machines.get(name)

    def _observe_reading(self, tick: Tick) -> None:
        """A replica's (authenticated) reading; a round that closes moves log
        time and starts the TTLs that waited for it."""
        rounds = self.time_rounds
        assert rounds is not None
        before = rounds.wanted
        closed = rounds.observe(tick.replica, tick.round, tick.time_s)
        if closed is None:
            if rounds.wanted != before:
                self.time_version += 1
            return
        agreed, started = closed
        if agreed > self.now_s:
            self.now_s = agreed
        for namespace, key, ttl_s in started:
            self._start_deadline(namespace, key, self.now_s + ttl_s)
        self._expire()
        self.time_version += 1

    def _cancel_ttl(self, namespace: str, key: str) -> None:
        """An overwrite or delete: the key's deadline (or pending TTL) is void."""
        if self._deadlines and self._deadlines.pop((namespace, key), None) is not None:
            self._settle_deadlines()
        rounds = self.time_rounds
        if rounds is not None and rounds.pending and rounds.cancel(namespace, key):
            self.time_version += 1

    def _start_deadline(self, namespace: str, key: str, deadline: float) -> None:
        heapq.heappush(self._expiry, (deadline, namespace, key))
        # The live deadline per key; an overwrite replaces or cancels it,
        # which makes older heap entries for the key stale.
        self._deadlines[(namespace, key)] = deadline
        self._settle_deadlines()

    def _fenced_write(self, namespace: str, key: str, value: str) -> None:
        self._set(namespace, key, value, None)

    def _set(self, namespace: str, key: str, value: str, ttl_s: float | None) -> None:
        space = self._data.get(namespace)
        if space is None:
            space = self._data[namespace] = {}
        space[key] = value
        # changes.record("put", ...), inlined: every put of the log comes here.
        changes = self.changes
        revision = changes.revision = changes.revision + 1
        changes.events.append(Change(revision, "put", namespace, key, value))
        if ttl_s is not None and ttl_s > 0:
            rounds = self.time_rounds
            if rounds is None:
                self._start_deadline(namespace, key, self.now_s + ttl_s)
            else:
                # Log time may be old here: the next round starts the TTL.
                self._cancel_ttl(namespace, key)
                rounds.add_pending(namespace, key, ttl_s)
                self.time_version += 1
        elif self._deadlines or self.time_rounds is not None:
            self._cancel_ttl(namespace, key)

    def _settle_deadlines(self) -> None:
        """Drop stale entries from the top of the expiry heap and publish the
        earliest live deadline (``next_deadline_s``)."""
        heap = self._expiry
        deadlines = self._deadlines
        earliest = None
        while heap:
            deadline, namespace, key = heap[0]
            if deadlines.get((namespace, key)) == deadline:
                earliest = deadline
                break
            heapq.heappop(heap)
        agent_deadline = self.agents.next_deadline_s
        if agent_deadline is not None and (earliest is None or agent_deadline < earliest):
            earliest = agent_deadline
        if earliest != self.next_deadline_s:
            self.next_deadline_s = earliest
            self.time_version += 1

    def _expire(self) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= self.now_s:
            deadline, namespace, key = heapq.heappop(heap)
            if self._deadlines.get((namespace, key)) == deadline:
                del self._deadlines[(namespace, key)]
                if self._data.get(namespace, {}).pop(key, None) is not None:
                    self.changes.record("expire", namespace, key)
        agent_deadline = self.agents.next_deadline_s
        if agent_deadline is not None and agent_deadline <= self.now_s:
            self.agents.expire(self.now_s)
        self._settle_deadlines()
        cutoff = self.now_s - self.session_ttl_s
        sessions = self._sessions
        while sessions:
            oldest = next(iter(sessions))
            last_s = sessions[oldest].last_s
            if last_s >= cutoff:
                self._oldest_session_s = last_s
                return
            del sessions[oldest]
        # A session created from now on is stamped no earlier than now_s.
        self._oldest_session_s = self.now_s

    # -- reads outside the log (ReadIndex / lease) -------------------------
    def read(self, op: Op) -> Result:
        """Serve a read-only op (get, list, agent reads) against the applied state."""
        if isinstance(op, Get | List):
            return self._execute(op)
        if isinstance(op, AGENT_READ_TYPES):
            outcome = self.agents.read(op)
            return Result(ok=outcome.ok, value=outcome.value, error=outcome.error)
        return Result(ok=False, error="not a read-only operation")

    def get(self, key: str, namespace: str = "") -> str | None:
        return self._data.get(namespace, {}).get(key)

    def list_prefix(self, prefix: str, namespace: str = "", limit: int = 1000) -> list[tuple[str, str]]:
        space = self._data.get(namespace, {})
        keys = sorted(k for k in space if k.startswith(prefix))
        return [(k, space[k]) for k in keys[: max(limit, 0)]]

    def namespaces(self) -> list[str]:
        return sorted(ns for ns, space in self._data.items() if space)

    def __len__(self) -> int:
        return sum(len(s) for s in self._data.values())

    # -- splitting ------------------------------------------------------------
    def partition(self, moves: Callable[[str], bool]) -> bytes:
        """Take every key for which ``moves(key)`` is true (in every
        namespace) out of this store and return a snapshot of a store that
        holds exactly them, with their TTL deadlines, this store's log time
        and a copy of its client sessions (a range split: the right-hand
        range answers retries of commands the left-hand one applied).
        Deterministic, like ``apply``: every replica takes the same keys.
        Crash-fault stores only (a Byzantine store's time rounds do not split)."""
        if self.time_rounds is not None:
            raise ValueError("a store with time rounds (a Byzantine group) cannot be partitioned")
        taken: dict[str, dict[str, str]] = {}
        for namespace, space in self._data.items():
            keys = [key for key in space if moves(key)]
            if keys:
                taken[namespace] = {key: space.pop(key) for key in keys}
        expiry = sorted(
            (deadline, ns, key) for (ns, key), deadline in self._deadlines.items() if ns in taken and key in taken[ns]
        )
        if expiry:
            for _, ns, key in expiry:
                del self._deadlines[(ns, key)]
            self._settle_deadlines()
        sessions = {c: (s.seq, s.last_s, s.result) for c, s in self._sessions.items()}
        image = _SnapshotWithoutRounds(FORMAT_VERSION_WITHOUT_ROUNDS, self.now_s, taken, expiry, sessions)
        return _command_encoder.encode(image)

    # -- snapshots ----------------------------------------------------------
    def snapshot(self) -> bytes:
        data = self._data
        expiry = sorted((d, ns, k) for (ns, k), d in self._deadlines.items())
        sessions = {c: (s.seq, s.last_s, s.result) for c, s in self._sessions.items()}
        rounds = self.time_rounds
        machines = {}
        for name, machine in sorted(self._machines.items()):
            state = machine.snapshot()
            if state is not None:
                machines[name] = state
        changes = self.changes
        if machines or changes.revision or not self.agents.empty:
            revision, events = changes.state()
            fields = (
                self.now_s,
                data,
                expiry,
                sessions,
                0 if rounds is None else rounds.rounds,
                {} if rounds is None else dict(sorted(rounds.readings.items())),
                [] if rounds is None else [(ns, k, ttl, n) for (ns, k), (ttl, n) in rounds.pending.items()],
                revision,
                events,
                self.agents.snapshot(),
            )
            if machines:
                return _command_encoder.encode(_SnapshotWithMachines(FORMAT_VERSION_WITH_MACHINES, *fields, machines))
            return _command_encoder.encode(_SnapshotWithChanges(FORMAT_VERSION_WITH_CHANGES, *fields))
        if rounds is None:
            plain = _SnapshotWithoutRounds(FORMAT_VERSION_WITHOUT_ROUNDS, self.now_s, data, expiry, sessions)
            return _command_encoder.encode(plain)
        snap = _Snapshot(
            FORMAT_VERSION,
            self.now_s,
            data,
            expiry,
            sessions,
            rounds.rounds,
            dict(sorted(rounds.readings.items())),
            [(ns, k, ttl, needed) for (ns, k), (ttl, needed) in rounds.pending.items()],
        )
        return _command_encoder.encode(snap)

    def restore(self, data: bytes) -> None:
        snap = msgspec.msgpack.decode(data, type=_SnapshotWithMachines)
        if snap.version not in READABLE_VERSIONS:
            raise ValueError(f"unsupported KV snapshot version {snap.version}")
        self.now_s = snap.now_s
        self._data = snap.data
        self._expiry = list(snap.expiry)
        heapq.heapify(self._expiry)
        self._deadlines = {(ns, k): d for d, ns, k in snap.expiry}
        rounds = self.time_rounds
        if rounds is not None:
            rounds.rounds = snap.rounds
            rounds.readings = dict(snap.readings)
            rounds.pending = {(ns, k): (ttl, needed) for ns, k, ttl, needed in snap.pending}
        self.changes.restore(snap.revision, list(snap.changes))
        self.agents = AgentState(self.changes, self._fenced_write, self.agents.votes.check)
        if snap.agents:
            self.agents.restore(snap.agents)
        for name, machine in self._machines.items():
            machine.restore(snap.machines.get(name))
        self._settle_deadlines()
        self.time_version += 1
        by_last_use = sorted(snap.sessions.items(), key=lambda item: item[1][1])
        self._sessions = {c: _Session(s, t, r) for c, (s, t, r) in by_last_use}
        self._oldest_session_s = float("-inf")


__all__ = [
    "NO_SESSION",
    "READ_OPS",
    "Cas",
    "Command",
    "Delete",
    "Extension",
    "Get",
    "KVStore",
    "List",
    "LogOp",
    "Op",
    "Put",
    "Result",
    "Tick",
]
