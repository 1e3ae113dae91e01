"""``quorate bench sharding``: JSON and table from the command line, the
figures' relations that must hold on the planted graph, bad options as one
line with exit 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("pymetis", reason="needs the sharding extra: pip install '.[sharding]'")
pytest.importorskip("networkx", reason="needs the sharding extra: pip install '.[sharding]'")

from quorate.cli.main import _register, app

_register()
runner = CliRunner()
SHORT = ["--repeat", "1", "--keys", "3000"]


@pytest.fixture(scope="module")
def report() -> dict:
    result = runner.invoke(app, ["bench", "sharding", *SHORT, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_every_graph_reports_the_three_placements(report: dict) -> None:
    assert set(report["graphs"]) == {"sbm", "les-miserables", "karate"}
    for graph in report["graphs"].values():
        for kind in ("metis", "stream", "hash"):
            figures = graph[kind]
            assert 0.0 <= figures["cut_fraction"] <= 1.0
            assert figures["load_imbalance"] >= 1.0
            assert figures["seconds_median"] > 0 and figures["cpu_seconds_median"] >= 0
        assert graph["stream"]["tracked_agents"] == graph["agents"]


def test_on_the_planted_graph_metis_beats_the_stream_which_beats_hashing(report: dict) -> None:
    sbm = report["graphs"]["sbm"]
    assert sbm["agents"] == 512 and sbm["shards"] == 8
    assert sbm["metis"]["cut_fraction"] < sbm["stream"]["cut_fraction"] < sbm["hash"]["cut_fraction"]
    assert sbm["metis"]["load_imbalance"] <= 1.03 + 1e-9


def test_between_repartitions_the_stream_repairs_a_stale_placement(report: dict) -> None:
    drift = report["drift"]
    stale, stream, fresh = drift["stale_metis"], drift["stream_corrected"], drift["fresh_metis"]
    assert stream["cut_fraction"] < stale["cut_fraction"]
    assert fresh["cut_fraction"] < stale["cut_fraction"]
    assert 0 < stream["agents_moved"] < report["graphs"]["sbm"]["agents"]
    assert stream["load_imbalance"] <= 1.05 + 1e-9


def test_a_split_moves_keys_only_to_the_new_shard_near_the_ideal(report: dict) -> None:
    keys = report["keys"]
    split = keys["split"]
    assert split["moved_only_to_new_shard"]
    assert list(split["routes"]) == [f"{split['hot_shard']}->{split['new_shard']}"]
    assert 0.8 < split["moved_vs_ideal"] < 1.2
    merge = keys["merge"]
    assert merge["moved_only_to_merged_shard"] and merge["moved_fraction"] == merge["ideal_fraction"]
    out = keys["scale_out"]
    assert out["ring_moved_only_to_new_shard"] and out["rendezvous_moved_only_to_new_shard"]


def test_the_same_seed_gives_the_same_figures(report: dict) -> None:
    again = runner.invoke(app, ["bench", "sharding", *SHORT, "--json"])
    figures = json.loads(again.output.strip().splitlines()[-1])
    for name, graph in report["graphs"].items():
        for kind in ("metis", "stream", "hash"):
            assert graph[kind]["cut_fraction"] == figures["graphs"][name][kind]["cut_fraction"]
    assert figures["keys"] == report["keys"]


def test_the_table() -> None:
    result = runner.invoke(app, ["bench", "sharding", *SHORT])
    assert result.exit_code == 0, result.output
    for word in ("les-miserables", "metis", "stream", "hash", "share of interaction weight", "rendezvous"):
        assert word in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeat", "0"], "--repeat is at least 1"),
        (["--keys", "10"], "--keys is at least 100"),
        (["--keys", "many"], "--keys wants an integer"),
        (["--seed", "x"], "--seed wants an integer"),
        (["--sim-seeds", "101"], "--sim-seeds is within 0..100"),
        (["--sim-seeds", "some"], "--sim-seeds wants an integer"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "sharding", *args])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1


def test_without_the_extra_the_command_names_it_in_one_line() -> None:
    import subprocess
    import sys

    hide = (
        "import sys\n"
        "for name in ('pymetis', 'networkx'):\n"
        "    sys.modules[name] = None\n"
        "from quorate.cli.main import main\n"
        "sys.argv = ['quorate', 'bench', 'sharding', '--repeat', '1']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "needs the sharding extra: pip install pymetis networkx" in result.stderr
