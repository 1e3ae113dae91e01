"""Real node processes measure round trips to their peers, and ``quorate
quorum plan`` plans from those node-to-node figures (falling back to what it
measures from its own host when no node reports them)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable

from tests.e2e.test_membership import await_leader, await_status, endpoints_of, ok, quorate

from quorate.cli import quorum as quorum_cli
from quorate.cli.cluster import cluster_report
from quorate.ids import NodeId
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.cluster import LocalCluster


def _every_peer_measured(nodes: list[int]) -> Callable[[StatusReply], bool]:
    def check(status: StatusReply) -> bool:
        return set(status.peer_rtt_ms) == set(nodes) - {status.node}

    return check


def test_status_shows_an_rtt_for_every_peer_and_plan_uses_them(make_cluster: Callable[..., LocalCluster]) -> None:
    cluster = make_cluster(nodes=3)
    cluster.write_configs()
    cluster.start_all()
    ids = [int(n) for n in cluster.ids]
    await_leader(cluster, list(cluster.ids))
    for node in cluster.ids:
        status = await_status(cluster, node, _every_peer_measured(ids), "an RTT to every peer")
        assert all(math.isfinite(ms) and ms > 0 for ms in status.peer_rtt_ms.values()), status.peer_rtt_ms
        assert set(status.peer_ping_loss) == set(ids) - {int(node)}
    endpoints = endpoints_of(cluster, list(cluster.ids))
    report = json.loads(
        ok(quorate("quorum", "plan", "--strategy", "network", "--voters", "3", "--endpoints", endpoints, "--insecure", "--json"))
    )
    assert report["measured_by"] == "nodes"
    observed = report["observations"]["nodes"]
    assert sorted(observed) == [str(n) for n in ids]
    for node, observation in observed.items():
        assert sorted(observation["rtt_ms"]) == sorted(str(n) for n in ids if str(n) != node)
        assert observation["alive"] and observation["client_rtt_ms"] is not None
    rows = json.loads(ok(quorate("quorum", "status", "--endpoints", endpoints, "--insecure", "--json")))["nodes"]
    assert {row["node"]: sorted(row["peer_rtt_ms"]) for row in rows} == {
        "n1": ["n2", "n3"], "n2": ["n1", "n3"], "n3": ["n1", "n2"]
    }  # fmt: skip
    report_rows = asyncio.run(cluster_report(cluster))["nodes"]
    assert all(len(row["peer_rtt_ms"]) == 2 for row in report_rows), report_rows
    text = ok(quorate("quorum", "plan", "--strategy", "network", "--voters", "3", "--endpoints", endpoints, "--insecure"))
    assert text.splitlines()[0] == quorum_cli.MEASURED_LINES["nodes"]


def _status(node: int, peer_rtt_ms: dict[int, float]) -> StatusReply:
    return StatusReply(
        seq=0, node=node, protocol="raft", role="leader" if node == 1 else "follower", term=1, leader=1,
        commit_index=1, applied_index=1, last_index=1, members={}, metrics={}, voters=(1, 2, 3),
        election_quorum=2, commit_quorum=2, peer_rtt_ms=peer_rtt_ms,
        peer_ping_loss={p: 0.25 for p in peer_rtt_ms},
    )  # fmt: skip


def _survey(reports: dict[int, dict[int, float]]) -> dict[str, object]:
    nodes = {n: {"status": _status(n, rtts), "rtts": [1.0, 3.0], "failed": 0, "endpoint": ""} for n, rtts in reports.items()}
    return {"nodes": nodes, "leader": 1, "config": nodes[1]["status"]}


def test_node_figures_are_used_when_reported_else_this_hosts() -> None:
    reported = _survey({1: {2: 4.0, 3: 9.0}, 2: {1: 5.0}, 3: {}})
    obs, measured_by = quorum_cli._observations(reported, {}, None)  # type: ignore[arg-type]
    assert measured_by == quorum_cli.MEASURED_BY_NODES
    assert obs.rtt_ms(NodeId(1), NodeId(2)) == 4.5  # both directions measured
    assert obs.rtt_ms(NodeId(1), NodeId(3)) == 9.0
    assert obs.rtt_ms(NodeId(2), NodeId(3)) is None
    assert obs.nodes[NodeId(1)].loss == 0.25  # its pings' loss, above this host's 0
    assert obs.nodes[NodeId(3)].loss == 0.0 and obs.nodes[NodeId(3)].client_rtt_ms == 2.0

    silent = _survey({1: {}, 2: {}, 3: {}})
    obs, measured_by = quorum_cli._observations(silent, {}, None)  # type: ignore[arg-type]
    assert measured_by == quorum_cli.MEASURED_BY_CLIENT_HOST
    assert all(not o.rtt_ms for o in obs.nodes.values())
    assert [o.client_rtt_ms for o in obs.nodes.values()] == [2.0, 2.0, 2.0]
