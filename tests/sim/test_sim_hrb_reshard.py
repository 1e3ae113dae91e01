"""``quorate sim hrb --dynamic-sharding``: splits, merges and agent moves
through the core while agents write (``quorate.hrb.reshard``,
``quorate.hrb.reshard_sim``), on simulated nodes:

- a scripted split, agent move and merge all commit, keys move from the
  source to the target only, and the run keeps atomicity, the bank total and
  per-key linearizability;
- a split of a shard that does not exist is refused by the core: one line,
  counted, nothing changed, exit 2; malformed ``--reshard`` is one line too;
- the background partitioner under ``--faults chaos`` (a few seeds in the
  slow suite, and a sweep of 100 seeds): no safety, atomicity or
  linearizability violation, and a transaction completes after the heal.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import pytest
from typer.testing import CliRunner

from quorate.bench.hrb_sim import HrbRunConfig, run_hrb
from quorate.cli.main import _register, app

_register()
runner = CliRunner()

SMALL = ["sim", "hrb", "--nodes", "12", "--shard-size", "4", "--core", "4", "--duration", "10", "--drain", "4"]


def _chaos(seed: int) -> HrbRunConfig:
    return HrbRunConfig(
        nodes=16, shard_size=4, core=4, duration_s=14.0, drain_s=6.0, faults="chaos", heal_at_s=9.0,
        liveness_bound_s=8.0, dynamic_sharding=True, seed=seed,
    )


def test_a_split_a_move_and_a_merge_commit_while_agents_write() -> None:
    config = HrbRunConfig(
        nodes=12, shard_size=4, core=4, duration_s=6.0, drain_s=2.0, dynamic_sharding=True,
        reshard="split:1:3@1,move:a0:2@2.5,merge:3:1@4", seed=1,
    )
    report, _ = run_hrb(config)
    assert report["failures"] == [] and report["linearizable"] is True
    d = report["dynamic_sharding"]
    assert [p["detail"] for p in d["proposals"]] == ["split 1 -> 3", "move 1 agents", "merge 3 into 1"]
    assert [c["version"] for c in d["commits"]] == [1, 2, 3] and d["aborts"] == 0
    assert d["scripted_refused"] == [] and d["map_version"] == 3
    # What left a source arrived at its target, nothing else moved.
    assert d["keys_installed"] > 0 and d["keys_installed"] == d["keys_dropped"]
    assert report["atomicity_violations"] == 0 and report["bank_total"] is not None
    assert d["before"]["committed"] > 0 and d["after"]["committed"] > 0


def test_a_split_of_a_shard_that_does_not_exist_is_refused_counted_and_changes_nothing() -> None:
    short = ["sim", "hrb", "--nodes", "12", "--shard-size", "4", "--core", "4", "--duration", "3", "--drain", "2"]
    result = runner.invoke(app, [*short, "--dynamic-sharding", "--reshard", "split:7:3@1", "--seed", "2", "--json"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["quorate: reshard request refused by the core: unknown shard: 7 is not a shard of the deployment"]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    d = report["dynamic_sharding"]
    assert d["map_version"] == 0 and d["commits"] == [] and d["core_refusals"] == {"unknown shard": 1}
    assert report["failures"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dynamic-sharding", "--reshard", "split:1"], "reshard: 'split:1' is not"),
        (["--dynamic-sharding", "--reshard", "grow:1:2@3"], "reshard: 'grow:1:2@3' is not"),
        (["--reshard", "split:1:3@2"], "--reshard needs --dynamic-sharding"),
        (["--no-partitioner"], "--no-partitioner needs --dynamic-sharding"),
    ],
)
def test_malformed_reshard_options_are_one_line(args: list[str], message: str) -> None:
    bad = runner.invoke(app, [*SMALL, *args])
    assert bad.exit_code == 2, bad.output
    assert message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.output


def _check_chaos_run(report: dict[str, Any]) -> None:
    assert report["safety_violations"] == [], report["safety_violations"][0]["message"]
    assert report["atomicity_violations"] == 0
    assert report["linearizable"] is True, report["check_verdict"]
    assert report["failures"] == [], report["failures"]  # includes liveness after the heal


@pytest.mark.slow
def test_splits_moves_and_merges_commit_under_chaos() -> None:
    # Scripted, so every kind is tried while nodes crash and links fail (heal at 9 s).
    committed: Counter[str] = Counter()
    for seed in (1, 2, 3, 4):
        config = dataclasses.replace(_chaos(seed), reshard=SCRIPTED)
        report, _ = run_hrb(config)
        _check_chaos_run(report)
        committed.update(c["change"].split()[0] for c in report["dynamic_sharding"]["commits"])
    assert committed["split"] > 0 and committed["move"] > 0 and committed["merge"] > 0, committed


SCRIPTED = "split:1:4@2,move:a1:4@5,merge:4:2@8"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 101))
def test_dynamic_sharding_under_chaos_sweep(seed: int) -> None:
    """100 seeds under chaos (run with -m slow): odd seeds with the background
    partitioner, even ones with a scripted split, agent move and merge."""
    config = _chaos(seed) if seed % 2 else dataclasses.replace(_chaos(seed), reshard=SCRIPTED)
    report, _ = run_hrb(config)
    _check_chaos_run(report)


def test_windows_of_a_run_count_what_was_invoked_in_them() -> None:
    from quorate.hrb.reshard_sim import window_of

    report = {"per_second": [[1, 0], [2, 1], [3, 1], [0, 0]]}
    assert window_of(report, 0.5, 3.0) == {
        "from_s": 1.0, "to_s": 3.0, "committed": 7, "cross_shard_share": round(2 / 7, 4), "throughput_ops": 3.5,
    }
    assert window_of(report, 3.0, 3.0)["committed"] == 0


@pytest.mark.slow
def test_bench_sharding_simulates_with_and_without_the_partitioner() -> None:
    result = runner.invoke(app, ["bench", "sharding", "--repeat", "1", "--keys", "3000", "--sim-seeds", "1", "--json"])
    assert result.exit_code == 0, result.output
    sim = json.loads(result.output.strip().splitlines()[-1])["sim"]
    [run] = sim["runs"]
    assert run["ok"] and run["committed_changes"] > 0 and run["before"]["committed"] > 0
