"""Casper FFG in the simulator: ``quorate sim casper`` runs the same protocol
code as real validators, with seeded faults, histories checked for
linearizability, and Byzantine validators that break a slashing condition
convicted by every honest one (Buterin & Griffith 2017, §3)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from quorate.check import check_history
from quorate.cli import sim as sim_cli
from quorate.cli.main import app
from quorate.runtime.sim import SimConfig, run

OPTIONS = {"slot_timeout_s": 0.25, "max_slot_timeout_s": 0.5, "justify_wait_s": 0.1}


def _checked(config: SimConfig) -> dict[str, object]:
    result = run(config)
    where = f"reproduce with: quorate sim casper --seed {config.seed} (config {config})"
    assert result.safety_violations == [], where
    assert str(check_history(result.history, timeout_s=60.0).verdict) == "linearizable", where
    return result.to_json()


def test_the_cli_runs_casper_and_checks_the_history() -> None:
    assert sim_cli.sim_app is not None  # registers the sim subcommands
    out = CliRunner().invoke(app, ["sim", "casper", "--nodes", "4", "--duration", "2", "--seed", "3", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    assert report["protocol"] == "casper" and report["ok"] is True
    assert report["linearizable"] is True and report["committed_ops"] > 0


def test_a_seed_fixes_the_run() -> None:
    config = SimConfig(protocol="casper", nodes=4, duration_s=1.0, seed=7, faults="chaos")
    first, again = run(config).to_json(), run(config).to_json()
    assert first["trace_sha256"] == again["trace_sha256"]
    other = run(SimConfig(protocol="casper", nodes=4, duration_s=1.0, seed=8, faults="chaos")).to_json()
    assert other["trace_sha256"] != first["trace_sha256"]


@pytest.mark.parametrize("behaviour", ["double_vote", "surround_vote"])
def test_a_slashable_validator_is_convicted_and_finality_goes_on(behaviour: str) -> None:
    report = _checked(SimConfig(protocol="casper", nodes=4, duration_s=3.0, byzantine=f"1:{behaviour}", seed=2))
    (offender,) = (int(k) for k in report["byzantine"])  # type: ignore[union-attr]
    detections = report["detections"]
    assert detections and {d["offender"] for d in detections} == {offender}  # type: ignore[union-attr]
    assert detections[0]["detected_by"] == 3  # type: ignore[index]
    excluded = report["excluded"]
    assert all(v == [offender] for v in excluded.values())  # type: ignore[union-attr]
    assert report["committed_ops"] > 100


@pytest.mark.parametrize("seed", range(3))
def test_seven_validators_with_two_byzantine_under_chaos(seed: int) -> None:
    config = SimConfig(
        protocol="casper",
        nodes=7,
        clients=4,
        rate_ops=20.0,
        duration_s=7.0,
        op_timeout_s=1.5,
        faults="chaos",
        heal_at_s=2.5,
        byzantine="1:double_vote,1:surround_vote",
        liveness_bound_s=4.0,
        seed=seed,
        protocol_options=dict(OPTIONS),
    )
    report = _checked(config)
    assert report["liveness_ok"] is True
    assert len(report["byzantine"]) == 2  # type: ignore[arg-type]


def test_three_regions() -> None:
    report = _checked(
        SimConfig(protocol="casper", nodes=4, regions=3, inter_region_ms=50.0, duration_s=3.0, seed=1)
    )
    assert report["committed_ops"] > 0
    # Finality needs two checkpoints and their votes: several inter-region trips.
    assert report["latency_ms"]["p50"] > 100  # type: ignore[index]
