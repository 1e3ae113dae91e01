"""Acknowledged writes survive every node being killed with SIGKILL at once:
each acknowledgement left only after a quorum fsynced the entry."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from quorate.client import Client
from quorate.runtime.aio.cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)
ENTRIES = 60


def test_acknowledged_writes_survive_kill_9_of_every_node(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(3)
    cluster.write_configs()
    cluster.start_all()
    with Client(cluster.endpoints, insecure=True, deadline_s=20.0) as client:
        for i in range(ENTRIES):
            client.put(f"k{i:03d}", f"v{i}", namespace="durable")
    cluster.kill_all()
    assert not any(cluster.running(n) for n in cluster.ids)
    cluster.start_all()
    with Client(cluster.endpoints, insecure=True, deadline_s=20.0) as client:
        items = client.list("k", namespace="durable", limit=10 * ENTRIES)
        assert items == [(f"k{i:03d}", f"v{i}") for i in range(ENTRIES)]
        assert client.get("k000", namespace="") is None  # namespaces are separate
    assert all(cluster.stop_all().values()), "every node stops on SIGTERM"


def test_client_api_put_get_cas_delete_ttl(make_cluster: Callable[..., LocalCluster]) -> None:
    cluster = make_cluster(3)
    cluster.write_configs()
    cluster.start_all()
    with Client(cluster.endpoints, insecure=True, deadline_s=20.0) as client:
        client.put("a", "1")
        assert client.get("a") == "1"
        assert client.cas("a", "1", "2") == (True, None)
        assert client.cas("a", "1", "3") == (False, "2")
        assert client.delete("a") is True
        assert client.delete("a") is False
        assert client.get("a") is None
        client.put("t", "x", ttl_s=0.001)
        # Expiry follows log time: a command proposed after the deadline moves
        # the store past it (a put can take less than the 1 ms TTL here).
        time.sleep(0.01)
        client.put("later", "y")
        assert client.get("t") is None
        # On a loaded machine an election may be under way: look until the
        # status settles (one leader, followers of the same term agree).
        deadline = time.monotonic() + 10.0
        while True:
            statuses = [client.status(e) for e in cluster.endpoints]
            leaders = [s for s in statuses if s.role == "leader"]
            settled = len(leaders) == 1 and all(
                s.leader == leaders[0].node for s in statuses if s.term == leaders[0].term
            )
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert settled, statuses
