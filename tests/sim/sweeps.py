"""The chaos sweeps (defined in ``quorate.bench.chaos_sweeps``, shared with
``quorate sweep --sweep NAME``) and the check every run of them must pass."""

from __future__ import annotations

from typing import Any

from quorate.bench.chaos_sweeps import (
    HRB_SWEEPS,
    JOINT_SWEEPS,
    MULTIRAFT_SWEEPS,
    SWEEPS,
    HrbSweep,
    MultiRaftSweep,
    Sweep,
)
from quorate.bench.hrb_sim import HrbRunConfig, run_hrb
from quorate.check import check_history
from quorate.cli.sim import command_line
from quorate.runtime.sim import SimConfig, SimResult, run
from quorate.runtime.sim.multiraft import MultiRaftConfig, run_multiraft

__all__ = [
    "HRB_SWEEPS",
    "JOINT_SWEEPS",
    "MULTIRAFT_SWEEPS",
    "SWEEPS",
    "HrbSweep",
    "MultiRaftSweep",
    "Sweep",
    "check_hrb_run",
    "check_run",
]


def check_run(config: SimConfig) -> dict[str, Any]:
    """Run ``config``; assert safety, linearizability and liveness, naming the
    command that reproduces a failure."""
    result: SimResult = run_multiraft(config) if isinstance(config, MultiRaftConfig) else run(config)
    where = f"reproduce with: {command_line(config)}"
    assert result.safety_violations == [], f"{result.safety_violations[0]['message']}; {where}"
    verdict = check_history(result.history, timeout_s=60.0)
    assert str(verdict.verdict) == "linearizable", f"history {verdict.verdict}; {where}"
    assert result.liveness_ok is True, f"no commit within {config.liveness_bound_s} s of the heal; {where}"
    return result.to_json()


def check_hrb_run(config: HrbRunConfig) -> dict[str, Any]:
    """Run an HRB ``config``; assert safety, atomicity, linearizability and
    liveness after the heal, naming the command that reproduces a failure."""
    report, _ = run_hrb(config)
    assert report["ok"], f"{'; '.join(report['failures'])}; reproduce with: {report['command']}"
    assert report["linearizable"] is True, f"history {report['check_verdict']}; reproduce with: {report['command']}"
    return report
