"""A multi-Raft cluster of real node processes, as commands:

- ``quorate cluster up --nodes 3 --groups 16`` starts the meta group and 16
  range groups, each with a leader, leaders spread over the nodes;
- ``quorate kv put/get`` and ``quorate.Client()`` route each key to its
  range's leader (the client learns ranges from the meta group); ``kv
  list``, which would span ranges, is refused in one line;
- ``quorate cluster status`` shows the ranges, their bounds and leaders
  (``--json`` too);
- a node killed with SIGKILL: its ranges elect new leaders (the liveness
  detector wakes quiesced groups), every acknowledged write reads back, and
  the restarted node recovers every group from its one store;
- bad input ends in one line: ``--groups`` for PBFT, ``--replicas`` beyond
  the nodes (exit 2).
"""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path

import pytest
from tests.e2e.conftest import listen_base_port
from tests.e2e.test_cluster_cli import down, ok, one_line, quorate

from quorate.client.sync import Client
from quorate.ids import NodeId
from quorate.runtime.aio.cluster import LocalCluster

pytestmark = pytest.mark.timeout(300)
KEYS = [f"{k:04x}/key" for k in range(0, 65536, 4099)]
"""Keys spread over the hex key space (so over the ranges)."""


@pytest.mark.slow
def test_cluster_up_with_ranges_routes_keys_and_survives_a_crash(tmp_path: Path) -> None:
    base = listen_base_port(3)
    try:
        up = ok(quorate(tmp_path, "cluster", "up", "--nodes", "3", "--groups", "16", base_port=base))
        assert "16 ranges of 3 replicas, each with a leader" in up
        ok(quorate(tmp_path, "kv", "put", "greeting", "hello"))
        assert ok(quorate(tmp_path, "kv", "get", "greeting")).strip() == "hello"
        one_line(quorate(tmp_path, "kv", "list"), 1, "span ranges")  # a list would span ranges
        with Client(cluster=tmp_path / "quorate-cluster") as client:
            for key in KEYS:
                client.put(key, f"v-{key}")
        report = json.loads(ok(quorate(tmp_path, "cluster", "status", "--json")))
        assert report["protocol"] == "multiraft"
        ranges = report["ranges"]
        assert [r["range"] for r in ranges] == list(range(1, 17))
        assert ranges[0]["start"] == "" and ranges[-1]["end"] is None
        assert all(a["end"] == b["start"] for a, b in itertools.pairwise(ranges))
        leaders = {r["leader"] for r in ranges}
        assert len(leaders) >= 2, leaders  # leaders spread over the nodes
        table = ok(quorate(tmp_path, "cluster", "status"))
        assert "ranges: 16 with a leader" in table and "'0000'" not in table.splitlines()[0]

        cluster = LocalCluster.open(tmp_path / "quorate-cluster")
        victim = NodeId(1)
        cluster.kill(victim, signal.SIGKILL)
        with Client(cluster=tmp_path / "quorate-cluster", deadline_s=60.0) as client:
            for key in KEYS:
                assert client.get(key) == f"v-{key}"
            client.put("after-crash", "yes")
        cluster.start(victim)
        with Client(cluster=tmp_path / "quorate-cluster", deadline_s=60.0) as client:
            assert client.get("after-crash") == "yes"
            assert client.get(KEYS[0]) == f"v-{KEYS[0]}"
    finally:
        down(tmp_path)


def test_bad_multiraft_flags_end_in_one_line(tmp_path: Path) -> None:
    one_line(quorate(tmp_path, "cluster", "up", "--protocol", "pbft", "--groups", "4"), 2, "multi-Raft")
    one_line(quorate(tmp_path, "cluster", "up", "--groups", "4", "--replicas", "5"), 2, "replicas")
    one_line(quorate(tmp_path, "cluster", "up", "--groups", "-1"), 2, "ranges")
