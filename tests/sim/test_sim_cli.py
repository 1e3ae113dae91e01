"""The ``quorate sim`` and ``quorate bench sim`` commands."""

from __future__ import annotations

import json
import pathlib

import pytest
from typer.testing import CliRunner

from quorate.cli.main import _register, app

_register()
runner = CliRunner()


def test_json_last_line_has_the_fields() -> None:
    result = runner.invoke(app, ["sim", "primary", "--nodes", "3", "--clients", "3", "--duration", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["protocol"] == "primary" and report["nodes"] == 3
    assert report["linearizable"] is True
    assert report["committed_ops"] > 0
    assert len(report["trace_sha256"]) == 64


def test_human_output_and_history_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "history.json"
    result = runner.invoke(
        app, ["sim", "primary", "--nodes", "3", "--duration", "0.5", "--history", str(path), "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "history: linearizable" in result.stdout
    history = json.loads(path.read_text())
    assert history and {"process", "type", "f", "key", "value", "time"} == set(history[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "0"], "nodes must be >= 1"),
        (["--regions", "9"], "regions"),
        (["--duration", "-3"], "duration"),
        (["--faults", "crash:2"], "ACTION@TIME"),
        (["--faults", "@/nonexistent/scenario.json"], "cannot read"),
        (["--option", "batch_max"], "KEY=VALUE"),
        (["--op-timeout", "0"], "op_timeout_s"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["sim", "primary", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_safety_violation_exits_1() -> None:
    # the primary protocol has no monitor; use Raft that commits without a quorum
    from tests.sim.test_sim_cluster import ISOLATE_EACH_IN_TURN

    from quorate.cli.sim import run_command
    from quorate.runtime.sim import SimConfig

    config = SimConfig(
        protocol="raft",
        nodes=5,
        clients=4,
        duration_s=11.0,
        faults=ISOLATE_EACH_IN_TURN,
        seed=1,
        protocol_options={"unsafe_commit_without_quorum": True},
    )
    import typer

    with pytest.raises(typer.Exit) as info:
        run_command(config, None, as_json=True)
    assert info.value.exit_code == 1


def test_bft_json_reports_client_resends() -> None:
    result = runner.invoke(
        app, ["sim", "pbft", "--nodes", "4", "--clients", "3", "--duration", "0.5", "--seed", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["linearizable"] is True and report["committed_ops"] > 0
    assert report["client_resends"] == 0  # nothing failed: every request had its answers in time


def test_protocol_options_and_timeouts_reach_the_run() -> None:
    args = ["sim", "pbft", "--nodes", "4", "--clients", "4", "--duration", "0.5", "--seed", "3", "--json"]
    base = runner.invoke(app, args)
    tuned = runner.invoke(
        app, [*args, "--option", "batch_max=1", "--option", "authentication=macs", "--op-timeout", "3"]
    )
    assert base.exit_code == 0 and tuned.exit_code == 0, tuned.output
    a = json.loads(base.stdout.strip().splitlines()[-1])
    b = json.loads(tuned.stdout.strip().splitlines()[-1])
    assert b["linearizable"] is True and b["committed_ops"] > 0
    # One command per pre-prepare and MAC'd messages: another run entirely.
    assert a["trace_sha256"] != b["trace_sha256"]
    bad = runner.invoke(app, [*args, "--option", "batch_max=0"])
    assert bad.exit_code == 2 and "batch_max" in bad.stderr


NO_QUORUM_AFTER_THE_HEAL = ["--faults", "crash:1@0.5s,crash:2@0.5s,crash:3@0.5s", "--heal-at", "1"]
"""Three of five Raft nodes crash for good: nothing can commit after the heal."""


def test_a_run_that_does_not_recover_exits_1_with_one_line_and_says_why_in_json() -> None:
    args = ["sim", "raft", "--nodes", "5", "--clients", "3", "--duration", "3", *NO_QUORUM_AFTER_THE_HEAL]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "NOT RECOVERED" in lines[0] and "--seed 0" in lines[0], result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is False and report["liveness_ok"] is False
    assert any("NOT RECOVERED" in reason for reason in report["failures"])
    human = runner.invoke(app, args)
    assert human.exit_code == 1
    assert "NOT RECOVERED" in human.stdout
    # Nothing completed: the latency says so instead of printing None.
    assert "latency: no operation completed" in human.stdout and "None" not in human.stdout


def test_a_good_run_says_ok_and_explains_its_counters() -> None:
    args = ["sim", "raft", "--nodes", "3", "--clients", "4", "--duration", "3"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["failures"] == [] and report["committed_ops"] > 0
    assert report["failed_ops_cas_mismatch"] == report["failed_ops"]
    human = runner.invoke(app, args)
    assert "elections won:" in human.stdout and "(terms with a leader)" in human.stdout
    assert "leader changes:" in human.stdout
    if report["failed_ops"]:
        assert "cas mismatches" in human.stdout


def test_failed_operations_are_named_cas_mismatches_when_they_are() -> None:
    from quorate.cli.sim import ops_text
    from quorate.runtime.sim import SimConfig, run

    result = run(SimConfig(protocol="primary", nodes=3, clients=10, duration_s=1.0, seed=1))
    cas = sum(1 for e in result.history if e["type"] == "fail" and e["f"] == "cas")
    assert result.failed_ops == cas > 0  # concurrent cas calls on 10 keys collide
    assert f"{cas:,} failed (cas mismatches: the key held another value)" in ops_text(result)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_equivocator_is_either_convicted_or_explained(seed: int) -> None:
    result = runner.invoke(
        app, ["sim", "pbft", "--nodes", "4", "--clients", "3", "--duration", "1",
              "--byzantine", "1:equivocate", "--seed", str(seed)],
    )
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.stdout.splitlines() if x.startswith("byzantine: ")]
    node = line.split()[1].split("=")[0]
    assert node in ("n1", "n2", "n3", "n4")  # numbered as in a real cluster
    lines = result.stdout.splitlines()
    convicted = any(x.startswith(f"detected: {node} equivocated") for x in lines)
    explained = f"not detected: {node} equivocated but was never convicted:" in lines
    assert convicted != explained, result.stdout
    if explained:
        assert "no honest replica holds two of its signed votes" in " ".join(result.stdout.split())
