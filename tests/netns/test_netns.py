"""Clusters across hosts: one node per Linux network namespace, real TCP with
mutual TLS, 50 ms between regions, partitions, SIGKILL — and every
acknowledged write read back, the history linearizable. Raft with 3 nodes, PBFT with 4, and HRB with 8 (two Byzantine
shards of four under a core of four; a shard leader cut off, another
shard's leader SIGKILLed, about half the writes crossing shards).

Hosts are namespaces on one bridge (``tests/netns/topology.py``). Delay
between regions: the kernel's ``tc netem`` when it has it; this machine's
kernel lacks the netem qdisc, so the suite falls back to the project's own
fault-injecting proxy (``quorate.runtime.aio.faultproxy`` in stream mode,
TLS passing through untouched) running in a host of its own between the
node hosts. The suite routes peer links through the proxy even where netem
exists, so its figures compare across kernels; each scenario prints which
emulation ran and whether netem was there. Each node reaches a peer by
*name* (``n2``) that its host resolves to the proxy; the proxy holds the
50 ms and, with probability ``LINK_LOSS``, holds a chunk back a TCP
retransmission timeout (loss as a TCP stream shows it; the scenario checks
that some were). Clients reach the nodes directly. A partition is a node's
bridge port taken down.

Run as root: ``python -m pytest -m netns tests/netns`` (``.ci/run`` does);
otherwise every test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.netns.topology import PREFIX_LEN, SUBNET_PREFIX, Topology, netem_available, netns_problem

from quorate.check import check_history
from quorate.cli.certs import create_ca, issue_certificate
from quorate.ids import NodeId
from quorate.runtime.aio.config import NodeConfig

pytestmark = pytest.mark.netns

PEER_PORT = 7001
INTER_REGION_S = 0.050
LINK_LOSS = 0.01
"""Share of a peer link's chunks held back a retransmission timeout."""
REGIONS = 3
HERE = Path(__file__).resolve().parent
PROXY_START_S = 20.0
LEADER_WAIT_S = 30.0
CHECK_TIMEOUT_S = 120.0
_LEADER = re.compile(r"leader is now n(\d+) \(term (\d+)\)")
HRB_OPTIONS = {
    "shard_size": 4,
    "core_size": 4,
    "quorum": "byzantine",
    "election_timeout_s": 1.0,
    "heartbeat_interval_s": 0.1,
}
"""Two shards of four (each tolerates one Byzantine member) under a core of four."""
LAYOUT_WAIT_S = 120.0


@pytest.fixture(scope="module", autouse=True)
def _needs_netns() -> None:
    problem = netns_problem()
    if problem is not None:
        pytest.skip(problem)


