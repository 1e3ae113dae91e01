"""Casper FFG on four real node processes (loopback, plain TCP).

- Commands are executed once finalized, and a client accepts a result only
  from f + 1 = 2 distinct validators with the same answer; every validator
  ends up applying the same log and reports justified and finalized epochs.
- A validator that double-votes (``byzantine = "double_vote"``) is convicted
  by every honest one from the votes it signed, and commands keep being
  finalized; the proof reaches the replicated audit trail as one
  ``evidence.slashing`` record that ``quorate audit`` shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest
from tests.e2e.conftest import WAIT_LIMIT_S, free_base_port

from quorate.client.aio import AsyncClient
from quorate.client.bft import BftClient
from quorate.ids import NodeId
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.cluster import LocalCluster, wait_for

NODES = 4
OPTIONS = {"slot_timeout_s": 0.5, "justify_wait_s": 0.2}
COMMANDS = 10


def _cluster(tmp_path: Any, byzantine: dict[NodeId, str] | None = None) -> LocalCluster:
    cluster = LocalCluster(
        tmp_path / "casper",
        nodes=NODES,
        base_port=free_base_port(NODES),
        insecure=True,
        protocol="casper",
        options=dict(OPTIONS),
    )
    cluster.write_configs()
    for node, behaviour in (byzantine or {}).items():
        config = cluster.node_config(node)
        config = dataclasses.replace(config, options={**config.options, "byzantine": behaviour})
        cluster.config_path(node).write_text(config.to_toml())
    return cluster


async def _wait_applied(cluster: LocalCluster, nodes: list[NodeId], at_least: int) -> list[StatusReply]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_S
    while True:
        client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=2.0)
        try:
            statuses = await client.cluster_status()
        finally:
            await client.close()
        wanted = [s for s in statuses if s is not None and NodeId(s.node) in nodes]
        if len(wanted) == len(nodes) and all(s.applied_index >= at_least for s in wanted):
            return wanted
        assert loop.time() < deadline, f"validators did not apply {at_least} entries: {statuses}"
        await asyncio.sleep(0.1)


def test_casper_commands_finalize_on_real_nodes(tmp_path: Any) -> None:
    cluster = _cluster(tmp_path)
    cluster.start_all()

    async def scenario() -> None:
        async with AsyncClient(cluster.endpoints, insecure=True, deadline_s=WAIT_LIMIT_S) as client:
            for i in range(COMMANDS):
                await client.put(f"k{i}", f"v{i}")
            assert client.protocol == "casper"
            assert isinstance(client.bft, BftClient) and client.bft.matching_needed == 2
            assert await client.get("k7") == "v7"
        statuses = await _wait_applied(cluster, cluster.ids, COMMANDS + 1)
        assert {s.protocol for s in statuses} == {"casper"}
        for s in statuses:
            assert s.metrics["bft.detections"] == 0
            assert s.metrics["casper.finalized_epoch"] >= 1
            assert s.metrics["casper.justified_epoch"] > s.metrics["casper.finalized_epoch"]

    try:
        asyncio.run(scenario())
    finally:
        cluster.kill_all()


@pytest.mark.slow
def test_casper_double_voter_is_convicted_on_real_nodes(tmp_path: Any) -> None:
    offender = NodeId(3)
    cluster = _cluster(tmp_path, {offender: "double_vote"})
    cluster.start_all()
    honest = [n for n in cluster.ids if n != offender]

    async def scenario() -> None:
        async with BftClient(cluster.endpoints, insecure=True, client_id=11, deadline_s=WAIT_LIMIT_S) as client:
            for i in range(COMMANDS):
                await client.put(f"k{i}", f"v{i}")
        statuses = await _wait_applied(cluster, honest, COMMANDS)
        for s in statuses:
            assert s.metrics["bft.detections"] >= 1
            assert s.metrics.get(f"bft.excluded.n{offender}") == 1

    async def statuses_now() -> list[StatusReply | None]:
        async with AsyncClient(cluster.endpoints, insecure=True, timeout_s=2.0) as client:
            return await client.cluster_status()

    def on_record() -> bool:
        statuses = asyncio.run(statuses_now())
        counts = [s.metrics.get("evidence.on_record", 0) for s in statuses if s is not None and NodeId(s.node) in honest]
        return len(counts) == len(honest) and set(counts) == {1}

    try:
        asyncio.run(scenario())
        assert wait_for(on_record, WAIT_LIMIT_S, 0.3)
        answer = subprocess.run(
            [sys.executable, "-m", "quorate", "audit", "--kind", "evidence.", "--json", "--insecure",
             "--endpoints", ",".join(cluster.endpoints)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert answer.returncode == 0, answer.stderr
        records = json.loads(answer.stdout)["records"]
        assert [(r["kind"], r["subject"]) for r in records] == [("evidence.slashing", f"n{offender}")], records
        assert records[0]["detail"]["condition"] == "double_vote"
    finally:
        cluster.kill_all()
