"""``quorate mcp`` as a real subprocess, driven by the MCP SDK's own client,
over stdio and streamable HTTP, against a real 3-node cluster.

Every tool is called on its success path and its refusal path; the tool
list and every input schema's parameters are pinned (an agent prompt
written for them must keep working); bad input — malformed JSON-RPC, an
unknown tool, missing or ill-typed arguments, an oversize value, an HTTP
request without a valid token — gets a clear MCP error, writes nothing and
leaves the server serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from tests.e2e.conftest import FAST_RAFT, START_LIMIT_S, WAIT_LIMIT_S, free_base_port

from quorate.client import AgentIdentity, AsyncClient
from quorate.client.agents import AsyncVotes
from quorate.runtime.aio.cluster import LocalCluster, wait_for
from quorate.state.agents import ballot_bytes

PINNED_TOOLS = {
    "memory_usage": ({"action"}, {"action", "key", "value", "namespace", "ttl", "limit"}),
    "memory_watch": (set(), {"namespace", "prefix", "from_revision", "limit"}),
    "metrics_collect": (set(), {"components"}),
    "cluster_status": (set(), set()),
    "task_orchestrate": ({"task"}, {"task", "strategy", "priority", "dependencies", "task_id", "max_attempts", "workflow"}),
    "task_claim": ({"agent"}, {"agent", "lease_s", "task_id", "workflow"}),
    "task_heartbeat": ({"task_id", "token"}, {"task_id", "token", "lease_s"}),
    "task_complete": ({"task_id", "token", "result"}, {"task_id", "token", "result"}),
    "task_fail": ({"task_id", "token"}, {"task_id", "token", "error"}),
    "task_cancel": ({"task_id"}, {"task_id", "reason"}),
    "task_status": ({"task_id"}, {"task_id"}),
    "task_list": (set(), {"state", "workflow", "limit"}),
    "consensus_propose": (
        {"proposal_id", "question", "options"},
        {"proposal_id", "question", "options", "rule", "duration_s", "electorate", "weights", "proposer"},
    ),
    "consensus_vote": ({"proposal_id", "voter", "option", "signature"}, {"proposal_id", "voter", "option", "signature"}),
    "consensus_status": ({"proposal_id"}, {"proposal_id"}),
    "lock_acquire": ({"name", "holder"}, {"name", "holder", "lease_s"}),
    "lock_release": ({"name", "holder", "token"}, {"name", "holder", "token"}),
    "shared_counter": ({"name"}, {"name", "action", "amount"}),
    "shared_set": ({"name"}, {"name", "action", "element"}),
    "shared_text": ({"name"}, {"name", "action", "position", "text", "length"}),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    made = LocalCluster(
        tmp_path_factory.mktemp("mcp") / "cluster", nodes=3, base_port=free_base_port(3), insecure=True,
        options=dict(FAST_RAFT),
    )
    made.write_configs()
    made.start_all()
    try:
        assert wait_for(lambda: _has_leader(made), WAIT_LIMIT_S, 0.1)
        yield made
    finally:
        made.kill_all()


def _has_leader(cluster: LocalCluster) -> bool:
    async def ask() -> bool:
        client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=0.5)
        try:
            return any(s is not None and s.role == "leader" for s in await client.cluster_status())
        finally:
            await client.close()

    return asyncio.run(ask())


def server_args(cluster: LocalCluster, *extra: str) -> list[str]:
    return ["-m", "quorate", "mcp", "--endpoints", ",".join(cluster.endpoints), "--insecure", *extra]


@asynccontextmanager
async def stdio_client(cluster: LocalCluster) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=server_args(cluster), env=dict(os.environ))
    async with Client(params) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert "Traceback" not in text
    return str(text)


def register_agents(cluster: LocalCluster, *names: str) -> dict[str, AgentIdentity]:
    identities = {name: AgentIdentity.generate(name) for name in names}

    async def register() -> None:
        client = AsyncClient(cluster.endpoints, insecure=True)
        try:
            votes = AsyncVotes(client.execute)
            for identity in identities.values():
                await votes.register(identity)
        finally:
            await client.close()

    asyncio.run(register())
    return identities


def test_tool_list_and_schemas_are_pinned(cluster: LocalCluster) -> None:
    async def check() -> None:
        async with stdio_client(cluster) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == set(PINNED_TOOLS)
            for name, (required, properties) in PINNED_TOOLS.items():
                schema = tools[name].input_schema
                assert set(schema.get("required", [])) == required, name
                assert set(schema["properties"]) == properties, name
                assert tools[name].output_schema is not None and tools[name].description
            assert tools["memory_usage"].input_schema["properties"]["action"]["enum"] == [
                "store", "retrieve", "list", "delete", "search",
            ]

    asyncio.run(check())


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of its own (the every-tool test pins counts and electorates)."""
    made = LocalCluster(tmp_path / "cluster", nodes=3, base_port=free_base_port(3), insecure=True, options=dict(FAST_RAFT))
    made.write_configs()
    made.start_all()
    try:
        assert wait_for(lambda: _has_leader(made), WAIT_LIMIT_S, 0.1)
        yield made
    finally:
        made.kill_all()


