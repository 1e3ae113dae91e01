"""``quorate sweep``: seeds in parallel give the results ``quorate sim`` gives
seed by seed; failures name the command that reproduces them; bad input is
one line and exit 2, a Ray address that does not answer included."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from quorate.bench.chaos_sweeps import SWEEPS, sweep_named
from quorate.bench.sweep import ProcessExecutor, parse_seeds, run_sweep, sweep_configs
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


def test_a_ray_address_that_refuses_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    code, _, err = _sweep("--protocol", "raft", "--seeds", "1..2", "--ray", f"127.0.0.1:{port}", "--ray-timeout", "2")
    assert code == 2
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for s in accepted:
        s.close()
    server.close()


def test_a_ray_address_that_does_not_answer_fails_within_the_timeout(silent_server: int) -> None:
    pytest.importorskip("ray")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "quorate", "sweep", "--protocol", "raft", "--seeds", "1..2",
         "--ray", f"127.0.0.1:{silent_server}", "--ray-timeout", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("quorate: error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "127.0.0.1" in done.stderr
    # The bound is the flag's 3 s plus interpreter and Ray start-up on a busy machine.
    assert time.monotonic() - started < 100


def test_ray_runs_the_same_seeds_as_the_process_pool() -> None:
    pytest.importorskip("ray")
    flags = ["--protocol", "raft", "--seeds", "1..2", "--duration", "2", "--faults", "chaos", "--json"]
    code, out, err = _sweep(*flags, "--ray", "local", "--workers", "2")
    assert code == 0, err
    on_ray = json.loads(out.strip().splitlines()[-1])
    code, out, err = _sweep(*flags, "--workers", "1")
    assert code == 0, err
    local = json.loads(out.strip().splitlines()[-1])
    assert on_ray["executor"] == "ray"
    assert [r["trace_sha256"] for r in on_ray["runs"]] == [r["trace_sha256"] for r in local["runs"]]
