"""The multi-Raft real benchmark's per-put figures that need no processes:
the in-process cost of the Raft cores, hosts and drivers per put (it elects a
leader in every group, commits every put, and reports a positive figure), and
the CPU milliseconds per put read from a run's report."""

from __future__ import annotations

import pytest

from quorate.bench.real_multiraft import core_cost_per_put, cpu_ms_per_put


@pytest.mark.parametrize(("groups", "puts_per_round"), [(1, 16), (8, 1)])
def test_core_cost_per_put_runs_both_shapes(groups: int, puts_per_round: int) -> None:
    assert core_cost_per_put(groups=groups, puts_per_round=puts_per_round, puts=400) > 0


def test_cpu_ms_per_put_sums_every_node_and_client_process() -> None:
    run = {"ops": 2000, "cpu_s_per_node": {"n1": 0.5, "n2": 0.25, "n3": 0.25}, "cpu_s_per_client_process": [0.1, 0.1]}
    assert cpu_ms_per_put(run) == {"nodes": 0.5, "clients": 0.1}


def test_cpu_ms_per_put_of_a_run_without_puts_is_none() -> None:
    run = {"ops": 0, "cpu_s_per_node": {"n1": 0.5}, "cpu_s_per_client_process": [0.1]}
    assert cpu_ms_per_put(run) == {"nodes": None, "clients": None}