@asynccontextmanager
async def transport_client(transport: str, cluster: LocalCluster) -> AsyncIterator[Client]:
    """An SDK client of ``quorate mcp`` over stdio or streamable HTTP (a real subprocess either way)."""
    if transport == "stdio":
        async with stdio_client(cluster) as client:
            yield client
        return
    with serving_http(cluster) as url:
        http = httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret"}, timeout=60)
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_every_tool_succeeds_and_refuses(transport: str, fresh_cluster: LocalCluster) -> None:
    cluster = fresh_cluster
    keys = register_agents(cluster, "ann", "bob", "cat")

    async def drive() -> None:
        async with transport_client(transport, cluster) as client:
            # memory
            await call(client, "memory_usage", action="store", key="notes/1", value="alpha", namespace="team")
            await call(client, "memory_usage", action="store", key="notes/2", value="beta gamma", namespace="team")
            got = await call(client, "memory_usage", action="retrieve", key="notes/1", namespace="team")
            assert got["found"] and got["value"] == "alpha"
            listed = await call(client, "memory_usage", action="list", key="notes/", namespace="team")
            assert [e["key"] for e in listed["entries"]] == ["notes/1", "notes/2"]
            found = await call(client, "memory_usage", action="search", key="gamma", namespace="team")
            assert [e["key"] for e in found["entries"]] == ["notes/2"]
            assert (await call(client, "memory_usage", action="delete", key="notes/2", namespace="team"))["deleted"]
            assert not (await call(client, "memory_usage", action="retrieve", key="notes/2", namespace="team"))["found"]
            assert "key" in await refused(client, "memory_usage", action="store", value="x")
            assert "reserved" in await refused(client, "memory_usage", action="store", key="k", value="v", namespace="@tasks")
            watched = await call(client, "memory_watch", namespace="team", from_revision=1)
            assert [e["kind"] for e in watched["events"]][-1] == "delete"
            # status and metrics
            status = await call(client, "cluster_status")
            assert status["leader"] and status["nodes_up"] == 3 and status["fault_tolerance"]["more_failures_survived"] == 1
            metrics = await call(client, "metrics_collect", components=["consensus", "latency", "lag"])
            assert metrics["consensus"]["leader"] == status["leader"]
            assert metrics["latency"]["writes_ms"]["samples"] >= 1 and metrics["latency"]["writes_ms"]["p50"] > 0
            assert "components" in await refused(client, "metrics_collect", components=["bogus"])
            # tasks
            a = await call(client, "task_orchestrate", task="fetch", task_id="fetch", priority="high")
            assert a["taskId"] == "fetch" and a["status"] == "ready"
            await call(client, "task_orchestrate", task="parse", task_id="parse", dependencies=["fetch"])
            assert "unknown task" in await refused(client, "task_orchestrate", task="x", dependencies=["nope"])
            claim = await call(client, "task_claim", agent="ann", lease_s=30)
            assert claim["task"]["id"] == "fetch"
            token = claim["token"]
            await call(client, "task_heartbeat", task_id="fetch", token=token)
            assert "stale fencing token" in await refused(client, "task_complete", task_id="fetch", token=token - 1, result="x")
            done = await call(client, "task_complete", task_id="fetch", token=token, result="42")
            assert done["task"]["state"] == "completed"
            assert "already completed" in await refused(client, "task_complete", task_id="fetch", token=token, result="x")
            parse = await call(client, "task_claim", agent="bob")
            await call(client, "task_fail", task_id="parse", token=parse["token"], error="flaky")
            assert (await call(client, "task_status", task_id="parse"))["task"]["state"] == "ready"
            assert "stale fencing token" in await refused(client, "task_fail", task_id="parse", token=parse["token"])
            await call(client, "task_cancel", task_id="parse", reason="not needed")
            assert "already cancelled" in await refused(client, "task_cancel", task_id="parse")
            listing = await call(client, "task_list")
            assert listing["counts"]["completed"] == 1 and listing["counts"]["cancelled"] == 1
            assert "unknown task" in await refused(client, "task_status", task_id="ghost")
            # signed votes
            proposal = await call(client, "consensus_propose", proposal_id="release", question="ship?", options=["yes", "no"])
            assert proposal["proposal"]["electorate"] == ["ann", "bob", "cat"]
            assert "already exists" in await refused(client, "consensus_propose", proposal_id="release", question="q", options=["a", "b"])

            def signed(voter: str, option: str) -> str:
                return keys[voter].sign_ballot("release", option).hex()

            await call(client, "consensus_vote", proposal_id="release", voter="ann", option="yes", signature=signed("ann", "yes"))
            forged = _signature(keys["ann"], "release", "bob", "yes")
            assert "bad signature" in await refused(client, "consensus_vote", proposal_id="release", voter="bob", option="yes", signature=forged)
            assert "already voted" in await refused(client, "consensus_vote", proposal_id="release", voter="ann", option="no", signature=signed("ann", "no"))
            assert "signature" in await refused(client, "consensus_vote", proposal_id="release", voter="bob", option="yes", signature="zz")
            decided = await call(client, "consensus_vote", proposal_id="release", voter="bob", option="yes", signature=signed("bob", "yes"))
            assert decided["proposal"]["state"] == "decided" and decided["proposal"]["outcome"] == "yes"
            state = (await call(client, "consensus_status", proposal_id="release"))["proposal"]
            assert state["refusals"] == {"bad signature": 1, "voter has already voted": 1}
            # locks
            lock = await call(client, "lock_acquire", name="db", holder="ann", lease_s=30)
            assert "held by 'ann'" in await refused(client, "lock_acquire", name="db", holder="bob")
            assert "stale fencing token" in await refused(client, "lock_release", name="db", holder="ann", token=lock["token"] - 1)
            assert (await call(client, "lock_release", name="db", holder="ann", token=lock["token"]))["released"]
            # CRDTs
            assert (await call(client, "shared_counter", name="seen", action="increment", amount=3))["value"] == 3
            assert (await call(client, "shared_counter", name="seen", action="decrement"))["value"] == 2
            assert (await call(client, "shared_set", name="tags", action="add", element="x"))["members"] == ["x"]
            assert "element" in await refused(client, "shared_set", name="tags", action="add")
            await call(client, "shared_text", name="doc", action="insert", text="hello")
            assert (await call(client, "shared_text", name="doc", action="insert", position=5, text=" world"))["text"] == "hello world"
            assert "position" in await refused(client, "shared_text", name="doc", action="insert", position=99, text="x")
            # unknown tool, missing and ill-typed arguments, oversize value: errors, and the server serves on
            assert "task" in await refused(client, "task_orchestrate")
            assert "token" in await refused(client, "task_complete", task_id="fetch", token="seven", result="x")
            big = "x" * (1024 * 1024 + 1)
            assert "value" in await refused(client, "memory_usage", action="store", key="big", value=big)
            assert not (await call(client, "memory_usage", action="retrieve", key="big"))["found"]  # nothing half-written
            assert (await call(client, "cluster_status"))["leader"]

    asyncio.run(drive())


