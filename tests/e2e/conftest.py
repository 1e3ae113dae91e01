"""Real-process clusters on loopback for the end-to-end tests: each node is a
``python -m quorate node`` process; every fixture kills what it started."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from quorate.runtime.aio.cluster import LocalCluster

FAST_RAFT = {"election_timeout_s": 0.5, "heartbeat_interval_s": 0.05}
WAIT_LIMIT_S = 20.0
"""Generous bound on waits on a shared machine; reaching it fails the test."""


def free_base_port(count: int) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise OSError("no free loopback port range")


LISTEN_PORTS = range(20000, 32000)
"""Below Linux's default ephemeral range (32768-60999), from which the kernel
hands out the local ports of outgoing connections: a port picked there may be
taken by any connection on the machine before a node binds it."""


def listen_base_port(count: int, rng: random.Random | None = None) -> int:
    """``count`` consecutive loopback ports, free a moment ago, outside the
    ephemeral range (for processes that bind them a while later)."""
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(LISTEN_PORTS.start, LISTEN_PORTS.stop - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise OSError("no free loopback port range below the ephemeral ports")


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
