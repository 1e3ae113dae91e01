"""``quorate sweep``: seeds in parallel give the results ``quorate sim`` gives
seed by seed; failures name the command that reproduces them; bad input is
one line and exit 2, a Ray address that does not answer included."""

from __future__ import annotations

import importlib.util
import json
import shlex
import socket
import sys
import threading
import time
import types

import pytest
from typer.testing import CliRunner

from quorate.bench.chaos_sweeps import MULTIRAFT_SWEEPS, SWEEPS, sweep_named
from quorate.bench.sweep import ProcessExecutor, parse_seeds, run_all, run_sweep, sweep_configs
from quorate.cli.main import _register, app
from quorate.errors import ConfigError

_register()
runner = CliRunner()
SIM_FLAGS = ["--faults", "chaos", "--duration", "2"]


def _sweep(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["sweep", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("1..200", range(1, 201)), ("7", range(7, 8)), (" 3 .. 4 ", range(3, 5)), ("-2..1", range(-2, 2))],
)
def test_seed_ranges(text: str, seeds: range) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["5..1", "1..", "a..b", "1-5", ""])
def test_bad_seed_ranges_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_seeds(text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "raft", "--seeds", "5..1"], "range is empty"),
        (["--protocol", "raft", "--bogus", "1"], "No such option: --bogus"),
        (["--protocol", "raft", "--seed", "3"], "--seed is not for a sweep"),
        (["--protocol", "swim"], "unknown protocol"),
        (["--seeds", "1..2"], "either --protocol"),
        (["--sweep", "raft-n9-crash"], "no sweep named"),
        (["--sweep", "raft-n4-crash", "--faults", "none"], "fixes the scenario"),
        (["--protocol", "raft", "--workers", "0"], "--workers must be >= 1"),
        (["--protocol", "raft", "--quorum", "2:2"], "need Q1 + Q2 > n"),
        (["--protocol", "raft", "--voters", "1,x"], "--voters takes node ids"),
        (["--protocol", "raft", "--nodes", "0"], "nodes must be >= 1"),
        (["--protocol", "raft", "--ray", "nowhere"], "--ray takes"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, out, err = _sweep(*args)
    assert code == 2, out + err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_parallel_seeds_match_quorate_sim_seed_by_seed() -> None:
    code, out, err = _sweep("--protocol", "raft", "--seeds", "1..2", *SIM_FLAGS, "--workers", "2", "--json")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["executor"] == "processes" and report["summary"]["passed"] == 2
    for run in report["runs"]:
        alone = runner.invoke(app, ["sim", "raft", *SIM_FLAGS, "--seed", str(run["seed"]), "--json"])
        assert alone.exit_code == 0, alone.stderr
        single = json.loads(alone.stdout.strip().splitlines()[-1])
        assert run["trace_sha256"] == single["trace_sha256"], run["seed"]
        assert run["committed_ops"] == single["committed_ops"]
        assert run["linearizable"] is True and single["linearizable"] is True


def test_a_failing_seed_prints_the_command_that_reproduces_it() -> None:
    # Two equivocators out of four are beyond f: seed 3 splits the honest replicas.
    flags = ["--byzantine", "2:equivocate", "--allow-unsafe", "--duration", "0.5", "--clients", "4"]
    code, _, err = _sweep("--protocol", "pbft", "--seeds", "2..3", *flags, "--workers", "2")
    assert code == 1
    line = next(x for x in err.splitlines() if x.startswith("seed 3:"))
    assert "agreement violated" in line
    command = line.split("reproduce with: ", 1)[1]
    assert command.endswith("--seed 3")
    again = runner.invoke(app, shlex.split(command)[1:])
    assert again.exit_code == 1 and "agreement violated" in again.stdout


def test_shared_sweeps_run_through_the_sweep_runner() -> None:
    sweep = sweep_named("raft-n4-crash")
    assert sweep in SWEEPS
    verdicts = run_sweep(sweep_configs(sweep.config(0), range(1, 3)), ProcessExecutor(1))
    assert [v["seed"] for v in verdicts] == [1, 2]
    assert all(v["ok"] and v["liveness_ok"] for v in verdicts), verdicts


class _HangingRay(types.ModuleType):
    """Stands in for ``ray``: its ``init`` never returns until released."""

    def __init__(self) -> None:
        super().__init__("ray")
        self.release = threading.Event()

    def init(self, **kwargs: object) -> None:
        self.release.wait()


def test_a_ray_address_that_refuses_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", _HangingRay())  # never reached: the probe fails first
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    code, _, err = _sweep("--protocol", "raft", "--seeds", "1..2", "--ray", f"127.0.0.1:{port}", "--ray-timeout", "2")
    assert code == 2
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1


def test_a_ray_cluster_that_never_completes_the_connection_fails_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Something answers TCP at the address (the probe passes) but the Ray
    # handshake never ends: the sweep gives up after --ray-timeout.
    fake = _HangingRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    started = time.monotonic()
    try:
        code, _, err = _sweep("--protocol", "raft", "--seeds", "1..2", "--ray", f"127.0.0.1:{port}", "--ray-timeout", "1")
    finally:
        fake.release.set()
        server.close()
    assert code == 2
    assert f"Ray at 127.0.0.1:{port} did not complete the connection within 1 s" in err
    assert len(err.strip().splitlines()) == 1
    assert time.monotonic() - started < 30  # 1 s, with room for a loaded machine


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra")
def test_ray_runs_the_same_seeds_as_the_process_pool() -> None:
    # Not imported here: the sweep sets Ray's loopback-only switch before its import.
    flags = ["--protocol", "raft", "--seeds", "1..2", "--duration", "2", "--faults", "chaos", "--json"]
    code, out, err = _sweep(*flags, "--ray", "local", "--workers", "2")
    assert code == 0, err
    on_ray = json.loads(out.strip().splitlines()[-1])
    code, out, err = _sweep(*flags, "--workers", "1")
    assert code == 0, err
    local = json.loads(out.strip().splitlines()[-1])
    assert on_ray["executor"] == "ray"
    assert [r["trace_sha256"] for r in on_ray["runs"]] == [r["trace_sha256"] for r in local["runs"]]


def test_multiraft_sweeps_match_quorate_sim_multiraft() -> None:
    flags = ["--groups", "4", "--split-at-ops", "10", "--faults", "chaos", "--duration", "6", "--heal-at", "3"]
    flags += ["--liveness-bound", "3", "--op-timeout", "1.5"]
    code, out, err = _sweep("--protocol", "multiraft", "--seeds", "1..2", *flags, "--workers", "1", "--json")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["protocol"] == "multiraft" and report["summary"]["passed"] == 2
    for run in report["runs"]:
        alone = runner.invoke(app, ["sim", "multiraft", *flags, "--seed", str(run["seed"]), "--json"])
        assert alone.exit_code == 0, alone.stderr
        single = json.loads(alone.stdout.strip().splitlines()[-1])
        assert run["trace_sha256"] == single["trace_sha256"], run["seed"]


def test_the_shared_multiraft_sweeps_are_named() -> None:
    sweep = sweep_named("multiraft-n5-g8")
    assert sweep in MULTIRAFT_SWEEPS and sweep.config(7).groups == 8


def test_ray_missing_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as without the extra
    code, _, err = _sweep("--protocol", "raft", "--seeds", "1..2", "--ray", "127.0.0.1:1")
    assert code == 2
    assert err.strip() == "quorate: error: --ray needs Ray (the ray extra): pip install ray"


def _square_after(item: tuple[int, float]) -> int:
    """A stand-in for another benchmark's independent run: finishes out of order."""
    value, pause_s = item
    time.sleep(pause_s)
    return value * value


def test_the_executors_run_any_task_and_keep_the_input_order() -> None:
    items = [(3, 0.4), (4, 0.0), (5, 0.2)]
    executor = ProcessExecutor(2, task=_square_after)
    assert run_all(items, executor) == [9, 16, 25]
    assert run_all(items, ProcessExecutor(1, task=_square_after)) == [9, 16, 25]
