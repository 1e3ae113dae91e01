"""The replicated task queue: priorities, a dependency DAG, strategies,
leases with fencing tokens, exactly-once completion, bounded retries.

Theory of operation. A task is *blocked* until every task it depends on has
completed, then *ready*; an agent's claim takes the best ready task — the
highest priority, then the earliest submitted — and holds it under a
*lease* (log time, ``lease_s`` from the claim) with a *fencing token*, a
number no earlier grant of any task or lock had. Only the holder of the
current token may heartbeat (extend the lease), complete or fail the task;
anything else carrying an older token is refused (``stale fencing token``),
so a completion happens exactly once even when an agent that was presumed
dead comes back. When a lease runs out (the first command, or time entry,
applied at or after its deadline), the task is *re-offered*: ready again
with a new token at the next claim. A claim, a lease lost and a failure
each use one of the task's ``max_attempts``; when they are used up the task
has *failed*. A task that fails or is cancelled can never let its
dependents run, so they are cancelled with it (transitively).

Strategies say how a task is ordered and assigned:

- ``parallel``: ready as soon as its dependencies completed; any agent may
  hold any number of them at once.
- ``sequential``: also waits for the task submitted just before it in the
  same workflow, so a workflow's tasks run one after another in submission
  order.
- ``balanced``: an agent holding a balanced task of a workflow is offered no
  other task of that workflow until it finishes it, so the workflow's tasks
  spread over the agents that ask.
- ``adaptive``: like parallel, but each attempt the task lost (a failure or
  an expired lease) raises its priority by one, so retried work goes first.

Submissions are all or none: a dependency on an unknown task (or one that
can no longer complete), a cycle among the submitted tasks (found by
Kahn's algorithm; a task depending on itself is one), a duplicate id or a
bad field refuses the whole submission with the reason.

Every transition is written to the change history in namespace ``@tasks``
(key: the task id), so a watcher sees each claim, completion and
re-offer in order.
"""

from __future__ import annotations

import builtins
import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.state.agents.env import (
    TEXT_MAX_CHARS,
    AgentEnv,
    Outcome,
    lease_fault,
    name_fault,
    refuse,
    to_json,
)
from quorate.state.agents.ops import (
    TaskCancel,
    TaskClaim,
    TaskComplete,
    TaskFail,
    TaskHeartbeat,
    TaskList,
    TaskSpec,
    TaskStatus,
    TaskSubmit,
)

NAMESPACE = "@tasks"
STRATEGIES = ("parallel", "sequential", "adaptive", "balanced")
STATES = ("blocked", "ready", "claimed", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")
MAX_TASKS = 100_000
"""Tasks the queue holds (finished ones included)."""
MAX_TASKS_PER_SUBMIT = 1000
MAX_ATTEMPTS_LIMIT = 100
PRIORITY_LIMIT = 1_000_000
MAX_DEPENDENCIES = 256
LIST_MAX = 1000
LEASE_KIND = "task"


@dataclass(slots=True)
class Task:
    id: str
    description: str
    priority: int
    dependencies: tuple[str, ...]
    strategy: str
    max_attempts: int
    workflow: str
    seq: int
    submitted_s: float
    state: str = "blocked"
    waiting: int = 0
    attempts: int = 0
    agent: str | None = None
    token: int = 0
    lease_deadline_s: float | None = None
    result: str | None = None
    error: str | None = None
    finished_s: float | None = None
    history: list[tuple[str, str]] = field(default_factory=list)
    """(event, agent or reason), for the audit trail and task_status."""

    @property
    def effective_priority(self) -> int:
        if self.strategy == "adaptive":
            return self.priority + self.attempts
        return self.priority

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "priority": self.priority,
            "dependencies": list(self.dependencies),
            "strategy": self.strategy,
            "workflow": self.workflow,
            "state": self.state,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "agent": self.agent,
            "token": self.token or None,
            "lease_expires_s": self.lease_deadline_s,
            "result": self.result,
            "error": self.error,
            "submitted_s": self.submitted_s,
            "finished_s": self.finished_s,
        }


class _TaskRecord(msgspec.Struct, array_like=True):
    id: str
    description: str
    priority: int
    dependencies: list[str]
    strategy: str
    max_attempts: int
    workflow: str
    seq: int
    submitted_s: float
    state: str
    waiting: int
    attempts: int
    agent: str | None
    token: int
    lease_deadline_s: float | None
    result: str | None
    error: str | None
    finished_s: float | None
    history: list[tuple[str, str]]


