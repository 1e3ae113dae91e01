"""Simulated clients and the history of what they saw.

Theory of operation. Clients are network endpoints like replicas (their own
ids, placed in regions, with their own links), so client traffic pays latency,
bandwidth and loss too. They talk to replicas through a ``ClientCodec``, which
turns an ``Operation`` into the protocol's request message and a reply message
back into a ``ReplyView`` (the codec for a protocol lives in
``runtime.sim.protocols``).

- **Closed loop**: each client has one operation outstanding; when its reply
  (or its timeout) comes, the next one is issued at once.
- **Open loop**: operations arrive as a Poisson process at ``rate_ops`` per
  second in aggregate, whatever the replies do, spread over the client
  endpoints round robin.

Operations mix writes (put), reads (get) and compare-and-set over ``keys``
keys. Every write carries a value no other operation writes (the operation's
number), so a checker can tell writes apart.

Leader discovery (``reply_quorum`` 1, crash-fault protocols): a ``redirect``
reply re-sends the same request to the hinted leader (or, with no hint, to
another replica after ``retry_delay_s``); an operation without a final reply
after ``op_timeout_s`` is recorded as ``info`` (outcome unknown) and the next
request goes to another replica.

Byzantine replicas (BFT protocols, PBFT §4.1), with ``reply_quorum`` q > 1
(f + 1, so at least one honest replica is among any q):

- *Believe q.* A client takes a result only when q distinct replicas sent
  the same one; a lying replica alone can neither complete an operation
  nor change its result. Refusals (``redirect``) count for nothing: any
  replica may refuse what another one ordered.
- *Ask the primary, then everyone.* Every replica answers every command it
  executes, so a request needs to reach only the primary (the codec is
  given the sending endpoint and writes it into the session id, which is
  how a replica that learnt the command from its primary knows where the
  client is: ``runtime.sim.bft``). Replies name the
  replica's primary (``ReplyView.leader``); the endpoint keeps each
  replica's latest word (late answers included), and when an operation is
  decided and q replicas' latest words name the same replica, the client
  endpoint sends its next requests there, else to every replica (a fresh
  endpoint, HotStuff whose leader rotates and whose replies name none,
  replicas that disagree). A request with no result after
  ``resend_timeout_s`` — a faulty, crashed or deposed primary — is sent to
  every replica, again every ``resend_timeout_s``, under the same
  ``(client, seq)`` (backups forward it to the primary and start their
  view-change timers); ``op_timeout_s`` still bounds the operation as a
  whole. ``resends`` counts these broadcasts.
- The hint belongs to the endpoint, like the real client's channel: every
  process (session) on it follows it. It is recomputed only when an
  operation is decided, never on a timeout.

History (Jepsen's format, a list of plain dicts; the checker lives in
``quorate.check``, which the simulator does not import)::

    {"process": 3, "type": "invoke", "f": "write", "key": "k1", "value": 17, "time": 0.41}
    {"process": 3, "type": "ok",     "f": "write", "key": "k1", "value": 17, "time": 0.52}

``type`` is invoke / ok / fail / info; a cas value is ``[expected, new]``; a
read's ok carries the value read (``None`` = absent). A process never has two
operations outstanding: after an ``info`` the client continues as a new process
(the old one may still have an effect at any later time). Each process is also
its own exactly-once session (``client`` id) with the replicas.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from quorate.errors import ConfigError

FUNCTIONS = ("write", "read", "cas")


@dataclass(frozen=True, slots=True)
class Operation:
    """What a client asks: ``f`` in write/read/cas; cas ``value`` is ``(expected, new)``."""

    f: str
    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class ReplyView:
    """A reply as the workload needs it.

    ``status``: ``ok`` (done; ``value`` is what a read saw), ``fail`` (certainly
    not done, e.g. a cas whose expected value did not match), ``redirect`` (ask
    ``leader``), ``unknown`` (may or may not take effect)."""

    client: int
    seq: int
    status: str
    value: Any = None
    leader: int | None = None


class ClientCodec(Protocol):
    """Translates between workload operations and a protocol's client messages."""

    def request(self, client: int, seq: int, op: Operation, endpoint: int) -> Any:
        """The message asking for ``op`` in session ``client``, number
        ``seq``, sent from the client endpoint with network id ``endpoint``."""
        ...

    def reply(self, message: Any) -> ReplyView | None:
        """Interpret a message a replica sent to a client (``None``: not a reply)."""
        ...


