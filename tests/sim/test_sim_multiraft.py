"""Multi-Raft in the simulator: splits and moves under load and chaos, safe,
linearizable and live; groups created on a leader's first message and never
again once left; quiesced groups woken by the node-level failure detector."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from quorate.check import check_history
from quorate.cli.main import app
from quorate.cli.sim import command_line
from quorate.core.host import HostedGroup
from quorate.multiraft import LIVENESS_GROUP, META_GROUP
from quorate.raft.messages import Heartbeat, RequestVoteResponse
from quorate.runtime.sim.multiraft import MultiRaftConfig, MultiRaftSimulation, run_multiraft
from quorate.runtime.sim.node import Grouped


def small(seed: int, **changes: object) -> MultiRaftConfig:
    config = MultiRaftConfig(
        nodes=7, groups=12, replicas=3, duration_s=10.0, faults="chaos", seed=seed, split_at_ops=60, clients=6
    )
    for name, value in changes.items():
        setattr(config, name, value)
    return config


def test_a_chaos_run_splits_moves_and_stays_safe_linearizable_and_live() -> None:
    config = small(3)
    first = run_multiraft(config)
    where = command_line(config)
    assert first.safety_violations == [], where
    assert str(check_history(first.history, timeout_s=60).verdict) == "linearizable", where
    assert first.liveness_ok is True, where
    report = first.to_json()
    assert report["splits"] > 0 and report["moves"] > 0 and report["committed_ops"] > 0
    assert report["groups"] == 12 + report["splits"]
    again = run_multiraft(config)
    assert again.trace_sha256 == first.trace_sha256


REAL_NODE_OPTIONS = {"lazy_commit": True, "elide_heartbeats": True}
"""The Raft options a real multi-Raft node runs its groups with."""


def test_the_real_nodes_raft_options_stay_safe_linearizable_and_live_under_chaos() -> None:
    config = small(4, nodes=5, groups=6, duration_s=5.0, protocol_options=REAL_NODE_OPTIONS)
    result = run_multiraft(config)
    where = command_line(config)
    assert result.safety_violations == [], where
    assert str(check_history(result.history, timeout_s=60).verdict) == "linearizable", where
    assert result.liveness_ok is True, where
    assert result.to_json()["committed_ops"] > 0


def test_the_cli_runs_multiraft_and_reports_its_fields() -> None:
    line = "sim multiraft --nodes 5 --groups 6 --replicas 3 --duration 4 --split-at-ops 40 --seed 2 --json"
    result = CliRunner().invoke(app, line.split())
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["linearizable"] is True and report["safety_violations"] == []
    assert {"groups", "splits", "moves", "quiesced_groups"} <= set(report)
    bad = CliRunner().invoke(app, ["sim", "multiraft", "--replicas", "9", "--nodes", "5"])
    assert bad.exit_code == 2 and "replicas must be within 1..5" in bad.output


def test_command_line_names_the_multiraft_flags() -> None:
    line = command_line(small(4))
    assert line.startswith("quorate sim multiraft ") and "--groups 12" in line and "--split-at-ops 60" in line


def _host_of(sim: MultiRaftSimulation, group: int) -> tuple[int, HostedGroup]:
    for node in sim.nodes:
        hosted = node.host.get(group) if node.host is not None else None
        if hosted is not None and not hosted.core.is_leader:  # type: ignore[attr-defined]
            return node.id, hosted
    raise AssertionError(f"no follower of group {group}")


def test_unknown_groups_create_a_replica_only_from_leader_traffic_and_never_once_left() -> None:
    sim = MultiRaftSimulation(small(1, faults="none", clients=0, duration_s=3.0))
    sim.run()
    node_id, hosted = _host_of(sim, 1)
    node = sim.nodes[node_id]
    assert node.host is not None
    leader = hosted.core.leader_id  # type: ignore[attr-defined]
    term = hosted.core.term  # type: ignore[attr-defined]
    unknown = node.host.unknown_group_messages

    def deliver(src: int, message: object) -> None:
        # After whatever the node is busy with: handled at once.
        node.deliver((max(sim.loop.now, node.busy_until), 0, 0, node_id, src, message, 40))

    # A malformed group id and a message that is not a leader's never create a group.
    deliver(leader, Grouped(-4, Heartbeat(term, 0, 1)))
    deliver(leader, Grouped(10_000, RequestVoteResponse(term, True)))
    assert 10_000 not in node.host and node.host.unknown_group_messages == unknown + 2
    # The node leaves group 1: its replica is dropped and a tombstone kept.
    node.retire(1)
    deliver(leader, Grouped(1, Heartbeat(term, 0, 1)))  # the turn carries the retirement out
    assert 1 not in node.host and 1 in node.tombstones and 1 not in node.storages
    deliver(leader, Grouped(1, Heartbeat(term, 0, 1)))
    assert 1 not in node.host  # stale traffic never recreates it
    # Leader traffic of a group the node never hosted creates an empty joining replica.
    deliver(leader, Grouped(9_999, Heartbeat(term, 0, 1)))
    joined = node.host.get(9_999)
    assert joined is not None and joined.state.descriptor is None


def test_the_failure_detector_wakes_the_quiet_groups_of_a_crashed_leader() -> None:
    def leaderless(suspicion_s: float) -> tuple[int, int]:
        config = MultiRaftConfig(
            nodes=5, groups=10, replicas=3, duration_s=30.0, clients=0, seed=1,
            faults="crash:1@10s", liveness_interval_s=1.0, liveness_suspicion_s=suspicion_s,
        )
        sim = MultiRaftSimulation(config)
        result = sim.run()
        assert result.safety_violations == []
        led: set[int] = set()
        hosted: set[int] = set()
        for node in sim.nodes[1:]:
            assert node.host is not None
            for group in node.host:
                if group.id in (META_GROUP, LIVENESS_GROUP):
                    continue
                hosted.add(group.id)
                if group.core.is_leader:  # type: ignore[attr-defined]
                    led.add(group.id)
        return len(hosted - led), result.to_json()["liveness_suspicions"]

    orphans, suspicions = leaderless(3.0)
    assert orphans == 0 and suspicions > 0
    # Without a suspicion within the run, the quiet groups node 1 led stay leaderless.
    orphans_without, _ = leaderless(100.0)
    assert orphans_without > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_the_real_nodes_raft_options_under_chaos_sweep(seed: int) -> None:
    config = small(seed, protocol_options=REAL_NODE_OPTIONS)
    result = run_multiraft(config)
    where = command_line(config)
    assert result.safety_violations == [], where
    assert str(check_history(result.history, timeout_s=60).verdict) == "linearizable", where
    assert result.liveness_ok is True, where


@pytest.mark.slow
def test_the_issue_sized_run_twice() -> None:
    config = MultiRaftConfig(
        nodes=30, groups=200, replicas=3, duration_s=30.0, faults="chaos", seed=5, split_at_ops=50
    )
    first, second = run_multiraft(config), run_multiraft(config)
    assert first.trace_sha256 == second.trace_sha256
    assert first.safety_violations == [] and first.committed_ops > 0
    report = first.to_json()
    assert report["splits"] > 0 and report["moves"] > 0
    assert str(check_history(first.history, timeout_s=120).verdict) == "linearizable"