class TaskQueue:
    """The task state machine (see the module docstring)."""

    __slots__ = ("_dependents", "_holding", "_last_in_workflow", "_ready", "_seq", "env", "tasks")

    def __init__(self, env: AgentEnv) -> None:
        self.env = env
        self.tasks: dict[str, Task] = {}
        """Every task, in submission order."""
        self._dependents: dict[str, list[str]] = {}
        self._ready: list[tuple[int, int, str]] = []
        """Heap of (-effective priority, seq, id); an entry is live while its
        task is ready with that priority (others are skipped lazily)."""
        self._seq = 0
        self._last_in_workflow: dict[str, str] = {}
        self._holding: dict[tuple[str, str], int] = {}
        """(agent, workflow) -> balanced tasks of the workflow the agent holds."""

    # -- commands -------------------------------------------------------------------
    def submit(self, op: TaskSubmit) -> Outcome:
        specs = op.tasks
        if not 1 <= len(specs) <= MAX_TASKS_PER_SUBMIT:
            return refuse(f"a submission holds 1..{MAX_TASKS_PER_SUBMIT} tasks, got {len(specs)}")
        if len(self.tasks) + len(specs) > MAX_TASKS:
            return refuse(f"the task queue is full ({MAX_TASKS} tasks)")
        for spec in specs:
            fault = self._spec_fault(spec)
            if fault is not None:
                return refuse(fault)
        # Ids: given ones must be new and distinct; missing ones are numbered.
        ids: list[str] = []
        taken = set(self.tasks)
        given = [s.task_id for s in specs if s.task_id]
        if len(set(given)) != len(given):
            return refuse("a task id appears twice in the submission")
        for task_id in given:
            if task_id in self.tasks:
                return refuse(f"task {task_id!r} already exists")
        taken.update(given)
        counter = self._seq
        for spec in specs:
            if spec.task_id:
                ids.append(spec.task_id)
                continue
            counter += 1
            while f"t{counter}" in taken:
                counter += 1
            ids.append(f"t{counter}")
            taken.add(f"t{counter}")
        batch = dict(zip(ids, specs))
        # Dependencies, explicit and implied by ``sequential``.
        last = dict(self._last_in_workflow)
        deps_of: dict[str, tuple[str, ...]] = {}
        for task_id, spec in batch.items():
            deps = list(dict.fromkeys(spec.dependencies))
            previous = last.get(spec.workflow)
            if spec.strategy == "sequential" and previous is not None and previous not in deps:
                deps.append(previous)
            last[spec.workflow] = task_id
            for dep in deps:
                if dep not in batch:
                    known = self.tasks.get(dep)
                    if known is None:
                        return refuse(f"task {task_id!r} depends on unknown task {dep!r}")
                    if known.state in ("failed", "cancelled"):
                        return refuse(f"task {task_id!r} depends on {dep!r}, which is {known.state}")
            deps_of[task_id] = tuple(deps)
        cycle = _cycle(deps_of)
        if cycle is not None:
            return refuse(f"the dependencies form a cycle: {' -> '.join(cycle)}", {"cycle": cycle})
        # Accepted: add them in order.
        now = self.env.now_s
        for task_id, spec in batch.items():
            self._seq += 1
            task = Task(
                task_id,
                spec.description,
                spec.priority,
                deps_of[task_id],
                spec.strategy,
                spec.max_attempts,
                spec.workflow,
                self._seq,
                now,
            )
            self.tasks[task_id] = task
            for dep in task.dependencies:
                self._dependents.setdefault(dep, []).append(task_id)
        self._seq = max(self._seq, counter)
        self._last_in_workflow = last
        for task_id in batch:
            task = self.tasks[task_id]
            task.waiting = sum(1 for dep in task.dependencies if self.tasks[dep].state != "completed")
            task.state = "blocked"
            task.history.append(("submitted", ""))
            if task.waiting == 0:
                self._make_ready(task, emit=False)
            self.env.emit("task.submitted", NAMESPACE, task_id, task.view())
        return Outcome(True, to_json({"tasks": [self.tasks[i].view() for i in batch]}))

    def _spec_fault(self, spec: TaskSpec) -> str | None:
        if spec.task_id:
            fault = name_fault("task_id", spec.task_id)
            if fault is not None:
                return fault
        if len(spec.description) > TEXT_MAX_CHARS:
            return f"description is longer than {TEXT_MAX_CHARS} characters"
        if spec.strategy not in STRATEGIES:
            return f"strategy must be one of {', '.join(STRATEGIES)}, got {spec.strategy!r}"
        if not 1 <= spec.max_attempts <= MAX_ATTEMPTS_LIMIT:
            return f"max_attempts must be in 1..{MAX_ATTEMPTS_LIMIT}, got {spec.max_attempts}"
        if not -PRIORITY_LIMIT <= spec.priority <= PRIORITY_LIMIT:
            return f"priority must be in -{PRIORITY_LIMIT}..{PRIORITY_LIMIT}, got {spec.priority}"
        if len(spec.dependencies) > MAX_DEPENDENCIES:
            return f"a task may have at most {MAX_DEPENDENCIES} dependencies"
        if len(spec.workflow) > 128:
            return "workflow must be at most 128 characters"
        return None

    def claim(self, op: TaskClaim) -> Outcome:
        fault = name_fault("agent", op.agent) or lease_fault(op.lease_s)
        if fault is not None:
            return refuse(fault)
        if op.task_id:
            task = self.tasks.get(op.task_id)
            if task is None:
                return refuse(f"unknown task {op.task_id!r}")
            if task.state != "ready":
                return refuse(f"task {op.task_id!r} is {task.state}, not ready", task.view())
            if not self._eligible(task, op.agent):
                return refuse(
                    f"agent {op.agent!r} already holds a balanced task of workflow {task.workflow!r}", task.view()
                )
            return self._grant(task, op.agent, op.lease_s)
        task = self._best_ready(op.agent, op.workflow)
        if task is None:
            return Outcome(True, to_json({"task": None}))
        return self._grant(task, op.agent, op.lease_s)

    def _best_ready(self, agent: str, workflow: str) -> Task | None:
        heap = self._ready
        passed: list[tuple[int, int, str]] = []
        found: Task | None = None
        while heap:
            entry = heap[0]
            task = self.tasks.get(entry[2])
            if task is None or task.state != "ready" or -entry[0] != task.effective_priority:
                heapq.heappop(heap)  # stale: claimed, cancelled or re-prioritised since
                continue
            if (workflow and task.workflow != workflow) or not self._eligible(task, agent):
                passed.append(heapq.heappop(heap))
                continue
            found = task
            break
        for entry in passed:
            heapq.heappush(heap, entry)
        return found

    def _eligible(self, task: Task, agent: str) -> bool:
        return task.strategy != "balanced" or not self._holding.get((agent, task.workflow))

    def _grant(self, task: Task, agent: str, lease_s: float) -> Outcome:
        env = self.env
        task.state = "claimed"
        task.agent = agent
        task.token = env.next_token()
        task.attempts += 1
        task.lease_deadline_s = env.now_s + lease_s
        task.history.append(("claimed", agent))
        if task.strategy == "balanced":
            key = (agent, task.workflow)
            self._holding[key] = self._holding.get(key, 0) + 1
        env.schedule(task.lease_deadline_s, LEASE_KIND, task.id, task.token)
        view = task.view()
        env.emit("task.claimed", NAMESPACE, task.id, view)
        return Outcome(True, to_json({"task": view}))

    def _note_refusal(self, task_id: str, action: str, token: int, refusal: Outcome) -> None:
        """A completion or failure refused for a known task goes to the audit trail."""
        task = self.tasks.get(task_id)
        if task is not None:
            self.env.note(f"task.{action}_refused", task_id, {"token": token, "reason": refusal.error, "state": task.state})

    def _holder_fault(self, task_id: str, token: int) -> tuple[Task | None, Outcome | None]:
        task = self.tasks.get(task_id)
        if task is None:
            return None, refuse(f"unknown task {task_id!r}")
        if task.state != "claimed":
            if task.state == "completed":
                reason = f"task {task_id!r} is already completed"
            elif task.state in ("ready", "blocked") and 0 < token <= task.token:
                reason = f"stale fencing token {token}: task {task_id!r} was re-offered (its lease expired or it failed)"
            else:
                reason = f"task {task_id!r} is {task.state}, not claimed"
            return None, refuse(reason, task.view())
        if token != task.token:
            return None, refuse(
                f"stale fencing token {token}: task {task_id!r} is held with token {task.token}", task.view()
            )
        return task, None

    def heartbeat(self, op: TaskHeartbeat) -> Outcome:
        fault = lease_fault(op.lease_s)
        if fault is not None:
            return refuse(fault)
        task, refusal = self._holder_fault(op.task_id, op.token)
        if refusal is not None:
            return refusal
        assert task is not None
        task.lease_deadline_s = self.env.now_s + op.lease_s
        self.env.schedule(task.lease_deadline_s, LEASE_KIND, task.id, task.token)
        return Outcome(True, to_json({"task": task.view()}))

    def complete(self, op: TaskComplete) -> Outcome:
        if len(op.result) > TEXT_MAX_CHARS:
            return refuse(f"result is longer than {TEXT_MAX_CHARS} characters")
        task, refusal = self._holder_fault(op.task_id, op.token)
        if refusal is not None:
            self._note_refusal(op.task_id, "complete", op.token, refusal)
            return refusal
        assert task is not None
        self._release_hold(task)
        task.state = "completed"
        task.result = op.result
        task.finished_s = self.env.now_s
        task.lease_deadline_s = None
        task.history.append(("completed", task.agent or ""))
        view = task.view()
        self.env.emit("task.completed", NAMESPACE, task.id, view)
        for dependent_id in self._dependents.get(task.id, ()):
            dependent = self.tasks[dependent_id]
            if dependent.state == "blocked":
                dependent.waiting -= 1
                if dependent.waiting == 0:
                    self._make_ready(dependent)
        return Outcome(True, to_json({"task": view}))

    def fail(self, op: TaskFail) -> Outcome:
        if len(op.error) > TEXT_MAX_CHARS:
            return refuse(f"error is longer than {TEXT_MAX_CHARS} characters")
        task, refusal = self._holder_fault(op.task_id, op.token)
        if refusal is not None:
            self._note_refusal(op.task_id, "fail", op.token, refusal)
            return refusal
        assert task is not None
        task.error = op.error or "failed"
        self._lose_attempt(task, "failed", op.error or "failed")
        return Outcome(True, to_json({"task": task.view()}))

    def cancel(self, op: TaskCancel) -> Outcome:
        task = self.tasks.get(op.task_id)
        if task is None:
            return refuse(f"unknown task {op.task_id!r}")
        if task.state in FINISHED:
            return refuse(f"task {op.task_id!r} is already {task.state}", task.view())
        self._finish_unsuccessfully(task, "cancelled", op.reason or "cancelled")
        return Outcome(True, to_json({"task": task.view()}))

    # -- time -----------------------------------------------------------------------
    def lease_expired(self, task_id: str, token: int, deadline_s: float) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.state != "claimed" or task.token != token or task.lease_deadline_s != deadline_s:
            return  # completed, failed, renewed or re-claimed since
        self._lose_attempt(task, "expired", f"lease of {task.agent} expired")

    # -- transitions ------------------------------------------------------------------
    def _lose_attempt(self, task: Task, event: str, reason: str) -> None:
        self._release_hold(task)
        task.lease_deadline_s = None
        if task.attempts >= task.max_attempts:
            self._finish_unsuccessfully(
                task, "failed", f"{reason}; no attempts left ({task.attempts} of {task.max_attempts})"
            )
            return
        task.history.append((event, reason))
        task.agent = None
        self.env.emit(f"task.{event}", NAMESPACE, task.id, task.view())
        self._make_ready(task)

    def _finish_unsuccessfully(self, task: Task, state: str, reason: str) -> None:
        """``task`` failed or was cancelled; so are its dependents, transitively."""
        pending = deque([(task, state, reason)])
        while pending:
            current, current_state, why = pending.popleft()
            if current.state in FINISHED:
                continue
            self._release_hold(current)
            current.state = current_state
            current.error = why
            current.finished_s = self.env.now_s
            current.lease_deadline_s = None
            current.history.append((current_state, why))
            self.env.emit(f"task.{current_state}", NAMESPACE, current.id, current.view())
            for dependent_id in self._dependents.get(current.id, ()):
                pending.append(
                    (self.tasks[dependent_id], "cancelled", f"dependency {current.id!r} {current_state}")
                )

    def _release_hold(self, task: Task) -> None:
        if task.state == "claimed" and task.strategy == "balanced" and task.agent is not None:
            key = (task.agent, task.workflow)
            left = self._holding.get(key, 0) - 1
            if left > 0:
                self._holding[key] = left
            else:
                self._holding.pop(key, None)

    def _make_ready(self, task: Task, *, emit: bool = True) -> None:
        task.state = "ready"
        heapq.heappush(self._ready, (-task.effective_priority, task.seq, task.id))
        if emit:
            self.env.emit("task.ready", NAMESPACE, task.id, task.view())

    # -- reads ----------------------------------------------------------------------------
    def status(self, op: TaskStatus) -> Outcome:
        task = self.tasks.get(op.task_id)
        if task is None:
            return refuse(f"unknown task {op.task_id!r}")
        view = task.view()
        view["history"] = [list(item) for item in task.history]
        return Outcome(True, to_json({"task": view}))

    def list(self, op: TaskList) -> Outcome:
        if op.state and op.state not in STATES:
            return refuse(f"state must be one of {', '.join(STATES)}, got {op.state!r}")
        limit = max(1, min(op.limit, LIST_MAX))
        out: builtins.list[dict[str, Any]] = []
        started = not op.after
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for task in self.tasks.values():
            counts[task.state] += 1
            if not started:
                started = task.id == op.after
                continue
            if (op.state and task.state != op.state) or (op.workflow and task.workflow != op.workflow):
                continue
            if len(out) < limit:
                out.append(task.view())
        return Outcome(True, to_json({"tasks": out, "counts": counts, "total": len(self.tasks)}))

    # -- snapshots --------------------------------------------------------------------------
    def state(self) -> tuple[int, builtins.list[_TaskRecord]]:
        return self._seq, [
            _TaskRecord(
                t.id, t.description, t.priority, list(t.dependencies), t.strategy, t.max_attempts, t.workflow,
                t.seq, t.submitted_s, t.state, t.waiting, t.attempts, t.agent, t.token, t.lease_deadline_s,
                t.result, t.error, t.finished_s, list(t.history),
            )
            for t in self.tasks.values()
        ]

    def restore(self, seq: int, records: builtins.list[_TaskRecord]) -> None:
        self._seq = seq
        self.tasks = {}
        self._dependents = {}
        self._ready = []
        self._holding = {}
        self._last_in_workflow = {}
        for r in records:
            task = Task(
                r.id, r.description, r.priority, tuple(r.dependencies), r.strategy, r.max_attempts, r.workflow,
                r.seq, r.submitted_s, r.state, r.waiting, r.attempts, r.agent, r.token, r.lease_deadline_s,
                r.result, r.error, r.finished_s, [(h[0], h[1]) for h in r.history],
            )
            self.tasks[task.id] = task
            self._last_in_workflow[task.workflow] = task.id
            for dep in task.dependencies:
                self._dependents.setdefault(dep, []).append(task.id)
            if task.state == "ready":
                heapq.heappush(self._ready, (-task.effective_priority, task.seq, task.id))
            if task.state == "claimed" and task.strategy == "balanced" and task.agent is not None:
                key = (task.agent, task.workflow)
                self._holding[key] = self._holding.get(key, 0) + 1


