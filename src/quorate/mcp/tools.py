"""The MCP tools: every one backed by the replicated store, none a stub.

Names and parameters follow claude-flow's tools (``memory_usage``,
``metrics_collect``, ``task_orchestrate``, ``consensus_vote``...), so an
agent prompt written for them works unchanged; each returns a JSON object
(structured output). A failure is a tool error whose one line says what to
do: a refusal quotes the state machine's reason (``stale fencing token
4: task 't3' is held with token 7``), a bad argument names the field, a
cluster that does not answer says so and whether the call may have taken
effect. Redirects to the leader and retries are the client sessions'
business (``quorate.mcp.backend``), never the agent's.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import Field

from quorate.client.agents import Refused, WatchCompacted
from quorate.client.contact import ClientError, ClusterUnreachable
from quorate.errors import ConfigError
from quorate.ids import node_name
from quorate.mcp.backend import Backend
from quorate.mcp.shared import SharedObjects
from quorate.state.agents.ops import (
    LockAcquire,
    LockRelease,
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
from quorate.state.kv import Delete, Get, List, Op, Put, Result
from quorate.state.watch import WATCH_ALL_NAMESPACES

DEFAULT_NAMESPACE = "default"
"""The MCP name of the store's default namespace (``""``), shared with ``quorate kv``."""
MAX_VALUE_BYTES = 1024 * 1024
MAX_KEY_CHARS = 1024
SEARCH_SCAN_KEYS = 10_000
SEARCH_MAX_RESULTS = 100
LIST_MAX_RESULTS = 1000
PRIORITIES = {"low": 0, "medium": 1, "high": 2, "critical": 3}
Component = Literal["consensus", "latency", "throughput", "fault_tolerance", "lag", "cluster"]
METRIC_COMPONENTS: tuple[Component, ...] = ("consensus", "latency", "throughput", "fault_tolerance", "lag", "cluster")
PROBE_NAMESPACE = "quorate.probe"


class ToolFailure(Exception):
    """A failure the agent can act on (the message says how)."""


def store_namespace(namespace: str) -> str:
    if namespace.startswith("@"):
        raise ToolFailure(f"namespace: names beginning with '@' are reserved, got {namespace!r}")
    return "" if namespace == DEFAULT_NAMESPACE else namespace