class NetnsCluster:
    """``nodes`` nodes of ``protocol``, one per host, regions round robin."""

    def __init__(self, directory: Path, protocol: str, nodes: int, *, via_proxy: bool, loss: float = 0.0) -> None:
        self.directory = directory
        self.protocol = protocol
        self.ids = [NodeId(i) for i in range(1, nodes + 1)]
        self.via_proxy = via_proxy
        hosts = {f"n{i}": 10 + i for i in range(1, nodes + 1)} | {"proxy": 2, "client": 3}
        self.topology = Topology(f"q{os.getpid() % 100_000}", hosts)
        self.processes: dict[NodeId, Any] = {}
        self.tls = directory / "tls"
        create_ca(self.tls)
        for node in self.ids:
            issue_certificate(self.tls, f"n{node}")
        issue_certificate(self.tls, "client")
        self.netem = netem_available(self.topology.namespace("n1"), "eth0")
        self.addresses: dict[str, list[Any]] = {}
        if via_proxy:
            self._start_proxy(loss)
        self.write_configs()

    def region(self, node: NodeId) -> int:
        return (int(node) - 1) % REGIONS

    def _start_proxy(self, loss: float) -> None:
        topo = self.topology
        links = {
            f"{a}>{b}": {"delay_s": INTER_REGION_S if self.region(a) != self.region(b) else 0.0, "loss": loss}
            for a in self.ids for b in self.ids if a != b
        }
        spec = {
            "host": topo.address("proxy"),
            "nodes": {str(n): [topo.address(f"n{n}"), PEER_PORT] for n in self.ids},
            "links": links,
            "seed": 1,
            "addresses_file": str(self.directory / "proxy-addresses.json"),
            "metrics_file": str(self.directory / "proxy-metrics.json"),
        }
        (self.directory / "proxy.json").write_text(json.dumps(spec))
        topo.set_hosts("proxy", {})
        self.proxy = topo.popen("proxy", [sys.executable, str(HERE / "proxy_process.py"), str(self.directory / "proxy.json")],
                                self.directory / "proxy.log")
        deadline = time.monotonic() + PROXY_START_S
        target = self.directory / "proxy-addresses.json"
        while not target.exists():
            assert time.monotonic() < deadline, (self.directory / "proxy.log").read_text()
            time.sleep(0.05)
        self.addresses = json.loads(target.read_text())

    def name_views(self) -> None:
        """Each host's /etc/hosts: peers by name (via the proxy host when there is one)."""
        topo = self.topology
        for node in self.ids:
            view = {f"n{p}": topo.address("proxy") if self.via_proxy else topo.address(f"n{p}") for p in self.ids if p != node}
            topo.set_hosts(f"n{node}", {**view, f"n{node}": topo.address(f"n{node}")})
        topo.set_hosts("client", {f"n{p}": topo.address(f"n{p}") for p in self.ids})

    def write_configs(self) -> None:
        self.name_views()
        for node in self.ids:
            peers = {
                p: (f"n{p}", int(self.addresses[f"{node}>{p}"][1]) if self.via_proxy else PEER_PORT)
                for p in self.ids if p != node
            }
            config = NodeConfig(
                id=node,
                listen=(self.topology.address(f"n{node}"), PEER_PORT),
                peers=peers,
                data_dir=self.directory / f"n{node}",
                tls_dir=self.tls,
                protocol=self.protocol,
                log_file=self.directory / f"n{node}.log",
                options=self.options(),
                # The client host's many connections come from this private network.
                security={"trusted_networks": f"{SUBNET_PREFIX}0/{PREFIX_LEN}"},
            )
            self.config_path(node).write_text(config.to_toml())

    def options(self) -> dict[str, Any]:
        if self.protocol == "hrb":
            return dict(HRB_OPTIONS)
        return {"key_seed": 7} if self.protocol != "raft" else {}

    def layout(self) -> dict[str, Any]:
        """HRB: the shards, core and leaders the workload found once every shard had a leader."""
        path = self.directory / "workload.json.layout.json"
        deadline = time.monotonic() + LAYOUT_WAIT_S
        while not path.exists():
            assert time.monotonic() < deadline, (self.directory / "workload.log").read_text()[-3000:]
            time.sleep(0.2)
        layout: dict[str, Any] = json.loads(path.read_text())
        return layout

    def config_path(self, node: NodeId) -> Path:
        return self.directory / f"n{node}.toml"

    def start(self, node: NodeId) -> None:
        argv = [sys.executable, "-m", "quorate", "node", "--config", str(self.config_path(node))]
        self.processes[node] = self.topology.popen(f"n{node}", argv, self.directory / f"n{node}.out")

    def kill(self, node: NodeId) -> None:
        self.topology.kill(self.processes[node])

    def leader(self) -> NodeId | None:
        """The leader of the highest term any node's log reports."""
        best: tuple[int, int] | None = None
        for node in self.ids:
            path = self.directory / f"n{node}.log"
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                match = _LEADER.search(line)
                if match and (best is None or int(match.group(2)) >= best[1]):
                    best = (int(match.group(1)), int(match.group(2)))
        return NodeId(best[0]) if best else None

    def wait_leader(self, other_than: NodeId | None = None) -> NodeId:
        deadline = time.monotonic() + LEADER_WAIT_S
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader != other_than:
                return leader
            time.sleep(0.1)
        raise AssertionError(f"no leader (other than {other_than}) within {LEADER_WAIT_S} s")

    def workload(self, duration_s: float) -> Any:
        endpoints = ",".join(f"n{n}:{PEER_PORT}" for n in self.ids)
        argv = [sys.executable, str(HERE / "workload_process.py"), "--protocol", self.protocol, "--endpoints", endpoints,
                "--tls", str(self.tls), "--duration", str(duration_s), "--out", str(self.directory / "workload.json")]
        return self.topology.popen("client", argv, self.directory / "workload.log")

    def result(self, process: Any, timeout_s: float) -> dict[str, Any]:
        process.wait(timeout_s)
        path = self.directory / "workload.json"
        assert path.exists(), (self.directory / "workload.log").read_text()[-3000:]
        result: dict[str, Any] = json.loads(path.read_text())
        return result

    def emulation(self) -> str:
        netem = "netem present, not used" if self.netem else "netem missing"
        return f"quorate.runtime.aio.faultproxy (stream mode; {netem})"

    def proxy_metrics(self) -> dict[str, int]:
        """Stop the proxy (SIGTERM) and read the counts it wrote."""
        self.topology.kill(self.proxy, signal.SIGTERM)
        metrics: dict[str, int] = json.loads((self.directory / "proxy-metrics.json").read_text())
        return metrics

    def close(self) -> None:
        self.topology.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[NetnsCluster] = []

    def build(protocol: str, nodes: int, *, via_proxy: bool = True, loss: float = 0.0) -> NetnsCluster:
        cluster = NetnsCluster(tmp_path / protocol, protocol, nodes, via_proxy=via_proxy, loss=loss)
        made.append(cluster)
        return cluster

    (tmp_path / "raft").mkdir()
    (tmp_path / "pbft").mkdir()
    (tmp_path / "hrb").mkdir()
    yield build
    for cluster in made:
        cluster.close()


