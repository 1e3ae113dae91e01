"""The operations of the agent state machines, as they travel through the log.

They are members of the replicated store's operation union
(``quorate.state.kv.Op``): one log orders key-value writes, task claims,
lock grants and ballots together. Every operation is a frozen, tagged,
array-like msgspec struct, like the key-value ones, so decoding validates the
types and an unknown tag is refused before any replica applies it.

Results come back as a ``quorate.state.kv.Result``: ``ok`` and, in ``value``,
a JSON document (sorted keys, so every replica encodes the same bytes);
refusals carry the reason in ``error`` and, where useful, the state that
caused it in ``value``.
"""

from __future__ import annotations

import msgspec

# -- tasks -------------------------------------------------------------------------


class TaskSpec(msgspec.Struct, array_like=True, frozen=True):
    """One task of a submission. ``task_id`` empty: the store numbers it
    (``t1``, ``t2``...). ``dependencies`` name tasks that must complete first
    (earlier ones, or others of the same submission). ``workflow`` groups
    tasks for the ``sequential`` and ``balanced`` strategies."""

    description: str
    task_id: str = ""
    priority: int = 0
    dependencies: tuple[str, ...] = ()
    strategy: str = "parallel"
    max_attempts: int = 3
    workflow: str = ""


class TaskSubmit(msgspec.Struct, tag="task.submit", array_like=True, frozen=True):
    """Add tasks, all or none (a cycle, an unknown dependency or a duplicate
    id refuses the whole submission)."""

    tasks: tuple[TaskSpec, ...]


class TaskClaim(msgspec.Struct, tag="task.claim", array_like=True, frozen=True):
    """``agent`` takes the best ready task (or ``task_id``) for ``lease_s`` of
    log time; the answer carries the task and its fencing token."""

    agent: str
    lease_s: float
    task_id: str = ""
    workflow: str = ""


class TaskHeartbeat(msgspec.Struct, tag="task.heartbeat", array_like=True, frozen=True):
    """Extend the lease of a claimed task to ``lease_s`` from now."""

    task_id: str
    token: int
    lease_s: float


class TaskComplete(msgspec.Struct, tag="task.complete", array_like=True, frozen=True):
    """Finish a claimed task with its result (once: a stale token is refused)."""

    task_id: str
    token: int
    result: str


class TaskFail(msgspec.Struct, tag="task.fail", array_like=True, frozen=True):
    """Give a claimed task up; it is offered again while attempts remain."""

    task_id: str
    token: int
    error: str = ""


class TaskCancel(msgspec.Struct, tag="task.cancel", array_like=True, frozen=True):
    task_id: str
    reason: str = ""


class TaskStatus(msgspec.Struct, tag="task.status", array_like=True, frozen=True):
    task_id: str


class TaskList(msgspec.Struct, tag="task.list", array_like=True, frozen=True):
    """Tasks in submission order; ``state`` filters (pending, ready, claimed,
    completed, failed, cancelled), ``workflow`` too."""

    state: str = ""
    workflow: str = ""
    limit: int = 100
    after: str = ""


# -- locks ------------------------------------------------------------------------


class LockAcquire(msgspec.Struct, tag="lock.acquire", array_like=True, frozen=True):
    """Take ``name`` for ``holder`` for ``lease_s`` of log time. The holder
    asking again renews it and keeps its token."""

    name: str
    holder: str
    lease_s: float


class LockRelease(msgspec.Struct, tag="lock.release", array_like=True, frozen=True):
    name: str
    holder: str
    token: int


class LockStatus(msgspec.Struct, tag="lock.status", array_like=True, frozen=True):
    name: str


class FencedPut(msgspec.Struct, tag="lock.put", array_like=True, frozen=True):
    """A key-value write that takes effect only while ``token`` is the live
    token of lock ``lock`` (the resource checks the fence, as Chubby's
    sequencers are checked)."""

    lock: str
    token: int
    key: str
    value: str
    namespace: str = ""


# -- agents and signed votes -----------------------------------------------------------