def _cycle(deps_of: dict[str, tuple[str, ...]]) -> list[str] | None:
    """A cycle among the submitted tasks (Kahn's algorithm leaves it), as a
    path that returns to its start; None when they form a DAG."""
    inside = {task: [d for d in deps if d in deps_of] for task, deps in deps_of.items()}
    unresolved = {task: len(deps) for task, deps in inside.items()}
    dependents: dict[str, list[str]] = {task: [] for task in inside}
    for task, deps in inside.items():
        for dep in deps:
            dependents[dep].append(task)
    queue = deque(task for task, n in unresolved.items() if n == 0)
    while queue:
        task = queue.popleft()
        for dependent in dependents[task]:
            unresolved[dependent] -= 1
            if unresolved[dependent] == 0:
                queue.append(dependent)
    left = {task for task, n in unresolved.items() if n > 0}
    if not left:
        return None
    # Every task left waits on another task left: walk until one repeats.
    start = next(task for task in deps_of if task in left)
    path = [start]
    seen = {start: 0}
    current = start
    while True:
        current = next(d for d in inside[current] if d in left)
        if current in seen:
            return [*path[seen[current] :], current]
        seen[current] = len(path)
        path.append(current)


__all__ = ["FINISHED", "MAX_TASKS", "NAMESPACE", "STATES", "STRATEGIES", "Task", "TaskQueue"]
