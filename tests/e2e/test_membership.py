"""Membership changes and leadership transfer on real node processes.

Each test runs ``python -m quorate node`` processes on loopback and drives them
with the operator's commands (``quorate member add|promote|remove``,
``quorate leader transfer``, ``quorate cluster status``), as a person would.
What they pin down (Raft thesis §4.1 single-server changes, §4.2.1 learners
catching up, §4.2.2 removing the leader, §3.10 leadership transfer):

- a joining node (``join = true``) stays out of the configuration until it is
  added; added as a learner and promoted, it catches up, and its address
  reaches every member through the configuration entry, so after the old
  leader dies the four-voter cluster (which then needs the new node to form a
  quorum of three) still commits;
- a removed node stops receiving the log; a removed leader steps down and the
  rest elect a new one; status shows the new membership;
- refusals are one line on stderr with exit code 1, usage mistakes exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import WAIT_LIMIT_S, free_base_port

from quorate.client import Client
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.cluster import LocalCluster, wait_for
from quorate.runtime.aio.config import format_address, node_config_from_mapping

CLI_TIMEOUT_S = 60.0
"""Bound on one CLI process (its own deadline is shorter); reaching it fails."""
JOINER = NodeId(4)
STATUS_TIMEOUT_S = 5.0
"""How long one Status request may take (every node answers it at once, so
only a starved process is slower)."""


def quorate(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``quorate`` command line as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "quorate", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200"},
    )


def endpoints_of(cluster: LocalCluster, nodes: Sequence[NodeId]) -> str:
    return ",".join(format_address(cluster.address(n)) for n in nodes)


def status_of(cluster: LocalCluster, node: NodeId) -> StatusReply | None:
    """``node``'s status, or None if it is down or did not answer in
    ``STATUS_TIMEOUT_S`` (a node that is down refuses the connection at once)."""
    with Client(
        [cluster.address(node)], insecure=True, timeout_s=STATUS_TIMEOUT_S, deadline_s=STATUS_TIMEOUT_S
    ) as client:
        try:
            return client.status(format_address(cluster.address(node)))
        except (OSError, EOFError, TimeoutError):
            return None


def leader_of(cluster: LocalCluster, nodes: Sequence[NodeId]) -> NodeId | None:
    """The node among ``nodes`` that says it leads, if one does."""
    for node in nodes:
        status = status_of(cluster, node)
        if status is not None and status.role == "leader":
            return NodeId(status.node)
    return None


def await_leader(cluster: LocalCluster, nodes: Sequence[NodeId]) -> NodeId:
    found: list[NodeId] = []

    def elected() -> bool:
        leader = leader_of(cluster, nodes)
        if leader is not None:
            found.append(leader)
        return leader is not None

    assert wait_for(elected, WAIT_LIMIT_S), f"no leader among {list(nodes)}"
    return found[-1]


def await_status(
    cluster: LocalCluster, node: NodeId, check: Callable[[StatusReply], bool], what: str
) -> StatusReply:
    seen: list[StatusReply] = []

    def holds() -> bool:
        status = status_of(cluster, node)
        if status is None:
            return False
        seen.append(status)
        return check(status)

    assert wait_for(holds, WAIT_LIMIT_S, interval_s=0.1), (
        f"n{node}: {what} (last status: {seen[-1] if seen else 'no answer'})"
    )
    return seen[-1]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr.strip()}"
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    """The command failed with ``code`` and one line on stderr mentioning ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, f"exit {result.returncode}: {result.stderr.strip()}"
    assert len(lines) == 1 and lines[0].startswith("quorate: error:"), result.stderr
    assert words in lines[0], lines[0]


