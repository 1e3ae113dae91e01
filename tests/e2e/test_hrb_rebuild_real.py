"""HRB on real processes: a shard member that lost its disk rebuilds its
state from its peers' erasure-coded checkpoint fragments while an agent
keeps transacting (paper section 3.4).

Four node processes make one shard of four (``byzantine`` quorum, the core
on the same nodes) with a checkpoint every ``INTERVAL`` applied entries. An
agent writes one new key per transaction. Once every member stores a
co-signed checkpoint, a follower is killed with SIGKILL, its data directory
deleted, and it is started again: it must rebuild from its peers' fragments
(``hrb.checkpoint.rebuilds`` = 1 in its status), catch up the log through
Raft, end with the same state as its peers (``hrb.state_digest`` at the same
applied index), and every acknowledged write must read back. In the second
test one byte of one peer's stored fragment is flipped first (fault
injection): the rebuilding member refuses that fragment in one log line,
counts it (``hrb.checkpoint.fragments_rejected``) and rebuilds from the
others. Both are slow (process starts and elections on a shared machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import free_base_port

from quorate.client.hrb import AsyncHrbClient
from quorate.crypto.erasure import available_codecs
from quorate.ids import NodeId
from quorate.runtime.aio.cluster import LocalCluster

pytestmark = pytest.mark.skipif("pyeclib" not in available_codecs(), reason="pyeclib is not installed")

INTERVAL = 20
NODES = 4
OPTIONS: dict[str, Any] = {
    "shards": 1,
    "shard_size": NODES,
    "core_size": NODES,
    "quorum": "byzantine",
    "fault_injection": True,
    "checkpoint_interval_entries": INTERVAL,
    "election_timeout_s": 1.0,
    "heartbeat_interval_s": 0.1,
}
LIMIT_S = 90.0
"""A give-up bound on each wait, not a target."""
POLL_S = 0.2


class Agent:
    """Writes ``key{i} = i`` one transaction at a time, ``pause_s`` apart."""

    def __init__(self, client: AsyncHrbClient) -> None:
        self.client = client
        self.acked: dict[str, str] = {}
        self.failed = 0
        self.pause_s = 0.0
        self.running = asyncio.Event()
        self.running.set()
        self.stop = False

    async def run(self) -> None:
        i = 0
        while not self.stop:
            await self.running.wait()
            i += 1
            key, value = f"key{i}", str(i)
            try:
                outcome = await self.client.put({key: value})
            except (OSError, TimeoutError, EOFError):
                self.failed += 1  # unknown outcome: not acknowledged
                continue
            if outcome.committed:
                self.acked[key] = value
            if self.pause_s:
                await asyncio.sleep(self.pause_s)


async def wait_until(what: str, check: Any) -> Any:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, TimeoutError, EOFError):
            found = await check()
            if found:
                return found
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"{what}: not within {LIMIT_S:g} s")


async def rebuild_scenario(cluster: LocalCluster, *, corrupt: bool) -> dict[str, Any]:
    cluster.write_configs()
    cluster.start_all()
    client = AsyncHrbClient(cluster.endpoints, insecure=True, deadline_s=30.0)
    probe = AsyncHrbClient(cluster.endpoints, insecure=True, deadline_s=30.0)
    agent = Agent(client)
    task: asyncio.Task[None] | None = None
    try:
        await probe.wait_ready(LIMIT_S)
        layout = await probe.discover()
        members = sorted(layout.shards[1])
        task = asyncio.create_task(agent.run())

        async def all_checkpointed() -> bool:
            views = [await probe.status(m, 1) for m in members]
            return all(v.metrics.get("hrb.checkpoint.signatures", 0) >= 2 for v in views)

        await wait_until("every member stores a co-signed checkpoint", all_checkpointed)
        leader = (await probe.status(members[0], 1)).leader
        victim = max(m for m in members if m != leader)
        target = min(m for m in members if m != victim)
        if corrupt:
            # Slow traffic down so the corrupt fragment is still the newest
            # one when the victim asks for it (a holder keeps only its newest).
            agent.running.clear()
            await probe.corrupt_fragment(target)
        cluster.kill(NodeId(victim), signal.SIGKILL)
        shutil.rmtree(cluster.node_config(NodeId(victim)).data_dir)
        acked_at_restart = len(agent.acked)
        cluster.start(NodeId(victim))
        if corrupt:
            agent.pause_s = 1.0
            agent.running.set()

        async def rebuilt() -> dict[str, int] | None:
            view = await probe.status(victim, 1)
            return dict(view.metrics) if view.metrics.get("hrb.checkpoint.rebuilds", 0) >= 1 else None

        metrics = await wait_until(f"n{victim} rebuilds from its peers' fragments", rebuilt)

        async def more_traffic() -> bool:
            return len(agent.acked) >= acked_at_restart + 5

        await wait_until("the agent's traffic goes on", more_traffic)
        agent.stop = True
        await asyncio.wait_for(task, LIMIT_S)
        task = None

        last: list[Any] = []

        async def converged() -> tuple[int, int] | None:
            views = [await probe.status(m, 1) for m in members]
            last[:] = [(v.node, v.applied_index, v.commit_index, v.last_index, v.metrics.get("hrb.state_digest")) for v in views]
            seen = {(v.applied_index, v.metrics.get("hrb.state_digest")) for v in views}
            return seen.pop() if len(seen) == 1 else None

        try:
            applied, _digest = await wait_until("every member holds the same state", converged)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: (node, applied, commit, last, digest) {last}") from None
        values = await probe.read(agent.acked)
        lost = sorted(k for k, v in agent.acked.items() if values.get(k) != v)
        return {
            "victim": victim,
            "target": target,
            "metrics": metrics,
            "acked": len(agent.acked),
            "acked_after_restart": len(agent.acked) - acked_at_restart,
            "lost": lost,
            "applied": applied,
            "refusals": [str(r.get("msg", "")) for r in cluster.log_records(NodeId(victim)) if "dropped" in str(r.get("msg", ""))],
        }
    finally:
        agent.stop = True
        agent.running.set()
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await client.close()
        await probe.close()


def make_cluster(tmp_path: Path) -> LocalCluster:
    return LocalCluster(
        tmp_path / "hrb", nodes=NODES, base_port=free_base_port(NODES), insecure=True, protocol="hrb",
        options=dict(OPTIONS),
    )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_member_whose_data_directory_is_deleted_rebuilds_from_fragments_under_traffic(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path)
    try:
        report = asyncio.run(rebuild_scenario(cluster, corrupt=False))
    finally:
        cluster.kill_all()
    metrics = report["metrics"]
    assert metrics["hrb.checkpoint.rebuilds"] == 1, report
    assert metrics["hrb.checkpoint.rebuilt_index"] >= INTERVAL
    assert metrics["hrb.checkpoint.rebuild_fallbacks"] == 0
    assert report["lost"] == [] and report["acked_after_restart"] >= 5
    assert report["applied"] > metrics["hrb.checkpoint.rebuilt_index"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_flipped_byte_in_one_fragment_is_rejected_and_the_rebuild_uses_others(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path)
    try:
        report = asyncio.run(rebuild_scenario(cluster, corrupt=True))
    finally:
        cluster.kill_all()
    metrics = report["metrics"]
    assert metrics["hrb.checkpoint.rebuilds"] == 1, report
    assert metrics["hrb.checkpoint.fragments_rejected"] >= 1, report
    corrupt = [line for line in report["refusals"] if "corrupt" in line]
    assert corrupt, report["refusals"]
    assert report["lost"] == [] and report["acked_after_restart"] >= 5