class Router(Protocol):
    """Routes the requests of a partitioned key space (``Workload.router``)."""

    def send(self, endpoint: int, key: str, request: Any, now: float) -> None:
        """Send ``request`` (about ``key``) from client endpoint ``endpoint``."""
        ...

    def reply(self, event: tuple[float, int, int, int, int, Any, int]) -> ReplyView | None:
        """What a message delivered to a client endpoint says (None: not an
        answer to an operation, e.g. a range lookup the router made itself)."""
        ...

    def timed_out(self, process: int, seq: int) -> None:
        """Operation ``seq`` of ``process`` got no answer in time."""
        ...


@dataclass(frozen=True, slots=True)
class OpMix:
    """Fractions of writes, reads and cas; normalised on use."""

    write: float = 0.5
    read: float = 0.4
    cas: float = 0.1

    def validate(self) -> None:
        parts = (self.write, self.read, self.cas)
        if any(p < 0 for p in parts) or sum(parts) <= 0:
            raise ConfigError("the operation mix needs non-negative fractions with a positive sum")


class _PendingOp:
    __slots__ = (
        "endpoint", "f", "key", "op", "process", "replies", "seq", "start_s", "value",
    )

    def __init__(self, process: int, seq: int, endpoint: int, op: Operation, start_s: float) -> None:
        self.process = process
        self.seq = seq
        self.endpoint = endpoint
        self.op = op
        self.f = op.f
        self.key = op.key
        self.value = list(op.value) if op.f == "cas" else op.value
        self.start_s = start_s
        self.replies: dict[tuple[str, Any], set[int]] | None = None
        """With a reply quorum: result -> replicas that sent it."""


Send = Callable[[int, int, Any, float], None]
Schedule = Callable[[float, int, int, int, Any, int], None]


