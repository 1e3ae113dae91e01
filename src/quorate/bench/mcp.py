"""``quorate bench mcp``: what an agent's memory costs through ``quorate mcp``.

Theory of operation. The benchmark starts ``quorate mcp`` as a subprocess
over stdio with its embedded 3-node cluster (real node processes, TLS,
fsync'd SQLite, in a fresh data directory), and drives it with the MCP
SDK's own client, one call at a time, as one agent would: ``memory_usage``
store, then retrieve, each timed from the client's side (JSON-RPC over a
pipe, the server's tool code, a replicated write or a linearizable read).
Then ``task_orchestrate`` submits tasks and ``task_claim`` +
``task_complete`` work through them: tasks finished per second.

The peer, in the same run and on the same filesystem: what a
single-process agent memory does instead — one SQLite insert per value in
its own transaction, ``synchronous=FULL`` (an fsync per commit) in WAL
mode. The target is a replicated store within ``TARGET_STORE_RATIO`` × the
local insert at the median; the report says whether this run met it.

The floor, also in the same run: a do-nothing MCP tool (``echo`` in
:mod:`quorate.bench.mcp_echo`) called the same way with the same value. No
MCP server can answer a tool call faster than that on this machine, and a
durable replicated write has at least one fsync on its critical path (some
replica must make it durable before it is acknowledged): a store through
MCP costs at least the floor plus one local fsync'd insert. When that lower
bound is already above ``TARGET_STORE_RATIO`` × the local insert, no work
inside quorate can meet the target on this machine, and the report says so
(``target_reachable``); ``store_over_floor_ms`` is what quorate's
replicated, fsync'd write adds on top of the transport.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from quorate.mcp.backend import percentiles_ms

TARGET_STORE_RATIO = 3.0
WARMUP_CALLS = 20
"""Untimed calls first (connections, TLS sessions, the first pages of every file)."""
SERVER_START_TIMEOUT_S = 120.0


def sqlite_inserts(directory: Path, count: int, value: str) -> list[float]:
    """Seconds of each durable insert-and-commit into a local SQLite file."""
    db = sqlite3.connect(directory / "agent-memory.sqlite3", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE memory (namespace TEXT, key TEXT, value TEXT, PRIMARY KEY (namespace, key))")
        for i in range(WARMUP_CALLS):
            db.execute("INSERT OR REPLACE INTO memory VALUES ('bench', ?, ?)", (f"warm{i}", value))
        seconds = []
        for i in range(count):
            started = time.perf_counter()
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO memory VALUES ('bench', ?, ?)", (f"key{i}", value))
            db.execute("COMMIT")
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        db.close()


async def drive_echo(calls: int, value: str) -> list[float]:
    """Seconds of each call to the do-nothing MCP tool (the transport floor)."""
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "quorate.bench.mcp_echo"], env=dict(os.environ))
    seconds = []
    async with Client(params) as client:
        for _ in range(WARMUP_CALLS):
            await client.call_tool("echo", {"value": value})
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("echo", {"value": value})
            seconds.append(time.perf_counter() - started)
            if result.is_error:
                raise RuntimeError(f"echo failed: {result.content[0]}")
    return seconds


async def drive_mcp(data_dir: Path, calls: int, tasks: int, value: str) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "quorate", "mcp", "--data-dir", str(data_dir)], env=dict(os.environ)
    )

    async def tool(client: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(name, arguments)
        if result.is_error:
            raise RuntimeError(f"{name} failed: {result.content[0].text}")
        document: dict[str, Any] = result.structured_content
        return document

    async with Client(params) as client:
        for i in range(WARMUP_CALLS):
            await tool(client, "memory_usage", {"action": "store", "key": f"warm{i}", "value": value, "namespace": "bench"})
        stores, retrieves = [], []
        for i in range(calls):
            started = time.perf_counter()
            await tool(client, "memory_usage", {"action": "store", "key": f"key{i}", "value": value, "namespace": "bench"})
            stores.append(time.perf_counter() - started)
        for i in range(calls):
            started = time.perf_counter()
            got = await tool(client, "memory_usage", {"action": "retrieve", "key": f"key{i}", "namespace": "bench"})
            retrieves.append(time.perf_counter() - started)
            if got.get("value") != value:
                raise RuntimeError(f"retrieve of key{i} gave {got.get('value')!r}")
        for i in range(tasks):
            await tool(client, "task_orchestrate", {"task": f"step {i}", "task_id": f"bench-{i}"})
        started = time.perf_counter()
        done = 0
        while done < tasks:
            claim = await tool(client, "task_claim", {"agent": "bench", "lease_s": 60})
            task = claim.get("task")
            if task is None:
                raise RuntimeError("no task to claim while some are not completed")
            await tool(client, "task_complete", {"task_id": task["id"], "token": claim["token"], "result": "ok"})
            done += 1
        tasks_s = time.perf_counter() - started
        status = await tool(client, "cluster_status", {})
    return {
        "store_s": stores,
        "retrieve_s": retrieves,
        "tasks_s": tasks_s,
        "nodes_up": status.get("nodes_up"),
    }


def report(*, calls: int, tasks: int, value_bytes: int, directory: Path | None = None) -> dict[str, Any]:
    """Both measurements in one run (see the module docstring)."""
    value = "v" * value_bytes
    with tempfile.TemporaryDirectory(prefix="quorate-bench-mcp-", dir=directory) as scratch:
        root = Path(scratch)
        (root / "sqlite").mkdir()
        local = sqlite_inserts(root / "sqlite", calls, value)
        floor_s = asyncio.run(drive_echo(calls, value))
        measured = asyncio.run(drive_mcp(root / "mcp", calls, tasks, value))
    store = percentiles_ms(sorted(measured["store_s"]))
    retrieve = percentiles_ms(sorted(measured["retrieve_s"]))
    insert = percentiles_ms(sorted(local))
    floor = percentiles_ms(sorted(floor_s))
    ratio = floor_ratio = None
    if store["p50"] is not None and insert["p50"]:
        ratio = round(store["p50"] / insert["p50"], 2)
    if floor["p50"] is not None and insert["p50"]:
        floor_ratio = round(floor["p50"] / insert["p50"], 2)
    return {
        "benchmark": "mcp",
        "calls": calls,
        "tasks": tasks,
        "value_bytes": value_bytes,
        "replicas": measured["nodes_up"],
        "mcp_store_ms": store,
        "mcp_retrieve_ms": retrieve,
        "tasks_claimed_completed_per_s": round(tasks / measured["tasks_s"], 1) if measured["tasks_s"] > 0 else None,
        "sqlite_insert_fsync_ms": insert,
        "mcp_noop_tool_ms": floor,
        "store_over_floor_ms": round(store["p50"] - floor["p50"], 3)
        if store["p50"] is not None and floor["p50"] is not None
        else None,
        "store_p50_over_sqlite_p50": ratio,
        "noop_p50_over_sqlite_p50": floor_ratio,
        "target_ratio": TARGET_STORE_RATIO,
        "target_met": ratio is not None and ratio <= TARGET_STORE_RATIO,
        "target_reachable": floor_ratio is None or floor_ratio + 1 <= TARGET_STORE_RATIO,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


__all__ = ["TARGET_STORE_RATIO", "report", "sqlite_inserts"]
