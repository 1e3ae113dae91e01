"""The agent API of a client: tasks, locks, identities and signed votes, watches.

Each call is one operation of the replicated store (``quorate.state.agents``)
through the client's ``execute``, so it has the client's guarantees: the
same ``(client, seq)`` through every retry (a claim or a completion retried
after a lost answer is applied once), linearizable reads. A refusal by the
state machine raises ``Refused`` with the machine's reason (``stale fencing
token 3: ...``), which an agent can act on; the document that caused it,
when there is one, is in ``Refused.detail``.

``watch`` follows a key prefix from a revision on by polling the store's
change history (``WatchPoll``); it remembers the next revision, so after a
lost connection (the client reconnects, perhaps to another node) it resumes
where it stopped, without missing or repeating a change. A revision older
than the history raises ``WatchCompacted`` with the oldest one held.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from quorate.client.contact import ClientError
from quorate.client.identity import AgentIdentity
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
    TaskSpec,
    TaskStatus,
    TaskSubmit,
    VoteCast,
    WatchPoll,
)
from quorate.state.kv import Op, Result

DEFAULT_LEASE_S = 30.0
WATCH_POLL_INTERVAL_S = 0.05
WATCH_POLL_MAX_INTERVAL_S = 0.5

Execute = Callable[[Op], Awaitable[Result]]


class Refused(ClientError):
    """The state machine refused the operation; the message says why."""

    def __init__(self, reason: str, detail: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class WatchCompacted(Refused):
    """A watch from a revision older than the store's change history."""

    def __init__(self, reason: str, oldest: int) -> None:
        super().__init__(reason, {"oldest": oldest})
        self.oldest = oldest


async def _document(execute: Execute, op: Op) -> Any:
    result = await execute(op)
    detail = json.loads(result.value) if result.value else None
    if not result.ok:
        if isinstance(detail, dict) and detail.get("compacted"):
            raise WatchCompacted(result.error or "compacted", int(detail["oldest"]))
        raise Refused(result.error or "refused", detail)
    return detail


def task_spec(task: str | TaskSpec | dict[str, Any]) -> TaskSpec:
    """A task description, a ``TaskSpec``, or a mapping of its fields."""
    if isinstance(task, TaskSpec):
        return task
    if isinstance(task, str):
        return TaskSpec(task)
    fields = dict(task)
    fields["dependencies"] = tuple(fields.get("dependencies", ()))
    return TaskSpec(**fields)


class AsyncTasks:
    """The task queue (``quorate.state.agents.tasks``)."""

    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def submit(self, *tasks: str | TaskSpec | dict[str, Any]) -> list[dict[str, Any]]:
        """Add tasks (all or none); returns them with their ids."""
        document = await _document(self._execute, TaskSubmit(tuple(task_spec(t) for t in tasks)))
        return list(document["tasks"])

    async def claim(
        self, agent: str, *, lease_s: float = DEFAULT_LEASE_S, task_id: str = "", workflow: str = ""
    ) -> dict[str, Any] | None:
        """The best ready task, now held by ``agent`` (with its ``token``), or None."""
        document = await _document(self._execute, TaskClaim(agent, lease_s, task_id, workflow))
        task: dict[str, Any] | None = document["task"]
        return task

    async def heartbeat(self, task_id: str, token: int, *, lease_s: float = DEFAULT_LEASE_S) -> dict[str, Any]:
        return dict((await _document(self._execute, TaskHeartbeat(task_id, token, lease_s)))["task"])

    async def complete(self, task_id: str, token: int, result: str) -> dict[str, Any]:
        return dict((await _document(self._execute, TaskComplete(task_id, token, result)))["task"])

    async def fail(self, task_id: str, token: int, error: str = "") -> dict[str, Any]:
        return dict((await _document(self._execute, TaskFail(task_id, token, error)))["task"])

    async def cancel(self, task_id: str, reason: str = "") -> dict[str, Any]:
        return dict((await _document(self._execute, TaskCancel(task_id, reason)))["task"])

    async def status(self, task_id: str) -> dict[str, Any]:
        return dict((await _document(self._execute, TaskStatus(task_id)))["task"])

    async def list(self, *, state: str = "", workflow: str = "", limit: int = 100, after: str = "") -> dict[str, Any]:
        """``{"tasks": [...], "counts": {state: n}, "total": n}``."""
        return dict(await _document(self._execute, TaskList(state, workflow, limit, after)))


