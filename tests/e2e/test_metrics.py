"""``quorate node --metrics-port``: every node of a real cluster serves
Prometheus text at ``/metrics``, read here by prometheus-client's own
parser; its figures agree with what ``cluster status`` reports, and they
move with the cluster (a leader change shows on every node)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import FAST_RAFT, WAIT_LIMIT_S, free_base_port

from quorate.client import AsyncClient
from quorate.ids import NodeId
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.cluster import LocalCluster, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def statuses(cluster: LocalCluster) -> list[StatusReply | None]:
    async def ask() -> list[StatusReply | None]:
        client = AsyncClient(cluster.endpoints, insecure=True, timeout_s=1.0)
        try:
            return list(await client.cluster_status())
        finally:
            await client.close()

    return asyncio.run(ask())


def leader_of(cluster: LocalCluster, exclude: NodeId | None = None) -> int | None:
    leaders = {s.leader for s in statuses(cluster) if s is not None and s.node != exclude}
    return leaders.pop() if len(leaders) == 1 and None not in leaders else None


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    made = LocalCluster(
        tmp_path_factory.mktemp("metrics") / "cluster", nodes=3, base_port=free_base_port(3), insecure=True,
        options=dict(FAST_RAFT), metrics_base_port=free_base_port(3),
    )
    made.write_configs()
    made.start_all()
    try:
        assert wait_for(lambda: leader_of(made) is not None, WAIT_LIMIT_S, 0.1)
        yield made
    finally:
        made.kill_all()


def write(cluster: LocalCluster, count: int) -> None:
    async def put() -> None:
        client = AsyncClient(cluster.endpoints, insecure=True)
        try:
            for i in range(count):
                await client.put(f"k{i}", "v")
        finally:
            await client.close()

    asyncio.run(put())


def test_metrics_parse_and_agree_with_cluster_status(cluster: LocalCluster) -> None:
    write(cluster, 20)
    leader = leader_of(cluster)
    assert leader is not None
    before = {s.node: s for s in statuses(cluster) if s is not None}
    for node in cluster.ids:
        url = cluster.metrics_url(node)
        assert url is not None
        samples = scrape(url)
        after = {s.node: s for s in statuses(cluster) if s is not None}
        n = f"n{node}"
        assert value(samples, "quorate_leader", node=n) == leader
        assert value(samples, "quorate_is_leader", node=n) == (1.0 if node == leader else 0.0)
        assert value(samples, "quorate_term", node=n) == before[node].term == after[node].term
        # The scrape happened between the two status calls: its indexes lie between theirs.
        for metric, field in (("quorate_commit_index", "commit_index"), ("quorate_applied_index", "applied_index")):
            assert getattr(before[node], field) <= value(samples, metric, node=n) <= getattr(after[node], field)
        assert value(samples, "quorate_commit_index", node=n) >= 20
        assert value(samples, "quorate_apply_lag_entries", node=n) >= 0
        assert value(samples, "quorate_groups", node=n) == 1
        assert value(samples, "quorate_leader_changes_total", node=n) >= 1
        # Every node wrote the 20 entries durably: the fsync histogram saw it.
        assert value(samples, "quorate_fsync_seconds_count") >= 1
        assert value(samples, "quorate_fsync_seconds_bucket", le="+Inf") == value(samples, "quorate_fsync_seconds_count")
        assert value(samples, "quorate_fsync_seconds_sum") > 0
        kind_out = "AppendEntries" if node == leader else "AppendEntriesResponse"
        kind_in = "AppendEntriesResponse" if node == leader else "AppendEntries"
        assert value(samples, "quorate_messages_total", node=n, direction="out", type=kind_out) >= 20
        assert value(samples, "quorate_messages_total", node=n, direction="in", type=kind_in) >= 20
        assert value(samples, "quorate_rate_limited_drops_total", node=n) == 0
        if node == leader:
            assert value(samples, "quorate_node_counter_total", node=n, counter="client_requests") >= 20


def test_a_leader_change_shows_on_every_survivor_and_other_paths_are_404(cluster: LocalCluster) -> None:
    old = leader_of(cluster)
    assert old is not None
    url = cluster.metrics_url(NodeId(old))
    assert url is not None
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=5)
    assert missing.value.code == 404
    cluster.kill(NodeId(old))
    assert wait_for(lambda: leader_of(cluster, exclude=NodeId(old)) not in (None, old), WAIT_LIMIT_S, 0.1)
    new = leader_of(cluster, exclude=NodeId(old))
    for node in cluster.ids:
        if node == old:
            continue
        metrics_url = cluster.metrics_url(node)
        assert metrics_url is not None
        samples = scrape(metrics_url)
        assert value(samples, "quorate_leader", node=f"n{node}") == new
        assert value(samples, "quorate_leader_changes_total", node=f"n{node}") >= 2


def test_a_bad_metrics_port_is_one_line_and_exit_2() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "quorate", "node", "--config", "missing.toml", "--metrics-port", "70000"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and "--metrics-port" in done.stderr and "Traceback" not in done.stderr
