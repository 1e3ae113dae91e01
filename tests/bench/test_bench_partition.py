"""``quorate bench partition``: its scenarios, its JSON on a tiny
configuration, its refusals; one short simulated run per partition kind
(slow). Figures are the benchmark's output, never asserted against a speed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from quorate.bench.partition import (
    NOT_RUN,
    PAPER_AVAILABILITY,
    SCENARIOS,
    PartitionBenchSettings,
    build_scenario,
    majority_side,
    run_bench,
    run_scenario,
)
from quorate.cli.main import _register, app
from quorate.errors import ConfigError
from quorate.runtime.sim.faults import parse_spec, validate

_register()
runner = CliRunner()

SHARDS = {1: (1, 5, 9, 13), 2: (2, 6, 10, 14), 3: (3, 7, 11, 15), 4: (4, 8, 12, 16), 5: (17, 18, 19, 20)}
CORE = (1, 2, 3, 4)
TINY = PartitionBenchSettings(
    seeds=1, scenarios=("core-split",), nodes=8, cut_at_s=1.0, heal_at_s=2.5, duration_s=3.0, drain_s=2.0, settle_s=1.0
)
"""Two shards of four, one short cut: enough to exercise every part of a run."""


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_is_a_valid_fault_schedule(name: str) -> None:
    settings = PartitionBenchSettings()
    scenario = build_scenario(name, settings, SHARDS, CORE)
    actions = parse_spec(scenario.spec)
    validate(actions, settings.nodes)
    assert actions[-1].kind == "heal" and actions[-1].at_s == settings.heal_at_s
    assert min(a.at_s for a in actions) == settings.cut_at_s
    assert frozenset().union(*scenario.sides) == frozenset(range(1, 21))


def test_the_scenarios_cut_what_they_say() -> None:
    s = PartitionBenchSettings()
    region = build_scenario("region-cut", s, SHARDS, CORE)
    assert region.sides[0] == frozenset({1, 4, 7, 10, 13, 16, 19})  # region 0, round robin over 3 regions
    core = build_scenario("core-split", s, SHARDS, CORE)
    assert core.sides[0] == frozenset({1, 2})
    halves = build_scenario("shard-halves", s, SHARDS, CORE)
    assert all(len(set(members) & halves.sides[0]) == 2 for members in SHARDS.values())
    assert all(majority_side(halves, members, "byzantine") is None for members in SHARDS.values())
    one_way = build_scenario("one-way", s, SHARDS, CORE)
    cuts = [a for a in parse_spec(one_way.spec) if a.kind == "cut"]
    assert {(a.node, a.peer) for a in cuts} >= {(1, 5), (1, 9), (1, 13), (1, 2), (1, 3), (1, 4)}
    assert not one_way.symmetric and one_way.sides == (frozenset(range(1, 21)),)
    flapping = [a.kind for a in parse_spec(build_scenario("flapping", s, SHARDS, CORE).spec)]
    assert flapping == ["partition", "heal"] * 3 + ["heal"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": 0}, "--seeds must be within 1..50"),
        ({"scenarios": ("region-cut", "nope")}, "unknown scenario 'nope'"),
        ({"scenarios": ("split-merge",)}, "unknown scenario 'split-merge'"),
        ({"shard_size": 11}, "--shard-size must be within 4..10"),
        ({"heal_at_s": 3.0}, "the cut must come before the heal"),
    ],
)
def test_settings_refuse_what_cannot_run(changes: dict[str, object], message: str) -> None:
    import dataclasses

    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        dataclasses.replace(PartitionBenchSettings(), **changes).validate()


def test_json_shape_on_a_tiny_run() -> None:
    result = run_bench(TINY)
    for key in (
        "availability", "availability_all_pairs", "paper_claim_availability", "claim_holds", "cross_shard_availability",
        "cross_shard_committed_share", "pairs", "pairs_without_majority_side", "reconcile_s_median", "reconcile_s_max",
        "lost", "half_applied", "stuck_undecided", "safety_violations", "not_linearizable_runs", "per_scenario",
        "not_run", "settings", "runs",
    ):
        assert key in result, key
    assert result["paper_claim_availability"] == PAPER_AVAILABILITY
    assert set(result["not_run"]) == set(NOT_RUN)
    assert set(result["per_scenario"]) == {"core-split"}
    assert len(result["runs"]) == 1
    run = result["runs"][0]
    assert {p["shard"] for p in run["shards"]} == {1, 2}
    for p in run["shards"]:
        assert set(p) >= {"majority_side", "quorum_needed", "probe_writes_in_cut", "available", "cross_available"}
    assert (result["lost"], result["half_applied"], result["stuck_undecided"], result["safety_violations"]) == (0, 0, 0, 0)
    assert result["not_linearizable_runs"] == 0
    json.dumps(result)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "0"], "--seeds must be within 1..50, got 0"),
        (["--seeds", "999"], "--seeds must be within 1..50, got 999"),
        (["--scenario", "everything"], "unknown scenario 'everything'"),
        (["--scenario", "split-merge"], "unknown scenario 'split-merge'"),
        (["--scenario", "reshard-cut", "--nodes", "8"], "scenario 'reshard-cut' needs 3 shards or more"),
        (["--shard-size", "99"], "--shard-size must be within 4..10 (two shards at least), got 99"),
        (["--nodes", "2"], "--nodes must be within 8..200, got 2"),
        (["--quorum", "most"], "--quorum must be majority or byzantine"),
    ],
)
def test_cli_refuses_bad_options_in_one_line(flags: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "partition", *flags])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.slow
def test_cli_json_on_a_tiny_run() -> None:
    result = runner.invoke(app, ["bench", "partition", "--seeds", "1", "--scenario", "core-split", "--nodes", "8", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["per_scenario"]["core-split"]["pairs"] == 2
    assert data["lost"] == data["half_applied"] == data["stuck_undecided"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_each_partition_kind_on_the_default_deployment(name: str) -> None:
    """Seed 1 of every scenario: nothing lost, half-applied or left undecided,
    safety kept, the history linearizable, and every run reconciled."""
    run = run_scenario(name, 1, PartitionBenchSettings())
    assert (run["lost"], run["half_applied"], run["stuck_undecided"]) == (0, 0, 0), run["lost_detail"]
    assert run["safety_violations"] == [] and run["linearizable"] is True
    assert run["reconcile_s"] is not None
    serving = [p for p in run["shards"] if p["probed"] and p["majority_side"] is not None]
    assert all(p["available"] for p in serving), run["shards"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["core-split", "flapping"])
def test_a_cut_settles_the_transactions_it_left_prepared(name: str) -> None:
    """Seed 1 on shards of five once left transactions prepared and never
    decided (core split: two; flapping: one, already acknowledged as
    committed by its home shard): their decisions were certified while a
    shard was cut off, and a shard's repeated vote is refused as already
    decided. Members now ask the core for the certificates."""
    settings = PartitionBenchSettings(shard_size=5, duration_s=16.0, drain_s=6.0)
    run = run_scenario(name, 1, settings)
    assert run["stuck_undecided"] == 0 and run["half_applied"] == 0 and run["lost"] == 0


@pytest.mark.slow
def test_the_final_state_is_checked_against_the_history() -> None:
    """A value no acknowledged write left there, read back at the end, fails
    the linearizability check of the run (how a lost write shows)."""
    import dataclasses

    from quorate.bench.hrb_sim import HrbRunConfig, linearizable
    from quorate.bench.partition import _model_class
    from quorate.hrb.partition import PartitionConfig
    from quorate.runtime.sim.composed import SystemSimulation

    s = TINY
    config = HrbRunConfig(nodes=8, shard_size=4, core=4, duration_s=s.duration_s, drain_s=s.drain_s, seed=1, heal_at_s=s.heal_at_s)
    model = _model_class()(
        dataclasses.replace(config.settings(), partition=PartitionConfig()),
        lambda m: build_scenario("core-split", s, m.shards, m.members_of[0]),
        s,
    )
    sim_config = dataclasses.replace(config.sim_config(), faults=model.scenario.spec)
    run = SystemSimulation(sim_config, model, drain_s=s.drain_s, name="hrb").run()
    alive = [True] * 8
    assert linearizable(run.history + model.final_reads(alive, 60.0))[0] is True
    agent = next(a for a in model.pool.agents if a.balances.get(a.accounts[0]) is not None)
    for m in model.shards[agent.home]:
        model.members[m].member.store.data[agent.accounts[0]] = "12345"
    assert linearizable(run.history + model.final_reads(alive, 60.0))[0] is False
