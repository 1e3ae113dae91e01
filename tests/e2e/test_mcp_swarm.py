"""Five agents, each with its own ``quorate mcp`` (the SDK's client over
stdio), against a real 3-node cluster: shared memory, 50 tasks with
dependencies, a signed vote; the leader is SIGKILLed mid-run and an agent
dies holding a task.

Checked: every stored key reads back; every task completed exactly once
(one ``task.completed`` record each in the audit trail, the dead agent's
task by another agent with a larger fencing token, the dead agent's late
completion refused as stale); forged and duplicate ballots refused; and the
outcome is the same on every replica (each node in turn made leader by a
leadership transfer answers the proposal's status from its own state)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from tests.e2e.conftest import FAST_RAFT, WAIT_LIMIT_S, free_base_port

from quorate.client import AgentIdentity, AsyncClient
from quorate.client.agents import AsyncAudit, AsyncVotes
from quorate.ids import NodeId
from quorate.runtime.aio.cluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # five MCP servers and a cluster: ~1 min

AGENTS = ("a1", "a2", "a3", "a4", "a5")
TASKS = 50
CHAINS = 5
"""Task i depends on task i - CHAINS: five chains of ten."""
DEAD_LEASE_S = 2.0
KILL_AFTER_COMPLETED = 15


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    made = LocalCluster(
        tmp_path_factory.mktemp("swarm") / "cluster", nodes=3, base_port=free_base_port(3), insecure=True,
        options=dict(FAST_RAFT),
    )
    made.write_configs()
    made.start_all()
    try:
        yield made
    finally:
        made.kill_all()


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, arguments, result.content)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def refusal(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, result.structured_content)
    text = str(result.content[0].text)  # type: ignore[union-attr]
    assert "Traceback" not in text
    return text


async def leader_of(cluster: LocalCluster) -> int | None:
    client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=0.5)
    try:
        statuses = [s for s in await client.cluster_status() if s is not None]
    finally:
        await client.close()
    leaders = {s.leader for s in statuses if s.role == "leader"}
    return leaders.pop() if len(leaders) == 1 else None


async def until(condition: Any, what: str, limit_s: float = WAIT_LIMIT_S * 3) -> Any:
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        value = await condition()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def test_five_agents_share_memory_finish_50_tasks_once_and_agree_on_a_vote(cluster: LocalCluster) -> None:
    keys = {name: AgentIdentity.generate(name) for name in AGENTS}

    async def scenario() -> None:
        assert await until(lambda: leader_of(cluster), "a leader")
        setup = AsyncClient(cluster.endpoints, insecure=True)
        votes = AsyncVotes(setup.execute)
        for identity in keys.values():
            await votes.register(identity)
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "quorate", "mcp", "--endpoints", ",".join(cluster.endpoints), "--insecure"],
            env=dict(os.environ),
        )
        async with AsyncExitStack() as stack:
            clients = {name: await stack.enter_async_context(Client(params)) for name in AGENTS}
            lead = clients["a1"]

            # The agent that dies: it claims a task and is never heard of again.
            await call(lead, "task_orchestrate", task="the dead agent's task", task_id="orphan", priority="critical")
            dying = AsyncExitStack()
            doomed = await dying.enter_async_context(Client(params))
            held = await call(doomed, "task_claim", agent="a5", lease_s=DEAD_LEASE_S, task_id="orphan")
            dead_token = held["token"]
            await dying.aclose()  # its MCP server is gone with it
            status = await until(
                lambda: _state_is(lead, "orphan", "ready"), "the orphan's lease to expire"
            )
            assert status["attempts"] == 1
            reason = await refusal(lead, "task_complete", task_id="orphan", token=dead_token, result="late")
            assert "stale fencing token" in reason

            for i in range(TASKS):
                dependencies = [f"t{i - CHAINS}"] if i >= CHAINS else []
                await call(lead, "task_orchestrate", task=f"step {i}", task_id=f"t{i}", dependencies=dependencies)

            killed: list[int] = []

            async def work(name: str) -> int:
                client = clients[name]
                done = 0
                while True:
                    listing = await call(client, "task_list", limit=1)
                    completed = listing["counts"].get("completed", 0)
                    if completed == TASKS + 1:
                        return done
                    if name == "a1" and not killed and completed >= KILL_AFTER_COMPLETED:
                        leader = await leader_of(cluster)
                        if leader is not None:
                            cluster.kill(NodeId(leader))  # SIGKILL, mid-run
                            killed.append(leader)
                    claim = await call(client, "task_claim", agent=name, lease_s=30)
                    if not claim["claimed"]:
                        await asyncio.sleep(0.05)
                        continue
                    task = claim["task"]
                    await call(client, "memory_usage", action="store", namespace="swarm",
                               key=f"result/{task['id']}", value=f"{task['description']} by {name}")
                    await call(client, "shared_counter", name="steps", action="increment")
                    finished = await call(client, "task_complete", task_id=task["id"], token=claim["token"], result=name)
                    assert finished["task"]["state"] == "completed"
                    done += 1

            done = await asyncio.gather(*(work(name) for name in AGENTS))
            assert sum(done) == TASKS + 1 and killed, (done, killed)

            # Shared memory: every key every agent stored reads back, from any agent.
            for i, name in zip(range(TASKS), AGENTS * TASKS):
                got = await call(clients[name], "memory_usage", action="retrieve", namespace="swarm", key=f"result/t{i}")
                assert got["found"] and got["value"].startswith(f"step {i} by ")
            assert (await call(lead, "shared_counter", name="steps"))["value"] == TASKS + 1

            # Exactly once: one completion record per task; the orphan went to a live agent with a newer token.
            audit = AsyncAudit(setup.execute)
            trail = await audit.query(kind="task.completed", limit=1000)
            subjects = [r["subject"] for r in trail["records"]]
            assert sorted(subjects) == sorted(["orphan", *(f"t{i}" for i in range(TASKS))])
            orphan = (await call(lead, "task_status", task_id="orphan"))["task"]
            assert orphan["agent"] != "a5" and orphan["token"] > dead_token and orphan["attempts"] == 2
            for i in range(CHAINS, TASKS):  # a dependency completed before its dependent was claimed
                before = next(r["seq"] for r in trail["records"] if r["subject"] == f"t{i - CHAINS}")
                claimed = (await audit.query(kind="task.claimed", subject=f"t{i}"))["records"][0]["seq"]
                assert before < claimed, i

            # The vote: signed ballots, a forgery and a double vote refused.
            await call(lead, "consensus_propose", proposal_id="ship", question="Ship it?", options=["yes", "no"])

            def ballot(voter: str, option: str, signer: str | None = None) -> str:
                identity = keys[signer or voter]
                if signer is None:
                    return identity.sign_ballot("ship", option).hex()
                import nacl.signing

                from quorate.state.agents import ballot_bytes

                key = nacl.signing.SigningKey(identity.signing_key)
                return bytes(key.sign(ballot_bytes("ship", voter, option)).signature).hex()

            await call(clients["a1"], "consensus_vote", proposal_id="ship", voter="a1", option="yes", signature=ballot("a1", "yes"))
            forged = await refusal(clients["a2"], "consensus_vote", proposal_id="ship", voter="a3", option="no",
                                   signature=ballot("a3", "no", signer="a2"))
            assert "bad signature" in forged
            double = await refusal(clients["a1"], "consensus_vote", proposal_id="ship", voter="a1", option="no",
                                   signature=ballot("a1", "no"))
            assert "already voted" in double
            await call(clients["a2"], "consensus_vote", proposal_id="ship", voter="a2", option="yes", signature=ballot("a2", "yes"))
            decided = await call(clients["a3"], "consensus_vote", proposal_id="ship", voter="a3", option="yes",
                                 signature=ballot("a3", "yes"))
            assert decided["proposal"]["state"] == "decided" and decided["proposal"]["outcome"] == "yes"

        # The same outcome on every replica: each node, made leader in turn, answers from its own state.
        cluster.start(NodeId(killed[0]))
        outcomes = {}
        for node in cluster.ids:
            await until(lambda n=node: _lead(setup, cluster, n), f"n{node} to lead")
            proposal = await votes.status("ship")
            outcomes[int(node)] = (proposal["outcome"], proposal["refusals"], sorted(v["voter"] for v in proposal["votes"]))
        assert len(set(map(repr, outcomes.values()))) == 1, outcomes
        assert outcomes[1] == ("yes", {"bad signature": 1, "voter has already voted": 1}, ["a1", "a2", "a3"])
        await setup.close()

    asyncio.run(scenario())


async def _state_is(client: Client, task_id: str, state: str) -> dict[str, Any] | None:
    task = (await call(client, "task_status", task_id=task_id))["task"]
    return task if task["state"] == state else None


async def _lead(client: AsyncClient, cluster: LocalCluster, node: NodeId) -> bool:
    if await leader_of(cluster) == node:
        return True
    try:
        await client.admin("transfer", int(node))
    except Exception:  # a transfer refused mid-election: ask again next round
        return False
    return await leader_of(cluster) == node
