"""``quorate bench bft --byzantine``: the seeds it picks, the ratios and
targets it reports, and the command's face."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from quorate.bench import bft
from quorate.cli import bench_bft  # noqa: F401  (registers the command)
from quorate.cli.main import app
from quorate.ids import NodeId
from quorate.runtime.sim import SimConfig, Simulation, derive_rng
from quorate.runtime.sim.bft import choose_byzantine


@pytest.mark.parametrize("nodes", [4, 7, 10])
def test_primary_seeds_put_the_first_primary_among_the_byzantine(nodes: int) -> None:
    seeds = bft.primary_seeds(nodes, 3)
    assert len(seeds) == 3 and seeds == sorted(set(seeds))
    f = (nodes - 1) // 3
    for seed in seeds:
        chosen = choose_byzantine(derive_rng(seed, "byzantine"), nodes, [(f, "silent")], ("silent",))
        assert NodeId(1) in chosen and len(chosen) == f
    skipped = [s for s in range(seeds[0], seeds[-1]) if s not in seeds]
    for seed in skipped:
        assert NodeId(1) not in choose_byzantine(derive_rng(seed, "byzantine"), nodes, [(f, "silent")], ("silent",))


def test_the_first_primary_is_the_one_the_simulated_cores_start_with() -> None:
    for protocol in bft.SCALING_PROTOCOLS:
        sim = Simulation(SimConfig(protocol=protocol, nodes=4, clients=1, duration_s=0.01, record_history=False))
        sim.run()
        core: Any = sim.nodes[0].core
        first = core.primary_of(0) if protocol == "pbft" else core.leader(1)
        assert first == bft.FIRST_PRIMARY, protocol


def _fake_runs(monkeypatch: pytest.MonkeyPatch, ops: dict[str, int]) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def committed(protocol: str, nodes: int, seed: int, duration_s: float, clients: int, faulty: str) -> dict[str, Any]:
        calls.append((protocol, nodes, seed, duration_s, clients, faulty))
        behaviour = faulty.partition(":")[2] or "none"
        return {
            "committed_ops": ops[behaviour] + seed,
            "byzantine": {"1": behaviour} if faulty else {},
            "safety_violations": 0,
            "latency_ms": {},
            "wall_seconds": 0.0,
        }

    monkeypatch.setattr(bft, "_committed", committed)
    return calls


def test_rows_compare_each_behaviour_with_the_fault_free_run_of_the_same_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_runs(monkeypatch, {"none": 1000, "equivocate": 900, "silent": 500, "withhold_votes": 1000})
    report = bft.byzantine(sizes=(4,), protocols=("hotstuff",), seeds=2, duration_s=3.0, clients=2)
    seeds = bft.primary_seeds(4, 2)
    assert [c[2] for c in calls] == [seeds[0]] * 4 + [seeds[1]] * 4
    assert {c[5] for c in calls} == {"", "1:equivocate", "1:silent", "1:withhold_votes"}
    assert all(c[3] == 3.0 and c[4] == 2 for c in calls)
    rows = {(r["seed"], r["behaviour"]): r for r in report["rows"]}
    row = rows[(seeds[0], "silent")]
    assert row["fault_free_ops"] == 1000 + seeds[0] and row["committed_ops"] == 500 + seeds[0]
    assert row["ratio"] == round((500 + seeds[0]) / (1000 + seeds[0]), 3)
    assert row["target_ratio"] == round(3 / 4 * bft.BYZANTINE_TARGET_FRACTION, 3) == 0.6
    assert not row["target_met"] and rows[(seeds[0], "equivocate")]["target_met"]
    summary = {e["behaviour"]: e for e in report["summary"]}
    assert summary["silent"]["min_ratio"] == min(rows[(s, "silent")]["ratio"] for s in seeds)
    assert summary["equivocate"]["target_met"] and not summary["silent"]["target_met"]
    assert report["target_met"] is False and report["safety_violations"] == 0


def test_a_short_real_run_reports_every_behaviour_and_no_safety_violation() -> None:
    report = bft.byzantine(sizes=(4,), protocols=("pbft", "hotstuff"), seeds=1, duration_s=0.5, clients=1)
    assert report["safety_violations"] == 0
    assert {(e["protocol"], e["behaviour"]) for e in report["summary"]} == {
        (p, b) for p, behaviours in bft.BYZANTINE_BEHAVIOURS.items() for b in behaviours
    }
    assert all(row["fault_free_ops"] > 0 and len(row["byzantine_replicas"]) == 1 for row in report["rows"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flood", "--byzantine"], "pick one"),
        (["--seeds", "3"], "go with --byzantine"),
        (["--byzantine", "--sizes", "3,4"], "sizes >= 4"),
        (["--byzantine", "--sizes", "four"], "comma-separated integers"),
        (["--byzantine", "--seeds", "-1"], "must be positive"),
        (["--byzantine", "--duration", "inf"], "must be positive"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "bft", *args])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_the_command_prints_the_report_and_fails_on_a_safety_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_runs(monkeypatch, {"none": 1000, "equivocate": 900, "silent": 800, "withhold_votes": 950, "slow": 700})
    result = CliRunner().invoke(app, ["bench", "bft", "--byzantine", "--sizes", "4", "--seeds", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])["byzantine"]
    assert report["duration_s"] == bft.BYZANTINE_DURATION_S and len(report["summary"]) == 6
    table = CliRunner().invoke(app, ["bench", "bft", "--byzantine", "--sizes", "4", "--seeds", "1"])
    assert table.exit_code == 0 and "withhold_votes" in table.output and "safety violations: 0" in table.output

    original = bft.byzantine

    def unsafe(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**original(*args, **kwargs), "safety_violations": 1}

    monkeypatch.setattr(bft, "byzantine", unsafe)
    result = CliRunner().invoke(app, ["bench", "bft", "--byzantine", "--sizes", "4", "--seeds", "1", "--json"])
    assert result.exit_code == 1
