"""Chaos sweeps of every protocol (``tests/sim/sweeps.py``): a few seeds each
in the default suite, 500 each in the slow suite (200 for Raft with random
joint-consensus changes and flexible quorums); the runs that once broke
linearizability, as regression tests; and proof that the online checks fire
on the bug they were added for."""

from __future__ import annotations

import pytest
from tests.sim.sweeps import (
    HRB_SWEEPS,
    JOINT_SWEEPS,
    MULTIRAFT_SWEEPS,
    SWEEPS,
    HrbSweep,
    MultiRaftSweep,
    Sweep,
    check_hrb_run,
    check_run,
)
from typer.testing import CliRunner

from quorate.cli import sim as sim_cli
from quorate.cli.main import app
from quorate.cli.sim import command_line
from quorate.hotstuff import HotStuffReplica
from quorate.runtime.sim import SimConfig, run

QUICK_SEEDS = 3
SLOW_SEEDS = 500
JOINT_SLOW_SEEDS = 200


@pytest.mark.parametrize("sweep", SWEEPS, ids=str)
@pytest.mark.parametrize("seed", range(QUICK_SEEDS))
def test_sweep_quick(sweep: Sweep, seed: int) -> None:
    check_run(sweep.config(seed))


@pytest.mark.slow
@pytest.mark.parametrize("sweep", SWEEPS, ids=str)
def test_sweep_500_seeds(sweep: Sweep) -> None:
    for seed in range(10_000, 10_000 + SLOW_SEEDS):
        check_run(sweep.config(seed))


@pytest.mark.parametrize("sweep", JOINT_SWEEPS, ids=str)
@pytest.mark.parametrize("seed", range(QUICK_SEEDS))
def test_joint_sweep_quick(sweep: Sweep, seed: int) -> None:
    report = check_run(sweep.config(seed))
    assert report["quorum"]["proposals"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("sweep", JOINT_SWEEPS, ids=str)
def test_joint_sweep_200_seeds(sweep: Sweep) -> None:
    accepted = 0
    for seed in range(10_000, 10_000 + JOINT_SLOW_SEEDS):
        accepted += check_run(sweep.config(seed))["quorum"]["accepted"]
    assert accepted >= JOINT_SLOW_SEEDS  # the sweep really changed configurations


JOINT_REGRESSION_SEEDS = [(5, 21), (5, 78), (7, 24), (7, 60)]
"""Runs that stopped committing (found when replicas were still numbered
from 0): a removed or demoted node holding the only copy of an uncommitted
configuration never campaigned (thesis §4.2.2), and leaders that committed
their own removal stepped down without telling anyone (nodes outside the
new configuration kept campaigning for it). The two causes also have their
own unit tests (``tests/unit/raft/test_raft_joint.py``), which do not depend
on how the simulator numbers nodes."""


@pytest.mark.parametrize(("nodes", "seed"), JOINT_REGRESSION_SEEDS)
def test_joint_regressions(nodes: int, seed: int) -> None:
    check_run(Sweep("raft", nodes, False, reconfigure=True).config(seed))


MULTIRAFT_SLOW_SEEDS = 100


@pytest.mark.parametrize("sweep", MULTIRAFT_SWEEPS, ids=str)
@pytest.mark.parametrize("seed", range(QUICK_SEEDS))
def test_multiraft_sweep_quick(sweep: MultiRaftSweep, seed: int) -> None:
    report = check_run(sweep.config(seed))
    assert report["committed_ops"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("sweep", MULTIRAFT_SWEEPS, ids=str)
def test_multiraft_sweep_100_seeds(sweep: MultiRaftSweep) -> None:
    splits = moves = 0
    for seed in range(10_000, 10_000 + MULTIRAFT_SLOW_SEEDS):
        report = check_run(sweep.config(seed))
        splits += report["splits"]
        moves += report["moves"]
    assert splits > 0 and moves > 0


def hotstuff_chaos(nodes: int, seed: int) -> SimConfig:
    """``quorate sim hotstuff --nodes N --faults chaos --duration 20 --seed S``."""
    return SimConfig(protocol="hotstuff", nodes=nodes, faults="chaos", duration_s=20.0, seed=seed)


HOTSTUFF_RESTART_SEEDS = [(4, 2), (4, 3), (4, 5), (4, 8), (7, 3)]
"""Runs whose histories were not linearizable when a restarted HotStuff
replica executed new commands on an empty state machine (it did not hand its
recovered committed entries to the state machine again)."""


@pytest.mark.parametrize(("nodes", "seed"), HOTSTUFF_RESTART_SEEDS)
def test_hotstuff_restart_regressions(nodes: int, seed: int) -> None:
    check_run(hotstuff_chaos(nodes, seed))


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["raft", "pbft", "hotstuff"])
def test_issue_sized_chaos_runs(protocol: str) -> None:
    # The runs users make: closed-loop clients, 20 s, chaos (seeds 1-12 at
    # n = 4, 1-6 at n = 7).
    for nodes, seeds in ((4, range(1, 13)), (7, range(1, 7))):
        for seed in seeds:
            check_run(SimConfig(protocol=protocol, nodes=nodes, faults="chaos", duration_s=20.0, seed=seed))


def test_online_checks_catch_a_replica_restarted_without_its_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reintroduce the bug: drop the recovered entries instead of replaying them.
    restore = HotStuffReplica._restore

    def forgetful(self: HotStuffReplica, raw: object, entries: object) -> None:
        restore(self, raw, entries)  # type: ignore[arg-type]
        self._replay = []

    monkeypatch.setattr(HotStuffReplica, "_restore", forgetful)
    caught = [run(hotstuff_chaos(4, seed)).safety_violations for seed in (2, 3)]
    assert all(caught), caught
    assert all("diverged" in v[0]["message"] or "write lost" in v[0]["message"] for v in caught)


def test_command_line_reproduces_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimConfig] = []
    monkeypatch.setattr(sim_cli, "run_command", lambda config, history, as_json, runner: seen.append(config))
    for sweep in (*SWEEPS, *JOINT_SWEEPS, *MULTIRAFT_SWEEPS):
        config = sweep.config(1234)
        line = command_line(config)
        assert line.startswith(f"quorate sim {config.protocol} ") and line.endswith("--seed 1234")
        result = CliRunner().invoke(app, line.split()[1:])
        assert result.exit_code == 0, result.output
        assert seen[-1] == config, line


HRB_SLOW_SEEDS = 200


@pytest.mark.slow
@pytest.mark.parametrize("sweep", HRB_SWEEPS, ids=str)
def test_hrb_sweep_200_seeds(sweep: HrbSweep) -> None:
    """HRB in both shard quorum modes, with and without Byzantine shard
    members within what the mode claims (``quorate.bench.chaos_sweeps``):
    chaos, then a liveness phase; safety, atomicity and linearizability."""
    committed = 0
    for seed in range(10_000, 10_000 + HRB_SLOW_SEEDS):
        committed += check_hrb_run(sweep.config(seed))["committed_ops"]
    assert committed > HRB_SLOW_SEEDS