class AsyncLocks:
    """Locks with leases and fencing tokens (``quorate.state.agents.locks``)."""

    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def acquire(self, name: str, holder: str, *, lease_s: float = DEFAULT_LEASE_S) -> dict[str, Any]:
        """The lock (with its ``token``); ``Refused`` while another holder has it."""
        return dict((await _document(self._execute, LockAcquire(name, holder, lease_s)))["lock"])

    async def release(self, name: str, holder: str, token: int) -> None:
        await _document(self._execute, LockRelease(name, holder, token))

    async def status(self, name: str) -> dict[str, Any]:
        return dict(await _document(self._execute, LockStatus(name)))

    async def fenced_put(self, lock: str, token: int, key: str, value: str, *, namespace: str = "") -> None:
        """Write ``key`` only while ``token`` is ``lock``'s live token."""
        await _document(self._execute, FencedPut(lock, token, key, value, namespace))


class AsyncVotes:
    """Agent identities and Ed25519-signed votes (``quorate.state.agents.votes``)."""

    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def register(self, identity: AgentIdentity) -> dict[str, Any]:
        return dict(await _document(self._execute, AgentRegister(identity.name, identity.public_key)))

    async def agents(self) -> list[dict[str, Any]]:
        return list((await _document(self._execute, AgentList()))["agents"])

    async def propose(
        self,
        proposal_id: str,
        question: str,
        options: Sequence[str],
        *,
        rule: str = "majority",
        duration_s: float = 60.0,
        electorate: Iterable[str] = (),
        weights: dict[str, int] | None = None,
        proposer: str = "",
    ) -> dict[str, Any]:
        op = ProposalOpen(
            proposal_id, question, tuple(options), rule, duration_s, tuple(electorate),
            tuple(sorted((weights or {}).items())), proposer,
        )
        return dict((await _document(self._execute, op))["proposal"])

    async def vote(self, identity: AgentIdentity, proposal_id: str, option: str) -> dict[str, Any]:
        """Cast ``identity``'s ballot, signed with its key; the proposal after it."""
        signature = identity.sign_ballot(proposal_id, option)
        return await self.cast(proposal_id, identity.name, option, signature)

    async def cast(self, proposal_id: str, voter: str, option: str, signature: bytes) -> dict[str, Any]:
        """A ballot signed elsewhere."""
        return dict((await _document(self._execute, VoteCast(proposal_id, voter, option, signature)))["proposal"])

    async def status(self, proposal_id: str) -> dict[str, Any]:
        return dict((await _document(self._execute, ProposalStatus(proposal_id)))["proposal"])

    async def list(self, *, limit: int = 100) -> list[dict[str, Any]]:
        return list((await _document(self._execute, ProposalList(limit)))["proposals"])


class AsyncWatches:
    """Changes from a revision on (``quorate.state.watch``)."""

    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def poll(
        self, prefix: str = "", *, namespace: str = "", from_revision: int = 0, limit: int = 256
    ) -> tuple[list[dict[str, Any]], int]:
        """(changes, the revision to poll from next); revision 0: from now on."""
        document = await _document(self._execute, WatchPoll(prefix, namespace, from_revision, limit))
        return list(document["events"]), int(document["next_revision"])

    async def watch(
        self,
        prefix: str = "",
        *,
        namespace: str = "",
        from_revision: int = 0,
        poll_interval_s: float = WATCH_POLL_INTERVAL_S,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every change in order, forever (stop by leaving the loop)."""
        revision = from_revision
        if revision <= 0:
            _, revision = await self.poll(prefix, namespace=namespace)
        pause = poll_interval_s
        while True:
            events, revision = await self.poll(prefix, namespace=namespace, from_revision=revision)
            for event in events:
                yield event
            if events:
                pause = poll_interval_s
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, WATCH_POLL_MAX_INTERVAL_S)


class AsyncAudit:
    """The audit trail of decisions (``quorate.state.agents.audit``)."""

    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    async def query(
        self, *, kind: str = "", subject: str = "", actor: str = "", from_seq: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        """``{"records": [...], "next_seq": n, "oldest_seq": m, "truncated": bool, "total": n}``."""
        return dict(await _document(self._execute, AuditQuery(kind, subject, actor, from_seq, limit)))


__all__ = [
    "DEFAULT_LEASE_S",
    "AsyncAudit",
    "AsyncLocks",
    "AsyncTasks",
    "AsyncVotes",
    "AsyncWatches",
    "Refused",
    "WatchCompacted",
    "task_spec",
]
