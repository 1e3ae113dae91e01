"""The multi-Raft benchmarks on real processes, small and short (the figures
in the README come from the full-size commands):

- ``quorate bench real --protocol multiraft`` runs one Raft group and then
  the ranges with the same clients, and reports both and their ratios;
- ``quorate bench idle`` (real) reports CPU per node and peer messages per
  second for idle ranges and for one Raft group, with the ranges quiesced;
- bad flags end in one line (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.e2e.conftest import listen_base_port
from tests.e2e.test_cluster_cli import ok, one_line, quorate

pytestmark = pytest.mark.timeout(600)


@pytest.mark.slow
def test_bench_real_multiraft_reports_both_runs_and_their_ratio(tmp_path: Path) -> None:
    base = listen_base_port(3)
    report = json.loads(
        ok(
            quorate(
                tmp_path, "bench", "real", "--protocol", "multiraft", "--nodes", "3", "--groups", "4",
                "--clients", "4", "--client-processes", "1", "--duration", "2", "--base-port", str(base), "--json",
            )
        )
    )
    assert report["benchmark"] == "real-multiraft"
    multi, single = report["multiraft"], report["single_group"]
    assert multi["groups"] == 4 and multi["protocol"] == "multiraft" and single["protocol"] == "raft"
    assert multi["ops"] > 0 and single["ops"] > 0
    assert report["ratio"]["throughput"] == round(multi["throughput_ops"] / single["throughput_ops"], 3)
    for run in (multi, single):
        assert run["cpu_ms_per_put"]["nodes"] == round(1000 * sum(run["cpu_s_per_node"].values()) / run["ops"], 3)
        assert run["cpu_ms_per_put"]["clients"] > 0
        assert run["core_us_per_put"] > 0
    assert report["ratio"]["node_cpu_per_put"] == round(multi["cpu_ms_per_put"]["nodes"] / single["cpu_ms_per_put"]["nodes"], 3)


@pytest.mark.slow
def test_bench_idle_on_real_processes_reports_cpu_and_messages(tmp_path: Path) -> None:
    base = listen_base_port(3)
    report = json.loads(
        ok(
            quorate(
                tmp_path, "bench", "idle", "--nodes", "3", "--groups", "8", "--duration", "2",
                "--base-port", str(base), "--json",
            )
        )
    )
    assert report["benchmark"] == "idle-real"
    hosted, single = report["hosted"], report["single"]
    assert hosted["groups"] == 9 and single["groups"] == 1
    assert set(hosted["cpu_percent_per_node"]) == {"n1", "n2", "n3"} == set(single["cpu_percent_per_node"])
    assert hosted["messages_per_second"] >= 0 and single["messages_per_second"] > 0
    assert hosted["quiesced_range_replicas"] > 0


def test_bad_multiraft_bench_flags_end_in_one_line(tmp_path: Path) -> None:
    one_line(quorate(tmp_path, "bench", "real", "--protocol", "multiraft", "--groups", "0"), 2, "--groups")
    one_line(quorate(tmp_path, "bench", "real", "--groups", "4"), 2, "multiraft")
    one_line(quorate(tmp_path, "bench", "idle", "--groups", "0"), 2, "--groups")
