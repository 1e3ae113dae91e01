"""Network faults between real node processes, through ``FaultProxy``: the
leader partitioned away under load, and a one-way cut. Every run records a
history that must be linearizable with zero acknowledged writes lost.

Reference: Raft thesis §3.6 (a leader cut off from a majority cannot commit;
the majority elects a new leader), §6.2 (check-quorum), §3.5 (log repair on
heal)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from quorate.check import check_history
from quorate.client import AsyncClient
from quorate.client.workload import RecordedWorkload
from quorate.ids import NodeId
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.cluster import LocalCluster
from quorate.runtime.aio.config import format_address
from quorate.runtime.aio.faultproxy import FaultProxy, cluster_fault_proxy, write_proxied_configs

WAIT_LIMIT_S = 20.0
"""Generous bound on each wait on a shared machine; reaching it fails the test."""

LOAD_BEFORE_FAULT_S = 1.5
LOAD_DURING_FAULT_S = 2.0
LOAD_AFTER_HEAL_S = 1.5
STALE_PROBE_DEADLINE_S = 1.0
COMMIT_FROZEN_WATCH_S = 1.0
POLL_INTERVAL_S = 0.1
STATUS_TIMEOUT_S = 5.0
"""How long one Status request may take (every node answers it at once, so
only a starved process is slower)."""
CHECK_TIMEOUT_S = 60.0
WORKERS = 6


async def _statuses(cluster: LocalCluster) -> dict[NodeId, StatusReply]:
    client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=STATUS_TIMEOUT_S)
    try:
        replies = await client.cluster_status()
    finally:
        await client.close()
    return {NodeId(r.node): r for r in replies if r is not None}


async def _status_of(cluster: LocalCluster, node: NodeId) -> StatusReply:
    """``node``'s status, asked again until it answers (a loaded node may not
    answer one request in time)."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while True:
        status = (await _statuses(cluster)).get(node)
        if status is not None:
            return status
        assert time.monotonic() < deadline, f"n{node} did not answer Status within {WAIT_LIMIT_S} s"
        await asyncio.sleep(POLL_INTERVAL_S)


async def _wait_leader(
    cluster: LocalCluster, among: set[NodeId], *, not_term_below: int = 0
) -> StatusReply:
    """A node of ``among`` that says it leads, in a term >= ``not_term_below``."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        for node, status in (await _statuses(cluster)).items():
            if node in among and status.role == "leader" and status.term >= not_term_below:
                return status
        await asyncio.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"no leader among {sorted(among)} within {WAIT_LIMIT_S} s")


async def _wait_converged(cluster: LocalCluster) -> dict[NodeId, StatusReply]:
    """Every node up, one leader, all applied to the same index."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    statuses: dict[NodeId, StatusReply] = {}
    while time.monotonic() < deadline:
        statuses = await _statuses(cluster)
        applied = {s.applied_index for s in statuses.values()}
        leaders = {s.leader for s in statuses.values()}
        if len(statuses) == cluster.nodes and len(applied) == 1 and len(leaders) == 1:
            return statuses
        await asyncio.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"the cluster did not converge after healing: {statuses}")


def _start(cluster: LocalCluster, proxy: FaultProxy) -> None:
    write_proxied_configs(cluster, proxy)
    cluster.start_all()


async def _finish(
    cluster: LocalCluster, workload: RecordedWorkload
) -> tuple[list[str], object]:
    await workload.stop()
    await _wait_converged(cluster)
    reader = AsyncClient(cluster.endpoints, insecure=True, deadline_s=WAIT_LIMIT_S)
    try:
        lost = await workload.lost_writes(reader)
    finally:
        await reader.close()
    return lost, check_history(workload.history, CHECK_TIMEOUT_S, time.monotonic)


def _workload(cluster: LocalCluster, seed: int) -> RecordedWorkload:
    def client() -> AsyncClient:
        return AsyncClient(cluster.endpoints, insecure=True, deadline_s=WAIT_LIMIT_S)

    return RecordedWorkload(client, workers=WORKERS, seed=seed)


