"""``quorate bench compare / advise / recommend`` from the command line: the
report files, the JSON, and bad flags as one line with exit 2. The real path
runs a short ramp on a 3-node Raft cluster of real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("hdrh", reason="needs the bench extra: pip install '.[bench]'")
pytest.importorskip("psutil", reason="needs the bench extra: pip install '.[bench]'")
pytest.importorskip("matplotlib", reason="needs the bench extra: pip install '.[bench]'")

from quorate.cli.main import _register, app

_register()
runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHORT = ["--warmup", "1.5", "--step", "1", "--soak", "1"]


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_compare_in_the_simulator_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        ["bench", "compare", "--protocols", "raft,pbft", "--sim", "--ramp", "--start-rate", "400",
         "--max-rate", "800", *SHORT, "--json", "--out", str(out)],
    )
    assert result.exit_code == 0, result.stderr
    report = _last_json(result.stdout)
    assert [r["protocol"] for r in report["results"]] == ["raft", "pbft"]
    for r in report["results"]:
        assert r["optimal_rate_ops"] == 800 and r["sustainable_rate_ops"] == 800
        assert "rate cap" in r["stopped_because"]
        assert all("histogram_hdr" not in s for s in r["steps"])  # kept in report.json only
    assert report["recommendation"]["byzantine"] == "pbft"
    for name in ("throughput_vs_load.png", "latency_cdf.png", "resources.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    full = json.loads((out / "report.json").read_text())
    assert full["results"][0]["steps"][0]["histogram_hdr"]
    markdown = (out / "report.md").read_text()
    assert "| raft | 3 | 800 |" in markdown and "## Bottlenecks" in markdown and "lower bound" in markdown
    assert "a linear estimate, not a measurement" in markdown
    raft = report["results"][0]["busiest_cpu_percent_at_limit"]
    assert raft["cpu_ceiling_estimate_ops"] == round(800 * 100 / raft["cpu_percent"], -2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "--protocols", "raft,paxos"], "unknown protocol 'paxos'"),
        (["compare", "--protocols", "raft,raft"], "named twice"),
        (["compare", "--sim", "--real"], "not both"),
        (["compare", "--real", "--regions", "3"], "--regions needs the simulator"),
        (["compare", "--ramp", "--max-p99-ms", "0"], "--max-p99-ms must be > 0"),
        (["compare", "--protocols", "raft,pbft", "--nodes", "pbft=3"], "pbft needs at least 4 nodes"),
        (["compare", "--protocols", "raft", "--nodes", "hotstuff=4"], "not in --protocols"),
        (["compare", "--nodes", "many"], "--nodes takes a count"),
        (["advise", "--protocol", "paxos"], "no advisor knobs"),
        (["compare", "--real", "--protocols", "raft,hrb"], "hrb is compared in the simulator only"),
        (["compare", "--protocols", "casper,hrb", "--nodes", "hrb=3"], "hrb needs at least 4 nodes"),
        (["advise", "--protocol", "hrb", "--real"], "hrb is advised in the simulator only"),
        (["recommend", "--protocols", "raft,paxos"], "unknown protocol 'paxos'"),
        (["advise", "--repeats", "1"], "--repeats must be >= 2"),
        (["recommend", "--faults", "lies"], "--faults takes crash or byzantine"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_recommend_says_why_and_fails_when_nothing_fits() -> None:
    result = runner.invoke(app, ["bench", "recommend", "--faults", "byzantine", "--nodes", "3"])
    assert result.exit_code == 1
    assert "recommendation: none" in result.stdout and "3f + 1" in result.stdout


def test_advise_in_the_simulator_prints_the_flags_to_use() -> None:
    result = runner.invoke(app, ["bench", "advise", "--protocol", "hotstuff", "--repeats", "2", "--duration", "0.5", "--clients", "8", "--json"])
    assert result.exit_code == 0, result.stderr
    report = _last_json(result.stdout)
    assert report["baseline"]["kept"] and len(report["trials"]) == 2  # batch_max 64 and 1024
    assert all(len(t["throughput_ops"]) == 2 for t in report["trials"])
    kept = {t["knob"]: t["value"] for t in report["trials"] if t["kept"]}
    assert report["recommended"] == kept


def test_compare_on_real_processes(tmp_path: Path) -> None:
    from tests.e2e.conftest import free_base_port

    out = tmp_path / "real"
    result = runner.invoke(
        app,
        # A generous latency bound: this checks the machinery, not this machine's disk.
        ["bench", "compare", "--protocols", "raft", "--real", "--ramp", "--start-rate", "100",
         "--max-rate", "200", "--max-p99-ms", "5000", *SHORT, "--base-port", str(free_base_port(3)),
         "--json", "--out", str(out)],
    )
    assert result.exit_code == 0, result.stderr
    raft = _last_json(result.stdout)["results"][0]
    assert raft["sustainable_rate_ops"] is not None
    step = raft["steps"][0]
    nodes = {k for k in step["resources"] if k.startswith("n")}
    assert nodes == {"n1", "n2", "n3"} and "client1" in step["resources"]
    sample = step["resources"]["n1"][-1]
    for key in ("cpu_percent", "rss_mb", "disk_write_mb_s", "fsyncs_per_s", "net_sent_mb_s"):
        assert key in sample, sample
    assert step["fsync_probe_ms"]
    assert (out / "resources.png").read_bytes()[:8] == PNG_MAGIC
