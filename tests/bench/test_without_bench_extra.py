"""Without the ``bench`` extra (hdrhistogram, psutil, matplotlib) every other
command works, and the commands that need it say so in one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Run in a fresh interpreter where the extra's modules cannot be imported.
HIDE_EXTRA = (
    "import sys\n"
    "for name in ('hdrh', 'psutil', 'matplotlib'):\n"
    "    sys.modules[name] = None\n"
    "from quorate.cli.main import main\n"
    "sys.argv = ['quorate', *sys.argv[1:]]\n"
    "main()\n"
)


def _quorate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE_EXTRA, *args], capture_output=True, text=True, timeout=120
    )


def test_other_commands_work_without_the_extra() -> None:
    # (bench advise --sim needs none of it either: it reads simulator results.)
    result = _quorate("sim", "raft", "--nodes", "3", "--duration", "1", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "linearizable" in result.stdout
    assert _quorate("--help").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "compare", "--protocols", "raft", "--sim", "--out", "cmp"],
        ["bench", "recommend", "--faults", "crash", "--nodes", "3"],
    ],
)
def test_the_benchmarker_names_the_missing_extra(args: list[str]) -> None:
    result = _quorate(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "needs the bench extra: pip install hdrhistogram psutil matplotlib" in result.stderr
