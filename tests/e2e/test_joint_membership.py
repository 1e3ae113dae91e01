"""Several voters at once and flexible quorums on real node processes
(Raft thesis §4.3; Howard et al. 2016), driven with the operator's commands
(``quorate member change``, ``quorate quorum status|plan|apply|rollback``):

- a 5-node cluster moves 2 voters at once through joint consensus while
  clients write: no acknowledged write is lost and the history is
  linearizable;
- an unsafe flexible-quorum request (Q1 + Q2 <= n), an empty voter set and
  a change while a joint configuration is in force are refused by the
  leader with one line and exit 1, changing nothing; usage mistakes exit 2
  before anything is sent;
- a strategy's plan is applied through consensus and rolled back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.test_membership import (
    await_leader,
    await_status,
    endpoints_of,
    ok,
    quorate,
    refused,
)
from typer.testing import CliRunner

from quorate.check import check_history
from quorate.cli import quorum as quorum_cli
from quorate.cli.main import _register, app
from quorate.client import AsyncClient, Client
from quorate.client.workload import RecordedWorkload
from quorate.ids import NodeId
from quorate.quorum import WindowMetrics
from quorate.runtime.aio.cluster import LocalCluster

_register()
N = NodeId
LOAD_BEFORE_S = 1.5
LOAD_AFTER_S = 2.0
CHECK_TIMEOUT_S = 60.0


def five_nodes(make_cluster: Callable[..., LocalCluster]) -> tuple[LocalCluster, str]:
    cluster = make_cluster(nodes=5)
    cluster.write_configs()
    cluster.start_all()
    await_leader(cluster, list(cluster.ids))
    return cluster, endpoints_of(cluster, list(cluster.ids))


def settled(voters: tuple[int, ...], learners: tuple[int, ...]) -> Callable[[object], bool]:
    def check(status: object) -> bool:
        return (
            status.voters == voters  # type: ignore[attr-defined]
            and status.learners == learners  # type: ignore[attr-defined]
            and status.outgoing == ()  # type: ignore[attr-defined]
            and status.applied_index >= status.commit_index  # type: ignore[attr-defined]
        )

    return check


def test_five_nodes_move_two_voters_at_once_under_load(make_cluster: Callable[..., LocalCluster]) -> None:
    cluster, endpoints = five_nodes(make_cluster)
    common = ("--endpoints", endpoints, "--insecure")
    # Two voters become learners at once (joint consensus: 5 -> 3 voters).
    ok(quorate("member", "change", "--learner", "n4", "--learner", "n5", *common))
    for node in cluster.ids:
        await_status(cluster, node, settled((1, 2, 3), (4, 5)), "voters n1-n3, learners n4, n5")

    async def move() -> tuple[RecordedWorkload, list[str], object, str]:
        def client() -> AsyncClient:
            return AsyncClient(cluster.endpoints, insecure=True, deadline_s=20.0)

        workload = RecordedWorkload(client, workers=6, seed=7)
        workload.start()
        try:
            await asyncio.sleep(LOAD_BEFORE_S)
            # n1 and n2 out, n4 and n5 in: the voter sets {1,2,3} and {3,4,5}
            # share one node, so no single step is safe.
            result = await asyncio.to_thread(
                quorate, "member", "change", "--add", "n4", "--add", "n5", "--learner", "n1", "--learner", "n2",
                "--transition", "joint", *common,
            )  # fmt: skip
            await asyncio.sleep(LOAD_AFTER_S)
        finally:
            await workload.stop()
        reader = client()
        lost = await workload.lost_writes(reader)
        await reader.close()
        verdict = check_history(workload.history, CHECK_TIMEOUT_S, time.monotonic)
        return workload, lost, verdict, ok(result)

    workload, lost, verdict, output = asyncio.run(move())
    assert "accepted" in output
    for node in cluster.ids:
        await_status(cluster, node, settled((3, 4, 5), (1, 2)), "voters n3-n5, learners n1, n2")
    assert workload.acked and lost == [], lost
    assert str(verdict.verdict) == "linearizable"  # type: ignore[attr-defined]
    # The new voters commit without the old ones.
    cluster.kill(N(1))
    cluster.kill(N(2))
    await_leader(cluster, [N(3), N(4), N(5)])
    survivors = [str(a) for a in endpoints_of(cluster, [N(3), N(4), N(5)]).split(",")]
    with Client(survivors, insecure=True, deadline_s=30.0) as client:
        client.put("after-the-move", "yes")
        assert client.get("after-the-move") == "yes"


@pytest.mark.slow  # over 20 s: the default suite keeps to its time budget
def test_unsafe_and_conflicting_changes_are_refused_and_change_nothing(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster, endpoints = five_nodes(make_cluster)
    common = ("--endpoints", endpoints, "--insecure")
    before = json.loads(ok(quorate("quorum", "status", *common, "--json")))
    assert before["voters"] == [1, 2, 3, 4, 5] and (before["election_quorum"], before["commit_quorum"]) == (3, 3)
    # Refused by the leader: exit 1, one line, nothing applied.
    refused(quorate("member", "change", "--quorum", "2:3", *common), 1, "Q1 + Q2 > n")
    refused(
        quorate("member", "change", *(x for n in range(1, 6) for x in ("--remove", f"n{n}")), *common),
        1,
        "empty voter set",
    )
    # A flexible pair that intersects is taken: Q1 = 4, Q2 = 2.
    ok(quorate("member", "change", "--quorum", "4:2", *common))
    leader = await_leader(cluster, list(cluster.ids))
    await_status(cluster, leader, lambda s: (s.election_quorum, s.commit_quorum) == (4, 2) and not s.outgoing, "Q1=4 Q2=2")
    # A joint configuration left explicitly: nothing else until it is left.
    ok(quorate("member", "change", "--learner", "n5", "--transition", "joint_explicit", *common))
    # While joint the status names the incoming voters and the outgoing ones apart.
    await_status(cluster, leader, lambda s: s.outgoing == (1, 2, 3, 4, 5) and s.voters == (1, 2, 3, 4), "joint")
    refused(quorate("member", "change", "--learner", "n4", *common), 1, "joint")
    refused(quorate("member", "remove", "n4", *common), 1, "joint")
    ok(quorate("member", "change", "--leave-joint", *common))
    await_status(cluster, leader, lambda s: s.voters == (1, 2, 3, 4) and not s.outgoing, "left the joint configuration")
    # Usage mistakes: exit 2 before anything is sent.
    refused(quorate("member", "change", *common), 2, "nothing to change")
    refused(quorate("member", "change", "--quorum", "four", *common), 2, "--quorum")
    refused(quorate("member", "change", "--add", "n4", "--remove", "n4", *common), 2, "only one of")
    refused(quorate("member", "change", "--add", "n6=nowhere", *common), 2, "--add")
    refused(quorate("member", "change", "--learner", "n2", "--transition", "sideways", *common), 2, "--transition")
    refused(quorate("member", "change", "--leave-joint", "--remove", "n2", *common), 2, "--leave-joint")
    refused(quorate("quorum", "plan", "--strategy", "fastest", *common), 2, "unknown quorum strategy")
    after = json.loads(ok(quorate("quorum", "status", *common, "--json")))
    assert after["voters"] == [1, 2, 3, 4] and after["learners"] == [5]
    assert (after["election_quorum"], after["commit_quorum"]) == (4, 2) and not after["joint"]


def test_a_strategy_plan_is_applied_and_rolled_back(make_cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    cluster, endpoints = five_nodes(make_cluster)
    common = ("--endpoints", endpoints, "--insecure")
    regions = ("--region", "n1=a", "--region", "n2=a", "--region", "n3=a", "--region", "n4=b", "--region", "n5=c")
    planned = json.loads(ok(quorate("quorum", "plan", "--strategy", "fault_tolerance", "--voters", "3", *regions, *common, "--json")))
    plan = planned["plan"]
    # At most one voter per region of three: a region's loss leaves two of three.
    assert len(plan["voters"]) == 3 and {4, 5} <= set(plan["voters"])
    assert planned["change"] is not None
    saved = tmp_path / "previous.json"
    applied = ok(
        quorate(
            "quorum", "apply", "--strategy", "fault_tolerance", "--voters", "3", *regions, "--save", str(saved),
            "--wait", *common,
        )
    )  # fmt: skip
    # --wait returned once the plan was in force: the leader's view says so,
    # and the next change is taken at once (not refused as still committing).
    assert f"in force: voters {plan['voters']}; learners" in applied
    assert "joint" not in applied.splitlines()[-1]
    assert json.loads(saved.read_text())["voters"] == [1, 2, 3, 4, 5]
    ok(quorate("quorum", "rollback", "--from", str(saved), *common))
    leader = await_leader(cluster, list(cluster.ids))
    await_status(cluster, leader, lambda s: s.voters == (1, 2, 3, 4, 5) and s.learners == () and not s.outgoing, "rolled back")
    with Client(endpoints.split(","), insecure=True) as client:
        client.put("after-rollback", "1")


@pytest.mark.slow  # over 20 s: the default suite keeps to its time budget
def test_apply_judges_the_change_and_rolls_back_one_that_made_things_worse(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, endpoints = five_nodes(make_cluster)
    common = ("--endpoints", endpoints, "--insecure")
    regions = ("--region", "n1=a", "--region", "n2=a", "--region", "n3=a", "--region", "n4=b", "--region", "n5=c")
    saved = tmp_path / "previous.json"
    apply = ("quorum", "apply", "--strategy", "fault_tolerance", "--voters", "3", *regions, "--save", str(saved))
    # Measured for real: a fault-tolerance change is judged on availability,
    # and nothing fails here, so it is kept.
    kept = ok(quorate(*apply, "--judge", "1.5", *common))
    assert "before: " in kept and "after: " in kept and "kept: " in kept
    plan = json.loads(saved.read_text())
    assert plan["voters"] == [1, 2, 3, 4, 5]
    ok(quorate("quorum", "rollback", "--from", str(saved), "--wait", *common))
    # A second window that lost writes: the change is taken back through
    # consensus and the command fails saying why.
    windows = iter([WindowMetrics(40, 40, 5.0, 9.0), WindowMetrics(40, 20, 5.0, 9.0)])
    monkeypatch.setattr(quorum_cli, "measure_window", lambda target, duration_s: next(windows))
    result = CliRunner().invoke(app, [*apply, "--judge", "1", *common])
    assert result.exit_code == 1, result.output
    assert "rolled back (availability 1.000 -> 0.500)" in result.stderr
    after = json.loads(ok(quorate("quorum", "status", *common, "--json")))
    assert after["voters"] == [1, 2, 3, 4, 5] and not after["joint"]
    refused(quorate(*apply, "--judge", "-1", *common), 2, "--judge")


@pytest.mark.parametrize("missing", ["nothing.json"])
def test_rollback_without_a_saved_configuration_exits_2(missing: str, tmp_path: Path) -> None:
    refused(
        quorate("quorum", "rollback", "--from", str(tmp_path / missing), "--endpoints", "127.0.0.1:1", "--insecure"),
        2,
        "cannot read",
    )
