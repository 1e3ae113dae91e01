"""Real-process clusters on loopback for the end-to-end tests: each node is a
``python -m quorate node`` process; every fixture kills what it started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quorate.runtime.aio.cluster import LocalCluster
from quorate.runtime.aio.ports import free_port_block

FAST_RAFT = {"election_timeout_s": 0.5, "heartbeat_interval_s": 0.05}
WAIT_LIMIT_S = 20.0
"""Generous bound on waits on a shared machine; reaching it fails the test."""
START_LIMIT_S = 90.0
"""Bound on a server process's start (an MCP or dashboard server imports a
web stack, which takes tens of seconds on a heavily loaded machine); the
wait ends as soon as it listens."""


def free_base_port(count: int) -> int:
    """``count`` consecutive free loopback ports, below the ephemeral range so
    a restarted node finds its port free (``quorate.runtime.aio.ports``)."""
    return free_port_block(count)


def listen_base_port(count: int) -> int:
    """``count`` consecutive loopback ports, free a moment ago, outside the
    ephemeral range (for processes that bind them a while later)."""
    return free_port_block(count)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[object]:
    made: list[LocalCluster] = []

    def make(nodes: int = 3, insecure: bool = True, name: str = "cluster") -> LocalCluster:
        cluster = LocalCluster(
            tmp_path / name,
            nodes=nodes,
            base_port=free_base_port(nodes),
            insecure=insecure,
            options=dict(FAST_RAFT),
        )
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.kill_all()
