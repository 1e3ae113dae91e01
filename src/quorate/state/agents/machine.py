"""The agent state machines as one part of the replicated store.

Theory of operation. Tasks, locks, agent identities and signed votes are
*more operations of the replicated key-value store* rather than groups of
their own: one log orders a task's completion, the key-value write it
reports and the vote that follows it, so they are atomic with respect to
each other (a ``FencedPut`` checks a lock and writes a key at one log
position), one snapshot holds them all, every runtime and protocol that
carries the store carries them (Raft and the BFT protocols, real nodes and
the simulator), and a client needs one session for all of it, with the
store's exactly-once retries. Separate groups would buy parallelism across
groups at the price of cross-group transactions; a node that needs that can
host more stores as extra groups.

``KVStore`` holds an ``AgentState`` and hands it every agent operation
(``execute``), every read (``read``), and every advance of log time
(``expire``): leases, lock leases and proposal deadlines are log times in
one heap, and when log time passes one, the lease is lost (the task is
re-offered), the lock freed, the proposal closed — on every replica at the
same log position. ``next_deadline_s`` is the earliest of them, which the
store publishes with its TTL deadlines, so the replica service proposes a
time entry when one is due even on an idle cluster. Nothing here reads a
clock or draws randomness: time is the log's ``now_s``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import msgspec

from quorate.state.agents.audit import AuditRecord
from quorate.state.agents.env import AgentEnv, Outcome, refuse, to_json
from quorate.state.agents.locks import LEASE_KIND as LOCK_LEASE
from quorate.state.agents.locks import Locks, _LockRecord
from quorate.state.agents.ops import (
    AgentList,
    AgentRegister,
    AuditQuery,
    FencedPut,
    LockAcquire,
    LockRelease,
    LockStatus,
    ProposalList,
    ProposalOpen,
    ProposalStatus,
    TaskCancel,
    TaskClaim,
    TaskComplete,
    TaskFail,
    TaskHeartbeat,
    TaskList,
    TaskStatus,
    TaskSubmit,
    VoteCast,
    WatchPoll,
)
from quorate.state.agents.tasks import LEASE_KIND as TASK_LEASE
from quorate.state.agents.tasks import TaskQueue, _TaskRecord
from quorate.state.agents.votes import (
    DEADLINE_KIND,
    KeyCheck,
    Votes,
    _ProposalRecord,
    ed25519_check,
)
from quorate.state.watch import ChangeLog, Compacted

WATCH_MAX_EVENTS = 1000
FORMAT_VERSION = 1


class _AgentSnapshot(msgspec.Struct, array_like=True):
    version: int
    fence: int
    deadlines: list[tuple[float, str, str, int]]
    task_seq: int
    tasks: list[_TaskRecord]
    locks: list[_LockRecord]
    agents: dict[str, tuple[bytes, float]]
    proposals: list[_ProposalRecord]
    audit_seq: int = 0
    audit: list[AuditRecord] = msgspec.field(default_factory=list)


_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(_AgentSnapshot)

Write = Callable[[str, str, str], None]
"""(namespace, key, value): a key-value write of the store (for ``FencedPut``)."""


class AgentState:
    """Tasks, locks, identities and votes over one log time (see the module docstring)."""

    __slots__ = ("env", "locks", "tasks", "votes", "write")

    def __init__(self, changes: ChangeLog, write: Write, check: KeyCheck = ed25519_check) -> None:
        self.env = AgentEnv(changes)
        self.tasks = TaskQueue(self.env)
        self.locks = Locks(self.env)
        self.votes = Votes(self.env, check)
        self.write = write

    @property
    def empty(self) -> bool:
        return not (self.tasks.tasks or self.locks.held or self.votes.agents or self.votes.proposals or self.env.fence)

    @property
    def next_deadline_s(self) -> float | None:
        deadlines = self.env.deadlines
        return deadlines[0][0] if deadlines else None

    def execute(self, op: object, now_s: float) -> Outcome:
        """Apply one agent operation at log time ``now_s`` (deadlines up to it already expired)."""
        self.env.now_s = now_s
        if isinstance(op, TaskClaim):
            return self.tasks.claim(op)
        if isinstance(op, TaskComplete):
            return self.tasks.complete(op)
        if isinstance(op, TaskHeartbeat):
            return self.tasks.heartbeat(op)
        if isinstance(op, TaskSubmit):
            return self.tasks.submit(op)
        if isinstance(op, TaskFail):
            return self.tasks.fail(op)
        if isinstance(op, TaskCancel):
            return self.tasks.cancel(op)
        if isinstance(op, LockAcquire):
            return self.locks.acquire(op)
        if isinstance(op, LockRelease):
            return self.locks.release(op)
        if isinstance(op, FencedPut):
            return self.locks.fenced_put(op, self.write)
        if isinstance(op, VoteCast):
            return self.votes.vote(op)
        if isinstance(op, ProposalOpen):
            return self.votes.open(op)
        if isinstance(op, AgentRegister):
            return self.votes.register(op)
        return self.read(op)

    def read(self, op: object) -> Outcome:
        if isinstance(op, WatchPoll):
            return self._watch(op)
        if isinstance(op, TaskStatus):
            return self.tasks.status(op)
        if isinstance(op, TaskList):
            return self.tasks.list(op)
        if isinstance(op, LockStatus):
            return self.locks.status(op)
        if isinstance(op, ProposalStatus):
            return self.votes.status(op)
        if isinstance(op, ProposalList):
            return self.votes.list_proposals(op)
        if isinstance(op, AgentList):
            return self.votes.list_agents(op)
        if isinstance(op, AuditQuery):
            return Outcome(True, to_json(self.env.audit.query(op.kind, op.subject, op.actor, op.from_seq, op.limit)))
        return refuse(f"not an agent operation: {type(op).__name__}")

    def _watch(self, op: WatchPoll) -> Outcome:
        changes = self.env.changes
        try:
            events, next_revision = changes.poll(
                op.prefix, op.namespace, op.from_revision, max(1, min(op.limit, WATCH_MAX_EVENTS))
            )
        except Compacted as exc:
            return refuse(str(exc), {"compacted": True, "oldest": exc.oldest, "revision": changes.revision})
        return Outcome(
            True,
            to_json(
                {
                    "events": [
                        {"revision": e.revision, "kind": e.kind, "namespace": e.namespace, "key": e.key, "value": e.value}
                        for e in events
                    ],
                    "next_revision": next_revision,
                    "revision": changes.revision,
                }
            ),
        )

    def expire(self, now_s: float) -> None:
        """Log time reached ``now_s``: lose every lease and close every
        proposal whose deadline is at or before it, earliest first."""
        env = self.env
        deadlines = env.deadlines
        while deadlines and deadlines[0][0] <= now_s:
            deadline_s, kind, ident, token = heapq.heappop(deadlines)
            env.now_s = deadline_s
            if kind == TASK_LEASE:
                self.tasks.lease_expired(ident, token, deadline_s)
            elif kind == LOCK_LEASE:
                self.locks.expired(ident, token, deadline_s)
            elif kind == DEADLINE_KIND:
                self.votes.deadline(ident)
            # Stale entries (a lease renewed since) pass here too: what is
            # live is checked against the record.
        env.now_s = max(env.now_s, now_s)

    # -- snapshots ---------------------------------------------------------------
    def snapshot(self) -> bytes:
        seq, tasks = self.tasks.state()
        agents, proposals = self.votes.state()
        env = self.env
        audit_seq, audit = env.audit.state()
        return _encoder.encode(
            _AgentSnapshot(
                FORMAT_VERSION, env.fence, sorted(env.deadlines), seq, tasks, self.locks.state(), agents, proposals,
                audit_seq, audit,
            )
        )

    def restore(self, data: bytes) -> None:
        snap = _snapshot_decoder.decode(data)
        if snap.version != FORMAT_VERSION:
            raise ValueError(f"unsupported agent state snapshot version {snap.version}")
        self.env.fence = snap.fence
        self.env.deadlines = [tuple(d) for d in snap.deadlines]  # type: ignore[misc]
        heapq.heapify(self.env.deadlines)
        self.tasks.restore(snap.task_seq, snap.tasks)
        self.locks.restore(snap.locks)
        self.votes.restore(snap.agents, snap.proposals)
        self.env.audit.restore(snap.audit_seq, snap.audit)


__all__ = ["AgentState", "Outcome"]
