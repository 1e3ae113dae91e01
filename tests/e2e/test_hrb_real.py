"""HRB on real processes, end to end.

- ``quorate demo hrb --json``: twelve node processes, a bank across three
  shards, a shard leader turned equivocating mid-run is detected, deposed
  and evicted; nothing acknowledged lost, no atomicity violation, the
  register history linearizable (slow: about 35 s here);
- ``--fault kill-shard-leader`` / ``kill-core-member``: a real ``kill -9``
  of a shard leader, and of a core member, mid-transfer; nothing lost and
  atomicity kept (slow);
- ``quorate cluster up --protocol hrb`` then ``quorate kv txn``: intra- and
  cross-shard transactions, an overdraft aborted, reads back; ``cluster
  status`` lists each shard's leader and voters (slow);
- mistakes on the command line end with exit 2 and one line, before
  anything starts (fast).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.conftest import free_base_port

DEMO_LIMIT_S = 170


def _quorate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quorate", *args], capture_output=True, text=True, timeout=timeout
    )


def _demo(fault: str) -> dict[str, object]:
    result = _quorate("demo", "hrb", "--json", "--insecure", "--fault", fault, timeout=DEMO_LIMIT_S)
    summary: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, (json.dumps(summary), result.stderr[-3000:])
    assert summary["acked_txns"] > 0  # type: ignore[operator]
    assert summary["acked_txns_lost"] == 0
    assert summary["atomicity_violations"] == 0
    assert summary["total_balance"] == summary["expected_total_balance"]
    assert summary["linearizable"] is True
    return summary


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_demo_hrb_evicts_the_equivocating_leader_and_loses_nothing() -> None:
    summary = _demo("equivocate")
    (detection,) = summary["detections"]  # type: ignore[misc]
    assert detection["behaviour"] == "equivocating-leader"
    assert 0 < detection["detected_after_s"] <= detection["evicted_after_s"]
    assert detection["deposed_after_s"] is not None
    assert detection["detected_by"]
    if detection["core_member"]:
        # The core moved on without it (a new epoch keyed among its members).
        assert detection["core_epoch"] == 1 and detection["core_epoch_after_s"] is not None
    assert summary["acked_cross_shard_txns"] > 0  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_kill_9_of_a_shard_leader_mid_transfer_loses_nothing() -> None:
    summary = _demo("kill-shard-leader")
    (killed,) = summary["killed"]  # type: ignore[misc]
    assert killed["role"].startswith("the leader of shard")
    assert "back_after_s" in killed


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_kill_9_of_a_core_member_mid_transfer_loses_nothing() -> None:
    summary = _demo("kill-core-member")
    (killed,) = summary["killed"]  # type: ignore[misc]
    assert "core" in killed["role"]
    assert "back_after_s" in killed
    assert summary["acked_cross_shard_txns"] > 0  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cluster_up_hrb_and_kv_txn(tmp_path: Path) -> None:
    directory = str(tmp_path / "hrb")
    up = _quorate(
        "cluster", "up", "--protocol", "hrb", "--shards", "3", "--shard-size", "4", "--core", "4",
        "--insecure", "--dir", directory, "--base-port", str(free_base_port(12)), timeout=150,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "3 shards of 4 (byzantine quorum), a core of 4" in up.stdout
        on = ("--dir", directory)
        assert _quorate("kv", "txn", "put", "a=100", "b=100", "c=5", *on).returncode == 0
        moved = _quorate("kv", "txn", "transfer", "a", "b", "30", *on)
        assert moved.returncode == 0 and moved.stdout.strip() == "committed", moved.stdout + moved.stderr
        overdraft = _quorate("kv", "txn", "transfer", "c", "a", "30", *on)
        assert overdraft.returncode == 1 and "below 0" in overdraft.stderr
        run = _quorate("kv", "txn", "run", "a-=10,min=0", "c+=10", "--json", *on)
        assert run.returncode == 0 and json.loads(run.stdout)["committed"] is True
        got = _quorate("kv", "txn", "get", "a", "b", "c", "--json", *on)
        assert json.loads(got.stdout) == {"a": "60", "b": "130", "c": "15"}
        status = _quorate("cluster", "status", "--json", *on)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert [s["shard"] for s in report["shards"]] == [1, 2, 3]
        assert all(s["leader"] is not None and len(s["voters"]) == 4 for s in report["shards"])
        assert len(report["core"]) == 4 and len(report["nodes"]) == 12
        shown = _quorate("cluster", "status", *on)
        assert "shard 1: leader n" in shown.stdout
    finally:
        _quorate("cluster", "down", "--dir", directory, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cluster", "up", "--protocol", "raft", "--shards", "3"), "--shards: HRB settings; not for raft"),
        (("cluster", "up", "--protocol", "hrb", "--nodes", "5"), "leave out --nodes"),
        (("cluster", "up", "--protocol", "hrb", "--quorum", "most"), "quorum must be one of"),
        (("cluster", "up", "--protocol", "hrb", "--shards", "2", "--shard-size", "1", "--core", "3"), "more than the 2 nodes"),
        (("kv", "txn", "run", "nonsense", "--endpoints", "127.0.0.1:1", "--insecure"), "cannot read the operation"),
        (("kv", "txn", "transfer", "a", "a", "5", "--endpoints", "127.0.0.1:1", "--insecure"), "two different accounts"),
        (("demo", "hrb", "--fault", "meteor"), "--fault must be one of"),
        (("demo", "nope"), "unknown demo"),
    ],
)
def test_command_line_mistakes_exit_2_with_one_line(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from quorate.cli.main import _register, app

    _register()
    extra = ["--dir", str(tmp_path / "x")] if args[0] == "cluster" else []
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing was started or written