def _check(result: dict[str, Any], faults_healed_at: float) -> None:
    assert result["lost"] == [], f"acknowledged writes lost: {result['lost'][:10]}"
    assert len(result["acked"]) >= 20, result["ok"]
    verdict = check_history(result["history"], timeout_s=CHECK_TIMEOUT_S, clock=time.monotonic)
    assert str(verdict.verdict) == "linearizable", verdict
    assert any(start > faults_healed_at for start, _ in result["ok_spans"]), "nothing committed after the last fault"
    spans = sorted(end - start for start, end in result["ok_spans"])
    print(
        f"{len(result['acked'])} acknowledged writes all read back; {result['ok']} operations ok, "
        f"{result['unknown']} unknown; median {spans[len(spans) // 2] * 1000:.0f} ms; {verdict.verdict}"
    )


def _check_delay(result: dict[str, Any]) -> None:
    """Every commit needs a node of another region: at least a round trip of
    the inter-region delay, so the median operation cannot be faster."""
    spans = sorted(end - start for start, end in result["ok_spans"])
    assert spans[len(spans) // 2] >= 2 * INTER_REGION_S, spans[len(spans) // 2]


def _scenario(cluster: NetnsCluster, isolate: NodeId | None, kill: NodeId | None) -> dict[str, Any]:
    for node in cluster.ids:
        cluster.start(node)
    if cluster.protocol == "raft":
        isolate = cluster.wait_leader()
    workload = cluster.workload(duration_s=24)
    time.sleep(4)
    assert isolate is not None
    cluster.topology.isolate(f"n{isolate}")  # the leader (raft) or view 0's primary (pbft): cut off
    time.sleep(6)
    cluster.topology.rejoin(f"n{isolate}")
    time.sleep(3)
    victim = cluster.wait_leader(other_than=isolate) if cluster.protocol == "raft" else kill
    assert victim is not None
    cluster.kill(victim)  # SIGKILL
    time.sleep(2)
    cluster.start(victim)
    healed_at = time.monotonic()
    result = cluster.result(workload, timeout_s=180)
    result["healed_at"] = healed_at
    return result


def _check_links(cluster: NetnsCluster, record_property: Any) -> None:
    """The proxy carried the peer traffic and the loss hit some of it."""
    metrics = cluster.proxy_metrics()
    stalled = sum(v for k, v in metrics.items() if k.startswith("stalled."))
    passed = sum(v for k, v in metrics.items() if k.startswith("passed."))
    record_property("link_emulation", cluster.emulation())
    print(f"inter-region links: {cluster.emulation()}; {stalled} of {stalled + passed} chunks held back by loss")
    assert passed > 0 and stalled > 0, metrics


def test_raft_three_regions_partition_and_sigkill(make: Any, record_property: Any) -> None:
    cluster = make("raft", 3, loss=LINK_LOSS)
    result = _scenario(cluster, None, None)
    _check(result, result["healed_at"])
    _check_delay(result)
    _check_links(cluster, record_property)


def test_pbft_four_nodes_partition_and_sigkill(make: Any, record_property: Any) -> None:
    cluster = make("pbft", 4, loss=LINK_LOSS)
    result = _scenario(cluster, NodeId(1), NodeId(2))
    _check(result, result["healed_at"])
    _check_delay(result)
    _check_links(cluster, record_property)


def test_hrb_two_shards_partition_and_sigkill(make: Any, record_property: Any) -> None:
    cluster = make("hrb", 8, loss=LINK_LOSS)
    for node in cluster.ids:
        cluster.start(node)
    workload = cluster.workload(duration_s=30)
    layout = cluster.layout()  # every shard and the core have a leader: the load runs
    print(f"HRB layout: shards {layout['shards']}, core {layout['core']}, leaders {layout['leaders']}")
    time.sleep(4)
    cut = NodeId(layout["leaders"]["1"])
    cluster.topology.isolate(f"n{cut}")  # shard 1's leader: cut off
    time.sleep(6)
    cluster.topology.rejoin(f"n{cut}")
    time.sleep(3)
    victim = NodeId(layout["leaders"]["2"])
    cluster.kill(victim)  # shard 2's leader (as it was at the start): SIGKILL
    time.sleep(2)
    cluster.start(victim)
    healed_at = time.monotonic()
    result = cluster.result(workload, timeout_s=240)
    _check(result, healed_at)
    _check_delay(result)
    _check_links(cluster, record_property)


def test_a_node_that_moves_to_a_new_address_is_found_by_name(make: Any) -> None:
    # Direct links: peers are named n1..n3 and resolved per host. n3 drops
    # off the network (no FIN, no RST: its port goes down before the kill),
    # comes back at a new address, and its name now points there. n1 and n2
    # dial n3 (lower ids dial): they must notice their old connections are
    # dead and find n3 at the new address.
    cluster = make("raft", 3, via_proxy=False)
    for node in cluster.ids:
        cluster.start(node)
    cluster.wait_leader()
    workload = cluster.workload(duration_s=30)
    time.sleep(4)
    topo = cluster.topology
    topo.isolate("n3")
    cluster.kill(NodeId(3))
    topo.move("n3", 33)
    cluster.write_configs()  # n3 listens on its new address; every host's names follow
    topo.rejoin("n3")
    moved_at = time.monotonic()
    cluster.start(NodeId(3))
    result = cluster.result(workload, timeout_s=180)
    _check(result, moved_at)
    statuses = {s["node"]: s for s in result["statuses"] if s is not None}
    assert set(statuses) == {1, 2, 3}, result["statuses"]
    leader_applied = max(s["applied_index"] for s in statuses.values())
    # n3 took part again: it applied (nearly) all the others have.
    assert statuses[3]["applied_index"] >= leader_applied - 50, statuses