class Workload:
    """Every simulated client, their pending operations and the history."""

    def __init__(
        self,
        rng: random.Random,
        *,
        first_client_id: int,
        clients: int,
        replicas: int,
        first_replica_id: int = 0,
        codec: ClientCodec,
        send: Send,
        schedule: Schedule,
        timer_kind: int,
        retry_kind: int,
        arrival_kind: int,
        stop_at_s: float,
        rate_ops: float = 0.0,
        keys: int = 10,
        mix: OpMix | None = None,
        op_timeout_s: float = 1.0,
        retry_delay_s: float = 0.05,
        reply_quorum: int = 1,
        resend_timeout_s: float = 0.0,
    ) -> None:
        if clients < 1:
            raise ConfigError("a workload needs at least one client")
        if keys < 1:
            raise ConfigError("the key space needs at least one key")
        if op_timeout_s <= 0 or retry_delay_s < 0:
            raise ConfigError("client timeouts must be > 0 and retry delays >= 0")
        if rate_ops < 0:
            raise ConfigError("the open-loop rate must be >= 0 ops/s")
        if not 1 <= reply_quorum <= replicas:
            raise ConfigError(f"reply_quorum must be within 1..{replicas}, got {reply_quorum}")
        if not resend_timeout_s >= 0:
            raise ConfigError(f"resend_timeout_s must be >= 0 (0: half of op_timeout_s), got {resend_timeout_s}")
        self.mix = mix or OpMix()
        self.mix.validate()
        self._rng = rng
        self._codec = codec
        self._send = send
        self._schedule = schedule
        self._timer_kind = timer_kind
        self._retry_kind = retry_kind
        self._arrival_kind = arrival_kind
        self.first_client_id = first_client_id
        self.clients = clients
        self.replicas = replicas
        self.first_replica_id = first_replica_id
        """Replicas are endpoints ``first_replica_id .. + replicas - 1``."""
        self.stop_at_s = stop_at_s
        self.rate_ops = rate_ops
        self.keys = [f"k{i}" for i in range(keys)]
        self.op_timeout_s = op_timeout_s
        self.retry_delay_s = retry_delay_s
        self.reply_quorum = reply_quorum
        self.resend_timeout_s = resend_timeout_s or op_timeout_s / 2
        """With a reply quorum: how long one attempt waits before the request
        goes to every replica (0 given: half of ``op_timeout_s``)."""
        self.history: list[dict[str, Any]] = []
        self.router: Router | None = None
        """Chooses where each request goes and reads every reply, instead of
        the leader guess and the codec (a partitioned key space: multi-Raft)."""
        self.observer: Callable[[dict[str, Any]], None] | None = None
        """Sees every history event as it is recorded (the online checks)."""
        self.latencies_s: list[float] = []
        self.ok = 0
        self.failed = 0
        self.unknown = 0
        self.invoked = 0
        self.redirects = 0
        self.resends = 0
        """With a reply quorum: requests re-sent to every replica after
        ``resend_timeout_s`` without a result."""
        self.stale_timers = 0
        """Timeout and retry timers that fired after their operation had ended
        (popped from the heap, but no work: not counted as events)."""
        self._pending: dict[int, _PendingOp] = {}  # by session (process) id
        self._leader_guess = [first_replica_id + rng.randrange(replicas) for _ in range(clients)]
        self._primary: list[int | None] = [None] * clients
        self._hints: list[dict[int, int | None]] = [{} for _ in range(clients)]
        """Per endpoint: replica -> the primary its latest result named."""
        """With a reply quorum: the primary q replies of the endpoint's last
        decided operation named (None: send to every replica)."""
        self._next_process = 0
        self._next_value = 0
        self._next_endpoint = 0
        self._last_written: dict[str, Any] = {}
        self._seq_of: dict[int, int] = {}  # last request number per session
        total = self.mix.write + self.mix.read + self.mix.cas
        self._write_cut = self.mix.write / total
        self._read_cut = (self.mix.write + self.mix.read) / total

    @property
    def open_loop(self) -> bool:
        return self.rate_ops > 0

    def start(self, now_s: float) -> None:
        """Issue the first operations (closed loop) or the first arrival."""
        if self.open_loop:
            self._schedule(now_s + self._rng.expovariate(self.rate_ops), self._arrival_kind, 0, 0, None, 0)
            return
        for c in range(self.clients):
            self._issue(c, self._new_process(), now_s)

    # -- events --------------------------------------------------------------
    def on_arrival(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        now = event[0]
        if now >= self.stop_at_s:
            return
        endpoint = self._next_endpoint
        self._next_endpoint = (endpoint + 1) % self.clients
        self._issue(endpoint, self._new_process(), now)
        self._schedule(now + self._rng.expovariate(self.rate_ops), self._arrival_kind, 0, 0, None, 0)

    def on_reply(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        router = self.router
        view = self._codec.reply(event[5]) if router is None else router.reply(event)
        if view is None:
            return
        op = self._pending.get(view.client)
        if op is None:
            return  # the answer to an operation already timed out
        status = view.status
        if self.reply_quorum > 1 and status != "redirect":
            # Every result is a vote on the primary, late ones included; the
            # dict stays ordered by recency (ties go to the fresher word).
            hints = self._hints[op.endpoint]
            hints.pop(event[4], None)
            hints[event[4]] = view.leader
        if op.seq != view.seq:
            return  # a late duplicate
        now = event[0]
        if self.reply_quorum > 1:
            if status == "redirect":
                return  # a refusal is no result; other replicas will answer
            votes = op.replies
            if votes is None:
                votes = op.replies = {}
            key = (status, _hashable(view.value))
            voters = votes.setdefault(key, set())
            voters.add(event[4])
            if len(voters) < self.reply_quorum:
                return
            self._primary[op.endpoint] = self._named_primary(self._hints[op.endpoint])
        if status == "redirect":
            self.redirects += 1
            endpoint = op.endpoint
            if view.leader is not None and self._is_replica(view.leader) and view.leader != event[4]:
                self._leader_guess[endpoint] = view.leader
                self._send_request(op, now)
            else:
                self._leader_guess[endpoint] = self._other_replica(event[4])
                self._schedule(now + self.retry_delay_s, self._retry_kind, endpoint, op.process, None, op.seq)
            return
        del self._pending[op.process]
        if status == "ok":
            self.ok += 1
            self.latencies_s.append(now - op.start_s)
            if op.f == "read":
                self._complete(op, "ok", now, view.value)
            else:
                self._last_written[op.key] = op.value[1] if op.f == "cas" else op.value
                self._complete(op, "ok", now, op.value)
            self._leader_guess[op.endpoint] = event[4]
        elif status == "fail":
            self.failed += 1
            self._complete(op, "fail", now, op.value)
        else:
            self.unknown += 1
            self._complete(op, "info", now, op.value)
            self._leader_guess[op.endpoint] = self._other_replica(event[4])
        if not self.open_loop:
            self._issue(op.endpoint, op.process if status != "unknown" else self._new_process(), now)

    def on_timer(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        """The operation of session ``src`` numbered ``size`` ran out of time."""
        op = self._pending.get(event[4])
        if op is None or op.seq != event[6]:
            self.stale_timers += 1
            return
        now = event[0]
        del self._pending[op.process]
        self.unknown += 1
        self._complete(op, "info", now, op.value)
        if self.router is not None:
            self.router.timed_out(op.process, op.seq)
        endpoint = op.endpoint
        self._leader_guess[endpoint] = self._other_replica(self._leader_guess[endpoint])
        if not self.open_loop:
            self._issue(endpoint, self._new_process(), now)

    def on_retry(self, event: tuple[float, int, int, int, int, Any, int]) -> None:
        """A redirected request's pause ended (reply quorum 1), or a request
        got no result within ``resend_timeout_s`` (reply quorum > 1): send
        it again (to every replica, in the second case)."""
        op = self._pending.get(event[4])
        if op is None or op.seq != event[6]:
            self.stale_timers += 1
            return
        if self.reply_quorum > 1:
            self.resends += 1
            self._send_request(op, event[0], to_all=True)
            return
        self._send_request(op, event[0])

    def finish(self, now_s: float) -> None:
        """End of the run: operations still outstanding have unknown outcomes."""
        for op in sorted(self._pending.values(), key=lambda o: o.process):
            self.unknown += 1
            self._complete(op, "info", now_s, op.value)
        self._pending.clear()

    # -- internals -----------------------------------------------------------
    def _new_process(self) -> int:
        p = self._next_process
        self._next_process += 1
        return p

    def _is_replica(self, endpoint: int) -> bool:
        return self.first_replica_id <= endpoint < self.first_replica_id + self.replicas

    def _other_replica(self, current: int) -> int:
        first = self.first_replica_id
        if self.replicas == 1:
            return first
        other = first + self._rng.randrange(self.replicas - 1)
        return other if other < current else other + 1

    def _next_op(self) -> Operation:
        rng = self._rng
        key = self.keys[rng.randrange(len(self.keys))]
        draw = rng.random()
        if draw < self._write_cut:
            self._next_value += 1
            return Operation("write", key, self._next_value)
        if draw < self._read_cut:
            return Operation("read", key, None)
        self._next_value += 1
        return Operation("cas", key, (self._last_written.get(key), self._next_value))

    def _issue(self, endpoint: int, process: int, now: float) -> None:
        if now >= self.stop_at_s:
            return
        op = _PendingOp(process, 0, endpoint, self._next_op(), now)
        previous = self._seq_of.get(process, 0)
        op.seq = previous + 1
        self._seq_of[process] = op.seq
        self._pending[process] = op
        self.invoked += 1
        self._record(
            {"process": process, "type": "invoke", "f": op.f, "key": op.key, "value": op.value if op.f != "read" else None, "time": now}
        )
        self._schedule(now + self.op_timeout_s, self._timer_kind, endpoint, process, None, op.seq)
        self._send_request(op, now)

    def _send_request(self, op: _PendingOp, now: float, *, to_all: bool = False) -> None:
        src = self.first_client_id + op.endpoint
        message = self._codec.request(op.process, op.seq, op.op, src)
        if self.reply_quorum > 1:
            primary = None if to_all else self._primary[op.endpoint]
            if primary is None:
                for replica in range(self.first_replica_id, self.first_replica_id + self.replicas):
                    self._send(src, replica, message, now)
            else:
                self._send(src, primary, message, now)
            resend_at = now + self.resend_timeout_s
            if resend_at < op.start_s + self.op_timeout_s:
                self._schedule(resend_at, self._retry_kind, op.endpoint, op.process, None, op.seq)
            return
        if self.router is not None:
            self.router.send(src, op.key, message, now)
            return
        self._send(src, self._leader_guess[op.endpoint], message, now)

    def _named_primary(self, hints: dict[int, int | None]) -> int | None:
        """The primary at least q replicas' latest words name, else None.
        One of any q replicas is honest, so f liars cannot steer the client
        to a replica that ignores it. Two names can both have q votes while a
        view change spreads (old words for the old primary, new ones for the
        new); the one named most recently wins."""
        counts: dict[int, int] = {}
        for leader in hints.values():
            if leader is not None and self._is_replica(leader):
                counts[leader] = counts.get(leader, 0) + 1
        for leader in reversed(list(hints.values())):
            if leader is not None and counts.get(leader, 0) >= self.reply_quorum:
                return leader
        return None

    def _complete(self, op: _PendingOp, kind: str, now: float, value: Any) -> None:
        self._record({"process": op.process, "type": kind, "f": op.f, "key": op.key, "value": value, "time": now})

    def _record(self, event: dict[str, Any]) -> None:
        self.history.append(event)
        if self.observer is not None:
            self.observer(event)


def _hashable(value: Any) -> Any:
    """A reply value as a dict key (lists become tuples)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
