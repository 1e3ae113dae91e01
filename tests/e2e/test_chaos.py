"""Kill -9 of random nodes under load, repeated: no acknowledged write is
lost and the recorded history is linearizable (Jepsen-style, on real
processes). One node down at a time, so a quorum of 3 is always possible;
the leader is a frequent victim."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from quorate.check import check_history
from quorate.client import AsyncClient
from quorate.client.workload import RecordedWorkload
from quorate.runtime.aio.cluster import LocalCluster

ROUNDS = 6
LOAD_BETWEEN_FAULTS_S = 1.5
CHECK_TIMEOUT_S = 60.0


async def chaos(cluster: LocalCluster, seed: int) -> tuple[RecordedWorkload, list[str], object]:
    rng = random.Random(seed)

    def client() -> AsyncClient:
        return AsyncClient(cluster.endpoints, insecure=True, deadline_s=20.0)

    workload = RecordedWorkload(client, workers=6, seed=seed)
    workload.start()
    try:
        for _ in range(ROUNDS):
            await asyncio.sleep(LOAD_BETWEEN_FAULTS_S)
            victim = rng.choice(cluster.ids)
            await asyncio.to_thread(cluster.kill, victim)
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            await asyncio.to_thread(cluster.start, victim)
        await asyncio.sleep(LOAD_BETWEEN_FAULTS_S)
    finally:
        await workload.stop()
    reader = client()
    lost = await workload.lost_writes(reader)
    await reader.close()
    result = check_history(workload.history, CHECK_TIMEOUT_S, time.monotonic)
    return workload, lost, result


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2])
def test_random_kill_9_under_load_loses_nothing_and_stays_linearizable(
    make_cluster: Callable[..., LocalCluster], seed: int
) -> None:
    cluster = make_cluster(3)
    cluster.write_configs()
    cluster.start_all()
    workload, lost, result = asyncio.run(chaos(cluster, seed))
    assert workload.acked, "the cluster acknowledged writes under faults"
    assert lost == [], f"acknowledged writes lost (seed={seed})"
    assert result.linearizable is True, (
        f"history not linearizable (seed={seed}): {result.to_json()}"
    )  # type: ignore[attr-defined]