async def leader_partitioned_away(cluster: LocalCluster) -> dict[str, object]:
    proxy = cluster_fault_proxy(cluster)
    async with proxy:
        await asyncio.to_thread(_start, cluster, proxy)
        everyone = set(cluster.ids)
        old = await _wait_leader(cluster, everyone)
        old_leader = NodeId(old.node)
        workload = _workload(cluster, seed=7)
        workload.start()
        try:
            await asyncio.sleep(LOAD_BEFORE_FAULT_S)
            proxy.isolate(old_leader)
            majority = everyone - {old_leader}
            new = await _wait_leader(cluster, majority, not_term_below=old.term + 1)

            # The old leader, alone, must not commit anything: a put sent to it
            # only is never acknowledged, and its commit index stays put.
            stale_probe = AsyncClient(
                [format_address(cluster.address(old_leader))],
                insecure=True,
                deadline_s=STALE_PROBE_DEADLINE_S,
                timeout_s=STALE_PROBE_DEADLINE_S,
            )
            frozen_at = (await _status_of(cluster, old_leader)).commit_index
            stale_outcome = "acknowledged"
            try:
                await stale_probe.put("partition/stale-probe", "must-not-commit")
            except (TimeoutError, OSError, RuntimeError) as exc:
                stale_outcome = type(exc).__name__
            finally:
                await stale_probe.close()
            await asyncio.sleep(COMMIT_FROZEN_WATCH_S)
            commit_later = (await _status_of(cluster, old_leader)).commit_index
            await asyncio.sleep(LOAD_DURING_FAULT_S)
            acked_during_fault = len(workload.acked)
            proxy.heal()
            await asyncio.sleep(LOAD_AFTER_HEAL_S)
        except BaseException:
            await workload.stop()
            raise
        lost, result = await _finish(cluster, workload)
        return {
            "old_leader": old_leader,
            "new_leader": NodeId(new.node),
            "stale_outcome": stale_outcome,
            "frozen_at": frozen_at,
            "commit_later": commit_later,
            "acked_during_fault": acked_during_fault,
            "workload": workload,
            "lost": lost,
            "result": result,
            "dropped": sum(v for k, v in proxy.metrics.items() if k.startswith("dropped.")),
        }


async def leader_cut_one_way(cluster: LocalCluster) -> dict[str, object]:
    proxy = cluster_fault_proxy(cluster)
    async with proxy:
        await asyncio.to_thread(_start, cluster, proxy)
        everyone = set(cluster.ids)
        old = await _wait_leader(cluster, everyone)
        old_leader = NodeId(old.node)
        workload = _workload(cluster, seed=11)
        workload.start()
        try:
            await asyncio.sleep(LOAD_BEFORE_FAULT_S)
            # The leader still hears everyone, but nobody hears it.
            for peer in everyone - {old_leader}:
                proxy.cut(old_leader, peer)
            new = await _wait_leader(cluster, everyone - {old_leader}, not_term_below=old.term + 1)
            await asyncio.sleep(LOAD_DURING_FAULT_S)
            proxy.heal()
            await asyncio.sleep(LOAD_AFTER_HEAL_S)
        except BaseException:
            await workload.stop()
            raise
        lost, result = await _finish(cluster, workload)
        return {
            "old_leader": old_leader,
            "new_leader": NodeId(new.node),
            "workload": workload,
            "lost": lost,
            "result": result,
            "passed_back": sum(
                v for k, v in proxy.metrics.items() if k.startswith("passed.") and k.endswith(
                    f">n{old_leader}"
                )
            ),
        }


@pytest.mark.timeout(180)
def test_leader_partitioned_away_under_load_loses_nothing(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(3)
    out = asyncio.run(leader_partitioned_away(cluster))
    assert out["new_leader"] != out["old_leader"], "the majority elected a new leader"
    assert out["stale_outcome"] != "acknowledged", "the isolated old leader acknowledged a put"
    assert out["commit_later"] == out["frozen_at"], "the isolated old leader kept committing"
    assert out["dropped"] > 0, "the partition dropped frames"
    workload = out["workload"]
    assert isinstance(workload, RecordedWorkload)
    assert workload.acked, "the cluster acknowledged writes"
    assert out["lost"] == [], "acknowledged writes lost across the partition"
    assert out["result"].linearizable is True, out["result"].to_json()  # type: ignore[attr-defined]


@pytest.mark.timeout(180)
def test_one_way_cut_from_the_leader_elects_a_new_one_and_loses_nothing(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(3)
    out = asyncio.run(leader_cut_one_way(cluster))
    assert out["new_leader"] != out["old_leader"], "the followers replaced the unheard leader"
    assert out["passed_back"] > 0, "the other direction kept carrying frames"
    workload = out["workload"]
    assert isinstance(workload, RecordedWorkload)
    assert workload.acked, "the cluster acknowledged writes"
    assert out["lost"] == [], "acknowledged writes lost across the one-way cut"
    assert out["result"].linearizable is True, out["result"].to_json()  # type: ignore[attr-defined]