def _signature(identity: AgentIdentity, proposal: str, voter: str, option: str) -> str:
    import nacl.signing

    return bytes(nacl.signing.SigningKey(identity.signing_key).sign(ballot_bytes(proposal, voter, option)).signature).hex()


def test_an_unknown_tool_is_an_mcp_error(cluster: LocalCluster) -> None:
    async def drive() -> None:
        async with stdio_client(cluster) as client:
            result = await client.call_tool("no_such_tool", {})
            assert result.is_error and "no_such_tool" in result.content[0].text  # type: ignore[union-attr]

    asyncio.run(drive())


def test_a_malformed_json_rpc_line_is_dropped_and_the_server_keeps_serving(cluster: LocalCluster) -> None:
    """Over stdio the SDK drops a line that is not JSON-RPC (over HTTP it is
    answered 400 with a parse error: see the HTTP test) and serves the next."""
    hello = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    lines = b"{this is not json\n" + b'{"jsonrpc": "2.0", "id": "x"}\n' + (json.dumps(hello) + "\n").encode()
    done = subprocess.run(
        [sys.executable, *server_args(cluster)], input=lines, capture_output=True, timeout=120,
    )
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [a["result"]["serverInfo"]["name"] for a in answers if a.get("id") == 1] == ["quorate"]
    assert b"Traceback" not in done.stderr