class Tools:
    """The tool implementations over one ``Backend`` (registered by ``quorate.mcp.server``)."""

    def __init__(self, backend: Backend, shared: SharedObjects) -> None:
        self.backend = backend
        self.shared = shared
        self._last_commit: tuple[float, int] | None = None

    async def run(self, op: Op, *, write: bool = True) -> Result:
        """Execute ``op``; ``ToolFailure`` with a reason an agent can act on when the cluster fails."""
        try:
            result = await self.backend.execute(op, write=write)
        except ClusterUnreachable as exc:
            raise ToolFailure(f"{exc}; nothing was written") from None
        except TimeoutError:
            raise ToolFailure(
                "the cluster did not answer in time (is a majority of its nodes up?); "
                + ("the write may or may not have taken effect: read before retrying" if write else "retry later")
            ) from None
        except ClientError as exc:
            raise ToolFailure(f"the cluster refused: {exc}") from None
        if not result.ok and isinstance(op, Put):
            raise ToolFailure(f"refused: {result.error}")
        return result

    async def document(self, op: Op, *, write: bool = True) -> Any:
        """Execute an agent operation; its JSON document, or its refusal as ``ToolFailure``."""
        result = await self.run(op, write=write)
        document = json.loads(result.value) if result.value else None
        if not result.ok:
            if isinstance(document, dict) and document.get("compacted"):
                raise ToolFailure(f"{result.error}; read the state again and watch from the current revision")
            raise ToolFailure(f"refused: {result.error}")
        return document

    # -- memory ---------------------------------------------------------------------------
    async def memory_usage(
        self,
        action: Annotated[
            Literal["store", "retrieve", "list", "delete", "search"],
            Field(description="store, retrieve, list (by key prefix), delete or search (prefix or substring)"),
        ],
        key: Annotated[str | None, Field(description="The key; for list and search, the prefix or pattern")] = None,
        value: Annotated[str | None, Field(description="The value to store (text; JSON is fine)")] = None,
        namespace: Annotated[str, Field(description="Key space; 'default' is shared with quorate kv")] = DEFAULT_NAMESPACE,
        ttl: Annotated[float | None, Field(description="Seconds until the key expires (store)", gt=0)] = None,
        limit: Annotated[int, Field(description="At most this many entries (list, search)", ge=1, le=LIST_MAX_RESULTS)] = 100,
    ) -> dict[str, Any]:
        """Replicated agent memory: store, retrieve, list, delete or search keys (Raft, fsync'd on a majority)."""
        ns = store_namespace(namespace)
        if action in ("store", "retrieve", "delete") and not key:
            raise ToolFailure(f"key: {action} needs a key")
        if key is not None and len(key) > MAX_KEY_CHARS:
            raise ToolFailure(f"key: at most {MAX_KEY_CHARS} characters, got {len(key)}")
        if action == "store":
            if value is None:
                raise ToolFailure("value: store needs a value")
            size = len(value.encode("utf-8"))
            if size > MAX_VALUE_BYTES:
                raise ToolFailure(f"value: at most {MAX_VALUE_BYTES} bytes, got {size}; nothing was written")
            assert key is not None
            await self.run(Put(key, value, ns, ttl))
            return {"success": True, "action": "store", "key": key, "namespace": namespace, "size": size, "ttl": ttl}
        if action == "retrieve":
            assert key is not None
            result = await self.run(Get(key, ns), write=False)
            return {"success": True, "action": "retrieve", "key": key, "namespace": namespace,
                    "found": result.value is not None, "value": result.value}
        if action == "delete":
            assert key is not None
            result = await self.run(Delete(key, ns))
            return {"success": True, "action": "delete", "key": key, "namespace": namespace, "deleted": result.ok}
        if action == "list":
            result = await self.run(List(key or "", ns, limit), write=False)
            entries = [{"key": k, "value": v} for k, v in result.items or []]
            return {"success": True, "action": "list", "namespace": namespace, "entries": entries, "count": len(entries)}
        pattern = key or ""
        result = await self.run(List("", ns, SEARCH_SCAN_KEYS), write=False)
        items = result.items or []
        found = [
            {"key": k, "value": v}
            for k, v in items
            if k.startswith(pattern) or pattern in k or pattern in v
        ][: min(limit, SEARCH_MAX_RESULTS)]
        return {"success": True, "action": "search", "namespace": namespace, "pattern": pattern, "entries": found,
                "count": len(found), "scanned": len(items), "truncated": len(items) >= SEARCH_SCAN_KEYS}

    async def memory_watch(
        self,
        namespace: Annotated[str, Field(description="Key space ('*': all of them; '@tasks' etc.: agent state)")] = DEFAULT_NAMESPACE,
        prefix: Annotated[str, Field(description="Only keys starting with this")] = "",
        from_revision: Annotated[int, Field(ge=0, description="First revision wanted (0: from now on); pass next_revision back")] = 0,
        limit: Annotated[int, Field(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Changes in order from a revision on; pass next_revision to the next call to miss or repeat nothing."""
        ns = namespace if namespace.startswith("@") or namespace == WATCH_ALL_NAMESPACES else store_namespace(namespace)
        document = await self.document(WatchPoll(prefix, ns, from_revision, limit), write=False)
        for event in document["events"]:
            if event["namespace"] == "":
                event["namespace"] = DEFAULT_NAMESPACE
        return dict(document)

    # -- metrics and status -----------------------------------------------------------------
    async def cluster_status(self) -> dict[str, Any]:
        """Every node's role, term, leader, commit and applied index; the leader; how many more failures it survives."""
        statuses = await self.backend.statuses()
        endpoints = self.backend.endpoints
        nodes: list[dict[str, Any]] = []
        leader = None
        voters: set[int] = set()
        leader_commit = None
        for endpoint, status in zip(endpoints, statuses):
            if status is None:
                nodes.append({"endpoint": f"{endpoint[0]}:{endpoint[1]}", "up": False})
                continue
            if status.role == "leader":
                leader = node_name(status.node)  # type: ignore[arg-type]
                leader_commit = status.commit_index
            voters.update(status.voters)
            nodes.append({
                "node": node_name(status.node),  # type: ignore[arg-type]
                "endpoint": f"{endpoint[0]}:{endpoint[1]}",
                "up": True,
                "role": status.role,
                "term": status.term,
                "leader": None if status.leader is None else node_name(status.leader),  # type: ignore[arg-type]
                "commit_index": status.commit_index,
                "applied_index": status.applied_index,
                "protocol": status.protocol,
            })
        for row in nodes:
            if row["up"] and leader_commit is not None:
                row["lag"] = max(0, leader_commit - row["applied_index"])
        up = sum(1 for row in nodes if row["up"])
        members = len(voters) or len(nodes)
        quorum = members // 2 + 1
        return {
            "leader": leader,
            "nodes": nodes,
            "nodes_up": up,
            "members": members,
            "quorum": quorum,
            "fault_tolerance": {"tolerates": (members - 1) // 2, "more_failures_survived": max(0, up - quorum)},
            "healthy": leader is not None and up >= quorum,
        }

    async def metrics_collect(
        self,
        components: Annotated[
            list[Component],
            Field(description="Which figures: consensus, latency, throughput, fault_tolerance, lag, cluster"),
        ] = list(METRIC_COMPONENTS),  # noqa: B006 - pydantic copies defaults
    ) -> dict[str, Any]:
        """Measured figures of the cluster and of this server's operations (nothing estimated)."""
        status = await self.cluster_status()
        out: dict[str, Any] = {"collected_at_s": round(time.time(), 3)}
        wanted = set(components)
        if "latency" in wanted and not any(s.ok and s.write for s in self.backend.samples):
            # No write measured yet: one probe write measures consensus latency now.
            await self.run(Put("probe", str(time.time()), PROBE_NAMESPACE))
        if "consensus" in wanted:
            leader_row = next((n for n in status["nodes"] if n.get("role") == "leader"), None)
            out["consensus"] = {
                "protocol": leader_row["protocol"] if leader_row else None,
                "leader": status["leader"],
                "term": leader_row["term"] if leader_row else max((n.get("term", 0) for n in status["nodes"]), default=0),
                "commit_index": leader_row["commit_index"] if leader_row else None,
                "write_latency_ms": self.backend.latency_ms(write=True),
            }
        if "latency" in wanted:
            out["latency"] = {"writes_ms": self.backend.latency_ms(write=True), "reads_ms": self.backend.latency_ms(write=False)}
        if "throughput" in wanted:
            out["throughput"] = {
                "ops_per_s_last_10s": self.backend.throughput_ops_per_s(),
                "operations": self.backend.operations,
                "failed": self.backend.failures,
                "commits_per_s": self._commit_rate(status),
            }
        if "fault_tolerance" in wanted:
            out["fault_tolerance"] = {**status["fault_tolerance"], "nodes_up": status["nodes_up"], "members": status["members"]}
        if "lag" in wanted:
            out["lag"] = {n["node"]: n.get("lag") for n in status["nodes"] if n["up"]}
        if "cluster" in wanted:
            out["cluster"] = status
        return out

    def _commit_rate(self, status: dict[str, Any]) -> float | None:
        commit = next((n["commit_index"] for n in status["nodes"] if n.get("role") == "leader"), None)
        now = time.monotonic()
        rate = None
        if commit is not None:
            if self._last_commit is not None and now > self._last_commit[0]:
                rate = round((commit - self._last_commit[1]) / (now - self._last_commit[0]), 3)
            self._last_commit = (now, commit)
        return rate

    # -- tasks -------------------------------------------------------------------------------
    async def task_orchestrate(
        self,
        task: Annotated[str, Field(description="What to do (the task's description)", max_length=65536)],
        strategy: Annotated[
            Literal["parallel", "sequential", "adaptive", "balanced"],
            Field(description="parallel: when dependencies are done; sequential: after the previous task of the workflow; "
                  "balanced: one per agent at a time; adaptive: retried tasks go first"),
        ] = "parallel",
        priority: Annotated[
            Literal["low", "medium", "high", "critical"] | int, Field(description="low|medium|high|critical or an integer")
        ] = "medium",
        dependencies: Annotated[list[str], Field(description="Task ids that must complete first")] = [],  # noqa: B006
        task_id: Annotated[str | None, Field(description="An id of your choice (default: numbered)")] = None,
        max_attempts: Annotated[int, Field(ge=1, le=100, description="Claims, lost leases and failures allowed")] = 3,
        workflow: Annotated[str, Field(description="Groups tasks for sequential and balanced")] = "",
    ) -> dict[str, Any]:
        """Add a task to the replicated queue (a dependency cycle or an unknown dependency is refused)."""
        level = PRIORITIES[priority] if isinstance(priority, str) else priority
        spec = TaskSpec(task, task_id or "", level, tuple(dependencies), strategy, max_attempts, workflow)
        document = await self.document(TaskSubmit((spec,)))
        created = document["tasks"][0]
        return {"success": True, "taskId": created["id"], "status": created["state"], "task": created}

    async def task_claim(
        self,
        agent: Annotated[str, Field(description="Your agent name")],
        lease_s: Annotated[float, Field(gt=0, le=86400, description="Seconds you hold it without a heartbeat")] = 30.0,
        task_id: Annotated[str | None, Field(description="A particular ready task (default: the best one)")] = None,
        workflow: Annotated[str, Field(description="Only tasks of this workflow")] = "",
    ) -> dict[str, Any]:
        """Take the highest-priority ready task; keep its token: heartbeat and complete need it."""
        document = await self.document(TaskClaim(agent, lease_s, task_id or "", workflow))
        claimed = document["task"]
        return {"claimed": claimed is not None, "task": claimed, "token": claimed["token"] if claimed else None}

    async def task_heartbeat(
        self, task_id: str, token: Annotated[int, Field(description="The fencing token task_claim gave")],
        lease_s: Annotated[float, Field(gt=0, le=86400)] = 30.0,
    ) -> dict[str, Any]:
        """Extend your lease of a claimed task."""
        return {"success": True, "task": (await self.document(TaskHeartbeat(task_id, token, lease_s)))["task"]}

    async def task_complete(
        self, task_id: str, token: Annotated[int, Field(description="The fencing token task_claim gave")],
        result: Annotated[str, Field(max_length=65536)],
    ) -> dict[str, Any]:
        """Complete a claimed task with its result (exactly once: a stale token is refused)."""
        return {"success": True, "task": (await self.document(TaskComplete(task_id, token, result)))["task"]}

    async def task_fail(
        self, task_id: str, token: int, error: Annotated[str, Field(max_length=65536)] = ""
    ) -> dict[str, Any]:
        """Give a claimed task up; it is offered again while attempts remain."""
        return {"success": True, "task": (await self.document(TaskFail(task_id, token, error)))["task"]}

    async def task_cancel(self, task_id: str, reason: str = "") -> dict[str, Any]:
        """Cancel a task (and what depends on it)."""
        return {"success": True, "task": (await self.document(TaskCancel(task_id, reason)))["task"]}

    async def task_status(self, task_id: str) -> dict[str, Any]:
        """A task's state, holder, attempts, result and history."""
        return {"task": (await self.document(TaskStatus(task_id), write=False))["task"]}

    async def task_list(
        self,
        state: Literal["blocked", "ready", "claimed", "completed", "failed", "cancelled"] | None = None,
        workflow: str = "",
        limit: Annotated[int, Field(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Tasks in submission order, with counts by state."""
        return dict(await self.document(TaskList(state or "", workflow, limit), write=False))

    # -- consensus -----------------------------------------------------------------------------
    async def consensus_propose(
        self,
        proposal_id: str,
        question: Annotated[str, Field(max_length=65536)],
        options: Annotated[list[str], Field(min_length=2, max_length=64)],
        rule: Literal["majority", "two_thirds", "unanimity", "weighted"] = "majority",
        duration_s: Annotated[float, Field(gt=0, description="Seconds until the vote closes")] = 60.0,
        electorate: Annotated[list[str], Field(description="Registered agent names (default: all)")] = [],  # noqa: B006
        weights: Annotated[dict[str, int], Field(description="Weighted rule: voter -> weight")] = {},  # noqa: B006
        proposer: str = "",
    ) -> dict[str, Any]:
        """Open a proposal voted on by registered agents with signed ballots."""
        op = ProposalOpen(proposal_id, question, tuple(options), rule, duration_s, tuple(electorate),
                          tuple(sorted(weights.items())), proposer)
        return {"success": True, "proposal": (await self.document(op))["proposal"]}

    async def consensus_vote(
        self,
        proposal_id: str,
        voter: Annotated[str, Field(description="Your registered agent name")],
        option: str,
        signature: Annotated[
            str, Field(description="Ed25519 signature of your ballot, hex (quorate agents sign VOTER PROPOSAL OPTION)")
        ],
    ) -> dict[str, Any]:
        """Cast a signed ballot; a forged, duplicate or late ballot is refused with the reason."""
        try:
            raw = bytes.fromhex(signature)
        except ValueError:
            raise ToolFailure("signature: must be hex (128 hex digits for an Ed25519 signature)") from None
        proposal = (await self.document(VoteCast(proposal_id, voter, option, raw)))["proposal"]
        return {"success": True, "accepted": True, "proposal": proposal}

    async def consensus_status(self, proposal_id: str) -> dict[str, Any]:
        """A proposal's state, outcome, tally, ballots and refused ballots."""
        return {"proposal": (await self.document(ProposalStatus(proposal_id), write=False))["proposal"]}

    # -- locks ---------------------------------------------------------------------------------
    async def lock_acquire(
        self, name: str, holder: str, lease_s: Annotated[float, Field(gt=0, le=86400)] = 30.0
    ) -> dict[str, Any]:
        """Take a lock (or renew yours); its fencing token orders every grant."""
        document = await self.document(LockAcquire(name, holder, lease_s))
        return {"acquired": True, "lock": document["lock"], "token": document["lock"]["token"]}

    async def lock_release(self, name: str, holder: str, token: int) -> dict[str, Any]:
        """Release a lock you hold (with its token)."""
        await self.document(LockRelease(name, holder, token))
        return {"released": True, "name": name}

    # -- CRDTs ---------------------------------------------------------------------------------
    async def shared_counter(
        self,
        name: str,
        action: Literal["increment", "decrement", "get"] = "get",
        amount: Annotated[int, Field(ge=1)] = 1,
    ) -> dict[str, Any]:
        """A counter every agent can change, offline too (a PN-Counter; no conflicts)."""
        counter = self.shared.counter(name)
        if action == "increment":
            counter.increment(self.shared.replica, amount)
        elif action == "decrement":
            counter.decrement(self.shared.replica, amount)
        synced = await self.shared.sync("counter", name)
        return {"name": name, "value": self.shared.counter(name).value, "synced": synced}

    async def shared_set(
        self,
        name: str,
        action: Literal["add", "remove", "members", "contains"] = "members",
        element: str | None = None,
    ) -> dict[str, Any]:
        """A set every agent can change, offline too (an add-wins OR-Set)."""
        if action in ("add", "remove", "contains") and element is None:
            raise ToolFailure(f"element: {action} needs an element")
        items = self.shared.set(name)
        if action == "add":
            items.add(element)
        elif action == "remove":
            items.remove(element)
        synced = await self.shared.sync("set", name)
        members = sorted(str(e) for e in self.shared.set(name).elements)
        out: dict[str, Any] = {"name": name, "members": members, "synced": synced}
        if action == "contains":
            out["contains"] = element in members
        return out

    async def shared_text(
        self,
        name: str,
        action: Literal["insert", "delete", "read"] = "read",
        position: Annotated[int, Field(ge=0)] = 0,
        text: str = "",
        length: Annotated[int, Field(ge=1)] = 1,
    ) -> dict[str, Any]:
        """A text every agent can edit, offline too (FugueMax: concurrent edits never interleave)."""
        document = self.shared.text(name)
        if action != "read":
            await self.shared.sync("text", name)  # edit the latest text we can see
        if action == "insert":
            if position > len(document):
                raise ToolFailure(f"position: the text has {len(document)} characters, got {position}")
            document.insert(position, text)
        elif action == "delete":
            if position + length > len(document):
                raise ToolFailure(f"position/length: the text has {len(document)} characters")
            document.delete(position, length)
        synced = await self.shared.sync("text", name)
        content = self.shared.text(name).to_string()
        return {"name": name, "text": content, "length": len(content), "synced": synced}


def reason_of(exc: BaseException) -> str:
    """The one line an agent reads for a failed call."""
    if isinstance(exc, ToolFailure | Refused | WatchCompacted | ConfigError):
        return str(exc)
    return f"internal error ({type(exc).__name__}): {exc}"


TOOL_NAMES = (
    "memory_usage",
    "memory_watch",
    "metrics_collect",
    "cluster_status",
    "task_orchestrate",
    "task_claim",
    "task_heartbeat",
    "task_complete",
    "task_fail",
    "task_cancel",
    "task_status",
    "task_list",
    "consensus_propose",
    "consensus_vote",
    "consensus_status",
    "lock_acquire",
    "lock_release",
    "shared_counter",
    "shared_set",
    "shared_text",
)

__all__ = ["DEFAULT_NAMESPACE", "MAX_VALUE_BYTES", "TOOL_NAMES", "ToolFailure", "Tools", "reason_of"]