@pytest.fixture
def joinable(make_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    """Three running members n1..n3, and n4's config written to join them."""
    cluster = make_cluster(nodes=4)
    cluster.write_configs()
    members = [NodeId(1), NodeId(2), NodeId(3)]
    for node in members:
        config = cluster.node_config(node)
        config = dataclasses.replace(config, peers={p: a for p, a in config.peers.items() if p != JOINER})
        cluster.config_path(node).write_text(config.to_toml())
    joiner = cluster.node_config(JOINER)
    joiner = dataclasses.replace(joiner, options={**joiner.options, "join": True})
    cluster.config_path(JOINER).write_text(joiner.to_toml())
    for node in members:
        cluster.start(node)
    await_leader(cluster, members)
    return cluster


def test_added_learner_catches_up_is_promoted_and_keeps_the_cluster_alive(
    joinable: LocalCluster,
) -> None:
    cluster = joinable
    members = [NodeId(1), NodeId(2), NodeId(3)]
    endpoints = endpoints_of(cluster, members)
    with Client(endpoints.split(","), insecure=True) as client:
        for i in range(20):
            client.put(f"before-{i}", str(i))

    cluster.start(JOINER)
    # Joining, it is no member yet: it must not campaign or count.
    joined = await_status(cluster, JOINER, lambda s: s.voters == (1, 2, 3), "sees the 3 members")
    assert joined.role != "leader" and 4 not in joined.voters + joined.learners

    address = format_address(cluster.address(JOINER))
    ok(quorate("member", "add", "n4", "--address", address, "--learner", "--endpoints", endpoints, "--insecure"))
    ok(quorate("member", "promote", "n4", "--endpoints", endpoints, "--insecure"))

    leader = await_leader(cluster, members)
    leader_status = await_status(
        cluster, leader, lambda s: s.voters == (1, 2, 3, 4) and s.learners == (), "4 voters"
    )
    await_status(
        cluster,
        JOINER,
        lambda s: s.role == "follower" and s.applied_index >= leader_status.commit_index,
        "caught up as a voter",
    )
    # The address reached every member, not only the leader that was told.
    for node in members:
        await_status(cluster, node, lambda s: s.members.get(4) == address, "knows n4's address")

    with Client([*endpoints.split(","), address], insecure=True) as client:
        client.put("after-join", "yes")
    await_status(cluster, JOINER, lambda s: s.applied_index >= s.commit_index > 0, "applied")

    # Four voters, one crashed: the other three (n4 among them) must form the quorum.
    cluster.kill(leader)
    survivors = [n for n in (*members, JOINER) if n != leader]
    await_leader(cluster, survivors)
    with Client(
        [format_address(cluster.address(n)) for n in survivors], insecure=True, deadline_s=30.0
    ) as client:
        client.put("after-failover", "committed")
        assert client.get("after-failover") == "committed"
        assert client.get("before-7") == "7"
        assert client.get("after-join") == "yes"

    report = json.loads(ok(quorate("cluster", "status", "--dir", str(cluster.directory), "--json")))
    assert report["voters"] == ["n1", "n2", "n3", "n4"]
    assert report["learners"] == []
    rows = {row["node"]: row for row in report["nodes"]}
    assert rows["n4"]["member"] == "voter" and rows["n4"]["up"]
    assert not rows[f"n{leader}"]["up"]


def test_removed_follower_is_left_behind_and_removed_leader_steps_down(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(nodes=3)
    cluster.write_configs()
    cluster.start_all()
    all_nodes = list(cluster.ids)
    endpoints = endpoints_of(cluster, all_nodes)
    leader = await_leader(cluster, all_nodes)
    follower = next(n for n in all_nodes if n != leader)
    ok(quorate("member", "remove", f"n{follower}", "--endpoints", endpoints, "--insecure"))
    remaining = [n for n in all_nodes if n != follower]
    await_status(
        cluster, leader, lambda s: s.voters == tuple(remaining), f"n{follower} removed"
    )
    with Client(endpoints_of(cluster, remaining).split(","), insecure=True) as client:
        for i in range(10):
            client.put(f"after-removal-{i}", str(i))
    leader_status = await_status(cluster, leader, lambda s: s.commit_index > 0, "answers")
    # The removed node gets no more entries: its log stops where the cluster left it.
    removed_status = status_of(cluster, follower)
    assert removed_status is not None
    assert removed_status.last_index < leader_status.commit_index
    assert removed_status.role != "leader"

    # Removing the leader itself: it steps down once the change commits (§4.2.2).
    ok(quorate("member", "remove", f"n{leader}", "--endpoints", endpoints_of(cluster, remaining), "--insecure"))
    last = [n for n in remaining if n != leader]
    new_leader = await_leader(cluster, last)
    assert new_leader != leader
    await_status(cluster, new_leader, lambda s: s.voters == (last[0],), "sole voter left")
    await_status(cluster, leader, lambda s: s.role != "leader", "old leader stepped down")
    with Client([format_address(cluster.address(new_leader))], insecure=True) as client:
        client.put("after-leader-removal", "ok")
        assert client.get("after-removal-3") == "3"

    report = json.loads(ok(quorate("cluster", "status", "--dir", str(cluster.directory), "--json")))
    assert report["leader"] == f"n{new_leader}"
    assert report["voters"] == [f"n{new_leader}"]
    rows = {row["node"]: row for row in report["nodes"]}
    assert rows[f"n{leader}"]["member"] is None and rows[f"n{follower}"]["member"] is None
    text = ok(quorate("cluster", "status", "--dir", str(cluster.directory)))
    assert f"voters: n{new_leader}" in text


@pytest.mark.slow  # over 20 s: the default suite keeps to its time budget
def test_transfer_moves_leadership_and_operator_errors_are_one_line(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(nodes=3)
    cluster.write_configs()
    cluster.start_all()
    nodes = list(cluster.ids)
    endpoints = endpoints_of(cluster, nodes)
    leader = await_leader(cluster, nodes)
    target = next(n for n in nodes if n != leader)
    common = ("--endpoints", endpoints, "--insecure")

    ok(quorate("leader", "transfer", f"n{target}", *common))
    assert await_leader(cluster, [target]) == target
    # The transfer itself is proven above; with a 0.5 s election timeout a
    # loaded machine may have started another election since, so the report
    # is read until it names a leader.
    report: dict[str, Any] = {}

    def reports_a_leader() -> bool:
        report.update(json.loads(ok(quorate("cluster", "status", "--dir", str(cluster.directory), "--json"))))
        return report["leader"] in {f"n{n}" for n in nodes}

    assert wait_for(reports_a_leader, WAIT_LIMIT_S, interval_s=0.2), report
    assert report["voters"] == ["n1", "n2", "n3"]

    # Refused by the cluster: exit 1, the leader's reason on one line.
    other = next(n for n in nodes if n != target)
    refused(
        quorate("member", "add", f"n{other}", "--address", "127.0.0.1:1", *common), 1, "already a voter"
    )
    # ...and the refused add did not redirect traffic meant for that member.
    assert status_of(cluster, target) is not None
    with Client(endpoints.split(","), insecure=True) as client:
        client.put("still-fine", "1")
    refused(quorate("member", "remove", "n9", *common), 1, "not a member")
    refused(quorate("member", "promote", f"n{other}", *common), 1, "not a learner")
    refused(quorate("leader", "transfer", "n9", *common), 1, "not a voter")
    nobody = f"127.0.0.1:{free_base_port(1)}"
    refused(
        quorate("member", "remove", "n2", "--endpoints", nobody, "--insecure", "--timeout", "1"),
        1,
        f"no node of the cluster at {nobody} answered (is it running?",
    )
    # Usage mistakes: exit 2 before anything is sent.
    refused(quorate("member", "add", "n5", "--address", "nowhere", *common), 2, "--address")
    refused(quorate("member", "remove", "node-five", *common), 2, "node")
    refused(quorate("member", "remove", "n2", "--endpoints", "bad", "--insecure"), 2, "endpoint")
    refused(quorate("member", "remove", "n2", *common, "--timeout", "0"), 2, "--timeout")
    # Nothing above changed the membership.
    final: dict[str, Any] = json.loads(
        ok(quorate("cluster", "status", "--dir", str(cluster.directory), "--json"))
    )
    assert final["voters"] == ["n1", "n2", "n3"] and final["learners"] == []


def test_a_joining_node_must_name_the_cluster_it_joins(tmp_path: Path) -> None:
    raw = {
        "id": "n4",
        "listen": "127.0.0.1:7004",
        "data_dir": "n4",
        "insecure": True,
        "options": {"join": True},
    }
    with pytest.raises(ConfigError, match="join = true needs"):
        node_config_from_mapping(raw, tmp_path)
    config = node_config_from_mapping({**raw, "peers": {"n1": "127.0.0.1:7001"}}, tmp_path)
    assert config.options["join"] is True
    # Written back and read again, the option survives (what 'cluster up' relies on).
    path = tmp_path / "n4.toml"
    path.write_text(config.to_toml())
    from quorate.runtime.aio.config import load_node_config

    assert load_node_config(path).options == {"join": True}