class AgentRegister(msgspec.Struct, tag="agent.register", array_like=True, frozen=True):
    """Register an agent identity: a name and its Ed25519 public key."""

    name: str
    public_key: bytes


class AgentList(msgspec.Struct, tag="agent.list", array_like=True, frozen=True):
    limit: int = 1000


class ProposalOpen(msgspec.Struct, tag="proposal.open", array_like=True, frozen=True):
    """A question with ``options``, voted on by ``electorate`` (registered
    agent names; empty: every agent registered now) under ``rule`` until
    ``duration_s`` of log time has passed. ``weights`` only for the
    ``weighted`` rule."""

    proposal_id: str
    question: str
    options: tuple[str, ...]
    rule: str = "majority"
    duration_s: float = 60.0
    electorate: tuple[str, ...] = ()
    weights: tuple[tuple[str, int], ...] = ()
    proposer: str = ""


class VoteCast(msgspec.Struct, tag="proposal.vote", array_like=True, frozen=True):
    """``voter``'s ballot for ``option``, signed with the voter's key over
    ``ballot_bytes(proposal_id, voter, option)``."""

    proposal_id: str
    voter: str
    option: str
    signature: bytes


class ProposalStatus(msgspec.Struct, tag="proposal.status", array_like=True, frozen=True):
    proposal_id: str


class ProposalList(msgspec.Struct, tag="proposal.list", array_like=True, frozen=True):
    limit: int = 100


# -- watches ---------------------------------------------------------------------------


class WatchPoll(msgspec.Struct, tag="watch.poll", array_like=True, frozen=True):
    """Changes with revision >= ``from_revision`` to keys starting with
    ``prefix`` in ``namespace`` (``"*"``: every namespace), at most
    ``limit``. Revision 0: from the next change on (answers the current
    revision and no event)."""

    prefix: str = ""
    namespace: str = ""
    from_revision: int = 0
    limit: int = 256


class AuditQuery(msgspec.Struct, tag="audit.query", array_like=True, frozen=True):
    """Audit records from sequence number ``from_seq`` on (0: the oldest
    held) whose kind starts with ``kind`` and whose ``subject`` and
    ``actor`` match (empty: any), at most ``limit``."""

    kind: str = ""
    subject: str = ""
    actor: str = ""
    from_seq: int = 0
    limit: int = 100


AgentWrite = (
    TaskSubmit
    | TaskClaim
    | TaskHeartbeat
    | TaskComplete
    | TaskFail
    | TaskCancel
    | LockAcquire
    | LockRelease
    | FencedPut
    | AgentRegister
    | ProposalOpen
    | VoteCast
)
AgentRead = TaskStatus | TaskList | LockStatus | AgentList | ProposalStatus | ProposalList | WatchPoll | AuditQuery
AgentOp = AgentWrite | AgentRead

AGENT_WRITE_TYPES: tuple[type, ...] = (
    TaskSubmit,
    TaskClaim,
    TaskHeartbeat,
    TaskComplete,
    TaskFail,
    TaskCancel,
    LockAcquire,
    LockRelease,
    FencedPut,
    AgentRegister,
    ProposalOpen,
    VoteCast,
)
AGENT_READ_TYPES: tuple[type, ...] = (
    TaskStatus,
    TaskList,
    LockStatus,
    AgentList,
    ProposalStatus,
    ProposalList,
    WatchPoll,
    AuditQuery,
)
AGENT_OP_TYPES = AGENT_WRITE_TYPES + AGENT_READ_TYPES

BALLOT_DOMAIN = b"quorate/ballot/v1"


def ballot_bytes(proposal_id: str, voter: str, option: str) -> bytes:
    """What a voter signs: a domain tag and the three fields, length-prefixed
    (so no two ballots share bytes)."""
    parts = [BALLOT_DOMAIN]
    for text in (proposal_id, voter, option):
        raw = text.encode("utf-8")
        parts.append(len(raw).to_bytes(4, "big"))
        parts.append(raw)
    return b"".join(parts)