@pytest.fixture
def http_server(cluster: LocalCluster) -> Iterator[str]:
    with serving_http(cluster) as url:
        yield url


@contextmanager
def serving_http(cluster: LocalCluster, *extra: str) -> Iterator[str]:
    port = free_base_port(1)
    process = subprocess.Popen(
        [sys.executable, *server_args(cluster, "--transport", "http", "--port", str(port), *(extra or ("--token", "s3cret")))],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    scheme = "https" if "--mtls-dir" in extra else "http"
    url = f"{scheme}://127.0.0.1:{port}/mcp"
    try:
        assert wait_for(lambda: _listening(port) or process.poll() is not None, START_LIMIT_S, 0.1)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_http_refuses_requests_without_the_token_and_serves_with_it(http_server: str) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        answer = httpx2.post(http_server, json=hello, headers={"Accept": "application/json, text/event-stream", **headers})
        assert answer.status_code == 401
        assert "bearer token" in answer.json()["error"]["message"]

    garbage = httpx2.post(
        http_server, content=b"{not json", headers={
            "Authorization": "Bearer s3cret", "Accept": "application/json, text/event-stream", "Content-Type": "application/json",
        },
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == -32700

    async def drive() -> None:
        http = httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret"}, timeout=30)
        async with Client(streamable_http_client(http_server, http_client=http)) as client:
            assert len((await client.list_tools()).tools) == len(PINNED_TOOLS)
            await call(client, "memory_usage", action="store", key="via-http", value="yes")
            assert (await call(client, "memory_usage", action="retrieve", key="via-http"))["value"] == "yes"
            assert "refused" in await refused(client, "task_status", task_id="ghost")

    asyncio.run(drive())


def test_a_namespace_is_a_resource_and_subscribers_hear_of_changes(cluster: LocalCluster) -> None:
    async def drive() -> None:
        async with stdio_client(cluster) as client, stdio_client(cluster) as writer:
            uri = "quorate://memory/board"
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                await call(writer, "memory_usage", action="store", key="status", value="green", namespace="board")
                event = await asyncio.wait_for(subscription.__anext__(), WAIT_LIMIT_S)
                assert str(event.uri) == uri  # type: ignore[union-attr]
            contents = await client.read_resource(uri)
            listing = json.loads(contents.contents[0].text)  # type: ignore[union-attr]
            assert listing["entries"] == [{"key": "status", "value": "green"}]

    asyncio.run(drive())


def test_http_without_a_token_or_mutual_tls_does_not_start(cluster: LocalCluster) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QUORATE_MCP_TOKEN"}
    done = subprocess.run(
        [sys.executable, *server_args(cluster, "--transport", "http")], capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 2 and "bearer token" in done.stderr and "Traceback" not in done.stderr


def test_a_watch_from_a_compacted_revision_is_a_clear_error(cluster: LocalCluster) -> None:
    from quorate.state.watch import CHANGE_HISTORY_EVENTS

    async def fill() -> None:
        clients = [AsyncClient(cluster.endpoints, insecure=True) for _ in range(16)]
        try:
            async def writer(i: int, client: AsyncClient) -> None:
                for j in range(i, CHANGE_HISTORY_EVENTS + 16, len(clients)):
                    await client.put(f"fill/{j}", "x", namespace="fill")

            await asyncio.gather(*(writer(i, c) for i, c in enumerate(clients)))
        finally:
            for client in clients:
                await client.close()

    started = time.monotonic()
    asyncio.run(fill())
    assert time.monotonic() - started < 300

    async def drive() -> None:
        async with stdio_client(cluster) as client:
            reason = await refused(client, "memory_watch", namespace="*", from_revision=1)
            assert "compacted" in reason and "watch from the current revision" in reason
            assert (await call(client, "memory_watch", namespace="fill", from_revision=0))["events"] == []
            assert (await call(client, "cluster_status"))["leader"]

    asyncio.run(drive())


def test_mcp_needs_its_tool_names_and_parameters_to_match(tmp_path: Path) -> None:
    """The pinned table and the server's tool tuple are the same list."""
    from quorate.mcp.tools import TOOL_NAMES

    assert set(TOOL_NAMES) == set(PINNED_TOOLS)


def test_http_with_mutual_tls_serves_certified_clients_only(cluster: LocalCluster, tmp_path: Path) -> None:
    import ssl

    certs = tmp_path / "certs"
    for args in (["init"], ["issue", "mcp"], ["issue", "agent"]):
        subprocess.run([sys.executable, "-m", "quorate", "certs", *args, "--dir", str(certs)], check=True, capture_output=True)
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}

    def context(with_certificate: bool) -> ssl.SSLContext:
        made = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        made.check_hostname = False  # the certificate names the service ("mcp"), not an address
        if with_certificate:
            made.load_cert_chain(certs / "agent.crt", certs / "agent.key")
        return made

    with serving_http(cluster, "--mtls-dir", str(certs)) as url:
        with pytest.raises(httpx2.TransportError):  # no client certificate: the handshake fails
            httpx2.post(url, json=hello, headers=headers, verify=context(False))

        async def drive() -> None:
            http = httpx2.AsyncClient(verify=context(True), timeout=30)
            async with Client(streamable_http_client(url, http_client=http)) as client:
                assert len((await client.list_tools()).tools) == len(PINNED_TOOLS)
                await call(client, "memory_usage", action="store", key="via-mtls", value="yes")
                assert (await call(client, "memory_usage", action="retrieve", key="via-mtls"))["value"] == "yes"

        asyncio.run(drive())


@pytest.mark.slow  # starts its own embedded 3-node cluster (~20 s on a loaded machine)
def test_the_embedded_cluster_is_made_on_first_run_and_survives_the_loss_of_a_node(tmp_path: Path) -> None:
    import signal

    from quorate.ids import NodeId

    data_dir = tmp_path / "memory"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "quorate", "mcp", "--data-dir", str(data_dir)], env=dict(os.environ)
    )

    async def drive() -> None:
        async with Client(params) as client:
            await call(client, "memory_usage", action="store", key="before", value="1")
            status = await call(client, "cluster_status")
            assert status["nodes_up"] == 3 and status["fault_tolerance"]["more_failures_survived"] == 1
            embedded = LocalCluster.open(data_dir)
            leader = int(str(status["leader"]).removeprefix("n"))
            pid = embedded.pid(NodeId(leader))
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await call(client, "memory_usage", action="store", key="after", value="2")  # retried to the new leader
            assert (await call(client, "memory_usage", action="retrieve", key="before"))["value"] == "1"
            assert (await call(client, "memory_usage", action="retrieve", key="after"))["value"] == "2"
            status = await call(client, "cluster_status")
            assert status["nodes_up"] == 2 and status["fault_tolerance"]["more_failures_survived"] == 0

    asyncio.run(drive())
    assert (data_dir / "cluster.json").is_file()
    survivors = LocalCluster.open(data_dir)
    assert wait_for(lambda: not any(survivors.running(n) for n in survivors.ids), WAIT_LIMIT_S, 0.1)  # stopped with the server
