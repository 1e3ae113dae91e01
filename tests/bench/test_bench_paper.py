"""``quorate bench paper``: a tiny paper configuration end to end, its
determinism by seed, the analytic floors, the claims table's verdicts, the
runner registry's "not available" answers, bad flags. The runs (the tiny
configuration, its determinism, every figure, ``--quick``) take tens of
seconds to minutes: they are in the slow suite."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("hdrh", reason="needs the bench extra: pip install '.[bench]'")
pytest.importorskip("matplotlib", reason="needs the bench extra: pip install '.[bench]'")

from quorate.bench.paper import RUNNERS, PaperConfig, run_paper
from quorate.bench.paper_claims import DOES_NOT_HOLD, HOLDS, NOT_COMPARABLE, claims_table
from quorate.bench.paper_floors import (
    Network,
    floor_ms,
    hotstuff_floor_ms,
    pbft_floor_ms,
    raft_floor_ms,
)
from quorate.bench.paper_report import JSON_NAME
from quorate.cli.main import _register, app

_register()
runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = [
    "--sizes", "4,7", "--protocols", "raft,pbft,hotstuff", "--figure", "1,2",
    "--no-calibrate", "--no-validate", "--max-steps", "2", "--step-s", "0.5",
]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _measured_figures(report: dict[str, Any]) -> dict[str, Any]:
    """What a seed fixes: every cell's steps (rates, figures, trace hashes), not wall times."""
    out = {}
    for name, p in report["figure_1_2"]["protocols"].items():
        for n, cell in p["cells"].items():
            out[f"{name}/{n}"] = [
                {k: v for k, v in step.items() if k != "wall_s"} for step in cell.get("steps", [])
            ]
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("paper")
    result = runner.invoke(app, ["bench", "paper", *TINY, "--seed", "3", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_tiny_paper_run_writes_the_report_plots_and_json(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, printed = tiny_run
    report_md = (out / "report.md").read_text()
    assert "## Paper claims vs measured" in report_md
    assert "| claim | paper | ours | verdict | why | seed | command |" in report_md
    for name in ("fig1_throughput.png", "fig2_latency.png", "fig2_cdf.png", "validation.png"):
        width, height = _png_size(out / name)
        assert width > 100 and height > 100 and (out / name).stat().st_size > 5_000
    saved = json.loads((out / JSON_NAME).read_text())
    assert saved["seed"] == 3 and "git_revision" in saved
    fig = saved["figure_1_2"]
    assert fig["sizes"] == [4, 7] and fig["p99_bound_ms"] == 1000.0
    for name in ("raft", "pbft", "hotstuff"):
        cells = fig["protocols"][name]["cells"]
        assert set(cells) == {"4", "7"}
        for cell in cells.values():
            assert cell["floor_ms"]["p50_ms"] > 0
            assert cell["steps"], "every cell ran at least one step"
            if cell["status"] == "measured":
                # A measurement never beats the floor its message pattern implies.
                assert cell["latency_ms"]["p50"] >= cell["floor_ms"]["min_ms"]
    assert saved["figure_2_cdf"], "a CDF at the largest n"
    assert {row["claim"] for row in saved["claims"]} == {row["claim"] for row in printed["claims"]}
    assert "latency_cdf_ms" not in json.dumps(printed)  # the printed JSON is the slim one
    assert saved["cpu_model"]["message_base_us"] > 0


@pytest.mark.slow
def test_the_same_seed_gives_the_same_figures(tiny_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = tiny_run
    first = json.loads((out / JSON_NAME).read_text())
    result = runner.invoke(app, ["bench", "paper", *TINY, "--seed", "3", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.stderr
    second = json.loads((tmp_path / JSON_NAME).read_text())
    assert _measured_figures(first) == _measured_figures(second)
    other = runner.invoke(app, ["bench", "paper", *TINY, "--seed", "4", "--out", str(tmp_path / "s4"), "--json"])
    assert other.exit_code == 0, other.stderr
    third = json.loads((tmp_path / "s4" / JSON_NAME).read_text())
    assert _measured_figures(third) != _measured_figures(first)


@pytest.mark.slow
def test_every_figure_key_is_in_the_json_of_a_run_of_all_figures(tmp_path: Path) -> None:
    config = PaperConfig(
        quick=True, sizes=(4,), protocols=("raft", "hrb", "casper"), calibrate=False, validate_real=False,
        max_steps=1, step_s=0.5,
    )
    report = run_paper(config)
    assert set(report["other_figures"]) == {"3", "partition", "recovery", "storage"}
    for figure in report["other_figures"].values():
        assert figure["status"] in ("measured", "failed", "not available in this build")
    protocols = report["figure_1_2"]["protocols"]
    for name in ("hrb", "casper"):
        if not protocols[name]["available"]:
            assert "not available in this build" in protocols[name]["reason"]
            assert protocols[name]["cells"] == {}
    assert len(report["claims"]) == 12
    for name in ("raft", "hrb", "casper"):
        cell = protocols[name]["cells"]["4"]
        assert cell["status"] == "measured", (name, cell.get("reason"))
    hrb = protocols["hrb"]["cells"]["4"]
    assert hrb["latency_kind"] == "intra_shard" and hrb["agents_started_at_s"] > 0 and hrb["steps"]
    detection = report["other_figures"]["3"]
    assert detection["status"] == "measured" and detection["detection_s"]["count"] > 0


def test_floors_follow_the_message_patterns() -> None:
    net = Network(regions=3, inter_region_ms=50.0, intra_region_ms=0.5)
    # A client in the leader's region: one majority round trip across regions.
    assert raft_floor_ms(net, 3, 0) == pytest.approx(0.5 + 100.0 + 0.5)
    # A remote client adds two one-way trips to the leader.
    assert raft_floor_ms(net, 3, 1) == pytest.approx(50.0 + 100.0 + 50.0)
    # PBFT: request, pre-prepare, prepare, commit across regions, a local reply quorum.
    assert pbft_floor_ms(net, 4, 1) == pytest.approx(50.0 + 50.0 + 50.0 + 50.0 + 0.5)
    # Chained HotStuff: three vote rounds before the commit is known.
    assert hotstuff_floor_ms(net, 4, 0) > 3 * 100.0
    one_region = Network(regions=1, inter_region_ms=50.0, intra_region_ms=0.5)
    assert raft_floor_ms(one_region, 5, 0) == pytest.approx(2.0)
    assert floor_ms("nosuch", net, 4) is None


def test_claims_say_not_comparable_below_the_papers_n_and_judge_at_it() -> None:
    def report(n: int, p50: float) -> dict[str, Any]:
        cell = {"status": "measured", "throughput_ops": 3000.0, "latency_ms": {"p50": p50, "p99": 1100.0},
                "floor_ms": {"p50_ms": 200.5}}
        return {"seed": 1, "figure_1_2": {"p99_bound_ms": 1000.0, "protocols": {
            "pbft": {"available": True, "cells": {str(n): cell}},
            "hrb": {"available": False, "reason": "not available in this build (x)", "cells": {}},
        }}}

    rows = {r["claim"]: r for r in claims_table(report(64, 690.0))}
    assert rows["PBFT median latency 680 ms at 1000 nodes (Fig. 2)"]["verdict"] == NOT_COMPARABLE
    assert "n=64 only" in rows["PBFT median latency 680 ms at 1000 nodes (Fig. 2)"]["why"]
    assert rows["HRB median latency 230 ms at 1000 nodes (Fig. 2)"]["verdict"] == NOT_COMPARABLE
    at_1000 = {r["claim"]: r for r in claims_table(report(1000, 690.0))}
    assert at_1000["PBFT median latency 680 ms at 1000 nodes (Fig. 2)"]["verdict"] == HOLDS
    far = {r["claim"]: r for r in claims_table(report(1000, 250.0))}
    assert far["PBFT median latency 680 ms at 1000 nodes (Fig. 2)"]["verdict"] == DOES_NOT_HOLD
    assert "floor" in far["PBFT median latency 680 ms at 1000 nodes (Fig. 2)"]["why"]


def test_hrb_throughput_from_closed_loop_agents_is_not_judged_and_faster_detection_says_why() -> None:
    hrb_cell = {"status": "measured", "throughput_ops": 120.0, "agents": 80, "limit_reached": False,
                "latency_ms": {"p50": 300.0, "p99": 2400.0}, "floor_ms": {"p50_ms": 200.0}}
    report = {"seed": 1, "figure_1_2": {"p99_bound_ms": 1000.0, "protocols": {
        "hrb": {"available": True, "cells": {"1000": hrb_cell}},
    }}, "other_figures": {"3": {"status": "measured", "detection_s": {"count": 4, "median": 0.2, "max": 2.5}}}}
    rows = {r["claim"]: r for r in claims_table(report)}
    throughput = rows["HRB scales near-linearly to 45,000 TPS at 1000 nodes (Fig. 1)"]
    assert throughput["verdict"] == NOT_COMPARABLE and "80 closed-loop agents" in throughput["why"]
    p50 = rows["HRB median latency 230 ms at 1000 nodes (Fig. 2)"]
    assert p50["verdict"] == DOES_NOT_HOLD and "intra-shard" in p50["why"]
    assert rows["HRB p99 latency under 500 ms at 1000 nodes (Fig. 2)"]["verdict"] == DOES_NOT_HOLD
    median = rows["Byzantine leader detection, median 2.3 s (Fig. 3)"]
    assert median["verdict"] == DOES_NOT_HOLD and "faster than the paper's" in median["why"]
    assert rows["Byzantine leader detection, max 8 s (Fig. 3)"]["verdict"] == HOLDS


def test_hrb_open_loop_throughput_is_judged_as_a_limit_or_a_lower_bound() -> None:
    def rows(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
        report = {"seed": 1, "figure_1_2": {"p99_bound_ms": 1000.0, "protocols": {
            "hrb": {"available": True, "cells": cells},
        }}}
        return {r["claim"]: r for r in claims_table(report)}["HRB scales near-linearly to 45,000 TPS at 1000 nodes (Fig. 1)"]

    def cell(ops: float, limit: bool) -> dict[str, Any]:
        return {"status": "measured", "throughput_ops": ops, "limit_reached": limit, "latency_kind": "intra_shard",
                "latency_ms": {"p50": 310.0, "p99": 400.0}}

    # A lower bound below the claim refutes nothing; the limits found are named.
    low = rows({"32": cell(2000.0, True), "1000": cell(900.0, False)})
    assert low["verdict"] == NOT_COMPARABLE and "at least 900" in low["why"] and "n=32 (2,000)" in low["why"]
    # A limit found at the paper's n is judged; beating the claim holds.
    assert rows({"1000": cell(20_000.0, True)})["verdict"] == DOES_NOT_HOLD
    assert rows({"1000": cell(50_000.0, True)})["verdict"] == HOLDS
    assert rows({"1000": cell(40_000.0, False)})["verdict"] == HOLDS
    # Measured below the paper's n only: not comparable.
    assert rows({"256": cell(9_000.0, True)})["verdict"] == NOT_COMPARABLE


def test_casper_is_judged_against_its_own_stated_bound() -> None:
    casper = RUNNERS["casper"]
    assert casper.p99_bound_ms == 3000.0  # type: ignore[attr-defined]
    assert "3 s" in casper.settings()["why"]


def test_the_registry_names_every_protocol_of_the_figures() -> None:
    assert set(RUNNERS) == {"hrb", "raft", "pbft", "hotstuff", "casper"}
    for name in ("raft", "pbft", "hotstuff"):
        assert RUNNERS[name].unavailable() is None
        assert RUNNERS[name].settings()["why"]


@pytest.mark.parametrize(
    "flags",
    [["--figure", "4"], ["--sizes", "a,b"], ["--protocols", "paxos"], ["--sizes", "2"], ["--p99-bound-ms", "0"]],
)
def test_bad_flags_exit_2_with_one_line(flags: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "paper", *flags, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "report.md").exists()


@pytest.mark.slow
def test_quick_paper_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "paper", "--quick", "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["quick"] is True
    fig = report["figure_1_2"]
    for name in ("raft", "pbft", "hotstuff"):
        assert any(c["status"] == "measured" for c in fig["protocols"][name]["cells"].values()), name
    validation = report["validation"]
    assert any(r["status"] == "measured" for r in validation["rows"])
    assert (tmp_path / "report.md").exists() and (tmp_path / "fig1_throughput.png").exists()


def test_hotstuff_quorum_certificate_kind_is_validated() -> None:
    from quorate.errors import ConfigError
    from quorate.runtime.sim.protocols import protocol_spec

    with pytest.raises(ConfigError, match="quorum_certificates"):
        protocol_spec("hotstuff", {"quorum_certificates": "sometimes"})
    assert protocol_spec("hotstuff", {"scheme": "bls", "quorum_certificates": "aggregate"}).name == "hotstuff"


def test_a_cell_whose_carried_start_rate_is_below_the_minimum_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import dataclass

    from quorate.bench import paper
    from quorate.bench.paper_calibrate import calibrate

    measured: list[int] = []

    @dataclass
    class SlowRunner:
        name: str = "raft"
        title: str = "Slow"
        complexity: int = 1
        budget_weight: float = 1.0

        def unavailable(self) -> None:
            return None

        def settings(self) -> dict[str, Any]:
            return {"options": {}, "why": "a test"}

        def measure(self, context: Any) -> dict[str, Any]:
            measured.append(context.n)
            # Its limit is 30 ops/s, below the rate a cell may start at.
            return {"status": "measured", "throughput_ops": 30.0, "offered_rate_ops": 30.0,
                    "latency_ms": {"p50": 200.0, "p99": 300.0},
                    "steps": [{"wall_s": 0.01, "target_rate_ops": 30.0}]}

    monkeypatch.setitem(paper.RUNNERS, "raft", SlowRunner())
    calibration = calibrate(measure=False, quick=True)
    config = PaperConfig(sizes=(16, 32), protocols=("raft",), figures=("1",), calibrate=False, validate_real=False)
    fig = paper.figures_1_2(config, calibration["cost_model"], calibration["crypto_costs"], lambda what, share: None)
    assert measured == [16]
    cell = fig["protocols"]["raft"]["cells"]["32"]
    assert cell["status"] == "not run" and "below 50 ops/s" in cell["reason"]


def test_a_runner_s_options_change_from_the_sizes_it_names() -> None:
    from quorate.bench.paper import RUNNERS, SimRampRunner

    pbft = RUNNERS["pbft"]
    assert isinstance(pbft, SimRampRunner)
    assert pbft.options_for(64)["authentication"] == "macs"
    assert pbft.options_for(256)["authentication"] == "signatures"
    assert pbft.options_for(256)["batch_timeout_s"] == 0.1
    assert pbft.options_for(1000)["batch_timeout_s"] == 0.2
    assert pbft.options_for(1000)["batch_max"] == pbft.options["batch_max"]
    assert "options_from_n" in pbft.settings()
    hotstuff = RUNNERS["hotstuff"]
    assert isinstance(hotstuff, SimRampRunner) and hotstuff.options_for(16)["startup_sync"] is False


def test_the_first_step_estimate_counts_fewer_timer_batches_where_the_timeout_grows() -> None:
    from quorate.bench.paper import RUNNERS, _batch_rate_ratio

    assert _batch_rate_ratio(RUNNERS["pbft"], 128, 256) == pytest.approx(0.2)  # 20 ms -> 100 ms
    assert _batch_rate_ratio(RUNNERS["pbft"], 16, 32) == pytest.approx(1.0)
    assert _batch_rate_ratio(RUNNERS["hotstuff"], 128, 256) == 1.0  # no batch timer
    assert _batch_rate_ratio(RUNNERS["hrb"], 128, 256) == 1.0  # not a ramp runner


def test_pbft_plateau_is_judged_only_on_limits_a_lower_bound_refutes_it_only_above_the_claim() -> None:
    plateau = "PBFT plateaus at ~3,000 TPS beyond 100 nodes (Fig. 1)"

    def verdict(*cells: tuple[int, float, bool]) -> str:
        report = {"seed": 1, "figure_1_2": {"p99_bound_ms": 1000.0, "protocols": {"pbft": {
            "available": True,
            "cells": {str(n): {"status": "measured", "throughput_ops": ops, "limit_reached": reached,
                               "latency_ms": {"p50": 210.0, "p99": 230.0}} for n, ops, reached in cells},
        }}}}
        return str({r["claim"]: r for r in claims_table(report)}[plateau]["verdict"])

    assert verdict((128, 258.0, False), (256, 100.0, False)) == NOT_COMPARABLE
    assert verdict((128, 9_000.0, False)) == DOES_NOT_HOLD
    assert verdict((128, 2_900.0, True), (256, 3_100.0, True)) == HOLDS
    assert verdict((128, 800.0, True), (256, 100.0, False)) == DOES_NOT_HOLD
