"""Configuration changes in the simulator (``runtime.sim.quorum``): starting
voters and quorum sizes, the quorum manager, and bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from quorate.check import check_history
from quorate.cli.main import _register, app
from quorate.runtime.sim import SimConfig, run

_register()
runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quorum", "2:3"], "Q1 + Q2 > n"),
        (["--quorum", "three"], "Q1:Q2"),
        (["--voters", "1,2", "--quorum", "1:1"], "Q1 + Q2 > n"),
        (["--quorum-manager", "fastest"], "unknown quorum strategy 'fastest'"),
        (["--voters", "1,9"], "voters must be distinct node ids in 1..5"),
        (["--voters", "0,1"], "voters must be distinct node ids in 1..5"),
        (["--voters", "1,1,2"], "voters must be distinct"),
        (["--voters", "a,b"], "--voters takes node ids"),
        (["--client-region", "3"], "client_region"),
        (["--manager-voters", "0", "--quorum-manager", "network"], "voter count"),
        (["--reconfigure-every", "-1"], "reconfigure_every_s"),
    ],
)
def test_bad_quorum_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["sim", "raft", "--duration", "1", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_protocol_without_membership_changes_is_refused() -> None:
    result = runner.invoke(app, ["sim", "primary", "--duration", "1", "--quorum-manager", "network"])
    assert result.exit_code == 2
    assert "has no membership changes" in result.stderr


def test_starting_voters_and_flexible_quorums_are_put_in_force() -> None:
    config = SimConfig(
        protocol="raft", nodes=5, clients=4, duration_s=4.0, voters=(1, 2, 3), quorum=(3, 1), seed=3
    )
    result = run(config)
    final = result.quorum["final"]
    assert final["voters"] == [1, 2, 3] and final["learners"] == [4, 5]
    assert (final["election_quorum"], final["commit_quorum"]) == (3, 1)
    assert result.safety_violations == []
    assert str(check_history(result.history, timeout_s=60).verdict) == "linearizable"
    assert result.committed_ops > 0


def test_the_network_strategy_moves_commits_to_the_clients_region() -> None:
    result = runner.invoke(
        app,
        [
            "sim", "raft", "--nodes", "9", "--regions", "3", "--client-region", "0", "--clients", "4",
            "--duration", "8", "--quorum-manager", "network", "--seed", "1", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    quorum = report["quorum"]
    final = quorum["final"]
    assert quorum["strategy"] == "network"
    # Every node of region 0 (n1, n4, n7) votes, two more elsewhere keep
    # Q1 = 4 of 5 reachable; a commit needs the leader and one other (Q2 = 2),
    # and the leader is in the clients' region.
    assert {1, 4, 7} <= set(final["voters"]) and len(final["voters"]) == 5
    assert (final["election_quorum"], final["commit_quorum"]) == (4, 2)
    assert (final["leader"] - 1) % 3 == 0
    events = [e["event"] for e in quorum["manager_events"]]
    assert events[:2] == ["change", "applied"] and "rollback" not in events
    assert report["linearizable"] is True and report["safety_violations"] == []


def test_multiraft_refuses_single_group_configuration_changes() -> None:
    result = runner.invoke(app, ["sim", "multiraft", "--duration", "1", "--voters", "1,2"])
    assert result.exit_code == 2
    assert "for quorate sim raft" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
