"""``quorate bench storage``: every figure is there, the durable writes are
counted by the engines themselves (1 for one group, 1 for many groups in
one ``persist_many``, one per group when separate), and bad flags exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import quorate.cli.bench_storage  # noqa: F401  (registers the command)
from quorate.bench.storage import report
from quorate.cli.main import app

SMALL_GROUPS = 4


def test_report_counts_one_durable_write_for_many_groups(tmp_path: Path) -> None:
    result = report(
        groups=SMALL_GROUPS,
        entries=2,
        value_bytes=16,
        samples=2,
        recover_groups=10,
        recover_entries=3,
        recover_repeats=1,
        spread_groups=3,
        deep_entries=3,
        entry_turns=3,
        directory=tmp_path,
    )
    assert set(result["engines"]) == {"sqlite", "wal"}
    for figures in result["engines"].values():
        commit = figures["group_commit"]
        assert commit["durable_writes"] == {
            "one_group": [1],
            "persist_many": [1],
            "separate": [SMALL_GROUPS],
        }
        for name in ("one_group_ms", "persist_many_ms", "separate_persists_ms"):
            assert commit[name]["median"] > 0
        assert commit["separate_over_persist_many"] > 0
        recovery = figures["recovery"]
        assert recovery["groups"] == 10 and recovery["total_ms"] > 0
        cost = figures["entry_cost"]
        assert (cost["spread_groups"], cost["deep_entries"], cost["turns"]) == (3, 3, 3)
        for shape in ("spread", "deep"):
            assert cost[shape]["wall_us_per_entry"] > 0
            assert cost[shape]["cpu_us_per_entry"] >= 0
        assert "spread_over_deep_cpu" in cost
    assert list(tmp_path.iterdir()) == []  # the bench cleaned up after itself


def test_cli_json_is_one_object(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench", "storage", "--engine", "wal", "--groups", "2", "--samples", "1",
            "--recover-groups", "3", "--recover-entries", "1", "--dir", str(tmp_path), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.output)
    assert parsed["benchmark"] == "storage" and list(parsed["engines"]) == ["wal"]


@pytest.mark.parametrize(
    "flags",
    [["--engine", "lmdb"], ["--groups", "0"], ["--samples", "0"], ["--dir", "/no/such/dir"]],
    ids=["engine", "groups", "samples", "dir"],
)
def test_cli_refuses_bad_flags_with_one_line(flags: list[str]) -> None:
    result = CliRunner().invoke(app, ["bench", "storage", *flags])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "quorate: error:" in result.output
